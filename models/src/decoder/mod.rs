//! The decoder every dense and mixture-of-experts family here is: token embeddings, a stack of
//! residual blocks (attention, then a gated MLP or routed experts, each behind an RMSNorm), a
//! final norm and the LM head. A family describes its variant as a [`DecoderSpec`]: which
//! projections have biases, q/k norms, RoPE per layer, sliding windows, Gemma's `(1 + w)`
//! sandwich norms and scaled embeddings, soft-capping.

mod base;
mod family;
mod names;

use mlx_bridge::{Array, Dtype, fused};

pub use base::Base;
pub use family::{Family, Model};
pub use names::{gguf_name, hf_name};

use crate::causal_lm::{CausalLm, Logits, check_step, select_positions};
use crate::config::{Dimensions, ModelConfig};
use crate::error::Result;
use crate::layers::{
    Activation, Attention, BatchKvCache, CompiledStep, Embedding, GatedMlp, Heads, KvCache, LayerCache, Linear,
    Positions, RmsNorm, RopeConfig, SparseMoe, is_decode_step,
};
use crate::validate::positive_finite;

/// What each layer's feed-forward block is.
#[derive(Debug, Clone, PartialEq)]
pub enum Ffn {
    Dense {
        intermediate: i32,
    },
    /// `top_k` of `experts` routed gated MLPs of `intermediate` each; `normalize` rescales the
    /// chosen experts' probabilities to sum to one.
    Moe {
        experts: i32,
        top_k: i32,
        intermediate: i32,
        normalize: bool,
    },
}

/// One layer's attention pattern and feed-forward block.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    /// `None`: no positional encoding in this layer.
    pub rope: Option<RopeConfig>,
    /// Sliding-window attention over this many positions.
    pub window: Option<i32>,
    pub ffn: Ffn,
}

/// A decoder variant, resolved from a family's config.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderSpec {
    pub vocab_size: i32,
    pub hidden_size: i32,
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    pub rms_norm_eps: f32,
    pub max_position_embeddings: i32,
    pub layers: Vec<LayerSpec>,
    pub activation: Activation,
    /// Multiplies `q k^T`.
    pub attention_scale: f32,
    pub attention_softcap: Option<f32>,
    /// Biases on the q, k and v projections (Qwen2).
    pub qkv_bias: bool,
    pub o_bias: bool,
    /// RMSNorm of each query and key head (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Gemma: norms store `w - 1`, attention and MLP outputs are normed too, and embeddings are
    /// scaled by `sqrt(hidden_size)`.
    pub gemma: bool,
    pub final_softcap: Option<f32>,
    pub tie_embeddings: bool,
}

impl ModelConfig for DecoderSpec {
    fn dimensions(&self) -> Dimensions {
        Dimensions {
            layers: self.layers.len(),
            hidden_size: self.hidden_size,
            vocab_size: self.vocab_size,
            context_length: self.max_position_embeddings,
        }
    }

    /// Sliding layers keep at most their window.
    fn kv_cache_bytes(&self, context: usize, bytes_per_element: usize) -> usize {
        let per_position = 2 * (self.kv_heads * self.head_dim) as usize * bytes_per_element;
        self.layers.iter().map(|l| l.window.map_or(context, |w| context.min(w as usize))).sum::<usize>() * per_position
    }
}

impl DecoderSpec {
    /// Checks what every decoder needs; families check their own fields before.
    pub fn validate(&self) -> std::result::Result<(), String> {
        crate::config::check_positive(&[
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.layers.len() as i32),
            ("head_dim", self.head_dim),
        ])?;
        crate::config::check_heads(self.heads, self.kv_heads)?;
        crate::config::check_positive(&[("max_position_embeddings", self.max_position_embeddings)])?;
        positive_finite("rms_norm_eps", self.rms_norm_eps)?;
        positive_finite("the attention scale", self.attention_scale)?;
        if let Some(cap) = self.final_softcap {
            positive_finite("final_logit_softcapping", cap)?;
        }
        if let Some(cap) = self.attention_softcap {
            positive_finite("attn_logit_softcapping", cap)?;
        }
        for layer in &self.layers {
            // GGUF metadata reaches here unchecked; float32 is what the kernels compute in.
            if let Some(rope) = &layer.rope {
                positive_finite("rope_theta", rope.theta as f32)?;
            }
            match layer.ffn {
                Ffn::Dense { intermediate } => crate::config::check_positive(&[("intermediate_size", intermediate)])?,
                Ffn::Moe { experts, top_k, intermediate, .. } => {
                    crate::config::check_positive(&[
                        ("moe_intermediate_size", intermediate),
                        ("num_experts", experts),
                    ])?;
                    if !(1..=experts).contains(&top_k) {
                        return Err(format!("num_experts_per_tok {top_k} must lie in 1..={experts}"));
                    }
                }
            }
            if let Some(window) = layer.window {
                crate::config::check_positive(&[("sliding_window", window)])?;
            }
        }
        Ok(())
    }
}

enum FeedForward {
    Dense(GatedMlp),
    Moe(SparseMoe),
}

struct Layer {
    attention: Attention,
    ffn: FeedForward,
    input_norm: RmsNorm,
    /// Before the feed-forward block.
    ffn_norm: RmsNorm,
    /// Gemma's norms of the attention and feed-forward outputs.
    post_attention_norm: Option<RmsNorm>,
    post_ffn_norm: Option<RmsNorm>,
    window: Option<i32>,
    /// The plan's `compiled_decode`: decode steps run the work around the cache compiled.
    compiled: Option<CompiledStep>,
}

/// A loaded decoder.
pub struct Decoder {
    spec: DecoderSpec,
    embed: Embedding,
    /// `None` when tied to the embedding.
    head: Option<Linear>,
    layers: Vec<Layer>,
    norm: RmsNorm,
    fused: bool,
}

impl Layer {
    fn forward(&self, x: &Array, cache: &mut impl LayerCache, positions: &Positions) -> Result<Array> {
        if let Some(step) = self.compiled.as_ref().filter(|_| is_decode_step(x)) {
            let heads =
                step.before_cache(&[x], |x| Ok(self.attention.heads(&self.input_norm.forward(&x[0])?)?.into_arrays()))?;
            let (attended, _) = self.attention.attend_own(Heads::from_arrays(heads)?, cache, positions)?;
            let out = step
                .after_attention(&[x, &attended], |a| Ok(vec![self.finish(&a[0], &self.attention.output(&a[1])?)?]))?;
            return Ok(out.into_iter().next().expect("one output"));
        }
        let attention = self.attention.forward(&self.input_norm.forward(x)?, cache, positions)?;
        self.finish(x, &attention)
    }

    /// Everything after the attention output: the residual, the norms and the feed-forward block.
    fn finish(&self, x: &Array, attention: &Array) -> Result<Array> {
        let h = match &self.post_attention_norm {
            Some(norm) => norm.forward_add(attention, x)?,
            None => x.add(attention)?,
        };
        let normed = self.ffn_norm.forward(&h)?;
        let ffn = match &self.ffn {
            FeedForward::Dense(mlp) => mlp.forward(&normed)?,
            FeedForward::Moe(moe) => moe.forward(&normed)?,
        };
        match &self.post_ffn_norm {
            Some(norm) => norm.forward_add(&ffn, &h),
            None => Ok(h.add(&ffn)?),
        }
    }
}

impl Decoder {
    pub fn spec(&self) -> &DecoderSpec {
        &self.spec
    }
}

impl Decoder {
    /// One forward pass over one sequence's caches or a batch's: the same layers either way.
    fn forward_over(&self, ids: &Array, caches: &mut [impl LayerCache], which: Logits) -> Result<Array> {
        check_step(ids, caches.len(), self.layers.len())?;
        let positions = caches[0].positions()?;
        let mut h = self.embed.lookup(&ids.astype(Dtype::I32)?)?;
        if self.spec.gemma {
            // mul_scalar rounds the factor to the activations' dtype, as transformers does.
            h = h.mul_scalar((self.spec.hidden_size as f64).sqrt())?;
        }
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            h = layer.forward(&h, cache, &positions)?;
        }
        let h = self.norm.forward(&select_positions(h, which)?)?;
        let logits = match &self.head {
            Some(head) => head.forward(&h)?,
            None => self.embed.as_linear(&h)?,
        };
        match self.spec.final_softcap {
            Some(cap) if self.fused => Ok(fused::softcap(&logits, &logits.scalar_like(cap as f64)?)?),
            Some(cap) => Ok(logits.div_scalar(cap as f64)?.tanh()?.mul_scalar(cap as f64)?),
            None => Ok(logits),
        }
    }
}

impl CausalLm for Decoder {
    fn forward_logits(&self, ids: &Array, caches: &mut [KvCache], which: Logits) -> Result<Array> {
        self.forward_over(ids, caches, which)
    }

    fn forward_batch(&self, ids: &Array, caches: &mut [BatchKvCache], which: Logits) -> Result<Array> {
        self.forward_over(ids, caches, which)
    }

    fn make_caches(&self) -> Vec<KvCache> {
        self.layers.iter().map(|l| l.window.map_or_else(KvCache::growing, KvCache::sliding)).collect()
    }

    fn context_length(&self) -> usize {
        self.spec.max_position_embeddings as usize
    }

    fn vocab_size(&self) -> usize {
        self.spec.vocab_size as usize
    }
}
