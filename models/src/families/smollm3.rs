//! SmolLM3 models, numerically following transformers' `modeling_smollm3.py`: Llama's block
//! where the layers `no_rope_layers` marks 0 (every fourth by default) use no positional
//! encoding. GGUF (`general.architecture = smollm3`): llama.cpp's converter treats it as Llama
//! (Q/K rows permuted) and llama.cpp fixes the NoPE layers at every fourth.

use serde::Deserialize;
use serde_json::Value;

use crate::config::GgufMeta;
use crate::decoder::{Base, DecoderSpec, Family, Model};
use crate::error::Result;
use crate::gguf::{GgufFile, GgufTensor};
use crate::llama::unpermute_qk;

const THETA: f64 = 2_000_000.0;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub base: Base,
    /// Per layer, 1 to use RoPE and 0 not to.
    #[serde(default)]
    pub no_rope_layers: Option<Vec<i32>>,
    #[serde(default = "four")]
    pub no_rope_layer_interval: i32,
    #[serde(default)]
    pub attention_bias: bool,
}

fn four() -> i32 {
    4
}

impl Config {
    fn rotary(&self, layer: usize) -> bool {
        match &self.no_rope_layers {
            Some(flags) => flags.get(layer).is_some_and(|&f| f != 0),
            None => (layer + 1) % self.no_rope_layer_interval.max(1) as usize != 0,
        }
    }
}

impl Family for Config {
    fn from_json(root: &Value) -> std::result::Result<Config, String> {
        let config: Config = Base::parse(root, THETA, |c: &mut Config| &mut c.base)?;
        match config.no_rope_layers.as_ref().filter(|f| f.len() != config.base.layers()) {
            Some(flags) => {
                Err(format!("no_rope_layers has {} entries for {} layers", flags.len(), config.base.layers()))
            }
            None => Ok(config),
        }
    }

    fn from_gguf(file: &GgufFile) -> Result<Config> {
        let m = GgufMeta::new(file, "smollm3");
        let config = Config {
            base: Base::from_gguf(&m, THETA)?,
            no_rope_layers: None,
            no_rope_layer_interval: 4,
            attention_bias: m.has_tensor("blk.0.attn_q.bias"),
        };
        m.check(config.spec())?;
        Ok(config)
    }

    fn spec(&self) -> std::result::Result<DecoderSpec, String> {
        let spec = self.base.spec(|i| self.rotary(i), self.base.dense())?;
        Ok(DecoderSpec { qkv_bias: self.attention_bias, o_bias: self.attention_bias, ..spec })
    }

    fn gguf_transform(&self, name: &str, tensor: GgufTensor) -> Result<GgufTensor> {
        unpermute_qk(name, tensor, self.base.num_attention_heads, self.base.kv_heads())
    }
}

pub type SmolLm3 = Model<Config>;
