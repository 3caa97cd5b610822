//! Llama family text models (Llama 2/3, SmolLM/SmolLM2, Mistral-style), numerically following
//! transformers' `modeling_llama.py`: pre-norm blocks of grouped-query attention with split-half
//! RoPE and a SwiGLU MLP, RMSNorm `x * w`, an optionally tied LM head.
//!
//! GGUF files (`general.architecture = llama`) have their Q/K rows un-permuted: llama.cpp's
//! converter interleaves each head's rotary halves for ggml's adjacent-pair RoPE.

use serde::Deserialize;
use serde_json::Value;

use crate::config::GgufMeta;
use crate::decoder::{DecoderSpec, Family, Ffn, LayerSpec, Model};
use crate::error::Result;
use crate::gguf::{self, GgufFile, GgufTensor};
use crate::layers::{Activation, RopeConfig, RopeScaling};
pub use crate::load::LoadOptions;

/// transformers' `LlamaConfig` fields this model reads (defaults as transformers has them).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: i32,
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub num_hidden_layers: i32,
    pub num_attention_heads: i32,
    #[serde(default)]
    pub num_key_value_heads: Option<i32>,
    #[serde(default)]
    pub head_dim: Option<i32>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f32,
    #[serde(default = "default_context")]
    pub max_position_embeddings: i32,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Mistral-style sliding-window attention on every layer.
    #[serde(default)]
    pub sliding_window: Option<i32>,
    #[serde(skip)]
    pub rope: Option<RopeConfig>,
}

fn default_eps() -> f32 {
    1e-6
}

fn default_context() -> i32 {
    2048
}

fn default_act() -> String {
    "silu".into()
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

    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i32 {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}

impl Family for Config {
    fn from_json(root: &Value) -> std::result::Result<Config, String> {
        let mut config: Config = crate::validate::from_json(root)?;
        if config.attention_bias || config.mlp_bias {
            return Err("attention_bias / mlp_bias are not supported".into());
        }
        config.rope = Some(RopeConfig::from_hf(root, config.head_dim(), config.max_position_embeddings, THETA)?);
        config.spec()?;
        Ok(config)
    }

    /// The config a GGUF file's `llama.*` metadata describes; `rope_freqs` divides frequencies.
    fn from_gguf(file: &GgufFile) -> Result<Config> {
        let m = GgufMeta::new(file, "llama");
        let (heads, hidden) = (m.required("attention.head_count")?, m.required("embedding_length")?);
        let head_dim = m.int("attention.key_length")?.unwrap_or(hidden / heads.max(1));
        let scaling = match m.vector("rope_freqs.weight")? {
            Some(factors) => RopeScaling::Factors(factors),
            None => RopeScaling::Default,
        };
        let theta = m.float("rope.freq_base")?.unwrap_or(THETA);
        let config = Config {
            vocab_size: m.vocab_size()?,
            hidden_size: hidden,
            intermediate_size: m.required("feed_forward_length")?,
            num_hidden_layers: m.required("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: m.int("attention.head_count_kv")?,
            head_dim: Some(head_dim),
            rms_norm_eps: m.float("attention.layer_norm_rms_epsilon")?.map_or(1e-5, |v| v as f32),
            max_position_embeddings: m.int("context_length")?.unwrap_or(2048),
            tie_word_embeddings: !m.has_tensor("output.weight"),
            attention_bias: false,
            mlp_bias: false,
            hidden_act: default_act(),
            sliding_window: None,
            rope: Some(RopeConfig { theta, dims: head_dim, head_dim, scaling }),
        };
        m.check(config.spec())?;
        Ok(config)
    }

    fn spec(&self) -> std::result::Result<DecoderSpec, String> {
        let rope = self.rope.clone().ok_or("the RoPE config was not parsed")?;
        if let RopeScaling::Factors(f) = &rope.scaling {
            if f.len() != (rope.dims / 2) as usize {
                return Err(format!("rope_freqs has {} entries, expected {}", f.len(), rope.dims / 2));
            }
        }
        let layer = LayerSpec {
            rope: Some(rope),
            window: self.sliding_window,
            ffn: Ffn::Dense { intermediate: self.intermediate_size },
        };
        let spec = DecoderSpec {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            head_dim: self.head_dim(),
            rms_norm_eps: self.rms_norm_eps,
            max_position_embeddings: self.max_position_embeddings,
            layers: vec![layer; self.num_hidden_layers.max(0) as usize],
            activation: Activation::from_hf(&self.hidden_act)?,
            attention_scale: (self.head_dim() as f32).powf(-0.5),
            attention_softcap: None,
            qkv_bias: false,
            o_bias: false,
            qk_norm: false,
            gemma: false,
            final_softcap: None,
            tie_embeddings: self.tie_word_embeddings,
        };
        spec.validate()?;
        Ok(spec)
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
