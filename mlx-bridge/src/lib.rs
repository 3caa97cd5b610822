//! A coarse, safe Rust API over MLX's C++ API.
//!
//! [`Array`] is an RAII handle to an `mlx::core::array` (cloning it is cheap: MLX arrays share
//! their buffers). Ops build a lazy graph; [`eval`] or a read such as [`Array::to_vec`] runs it.
//! Every fallible call returns [`Result`]: an MLX exception (a shape mismatch, a bad dtype, a
//! missing file) comes back as [`Error::Mlx`] carrying MLX's own message, never as an abort.
//!
//! The surface is deliberately curated rather than a mirror of MLX: array ops an LLM runtime
//! needs, the `fast` kernels, quantization, safetensors, memory and device queries, and fused
//! blocks compiled in C++ with `mx::compile`.

mod array;
pub mod block_quant;
mod cache_dir;
pub mod compile;
pub mod device;
mod error;
pub mod fast;
mod ffi;
pub mod fused;
pub mod io;
pub mod memory;
mod ops;
pub mod quant;
pub mod random;

pub use array::{Array, Dtype, Element, async_eval, eval, pending_graph_nodes, pending_graph_ops, synchronize};
pub use device::{Device, DeviceKind, Stream};
pub use error::{Error, Result};
pub use ops::gather_mm;
pub use ops::{concatenate, stack, where_select};

/// mlxcel's cache root: `MLXCEL_CACHE_DIR`, else `$XDG_CACHE_HOME/mlxcel`, else `~/.cache/mlxcel`
/// (`~/Library/Caches/mlxcel` on macOS). The build fetches MLX into it; registry models and the
/// CUDA kernels' code files live there too.
pub fn cache_root() -> std::path::PathBuf {
    cache_dir::cache_root_for(cfg!(target_os = "macos"))
}

/// The version string of the MLX library loaded at run time (e.g. "0.32.4").
pub fn mlx_version() -> String {
    ffi::bridge::mlx_version()
}

/// How this crate was built: which MLX package and prefix, and which BLAS was linked ahead of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The MLX version the bridge is pinned to.
    pub pinned_mlx: &'static str,
    /// The wheel the build fetched (`mlx-cpu`, `mlx-cuda-13`, `mlx-metal`), when not `MLX_DIR`.
    pub mlx_package: &'static str,
    /// The MLX prefix linked at build time (include/ and lib/).
    pub mlx_prefix: &'static str,
    /// `openblas` when OpenBLAS was linked ahead of libmlx, else `mlx-bundled`.
    pub blas: &'static str,
}

pub const PINNED_MLX_VERSION: &str = "0.32.4";

pub fn build_info() -> BuildInfo {
    BuildInfo {
        pinned_mlx: PINNED_MLX_VERSION,
        mlx_package: env!("MLXCEL_BUILD_MLX_PACKAGE"),
        mlx_prefix: env!("MLXCEL_BUILD_MLX_PREFIX"),
        blas: env!("MLXCEL_BUILD_BLAS"),
    }
}
