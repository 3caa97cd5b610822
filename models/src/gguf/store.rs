//! A GGUF file's tensors as a [`WeightStore`], under the model's own tensor names.
//!
//! Exactly-mappable types stay quantized (their MLX affine spec is recorded per module, since a
//! GGUF mixes 4-, 5- and 8-bit tensors): Q8_0, Q4_0/1, Q5_0/1 and, by default, Q4_K and Q5_K.
//! [`KQuants`] says what happens to the K types.

use std::collections::HashMap;

use mlx_bridge::block_quant::BlockMatrix;
use mlx_bridge::quant::{self, QuantSpec, Quantized};
use mlx_bridge::{Array, Dtype};

use super::{BlockRows, GgmlType, GgufFile, GgufTensor};
use crate::error::{ModelError, Result};
use crate::weights::{QuantizationConfig, QuantizedWeights, Rename, WeightStore};

/// What to do with K-quant tensors (Q4_K, Q5_K, Q6_K) on the MLX path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KQuants {
    /// Q4_K and Q5_K stay quantized as exact MLX affine 4-/5-bit groups of 32 (their 32-value
    /// sub-blocks are affine groups); Q6_K, whose 16-value sub-blocks MLX has no group size for,
    /// is decoded to dense weights.
    #[default]
    Exact,
    /// Decode every K type to dense weights: the file's values, at 4-8x its memory.
    Dequantize,
    /// Decode, then quantize again with MLX's affine scheme: close to the file's size, but a
    /// second rounding on top of the file's own.
    Requantize(QuantSpec),
}

impl KQuants {
    /// `exact`, `dequantize`, `q8` or `q4` (MLX affine, group 32, matching the exact GGUF types'
    /// groups).
    pub fn parse(name: &str) -> Option<KQuants> {
        match name {
            "exact" => Some(KQuants::Exact),
            "dequantize" | "dense" => Some(KQuants::Dequantize),
            "q8" => QuantSpec::affine(32, 8).ok().map(KQuants::Requantize),
            "q4" => QuantSpec::affine(32, 4).ok().map(KQuants::Requantize),
            _ => None,
        }
    }
}

/// Changes a tensor on its way in (e.g. undoing a layout llama.cpp's converter applied).
pub type Transform<'a> = &'a dyn Fn(&str, GgufTensor) -> Result<GgufTensor>;

/// Loads every tensor `rename` keeps (eagerly: GGUF blocks are converted on the host, one tensor at
/// a time, each tensor's file pages released once converted). Under
/// [`QuantizedWeights::Blocks`] the block-quantized matrices stay in their format for mlxcel's
/// CPU kernels; otherwise they are held as `quantized` and `k_quants` say.
pub fn weight_store(
    file: &GgufFile,
    rename: Rename<'_>,
    transform: Transform<'_>,
    k_quants: KQuants,
    quantized: QuantizedWeights,
    dtype: Dtype,
) -> Result<WeightStore> {
    check_block_tensors(file, rename)?;
    let mut arrays = HashMap::new();
    let mut blocks = HashMap::new();
    let mut specs: HashMap<String, Option<QuantSpec>> = HashMap::new();
    let tensor_error = |name: &str, e: &dyn std::fmt::Display| {
        ModelError::Weights(format!("{}: tensor {name}: {e}", file.path().display()))
    };
    for info in &file.header().tensors {
        let Some(name) = rename(&info.name) else { continue };
        let block_rows = file.block_rows(info).filter(|_| quantized == QuantizedWeights::Blocks);
        let loaded = match block_rows {
            Some(rows) => Ok(GgufTensor::Blocks(rows)),
            None if k_quants == KQuants::Exact => file.load_tensor_exact(info),
            None => file.load_tensor(info),
        };
        let tensor = loaded.map_err(|e| tensor_error(&info.name, &e))?;
        let is_k_quant = matches!(info.ggml_type, GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K);
        let tensor = match (tensor, k_quants) {
            (GgufTensor::Dense(dense), KQuants::Requantize(spec)) if is_k_quant && dense.ndim() == 2 => {
                GgufTensor::Quantized(quant::quantize(&dense, spec)?)
            }
            (tensor, _) => tensor,
        };
        let tensor = transform(&name, tensor)?;
        if arrays.contains_key(&name) || blocks.contains_key(&name) {
            return Err(ModelError::Weights(format!("two GGUF tensors map to {name}")));
        }
        match tensor {
            GgufTensor::Dense(array) => {
                // Copy out of the map now, so the file's pages can go.
                array.eval()?;
                arrays.insert(name, array);
            }
            GgufTensor::Blocks(rows) => {
                let bytes = file.block_bytes(info, &rows);
                let matrix = BlockMatrix::from_gguf(&info.name, rows.format, &bytes, rows.rows, rows.cols)
                    .map_err(|e| tensor_error(&info.name, &e))?;
                matrix.packed().eval()?;
                blocks.insert(name, matrix);
            }
            GgufTensor::Quantized(Quantized { weight, scales, biases, spec }) => {
                let module = name.strip_suffix(".weight").ok_or_else(|| {
                    ModelError::Weights(format!("quantized GGUF tensor {} is not a .weight", info.name))
                })?;
                arrays.insert(format!("{module}.scales"), scales);
                if let Some(biases) = biases {
                    arrays.insert(format!("{module}.biases"), biases);
                }
                specs.insert(module.to_string(), Some(spec));
                mlx_bridge::eval(&[&weight])?;
                arrays.insert(name, weight);
            }
        }
        file.release_tensor_pages(info);
    }
    let quantization =
        specs.values().flatten().next().copied().map(|default| QuantizationConfig { default, overrides: specs });
    let store = if blocks.is_empty() {
        WeightStore::from_arrays(arrays, quantization, dtype)
    } else {
        WeightStore::from_arrays_and_blocks(arrays, blocks, quantization, dtype)
    };
    Ok(store.quantized_as(quantized))
}

/// Every `blk.N.*` tensor must lie in a block the metadata declares and be one the model uses: a
/// `block_count` below the tensors' layers would load a shallower model than the file holds, the
/// deeper blocks silently unused.
fn check_block_tensors(file: &GgufFile, rename: Rename<'_>) -> Result<()> {
    let architecture = file.header().get("general.architecture").and_then(|v| v.as_str()).unwrap_or("");
    let key = format!("{architecture}.block_count");
    let blocks = metadata_int(file, &key)?;
    let invalid = |message: String| ModelError::Config { path: file.path().to_path_buf(), message };
    for info in &file.header().tensors {
        let Some(block) = info.name.strip_prefix("blk.").and_then(|rest| rest.split_once('.')) else { continue };
        let index: i64 = block.0.parse().map_err(|_| invalid(format!("tensor {} has no block number", info.name)))?;
        if let Some(blocks) = blocks.filter(|&blocks| index >= blocks) {
            return Err(invalid(format!("tensor {} belongs to block {index}, but {key} is {blocks}", info.name)));
        }
        if rename(&info.name).is_none() {
            return Err(invalid(format!("tensor {} is not one the {architecture} model uses", info.name)));
        }
    }
    Ok(())
}

/// Undoes llama.cpp's Q/K row permutation for `llama`-architecture files: its converter
/// interleaves each head's two rotary halves so that ggml's adjacent-pair RoPE applies; the
/// models here (like transformers) rotate halves. Works on packed quantized rows too, since the
/// permutation only moves whole rows.
pub fn unpermute_rope_rows(tensor: GgufTensor, heads: i32) -> Result<GgufTensor> {
    let rows = |array: Array| -> Result<Array> {
        let shape = array.shape();
        let (out, rest) = (shape[0], &shape[1..]);
        if heads <= 0 || out % (2 * heads) != 0 {
            return Err(ModelError::Weights(format!("cannot split {out} rows into {heads} rotary heads")));
        }
        let mut split = vec![heads, out / heads / 2, 2];
        split.extend_from_slice(rest);
        let mut axes: Vec<i32> = (0..split.len() as i32).collect();
        axes.swap(1, 2);
        Ok(array.reshape(&split)?.transpose(&axes)?.reshape(&shape)?)
    };
    Ok(match tensor {
        GgufTensor::Blocks(BlockRows { format, rows: count, cols, order }) => {
            let count_i32 = count as i32;
            if heads <= 0 || count_i32 % (2 * heads) != 0 {
                return Err(ModelError::Weights(format!("cannot split {count} rows into {heads} rotary heads")));
            }
            // The dense case's reshape [heads, half, 2] -> transpose -> [heads, 2, half], as an
            // order of whole rows: new row (h, b, a) is stored row (h, a, b).
            let half = count / heads as usize / 2;
            let stored = |new: usize| {
                let (h, rest) = (new / (2 * half), new % (2 * half));
                let (b, a) = (rest / half, rest % half);
                h * 2 * half + a * 2 + b
            };
            let order = (0..count).map(|new| order.as_ref().map_or(stored(new), |old| old[stored(new)])).collect();
            GgufTensor::Blocks(BlockRows { format, rows: count, cols, order: Some(order) })
        }
        GgufTensor::Dense(array) => GgufTensor::Dense(rows(array)?),
        GgufTensor::Quantized(q) => GgufTensor::Quantized(Quantized {
            weight: rows(q.weight)?,
            scales: rows(q.scales)?,
            biases: q.biases.map(rows).transpose()?,
            spec: q.spec,
        }),
    })
}

/// A metadata value as an integer, or a config error naming the key.
pub fn metadata_int(file: &GgufFile, key: &str) -> Result<Option<i64>> {
    match file.header().get(key) {
        None => Ok(None),
        Some(value) => value.as_i64().map(Some).ok_or_else(|| bad_metadata(file, key, "an integer")),
    }
}

pub fn metadata_float(file: &GgufFile, key: &str) -> Result<Option<f64>> {
    match file.header().get(key) {
        None => Ok(None),
        Some(value) => value.as_f64().map(Some).ok_or_else(|| bad_metadata(file, key, "a number")),
    }
}

fn bad_metadata(file: &GgufFile, key: &str, expected: &str) -> ModelError {
    ModelError::Config { path: file.path().to_path_buf(), message: format!("metadata {key} is not {expected}") }
}
