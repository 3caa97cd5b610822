//! Checkpoint folders to models: reads config.json, picks the architecture by `model_type`, and
//! loads the weights under the execution plan.

use std::path::{Path, PathBuf};

use mlx_bridge::Array;
use mlxcel_models::CausalLm;
use mlxcel_models::gemma3n::{self, Gemma3n, Logits};
use mlxcel_models::hardware::ExecutionPlan;
use mlxcel_models::layers::KvCache;
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("model folder {} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("{} is not a model folder: it has no config.json", .0.display())]
    NoConfig(PathBuf),
    #[error("{}: {message}", path.display())]
    BadConfig { path: PathBuf, message: String },
    #[error("{}: unsupported model_type {found:?}; supported: {}", path.display(), SUPPORTED.join(", "))]
    Unsupported { path: PathBuf, found: String },
    #[error("{}: {source}", path.display())]
    Model { path: PathBuf, source: mlxcel_models::ModelError },
}

/// The `model_type` values this build can load.
pub const SUPPORTED: &[&str] = &["gemma3n", "gemma3n_text"];

/// A loaded model of one of the supported architectures.
pub enum LoadedModel {
    Gemma3n(Gemma3n),
}

/// A checkpoint folder's parsed config.json and its `model_type`.
struct CheckpointConfig {
    path: PathBuf,
    root: Value,
    model_type: String,
}

impl CheckpointConfig {
    fn read(dir: &Path) -> Result<Self, LoadError> {
        if !dir.exists() {
            return Err(LoadError::NotFound(dir.to_path_buf()));
        }
        let path = dir.join("config.json");
        if !path.is_file() {
            return Err(LoadError::NoConfig(dir.to_path_buf()));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| LoadError::BadConfig { path: path.clone(), message: e.to_string() })?;
        let root: Value = serde_json::from_str(&text)
            .map_err(|e| LoadError::BadConfig { path: path.clone(), message: format!("invalid JSON: {e}") })?;
        let model_type = root.get("model_type").and_then(Value::as_str).unwrap_or("").to_string();
        Ok(CheckpointConfig { path, root, model_type })
    }

    fn unsupported(self) -> LoadError {
        LoadError::Unsupported { path: self.path, found: self.model_type }
    }
}

impl LoadedModel {
    pub fn load(dir: &Path, plan: &ExecutionPlan) -> Result<Self, LoadError> {
        let checkpoint = CheckpointConfig::read(dir)?;
        let config = &checkpoint.root;
        match checkpoint.model_type.as_str() {
            "gemma3n" | "gemma3n_text" => {
                let options = gemma3n::LoadOptions {
                    dtype: plan.compute_dtype,
                    decode_path: plan.decode_path,
                    pretranspose: plan.pretranspose,
                };
                Gemma3n::load(dir, config, options)
                    .map(LoadedModel::Gemma3n)
                    .map_err(|source| LoadError::Model { path: dir.to_path_buf(), source })
            }
            _ => Err(checkpoint.unsupported()),
        }
    }

    /// Teacher-forced logits `[L, vocab]` (float32) for `ids`, `chunk` tokens per forward step.
    pub fn teacher_forced_logits(&self, ids: &[i32], chunk: usize) -> Result<Array, mlxcel_models::ModelError> {
        match self {
            LoadedModel::Gemma3n(model) => model.teacher_forced_logits(ids, chunk),
        }
    }

    /// Logits for the last position of `ids` `[1, L]`, `[1, 1, vocab]`, continuing from `caches`.
    pub fn forward_last(&self, ids: &Array, caches: &mut [KvCache]) -> Result<Array, mlxcel_models::ModelError> {
        match self {
            LoadedModel::Gemma3n(model) => model.forward_logits(ids, caches, Logits::Last),
        }
    }

    pub fn make_caches(&self) -> Vec<KvCache> {
        match self {
            LoadedModel::Gemma3n(model) => model.make_caches(),
        }
    }

    /// The most positions the model supports.
    pub fn context_length(&self) -> usize {
        match self {
            LoadedModel::Gemma3n(model) => model.config().max_position_embeddings as usize,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            LoadedModel::Gemma3n(model) => model.config().vocab_size as usize,
        }
    }

    pub fn architecture(&self) -> &'static str {
        match self {
            LoadedModel::Gemma3n(_) => "gemma3n",
        }
    }
}

/// What `mlxcel inspect` reports about a checkpoint, read from config.json and the safetensors
/// headers (no weights are loaded).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    pub dir: PathBuf,
    pub model_type: String,
    pub layers: usize,
    pub hidden_size: i32,
    pub vocab_size: i32,
    pub context_length: i32,
    /// Logical parameters (a packed quantized weight counts its unpacked elements).
    pub parameters: u64,
    /// Tensor dtypes and how many tensors have each.
    pub dtypes: std::collections::BTreeMap<String, usize>,
    pub quantization: Option<Value>,
    pub weight_file_bytes: u64,
    #[serde(skip)]
    config: gemma3n::Config,
}

impl ModelSummary {
    pub fn read(dir: &Path) -> Result<Self, LoadError> {
        let checkpoint = CheckpointConfig::read(dir)?;
        let root = &checkpoint.root;
        let config = match checkpoint.model_type.as_str() {
            "gemma3n" | "gemma3n_text" => gemma3n::Config::from_json(root)
                .map_err(|message| LoadError::BadConfig { path: checkpoint.path.clone(), message })?,
            _ => return Err(checkpoint.unsupported()),
        };
        let quantization = root.get("quantization").or_else(|| root.get("quantization_config")).cloned();
        let bits_of = |name: &str| -> u64 {
            let module = name.trim_end_matches(".weight");
            quantization
                .as_ref()
                .and_then(|q| {
                    q.get(module).and_then(|o| o.get("bits")).or_else(|| q.get("bits")).and_then(Value::as_u64)
                })
                .unwrap_or(4)
        };
        let mut summary = ModelSummary {
            dir: dir.to_path_buf(),
            model_type: checkpoint.model_type.clone(),
            layers: config.num_layers,
            hidden_size: config.hidden_size,
            vocab_size: config.vocab_size,
            context_length: config.max_position_embeddings,
            parameters: 0,
            dtypes: Default::default(),
            quantization: quantization.clone(),
            weight_file_bytes: 0,
            config,
        };
        let files = mlxcel_models::weights::shard_paths(dir)
            .map_err(|source| LoadError::Model { path: dir.to_path_buf(), source })?;
        for file in &files {
            summary.weight_file_bytes += std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            let tensors = mlx_bridge::io::SafeTensors::load(file).map_err(|e| LoadError::Model {
                path: file.clone(),
                source: mlxcel_models::ModelError::Weights(e.to_string()),
            })?;
            let names = tensors.names();
            for name in &names {
                let array = tensors.get(name).map_err(|e| LoadError::Model {
                    path: file.clone(),
                    source: mlxcel_models::ModelError::Weights(e.to_string()),
                })?;
                *summary.dtypes.entry(array.dtype().name().to_string()).or_default() += 1;
                let scales = format!("{}.scales", name.trim_end_matches(".weight"));
                if name.ends_with(".scales") || name.ends_with(".biases") {
                    continue;
                }
                let elements = array.size() as u64;
                summary.parameters += if names.contains(&scales) { elements * 32 / bits_of(name) } else { elements };
            }
        }
        Ok(summary)
    }
}

impl ModelSummary {
    /// Bytes of keys and values after `context` positions in `dtype`.
    pub fn kv_cache_bytes(&self, context: usize, dtype: mlx_bridge::Dtype) -> usize {
        self.config.kv_cache_bytes(context, dtype.size_in_bytes())
    }
}
