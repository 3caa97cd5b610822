//! What a decoder family supplies (its config, from config.json and from GGUF metadata, and any
//! tensor names or layouts of its own), and the loading every family shares: safetensors folders
//! (HF or MLX-quantized), GGUF files and in-memory tensors.

use std::collections::HashMap;
use std::path::Path;

use mlx_bridge::{Array, concatenate};
use serde_json::Value;

use super::{Decoder, DecoderSpec, FeedForward, Ffn, Layer, LayerSpec, gguf_name, hf_name};
use crate::causal_lm::{CausalLm, Logits};
use crate::error::{ModelError, Result};
use crate::gguf::{self, GgufFile, GgufTensor};
use crate::layers::{
    Attention, BatchKvCache, CompiledStep, Experts, GatedMlp, KvCache, KvProjection, Linear, Projection, SparseMoe,
};
use crate::load::{LoadOptions, Loader};
use crate::weights::{QuantizationConfig, WeightStore};

/// A decoder family's config.
pub trait Family: Sized + Clone + std::fmt::Debug + Send + Sync + 'static {
    /// Parses and validates a config.json root.
    fn from_json(root: &Value) -> std::result::Result<Self, String>;

    /// The config a GGUF file's metadata describes.
    fn from_gguf(file: &GgufFile) -> Result<Self>;

    /// The decoder this config describes.
    fn spec(&self) -> std::result::Result<DecoderSpec, String>;

    /// Checkpoint names to the decoder's, or `None` to skip a tensor.
    fn rename(name: &str) -> Option<String> {
        hf_name(name)
    }

    fn gguf_rename(name: &str) -> Option<String> {
        gguf_name(name, false)
    }

    /// Undoes a layout llama.cpp's converter gave a tensor.
    fn gguf_transform(&self, _name: &str, tensor: GgufTensor) -> Result<GgufTensor> {
        Ok(tensor)
    }
}

/// A family's model: its config and the decoder built from it.
pub struct Model<C> {
    config: C,
    decoder: Decoder,
}

impl<C: Family> Model<C> {
    /// Loads a checkpoint folder (config.json + safetensors, plain or MLX-quantized).
    pub fn load(dir: &Path, root: &Value, options: LoadOptions) -> Result<Self> {
        let path = dir.join("config.json");
        let config = C::from_json(root).map_err(|message| ModelError::Config { path: path.clone(), message })?;
        let quantization = QuantizationConfig::from_config(root, &C::rename)
            .map_err(|message| ModelError::Config { path, message })?;
        let store =
            WeightStore::open(dir, &C::rename, quantization.clone(), options.dtype)?.quantized_as(options.quantized);
        Self::build(config, &Loader::new(&store, options, quantization.as_ref()))
    }

    /// Loads a GGUF file written by llama.cpp's converter.
    pub fn load_gguf(file: &GgufFile, options: LoadOptions) -> Result<Self> {
        let config = C::from_gguf(file)?;
        let transform = |name: &str, tensor| config.gguf_transform(name, tensor);
        let store =
            gguf::weight_store(file, &C::gguf_rename, &transform, options.k_quants, options.quantized, options.dtype)?;
        Self::build(config, &Loader::new(&store, options, None))
    }

    /// A model over tensors already in memory, by the decoder's names.
    pub fn from_arrays(
        config: C,
        arrays: HashMap<String, Array>,
        quantization: Option<QuantizationConfig>,
        options: LoadOptions,
    ) -> Result<Self> {
        let store =
            WeightStore::from_arrays(arrays, quantization.clone(), options.dtype).quantized_as(options.quantized);
        Self::build(config, &Loader::new(&store, options, quantization.as_ref()))
    }

    fn build(config: C, w: &Loader) -> Result<Self> {
        let spec = config.spec().map_err(ModelError::Weights)?;
        Ok(Model { decoder: Decoder::load(spec, w)?, config })
    }

    pub fn config(&self) -> &C {
        &self.config
    }

    pub fn spec(&self) -> &DecoderSpec {
        self.decoder.spec()
    }
}

impl<C> CausalLm for Model<C> {
    fn forward_logits(&self, ids: &Array, caches: &mut [KvCache], which: Logits) -> Result<Array> {
        self.decoder.forward_logits(ids, caches, which)
    }

    fn forward_batch(&self, ids: &Array, caches: &mut [BatchKvCache], which: Logits) -> Result<Array> {
        self.decoder.forward_batch(ids, caches, which)
    }

    fn make_caches(&self) -> Vec<KvCache> {
        self.decoder.make_caches()
    }

    fn context_length(&self) -> usize {
        self.decoder.context_length()
    }

    fn vocab_size(&self) -> usize {
        self.decoder.vocab_size()
    }
}

impl Decoder {
    pub fn load(spec: DecoderSpec, w: &Loader) -> Result<Decoder> {
        let (d, vocab) = (spec.hidden_size, spec.vocab_size);
        let layers = (0..spec.layers.len()).map(|i| load_layer(&spec, &spec.layers[i], i, w)).collect::<Result<_>>()?;
        let tied = spec.tie_embeddings || !w.store.contains("lm_head.weight");
        Ok(Decoder {
            embed: w.embedding("embed_tokens", vocab, d, tied)?,
            head: if tied { None } else { Some(w.linear("lm_head", vocab, d)?) },
            norm: w.norm("norm", d, spec.rms_norm_eps, spec.gemma)?,
            layers,
            fused: w.options.decode_path == crate::hardware::DecodePath::Fused,
            spec,
        })
    }
}

/// `name` (`[out, in]`), or the parts of a fused checkpoint tensor `fused` that stacks it with
/// its siblings; `parts` lists every part's rows.
fn parts(w: &Loader, names: &[&str], fused: &str, rows: &[i32], in_dim: i32) -> Result<Vec<Linear>> {
    if w.store.contains(&format!("{fused}.weight")) {
        return w.split_linear(fused, rows, in_dim);
    }
    names.iter().zip(rows).map(|(name, &out)| w.linear(name, out, in_dim)).collect()
}

fn load_layer(spec: &DecoderSpec, layer: &LayerSpec, i: usize, w: &Loader) -> Result<Layer> {
    let (d, hq, hkv, hd, eps) = (spec.hidden_size, spec.heads, spec.kv_heads, spec.head_dim, spec.rms_norm_eps);
    let p = format!("layers.{i}");
    let a = format!("{p}.self_attn");
    let names = [format!("{a}.q_proj"), format!("{a}.k_proj"), format!("{a}.v_proj")];
    let sizes = [hq * hd, hkv * hd, hkv * hd];
    let [q, k, v]: [Linear; 3] = w
        .grouped(parts(w, &names.each_ref().map(String::as_str), &format!("{a}.qkv_proj"), &sizes, d)?)?
        .try_into()
        .map_err(|_| ModelError::Weights("q/k/v split".into()))?;
    let bias = |name: &str, dim: i32, wanted: bool| -> Result<Option<Array>> {
        if !wanted {
            return Ok(None);
        }
        w.bias(name, dim)?.map(Some).ok_or_else(|| ModelError::MissingTensor { name: format!("{name}.bias") })
    };
    let head_norm = |name: &str| -> Result<_> {
        if spec.qk_norm { Ok(Some(w.norm(&format!("{a}.{name}"), hd, eps, spec.gemma)?)) } else { Ok(None) }
    };
    let rope = layer.rope.as_ref().map(|r| r.build()).transpose()?;
    let score_scale = rope.as_ref().map_or(1.0, |r| r.score_scale());
    let o_name = format!("{a}.o_proj");
    let o = w.linear(&o_name, d, hq * hd)?;
    let attention = Attention {
        q: Projection::new(q, bias(&names[0], hq * hd, spec.qkv_bias)?),
        kv: Some(KvProjection {
            k: Projection::new(k, bias(&names[1], hkv * hd, spec.qkv_bias)?),
            v: Projection::new(v, bias(&names[2], hkv * hd, spec.qkv_bias)?),
            k_norm: head_norm("k_norm")?,
            v_norm: None,
        }),
        o: Projection::new(o, bias(&o_name, d, spec.o_bias)?),
        q_norm: head_norm("q_norm")?,
        rope,
        heads: hq,
        kv_heads: hkv,
        head_dim: hd,
        scale: spec.attention_scale * score_scale,
        softcap: spec.attention_softcap,
    };
    let ffn = match layer.ffn {
        Ffn::Dense { intermediate } => {
            let m = format!("{p}.mlp");
            let names = [format!("{m}.gate_proj"), format!("{m}.up_proj")];
            let [gate, up]: [Linear; 2] = w
                .grouped(parts(
                    w,
                    &names.each_ref().map(String::as_str),
                    &format!("{m}.gate_up_proj"),
                    &[intermediate; 2],
                    d,
                )?)?
                .try_into()
                .map_err(|_| ModelError::Weights("gate/up split".into()))?;
            let down = w.linear(&format!("{m}.down_proj"), d, intermediate)?;
            let (path, dtype) = (w.options.decode_path, w.options.dtype);
            FeedForward::Dense(GatedMlp::new(gate, up, down, spec.activation, None, path, dtype)?)
        }
        Ffn::Moe { experts, top_k, intermediate, normalize } => {
            let moe = SparseMoe {
                router: w.linear(&format!("{p}.mlp.gate"), experts, d)?,
                gate: experts_of(w, &p, "gate_proj", experts, intermediate, d)?,
                up: experts_of(w, &p, "up_proj", experts, intermediate, d)?,
                down: experts_of(w, &p, "down_proj", experts, d, intermediate)?,
                activation: spec.activation,
                top_k,
                normalize,
            };
            moe.validate(d, experts, intermediate)?;
            FeedForward::Moe(moe)
        }
    };
    let norm = |name: &str| w.norm(&format!("{p}.{name}"), d, eps, spec.gemma);
    Ok(Layer {
        attention,
        ffn,
        input_norm: norm("input_layernorm")?,
        ffn_norm: norm(if spec.gemma { "pre_feedforward_layernorm" } else { "post_attention_layernorm" })?,
        post_attention_norm: if spec.gemma { Some(norm("post_attention_layernorm")?) } else { None },
        post_ffn_norm: if spec.gemma { Some(norm("post_feedforward_layernorm")?) } else { None },
        window: layer.window,
        compiled: w.options.compiled_decode.then(CompiledStep::new),
    })
}

/// One projection of a layer's experts: stacked (`mlp.experts.gate_proj`, MLX and GGUF), in
/// transformers 5's fused `gate_up_proj`, or one tensor per expert (`mlp.experts.{e}.gate_proj`).
fn experts_of(w: &Loader, p: &str, which: &str, experts: i32, out_dim: i32, in_dim: i32) -> Result<Experts> {
    let stacked = format!("{p}.mlp.experts.{which}");
    if w.store.contains(&format!("{stacked}.weight")) {
        return w.experts(&stacked, experts, out_dim, in_dim);
    }
    let fused = format!("{p}.mlp.experts.gate_up_proj.weight");
    if which != "down_proj" && w.store.contains(&fused) {
        let both = w.tensor(&fused, &[experts, 2 * out_dim, in_dim])?;
        let start = if which == "gate_proj" { 0 } else { out_dim };
        return Experts::dense(both.slice_axis(1, start, start + out_dim)?);
    }
    let each = (0..experts)
        .map(|e| Ok(w.tensor(&format!("{p}.mlp.experts.{e}.{which}.weight"), &[out_dim, in_dim])?.expand_dims(&[0])?))
        .collect::<Result<Vec<_>>>()?;
    Experts::dense(concatenate(&each.iter().collect::<Vec<_>>(), 0)?)
}
