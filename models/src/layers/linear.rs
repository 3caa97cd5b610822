use mlx_bridge::Array;
use mlx_bridge::block_quant::{self, BlockMatrix};
use mlx_bridge::quant::Quantized;

use crate::error::Result;

/// `y = x W^T` for a weight stored as `[out, in]`, as the checkpoints store it.
#[derive(Debug, Clone)]
pub enum Linear {
    Dense {
        weight: Array,
        /// `weight^T` as evaluated views (no copy): the forward pass reads it directly instead
        /// of adding a transpose node to every step's graph.
        weight_t: RightOperand,
    },
    /// `W^T` made contiguous at load: the forward pass is a plain `x @ Wt` (the Neural Accelerator
    /// class's preferred layout; see the execution plan).
    Transposed {
        weight_t: RightOperand,
    },
    Quantized(Quantized),
    /// Kept in its block format (GGUF or MLX affine) for mlxcel's CPU kernels.
    Block(BlockMatrix),
}

/// `W^T` `[in, out]` as the right operand of `x @ W^T`, with a `[1, in, out]` view of the same
/// buffer for one sequence's `[1, L, in]` activations: MLX multiplies those as a batch of one,
/// where a 3-D by 2-D product gets a flatten and an unflatten node around it (two of every
/// projection's three nodes, ~800 of a Gemma 3n E2B bf16 decode step's 3.6k).
#[derive(Debug, Clone)]
pub struct RightOperand {
    flat: Array,
    batch_of_one: Array,
}

impl RightOperand {
    /// Views of `weight_t`, evaluated.
    fn new(weight_t: Array) -> Result<RightOperand> {
        let batch_of_one = weight_t.expand_dims(&[0])?;
        mlx_bridge::eval(&[&weight_t, &batch_of_one])?;
        Ok(RightOperand { flat: weight_t, batch_of_one })
    }

    /// `[in, out]`.
    pub fn flat(&self) -> &Array {
        &self.flat
    }

    /// The view to multiply `x` by: `[1, in, out]` for one sequence `[1, L, in]`, else `[in, out]`.
    pub fn for_input(&self, x: &Array) -> &Array {
        let one_sequence = x.ndim() == 3 && x.dim(0).is_ok_and(|rows| rows == 1);
        if one_sequence { &self.batch_of_one } else { &self.flat }
    }

    fn left_multiply(&self, x: &Array) -> Result<Array> {
        Ok(x.matmul(self.for_input(x))?)
    }
}

impl Linear {
    /// A dense `[out, in]` layer; evaluates the weight and its transposed views once.
    pub fn dense(weight: Array) -> Result<Linear> {
        weight.eval()?;
        Ok(Linear::Dense { weight_t: RightOperand::new(weight.t()?)?, weight })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(match self {
            Linear::Dense { weight_t, .. } | Linear::Transposed { weight_t } => weight_t.left_multiply(x)?,
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
                Linear::Transposed { weight_t: RightOperand::new(weight.t()?.contiguous()?)? }
            }
            other => other,
        })
    }

    /// `W^T` of a dense layer (pre-transposed or not); `None` for quantized weights.
    pub fn right_operand(&self) -> Option<&RightOperand> {
        match self {
            Linear::Dense { weight_t, .. } | Linear::Transposed { weight_t } => Some(weight_t),
            _ => None,
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self, Linear::Quantized(_) | Linear::Block(_))
    }

    /// The dense `[out, in]` weight (dequantized or un-transposed as needed).
    pub fn dense_weight(&self) -> Result<Array> {
        Ok(match self {
            Linear::Dense { weight, .. } => weight.clone(),
            Linear::Transposed { weight_t } => weight_t.flat().t()?,
            Linear::Quantized(q) => q.dequantize()?,
            Linear::Block(matrix) => matrix.dequantize()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: i32 = 4;
    const IN: i32 = 6;

    fn weight() -> Vec<f32> {
        (0..OUT * IN).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect()
    }

    /// `x W^T` by the textbook loop, for `rows` rows of `IN` values.
    fn reference(x: &[f32], w: &[f32]) -> Vec<f32> {
        let (n_in, n_out) = (IN as usize, OUT as usize);
        x.chunks(n_in)
            .flat_map(|row| (0..n_out).map(move |o| (0..n_in).map(|i| row[i] * w[o * n_in + i]).sum::<f32>()))
            .collect()
    }

    /// One sequence `[1, L, in]` is projected by a single graph node (no flatten/unflatten pair
    /// around the product), and every layout and leading shape gives the textbook product.
    #[test]
    fn one_sequence_projects_in_one_node() {
        let w = weight();
        let x: Vec<f32> = (0..3 * IN).map(|i| (i as f32 - 9.0) / 4.0).collect();
        let want = reference(&x, &w);
        let dense = Linear::dense(Array::from_slice(&w, &[OUT, IN]).unwrap()).unwrap();
        let transposed = dense.clone().pretransposed().unwrap();
        for layer in [&dense, &transposed] {
            for shape in [[1, 3, IN], [3, 1, IN]] {
                let input = Array::from_slice(&x, &shape).unwrap();
                input.eval().unwrap();
                let y = layer.forward(&input).unwrap();
                if shape[0] == 1 {
                    assert_eq!(mlx_bridge::pending_graph_nodes(&[&y]), 1, "{shape:?}");
                }
                assert_eq!(y.shape(), vec![shape[0], shape[1], OUT]);
                let got = y.to_vec::<f32>().unwrap();
                assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "{shape:?}: {got:?} vs {want:?}");
            }
        }
    }
}
