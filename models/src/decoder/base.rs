//! The config fields Llama-style families share (transformers' names and defaults), their GGUF
//! metadata counterparts, and the decoder they describe; a family adds what is its own.

use serde::Deserialize;
use serde_json::Value;

use super::{DecoderSpec, Ffn, LayerSpec};
use crate::config::{GgufMeta, sliding_layers};
use crate::error::Result;
use crate::layers::{Activation, RopeConfig, RopeScaling};
use crate::validate::from_json;

#[derive(Debug, Clone, Deserialize)]
pub struct Base {
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
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub sliding_window: Option<i32>,
    /// Qwen2/Qwen3: sliding windows only when enabled, from layer `max_window_layers` on.
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    #[serde(default)]
    pub max_window_layers: Option<i32>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
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

impl Base {
    /// Parses the shared fields and the RoPE (`default_theta` when the config names no base).
    pub fn from_json(root: &Value, default_theta: f64) -> std::result::Result<Base, String> {
        let mut base: Base = from_json(root)?;
        base.rope = Some(RopeConfig::from_hf(root, base.head_dim(), base.max_position_embeddings, default_theta)?);
        Ok(base)
    }

    /// llama.cpp's keys for the same fields; `rope.dimension_count` gives partial rotary.
    pub fn from_gguf(m: &GgufMeta, default_theta: f64) -> Result<Base> {
        let (heads, hidden) = (m.required("attention.head_count")?, m.required("embedding_length")?);
        let head_dim = m.int("attention.key_length")?.unwrap_or(hidden / heads.max(1));
        let dims = m.int("rope.dimension_count")?.unwrap_or(head_dim);
        let theta = m.float("rope.freq_base")?.unwrap_or(default_theta);
        Ok(Base {
            vocab_size: m.vocab_size()?,
            hidden_size: hidden,
            intermediate_size: m.int("feed_forward_length")?.unwrap_or(0),
            num_hidden_layers: m.required("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: m.int("attention.head_count_kv")?,
            head_dim: Some(head_dim),
            rms_norm_eps: m.float("attention.layer_norm_rms_epsilon")?.map_or(1e-6, |v| v as f32),
            max_position_embeddings: m.int("context_length")?.unwrap_or(2048),
            tie_word_embeddings: !m.has_tensor("output.weight"),
            hidden_act: default_act(),
            sliding_window: m.int("attention.sliding_window")?.filter(|w| *w > 0),
            use_sliding_window: None,
            max_window_layers: None,
            layer_types: None,
            rope: Some(RopeConfig { theta, dims, head_dim, scaling: RopeScaling::Default }),
        })
    }

    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i32 {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    pub fn layers(&self) -> usize {
        self.num_hidden_layers.max(0) as usize
    }

    /// Each layer's window: `layer_types` when the config has them, else Qwen's
    /// `use_sliding_window` / `max_window_layers`, else `sliding_window` on every layer.
    pub fn windows(&self) -> std::result::Result<Vec<Option<i32>>, String> {
        let first_sliding = match self.use_sliding_window {
            Some(false) => usize::MAX,
            Some(true) => self.max_window_layers.unwrap_or(0).max(0) as usize,
            None => 0,
        };
        let sliding = sliding_layers(self.layer_types.as_deref(), self.layers(), |i| i >= first_sliding)?;
        sliding
            .into_iter()
            .map(|s| match (s, self.sliding_window) {
                (false, _) => Ok(None),
                (true, Some(w)) => Ok(Some(w)),
                (true, None) if self.layer_types.is_none() => Ok(None),
                (true, None) => Err("sliding_attention layers need a sliding_window".into()),
            })
            .collect()
    }

    /// The decoder: RoPE on the layers `rotary` picks, dense or routed feed-forward per `ffn`.
    pub fn spec(
        &self,
        rotary: impl Fn(usize) -> bool,
        ffn: impl Fn(usize) -> Ffn,
    ) -> std::result::Result<DecoderSpec, String> {
        let rope = self.rope.clone().ok_or("the RoPE config was not parsed")?;
        let windows = self.windows()?;
        let layers = (0..self.layers())
            .map(|i| LayerSpec { rope: rotary(i).then(|| rope.clone()), window: windows[i], ffn: ffn(i) })
            .collect();
        let spec = DecoderSpec {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            head_dim: self.head_dim(),
            rms_norm_eps: self.rms_norm_eps,
            max_position_embeddings: self.max_position_embeddings,
            layers,
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

    /// A family config that flattens a `Base` (`base` picks it out): parsed from `root` with
    /// the RoPE read and the decoder it describes validated.
    pub fn parse<C: super::Family + serde::de::DeserializeOwned>(
        root: &Value,
        default_theta: f64,
        base: impl FnOnce(&mut C) -> &mut Base,
    ) -> std::result::Result<C, String> {
        // The shared fields first: serde loses the field path inside a flattened struct.
        let shared = Base::from_json(root, default_theta)?;
        let mut config: C = from_json(root)?;
        *base(&mut config) = shared;
        config.spec()?;
        Ok(config)
    }

    /// Every layer a dense gated MLP of `intermediate_size`.
    pub fn dense(&self) -> impl Fn(usize) -> Ffn + use<> {
        let intermediate = self.intermediate_size;
        move |_| Ffn::Dense { intermediate }
    }
}
