//! Checkpoints to models: a folder (config.json + safetensors) or a GGUF file, the architecture
//! picked by config.json's `model_type` or the GGUF's `general.architecture`, and the weights
//! loaded under the execution plan.

mod summary;

use std::path::{Path, PathBuf};

use mlx_bridge::Array;
use mlxcel_models::families;
use mlxcel_models::gguf::{GgufFile, Header, KQuants};
use mlxcel_models::hardware::ExecutionPlan;
use mlxcel_models::layers::KvCache;
use mlxcel_models::{CausalLm, LoadOptions, Logits};
use serde_json::Value;
use thiserror::Error;

pub use summary::ModelSummary;

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("model path {} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("{} is not a model: no config.json (a folder needs config.json and safetensors weights) and no single .gguf file", .0.display())]
    NoConfig(PathBuf),
    #[error("{}: {message}", path.display())]
    BadConfig { path: PathBuf, message: String },
    #[error("{}: unsupported model_type {found:?}; supported: {}", path.display(), families::model_types().join(", "))]
    Unsupported { path: PathBuf, found: String },
    #[error("{}: unsupported GGUF architecture {found:?}; supported: {}", path.display(), families::gguf_architectures().join(", "))]
    UnsupportedGguf { path: PathBuf, found: String },
    #[error("{}", located(path, error))]
    Gguf { path: PathBuf, error: mlxcel_models::gguf::GgufError },
    #[error("{}", located(path, error))]
    Model { path: PathBuf, error: mlxcel_models::ModelError },
}

/// `error` at `path`, the path said once: an error that names its own file (a config.json inside
/// the folder, the GGUF itself) is not prefixed with it again.
fn located(path: &Path, error: &dyn std::fmt::Display) -> String {
    let (path, message) = (path.display().to_string(), error.to_string());
    if message.contains(&path) { message } else { format!("{path}: {message}") }
}

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A checkpoint folder: config.json, safetensors, tokenizer files.
    Folder(PathBuf),
    /// A GGUF file: weights, config and tokenizer in one.
    Gguf(PathBuf),
}

impl ModelSource {
    /// A `.gguf` file, a folder with config.json, or a folder whose only model file is one `.gguf`.
    pub fn locate(path: &Path) -> Result<ModelSource, LoadError> {
        if !path.exists() {
            return Err(LoadError::NotFound(path.to_path_buf()));
        }
        if path.is_file() {
            return Ok(ModelSource::Gguf(path.to_path_buf()));
        }
        if path.join("config.json").is_file() {
            return Ok(ModelSource::Folder(path.to_path_buf()));
        }
        let ggufs: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|ext| ext == "gguf"))
                    .collect()
            })
            .unwrap_or_default();
        match ggufs.as_slice() {
            [one] => Ok(ModelSource::Gguf(one.clone())),
            _ => Err(LoadError::NoConfig(path.to_path_buf())),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Folder(path) | ModelSource::Gguf(path) => path,
        }
    }

    /// The folder that holds the model's side files (tokenizer, generation config, templates).
    pub fn dir(&self) -> &Path {
        match self {
            ModelSource::Folder(dir) => dir,
            ModelSource::Gguf(file) => file.parent().unwrap_or(Path::new(".")),
        }
    }
}

/// A loaded model of one of the supported architectures.
pub struct LoadedModel {
    model: Box<dyn CausalLm>,
    architecture: &'static str,
    /// The GGUF metadata, kept for the tokenizer and chat template it carries.
    gguf_header: Option<Header>,
}

/// A checkpoint folder's parsed config.json and its `model_type`.
pub(crate) struct CheckpointConfig {
    pub path: PathBuf,
    pub root: Value,
    pub model_type: String,
}

impl CheckpointConfig {
    pub(crate) fn read(dir: &Path) -> Result<Self, LoadError> {
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
        // A model_type that is not a string is shown as the JSON it is.
        let model_type = match root.get("model_type") {
            Some(Value::String(name)) => name.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        Ok(CheckpointConfig { path, root, model_type })
    }

    pub(crate) fn unsupported(self) -> LoadError {
        LoadError::Unsupported { path: self.path, found: self.model_type }
    }
}

pub(crate) fn open_gguf(path: &Path) -> Result<GgufFile, LoadError> {
    GgufFile::open(path).map_err(|error| LoadError::Gguf { path: path.to_path_buf(), error })
}

/// `general.architecture` of a GGUF file.
pub(crate) fn gguf_architecture(file: &GgufFile) -> String {
    file.header().get("general.architecture").and_then(|v| v.as_str()).unwrap_or("").to_string()
}

/// Applies the plan's process-wide runtime settings: which CPU kernels MLX graphs are built with,
/// their threads and activation precision.
/// The last model loaded decides for the process (MLX's graph builders are process-wide too).
pub fn apply_runtime_settings(plan: &ExecutionPlan) {
    mlx_bridge::fast::set_cpu_kernels(plan.cpu_kernels);
    mlx_bridge::fast::set_cuda_kernels(plan.cuda_kernels);
    // The plan's thread count is validated (1..=1024), which the kernels accept.
    let _ = mlx_bridge::block_quant::set_num_threads(plan.threads as usize);
    mlx_bridge::block_quant::set_default_precision(plan.activation_precision);
}

impl LoadedModel {
    pub fn load(source: &ModelSource, plan: &ExecutionPlan, k_quants: KQuants) -> Result<Self, LoadError> {
        apply_runtime_settings(plan);
        match source {
            ModelSource::Folder(dir) => Self::load_folder(dir, plan, k_quants),
            ModelSource::Gguf(path) => Self::load_gguf(path, plan, k_quants),
        }
    }

    fn load_folder(dir: &Path, plan: &ExecutionPlan, k_quants: KQuants) -> Result<Self, LoadError> {
        let checkpoint = CheckpointConfig::read(dir)?;
        let Some(family) = families::by_model_type(&checkpoint.model_type) else {
            return Err(checkpoint.unsupported());
        };
        let options = LoadOptions::from_plan(plan, k_quants);
        let model = (family.load)(dir, &checkpoint.root, options)
            .map_err(|error| LoadError::Model { path: dir.to_path_buf(), error })?;
        Ok(LoadedModel { model, architecture: family.name, gguf_header: None })
    }

    fn load_gguf(path: &Path, plan: &ExecutionPlan, k_quants: KQuants) -> Result<Self, LoadError> {
        let file = open_gguf(path)?;
        let architecture = gguf_architecture(&file);
        let (family, load) = match families::by_gguf_architecture(&architecture) {
            Some(family @ families::Family { load_gguf: Some(load), .. }) => (family, load),
            _ => return Err(LoadError::UnsupportedGguf { path: path.to_path_buf(), found: architecture }),
        };
        let model = load(&file, LoadOptions::from_plan(plan, k_quants))
            .map_err(|error| LoadError::Model { path: path.to_path_buf(), error })?;
        Ok(LoadedModel { model, architecture: family.name, gguf_header: Some(file.header().clone()) })
    }

    /// A model built elsewhere (random weights for benchmarks, a converted checkpoint).
    pub fn new(model: Box<dyn CausalLm>, architecture: &'static str) -> Self {
        LoadedModel { model, architecture, gguf_header: None }
    }

    /// The model behind the engine's interface.
    pub fn causal_lm(&self) -> &dyn CausalLm {
        self.model.as_ref()
    }

    /// The GGUF metadata, when the model came from a GGUF file.
    pub fn gguf_header(&self) -> Option<&Header> {
        self.gguf_header.as_ref()
    }

    /// Teacher-forced logits `[L, vocab]` (float32) for `ids`, `chunk` tokens per forward step.
    pub fn teacher_forced_logits(&self, ids: &[i32], chunk: usize) -> Result<Array, mlxcel_models::ModelError> {
        self.model.teacher_forced_logits(ids, chunk)
    }

    /// Logits for the last position of `ids` `[1, L]`, `[1, 1, vocab]`, continuing from `caches`.
    pub fn forward_last(&self, ids: &Array, caches: &mut [KvCache]) -> Result<Array, mlxcel_models::ModelError> {
        self.model.forward_logits(ids, caches, Logits::Last)
    }

    pub fn make_caches(&self) -> Vec<KvCache> {
        self.model.make_caches()
    }

    /// The most positions the model supports.
    pub fn context_length(&self) -> usize {
        self.model.context_length()
    }

    pub fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    pub fn architecture(&self) -> &'static str {
        self.architecture
    }
}
