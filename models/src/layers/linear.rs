use mlx_bridge::Array;
use mlx_bridge::block_quant::{self, BlockMatrix};
use mlx_bridge::quant::Quantized;

use crate::error::Result;

/// `y = x W^T` for a weight stored as `[out, in]`, as the checkpoints store it.
#[derive(Debug, Clone)]
pub enum Linear {
    Dense {
        weight: Array,
        /// `weight^T` as an evaluated view (no copy): the forward pass reads it directly instead
        /// of adding a transpose node to every step's graph.
        weight_t: Array,
    },
    /// `W^T` made contiguous at load: the forward pass is a plain `x @ Wt` (the Neural Accelerator
    /// class's preferred layout; see the execution plan).
    Transposed {
        weight_t: Array,
    },
    Quantized(Quantized),
    /// Kept in its block format (GGUF or MLX affine) for mlxcel's CPU kernels.
    Block(BlockMatrix),
}

impl Linear {
    /// A dense `[out, in]` layer; evaluates the weight and its transposed view once.
    pub fn dense(weight: Array) -> Result<Linear> {
        let weight_t = weight.t()?;
        mlx_bridge::eval(&[&weight, &weight_t])?;
        Ok(Linear::Dense { weight, weight_t })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            Linear::Dense { weight_t, .. } => x.matmul(weight_t)?,
            Linear::Transposed { weight_t } => x.matmul(weight_t)?,
            Linear::Quantized(q) => q.matmul(x, true)?,
            Linear::Block(matrix) => matrix.matmul_t(x)?,
        })
    }

    /// `x W_i^T` for several layers reading the same `x` (Q/K/V, gate/up): kernels that can
    /// (block-quantized weights on the CPU) quantize `x` once and run them as one step.
    pub fn forward_many(layers: &[&Linear], x: &Array) -> Result<Vec<Array>> {
        let blocks: Option<Vec<&BlockMatrix>> = layers
            .iter()
            .map(|layer| match layer {
                Linear::Block(matrix) => Some(matrix),
                _ => None,
            })
            .collect();
        match blocks {
            Some(blocks) if blocks.len() > 1 => Ok(block_quant::matmul_t_many(&blocks, x)?),
            _ => layers.iter().map(|layer| layer.forward(x)).collect(),
        }
    }

    /// Transposes a dense weight once (evaluated, contiguous); quantized weights stay as they are.
    pub fn pretransposed(self) -> Result<Linear> {
        Ok(match self {
            Linear::Dense { weight, .. } => {
                let weight_t = weight.t()?.contiguous()?;
                weight_t.eval()?;
                Linear::Transposed { weight_t }
            }
            other => other,
        })
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Linear::Quantized(_) | Linear::Block(_))
    }

    /// The dense `[out, in]` weight (dequantized or un-transposed as needed).
    pub fn dense_weight(&self) -> Result<Array> {
        Ok(match self {
            Linear::Dense { weight, .. } => weight.clone(),
            Linear::Transposed { weight_t } => weight_t.t()?,
            Linear::Quantized(q) => q.dequantize()?,
            Linear::Block(matrix) => matrix.dequantize()?,
        })
    }
}
