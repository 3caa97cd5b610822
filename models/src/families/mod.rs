//! The family table: for each family, the config.json `model_type` values and GGUF
//! `general.architecture` it answers to, how its config is parsed (for `inspect` and the KV-cache
//! figures), and how it is loaded. Loader dispatch and summaries read [`FAMILIES`]; a new
//! family is one file here and one row.

pub mod gemma3;
pub mod gemma3n;
pub mod llama;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod qwen3_moe;
pub mod smollm3;

use std::path::Path;

use serde_json::Value;

use crate::causal_lm::CausalLm;
use crate::config::ModelConfig;
use crate::decoder::{self, Model};
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::load::LoadOptions;

/// A parsed config, for summaries.
pub type ConfigFn = fn(&Value) -> std::result::Result<Box<dyn ModelConfig>, String>;
pub type GgufConfigFn = fn(&GgufFile) -> Result<Box<dyn ModelConfig>>;
pub type LoadFn = fn(&Path, &Value, LoadOptions) -> Result<Box<dyn CausalLm>>;
pub type LoadGgufFn = fn(&GgufFile, LoadOptions) -> Result<Box<dyn CausalLm>>;

/// One family's row.
pub struct Family {
    /// The architecture name reports use.
    pub name: &'static str,
    pub model_types: &'static [&'static str],
    /// `None` when llama.cpp has no architecture for it.
    pub gguf_architecture: Option<&'static str>,
    pub config: ConfigFn,
    pub gguf_config: Option<GgufConfigFn>,
    pub load: LoadFn,
    pub load_gguf: Option<LoadGgufFn>,
}

pub static FAMILIES: &[Family] = &[
    Family {
        name: "gemma3n",
        model_types: &["gemma3n", "gemma3n_text"],
        gguf_architecture: None,
        config: |root| Ok(Box::new(gemma3n::Config::from_json(root)?)),
        gguf_config: None,
        load: |dir, root, options| Ok(Box::new(gemma3n::Gemma3n::load(dir, root, options)?)),
        load_gguf: None,
    },
    row::<gemma3::Config>("gemma3", &["gemma3", "gemma3_text"], "gemma3"),
    row::<llama::Config>("llama", &["llama", "mistral"], "llama"),
    row::<qwen2::Config>("qwen2", &["qwen2"], "qwen2"),
    row::<qwen3::Config>("qwen3", &["qwen3"], "qwen3"),
    row::<qwen3_moe::Config>("qwen3_moe", &["qwen3_moe"], "qwen3moe"),
    row::<phi3::Config>("phi3", &["phi3"], "phi3"),
    row::<smollm3::Config>("smollm3", &["smollm3"], "smollm3"),
];

/// A decoder family's row.
const fn row<C: decoder::Family>(
    name: &'static str,
    model_types: &'static [&'static str],
    gguf: &'static str,
) -> Family {
    Family {
        name,
        model_types,
        gguf_architecture: Some(gguf),
        config: |root| Ok(Box::new(C::from_json(root)?.spec()?)),
        gguf_config: Some(|file| {
            let config = C::from_gguf(file)?;
            Ok(Box::new(config.spec().map_err(crate::error::ModelError::Weights)?))
        }),
        load: |dir, root, options| Ok(Box::new(Model::<C>::load(dir, root, options)?)),
        load_gguf: Some(|file, options| Ok(Box::new(Model::<C>::load_gguf(file, options)?))),
    }
}

/// The family a config.json `model_type` names.
pub fn by_model_type(model_type: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.model_types.contains(&model_type))
}

/// The family a GGUF `general.architecture` names.
pub fn by_gguf_architecture(architecture: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.gguf_architecture == Some(architecture) && f.load_gguf.is_some())
}

/// Every `model_type` this build loads.
pub fn model_types() -> Vec<&'static str> {
    FAMILIES.iter().flat_map(|f| f.model_types.iter().copied()).collect()
}

/// Every GGUF architecture this build loads.
pub fn gguf_architectures() -> Vec<&'static str> {
    FAMILIES.iter().filter_map(|f| f.gguf_architecture).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_belongs_to_one_family() {
        let types = model_types();
        let unique: std::collections::BTreeSet<_> = types.iter().collect();
        assert_eq!(unique.len(), types.len(), "{types:?}");
        assert_eq!(by_model_type("mistral").map(|f| f.name), Some("llama"));
        assert_eq!(by_gguf_architecture("qwen3moe").map(|f| f.name), Some("qwen3_moe"));
        assert!(by_gguf_architecture("gemma3n").is_none());
        assert!(by_model_type("gpt2").is_none());
    }
}
