//! Checkpoint folders to models: reads config.json, picks the architecture by `model_type`, and
//! loads the weights under the execution plan.

use std::path::{Path, PathBuf};

use mlx_bridge::Array;
use mlxcel_models::gemma3n::{self, Gemma3n};
use mlxcel_models::hardware::ExecutionPlan;
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

impl LoadedModel {
    pub fn load(dir: &Path, plan: &ExecutionPlan) -> Result<Self, LoadError> {
        if !dir.exists() {
            return Err(LoadError::NotFound(dir.to_path_buf()));
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(LoadError::NoConfig(dir.to_path_buf()));
        }
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| LoadError::BadConfig { path: config_path.clone(), message: e.to_string() })?;
        let config: Value = serde_json::from_str(&text)
            .map_err(|e| LoadError::BadConfig { path: config_path.clone(), message: format!("invalid JSON: {e}") })?;
        let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or("");
        match model_type {
            "gemma3n" | "gemma3n_text" => {
                let options = gemma3n::LoadOptions {
                    dtype: plan.compute_dtype,
                    decode_path: plan.decode_path,
                    pretranspose: plan.pretranspose,
                };
                Gemma3n::load(dir, &config, options)
                    .map(LoadedModel::Gemma3n)
                    .map_err(|source| LoadError::Model { path: dir.to_path_buf(), source })
            }
            other => Err(LoadError::Unsupported { path: config_path, found: other.to_string() }),
        }
    }

    /// Teacher-forced logits `[L, vocab]` (float32) for `ids`, `chunk` tokens per forward step.
    pub fn teacher_forced_logits(&self, ids: &[i32], chunk: usize) -> Result<Array, mlxcel_models::ModelError> {
        match self {
            LoadedModel::Gemma3n(model) => model.teacher_forced_logits(ids, chunk),
        }
    }

    pub fn architecture(&self) -> &'static str {
        match self {
            LoadedModel::Gemma3n(_) => "gemma3n",
        }
    }
}
