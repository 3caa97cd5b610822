//! Gemma 3n text configuration: the nested `text_config` of the multimodal checkpoints
//! (`model_type: gemma3n`) or a text-only `save_pretrained` (`model_type: gemma3n_text`).
//! Missing fields take transformers' defaults, which is what a raw transformers save relies on.

use serde::Deserialize;
use serde_json::Value;

use crate::validate::{from_json, positive_finite};

/// `intermediate_size` / `activation_sparsity_pattern`: one value for every layer, or a list.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum PerLayer<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Copy> PerLayer<T> {
    fn expand(&self, layers: usize, field: &str) -> Result<Vec<T>, String> {
        match self {
            PerLayer::One(value) => Ok(vec![*value; layers]),
            PerLayer::Each(values) if values.len() == layers => Ok(values.clone()),
            PerLayer::Each(values) => Err(format!("{field} has {} entries for {layers} layers", values.len())),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    #[serde(default = "d::vocab_size")]
    vocab_size: i32,
    #[serde(default = "d::hidden_size")]
    hidden_size: i32,
    #[serde(default = "d::intermediate_size")]
    intermediate_size: PerLayer<i32>,
    #[serde(default = "d::num_hidden_layers")]
    num_hidden_layers: i32,
    #[serde(default = "d::num_attention_heads")]
    num_attention_heads: i32,
    #[serde(default = "d::num_key_value_heads")]
    num_key_value_heads: i32,
    #[serde(default = "d::head_dim")]
    head_dim: i32,
    #[serde(default = "d::rms_norm_eps")]
    rms_norm_eps: f32,
    #[serde(default = "d::sliding_window")]
    sliding_window: i32,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(default = "d::final_logit_softcapping")]
    final_logit_softcapping: Option<f32>,
    #[serde(default = "d::vocab_size_per_layer_input")]
    vocab_size_per_layer_input: i32,
    #[serde(default = "d::hidden_size_per_layer_input")]
    hidden_size_per_layer_input: i32,
    #[serde(default)]
    altup_active_idx: i32,
    #[serde(default = "d::altup_coef_clip")]
    altup_coef_clip: Option<f32>,
    #[serde(default = "d::yes")]
    altup_correct_scale: bool,
    #[serde(default = "d::altup_num_inputs")]
    altup_num_inputs: i32,
    #[serde(default = "d::num_kv_shared_layers")]
    num_kv_shared_layers: i32,
    #[serde(default = "d::laurel_rank")]
    laurel_rank: i32,
    #[serde(default)]
    activation_sparsity_pattern: Option<PerLayer<f32>>,
    #[serde(default)]
    rope_theta: Option<f32>,
    #[serde(default)]
    rope_local_base_freq: Option<f32>,
    #[serde(default)]
    rope_parameters: Option<Value>,
    #[serde(default)]
    rope_scaling: Option<Value>,
    #[serde(default = "d::max_position_embeddings")]
    max_position_embeddings: i32,
    #[serde(default = "d::hidden_activation")]
    hidden_activation: String,
}

/// transformers' `Gemma3nTextConfig` defaults.
mod d {
    pub fn vocab_size() -> i32 {
        262_400
    }
    pub fn hidden_size() -> i32 {
        2048
    }
    pub fn intermediate_size() -> super::PerLayer<i32> {
        super::PerLayer::One(16_384)
    }
    pub fn num_hidden_layers() -> i32 {
        35
    }
    pub fn num_attention_heads() -> i32 {
        8
    }
    pub fn num_key_value_heads() -> i32 {
        2
    }
    pub fn head_dim() -> i32 {
        256
    }
    pub fn rms_norm_eps() -> f32 {
        1e-6
    }
    pub fn sliding_window() -> i32 {
        512
    }
    pub fn final_logit_softcapping() -> Option<f32> {
        Some(30.0)
    }
    pub fn vocab_size_per_layer_input() -> i32 {
        262_144
    }
    pub fn hidden_size_per_layer_input() -> i32 {
        256
    }
    pub fn altup_coef_clip() -> Option<f32> {
        Some(120.0)
    }
    pub fn yes() -> bool {
        true
    }
    pub fn altup_num_inputs() -> i32 {
        4
    }
    pub fn num_kv_shared_layers() -> i32 {
        15
    }
    pub fn laurel_rank() -> i32 {
        64
    }
    pub fn max_position_embeddings() -> i32 {
        32_768
    }
    pub fn hidden_activation() -> String {
        "gelu_pytorch_tanh".into()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    Sliding,
    Full,
}

/// Where a layer's keys and values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvSource {
    /// It computes them into cache `cache`; `publishes` when kv-shared layers of its kind reuse them.
    Own { cache: usize, publishes: bool },
    /// It reuses what the last non-shared layer of the same kind computed this step.
    Shared,
}

/// A validated Gemma 3n text configuration with every per-layer value spelled out.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub vocab_size: i32,
    pub hidden_size: i32,
    pub num_layers: usize,
    pub intermediate_sizes: Vec<i32>,
    pub num_heads: i32,
    pub num_kv_heads: i32,
    pub head_dim: i32,
    pub rms_norm_eps: f32,
    pub sliding_window: i32,
    pub layer_kinds: Vec<LayerKind>,
    pub kv_sources: Vec<KvSource>,
    pub final_logit_softcapping: Option<f32>,
    pub vocab_size_per_layer_input: i32,
    pub hidden_size_per_layer_input: i32,
    pub altup_active_idx: usize,
    pub altup_coef_clip: Option<f32>,
    pub altup_correct_scale: bool,
    pub altup_num_inputs: usize,
    pub num_kv_shared_layers: usize,
    pub laurel_rank: i32,
    pub activation_sparsity: Vec<f32>,
    pub rope_theta_full: f32,
    pub rope_theta_sliding: f32,
    pub max_position_embeddings: i32,
}

impl Config {
    /// From a parsed config.json (nested `text_config` or top-level text fields).
    pub fn from_json(root: &Value) -> Result<Config, String> {
        let model_type = root.get("model_type").and_then(Value::as_str).unwrap_or("");
        let text = match root.get("text_config") {
            Some(text) => text,
            None if model_type == "gemma3n_text" || model_type.is_empty() => root,
            None => return Err(format!("model_type {model_type:?} has no text_config")),
        };
        let raw: RawConfig = from_json(text)?;
        raw.resolve()
    }

    /// Index of the first layer that reuses another layer's keys and values.
    pub fn first_kv_shared_layer(&self) -> usize {
        self.num_layers - self.num_kv_shared_layers
    }

    /// Caches the model needs (one per layer that computes its own keys and values).
    pub fn num_caches(&self) -> usize {
        self.first_kv_shared_layer()
    }

    /// Bytes of keys and values held after `context` positions: full-attention caches keep every
    /// position (in 256-position steps), sliding caches at most the window.
    pub fn kv_cache_bytes(&self, context: usize, bytes_per_element: usize) -> usize {
        let per_position = 2 * (self.num_kv_heads * self.head_dim) as usize * bytes_per_element;
        let step = crate::layers::CACHE_STEP as usize;
        self.layer_kinds[..self.num_caches()]
            .iter()
            .map(|kind| match kind {
                LayerKind::Full => context.div_ceil(step) * step,
                LayerKind::Sliding => context.min(self.sliding_window as usize),
            })
            .sum::<usize>()
            * per_position
    }
}

impl crate::config::ModelConfig for Config {
    fn dimensions(&self) -> crate::config::Dimensions {
        crate::config::Dimensions {
            layers: self.num_layers,
            hidden_size: self.hidden_size,
            vocab_size: self.vocab_size,
            context_length: self.max_position_embeddings,
        }
    }

    fn kv_cache_bytes(&self, context: usize, bytes_per_element: usize) -> usize {
        Config::kv_cache_bytes(self, context, bytes_per_element)
    }
}

impl RawConfig {
    fn resolve(self) -> Result<Config, String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("sliding_window", self.sliding_window),
            ("vocab_size_per_layer_input", self.vocab_size_per_layer_input),
            ("hidden_size_per_layer_input", self.hidden_size_per_layer_input),
            ("altup_num_inputs", self.altup_num_inputs),
            ("laurel_rank", self.laurel_rank),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((name, value)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err(format!("{name} must be positive, got {value}"));
        }
        let layers = self.num_hidden_layers as usize;
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if self.head_dim % 2 != 0 {
            return Err(format!("head_dim {} must be even for RoPE", self.head_dim));
        }
        if !(0..self.altup_num_inputs).contains(&self.altup_active_idx) {
            return Err(format!(
                "altup_active_idx {} out of range for {} streams",
                self.altup_active_idx, self.altup_num_inputs
            ));
        }
        if !matches!(self.hidden_activation.as_str(), "gelu_pytorch_tanh" | "gelu_tanh") {
            return Err(format!("hidden_activation {:?} is not supported (gelu_pytorch_tanh)", self.hidden_activation));
        }
        let intermediate_sizes = self.intermediate_size.expand(layers, "intermediate_size")?;
        if let Some(size) = intermediate_sizes.iter().find(|&&s| s <= 0) {
            return Err(format!("intermediate_size entries must be positive, got {size}"));
        }
        // transformers: 0.95 on the first 10 layers of models deeper than 10, else dense.
        let activation_sparsity = match &self.activation_sparsity_pattern {
            Some(pattern) => pattern.expand(layers, "activation_sparsity_pattern")?,
            None => {
                let sparse = if layers > 10 { 10 } else { 0 };
                (0..layers).map(|i| if i < sparse { 0.95 } else { 0.0 }).collect()
            }
        };
        if let Some(p) = activation_sparsity.iter().find(|&&p| !(0.0..1.0).contains(&p)) {
            return Err(format!("activation sparsity {p} must lie in [0, 1)"));
        }
        let layer_kinds = match &self.layer_types {
            Some(types) if types.len() != layers => {
                return Err(format!("layer_types has {} entries for {layers} layers", types.len()));
            }
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "sliding_attention" => Ok(LayerKind::Sliding),
                    "full_attention" => Ok(LayerKind::Full),
                    other => Err(format!("unknown layer type {other:?}")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => (0..layers).map(|i| if (i + 1) % 5 == 0 { LayerKind::Full } else { LayerKind::Sliding }).collect(),
        };
        if self.num_kv_shared_layers < 0 || self.num_kv_shared_layers as usize >= layers {
            return Err(format!(
                "num_kv_shared_layers {} must be in [0, num_hidden_layers {layers})",
                self.num_kv_shared_layers
            ));
        }
        let kv_sources = kv_sources(&layer_kinds, self.num_kv_shared_layers as usize)?;
        let (rope_theta_full, rope_theta_sliding) = self.rope_thetas()?;
        positive_finite("rms_norm_eps", self.rms_norm_eps)?;
        positive_finite("rope_theta", rope_theta_full)?;
        positive_finite("rope_local_base_freq", rope_theta_sliding)?;
        if let Some(cap) = self.final_logit_softcapping {
            positive_finite("final_logit_softcapping", cap)?;
        }
        Ok(Config {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            num_layers: layers,
            intermediate_sizes,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            rms_norm_eps: self.rms_norm_eps,
            sliding_window: self.sliding_window,
            layer_kinds,
            kv_sources,
            final_logit_softcapping: self.final_logit_softcapping,
            vocab_size_per_layer_input: self.vocab_size_per_layer_input,
            hidden_size_per_layer_input: self.hidden_size_per_layer_input,
            altup_active_idx: self.altup_active_idx as usize,
            altup_coef_clip: self.altup_coef_clip,
            altup_correct_scale: self.altup_correct_scale,
            altup_num_inputs: self.altup_num_inputs as usize,
            num_kv_shared_layers: self.num_kv_shared_layers as usize,
            laurel_rank: self.laurel_rank,
            activation_sparsity,
            rope_theta_full,
            rope_theta_sliding,
            max_position_embeddings: self.max_position_embeddings,
        })
    }

    /// `rope_parameters.{full,sliding}_attention.rope_theta` (newer transformers) or
    /// `rope_theta` / `rope_local_base_freq`; only the default RoPE type exists in Gemma 3n.
    fn rope_thetas(&self) -> Result<(f32, f32), String> {
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("rope_scaling is not supported for Gemma 3n".into());
        }
        let from_parameters = |kind: &str| -> Result<Option<f32>, String> {
            let Some(entry) = self.rope_parameters.as_ref().and_then(|p| p.get(kind)) else { return Ok(None) };
            if let Some(rope_type) = entry.get("rope_type").and_then(Value::as_str) {
                if rope_type != "default" {
                    return Err(format!("rope_type {rope_type:?} ({kind}) is not supported"));
                }
            }
            Ok(entry.get("rope_theta").and_then(Value::as_f64).map(|v| v as f32))
        };
        let full = from_parameters("full_attention")?.or(self.rope_theta).unwrap_or(1_000_000.0);
        let sliding = from_parameters("sliding_attention")?.or(self.rope_local_base_freq).unwrap_or(10_000.0);
        Ok((full, sliding))
    }
}

/// Layers from `layers - shared` on reuse the keys/values of the last earlier layer of their kind.
fn kv_sources(kinds: &[LayerKind], shared: usize) -> Result<Vec<KvSource>, String> {
    let first_shared = kinds.len() - shared;
    let mut sources: Vec<KvSource> = (0..kinds.len())
        .map(|i| if i < first_shared { KvSource::Own { cache: i, publishes: false } } else { KvSource::Shared })
        .collect();
    for kind in kinds[first_shared..].iter().copied().collect::<std::collections::HashSet<_>>() {
        let source = kinds[..first_shared]
            .iter()
            .rposition(|&k| k == kind)
            .ok_or_else(|| format!("kv-shared {kind:?} layers have no earlier {kind:?} layer to share from"))?;
        sources[source] = KvSource::Own { cache: source, publishes: true };
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transformers_defaults_fill_a_sparse_config() {
        let config = Config::from_json(&json!({"model_type": "gemma3n_text", "num_hidden_layers": 12,
            "num_kv_shared_layers": 2}))
        .unwrap();
        assert_eq!(config.intermediate_sizes, vec![16_384; 12]);
        assert_eq!(config.activation_sparsity[..10], [0.95; 10]);
        assert_eq!(config.activation_sparsity[10..], [0.0; 2]);
        assert_eq!(config.layer_kinds[4], LayerKind::Full);
        assert_eq!((config.rope_theta_full, config.rope_theta_sliding), (1_000_000.0, 10_000.0));
        // Layers 10 and 11 are both sliding (only every 5th layer is full): they reuse layer 8, and
        // layer 9 (full) has no consumer.
        assert_eq!(config.kv_sources[8], KvSource::Own { cache: 8, publishes: true });
        assert_eq!(config.kv_sources[9], KvSource::Own { cache: 9, publishes: false });
        assert_eq!((config.kv_sources[10], config.kv_sources[11]), (KvSource::Shared, KvSource::Shared));
        assert_eq!(config.num_caches(), 10);
    }

    #[test]
    fn nested_text_config_and_both_rope_forms() {
        let nested = json!({"model_type": "gemma3n", "text_config": {"num_hidden_layers": 4, "num_kv_shared_layers": 0,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            "rope_theta": 5.0, "rope_local_base_freq": 7.0, "intermediate_size": [1, 2, 3, 4]}});
        let config = Config::from_json(&nested).unwrap();
        assert_eq!((config.rope_theta_full, config.rope_theta_sliding), (5.0, 7.0));
        assert_eq!(config.intermediate_sizes, vec![1, 2, 3, 4]);
        assert_eq!(config.activation_sparsity, vec![0.0; 4]);
        let params = json!({"num_hidden_layers": 4, "num_kv_shared_layers": 0, "rope_parameters": {
            "full_attention": {"rope_type": "default", "rope_theta": 11.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 13.0}}});
        let config = Config::from_json(&params).unwrap();
        assert_eq!((config.rope_theta_full, config.rope_theta_sliding), (11.0, 13.0));
    }

    #[test]
    fn inconsistent_configs_are_rejected_with_the_field_named() {
        let cases = [
            (json!({"num_hidden_layers": 3, "intermediate_size": [1, 2]}), "intermediate_size"),
            (json!({"num_hidden_layers": 3, "num_kv_shared_layers": 3}), "num_kv_shared_layers"),
            (
                json!({"num_hidden_layers": 2, "num_kv_shared_layers": 1,
                "layer_types": ["sliding_attention", "full_attention"]}),
                "no earlier",
            ),
            (json!({"num_attention_heads": 3}), "num_key_value_heads"),
            (json!({"hidden_size": 0}), "hidden_size"),
            (
                json!({"num_hidden_layers": 2, "num_kv_shared_layers": 0, "layer_types": ["sliding_attention", "moe"]}),
                "moe",
            ),
            (json!({"rope_parameters": {"full_attention": {"rope_type": "yarn"}}}), "yarn"),
            (json!({"model_type": "gemma3n"}), "text_config"),
            (json!({"rms_norm_eps": -1e-6}), "rms_norm_eps"),
            (json!({"rope_theta": 0.0}), "rope_theta"),
            (json!({"rope_parameters": {"sliding_attention": {"rope_theta": 1e39}}}), "rope_local_base_freq"),
            (json!({"final_logit_softcapping": -30.0}), "final_logit_softcapping"),
        ];
        for (config, needle) in cases {
            let err = Config::from_json(&config).unwrap_err();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }
}
