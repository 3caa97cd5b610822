//! Gemma 3 text models (270M to 27B), numerically following transformers'
//! `modeling_gemma3.py`: embeddings scaled by `sqrt(hidden)` (rounded to the compute dtype, as
//! transformers does, not to bfloat16 as mlx-lm does), sandwich-normed blocks with `(1 + w)`
//! RMSNorms, q/k norms, attention scaled by `query_pre_attn_scalar^-1/2`, sliding-window layers
//! with their own RoPE base between global ones, a gelu-tanh gated MLP and a tied LM head.
//!
//! Loads HF and MLX safetensors folders (`gemma3_text`, or the text part of a multimodal
//! `gemma3` save) and GGUF files (`general.architecture = gemma3`).

use std::collections::HashMap;
use std::path::Path;

use mlx_bridge::fused;
use mlx_bridge::{Array, Dtype, fast};
use serde::Deserialize;
use serde_json::Value;

use crate::causal_lm::{CausalLm, Logits, check_step, select_positions};
use crate::error::{ModelError, Result};
use crate::gguf::{self, GgufFile, GgufTensor, KQuants};
use crate::hardware::DecodePath;
use crate::layers::{Embedding, KvCache, Linear, RmsNorm, gelu_tanh};
use crate::weights::{QuantizationConfig, WeightStore};

/// How the weights are held and which MLP path runs (from the execution plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    pub dtype: Dtype,
    pub decode_path: DecodePath,
    pub pretranspose: bool,
    pub dequantize: bool,
    pub k_quants: KQuants,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    Sliding,
    Full,
}

/// transformers' `Gemma3TextConfig` fields, as saved (defaults as transformers has them).
#[derive(Debug, Clone, Deserialize)]
struct RawConfig {
    #[serde(default = "defaults::vocab_size")]
    vocab_size: i32,
    #[serde(default = "defaults::hidden_size")]
    hidden_size: i32,
    #[serde(default = "defaults::intermediate_size")]
    intermediate_size: i32,
    #[serde(default = "defaults::num_hidden_layers")]
    num_hidden_layers: i32,
    #[serde(default = "defaults::num_attention_heads")]
    num_attention_heads: i32,
    #[serde(default = "defaults::num_key_value_heads")]
    num_key_value_heads: i32,
    #[serde(default = "defaults::head_dim")]
    head_dim: i32,
    #[serde(default = "defaults::rms_norm_eps")]
    rms_norm_eps: f32,
    #[serde(default = "defaults::query_pre_attn_scalar")]
    query_pre_attn_scalar: f32,
    #[serde(default = "defaults::sliding_window")]
    sliding_window: i32,
    #[serde(default)]
    layer_types: Option<Vec<String>>,
    #[serde(default, alias = "_sliding_window_pattern")]
    sliding_window_pattern: Option<usize>,
    #[serde(default = "defaults::max_position_embeddings")]
    max_position_embeddings: i32,
    #[serde(default)]
    final_logit_softcapping: Option<f32>,
    #[serde(default)]
    attn_logit_softcapping: Option<f32>,
    #[serde(default)]
    rope_theta: Option<f32>,
    #[serde(default)]
    rope_local_base_freq: Option<f32>,
    #[serde(default)]
    rope_parameters: Option<Value>,
    #[serde(default)]
    rope_scaling: Option<Value>,
}

mod defaults {
    pub fn vocab_size() -> i32 {
        262_208
    }
    pub fn hidden_size() -> i32 {
        2304
    }
    pub fn intermediate_size() -> i32 {
        9216
    }
    pub fn num_hidden_layers() -> i32 {
        26
    }
    pub fn num_attention_heads() -> i32 {
        8
    }
    pub fn num_key_value_heads() -> i32 {
        4
    }
    pub fn head_dim() -> i32 {
        256
    }
    pub fn rms_norm_eps() -> f32 {
        1e-6
    }
    pub fn query_pre_attn_scalar() -> f32 {
        256.0
    }
    pub fn sliding_window() -> i32 {
        4096
    }
    pub fn max_position_embeddings() -> i32 {
        131_072
    }
}

/// A layer kind's RoPE: base and position scale (linear scaling divides positions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeSpec {
    pub base: f32,
    pub scale: f32,
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
    pub rope_full: RopeSpec,
    pub rope_sliding: RopeSpec,
}

impl Config {
    pub const MODEL_TYPES: [&'static str; 2] = ["gemma3_text", "gemma3"];

    /// From config.json; a multimodal `gemma3` save keeps the text model under `text_config`.
    pub fn from_json(root: &Value) -> std::result::Result<Config, String> {
        let text = root.get("text_config").filter(|t| t.is_object()).unwrap_or(root);
        let raw: RawConfig = serde_json::from_value(text.clone()).map_err(|e| e.to_string())?;
        if raw.attn_logit_softcapping.is_some() {
            return Err("attn_logit_softcapping is not supported".into());
        }
        let layers = raw.num_hidden_layers.max(0) as usize;
        let layer_kinds = match (&raw.layer_types, raw.sliding_window_pattern) {
            (Some(types), _) => types
                .iter()
                .map(|t| match t.as_str() {
                    "sliding_attention" => Ok(LayerKind::Sliding),
                    "full_attention" => Ok(LayerKind::Full),
                    other => Err(format!("unknown layer type {other:?}")),
                })
                .collect::<std::result::Result<Vec<_>, _>>()?,
            (None, pattern) => pattern_kinds(layers, pattern.unwrap_or(6)),
        };
        if layer_kinds.len() != layers {
            return Err(format!("layer_types has {} entries for {layers} layers", layer_kinds.len()));
        }
        let (rope_full, rope_sliding) = rope_specs(&raw)?;
        let config = Config {
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
            rope_full,
            rope_sliding,
        };
        config.validate()?;
        Ok(config)
    }

    /// The config a GGUF file's `gemma3.*` metadata describes, with llama.cpp's fixed choices for
    /// what the metadata leaves out: every sixth layer global, a local RoPE base of 10000, and
    /// attention scaled by the head size (by `hidden / heads` for the 62-layer 27B model).
    pub fn from_gguf(file: &GgufFile) -> Result<Config> {
        let path = file.path().to_path_buf();
        let int = |key: &str| gguf::metadata_int(file, &format!("gemma3.{key}"));
        let float = |key: &str| gguf::metadata_float(file, &format!("gemma3.{key}"));
        let required = |key: &str| -> Result<i32> {
            int(key)?.map(|v| v as i32).ok_or_else(|| ModelError::Config {
                path: path.clone(),
                message: format!("GGUF metadata has no gemma3.{key}"),
            })
        };
        let hidden = required("embedding_length")?;
        let heads = required("attention.head_count")?;
        let layers = required("block_count")?;
        let head_dim = int("attention.key_length")?.map_or(hidden / heads.max(1), |v| v as i32);
        let vocab =
            file.header().tensor("token_embd.weight").and_then(|t| t.shape().first().copied()).ok_or_else(|| {
                ModelError::Config { path: path.clone(), message: "no token_embd.weight tensor".into() }
            })?;
        let scaling = match file.header().get("gemma3.rope.scaling.type").and_then(|v| v.as_str()) {
            None | Some("none") => 1.0,
            Some("linear") => 1.0 / float("rope.scaling.factor")?.unwrap_or(1.0) as f32,
            Some(other) => {
                return Err(ModelError::Config { path, message: format!("RoPE scaling {other:?} is not supported") });
            }
        };
        let query_pre_attn_scalar = if layers == 62 { (hidden / heads) as f32 } else { head_dim as f32 };
        let config = Config {
            vocab_size: vocab as i32,
            hidden_size: hidden,
            intermediate_size: required("feed_forward_length")?,
            num_heads: heads,
            num_kv_heads: int("attention.head_count_kv")?.map_or(heads, |v| v as i32),
            head_dim,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon")?.map_or(1e-6, |v| v as f32),
            query_pre_attn_scalar,
            sliding_window: int("attention.sliding_window")?.map_or(4096, |v| v as i32),
            layer_kinds: pattern_kinds(layers.max(0) as usize, 6),
            max_position_embeddings: int("context_length")?.map_or(131_072, |v| v as i32),
            final_logit_softcapping: float("final_logit_softcapping")?.map(|v| v as f32),
            rope_full: RopeSpec { base: float("rope.freq_base")?.map_or(1_000_000.0, |v| v as f32), scale: scaling },
            rope_sliding: RopeSpec { base: 10_000.0, scale: 1.0 },
        };
        config.validate().map_err(|message| ModelError::Config { path, message })?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.layer_kinds.len() as i32),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("sliding_window", self.sliding_window),
        ];
        if let Some((name, value)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err(format!("{name} must be positive, got {value}"));
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.query_pre_attn_scalar <= 0.0 {
            return Err("query_pre_attn_scalar must be positive".into());
        }
        Ok(())
    }

    /// Bytes of keys and values after `context` positions (sliding layers keep one window).
    pub fn kv_cache_bytes(&self, context: usize, bytes_per_element: usize) -> usize {
        let per_position = 2 * (self.num_kv_heads * self.head_dim) as usize * bytes_per_element;
        self.layer_kinds
            .iter()
            .map(|kind| match kind {
                LayerKind::Full => context,
                LayerKind::Sliding => context.min(self.sliding_window as usize),
            })
            .sum::<usize>()
            * per_position
    }
}

/// Every `pattern`-th layer global, the rest sliding (transformers' `sliding_window_pattern`).
fn pattern_kinds(layers: usize, pattern: usize) -> Vec<LayerKind> {
    (0..layers)
        .map(|i| if pattern > 0 && (i + 1) % pattern == 0 { LayerKind::Full } else { LayerKind::Sliding })
        .collect()
}

/// `rope_parameters.{full,sliding}_attention` (transformers 5) or `rope_theta`,
/// `rope_local_base_freq` and `rope_scaling` (earlier saves; scaling applies to global layers).
fn rope_specs(raw: &RawConfig) -> std::result::Result<(RopeSpec, RopeSpec), String> {
    let spec = |entry: Option<&Value>, base: f32| -> std::result::Result<RopeSpec, String> {
        let Some(entry) = entry.filter(|e| !e.is_null()) else { return Ok(RopeSpec { base, scale: 1.0 }) };
        let base = entry.get("rope_theta").and_then(Value::as_f64).map_or(base, |v| v as f32);
        let kind = entry.get("rope_type").or_else(|| entry.get("type")).and_then(Value::as_str).unwrap_or("default");
        let scale = match kind {
            "default" => 1.0,
            "linear" => {
                let factor = entry.get("factor").and_then(Value::as_f64).ok_or("linear RoPE scaling needs a factor")?;
                (1.0 / factor) as f32
            }
            other => return Err(format!("RoPE type {other:?} is not supported")),
        };
        Ok(RopeSpec { base, scale })
    };
    let full_base = raw.rope_theta.unwrap_or(1_000_000.0);
    let sliding_base = raw.rope_local_base_freq.unwrap_or(10_000.0);
    match raw.rope_parameters.as_ref().filter(|p| p.get("full_attention").is_some()) {
        Some(params) => {
            Ok((spec(params.get("full_attention"), full_base)?, spec(params.get("sliding_attention"), sliding_base)?))
        }
        None => Ok((spec(raw.rope_scaling.as_ref(), full_base)?, RopeSpec { base: sliding_base, scale: 1.0 })),
    }
}

pub struct Gemma3 {
    config: Config,
    decode_path: DecodePath,
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
}

struct DecoderLayer {
    kind: LayerKind,
    attention: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    rope: fast::Rope,
    scale: f32,
    num_heads: i32,
    num_kv_heads: i32,
    head_dim: i32,
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

/// HF text (`model.*`), HF multimodal (`model.language_model.*`) and mlx-vlm
/// (`language_model.model.*`) names to the model's own; vision towers and the tied head dropped.
fn rename_tensor(name: &str) -> Option<String> {
    let local = crate::weights::text_model_name(name);
    let dropped = ["lm_head.", "vision_tower.", "multi_modal_projector.", "vision_model."];
    if dropped.iter().any(|p| local.starts_with(p)) {
        return None;
    }
    Some(local.to_string())
}

/// llama.cpp's tensor names to the model's own.
fn rename_gguf_tensor(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("embed_tokens.weight".into()),
        "output_norm.weight" => return Some("norm.weight".into()),
        _ => {}
    }
    let (index, tensor) = name.strip_prefix("blk.")?.split_once('.')?;
    let module = match tensor.strip_suffix(".weight")? {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "attn_norm" => "input_layernorm",
        "post_attention_norm" => "post_attention_layernorm",
        "ffn_norm" => "pre_feedforward_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("layers.{index}.{module}.weight"))
}

impl Gemma3 {
    pub fn load(dir: &Path, root_config: &Value, options: LoadOptions) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = Config::from_json(root_config)
            .map_err(|message| ModelError::Config { path: config_path.clone(), message })?;
        let quantization = QuantizationConfig::from_config(root_config, &rename_tensor)
            .map_err(|message| ModelError::Config { path: config_path, message })?;
        let store =
            WeightStore::open(dir, &rename_tensor, quantization, options.dtype)?.dequantized(options.dequantize);
        Self::from_store(config, &store, options)
    }

    /// Loads a GGUF file of architecture `gemma3`.
    pub fn load_gguf(file: &GgufFile, options: LoadOptions) -> Result<Self> {
        let config = Config::from_gguf(file)?;
        // llama.cpp's converter stores Gemma's norm weights as `1 + w` (ggml's RMSNorm multiplies
        // by the weight alone); take the one back off, as transformers' GGUF loader does, so both
        // formats go through the same `(1 + w)` norm.
        let transform = |name: &str, tensor: GgufTensor| -> Result<GgufTensor> {
            match tensor {
                GgufTensor::Dense(w) if name.ends_with("norm.weight") => Ok(GgufTensor::Dense(w.sub_scalar(1.0)?)),
                other => Ok(other),
            }
        };
        let store = gguf::weight_store(file, &rename_gguf_tensor, &transform, options.k_quants, options.dtype)?
            .dequantized(options.dequantize);
        Self::from_store(config, &store, options)
    }

    pub fn from_arrays(
        config: Config,
        arrays: HashMap<String, Array>,
        quantization: Option<QuantizationConfig>,
        options: LoadOptions,
    ) -> Result<Self> {
        let store = WeightStore::from_arrays(arrays, quantization, options.dtype).dequantized(options.dequantize);
        Self::from_store(config, &store, options)
    }

    fn from_store(config: Config, w: &WeightStore, options: LoadOptions) -> Result<Self> {
        let d = config.hidden_size;
        let mut embed_tokens = w.embedding("embed_tokens", config.vocab_size, d)?;
        if options.pretranspose {
            embed_tokens = embed_tokens.with_pretransposed_head()?;
        }
        let layers =
            (0..config.layer_kinds.len()).map(|i| DecoderLayer::load(&config, w, i, options)).collect::<Result<_>>()?;
        Ok(Gemma3 {
            embed_tokens,
            layers,
            norm: RmsNorm::one_plus(w.tensor("norm.weight", &[d])?, config.rms_norm_eps)?,
            decode_path: options.decode_path,
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl CausalLm for Gemma3 {
    fn forward_logits(&self, ids: &Array, caches: &mut [KvCache], which: Logits) -> Result<Array> {
        let c = &self.config;
        check_step(ids, caches.len(), self.layers.len())?;
        let offset = caches[0].offset();
        let h = self.embed_tokens.lookup(&ids.astype(Dtype::I32)?)?;
        // mul_scalar rounds the factor to the activations' dtype, as transformers does.
        let mut h = h.mul_scalar((c.hidden_size as f64).sqrt())?;
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            h = layer.forward(&h, cache, offset, self.decode_path)?;
        }
        let logits = self.embed_tokens.as_linear(&self.norm.forward(&select_positions(h, which)?)?)?;
        match c.final_logit_softcapping {
            Some(cap) => Ok(logits.div_scalar(cap as f64)?.tanh()?.mul_scalar(cap as f64)?),
            None => Ok(logits),
        }
    }

    fn make_caches(&self) -> Vec<KvCache> {
        self.layers
            .iter()
            .map(|layer| match layer.kind {
                LayerKind::Full => KvCache::growing(),
                LayerKind::Sliding => KvCache::sliding(self.config.sliding_window),
            })
            .collect()
    }

    fn context_length(&self) -> usize {
        self.config.max_position_embeddings as usize
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size as usize
    }
}

impl DecoderLayer {
    fn load(c: &Config, w: &WeightStore, i: usize, options: LoadOptions) -> Result<Self> {
        let p = format!("layers.{i}");
        let (d, hq, hkv, hd) = (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim);
        let linear = |name: &str, out_dim: i32, in_dim: i32| -> Result<Linear> {
            let layer = w.linear(&format!("{p}.{name}"), out_dim, in_dim)?;
            if options.pretranspose { layer.pretransposed() } else { Ok(layer) }
        };
        let norm = |name: &str, dim: i32| -> Result<RmsNorm> {
            RmsNorm::one_plus(w.tensor(&format!("{p}.{name}.weight"), &[dim])?, c.rms_norm_eps)
        };
        let kind = c.layer_kinds[i];
        let rope = match kind {
            LayerKind::Full => c.rope_full,
            LayerKind::Sliding => c.rope_sliding,
        };
        Ok(DecoderLayer {
            kind,
            attention: Attention {
                q_proj: linear("self_attn.q_proj", hq * hd, d)?,
                k_proj: linear("self_attn.k_proj", hkv * hd, d)?,
                v_proj: linear("self_attn.v_proj", hkv * hd, d)?,
                o_proj: linear("self_attn.o_proj", d, hq * hd)?,
                q_norm: norm("self_attn.q_norm", hd)?,
                k_norm: norm("self_attn.k_norm", hd)?,
                rope: fast::Rope { scale: rope.scale, ..fast::Rope::new(hd, rope.base) },
                scale: c.query_pre_attn_scalar.powf(-0.5),
                num_heads: hq,
                num_kv_heads: hkv,
                head_dim: hd,
            },
            mlp: Mlp {
                gate_proj: linear("mlp.gate_proj", c.intermediate_size, d)?,
                up_proj: linear("mlp.up_proj", c.intermediate_size, d)?,
                // Kept as stored: the compiled MLP block takes `down` untransposed (as Gemma 3n's).
                down_proj: w.linear(&format!("{p}.mlp.down_proj"), d, c.intermediate_size)?,
            },
            input_layernorm: norm("input_layernorm", d)?,
            post_attention_layernorm: norm("post_attention_layernorm", d)?,
            pre_feedforward_layernorm: norm("pre_feedforward_layernorm", d)?,
            post_feedforward_layernorm: norm("post_feedforward_layernorm", d)?,
        })
    }

    fn forward(&self, x: &Array, cache: &mut KvCache, offset: i32, path: DecodePath) -> Result<Array> {
        let attn = self.attention.forward(&self.input_layernorm.forward(x)?, cache, offset)?;
        let h = x.add(&self.post_attention_layernorm.forward(&attn)?)?;
        let ffw = self.mlp.forward(&self.pre_feedforward_layernorm.forward(&h)?, path)?;
        Ok(h.add(&self.post_feedforward_layernorm.forward(&ffw)?)?)
    }
}

impl Attention {
    fn forward(&self, x: &Array, cache: &mut KvCache, offset: i32) -> Result<Array> {
        let (b, l) = (x.dim(0)?, x.dim(1)?);
        let heads = |y: Array, n: i32| -> Result<Array> { Ok(y.reshape(&[b, l, n, self.head_dim])?) };
        let queries = self.q_norm.forward(&heads(self.q_proj.forward(x)?, self.num_heads)?)?;
        let queries = self.rope.apply(&queries.transpose(&[0, 2, 1, 3])?, offset)?;
        let keys = self.k_norm.forward(&heads(self.k_proj.forward(x)?, self.num_kv_heads)?)?;
        let keys = self.rope.apply(&keys.transpose(&[0, 2, 1, 3])?, offset)?;
        let values = heads(self.v_proj.forward(x)?, self.num_kv_heads)?.transpose(&[0, 2, 1, 3])?;
        let inputs = cache.update(&keys, &values)?;
        let out = fast::scaled_dot_product_attention(
            &queries,
            &inputs.keys,
            &inputs.values,
            self.scale,
            inputs.mask.as_fast(),
        )?;
        self.o_proj.forward(&out.transpose(&[0, 2, 1, 3])?.reshape(&[b, l, self.num_heads * self.head_dim])?)
    }
}

impl Mlp {
    /// `down(gelu_tanh(gate(x)) * up(x))`; on the fused path one compiled block when the
    /// weights are dense (the same block as Gemma 3n's dense MLP layers).
    fn forward(&self, x: &Array, path: DecodePath) -> Result<Array> {
        if path == DecodePath::Fused {
            let block = crate::gemma3n::gelu_mlp_block(&self.gate_proj, &self.up_proj, &self.down_proj);
            if let Some((block, gate, up, down)) = block {
                if let Some(out) = fused::call(block, &[x, gate, up, down])?.into_iter().next() {
                    return Ok(out);
                }
            }
        }
        let gate = self.gate_proj.forward(x)?;
        let up = self.up_proj.forward(x)?;
        let hidden = match path {
            DecodePath::Fused => fused::gelu_tanh_gate(&gate, &up)?,
            DecodePath::Split => gelu_tanh(&gate)?.mul(&up)?,
        };
        self.down_proj.forward(&hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_rope_forms_and_the_layer_pattern() {
        let old = json!({"num_hidden_layers": 7, "rope_theta": 5.0, "rope_local_base_freq": 7.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "sliding_window_pattern": 6});
        let config = Config::from_json(&old).unwrap();
        assert_eq!(config.rope_full, RopeSpec { base: 5.0, scale: 0.125 });
        assert_eq!(config.rope_sliding, RopeSpec { base: 7.0, scale: 1.0 });
        assert_eq!(config.layer_kinds[5], LayerKind::Full);
        assert_eq!(config.layer_kinds.iter().filter(|k| **k == LayerKind::Full).count(), 1);
        let new = json!({"num_hidden_layers": 2, "layer_types": ["full_attention", "sliding_attention"],
            "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 11.0},
                                "sliding_attention": {"rope_type": "default", "rope_theta": 13.0}}});
        let config = Config::from_json(&new).unwrap();
        assert_eq!((config.rope_full.base, config.rope_sliding.base), (11.0, 13.0));
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
        ] {
            let message = Config::from_json(&config).unwrap_err();
            assert!(message.contains(needle), "{message}");
        }
    }

    #[test]
    fn gguf_names_map_to_checkpoint_names() {
        assert_eq!(
            rename_gguf_tensor("blk.2.ffn_norm.weight").as_deref(),
            Some("layers.2.pre_feedforward_layernorm.weight")
        );
        assert_eq!(
            rename_gguf_tensor("blk.2.post_ffw_norm.weight").as_deref(),
            Some("layers.2.post_feedforward_layernorm.weight")
        );
        assert_eq!(rename_gguf_tensor("blk.0.attn_k_norm.weight").as_deref(), Some("layers.0.self_attn.k_norm.weight"));
        assert_eq!(
            rename_tensor("model.language_model.layers.0.mlp.up_proj.weight").as_deref(),
            Some("layers.0.mlp.up_proj.weight")
        );
        assert_eq!(rename_tensor("model.vision_tower.encoder.weight"), None);
    }
}
