// Link args from mlx-bridge's build script (rpath to libmlx, OpenBLAS ahead of libmlx's bundled
// BLAS) do not reach this crate's binaries and tests: repeat them from its `links = "mlx"` metadata.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_MLX_LINK_ARGS");
    for arg in std::env::var("DEP_MLX_LINK_ARGS").unwrap_or_default().split('\t').filter(|a| !a.is_empty()) {
        println!("cargo:rustc-link-arg={arg}");
    }
}
