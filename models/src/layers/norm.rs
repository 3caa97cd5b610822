use mlx_bridge::{Array, fast};

use crate::error::Result;

/// `x / sqrt(mean(x^2) + eps) * w`, accumulated in float32 by MLX's kernel.
///
/// Gemma 2/3 checkpoints store `w - 1` (their norm multiplies by `1 + w`): load those with
/// [`RmsNorm::one_plus`], which adds the one once at load time. Without a weight it only normalises.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Option<Array>,
    eps: f32,
}

impl RmsNorm {
    pub fn new(weight: Array, eps: f32) -> Self {
        RmsNorm { weight: Some(weight), eps }
    }

    pub fn one_plus(weight: Array, eps: f32) -> Result<Self> {
        Ok(RmsNorm { weight: Some(weight.add_scalar(1.0)?), eps })
    }

    pub fn without_weight(eps: f32) -> Self {
        RmsNorm { weight: None, eps }
    }

    pub fn weight(&self) -> Option<&Array> {
        self.weight.as_ref()
    }

    pub fn eps(&self) -> f32 {
        self.eps
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(fast::rms_norm(x, self.weight.as_ref(), self.eps)?)
    }
}
