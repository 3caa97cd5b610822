//! Config checks every family shares, the figures `inspect` reports for any family, and typed
//! reads of a GGUF file's `{architecture}.*` metadata.

use std::fmt::Debug;

use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::gguf::{self, GgufFile};

/// What a summary reports about a model, whatever its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimensions {
    pub layers: usize,
    pub hidden_size: i32,
    pub vocab_size: i32,
    pub context_length: i32,
}

/// A parsed, validated config of any family.
pub trait ModelConfig: Debug + Send + Sync {
    fn dimensions(&self) -> Dimensions;

    /// Bytes of keys and values after `context` positions.
    fn kv_cache_bytes(&self, context: usize, bytes_per_element: usize) -> usize;
}

/// The first field that is not positive, named.
pub fn check_positive(fields: &[(&str, i32)]) -> std::result::Result<(), String> {
    match fields.iter().find(|(_, value)| *value <= 0) {
        Some((name, value)) => Err(format!("{name} must be positive, got {value}")),
        None => Ok(()),
    }
}

/// Grouped-query attention needs whole groups of query heads per key head.
pub fn check_heads(heads: i32, kv_heads: i32) -> std::result::Result<(), String> {
    check_positive(&[("num_attention_heads", heads), ("num_key_value_heads", kv_heads)])?;
    if heads % kv_heads != 0 {
        return Err(format!("num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}"));
    }
    Ok(())
}

/// Whether each layer uses sliding-window attention: transformers' `layer_types`
/// (`sliding_attention` / `full_attention`), or `default` when a config has none.
pub fn sliding_layers(
    layer_types: Option<&[String]>,
    layers: usize,
    default: impl Fn(usize) -> bool,
) -> std::result::Result<Vec<bool>, String> {
    let Some(types) = layer_types else { return Ok((0..layers).map(default).collect()) };
    if types.len() != layers {
        return Err(format!("layer_types has {} entries for {layers} layers", types.len()));
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            "sliding_attention" => Ok(true),
            "full_attention" => Ok(false),
            other => Err(format!("unknown layer type {other:?}")),
        })
        .collect()
}

/// The text part of a config.json: `text_config` in multimodal saves, else the root.
pub fn text_config(root: &Value) -> &Value {
    root.get("text_config").filter(|t| t.is_object()).unwrap_or(root)
}

/// Typed reads of `{architecture}.{key}` metadata, with errors that name the file and key.
pub struct GgufMeta<'a> {
    pub file: &'a GgufFile,
    pub arch: &'a str,
}

impl<'a> GgufMeta<'a> {
    pub fn new(file: &'a GgufFile, arch: &'a str) -> Self {
        GgufMeta { file, arch }
    }

    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.arch)
    }

    pub fn int(&self, key: &str) -> Result<Option<i32>> {
        Ok(gguf::metadata_int(self.file, &self.key(key))?.map(|v| v as i32))
    }

    pub fn float(&self, key: &str) -> Result<Option<f64>> {
        gguf::metadata_float(self.file, &self.key(key))
    }

    pub fn string(&self, key: &str) -> Option<&str> {
        self.file.header().get(&self.key(key)).and_then(|v| v.as_str())
    }

    pub fn required(&self, key: &str) -> Result<i32> {
        self.int(key)?.ok_or_else(|| self.error(format!("GGUF metadata has no {}", self.key(key))))
    }

    /// `vocab_size`, else the token list's length, else the embedding table's rows.
    pub fn vocab_size(&self) -> Result<i32> {
        if let Some(v) = self.int("vocab_size")? {
            return Ok(v);
        }
        let header = self.file.header();
        if let Some(tokens) = header.get("tokenizer.ggml.tokens").and_then(|t| t.as_array()) {
            return Ok(tokens.len() as i32);
        }
        header
            .tensor("token_embd.weight")
            .and_then(|t| t.shape().first().copied())
            .map(|rows| rows as i32)
            .ok_or_else(|| self.error("no vocabulary size: no tokens and no token_embd.weight".into()))
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.file.header().tensor(name).is_some()
    }

    /// A float32 vector tensor (`rope_freqs.weight`, `rope_factors_long.weight`).
    pub fn vector(&self, name: &str) -> Result<Option<Vec<f64>>> {
        let Some(info) = self.file.header().tensor(name) else { return Ok(None) };
        let tensor = self.file.load_tensor(info).map_err(|e| self.error(format!("tensor {name}: {e}")))?;
        match tensor {
            gguf::GgufTensor::Dense(array) => {
                let values = array.astype(mlx_bridge::Dtype::F32)?.to_vec::<f32>()?;
                Ok(Some(values.into_iter().map(f64::from).collect()))
            }
            _ => Err(self.error(format!("tensor {name} is quantized"))),
        }
    }

    pub fn error(&self, message: String) -> ModelError {
        ModelError::Config { path: self.file.path().to_path_buf(), message }
    }

    /// A parse of the metadata, or the validation error it fails with, as a config error.
    pub fn check<T>(&self, result: std::result::Result<T, String>) -> Result<T> {
        result.map_err(|message| self.error(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_the_field() {
        assert!(check_positive(&[("a", 1), ("b", 0)]).unwrap_err().starts_with("b must be positive"));
        assert!(check_heads(6, 4).unwrap_err().contains("not a multiple"));
        assert!(check_heads(8, 0).unwrap_err().contains("num_key_value_heads"));
        assert!(check_heads(8, 2).is_ok());
    }

    #[test]
    fn layer_types_or_the_family_default() {
        let types = ["full_attention", "sliding_attention"].map(String::from);
        assert_eq!(sliding_layers(Some(&types), 2, |_| true).unwrap(), [false, true]);
        assert_eq!(sliding_layers(None, 3, |i| i == 2).unwrap(), [false, false, true]);
        assert!(sliding_layers(Some(&types), 3, |_| true).unwrap_err().contains("2 entries for 3 layers"));
        let bad = ["chunked_attention".to_string()];
        assert!(sliding_layers(Some(&bad), 1, |_| true).unwrap_err().contains("chunked_attention"));
    }

    #[test]
    fn text_config_of_multimodal_saves() {
        let nested = serde_json::json!({"text_config": {"hidden_size": 8}});
        assert_eq!(text_config(&nested)["hidden_size"], 8);
        let flat = serde_json::json!({"hidden_size": 4});
        assert_eq!(text_config(&flat)["hidden_size"], 4);
    }
}
