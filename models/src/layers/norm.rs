use mlx_bridge::Array;
use mlx_bridge::fast::{self, NormWeight};

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

    /// `residual + self(x)`, as one kernel where the bridge has one for the call.
    pub fn forward_add(&self, x: &Array, residual: &Array) -> Result<Array> {
        if let Some(weight) = &self.weight
            && let Some(sum) = fast::rms_norm_add(x, NormWeight { weight, eps: self.eps }, residual)?
        {
            return Ok(sum);
        }
        Ok(residual.add(&self.forward(x)?)?)
    }

    /// `h = ((residual + self(x)) + extra) * scale` (the scale a scalar of `x`'s dtype) and
    /// `next(h)`, as one kernel where the bridge has one for the call.
    pub fn forward_add_then_norm(
        &self,
        x: &Array,
        residual: &Array,
        extra: &Array,
        scale: f64,
        next: &RmsNorm,
    ) -> Result<(Array, Array)> {
        if let (Some(weight), Some(next_weight)) = (&self.weight, &next.weight)
            && let Some(pair) = fast::rms_norm_add_then_norm(
                x,
                NormWeight { weight, eps: self.eps },
                residual,
                extra,
                scale as f32,
                NormWeight { weight: next_weight, eps: next.eps },
            )?
        {
            return Ok(pair);
        }
        let h = residual.add(&self.forward(x)?)?.add(extra)?.mul_scalar(scale)?;
        let normed = next.forward(&h)?;
        Ok((h, normed))
    }
}
