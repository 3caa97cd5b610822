//! Qwen2 and Qwen2.5 models, numerically following transformers' `modeling_qwen2.py`: Llama's
//! block with biases on the q, k and v projections (none on o), and sliding windows from layer
//! `max_window_layers` on when `use_sliding_window` is set. GGUF: `general.architecture = qwen2`,
//! biases as `attn_{q,k,v}.bias`, no Q/K permutation.

use serde::Deserialize;
use serde_json::Value;

use crate::config::GgufMeta;
use crate::decoder::{Base, DecoderSpec, Family, Model};
use crate::error::Result;
use crate::gguf::GgufFile;

const THETA: f64 = 1_000_000.0;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub base: Base,
}

impl Family for Config {
    fn from_json(root: &Value) -> std::result::Result<Config, String> {
        Base::parse(root, THETA, |c: &mut Config| &mut c.base)
    }

    fn from_gguf(file: &GgufFile) -> Result<Config> {
        let m = GgufMeta::new(file, "qwen2");
        let config = Config { base: Base::from_gguf(&m, THETA)? };
        m.check(config.spec())?;
        Ok(config)
    }

    fn spec(&self) -> std::result::Result<DecoderSpec, String> {
        Ok(DecoderSpec { qkv_bias: true, ..self.base.spec(|_| true, self.base.dense())? })
    }
}

pub type Qwen2 = Model<Config>;
