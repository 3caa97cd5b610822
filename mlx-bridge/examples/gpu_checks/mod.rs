//! What the GPU check examples (`cuda_kernels`, `cuda_probe`) share: random inputs and the error
//! measure their tolerances are stated in.

use mlx_bridge::{Array, Dtype, random};

pub type Failure = Box<dyn std::error::Error>;

/// Standard normal values of `shape`, reproducible from `seed`.
pub fn normal(shape: &[i32], seed: u64, dtype: Dtype) -> Result<Array, Failure> {
    Ok(random::normal(shape, dtype, 0.0, 1.0, Some(&random::key(seed)?))?)
}

/// The worst difference relative to the largest reference value.
pub fn relative_error(ours: &[f32], reference: &[f32]) -> f32 {
    let largest = reference.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    ours.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / largest
}
