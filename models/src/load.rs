//! How a model holds its weights (from the execution plan), and the one place that reads a
//! family's layers out of a [`WeightStore`] under those options: pre-transposition, the split of
//! fused checkpoint tensors, biases, norms and expert stacks.

use mlx_bridge::quant::{QuantSpec, Quantized};
use mlx_bridge::{Array, Dtype};

use crate::error::{ModelError, Result};
use crate::gguf::KQuants;
use crate::hardware::DecodePath;
use crate::layers::{Embedding, Experts, Linear, RmsNorm};
use crate::weights::{QuantizationConfig, QuantizedWeights, WeightStore};

/// How the weights are held and which decode path runs; the same for every family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// The compute dtype of activations and unquantized weights.
    pub dtype: Dtype,
    /// `Fused`: compiled gated-MLP blocks (and a family's own compiled blocks); `Split`: op by op.
    pub decode_path: DecodePath,
    /// Dense projection and LM-head weights stored `[in, out]`, contiguous.
    pub pretranspose: bool,
    /// How quantized layers are held: dense, MLX's layout, or block formats for the CPU kernels.
    pub quantized: QuantizedWeights,
    /// What GGUF K-quant tensors become.
    pub k_quants: KQuants,
    /// Decode steps run each layer's work around its cache as compiled graphs.
    pub compiled_decode: bool,
}

impl LoadOptions {
    /// The options an execution plan implies.
    pub fn from_plan(plan: &crate::hardware::ExecutionPlan, k_quants: KQuants) -> LoadOptions {
        LoadOptions {
            dtype: plan.compute_dtype,
            decode_path: plan.decode_path,
            pretranspose: plan.pretranspose,
            quantized: QuantizedWeights::for_plan(plan),
            k_quants,
            compiled_decode: plan.compiled_decode,
        }
    }
}

/// Reads layers from a store under the load options.
pub struct Loader<'a> {
    pub store: &'a WeightStore,
    pub options: LoadOptions,
    quantization: Option<&'a QuantizationConfig>,
}

impl<'a> Loader<'a> {
    /// `quantization`: the checkpoint's MLX quantization block, for stacked expert tensors (a
    /// store answers for 2-D layers itself).
    pub fn new(store: &'a WeightStore, options: LoadOptions, quantization: Option<&'a QuantizationConfig>) -> Self {
        Loader { store, options, quantization }
    }

    fn arranged(&self, layer: Linear) -> Result<Linear> {
        if self.options.pretranspose { layer.pretransposed() } else { Ok(layer) }
    }

    /// The `[out, in]` layer `name` (`name.weight`, quantized when `name.scales` exists).
    pub fn linear(&self, name: &str, out_dim: i32, in_dim: i32) -> Result<Linear> {
        self.arranged(self.store.linear(name, out_dim, in_dim)?)
    }

    /// A checkpoint tensor that stacks several layers' rows (Phi-3's `qkv_proj`, `gate_up_proj`),
    /// split into one layer per part at load: every family then runs the same separate
    /// projections, which [`Linear::forward_many`] can still batch, instead of a fused matmul
    /// followed by slices.
    pub fn split_linear(&self, name: &str, parts: &[i32], in_dim: i32) -> Result<Vec<Linear>> {
        let whole = self.store.linear(name, parts.iter().sum(), in_dim)?;
        let mut start = 0;
        let mut layers = Vec::with_capacity(parts.len());
        for &rows in parts {
            let (from, to) = (start, start + rows);
            let rows_of = |a: &Array| a.slice_axis(0, from, to);
            let part = match &whole {
                Linear::Dense { weight, .. } => Linear::dense(rows_of(weight)?)?,
                Linear::Quantized(q) => Linear::Quantized(Quantized {
                    weight: rows_of(&q.weight)?,
                    scales: rows_of(&q.scales)?,
                    biases: q.biases.as_ref().map(rows_of).transpose()?,
                    spec: q.spec,
                }),
                other => Linear::dense(rows_of(&other.dense_weight()?)?)?,
            };
            layers.push(self.arranged(part)?);
            start = to;
        }
        Ok(layers)
    }

    /// Layers that read the same input (Q/K/V, gate/up), stacked into one product on the fused
    /// path ([`Linear::stacked`]: a graph node per step instead of one per layer, which on CUDA
    /// is 4-9 µs of MLX host time each); the split path keeps them separate.
    pub fn grouped(&self, layers: Vec<Linear>) -> Result<Vec<Linear>> {
        match self.options.decode_path {
            DecodePath::Fused => Linear::stacked(layers),
            DecodePath::Split => Ok(layers),
        }
    }

    /// `name.bias` of `[dim]`, when the checkpoint has one.
    pub fn bias(&self, name: &str, dim: i32) -> Result<Option<Array>> {
        let name = format!("{name}.bias");
        if !self.store.contains(&name) {
            return Ok(None);
        }
        let bias = self.store.tensor(&name, &[dim])?;
        bias.eval()?;
        Ok(Some(bias))
    }

    pub fn tensor(&self, name: &str, shape: &[i32]) -> Result<Array> {
        self.store.tensor(name, shape)
    }

    /// RMSNorm `name.weight` of `[dim]`; `one_plus` for checkpoints that store `w - 1` (Gemma).
    pub fn norm(&self, name: &str, dim: i32, eps: f32, one_plus: bool) -> Result<RmsNorm> {
        let weight = self.store.tensor(&format!("{name}.weight"), &[dim])?;
        if one_plus { RmsNorm::one_plus(weight, eps) } else { Ok(RmsNorm::new(weight, eps)) }
    }

    /// The `[vocab, dim]` embedding table; `head` when it also serves as the (tied) LM head.
    pub fn embedding(&self, name: &str, vocab: i32, dim: i32, head: bool) -> Result<Embedding> {
        let table = self.store.embedding(name, vocab, dim)?;
        if head && self.options.pretranspose { table.with_pretransposed_head() } else { Ok(table) }
    }

    /// A stack of expert matrices `name.weight` of `[experts, out, in]`, dense or quantized.
    pub fn experts(&self, name: &str, experts: i32, out_dim: i32, in_dim: i32) -> Result<Experts> {
        let scales_name = format!("{name}.scales");
        if !self.store.contains(&scales_name) {
            return Experts::dense(self.store.tensor(&format!("{name}.weight"), &[experts, out_dim, in_dim])?);
        }
        let weight = self.store.raw(&format!("{name}.weight"))?;
        let scales = self.store.raw(&scales_name)?;
        let biases_name = format!("{name}.biases");
        let has_biases = self.store.contains(&biases_name);
        let spec = match self.quantization {
            Some(q) => q.overrides.get(name).copied().unwrap_or(Some(q.default)),
            // A GGUF's exact block types: the layout says the spec.
            None => infer_spec(&weight, &scales, in_dim, has_biases),
        }
        .ok_or_else(|| ModelError::Weights(format!("{scales_name}: cannot tell how {name} is quantized")))?;
        let groups = in_dim / spec.group_size;
        let packed = [experts, out_dim, in_dim * spec.bits / 32];
        if weight.shape() != packed || weight.dtype() != Dtype::U32 {
            return Err(ModelError::TensorShape {
                name: format!("{name}.weight"),
                expected: packed.to_vec(),
                actual: weight.shape(),
            });
        }
        let q = Quantized {
            weight,
            scales: self.store.tensor(&scales_name, &[experts, out_dim, groups])?,
            biases: if has_biases { Some(self.store.tensor(&biases_name, &[experts, out_dim, groups])?) } else { None },
            spec,
        };
        // Expert stacks have no block-format kernel: under `Blocks` they run as MLX's.
        if self.options.quantized == QuantizedWeights::Dense {
            return Experts::dense(q.dequantize()?.astype(self.options.dtype)?);
        }
        mlx_bridge::eval(&[&q.weight, &q.scales])?;
        Ok(Experts::Quantized(q))
    }
}

/// Group size and bits from the packed shapes (GGUF files record no quantization block).
fn infer_spec(weight: &Array, scales: &Array, in_dim: i32, affine: bool) -> Option<QuantSpec> {
    let (packed, groups) = (*weight.shape().last()?, *scales.shape().last()?);
    if groups <= 0 || in_dim % groups != 0 || (packed * 32) % in_dim != 0 || !affine {
        return None;
    }
    // Only layouts MLX's kernels take: a wrong `in_dim` gives an unsupported group or width.
    QuantSpec::affine(in_dim / groups, packed * 32 / in_dim).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use mlx_bridge::quant::quantize;

    use super::*;

    fn options(pretranspose: bool) -> LoadOptions {
        LoadOptions {
            dtype: Dtype::F32,
            decode_path: DecodePath::Fused,
            pretranspose,
            quantized: QuantizedWeights::Mlx,
            k_quants: KQuants::Dequantize,
            compiled_decode: false,
        }
    }

    /// A fused `[12, 64]` tensor split into rows 0..4, 4..8, 8..12 computes what each block does.
    #[test]
    fn fused_checkpoint_tensors_split_into_their_parts() {
        let data: Vec<f32> = (0..12 * 64).map(|i| ((i * 7 % 19) as f32 - 9.0) / 10.0).collect();
        let whole = Array::from_slice(&data, &[12, 64]).unwrap();
        let x = Array::from_slice(&data[..64], &[1, 64]).unwrap();
        let full = x.matmul(&whole.t().unwrap()).unwrap().to_vec::<f32>().unwrap();
        let spec = QuantSpec::affine(32, 8).unwrap();
        let q = quantize(&whole, spec).unwrap();
        let quantized = HashMap::from([
            ("qkv.weight".to_string(), q.weight.clone()),
            ("qkv.scales".to_string(), q.scales.clone()),
            ("qkv.biases".to_string(), q.biases.clone().unwrap()),
        ]);
        let config = QuantizationConfig { default: spec, overrides: HashMap::new() };
        let reference = Linear::Quantized(q).forward(&x).unwrap().to_vec::<f32>().unwrap();
        for (arrays, quantization, want) in [
            (HashMap::from([("qkv.weight".to_string(), whole.clone())]), None, &full),
            (quantized, Some(config), &reference),
        ] {
            for pretranspose in [false, true] {
                let store = WeightStore::from_arrays(arrays.clone(), quantization.clone(), Dtype::F32);
                let parts =
                    Loader::new(&store, options(pretranspose), None).split_linear("qkv", &[4, 4, 4], 64).unwrap();
                let got: Vec<f32> = Linear::forward_many(&parts.iter().collect::<Vec<_>>(), &x)
                    .unwrap()
                    .iter()
                    .flat_map(|y| y.to_vec::<f32>().unwrap())
                    .collect();
                let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(worst < 1e-5, "pretranspose {pretranspose}: {worst}");
            }
        }
    }

    #[test]
    fn quantized_expert_stacks_read_their_spec_from_the_layout() {
        let data: Vec<f32> = (0..2 * 4 * 64).map(|i| ((i * 5 % 23) as f32 - 11.0) / 12.0).collect();
        let w = Array::from_slice(&data, &[2, 4, 64]).unwrap();
        let q = quantize(&w, QuantSpec::affine(32, 4).unwrap()).unwrap();
        let arrays = HashMap::from([
            ("e.weight".to_string(), q.weight.clone()),
            ("e.scales".to_string(), q.scales.clone()),
            ("e.biases".to_string(), q.biases.clone().unwrap()),
        ]);
        let store = WeightStore::from_arrays(arrays, None, Dtype::F32);
        match Loader::new(&store, options(false), None).experts("e", 2, 4, 64).unwrap() {
            Experts::Quantized(got) => assert_eq!((got.spec.group_size, got.spec.bits), (32, 4)),
            other => panic!("expected quantized experts, got {other:?}"),
        }
        assert!(Loader::new(&store, options(false), None).experts("e", 2, 4, 32).is_err());
    }
}
