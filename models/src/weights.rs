//! Checkpoint weights: one or several safetensors files (a `model.safetensors.index.json` names the
//! shards), tensor names normalised by the model, shapes checked against the config, float
//! tensors converted to the plan's compute dtype, and MLX-quantized modules recognised by their
//! `.scales` tensor.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use mlx_bridge::block_quant::BlockMatrix;
use mlx_bridge::io::SafeTensors;
use mlx_bridge::quant::{QuantMode, QuantSpec, Quantized};
use mlx_bridge::{Array, Dtype};
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::hardware::{ExecutionPlan, HardwareClass};
use crate::layers::{Embedding, Linear};

/// How a checkpoint's quantized weights are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuantizedWeights {
    /// In MLX's affine layout, run by MLX's quantized matmul (GGUF types that map exactly; see
    /// `gguf::KQuants` for the rest).
    #[default]
    Mlx,
    /// Unpacked to dense compute-dtype weights at load.
    Dense,
    /// In their own block format (GGUF Q8_0..Q6_K, MLX affine 4/8-bit), run by mlxcel's CPU
    /// kernels (`mlx_bridge::block_quant`).
    Blocks,
}

impl QuantizedWeights {
    /// What `plan` asks for: `dequantize` first; then the CPU kernels, which exist for the CPU
    /// class only; else MLX's layout.
    pub fn for_plan(plan: &ExecutionPlan) -> Self {
        if plan.dequantize {
            QuantizedWeights::Dense
        } else if plan.cpu_kernels && matches!(plan.hardware_class, HardwareClass::Cpu { .. }) {
            QuantizedWeights::Blocks
        } else {
            QuantizedWeights::Mlx
        }
    }
}

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
    /// A `[rows, cols]` matrix kept in its block format (GGUF tensors under
    /// [`QuantizedWeights::Blocks`]).
    Blocks(BlockMatrix),
}

/// The tensors of a checkpoint, by normalised name.
pub struct WeightStore {
    files: Vec<SafeTensors>,
    index: HashMap<String, Source>,
    quantization: Option<QuantizationConfig>,
    dtype: Dtype,
    /// How quantized layers are held (see [`WeightStore::quantized_as`]).
    quantized: QuantizedWeights,
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
        Ok(WeightStore { files, index, quantization, dtype, quantized: QuantizedWeights::default() })
    }

    /// Tensors already in memory, by the model's own names.
    pub fn from_arrays(arrays: HashMap<String, Array>, quantization: Option<QuantizationConfig>, dtype: Dtype) -> Self {
        let index = arrays.into_iter().map(|(name, array)| (name, Source::Memory(array))).collect();
        WeightStore { files: Vec::new(), index, quantization, dtype, quantized: QuantizedWeights::default() }
    }

    /// Tensors in memory plus matrices kept in their block format, by the model's own names.
    pub(crate) fn from_arrays_and_blocks(
        arrays: HashMap<String, Array>,
        blocks: HashMap<String, BlockMatrix>,
        quantization: Option<QuantizationConfig>,
        dtype: Dtype,
    ) -> Self {
        let mut store = Self::from_arrays(arrays, quantization, dtype);
        store.index.extend(blocks.into_iter().map(|(name, matrix)| (name, Source::Blocks(matrix))));
        store.quantized = QuantizedWeights::Blocks;
        store
    }

    /// How quantized layers are to be held: dense weights in the compute dtype trade memory for
    /// speed where the backend's quantized matmul is slower than its dense one; block formats run
    /// on mlxcel's CPU kernels.
    pub fn quantized_as(mut self, quantized: QuantizedWeights) -> Self {
        self.quantized = quantized;
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

    /// The tensor as stored (lazy); a block matrix comes out dequantized to float32.
    pub fn raw(&self, name: &str) -> Result<Array> {
        match self.index.get(name) {
            Some(Source::File(file, original)) => Ok(self.files[*file].get(original)?),
            Some(Source::Memory(array)) => Ok(array.clone()),
            Some(Source::Blocks(matrix)) => Ok(matrix.dequantize()?),
            None => Err(ModelError::MissingTensor { name: name.to_string() }),
        }
    }

    /// `name` as a block matrix of `[rows, cols]`, if it is one.
    fn blocks(&self, name: &str, rows: i32, cols: i32) -> Result<Option<BlockMatrix>> {
        let Some(Source::Blocks(matrix)) = self.index.get(name) else { return Ok(None) };
        if (matrix.rows(), matrix.cols()) != (rows as usize, cols as usize) {
            return Err(ModelError::TensorShape {
                name: name.to_string(),
                expected: vec![rows, cols],
                actual: vec![matrix.rows() as i32, matrix.cols() as i32],
            });
        }
        Ok(Some(matrix.clone()))
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

    /// A `[out, in]` linear layer `prefix.weight`, quantized when `prefix.scales` exists or the
    /// weight is a block matrix.
    pub fn linear(&self, prefix: &str, out_dim: i32, in_dim: i32) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        if let Some(matrix) = self.blocks(&name, out_dim, in_dim)? {
            return Ok(Linear::Block(matrix));
        }
        match self.quantized(prefix, out_dim, in_dim)? {
            Some(q) => match self.quantized {
                QuantizedWeights::Dense => Linear::dense(q.dequantize()?.astype(self.dtype)?),
                QuantizedWeights::Blocks if block_format_fits(&q) => {
                    Ok(Linear::Block(BlockMatrix::from_affine(prefix, &q)?))
                }
                _ => Ok(Linear::Quantized(q)),
            },
            None => Linear::dense(self.tensor(&name, &[out_dim, in_dim])?),
        }
    }

    /// A `[vocab, dim]` embedding table `prefix.weight`, quantized when `prefix.scales` exists or
    /// the table is a block matrix.
    pub fn embedding(&self, prefix: &str, vocab: i32, dim: i32) -> Result<Embedding> {
        let name = format!("{prefix}.weight");
        if let Some(matrix) = self.blocks(&name, vocab, dim)? {
            return Ok(Embedding::Block(matrix));
        }
        match self.quantized(prefix, vocab, dim)? {
            Some(q) => match self.quantized {
                QuantizedWeights::Dense => Embedding::dense(q.dequantize()?.astype(self.dtype)?),
                QuantizedWeights::Blocks if block_format_fits(&q) => {
                    Ok(Embedding::Block(BlockMatrix::from_affine(prefix, &q)?))
                }
                _ => Ok(Embedding::Quantized(q)),
            },
            None => Embedding::dense(self.tensor(&name, &[vocab, dim])?),
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

/// Whether mlxcel's CPU kernels take this MLX-quantized matrix (affine 4 or 8 bits, groups of 32
/// or 64, as mlx-lm's converter writes); others stay with MLX's quantized matmul.
fn block_format_fits(q: &Quantized) -> bool {
    q.spec.mode == QuantMode::Affine && matches!(q.spec.bits, 4 | 8) && matches!(q.spec.group_size, 32 | 64)
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
