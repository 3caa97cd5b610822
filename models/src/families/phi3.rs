//! Phi-3 and Phi-4-mini models, numerically following transformers' `modeling_phi3.py`:
//! Llama's block with q/k/v in one `qkv_proj` and gate/up in one `gate_up_proj` (split into
//! separate layers at load), LongRoPE (short factors up to `original_max_position_embeddings`
//! positions, long beyond, with its attention factor), partial rotary (Phi-4-mini rotates 3/4 of
//! each head) and a sliding window on every layer when the config sets one.
//!
//! GGUF (`general.architecture = phi3`): `attn_qkv`, a fused `ffn_up`, and the LongRoPE factors
//! as `rope_factors_{short,long}` tensors; no Q/K permutation.

use serde::Deserialize;
use serde_json::Value;

use crate::config::GgufMeta;
use crate::decoder::{Base, DecoderSpec, Family, Model, gguf_name};
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::layers::RopeScaling;

const THETA: f64 = 10_000.0;

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
        let m = GgufMeta::new(file, "phi3");
        let mut base = Base::from_gguf(&m, THETA)?;
        if let (Some(long), Some(short)) =
            (m.vector("rope_factors_long.weight")?, m.vector("rope_factors_short.weight")?)
        {
            let original = m.required("rope.scaling.original_context_length")?;
            let rope = base.rope.as_mut().expect("from_gguf sets the RoPE");
            let factor = base.max_position_embeddings as f64 / original as f64;
            let default = if factor <= 1.0 { 1.0 } else { (1.0 + factor.ln() / (original as f64).ln()).sqrt() };
            rope.scaling = RopeScaling::LongRope {
                short,
                long,
                original_max_position_embeddings: original,
                attention_factor: m.float("rope.scaling.attn_factor")?.unwrap_or(default),
            };
        }
        let config = Config { base };
        m.check(config.spec())?;
        Ok(config)
    }

    fn spec(&self) -> std::result::Result<DecoderSpec, String> {
        if let Some(RopeScaling::LongRope { short, .. }) = self.base.rope.as_ref().map(|r| &r.scaling) {
            let dims = self.base.rope.as_ref().map_or(0, |r| r.dims);
            if short.len() != (dims / 2) as usize {
                return Err(format!("LongRoPE factors have {} entries, expected {}", short.len(), dims / 2));
            }
        }
        self.base.spec(|_| true, self.base.dense())
    }

    /// llama.cpp keeps Phi-3's gate and up rows together in `ffn_up`.
    fn gguf_rename(name: &str) -> Option<String> {
        let name = gguf_name(name, false)?;
        Some(match name.strip_suffix(".mlp.up_proj.weight") {
            Some(layer) => format!("{layer}.mlp.gate_up_proj.weight"),
            None => name,
        })
    }
}

pub type Phi3 = Model<Config>;
