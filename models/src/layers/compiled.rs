//! A decoder layer's decode step in compiled pieces (the plan's `compiled_decode`): the work
//! before the cache (norms, projections, whatever a family mixes into its residual stream) and
//! the work after the attention (output projection, residuals, feed-forward), each a graph
//! compiled once per input shape with `mx::compile`, so MLX fuses their elementwise chains and
//! replays them without rebuilding the graph op by op. Only RoPE, the cache update and the
//! attention itself, which depend on the position, stay outside.

use mlx_bridge::Array;
use mlx_bridge::compile::{Compiled, TraceError};

use crate::error::{ModelError, Result};

/// Whether `x` `[B, L, ...]` is a decode step (one position per row): the shapes then stay
/// the same from step to step, so the compiled pieces are traced once; prefill chunks vary in
/// length and run op by op.
pub fn is_decode_step(x: &Array) -> bool {
    x.dim(1).is_ok_and(|positions| positions == 1)
}

/// The two compiled pieces of one layer's step; they capture that layer's weights.
#[derive(Debug, Default)]
pub struct CompiledStep {
    before_cache: Compiled,
    after_attention: Compiled,
}

impl CompiledStep {
    pub fn new() -> CompiledStep {
        CompiledStep::default()
    }

    /// `f(inputs)` as the compiled piece before the cache.
    pub fn before_cache(&self, inputs: &[&Array], f: impl Fn(&[Array]) -> Result<Vec<Array>>) -> Result<Vec<Array>> {
        call(&self.before_cache, inputs, f)
    }

    /// `f(inputs)` as the compiled piece after the attention.
    pub fn after_attention(&self, inputs: &[&Array], f: impl Fn(&[Array]) -> Result<Vec<Array>>) -> Result<Vec<Array>> {
        call(&self.after_attention, inputs, f)
    }
}

fn call(piece: &Compiled, inputs: &[&Array], f: impl Fn(&[Array]) -> Result<Vec<Array>>) -> Result<Vec<Array>> {
    let traced =
        |arrays: &[Array]| -> std::result::Result<Vec<Array>, TraceError> { f(arrays).map_err(TraceError::from) };
    piece.call(inputs, &traced).map_err(ModelError::from)
}
