use mlx_bridge::Array;

use crate::error::Result;

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, op by op (the split decode path; the fused
/// path has the same formula compiled in the bridge).
pub fn gelu_tanh(x: &Array) -> Result<Array> {
    let cubic = x.mul(&x.square()?)?.mul_scalar(0.044715)?;
    let inner = x.add(&cubic)?.mul_scalar((2.0 / std::f64::consts::PI).sqrt())?;
    Ok(x.mul_scalar(0.5)?.mul(&inner.tanh()?.add_scalar(1.0)?)?)
}
