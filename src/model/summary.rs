//! What `mlxcel inspect` reports about a checkpoint, read from config.json and the safetensors
//! headers, or from a GGUF header (no weights are loaded).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlxcel_models::config::ModelConfig;
use mlxcel_models::families;
use mlxcel_models::gguf::GgufFile;
use serde_json::Value;

use super::{CheckpointConfig, LoadError, ModelSource, gguf_architecture, open_gguf};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    /// The folder or GGUF file.
    pub dir: PathBuf,
    pub model_type: String,
    pub format: &'static str,
    pub layers: usize,
    pub hidden_size: i32,
    pub vocab_size: i32,
    pub context_length: i32,
    /// Logical parameters (a packed quantized weight counts its unpacked elements).
    pub parameters: u64,
    /// Tensor dtypes (GGUF: block types) and how many tensors have each.
    pub dtypes: BTreeMap<String, usize>,
    pub quantization: Option<Value>,
    pub weight_file_bytes: u64,
    #[serde(skip)]
    config: std::sync::Arc<dyn ModelConfig>,
}

impl ModelSummary {
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        match ModelSource::locate(path)? {
            ModelSource::Folder(dir) => Self::read_folder(&dir),
            ModelSource::Gguf(file) => Self::read_gguf(&file),
        }
    }

    fn new(path: &Path, model_type: String, format: &'static str, config: Box<dyn ModelConfig>) -> Self {
        let dims = config.dimensions();
        let (layers, hidden_size, vocab_size, context_length) =
            (dims.layers, dims.hidden_size, dims.vocab_size, dims.context_length);
        ModelSummary {
            dir: path.to_path_buf(),
            model_type,
            format,
            layers,
            hidden_size,
            vocab_size,
            context_length,
            parameters: 0,
            dtypes: BTreeMap::new(),
            quantization: None,
            weight_file_bytes: 0,
            config: config.into(),
        }
    }

    fn read_gguf(path: &Path) -> Result<Self, LoadError> {
        let file = open_gguf(path)?;
        let model_error = |error| LoadError::Model { path: path.to_path_buf(), error };
        let architecture = gguf_architecture(&file);
        let parse = families::by_gguf_architecture(&architecture).and_then(|family| family.gguf_config);
        let Some(parse) = parse else {
            return Err(LoadError::UnsupportedGguf { path: path.to_path_buf(), found: architecture });
        };
        let config = parse(&file).map_err(model_error)?;
        let mut summary = Self::new(path, architecture, "gguf", config);
        summary.weight_file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        add_gguf_tensors(&mut summary, &file);
        let blocks: Vec<&String> =
            summary.dtypes.keys().filter(|t| !["F32", "F16", "BF16"].contains(&t.as_str())).collect();
        if !blocks.is_empty() {
            summary.quantization = Some(serde_json::json!({ "gguf_blocks": blocks }));
        }
        Ok(summary)
    }

    fn read_folder(dir: &Path) -> Result<Self, LoadError> {
        let checkpoint = CheckpointConfig::read(dir)?;
        let root = &checkpoint.root;
        let bad_config = |message| LoadError::BadConfig { path: checkpoint.path.clone(), message };
        let Some(family) = families::by_model_type(&checkpoint.model_type) else {
            return Err(checkpoint.unsupported());
        };
        let config = (family.config)(root).map_err(bad_config)?;
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
        let mut summary = Self::new(dir, checkpoint.model_type.clone(), "safetensors", config);
        summary.quantization = quantization.clone();
        let files = mlxcel_models::weights::shard_paths(dir)
            .map_err(|error| LoadError::Model { path: dir.to_path_buf(), error })?;
        for file in &files {
            summary.weight_file_bytes += std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            let weights_error = |e: mlx_bridge::Error| LoadError::Model {
                path: file.clone(),
                error: mlxcel_models::ModelError::Weights(e.to_string()),
            };
            let tensors = mlx_bridge::io::SafeTensors::load(file).map_err(weights_error)?;
            let names = tensors.names();
            for name in &names {
                let array = tensors.get(name).map_err(weights_error)?;
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

    /// Bytes of keys and values after `context` positions in `dtype`.
    pub fn kv_cache_bytes(&self, context: usize, dtype: mlx_bridge::Dtype) -> usize {
        self.config.kv_cache_bytes(context, dtype.size_in_bytes())
    }
}

fn add_gguf_tensors(summary: &mut ModelSummary, file: &GgufFile) {
    for info in &file.header().tensors {
        summary.parameters += info.elements();
        *summary.dtypes.entry(format!("{:?}", info.ggml_type)).or_default() += 1;
    }
}
