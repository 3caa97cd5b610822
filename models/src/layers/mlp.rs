//! The gated MLP every family here uses, `down(act(gate(x)) * up(x))`, with an optional
//! activation-sparsity cut (Gemma 3n). Which code runs is decided once, at load, from the plan's
//! decode path and the weights' layout: on the fused path the whole block is one compiled graph
//! when its weights are dense, and the activation alone is compiled when they are quantized.

use mlx_bridge::fused::{self, FusedBlock};
use mlx_bridge::{Array, Dtype};

use crate::error::Result;
use crate::hardware::DecodePath;
use crate::layers::Linear;

/// The gate's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(x)` (SwiGLU: Llama, Qwen, Phi-3, SmolLM).
    Silu,
    /// The tanh approximation of GELU (GeGLU: Gemma).
    GeluTanh,
}

impl Activation {
    /// transformers' `hidden_act` / `hidden_activation` names.
    pub fn from_hf(name: &str) -> std::result::Result<Activation, String> {
        match name {
            "silu" | "swish" => Ok(Activation::Silu),
            "gelu_pytorch_tanh" | "gelu_tanh" => Ok(Activation::GeluTanh),
            other => Err(format!("activation {other:?} is not supported (silu, gelu_pytorch_tanh)")),
        }
    }

    /// Op by op (the split path).
    pub fn apply(self, x: &Array) -> Result<Array> {
        match self {
            Activation::Silu => Ok(x.mul(&x.sigmoid()?)?),
            Activation::GeluTanh => super::gelu_tanh(x),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// The whole block compiled (dense weights of either layout, each given as `W^T`).
    Block(FusedBlock),
    /// Matmuls as they are, the activation (and sparsity cut) compiled.
    Activation,
    /// Every op separately.
    Split,
}

pub struct GatedMlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    activation: Activation,
    /// `sqrt(2) * erfinv(2p - 1)`: keep only gate values above `mean + k * std` (sparsity `p`).
    sparsity: Option<Array>,
    kernel: Kernel,
}

impl GatedMlp {
    /// `sparsity` is the fraction of gate activations cut (0 or `None`: dense).
    pub fn new(
        gate: Linear,
        up: Linear,
        down: Linear,
        activation: Activation,
        sparsity: Option<f32>,
        path: DecodePath,
        dtype: Dtype,
    ) -> Result<GatedMlp> {
        let sparsity = match sparsity.filter(|p| *p > 0.0) {
            // As transformers: the standard normal quantile in float32, cast to the activations' dtype.
            Some(p) => {
                let k = Array::scalar(2.0 * p - 1.0).erfinv()?.mul_scalar(std::f64::consts::SQRT_2)?.astype(dtype)?;
                k.eval()?;
                Some(k)
            }
            None => None,
        };
        let kernel = match path {
            DecodePath::Split => Kernel::Split,
            DecodePath::Fused => match block(activation, sparsity.is_some(), &gate, &up, &down) {
                Some(block) => Kernel::Block(block),
                // SiLU has no compiled sparsity cut; no checkpoint needs one.
                None if activation == Activation::Silu && sparsity.is_some() => Kernel::Split,
                None => Kernel::Activation,
            },
        };
        Ok(GatedMlp { gate, up, down, activation, sparsity, kernel })
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        if let Kernel::Block(block) = self.kernel {
            let weights =
                [&self.gate, &self.up, &self.down].map(|l| l.right_operand().expect("checked at load").for_input(x));
            let mut inputs = vec![x, weights[0], weights[1], weights[2]];
            inputs.extend(self.sparsity.as_ref());
            return Ok(fused::call(block, &inputs)?.remove(0));
        }
        let mut projected = Linear::forward_many(&[&self.gate, &self.up], x)?.into_iter();
        let (gate, up) = (projected.next().expect("two outputs"), projected.next().expect("two outputs"));
        let hidden = || -> Result<Array> {
            Ok(match (self.kernel, &self.sparsity, self.activation) {
                (Kernel::Activation, Some(k), _) => {
                    fused::call(FusedBlock::GaussianTopkGeluGate, &[&gate, &up, k])?.remove(0)
                }
                (Kernel::Activation, None, Activation::GeluTanh) => fused::gelu_tanh_gate(&gate, &up)?,
                (Kernel::Activation, None, Activation::Silu) => fused::silu_gate(&gate, &up)?,
                (_, Some(k), activation) => activation.apply(&gaussian_topk(&gate, k)?)?.mul(&up)?,
                (_, None, activation) => activation.apply(&gate)?.mul(&up)?,
            })
        };
        // The sparsity cut needs the whole gate's statistics first, so only dense gates go into
        // the down product's kernel.
        match (self.kernel, &self.sparsity) {
            (Kernel::Activation, None) => self.down.forward_gated(self.activation, &gate, &up, hidden),
            _ => self.down.forward(&hidden()?),
        }
    }
}

/// The compiled block for dense weights (each given as `W^T`, so the block multiplies without a
/// transpose node per weight), with a block for the activation (and sparsity) asked for.
fn block(activation: Activation, sparse: bool, gate: &Linear, up: &Linear, down: &Linear) -> Option<FusedBlock> {
    if [gate, up, down].iter().any(|l| l.right_operand().is_none()) {
        return None;
    }
    Some(match (activation, sparse) {
        (Activation::GeluTanh, false) => FusedBlock::GeluGatedMlp,
        (Activation::GeluTanh, true) => FusedBlock::GeluGatedMlpSparse,
        (Activation::Silu, false) => FusedBlock::SiluGatedMlp,
        (Activation::Silu, true) => return None,
    })
}

/// `relu(x - (mean(x) + std(x) * k))` over the last axis (population std).
fn gaussian_topk(x: &Array, k: &Array) -> Result<Array> {
    let cutoff = x.mean(&[-1], true)?.add(&x.std(&[-1], true, 0)?.mul(k)?)?;
    Ok(x.sub(&cutoff)?.maximum_scalar(0.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_bridge::quant::{QuantSpec, quantize};

    fn weight(rows: i32, cols: i32, seed: i32) -> Array {
        let data: Vec<f32> = (0..rows * cols).map(|i| (((i * 31 + seed * 17) % 23) as f32 - 11.0) / 40.0).collect();
        Array::from_slice(&data, &[rows, cols]).unwrap()
    }

    fn input() -> Array {
        input_shaped(&[1, 2, 64])
    }

    fn input_shaped(shape: &[i32]) -> Array {
        let data: Vec<f32> = (0..2 * 64).map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0).collect();
        Array::from_slice(&data, shape).unwrap()
    }

    /// Every kernel of every layout computes the same block, for one sequence (the weights'
    /// `[1, in, out]` views) and for a batch of rows (`[in, out]`).
    #[test]
    fn fused_and_split_paths_agree_for_each_layout() {
        for activation in [Activation::Silu, Activation::GeluTanh] {
            for sparsity in [None, Some(0.6)] {
                if activation == Activation::Silu && sparsity.is_some() {
                    continue;
                }
                let make = |path, pretranspose: bool| {
                    let layer = |w: Array| {
                        let l = Linear::dense(w).unwrap();
                        if pretranspose { l.pretransposed().unwrap() } else { l }
                    };
                    GatedMlp::new(
                        layer(weight(32, 64, 1)),
                        layer(weight(32, 64, 2)),
                        layer(weight(64, 32, 3)),
                        activation,
                        sparsity,
                        path,
                        Dtype::F32,
                    )
                    .unwrap()
                };
                for shape in [[1, 2, 64], [2, 1, 64]] {
                    let x = input_shaped(&shape);
                    let reference = make(DecodePath::Split, false).forward(&x).unwrap().to_vec::<f32>().unwrap();
                    for (path, pretranspose) in
                        [(DecodePath::Fused, false), (DecodePath::Fused, true), (DecodePath::Split, true)]
                    {
                        let mlp = make(path, pretranspose);
                        assert!(matches!(mlp.kernel, Kernel::Block(_) | Kernel::Split));
                        let got = mlp.forward(&x).unwrap().to_vec::<f32>().unwrap();
                        let worst = got.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                        assert!(worst < 1e-5, "{activation:?} {sparsity:?} {path} {pretranspose} {shape:?}: {worst}");
                    }
                }
            }
        }
    }

    #[test]
    fn quantized_weights_compile_only_the_activation() {
        let spec = QuantSpec::affine(32, 8).unwrap();
        let q = |w: Array| Linear::Quantized(quantize(&w, spec).unwrap());
        let make = |path| {
            GatedMlp::new(
                q(weight(32, 64, 1)),
                q(weight(32, 64, 2)),
                q(weight(64, 32, 3)),
                Activation::Silu,
                None,
                path,
                Dtype::F32,
            )
            .unwrap()
        };
        let fused = make(DecodePath::Fused);
        assert_eq!(fused.kernel, Kernel::Activation);
        let a = fused.forward(&input()).unwrap().to_vec::<f32>().unwrap();
        let b = make(DecodePath::Split).forward(&input()).unwrap().to_vec::<f32>().unwrap();
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    }

    #[test]
    fn activation_names() {
        assert_eq!(Activation::from_hf("silu").unwrap(), Activation::Silu);
        assert_eq!(Activation::from_hf("gelu_pytorch_tanh").unwrap(), Activation::GeluTanh);
        assert!(Activation::from_hf("relu2").unwrap_err().contains("relu2"));
    }
}
