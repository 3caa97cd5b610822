//! Checkpoint weights: one or several safetensors files (a `model.safetensors.index.json` names the
//! shards), tensor names normalised by the model, shapes checked against the config, float
//! tensors converted to the plan's compute dtype, and MLX-quantized modules recognised by their
//! `.scales` tensor.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use mlx_bridge::io::SafeTensors;
use mlx_bridge::quant::{QuantMode, QuantSpec, Quantized};
use mlx_bridge::{Array, Dtype};
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::layers::{Embedding, Linear};

/// Maps a checkpoint tensor name to the model's own name, or drops it (`None`).
pub type Rename<'a> = &'a dyn Fn(&str) -> Option<String>;

/// MLX's `quantization` block in config.json: a default and per-module overrides (`false` = not quantized).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizationConfig {
    pub default: QuantSpec,
    pub overrides: HashMap<String, Option<QuantSpec>>,
}

impl QuantizationConfig {
    /// Reads `quantization` (or `quantization_config`) from a parsed config.json; module paths
    /// in overrides are renamed like tensor names.
    pub fn from_config(config: &Value, rename: Rename<'_>) -> std::result::Result<Option<Self>, String> {
        let Some(block) = config.get("quantization").or_else(|| config.get("quantization_config")) else {
            return Ok(None);
        };
        let spec = |v: &Value| -> std::result::Result<QuantSpec, String> {
            let field = |name: &str| v.get(name).and_then(Value::as_i64).map(|n| n as i32);
            let (Some(group_size), Some(bits)) = (field("group_size"), field("bits")) else {
                return Err(format!("quantization entry {v} needs integer group_size and bits"));
            };
            let mode = v.get("mode").and_then(Value::as_str).unwrap_or("affine");
            let mode = QuantMode::parse(mode).ok_or_else(|| format!("unknown quantization mode {mode:?}"))?;
            Ok(QuantSpec { group_size, bits, mode })
        };
        let default = spec(block)?;
        let mut overrides = HashMap::new();
        if let Value::Object(entries) = block {
            for (key, value) in entries {
                let override_spec = match value {
                    Value::Object(_) => Some(spec(value)?),
                    Value::Bool(false) => None,
                    _ => continue,
                };
                if let Some(name) = rename(&format!("{key}.weight")) {
                    overrides.insert(name.trim_end_matches(".weight").to_string(), override_spec);
                }
            }
        }
        Ok(Some(QuantizationConfig { default, overrides }))
    }

    fn spec_for(&self, module: &str) -> Option<QuantSpec> {
        match self.overrides.get(module) {
            Some(spec) => *spec,
            None => Some(self.default),
        }
    }
}

/// Where a tensor lives.
enum Source {
    /// In safetensors file `files[.0]` under its original name `.1`.
    File(usize, String),
    /// Already in memory (random weights for benchmarks, converted checkpoints).
    Memory(Array),
}

/// The tensors of a checkpoint, by normalised name.
pub struct WeightStore {
    files: Vec<SafeTensors>,
    index: HashMap<String, Source>,
    quantization: Option<QuantizationConfig>,
    dtype: Dtype,
    /// Unpack quantized layers to dense compute-dtype weights at load (see [`WeightStore::dequantized`]).
    dequantize: bool,
}

impl WeightStore {
    pub fn open(
        dir: &Path,
        rename: Rename<'_>,
        quantization: Option<QuantizationConfig>,
        dtype: Dtype,
    ) -> Result<Self> {
        let paths = shard_paths(dir)?;
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (file_index, path) in paths.iter().enumerate() {
            let file = SafeTensors::load(path)
                .map_err(|e| ModelError::Weights(format!("cannot read {}: {e}", path.display())))?;
            for original in file.names() {
                if let Some(name) = rename(&original) {
                    if let Some(Source::File(_, first)) =
                        index.insert(name.clone(), Source::File(file_index, original.clone()))
                    {
                        return Err(ModelError::Weights(format!("tensors {first} and {original} both map to {name}")));
                    }
                }
            }
            files.push(file);
        }
        Ok(WeightStore { files, index, quantization, dtype, dequantize: false })
    }

    /// Tensors already in memory, by the model's own names.
    pub fn from_arrays(arrays: HashMap<String, Array>, quantization: Option<QuantizationConfig>, dtype: Dtype) -> Self {
        let index = arrays.into_iter().map(|(name, array)| (name, Source::Memory(array))).collect();
        WeightStore { files: Vec::new(), index, quantization, dtype, dequantize: false }
    }

    /// Loads quantized layers as dense weights in the compute dtype: a backend whose quantized
    /// matmul is slower than its dense one (MLX 0.32's CPU backend) trades memory for speed.
    pub fn dequantized(mut self, dequantize: bool) -> Self {
        self.dequantize = dequantize;
        self
    }

    pub fn compute_dtype(&self) -> Dtype {
        self.dtype
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn names(&self) -> BTreeSet<&str> {
        self.index.keys().map(String::as_str).collect()
    }

    /// The tensor as stored (lazy).
    pub fn raw(&self, name: &str) -> Result<Array> {
        match self.index.get(name) {
            Some(Source::File(file, original)) => Ok(self.files[*file].get(original)?),
            Some(Source::Memory(array)) => Ok(array.clone()),
            None => Err(ModelError::MissingTensor { name: name.to_string() }),
        }
    }

    /// A float tensor of exactly `shape`, in the compute dtype.
    pub fn tensor(&self, name: &str, shape: &[i32]) -> Result<Array> {
        let array = self.shaped(name, shape)?;
        if !array.dtype().is_floating() {
            return Err(ModelError::Weights(format!("tensor {name} has dtype {}, expected a float", array.dtype())));
        }
        Ok(if array.dtype() == self.dtype { array } else { array.astype(self.dtype)? })
    }

    fn shaped(&self, name: &str, shape: &[i32]) -> Result<Array> {
        let array = self.raw(name)?;
        if array.shape() != shape {
            return Err(ModelError::TensorShape {
                name: name.to_string(),
                expected: shape.to_vec(),
                actual: array.shape(),
            });
        }
        Ok(array)
    }

    /// A `[out, in]` linear layer `prefix.weight`, quantized when `prefix.scales` exists.
    pub fn linear(&self, prefix: &str, out_dim: i32, in_dim: i32) -> Result<Linear> {
        match self.quantized(prefix, out_dim, in_dim)? {
            Some(q) if self.dequantize => Linear::dense(q.dequantize()?.astype(self.dtype)?),
            Some(q) => Ok(Linear::Quantized(q)),
            None => Linear::dense(self.tensor(&format!("{prefix}.weight"), &[out_dim, in_dim])?),
        }
    }

    /// A `[vocab, dim]` embedding table `prefix.weight`, quantized when `prefix.scales` exists.
    pub fn embedding(&self, prefix: &str, vocab: i32, dim: i32) -> Result<Embedding> {
        match self.quantized(prefix, vocab, dim)? {
            Some(q) if self.dequantize => Embedding::dense(q.dequantize()?.astype(self.dtype)?),
            Some(q) => Ok(Embedding::Quantized(q)),
            None => Embedding::dense(self.tensor(&format!("{prefix}.weight"), &[vocab, dim])?),
        }
    }

    fn quantized(&self, prefix: &str, rows: i32, cols: i32) -> Result<Option<Quantized>> {
        let scales_name = format!("{prefix}.scales");
        if !self.contains(&scales_name) {
            return Ok(None);
        }
        let spec = self
            .quantization
            .as_ref()
            .ok_or_else(|| {
                ModelError::Weights(format!("{scales_name} exists but config.json has no quantization block"))
            })?
            .spec_for(prefix)
            .ok_or_else(|| {
                ModelError::Weights(format!("{scales_name} exists but the config marks {prefix} unquantized"))
            })?;
        if cols % spec.group_size != 0 || (cols * spec.bits) % 32 != 0 {
            return Err(ModelError::Weights(format!(
                "{prefix}: {cols} input columns do not fit {}-bit groups of {}",
                spec.bits, spec.group_size
            )));
        }
        let groups = cols / spec.group_size;
        let weight = self.shaped(&format!("{prefix}.weight"), &[rows, cols * spec.bits / 32])?;
        if weight.dtype() != Dtype::U32 {
            return Err(ModelError::Weights(format!("{prefix}.weight is {}, expected packed uint32", weight.dtype())));
        }
        let scales = self.tensor(&scales_name, &[rows, groups])?;
        let biases_name = format!("{prefix}.biases");
        let biases = match spec.mode {
            QuantMode::Affine => Some(self.tensor(&biases_name, &[rows, groups])?),
            _ => None,
        };
        Ok(Some(Quantized { weight, scales, biases, spec }))
    }
}

/// A tensor name with the text model's prefix removed, whichever layout saved it: HF multimodal
/// (`model.language_model.*`), mlx-vlm (`language_model.model.*`) or text-only (`model.*`).
pub fn text_model_name(name: &str) -> &str {
    ["model.language_model.", "language_model.model.", "language_model.", "model."]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name)
}

/// The safetensors files of a checkpoint: the shards an index names, else every `*.safetensors`.
pub fn shard_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let index_path = dir.join("model.safetensors.index.json");
    if index_path.is_file() {
        let text =
            fs::read_to_string(&index_path).map_err(|error| ModelError::Io { path: index_path.clone(), error })?;
        let index: Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Weights(format!("{}: {e}", index_path.display())))?;
        let map = index
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| ModelError::Weights(format!("{} has no weight_map", index_path.display())))?;
        let shards: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        let paths: Vec<PathBuf> = shards.iter().map(|shard| dir.join(shard)).collect();
        if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
            return Err(ModelError::Weights(format!("shard {} named by the index is missing", missing.display())));
        }
        return Ok(paths);
    }
    let entries = fs::read_dir(dir).map_err(|error| ModelError::Io { path: dir.to_path_buf(), error })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "safetensors"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(ModelError::Weights(format!("no .safetensors files in {}", dir.display())));
    }
    Ok(paths)
}
