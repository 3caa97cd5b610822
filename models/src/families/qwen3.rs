//! Qwen3 dense models (0.6B to 32B), numerically following transformers' `modeling_qwen3.py`:
//! Llama's block with an RMSNorm on every query and key head (before RoPE), optional q/k/v/o
//! biases and sliding-window layers. GGUF: `general.architecture = qwen3`, no Q/K permutation
//! (llama.cpp runs Qwen with the split-half RoPE these checkpoints use).

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
    #[serde(default)]
    pub attention_bias: bool,
}

impl Family for Config {
    fn from_json(root: &Value) -> std::result::Result<Config, String> {
        Base::parse(root, THETA, |c: &mut Config| &mut c.base)
    }

    fn from_gguf(file: &GgufFile) -> Result<Config> {
        let m = GgufMeta::new(file, "qwen3");
        let config = Config { base: Base::from_gguf(&m, THETA)?, attention_bias: m.has_tensor("blk.0.attn_q.bias") };
        m.check(config.spec())?;
        Ok(config)
    }

    fn spec(&self) -> std::result::Result<DecoderSpec, String> {
        let spec = self.base.spec(|_| true, self.base.dense())?;
        Ok(DecoderSpec { qk_norm: true, qkv_bias: self.attention_bias, o_bias: self.attention_bias, ..spec })
    }
}

pub type Qwen3 = Model<Config>;
