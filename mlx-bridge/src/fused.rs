//! Blocks defined in C++ (`src/cpp/nn.cc`) and compiled once with `mx::compile`, so each runs as
//! one or a few kernels instead of an op-by-op graph. Blocks are named after what they compute
//! (a SiLU- or gelu-gated MLP), not after the model that first needed them.

use crate::array::{Array, from_list, to_list};
use crate::error::{Error, Result, mlx};
use crate::ffi::bridge as ffi;

pub use crate::ffi::bridge::FusedBlock;

/// Runs a fused block on its inputs and returns its outputs.
pub fn call(block: FusedBlock, inputs: &[&Array]) -> Result<Vec<Array>> {
    let list = mlx("fused", ffi::fused(block, &to_list(inputs)))?;
    from_list("fused", &list)
}

fn single(block: FusedBlock, inputs: &[&Array]) -> Result<Array> {
    call(block, inputs)?.pop().ok_or_else(|| Error::invalid("fused", format!("{block:?} returned no output")))
}

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, the tanh approximation of GELU.
pub fn gelu_tanh(x: &Array) -> Result<Array> {
    single(FusedBlock::GeluTanh, &[x])
}

/// `gelu_tanh(gate) * up`, the gated-MLP activation.
pub fn gelu_tanh_gate(gate: &Array, up: &Array) -> Result<Array> {
    single(FusedBlock::GeluTanhGate, &[gate, up])
}

/// `tanh(x / cap) * cap`, logit soft-capping; `cap` is a scalar array.
pub fn softcap(x: &Array, cap: &Array) -> Result<Array> {
    single(FusedBlock::Softcap, &[x, cap])
}

/// Turns MLX graph compilation on or off process-wide (off runs the same blocks op by op).
pub fn set_compile_enabled(enabled: bool) {
    ffi::set_compile_enabled(enabled)
}

/// `silu(gate) * up`, the SwiGLU activation.
pub fn silu_gate(gate: &Array, up: &Array) -> Result<Array> {
    single(FusedBlock::SiluGate, &[gate, up])
}
