//! Llama family text models (Llama 2/3, SmolLM/SmolLM2, Mistral-style), numerically following
//! transformers' `modeling_llama.py`: pre-norm blocks of grouped-query attention with split-half
//! RoPE and a SwiGLU MLP, RMSNorm `x * w`, an optionally tied LM head.
//!
//! GGUF files (`general.architecture = llama`) have their Q/K rows un-permuted: llama.cpp's
//! converter interleaves each head's rotary halves for ggml's adjacent-pair RoPE.

use serde::Deserialize;
use serde_json::Value;

use crate::config::GgufMeta;
use crate::decoder::{Base, DecoderSpec, Family, Model};
use crate::error::Result;
use crate::gguf::{self, GgufFile, GgufTensor};
use crate::layers::RopeScaling;
pub use crate::load::LoadOptions;

/// transformers' `LlamaConfig`: the shared fields (readable directly, `config.hidden_size`) and
/// the bias flags no supported checkpoint sets.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub base: Base,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
}

impl std::ops::Deref for Config {
    type Target = Base;

    fn deref(&self) -> &Base {
        &self.base
    }
}

/// Llama's RoPE base when a config names none.
const THETA: f64 = 10_000.0;

/// Llama-architecture GGUF files store Q and K rows permuted; SmolLM3's converter inherits it.
pub(crate) fn unpermute_qk(name: &str, tensor: GgufTensor, heads: i32, kv_heads: i32) -> Result<GgufTensor> {
    if name.ends_with("self_attn.q_proj.weight") {
        gguf::unpermute_rope_rows(tensor, heads)
    } else if name.ends_with("self_attn.k_proj.weight") {
        gguf::unpermute_rope_rows(tensor, kv_heads)
    } else {
        Ok(tensor)
    }
}

impl Config {
    pub const MODEL_TYPES: [&'static str; 2] = ["llama", "mistral"];
}

impl Family for Config {
    fn from_json(root: &Value) -> std::result::Result<Config, String> {
        let config: Config = Base::parse(root, THETA, |c: &mut Config| &mut c.base)?;
        if config.attention_bias || config.mlp_bias {
            return Err("attention_bias / mlp_bias are not supported".into());
        }
        Ok(config)
    }

    /// The config a GGUF file's `llama.*` metadata describes; `rope_freqs` divides frequencies.
    fn from_gguf(file: &GgufFile) -> Result<Config> {
        let m = GgufMeta::new(file, "llama");
        let mut base = Base::from_gguf(&m, THETA)?;
        if let (Some(factors), Some(rope)) = (m.vector("rope_freqs.weight")?, base.rope.as_mut()) {
            rope.scaling = RopeScaling::Factors(factors);
        }
        let config = Config { base, attention_bias: false, mlp_bias: false };
        m.check(config.spec())?;
        Ok(config)
    }

    fn spec(&self) -> std::result::Result<DecoderSpec, String> {
        if let Some(RopeScaling::Factors(f)) = self.rope.as_ref().map(|r| &r.scaling) {
            let pairs = self.rope.as_ref().map_or(0, |r| r.dims / 2);
            if f.len() != pairs as usize {
                return Err(format!("rope_freqs has {} entries, expected {pairs}", f.len()));
            }
        }
        self.base.spec(|_| true, self.base.dense())
    }

    fn gguf_transform(&self, name: &str, tensor: GgufTensor) -> Result<GgufTensor> {
        unpermute_qk(name, tensor, self.num_attention_heads, self.kv_heads())
    }
}

pub type Llama = Model<Config>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_name_the_field() {
        let base = serde_json::json!({"vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2});
        assert!(Config::from_json(&base).is_ok());
        let mut bad = base.clone();
        bad["num_key_value_heads"] = 3.into();
        assert!(Config::from_json(&bad).unwrap_err().contains("num_key_value_heads"));
        let mut bad = base.clone();
        bad["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
        assert!(Config::from_json(&bad).unwrap_err().contains("yarn"));
        for (field, value, needle) in [
            ("rms_norm_eps", serde_json::json!(0.0), "rms_norm_eps"),
            ("rms_norm_eps", serde_json::json!(-1e-5), "rms_norm_eps"),
            ("rope_theta", serde_json::json!(0.0), "rope_theta"),
            // 1e39 overflows float32 to infinity.
            ("rope_theta", serde_json::json!(1e39), "rope_theta"),
            ("rope_parameters", serde_json::json!({"rope_type": "default", "rope_theta": -5.0}), "rope_theta"),
            ("rope_scaling", serde_json::json!({"rope_type": "linear", "factor": 0.0}), "factor"),
        ] {
            let mut bad = base.clone();
            bad[field] = value;
            let message = Config::from_json(&bad).unwrap_err();
            assert!(message.contains(needle) && message.contains("positive finite"), "{field}: {message}");
        }
        let mut bad = base;
        bad.as_object_mut().unwrap().remove("hidden_size");
        assert!(Config::from_json(&bad).unwrap_err().contains("hidden_size"));
    }
}
