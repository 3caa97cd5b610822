//! Qwen3-MoE models (30B-A3B, 235B-A22B), numerically following transformers'
//! `modeling_qwen3_moe.py`: Qwen3's attention (q/k norms) and, on every `decoder_sparse_step`-th
//! layer not in `mlp_only_layers`, `num_experts_per_tok` of `num_experts` SwiGLU experts picked
//! by softmax-then-top-k, their weights renormalised when `norm_topk_prob` is set.
//!
//! Experts load stacked from MLX (`switch_mlp`), from transformers 5's fused `gate_up_proj`, one
//! tensor per expert (the Hub's layout), and from GGUF (`ffn_{gate,up,down}_exps`,
//! `general.architecture = qwen3moe`; llama.cpp always renormalises there).

use serde::Deserialize;
use serde_json::Value;

use crate::config::GgufMeta;
use crate::decoder::{Base, DecoderSpec, Family, Ffn, Model};
use crate::error::Result;
use crate::gguf::GgufFile;

const THETA: f64 = 1_000_000.0;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub base: Base,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(alias = "num_local_experts")]
    pub num_experts: i32,
    pub num_experts_per_tok: i32,
    pub moe_intermediate_size: i32,
    #[serde(default)]
    pub norm_topk_prob: bool,
    #[serde(default = "one")]
    pub decoder_sparse_step: i32,
    #[serde(default)]
    pub mlp_only_layers: Vec<i32>,
}

fn one() -> i32 {
    1
}

impl Config {
    /// transformers' rule for which layers route to experts.
    fn is_sparse(&self, layer: usize) -> bool {
        let step = self.decoder_sparse_step.max(1) as usize;
        !self.mlp_only_layers.contains(&(layer as i32)) && self.num_experts > 0 && (layer + 1) % step == 0
    }
}

impl Family for Config {
    fn from_json(root: &Value) -> std::result::Result<Config, String> {
        Base::parse(root, THETA, |c: &mut Config| &mut c.base)
    }

    fn from_gguf(file: &GgufFile) -> Result<Config> {
        let m = GgufMeta::new(file, "qwen3moe");
        let config = Config {
            base: Base::from_gguf(&m, THETA)?,
            attention_bias: m.has_tensor("blk.0.attn_q.bias"),
            num_experts: m.required("expert_count")?,
            num_experts_per_tok: m.required("expert_used_count")?,
            moe_intermediate_size: m.required("expert_feed_forward_length")?,
            norm_topk_prob: true,
            decoder_sparse_step: 1,
            mlp_only_layers: Vec::new(),
        };
        m.check(config.spec())?;
        Ok(config)
    }

    fn spec(&self) -> std::result::Result<DecoderSpec, String> {
        let dense = self.base.dense();
        let ffn = |i| match self.is_sparse(i) {
            true => Ffn::Moe {
                experts: self.num_experts,
                top_k: self.num_experts_per_tok,
                intermediate: self.moe_intermediate_size,
                normalize: self.norm_topk_prob,
            },
            false => dense(i),
        };
        let spec = self.base.spec(|_| true, ffn)?;
        Ok(DecoderSpec { qk_norm: true, qkv_bias: self.attention_bias, o_bias: self.attention_bias, ..spec })
    }
}

pub type Qwen3Moe = Model<Config>;
