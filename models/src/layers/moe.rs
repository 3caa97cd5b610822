//! A sparse mixture of gated-MLP experts (Qwen3-MoE): a linear router, softmax over the experts
//! in float32, the top `k`, optionally renormalised to sum to one (transformers' order), and the
//! chosen experts run with MLX's `gather_mm` / `gather_qmm`, so each token reads only its own
//! experts' weights, dense or quantized.

use mlx_bridge::quant::Quantized;
use mlx_bridge::{Array, Dtype, gather_mm};

use crate::error::{ModelError, Result};
use crate::layers::{Activation, Linear};

/// One projection of every expert: `[experts, out, in]`.
#[derive(Debug, Clone)]
pub enum Experts {
    /// Kept as `[experts, in, out]` (a transposed view, evaluated once) for `x @ W`.
    Dense(Array),
    Quantized(Quantized),
}

impl Experts {
    /// Dense `[experts, out, in]` weights.
    pub fn dense(weight: Array) -> Result<Experts> {
        let weight_t = weight.swapaxes(-1, -2)?;
        weight_t.eval()?;
        Ok(Experts::Dense(weight_t))
    }

    /// `x @ W[e]^T` for `x: [.., 1, in]` and expert ids `indices: [.., k]`: `[.., k, 1, out]`.
    fn forward(&self, x: &Array, indices: &Array) -> Result<Array> {
        Ok(match self {
            Experts::Dense(weight_t) => gather_mm(x, weight_t, None, Some(indices), false)?,
            Experts::Quantized(q) => q.gather_matmul(x, None, Some(indices), true, false)?,
        })
    }

    /// `[experts, out, in]` of the logical (unpacked) matrix.
    pub fn shape(&self) -> Result<Vec<i32>> {
        Ok(match self {
            Experts::Dense(weight_t) => weight_t.swapaxes(-1, -2)?.shape(),
            Experts::Quantized(q) => {
                let mut shape = q.weight.shape();
                let last = shape.len() - 1;
                shape[last] = shape[last] * 32 / q.spec.bits;
                shape
            }
        })
    }
}

pub struct SparseMoe {
    pub router: Linear,
    pub gate: Experts,
    pub up: Experts,
    pub down: Experts,
    pub activation: Activation,
    pub top_k: i32,
    pub normalize: bool,
}

impl SparseMoe {
    /// Checks the experts agree with each other and with the router.
    pub fn validate(&self, hidden: i32, experts: i32, intermediate: i32) -> Result<()> {
        let want = [
            ("gate", &self.gate, [experts, intermediate, hidden]),
            ("up", &self.up, [experts, intermediate, hidden]),
            ("down", &self.down, [experts, hidden, intermediate]),
        ];
        for (name, weights, shape) in want {
            let actual = weights.shape()?;
            if actual != shape {
                return Err(ModelError::TensorShape {
                    name: format!("experts.{name}"),
                    expected: shape.to_vec(),
                    actual,
                });
            }
        }
        if !(1..=experts).contains(&self.top_k) {
            return Err(ModelError::Weights(format!("{} experts per token out of {experts}", self.top_k)));
        }
        Ok(())
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        let logits = self.router.forward(x)?;
        let probs = logits.astype(Dtype::F32)?.softmax(&[-1], true)?;
        let experts = probs.dim(-1)?;
        // The k largest probabilities' experts (in any order: the weighted sum does not care).
        let indices = probs.neg()?.argpartition(self.top_k - 1, -1)?.slice_axis(-1, 0, self.top_k)?;
        let mut weights = probs.take_along_axis(&indices, -1)?;
        if self.normalize {
            weights = weights.div(&weights.sum(&[-1], true)?)?;
        }
        debug_assert!(experts >= self.top_k);
        let weights = weights.astype(x.dtype())?;
        let x = x.expand_dims(&[-2, -3])?; // [B, L, 1, 1, D]
        let gate = self.gate.forward(&x, &indices)?;
        let up = self.up.forward(&x, &indices)?;
        let hidden = self.activation.apply(&gate)?.mul(&up)?;
        let out = self.down.forward(&hidden, &indices)?.squeeze(&[-2])?; // [B, L, k, D]
        Ok(out.mul(&weights.expand_dims(&[-1])?)?.sum(&[-2], false)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_bridge::quant::{QuantSpec, quantize};

    // 32 columns everywhere: MLX's smallest quantization group.
    const E: i32 = 4;
    const D: i32 = 32;
    const I: i32 = 32;

    fn values(n: i32, seed: i32) -> Vec<f32> {
        (0..n).map(|i| (((i * 41 + seed * 13) % 31) as f32 - 15.0) / 20.0).collect()
    }

    fn moe(quantized: bool, normalize: bool) -> SparseMoe {
        let experts = |rows: i32, cols: i32, seed: i32| {
            let w = Array::from_slice(&values(E * rows * cols, seed), &[E, rows, cols]).unwrap();
            if quantized {
                Experts::Quantized(quantize(&w, QuantSpec::affine(32, 8).unwrap()).unwrap())
            } else {
                Experts::dense(w).unwrap()
            }
        };
        let router = Linear::dense(Array::from_slice(&values(E * D, 9), &[E, D]).unwrap()).unwrap();
        SparseMoe {
            router,
            gate: experts(I, D, 1),
            up: experts(I, D, 2),
            down: experts(D, I, 3),
            activation: Activation::Silu,
            top_k: 2,
            normalize,
        }
    }

    /// transformers' loop: per token, softmax, top-k, optional renormalisation, weighted experts.
    fn reference(m: &SparseMoe, x: &[f32], tokens: usize) -> Vec<f64> {
        let dense = |e: &Experts| match e {
            Experts::Dense(wt) => wt.swapaxes(-1, -2).unwrap().contiguous().unwrap().to_vec::<f32>().unwrap(),
            Experts::Quantized(q) => q.dequantize().unwrap().to_vec::<f32>().unwrap(),
        };
        let (g, u, dn) = (dense(&m.gate), dense(&m.up), dense(&m.down));
        let router = m.router.dense_weight().unwrap().to_vec::<f32>().unwrap();
        let (d, i) = (D as usize, I as usize);
        let mut out = vec![0f64; tokens * d];
        for t in 0..tokens {
            let row = &x[t * d..(t + 1) * d];
            let logits: Vec<f64> =
                (0..E as usize).map(|e| (0..d).map(|c| (row[c] * router[e * d + c]) as f64).sum()).collect();
            let top = logits.iter().cloned().fold(f64::MIN, f64::max);
            let total: f64 = logits.iter().map(|l| (l - top).exp()).sum();
            let probs: Vec<f64> = logits.iter().map(|l| (l - top).exp() / total).collect();
            let mut order: Vec<usize> = (0..E as usize).collect();
            order.sort_by(|a, b| probs[*b].total_cmp(&probs[*a]));
            let chosen = &order[..m.top_k as usize];
            let norm: f64 = if m.normalize { chosen.iter().map(|&e| probs[e]).sum() } else { 1.0 };
            for &e in chosen {
                let h: Vec<f64> = (0..i)
                    .map(|j| {
                        let dot = |w: &[f32]| (0..d).map(|c| (row[c] * w[(e * i + j) * d + c]) as f64).sum::<f64>();
                        let gate = dot(&g);
                        gate / (1.0 + (-gate).exp()) * dot(&u)
                    })
                    .collect();
                for c in 0..d {
                    let y: f64 = (0..i).map(|j| h[j] * dn[(e * d + c) * i + j] as f64).sum();
                    out[t * d + c] += probs[e] / norm * y;
                }
            }
        }
        out
    }

    #[test]
    fn routing_and_weighting_follow_transformers() {
        let tokens = 5;
        let x = values(tokens as i32 * D, 4);
        let input = Array::from_slice(&x, &[1, tokens as i32, D]).unwrap();
        for normalize in [true, false] {
            let m = moe(false, normalize);
            m.validate(D, E, I).unwrap();
            let got = m.forward(&input).unwrap().to_vec::<f32>().unwrap();
            let want = reference(&m, &x, tokens);
            let worst = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
            assert!(worst < 1e-4, "normalize {normalize}: {worst}");
        }
    }

    #[test]
    fn quantized_experts_match_their_dequantized_weights() {
        let tokens = 3;
        let x = values(tokens as i32 * D, 5);
        let input = Array::from_slice(&x, &[1, tokens as i32, D]).unwrap();
        let m = moe(true, true);
        m.validate(D, E, I).unwrap();
        let got = m.forward(&input).unwrap().to_vec::<f32>().unwrap();
        let want = reference(&m, &x, tokens);
        let worst = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{worst}");
    }
}
