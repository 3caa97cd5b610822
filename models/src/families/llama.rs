//! Llama family text models (Llama 2/3, SmolLM/SmolLM2, Mistral-style), numerically following
//! transformers' `modeling_llama.py`: pre-norm blocks of grouped-query attention with split-half
//! RoPE and a SwiGLU MLP, RMSNorm `x * w`, an optionally tied LM head.
//!
//! Loads HF and MLX safetensors folders (`model.*` names, MLX affine quantization) and GGUF files
//! (`general.architecture = llama`, tensor names mapped, Q/K rows un-permuted).

use std::collections::HashMap;
use std::path::Path;

use mlx_bridge::{Array, Dtype, fast};
use serde::Deserialize;
use serde_json::Value;

use crate::causal_lm::{CausalLm, Logits, check_step, select_positions};
use crate::error::{ModelError, Result};
use crate::gguf::{self, GgufFile, GgufTensor, KQuants};
use crate::layers::{Embedding, KvCache, Linear, RmsNorm};
use crate::weights::{QuantizationConfig, WeightStore};

/// How the weights are held (from the execution plan and the load options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    pub dtype: Dtype,
    pub pretranspose: bool,
    /// Unpack quantized layers to dense weights at load.
    pub dequantize: bool,
    pub k_quants: KQuants,
}

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
    #[serde(default)]
    pub rope_theta: Option<f32>,
    #[serde(default)]
    pub rope_parameters: Option<Value>,
    #[serde(default)]
    pub rope_scaling: Option<Value>,
    #[serde(default = "default_context")]
    pub max_position_embeddings: i32,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    /// Mistral-style sliding-window attention on every layer.
    #[serde(default)]
    pub sliding_window: Option<i32>,
}

fn default_eps() -> f32 {
    1e-6
}

fn default_context() -> i32 {
    2048
}

/// RoPE frequencies: the base, or explicit per-pair frequencies (Llama 3 scaling, GGUF factors).
#[derive(Debug, Clone)]
struct RopeSpec {
    base: f32,
    scale: f32,
    /// MLX's `freqs` (per rotated pair, the inverse of the angular frequency).
    periods: Option<Vec<f32>>,
}

impl Config {
    pub const MODEL_TYPES: [&'static str; 2] = ["llama", "mistral"];

    pub fn from_json(root: &Value) -> std::result::Result<Config, String> {
        let config: Config = serde_json::from_value(root.clone()).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// The config a GGUF file's `llama.*` metadata describes.
    pub fn from_gguf(file: &GgufFile) -> Result<Config> {
        let int = |key: &str| gguf::metadata_int(file, &format!("llama.{key}"));
        let required = |key: &str| -> Result<i32> {
            int(key)?.map(|v| v as i32).ok_or_else(|| ModelError::Config {
                path: file.path().to_path_buf(),
                message: format!("GGUF metadata has no llama.{key}"),
            })
        };
        let heads = required("attention.head_count")?;
        let hidden = required("embedding_length")?;
        let vocab = match int("vocab_size")? {
            Some(v) => v as i32,
            None => file.header().get("tokenizer.ggml.tokens").and_then(|t| t.as_array()).map_or(0, |t| t.len()) as i32,
        };
        let config = Config {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: required("feed_forward_length")?,
            num_hidden_layers: required("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: int("attention.head_count_kv")?.map(|v| v as i32),
            head_dim: int("attention.key_length")?.map(|v| v as i32),
            rms_norm_eps: gguf::metadata_float(file, "llama.attention.layer_norm_rms_epsilon")?
                .map_or(1e-5, |v| v as f32),
            rope_theta: gguf::metadata_float(file, "llama.rope.freq_base")?.map(|v| v as f32),
            rope_parameters: None,
            rope_scaling: None,
            max_position_embeddings: int("context_length")?.map_or(2048, |v| v as i32),
            tie_word_embeddings: file.header().tensor("output.weight").is_none(),
            attention_bias: false,
            mlp_bias: false,
            sliding_window: None,
        };
        config.validate().map_err(|message| ModelError::Config { path: file.path().to_path_buf(), message })?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.attention_bias || self.mlp_bias {
            return Err("attention_bias / mlp_bias are not supported".into());
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("head_dim", self.head_dim()),
        ];
        if let Some((name, value)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err(format!("{name} must be positive, got {value}"));
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if self.head_dim() % 2 != 0 {
            return Err(format!("head_dim {} must be even for RoPE", self.head_dim()));
        }
        self.rope().map(|_| ())
    }

    pub fn kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i32 {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Bytes of keys and values after `context` positions.
    pub fn kv_cache_bytes(&self, context: usize, bytes_per_element: usize) -> usize {
        let positions = self.sliding_window.map_or(context, |w| context.min(w as usize));
        2 * self.num_hidden_layers as usize
            * positions
            * (self.kv_heads() * self.head_dim()) as usize
            * bytes_per_element
    }

    /// `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (earlier saves).
    fn rope(&self) -> std::result::Result<RopeSpec, String> {
        let params = self.rope_parameters.as_ref().filter(|p| !p.is_null());
        let scaling = params.or(self.rope_scaling.as_ref().filter(|s| !s.is_null()));
        let base = params
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .map(|v| v as f32)
            .or(self.rope_theta)
            .unwrap_or(10_000.0);
        let mut spec = RopeSpec { base, scale: 1.0, periods: None };
        let Some(scaling) = scaling else { return Ok(spec) };
        let kind = scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(Value::as_str);
        let number = |key: &str| scaling.get(key).and_then(Value::as_f64);
        match kind.unwrap_or("default") {
            "default" => {}
            "linear" => {
                let factor = number("factor").ok_or("linear RoPE scaling needs a factor")?;
                spec.scale = (1.0 / factor) as f32;
            }
            "llama3" => {
                let (Some(factor), Some(low), Some(high), Some(original)) = (
                    number("factor"),
                    number("low_freq_factor"),
                    number("high_freq_factor"),
                    number("original_max_position_embeddings"),
                ) else {
                    return Err("llama3 RoPE scaling needs factor, low/high_freq_factor and \
                                original_max_position_embeddings"
                        .into());
                };
                spec.periods = Some(llama3_periods(base, self.head_dim(), factor, low, high, original));
            }
            other => return Err(format!("RoPE scaling type {other:?} is not supported")),
        }
        Ok(spec)
    }
}

/// transformers' `_compute_llama3_parameters`, as periods (1 / inverse frequency).
fn llama3_periods(base: f32, dims: i32, factor: f64, low: f64, high: f64, original: f64) -> Vec<f32> {
    let (low_wavelen, high_wavelen) = (original / low, original / high);
    (0..dims / 2)
        .map(|i| {
            let inv_freq = 1.0 / (base as f64).powf(2.0 * i as f64 / dims as f64);
            let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
            let scaled = if wavelen > low_wavelen {
                inv_freq / factor
            } else if wavelen < high_wavelen {
                inv_freq
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
            };
            (1.0 / scaled) as f32
        })
        .collect()
}

pub struct Llama {
    config: Config,
    embed_tokens: Embedding,
    /// `None` when tied to the embedding.
    lm_head: Option<Linear>,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
}

struct DecoderLayer {
    attention: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    rope: fast::Rope,
    num_heads: i32,
    num_kv_heads: i32,
    head_dim: i32,
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

/// Checkpoint names (`model.layers.0...`, `lm_head.weight`) to the model's own.
fn rename_tensor(name: &str) -> Option<String> {
    if name.contains("rotary_emb.") {
        return None;
    }
    Some(name.strip_prefix("model.").unwrap_or(name).to_string())
}

/// llama.cpp's tensor names to the model's own.
fn rename_gguf_tensor(name: &str) -> Option<String> {
    let renamed = match name {
        "token_embd.weight" => "embed_tokens.weight".to_string(),
        "output_norm.weight" => "norm.weight".to_string(),
        "output.weight" => "lm_head.weight".to_string(),
        "rope_freqs.weight" => "rope_freqs.weight".to_string(),
        _ => {
            let rest = name.strip_prefix("blk.")?;
            let (index, tensor) = rest.split_once('.')?;
            let module = match tensor.strip_suffix(".weight")? {
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            format!("layers.{index}.{module}.weight")
        }
    };
    Some(renamed)
}

impl Llama {
    /// Loads a checkpoint folder (config.json + safetensors, plain or MLX-quantized).
    pub fn load(dir: &Path, root_config: &Value, options: LoadOptions) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = Config::from_json(root_config)
            .map_err(|message| ModelError::Config { path: config_path.clone(), message })?;
        let quantization = QuantizationConfig::from_config(root_config, &rename_tensor)
            .map_err(|message| ModelError::Config { path: config_path, message })?;
        let store =
            WeightStore::open(dir, &rename_tensor, quantization, options.dtype)?.dequantized(options.dequantize);
        Self::from_store(config, &store, options, None)
    }

    /// Loads a GGUF file of architecture `llama`.
    pub fn load_gguf(file: &GgufFile, options: LoadOptions) -> Result<Self> {
        let config = Config::from_gguf(file)?;
        let (q_heads, kv_heads) = (config.num_attention_heads, config.kv_heads());
        let transform = |name: &str, tensor: GgufTensor| -> Result<GgufTensor> {
            if name.ends_with("self_attn.q_proj.weight") {
                gguf::unpermute_rope_rows(tensor, q_heads)
            } else if name.ends_with("self_attn.k_proj.weight") {
                gguf::unpermute_rope_rows(tensor, kv_heads)
            } else {
                Ok(tensor)
            }
        };
        let store = gguf::weight_store(file, &rename_gguf_tensor, &transform, options.k_quants, options.dtype)?
            .dequantized(options.dequantize);
        // llama.cpp's per-pair RoPE frequency divisors (Llama 3.1+ files).
        let factors = if store.contains("rope_freqs.weight") {
            let factors = store.raw("rope_freqs.weight")?.astype(Dtype::F32)?;
            Some(factors.to_vec::<f32>()?)
        } else {
            None
        };
        Self::from_store(config, &store, options, factors)
    }

    /// A model over tensors already in memory (by the model's own names).
    pub fn from_arrays(
        config: Config,
        arrays: HashMap<String, Array>,
        quantization: Option<QuantizationConfig>,
        options: LoadOptions,
    ) -> Result<Self> {
        let store = WeightStore::from_arrays(arrays, quantization, options.dtype).dequantized(options.dequantize);
        Self::from_store(config, &store, options, None)
    }

    fn from_store(
        config: Config,
        w: &WeightStore,
        options: LoadOptions,
        rope_factors: Option<Vec<f32>>,
    ) -> Result<Self> {
        let c = &config;
        let d = c.hidden_size;
        let mut rope_spec = c.rope().map_err(ModelError::Weights)?;
        if let Some(factors) = rope_factors {
            let hd = c.head_dim();
            if factors.len() != (hd / 2) as usize {
                return Err(ModelError::Weights(format!(
                    "rope_freqs has {} entries, expected {}",
                    factors.len(),
                    hd / 2
                )));
            }
            rope_spec.periods = Some(
                factors.iter().enumerate().map(|(i, f)| rope_spec.base.powf(2.0 * i as f32 / hd as f32) * f).collect(),
            );
        }
        let periods = rope_spec.periods.as_ref().map(|p| Array::from_slice(p, &[p.len() as i32])).transpose()?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| DecoderLayer::load(c, w, i, &rope_spec, periods.as_ref(), options))
            .collect::<Result<Vec<_>>>()?;
        let mut embed_tokens = w.embedding("embed_tokens", c.vocab_size, d)?;
        let lm_head = if c.tie_word_embeddings || !w.contains("lm_head.weight") {
            if options.pretranspose {
                embed_tokens = embed_tokens.with_pretransposed_head()?;
            }
            None
        } else {
            let head = w.linear("lm_head", c.vocab_size, d)?;
            Some(if options.pretranspose { head.pretransposed()? } else { head })
        };
        Ok(Llama {
            embed_tokens,
            lm_head,
            layers,
            norm: RmsNorm::new(w.tensor("norm.weight", &[d])?, c.rms_norm_eps),
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl CausalLm for Llama {
    fn forward_logits(&self, ids: &Array, caches: &mut [KvCache], which: Logits) -> Result<Array> {
        check_step(ids, caches.len(), self.layers.len())?;
        let offset = caches[0].offset();
        let mut h = self.embed_tokens.lookup(&ids.astype(Dtype::I32)?)?;
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            h = layer.forward(&h, cache, offset)?;
        }
        let h = self.norm.forward(&select_positions(h, which)?)?;
        match &self.lm_head {
            Some(head) => head.forward(&h),
            None => self.embed_tokens.as_linear(&h),
        }
    }

    fn make_caches(&self) -> Vec<KvCache> {
        let cache = || match self.config.sliding_window {
            Some(window) => KvCache::sliding(window),
            None => KvCache::growing(),
        };
        (0..self.layers.len()).map(|_| cache()).collect()
    }

    fn context_length(&self) -> usize {
        self.config.max_position_embeddings as usize
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size as usize
    }
}

impl DecoderLayer {
    fn load(
        c: &Config,
        w: &WeightStore,
        i: i32,
        rope_spec: &RopeSpec,
        periods: Option<&Array>,
        options: LoadOptions,
    ) -> Result<Self> {
        let p = format!("layers.{i}");
        let (d, hq, hkv, hd) = (c.hidden_size, c.num_attention_heads, c.kv_heads(), c.head_dim());
        let linear = |name: &str, out_dim: i32, in_dim: i32| -> Result<Linear> {
            let layer = w.linear(&format!("{p}.{name}"), out_dim, in_dim)?;
            if options.pretranspose { layer.pretransposed() } else { Ok(layer) }
        };
        let norm = |name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm::new(w.tensor(&format!("{p}.{name}.weight"), &[d])?, c.rms_norm_eps))
        };
        let rope = fast::Rope {
            dims: hd,
            traditional: false,
            base: rope_spec.base,
            scale: rope_spec.scale,
            freqs: periods.cloned(),
        };
        Ok(DecoderLayer {
            attention: Attention {
                q_proj: linear("self_attn.q_proj", hq * hd, d)?,
                k_proj: linear("self_attn.k_proj", hkv * hd, d)?,
                v_proj: linear("self_attn.v_proj", hkv * hd, d)?,
                o_proj: linear("self_attn.o_proj", d, hq * hd)?,
                rope,
                num_heads: hq,
                num_kv_heads: hkv,
                head_dim: hd,
            },
            mlp: Mlp {
                gate_proj: linear("mlp.gate_proj", c.intermediate_size, d)?,
                up_proj: linear("mlp.up_proj", c.intermediate_size, d)?,
                down_proj: linear("mlp.down_proj", d, c.intermediate_size)?,
            },
            input_layernorm: norm("input_layernorm")?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
        })
    }

    fn forward(&self, x: &Array, cache: &mut KvCache, offset: i32) -> Result<Array> {
        let h = x.add(&self.attention.forward(&self.input_layernorm.forward(x)?, cache, offset)?)?;
        Ok(h.add(&self.mlp.forward(&self.post_attention_layernorm.forward(&h)?)?)?)
    }
}

impl Attention {
    fn forward(&self, x: &Array, cache: &mut KvCache, offset: i32) -> Result<Array> {
        let (b, l) = (x.dim(0)?, x.dim(1)?);
        let heads =
            |y: Array, n: i32| -> Result<Array> { Ok(y.reshape(&[b, l, n, self.head_dim])?.transpose(&[0, 2, 1, 3])?) };
        let queries = self.rope.apply(&heads(self.q_proj.forward(x)?, self.num_heads)?, offset)?;
        let keys = self.rope.apply(&heads(self.k_proj.forward(x)?, self.num_kv_heads)?, offset)?;
        let values = heads(self.v_proj.forward(x)?, self.num_kv_heads)?;
        let inputs = cache.update(&keys, &values)?;
        let scale = (self.head_dim as f32).powf(-0.5);
        let out =
            fast::scaled_dot_product_attention(&queries, &inputs.keys, &inputs.values, scale, inputs.mask.as_fast())?;
        self.o_proj.forward(&out.transpose(&[0, 2, 1, 3])?.reshape(&[b, l, self.num_heads * self.head_dim])?)
    }
}

impl Mlp {
    /// `down(silu(gate(x)) * up(x))`.
    fn forward(&self, x: &Array) -> Result<Array> {
        let gate = self.gate_proj.forward(x)?;
        let hidden = gate.mul(&gate.sigmoid()?)?.mul(&self.up_proj.forward(x)?)?;
        self.down_proj.forward(&hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_checkpoint_names() {
        assert_eq!(rename_gguf_tensor("blk.3.attn_q.weight").as_deref(), Some("layers.3.self_attn.q_proj.weight"));
        assert_eq!(
            rename_gguf_tensor("blk.0.ffn_norm.weight").as_deref(),
            Some("layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(rename_gguf_tensor("token_embd.weight").as_deref(), Some("embed_tokens.weight"));
        assert_eq!(rename_gguf_tensor("blk.0.unknown.weight"), None);
        assert_eq!(rename_tensor("model.layers.1.mlp.up_proj.weight").as_deref(), Some("layers.1.mlp.up_proj.weight"));
        assert_eq!(rename_tensor("lm_head.weight").as_deref(), Some("lm_head.weight"));
    }

    #[test]
    fn llama3_scaling_matches_transformers_formula() {
        // Llama 3.1 8B's values; transformers' inv_freq for the first and last pairs.
        let periods = llama3_periods(500_000.0, 128, 8.0, 1.0, 4.0, 8192.0);
        assert_eq!(periods.len(), 64);
        assert!((1.0 / periods[0] - 1.0).abs() < 1e-6, "high frequencies are kept");
        let last_inv = 1.0 / 500_000f64.powf(126.0 / 128.0) / 8.0;
        assert!(((1.0 / periods[63] as f64) / last_inv - 1.0).abs() < 1e-5, "low frequencies are divided by 8");
    }

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
        let mut bad = base;
        bad.as_object_mut().unwrap().remove("hidden_size");
        assert!(Config::from_json(&bad).unwrap_err().contains("hidden_size"));
    }
}
