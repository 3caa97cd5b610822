//! Gemma 3 text models (270M to 27B), numerically following transformers'
//! `modeling_gemma3.py`: embeddings scaled by `sqrt(hidden)` (rounded to the compute dtype, as
//! transformers does, not to bfloat16 as mlx-lm does), sandwich-normed blocks with `(1 + w)`
//! RMSNorms, q/k norms, attention scaled by `query_pre_attn_scalar^-1/2`, sliding-window layers
//! with their own RoPE base between global ones, a gelu-tanh gated MLP and a tied LM head.
//!
//! Loads HF and MLX safetensors folders (`gemma3_text`, or the text part of a multimodal
//! `gemma3` save) and GGUF files (`general.architecture = gemma3`).

use serde::Deserialize;
use serde_json::Value;

use crate::config::{GgufMeta, check_positive, sliding_layers, text_config};
use crate::decoder::{DecoderSpec, Family, Ffn, LayerSpec, Model, gguf_name};
use crate::error::Result;
use crate::gguf::{GgufFile, GgufTensor};
use crate::layers::{Activation, RopeConfig, RopeScaling};
pub use crate::load::LoadOptions;
use crate::validate::positive_finite;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    Sliding,
    Full,
}

/// transformers' `Gemma3TextConfig` fields, as saved (defaults as transformers has them).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
struct RawConfig {
    vocab_size: i32,
    hidden_size: i32,
    intermediate_size: i32,
    num_hidden_layers: i32,
    num_attention_heads: i32,
    num_key_value_heads: i32,
    head_dim: i32,
    rms_norm_eps: f32,
    query_pre_attn_scalar: f32,
    sliding_window: i32,
    layer_types: Option<Vec<String>>,
    #[serde(alias = "_sliding_window_pattern")]
    sliding_window_pattern: Option<usize>,
    max_position_embeddings: i32,
    final_logit_softcapping: Option<f32>,
    attn_logit_softcapping: Option<f32>,
    rope_theta: Option<f32>,
    rope_local_base_freq: Option<f32>,
    rope_parameters: Option<Value>,
    rope_scaling: Option<Value>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            vocab_size: 262_208,
            hidden_size: 2304,
            intermediate_size: 9216,
            num_hidden_layers: 26,
            num_attention_heads: 8,
            num_key_value_heads: 4,
            head_dim: 256,
            rms_norm_eps: 1e-6,
            query_pre_attn_scalar: 256.0,
            sliding_window: 4096,
            layer_types: None,
            sliding_window_pattern: None,
            max_position_embeddings: 131_072,
            final_logit_softcapping: None,
            attn_logit_softcapping: None,
            rope_theta: None,
            rope_local_base_freq: None,
            rope_parameters: None,
            rope_scaling: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub vocab_size: i32,
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub num_heads: i32,
    pub num_kv_heads: i32,
    pub head_dim: i32,
    pub rms_norm_eps: f32,
    pub query_pre_attn_scalar: f32,
    pub sliding_window: i32,
    pub layer_kinds: Vec<LayerKind>,
    pub max_position_embeddings: i32,
    pub final_logit_softcapping: Option<f32>,
    pub attn_logit_softcapping: Option<f32>,
    pub rope_full: RopeConfig,
    pub rope_sliding: RopeConfig,
}

impl Config {
    pub const MODEL_TYPES: [&'static str; 2] = ["gemma3_text", "gemma3"];
}

/// Every `pattern`-th layer global, the rest sliding (transformers' `sliding_window_pattern`).
fn pattern_kinds(layers: usize, pattern: usize) -> Vec<LayerKind> {
    (0..layers)
        .map(|i| if pattern > 0 && (i + 1) % pattern == 0 { LayerKind::Full } else { LayerKind::Sliding })
        .collect()
}

impl Family for Config {
    /// From config.json; a multimodal `gemma3` save keeps the text model under `text_config`.
    fn from_json(root: &Value) -> std::result::Result<Config, String> {
        let text = text_config(root);
        let raw: RawConfig = crate::validate::from_json(text)?;
        let layers = raw.num_hidden_layers.max(0) as usize;
        let pattern = raw.sliding_window_pattern.unwrap_or(6);
        let sliding = sliding_layers(raw.layer_types.as_deref(), layers, |i| (i + 1) % pattern != 0)?;
        let layer_kinds = sliding.iter().map(|&s| if s { LayerKind::Sliding } else { LayerKind::Full }).collect();
        // `rope_parameters.{full,sliding}_attention` (transformers 5) or `rope_theta`,
        // `rope_local_base_freq` and `rope_scaling` (earlier saves; scaling applies to global layers).
        let per_kind = raw.rope_parameters.as_ref().filter(|p| p.get("full_attention").is_some());
        let (hd, max) = (raw.head_dim, raw.max_position_embeddings);
        let full_theta = raw.rope_theta.unwrap_or(1_000_000.0) as f64;
        let sliding_theta = raw.rope_local_base_freq.unwrap_or(10_000.0) as f64;
        let entry = |kind: &str, name: &str, theta: f64, legacy: Option<&Value>| {
            let entry = per_kind.and_then(|p| p.get(kind)).or(legacy).filter(|e| e.is_object());
            let theta = entry.and_then(|e| e.get("rope_theta")).and_then(Value::as_f64).unwrap_or(theta);
            positive_finite(name, theta as f32)?;
            RopeConfig::from_entry(entry, text, theta, hd, max)
        };
        let legacy = if per_kind.is_none() { raw.rope_scaling.as_ref() } else { None };
        let config = Config {
            rope_full: entry("full_attention", "rope_theta", full_theta, legacy)?,
            rope_sliding: entry("sliding_attention", "rope_local_base_freq", sliding_theta, None)?,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_heads: raw.num_attention_heads,
            num_kv_heads: raw.num_key_value_heads,
            head_dim: raw.head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            query_pre_attn_scalar: raw.query_pre_attn_scalar,
            sliding_window: raw.sliding_window,
            layer_kinds,
            max_position_embeddings: raw.max_position_embeddings,
            final_logit_softcapping: raw.final_logit_softcapping,
            attn_logit_softcapping: raw.attn_logit_softcapping,
        };
        config.spec()?;
        Ok(config)
    }

    /// The config a GGUF file's `gemma3.*` metadata describes, with llama.cpp's fixed choices for
    /// what the metadata leaves out: every sixth layer global, a local RoPE base of 10000, and
    /// attention scaled by the head size (by `hidden / heads` for the 62-layer 27B model).
    fn from_gguf(file: &GgufFile) -> Result<Config> {
        let m = GgufMeta::new(file, "gemma3");
        let (hidden, heads, layers) =
            (m.required("embedding_length")?, m.required("attention.head_count")?, m.required("block_count")?);
        let head_dim = m.int("attention.key_length")?.unwrap_or(hidden / heads.max(1));
        let scaling = match m.string("rope.scaling.type") {
            None | Some("none") => RopeScaling::Default,
            Some("linear") => RopeScaling::Linear { factor: m.float("rope.scaling.factor")?.unwrap_or(1.0) },
            Some(other) => return Err(m.error(format!("RoPE scaling {other:?} is not supported"))),
        };
        let rope = |theta: f64, scaling| RopeConfig { theta, dims: head_dim, head_dim, scaling };
        let config = Config {
            vocab_size: m.vocab_size()?,
            hidden_size: hidden,
            intermediate_size: m.required("feed_forward_length")?,
            num_heads: heads,
            num_kv_heads: m.int("attention.head_count_kv")?.unwrap_or(heads),
            head_dim,
            rms_norm_eps: m.float("attention.layer_norm_rms_epsilon")?.map_or(1e-6, |v| v as f32),
            query_pre_attn_scalar: if layers == 62 { (hidden / heads) as f32 } else { head_dim as f32 },
            sliding_window: m.int("attention.sliding_window")?.unwrap_or(4096),
            layer_kinds: pattern_kinds(layers.max(0) as usize, 6),
            max_position_embeddings: m.int("context_length")?.unwrap_or(131_072),
            final_logit_softcapping: m.float("final_logit_softcapping")?.map(|v| v as f32),
            attn_logit_softcapping: m.float("attn_logit_softcapping")?.map(|v| v as f32),
            rope_full: rope(m.float("rope.freq_base")?.unwrap_or(1_000_000.0), scaling),
            rope_sliding: rope(10_000.0, RopeScaling::Default),
        };
        m.check(config.spec())?;
        Ok(config)
    }

    fn spec(&self) -> std::result::Result<DecoderSpec, String> {
        check_positive(&[("sliding_window", self.sliding_window)])?;
        positive_finite("query_pre_attn_scalar", self.query_pre_attn_scalar)?;
        let layers = self.layer_kinds.iter().map(|kind| match kind {
            LayerKind::Full => (self.rope_full.clone(), None),
            LayerKind::Sliding => (self.rope_sliding.clone(), Some(self.sliding_window)),
        });
        let ffn = Ffn::Dense { intermediate: self.intermediate_size };
        let spec = DecoderSpec {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            heads: self.num_heads,
            kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            rms_norm_eps: self.rms_norm_eps,
            max_position_embeddings: self.max_position_embeddings,
            layers: layers.map(|(rope, window)| LayerSpec { rope: Some(rope), window, ffn: ffn.clone() }).collect(),
            activation: Activation::GeluTanh,
            attention_scale: self.query_pre_attn_scalar.powf(-0.5),
            attention_softcap: self.attn_logit_softcapping,
            qkv_bias: false,
            o_bias: false,
            qk_norm: true,
            gemma: true,
            final_softcap: self.final_logit_softcapping,
            tie_embeddings: true,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// HF text (`model.*`), HF multimodal (`model.language_model.*`) and mlx-vlm
    /// (`language_model.model.*`) names; the tied head dropped.
    fn rename(name: &str) -> Option<String> {
        crate::decoder::hf_name(name).filter(|local| !local.starts_with("lm_head."))
    }

    fn gguf_rename(name: &str) -> Option<String> {
        gguf_name(name, true)
    }

    /// llama.cpp's converter stores Gemma's norm weights as `1 + w` (ggml's RMSNorm multiplies
    /// by the weight alone); take the one back off, as transformers' GGUF loader does, so both
    /// formats go through the same `(1 + w)` norm.
    fn gguf_transform(&self, name: &str, tensor: GgufTensor) -> Result<GgufTensor> {
        match tensor {
            GgufTensor::Dense(w) if name.ends_with("norm.weight") => Ok(GgufTensor::Dense(w.sub_scalar(1.0)?)),
            other => Ok(other),
        }
    }
}

pub type Gemma3 = Model<Config>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_rope_forms_and_the_layer_pattern() {
        let old = json!({"num_hidden_layers": 7, "rope_theta": 5.0, "rope_local_base_freq": 7.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "sliding_window_pattern": 6});
        let config = Config::from_json(&old).unwrap();
        assert_eq!((config.rope_full.theta, &config.rope_full.scaling), (5.0, &RopeScaling::Linear { factor: 8.0 }));
        assert_eq!((config.rope_sliding.theta, &config.rope_sliding.scaling), (7.0, &RopeScaling::Default));
        assert_eq!(config.layer_kinds[5], LayerKind::Full);
        assert_eq!(config.layer_kinds.iter().filter(|k| **k == LayerKind::Full).count(), 1);
        let new = json!({"num_hidden_layers": 2, "layer_types": ["full_attention", "sliding_attention"],
            "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 11.0},
                                "sliding_attention": {"rope_type": "default", "rope_theta": 13.0}}});
        let config = Config::from_json(&new).unwrap();
        assert_eq!((config.rope_full.theta, config.rope_sliding.theta), (11.0, 13.0));
        assert_eq!(config.layer_kinds, vec![LayerKind::Full, LayerKind::Sliding]);
        let nested = json!({"model_type": "gemma3", "text_config": {"hidden_size": 64, "num_hidden_layers": 1}});
        assert_eq!(Config::from_json(&nested).unwrap().hidden_size, 64);
    }

    #[test]
    fn bad_configs_are_rejected_with_the_field_named() {
        for (config, needle) in [
            (json!({"num_hidden_layers": 2, "layer_types": ["full_attention"]}), "layer_types"),
            (json!({"layer_types": ["chunked"], "num_hidden_layers": 1}), "chunked"),
            (json!({"num_key_value_heads": 3}), "num_key_value_heads"),
            (json!({"rope_scaling": {"rope_type": "yarn"}}), "yarn"),
            (json!({"hidden_size": "wide"}), "invalid type"),
            // Values that make NaN by construction; 1e39 overflows float32 to infinity.
            (json!({"rms_norm_eps": 0.0}), "rms_norm_eps"),
            (json!({"rms_norm_eps": 1e39}), "rms_norm_eps"),
            (json!({"rope_theta": -1.0}), "rope_theta"),
            (json!({"rope_local_base_freq": 0}), "rope_local_base_freq"),
            (json!({"rope_scaling": {"rope_type": "linear", "factor": 0.0}}), "RoPE scale"),
            (json!({"query_pre_attn_scalar": 1e39}), "query_pre_attn_scalar"),
            (json!({"final_logit_softcapping": 0.0}), "final_logit_softcapping"),
        ] {
            let message = Config::from_json(&config).unwrap_err();
            assert!(message.contains(needle), "{message}");
        }
    }

    #[test]
    fn gguf_names_map_to_checkpoint_names() {
        let gguf = <Config as Family>::gguf_rename;
        assert_eq!(gguf("blk.2.ffn_norm.weight").as_deref(), Some("layers.2.pre_feedforward_layernorm.weight"));
        assert_eq!(gguf("blk.2.post_ffw_norm.weight").as_deref(), Some("layers.2.post_feedforward_layernorm.weight"));
        assert_eq!(gguf("blk.0.attn_k_norm.weight").as_deref(), Some("layers.0.self_attn.k_norm.weight"));
        let rename = <Config as Family>::rename;
        assert_eq!(
            rename("model.language_model.layers.0.mlp.up_proj.weight").as_deref(),
            Some("layers.0.mlp.up_proj.weight")
        );
        assert_eq!(rename("model.vision_tower.encoder.weight"), None);
        assert_eq!(rename("lm_head.weight"), None);
    }
}
