use std::rc::Rc;

use mlx_bridge::block_quant::{self, BlockMatrix};
use mlx_bridge::quant::{Quantized, RowInput};
use mlx_bridge::{Array, concatenate};

use crate::error::Result;
use crate::layers::Activation;

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
    /// One of several layers whose weights were stacked along the output axis at load
    /// ([`Linear::stacked`]): alone it multiplies by its own rows (views of the stack's
    /// buffer); [`Linear::forward_many`] over the whole stack runs one product.
    Part {
        rows: Box<Linear>,
        stack: Rc<Stack>,
        index: usize,
    },
}

/// Layers stacked along the output axis: the whole product and each layer's output width.
#[derive(Debug)]
pub struct Stack {
    whole: Linear,
    widths: Vec<i32>,
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
            Linear::Part { rows, .. } => rows.forward(x)?,
        })
    }

    /// `(x * scale) W^T`, `scale` a vector of `x`'s width: the scaling inside the product's
    /// kernel where the bridge has one for the call (a decode row on CUDA), else two ops.
    pub fn forward_scaled(&self, x: &Array, scale: &Array) -> Result<Array> {
        match self.forward_formed(RowInput::Scaled, x, scale)? {
            Some(y) => Ok(y),
            None => self.forward(&x.mul(scale)?),
        }
    }

    /// `(activation(gate) * up) W^T`: the gated activation formed inside the product's kernel
    /// where the bridge has one for the call (a decode row on CUDA), else `hidden()` (the
    /// caller's own ops for it, compiled or not) and the product.
    pub fn forward_gated(
        &self,
        activation: Activation,
        gate: &Array,
        up: &Array,
        hidden: impl FnOnce() -> Result<Array>,
    ) -> Result<Array> {
        let input = match activation {
            Activation::GeluTanh => RowInput::GeluTanhGated,
            Activation::Silu => RowInput::SiluGated,
        };
        match self.forward_formed(input, gate, up)? {
            Some(y) => Ok(y),
            None => self.forward(&hidden()?),
        }
    }

    fn forward_formed(&self, input: RowInput, x: &Array, u: &Array) -> Result<Option<Array>> {
        Ok(match self {
            Linear::Quantized(q) => q.matmul_t_of(input, x, u)?,
            Linear::Part { rows, .. } => rows.forward_formed(input, x, u)?,
            Linear::Dense { .. } | Linear::Transposed { .. } | Linear::Block(_) => None,
        })
    }

    /// The layers as one stack (weights concatenated along the output axis, each layer then
    /// a view of its rows), so that [`Linear::forward_many`] over them is one graph node where
    /// it was one per layer; layers that cannot stack (different layouts or quantizations, or
    /// block formats, which the CPU kernels batch anyway) come back as they were.
    pub fn stacked(layers: Vec<Linear>) -> Result<Vec<Linear>> {
        if layers.len() < 2 {
            return Ok(layers);
        }
        let whole = match &layers[0] {
            Linear::Dense { .. } => {
                let weights: Option<Vec<&Array>> = layers
                    .iter()
                    .map(|l| match l {
                        Linear::Dense { weight, .. } => Some(weight),
                        _ => None,
                    })
                    .collect();
                let Some(weights) = weights else { return Ok(layers) };
                Linear::dense(concatenate(&weights, 0)?)?
            }
            Linear::Quantized(first) => {
                let parts: Option<Vec<&Quantized>> = layers
                    .iter()
                    .map(|l| match l {
                        Linear::Quantized(q)
                            if q.spec == first.spec
                                && q.biases.is_some() == first.biases.is_some()
                                && q.weight.dim(1).ok() == first.weight.dim(1).ok() =>
                        {
                            Some(q)
                        }
                        _ => None,
                    })
                    .collect();
                let Some(parts) = parts else { return Ok(layers) };
                let joined =
                    |pick: fn(&Quantized) -> &Array| concatenate(&parts.iter().map(|q| pick(q)).collect::<Vec<_>>(), 0);
                let biases = match first.biases {
                    Some(_) => Some(concatenate(
                        &parts.iter().map(|q| q.biases.as_ref().expect("checked")).collect::<Vec<_>>(),
                        0,
                    )?),
                    None => None,
                };
                let q = Quantized {
                    weight: joined(|q| &q.weight)?,
                    scales: joined(|q| &q.scales)?,
                    biases,
                    spec: first.spec,
                };
                let arrays: Vec<&Array> = [&q.weight, &q.scales].into_iter().chain(q.biases.as_ref()).collect();
                mlx_bridge::eval(&arrays)?;
                Linear::Quantized(q)
            }
            _ => return Ok(layers),
        };
        let widths = layers.iter().map(Linear::output_width).collect::<Result<Vec<_>>>()?;
        drop(layers);
        let rows_of = |from: i32, to: i32| -> Result<Linear> {
            let rows = |a: &Array| a.slice_axis(0, from, to);
            Ok(match &whole {
                Linear::Dense { weight, .. } => Linear::dense(rows(weight)?)?,
                Linear::Quantized(q) => Linear::Quantized(Quantized {
                    weight: rows(&q.weight)?,
                    scales: rows(&q.scales)?,
                    biases: q.biases.as_ref().map(rows).transpose()?,
                    spec: q.spec,
                }),
                _ => unreachable!("only dense and quantized layers stack"),
            })
        };
        let mut start = 0;
        let mut parts = Vec::with_capacity(widths.len());
        for &width in &widths {
            parts.push(rows_of(start, start + width)?);
            start += width;
        }
        let stack = Rc::new(Stack { whole, widths });
        Ok(parts
            .into_iter()
            .enumerate()
            .map(|(index, rows)| Linear::Part { rows: Box::new(rows), stack: stack.clone(), index })
            .collect())
    }

    /// `out` of an `[out, in]` layer.
    fn output_width(&self) -> Result<i32> {
        Ok(match self {
            Linear::Dense { weight, .. } => weight.dim(0)?,
            Linear::Transposed { weight_t } => weight_t.flat().dim(1)?,
            Linear::Quantized(q) => q.weight.dim(0)?,
            Linear::Block(matrix) => matrix.dequantize()?.dim(0)?,
            Linear::Part { stack, index, .. } => stack.widths[*index],
        })
    }

    /// The whole stack when `layers` are exactly its parts, in order.
    fn whole_stack<'a>(layers: &[&'a Linear]) -> Option<&'a Stack> {
        let Some(Linear::Part { stack, .. }) = layers.first() else { return None };
        let complete = layers.len() == stack.widths.len()
            && layers.iter().enumerate().all(|(i, layer)| {
                matches!(layer, Linear::Part { stack: s, index, .. } if Rc::ptr_eq(s, stack) && *index == i)
            });
        complete.then_some(&**stack)
    }

    /// `x W_i^T` for several layers reading the same `x` (Q/K/V, gate/up): one product when they
    /// are a whole [`Linear::stacked`] stack, and kernels that can (block-quantized weights on the
    /// CPU) quantize `x` once and run them as one step.
    pub fn forward_many(layers: &[&Linear], x: &Array) -> Result<Vec<Array>> {
        if let Some(stack) = Self::whole_stack(layers) {
            let y = stack.whole.forward(x)?;
            let mut start = 0;
            return stack
                .widths
                .iter()
                .map(|&width| {
                    start += width;
                    Ok(y.slice_axis(-1, start - width, start)?)
                })
                .collect();
        }
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
            Linear::Part { rows, stack, index } => Linear::Part { rows: Box::new(rows.pretransposed()?), stack, index },
            other => other,
        })
    }

    /// `W^T` of a dense layer (pre-transposed or not); `None` for quantized weights.
    pub fn right_operand(&self) -> Option<&RightOperand> {
        match self {
            Linear::Dense { weight_t, .. } | Linear::Transposed { weight_t } => Some(weight_t),
            Linear::Part { rows, .. } => rows.right_operand(),
            _ => None,
        }
    }

    pub fn is_quantized(&self) -> bool {
        match self {
            Linear::Part { rows, .. } => rows.is_quantized(),
            other => matches!(other, Linear::Quantized(_) | Linear::Block(_)),
        }
    }

    /// The dense `[out, in]` weight (dequantized or un-transposed as needed).
    pub fn dense_weight(&self) -> Result<Array> {
        Ok(match self {
            Linear::Dense { weight, .. } => weight.clone(),
            Linear::Transposed { weight_t } => weight_t.flat().t()?,
            Linear::Quantized(q) => q.dequantize()?,
            Linear::Block(matrix) => matrix.dequantize()?,
            Linear::Part { rows, .. } => rows.dense_weight()?,
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

    /// Stacked layers (dense, and quantized alike) give each layer's own product, alone and
    /// through `forward_many`, which runs the stack as one product node plus views; a partial
    /// or reordered list still multiplies layer by layer.
    #[test]
    fn stacked_layers_multiply_as_one_product() {
        use mlx_bridge::quant::{QuantSpec, quantize};
        let (k, widths) = (64, [32, 16, 16]);
        let weights: Vec<Vec<f32>> = widths
            .iter()
            .enumerate()
            .map(|(l, &rows)| (0..rows * k).map(|i| (((i * 13 + l as i32 * 7) % 17) as f32 - 8.0) / 16.0).collect())
            .collect();
        let x_data: Vec<f32> = (0..2 * k).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
        let x = Array::from_slice(&x_data, &[1, 2, k]).unwrap();
        x.eval().unwrap();
        let spec = QuantSpec::affine(32, 8).unwrap();
        for quantized in [false, true] {
            let layer = |w: &Vec<f32>, rows: i32| {
                let dense = Array::from_slice(w, &[rows, k]).unwrap();
                if quantized {
                    Linear::Quantized(quantize(&dense, spec).unwrap())
                } else {
                    Linear::dense(dense).unwrap()
                }
            };
            let separate: Vec<Linear> = weights.iter().zip(widths).map(|(w, rows)| layer(w, rows)).collect();
            let want: Vec<Vec<f32>> =
                separate.iter().map(|l| l.forward(&x).unwrap().to_vec::<f32>().unwrap()).collect();
            let stacked = Linear::stacked(separate).unwrap();
            assert!(stacked.iter().all(|l| matches!(l, Linear::Part { .. })), "quantized {quantized}");
            let all: Vec<&Linear> = stacked.iter().collect();
            let together = Linear::forward_many(&all, &x).unwrap();
            let product_nodes = mlx_bridge::pending_graph_nodes(&together.iter().collect::<Vec<_>>());
            assert_eq!(product_nodes, 1 + widths.len(), "one product and a view per layer");
            for (i, layer) in stacked.iter().enumerate() {
                let close = |got: Vec<f32>| got.iter().zip(&want[i]).all(|(a, b)| (a - b).abs() < 1e-5);
                assert!(close(together[i].to_vec::<f32>().unwrap()), "quantized {quantized} layer {i} in the stack");
                assert!(close(layer.forward(&x).unwrap().to_vec::<f32>().unwrap()), "quantized {quantized} layer {i}");
            }
            let reordered = Linear::forward_many(&[all[1], all[0]], &x).unwrap();
            assert_eq!(reordered[0].to_vec::<f32>().unwrap(), together[1].to_vec::<f32>().unwrap());
        }
    }

    /// The formed-row products give `f(x, u) W^T` for every layout, with the formed row computed
    /// by the caller's ops wherever no kernel forms it (every device but CUDA), against the
    /// textbook loop on the formed row.
    #[test]
    fn formed_rows_multiply_as_their_ops() {
        use mlx_bridge::quant::{QuantSpec, quantize};
        let w = weight();
        let x: Vec<f32> = (0..IN).map(|i| (i as f32 - 2.5) / 2.0).collect();
        let u: Vec<f32> = (0..IN).map(|i| 1.0 - i as f32 / 4.0).collect();
        let scaled: Vec<f32> = x.iter().zip(&u).map(|(a, b)| a * b).collect();
        let gelu = |v: f32| 0.5 * v * (1.0 + (0.797_884_6 * (v + 0.044715 * v * v * v)).tanh());
        let gated: Vec<f32> = x.iter().zip(&u).map(|(a, b)| gelu(*a) * b).collect();
        let dense = Linear::dense(Array::from_slice(&w, &[OUT, IN]).unwrap()).unwrap();
        // Group 32 needs an inner size of 32: the quantized layer pads the rows with zeros.
        let padded: Vec<f32> = w.chunks(IN as usize).flat_map(|row| row.iter().copied().chain([0.0; 26])).collect();
        let quantized = Linear::Quantized(
            quantize(&Array::from_slice(&padded, &[OUT, 32]).unwrap(), QuantSpec::affine(32, 8).unwrap()).unwrap(),
        );
        let pad = |v: &[f32]| {
            Array::from_slice(&v.iter().copied().chain([0.0; 26]).collect::<Vec<_>>(), &[1, 1, 32]).unwrap()
        };
        let (x_in, u_row, u_vec) = (
            Array::from_slice(&x, &[1, 1, IN]).unwrap(),
            Array::from_slice(&u, &[1, 1, IN]).unwrap(),
            Array::from_slice(&u, &[IN]).unwrap(),
        );
        for (name, layer, x_in, u_row, u_vec) in [
            ("dense", &dense, x_in.clone(), u_row.clone(), u_vec.clone()),
            ("quantized", &quantized, pad(&x), pad(&u), pad(&u).reshape(&[32]).unwrap()),
        ] {
            let close = |got: Array, want: &[f32], what: &str| {
                let got = got.to_vec::<f32>().unwrap();
                let want = reference(want, &w);
                assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 2e-2), "{name} {what}: {got:?} vs {want:?}");
            };
            close(layer.forward_scaled(&x_in, &u_vec).unwrap(), &scaled, "scaled");
            let hidden = || Ok(crate::layers::gelu_tanh(&x_in)?.mul(&u_row)?);
            close(layer.forward_gated(Activation::GeluTanh, &x_in, &u_row, hidden).unwrap(), &gated, "gated");
        }
    }
}
