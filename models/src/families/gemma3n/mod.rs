//! Gemma 3n text model (E2B/E4B), numerically following transformers' `modeling_gemma3n.py`.
//!
//! Per token batch: scaled embeddings and per-layer inputs; AltUp streams (predict → attention,
//! Laurel and MLP on the active stream → correct → per-layer gate); unembedding of the streams,
//! final norm, tied LM head and soft-capping. `docs/gemma3n.md` in shared/ lists the pitfalls.
//!
//! Two decode paths, both always built ([`DecodePath`]): `split` runs AltUp with one array per
//! stream and every op separately; `fused` keeps the streams stacked `[N, B, L, D]` from predict
//! through correct and runs the MLP as one block compiled in C++ (`mx::compile`).

mod altup;
mod config;
pub mod random;

use std::path::Path;

use mlx_bridge::{Array, Dtype, fused};
use serde_json::Value;

pub use config::{Config, KvSource, LayerKind};

use self::altup::{AltUp, Streams};
pub use crate::causal_lm::Logits;
use crate::causal_lm::{CausalLm, check_step, select_positions};
use crate::error::{ModelError, Result};
use crate::hardware::DecodePath;
use crate::layers::{
    self, Activation, Attention, AttentionInputs, BatchKvCache, CompiledStep, Embedding, GatedMlp, Heads, KvCache,
    KvProjection, LayerCache, Linear, Positions, Projection, RmsNorm, Rope, is_decode_step,
};
pub use crate::load::LoadOptions;
use crate::load::Loader;
use crate::weights::{QuantizationConfig, WeightStore};

pub struct Gemma3n {
    config: Config,
    decode_path: DecodePath,
    embed_tokens: Embedding,
    embed_tokens_per_layer: Embedding,
    per_layer_model_projection: Linear,
    per_layer_projection_norm: RmsNorm,
    altup_projections: Vec<Linear>,
    altup_unembed_projections: Vec<Linear>,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
}

struct DecoderLayer {
    kind: LayerKind,
    kv_source: KvSource,
    attention: Attention,
    mlp: GatedMlp,
    altup: AltUp,
    laurel: Laurel,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
    per_layer_input_gate: Linear,
    per_layer_projection: Linear,
    post_per_layer_input_norm: RmsNorm,
    /// The plan's `compiled_decode` (with stacked AltUp streams, the fused path).
    compiled: Option<CompiledStep>,
}

/// A layer's work before its cache: AltUp's predictions, the active stream, its Laurel
/// residual and the attention heads.
struct BeforeCache {
    predictions: Streams,
    active: Array,
    laurel: Array,
    heads: Heads,
}

struct Laurel {
    linear_left: Linear,
    linear_right: Linear,
    post_laurel_norm: RmsNorm,
}

/// What kv-shared layers reuse this step, by layer kind.
#[derive(Default)]
struct SharedKv {
    sliding: Option<AttentionInputs>,
    full: Option<AttentionInputs>,
}

impl SharedKv {
    fn slot(&mut self, kind: LayerKind) -> &mut Option<AttentionInputs> {
        match kind {
            LayerKind::Sliding => &mut self.sliding,
            LayerKind::Full => &mut self.full,
        }
    }
}

/// Renames checkpoint tensors to the text model's own names: HF multimodal
/// (`model.language_model.*`), mlx-vlm (`language_model.model.*`) and text-only saves (`model.*`);
/// the vision/audio towers and the (tied) `lm_head` are dropped, and so are the dead k/v weights
/// of kv-shared layers.
pub fn rename_tensor(name: &str, config: &Config) -> Option<String> {
    let local = crate::weights::text_model_name(name);
    if local.starts_with("lm_head.") {
        return None;
    }
    let towers = ["vision_tower.", "audio_tower.", "embed_vision.", "embed_audio."];
    if towers.iter().any(|tower| local.starts_with(tower)) {
        return None;
    }
    let mut parts = local.splitn(3, '.');
    if let (Some("layers"), Some(index), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
        let index: usize = index.parse().ok()?;
        let dead = ["self_attn.k_proj.", "self_attn.v_proj.", "self_attn.k_norm.", "self_attn.v_norm."];
        if index >= config.first_kv_shared_layer() && dead.iter().any(|d| rest.starts_with(d)) {
            return None;
        }
    }
    Some(local.to_string())
}

impl Gemma3n {
    pub const MODEL_TYPES: [&'static str; 2] = ["gemma3n", "gemma3n_text"];

    /// Loads a checkpoint folder (config.json + safetensors, single or sharded, plain or MLX-quantized).
    pub fn load(dir: &Path, root_config: &Value, options: LoadOptions) -> Result<Self> {
        let config_path = dir.join("config.json");
        let config = Config::from_json(root_config)
            .map_err(|message| ModelError::Config { path: config_path.clone(), message })?;
        let rename = |name: &str| rename_tensor(name, &config);
        let quantization = QuantizationConfig::from_config(root_config, &rename)
            .map_err(|message| ModelError::Config { path: config_path, message })?;
        let store =
            WeightStore::open(dir, &rename, quantization.clone(), options.dtype)?.quantized_as(options.quantized);
        Self::from_store(config, &Loader::new(&store, options, quantization.as_ref()))
    }

    /// A model over tensors already in memory (by the model's own names, e.g. [`random::random_weights`]).
    pub fn from_arrays(
        config: Config,
        arrays: std::collections::HashMap<String, Array>,
        quantization: Option<QuantizationConfig>,
        options: LoadOptions,
    ) -> Result<Self> {
        let store =
            WeightStore::from_arrays(arrays, quantization.clone(), options.dtype).quantized_as(options.quantized);
        Self::from_store(config, &Loader::new(&store, options, quantization.as_ref()))
    }

    fn from_store(config: Config, w: &Loader) -> Result<Self> {
        let c = &config;
        let (d, n_layers, d_pl) = (c.hidden_size, c.num_layers as i32, c.hidden_size_per_layer_input);
        let norm = |name: &str, dim: i32| w.norm(name, dim, c.rms_norm_eps, false);
        let embed_tokens = w.embedding("embed_tokens", c.vocab_size, d, true)?;
        let altup_projections = (0..c.altup_num_inputs - 1)
            .map(|i| w.linear(&format!("altup_projections.{i}"), d, d))
            .collect::<Result<Vec<_>>>()?;
        let altup_unembed_projections = (0..c.altup_num_inputs - 1)
            .map(|i| w.linear(&format!("altup_unembed_projections.{i}"), d, d))
            .collect::<Result<Vec<_>>>()?;
        let layers = (0..c.num_layers).map(|i| DecoderLayer::load(c, w, i)).collect::<Result<Vec<_>>>()?;
        Ok(Gemma3n {
            embed_tokens,
            embed_tokens_per_layer: w.embedding(
                "embed_tokens_per_layer",
                c.vocab_size_per_layer_input,
                n_layers * d_pl,
                false,
            )?,
            per_layer_model_projection: w.linear("per_layer_model_projection", n_layers * d_pl, d)?,
            per_layer_projection_norm: norm("per_layer_projection_norm", d_pl)?,
            altup_projections,
            altup_unembed_projections,
            layers,
            norm: norm("norm", d)?,
            decode_path: w.options.decode_path,
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn decode_path(&self) -> DecodePath {
        self.decode_path
    }

    /// Switches the forward path (both are always built).
    pub fn set_decode_path(&mut self, path: DecodePath) {
        self.decode_path = path;
    }

    /// `(norm(proj(h0) / sqrt(D)) + embed_per_layer(ids) * sqrt(D_pl)) / sqrt(2)`, `[B, L, layers, D_pl]`.
    fn per_layer_inputs(&self, ids: &Array, h0: &Array) -> Result<Array> {
        let c = &self.config;
        let (b, l) = (ids.dim(0)?, ids.dim(1)?);
        let shape = [b, l, c.num_layers as i32, c.hidden_size_per_layer_input];
        // Ids outside the per-layer vocabulary (e.g. multimodal tokens) read row 0.
        let in_table = ids
            .greater_equal(&Array::scalar(0i32))?
            .logical_and(&ids.less(&Array::scalar(c.vocab_size_per_layer_input))?)?;
        let table_ids = mlx_bridge::where_select(&in_table, ids, &Array::scalar(0i32))?;
        let embedded = self
            .embed_tokens_per_layer
            .lookup(&table_ids)?
            .mul_scalar((c.hidden_size_per_layer_input as f64).sqrt())?
            .reshape(&shape)?;
        let projected = self
            .per_layer_model_projection
            .forward(h0)?
            .mul_scalar((c.hidden_size as f64).powf(-0.5))?
            .reshape(&shape)?;
        let projected = self.per_layer_projection_norm.forward(&projected)?;
        Ok(projected.add(&embedded.astype(projected.dtype())?)?.mul_scalar(std::f64::consts::FRAC_1_SQRT_2)?)
    }
}

impl CausalLm for Gemma3n {
    /// Fresh caches: a growing cache for each full-attention layer and a sliding-window ring for
    /// each sliding layer, for the layers that compute their own keys and values.
    fn make_caches(&self) -> Vec<KvCache> {
        self.config.layer_kinds[..self.config.num_caches()]
            .iter()
            .map(|kind| match kind {
                LayerKind::Full => KvCache::growing(),
                LayerKind::Sliding => KvCache::sliding(self.config.sliding_window),
            })
            .collect()
    }

    fn forward_logits(&self, ids: &Array, caches: &mut [KvCache], which: Logits) -> Result<Array> {
        self.forward_over(ids, caches, which)
    }

    fn forward_batch(&self, ids: &Array, caches: &mut [BatchKvCache], which: Logits) -> Result<Array> {
        self.forward_over(ids, caches, which)
    }

    fn context_length(&self) -> usize {
        self.config.max_position_embeddings as usize
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size as usize
    }
}

impl Gemma3n {
    /// One forward pass over one sequence's caches or a batch's: the same layers either way.
    fn forward_over(&self, ids: &Array, caches: &mut [impl LayerCache], which: Logits) -> Result<Array> {
        let c = &self.config;
        check_step(ids, caches.len(), c.num_caches())?;
        // One set of positions for the whole step: kv-shared layers rope their queries at the
        // positions before their source layer appended this step's keys.
        let positions = caches[0].positions()?;
        let ids = ids.astype(Dtype::I32)?;
        let h0 = self.embed_tokens.lookup(&ids)?;
        let h0 = h0.mul_scalar((c.hidden_size as f64).sqrt())?;
        let per_layer = self.per_layer_inputs(&ids, &h0)?;

        let mut streams = Streams::initial(&h0, &self.altup_projections, self.decode_path)?;
        let mut shared = SharedKv::default();
        for (i, layer) in self.layers.iter().enumerate() {
            let per_layer_input = per_layer.slice_axis(2, i as i32, i as i32 + 1)?.squeeze(&[2])?;
            streams = layer.forward(c, streams, &per_layer_input, caches, &mut shared, &positions, self.decode_path)?;
        }
        let h = select_positions(streams.unembed(&self.altup_unembed_projections)?, which)?;
        let logits = self.embed_tokens.as_linear(&self.norm.forward(&h)?)?;
        match c.final_logit_softcapping {
            Some(cap) if self.decode_path == DecodePath::Fused => {
                Ok(fused::softcap(&logits, &logits.scalar_like(cap as f64)?)?)
            }
            Some(cap) => Ok(logits.div_scalar(cap as f64)?.tanh()?.mul_scalar(cap as f64)?),
            None => Ok(logits),
        }
    }
}

impl DecoderLayer {
    fn load(c: &Config, w: &Loader, i: usize) -> Result<Self> {
        let p = format!("layers.{i}");
        let (d, d_pl, eps) = (c.hidden_size, c.hidden_size_per_layer_input, c.rms_norm_eps);
        let norm = |name: &str, dim: i32| w.norm(&format!("{p}.{name}"), dim, eps, false);
        let linear = |name: &str, out_dim: i32, in_dim: i32| w.linear(&format!("{p}.{name}"), out_dim, in_dim);
        let kind = c.layer_kinds[i];
        let kv_source = c.kv_sources[i];
        let (hq, hkv, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let (q, kv) = match kv_source {
            KvSource::Own { .. } => {
                let qkv = [("q_proj", hq), ("k_proj", hkv), ("v_proj", hkv)]
                    .map(|(name, heads)| linear(&format!("self_attn.{name}"), heads * hd, d));
                let [q, k, v]: [Linear; 3] = w
                    .grouped(qkv.into_iter().collect::<Result<_>>()?)?
                    .try_into()
                    .map_err(|_| ModelError::Weights("q/k/v stack".into()))?;
                let kv = KvProjection {
                    k: Projection::new(k, None),
                    v: Projection::new(v, None),
                    k_norm: Some(norm("self_attn.k_norm", hd)?),
                    v_norm: Some(RmsNorm::without_weight(eps)),
                };
                (q, Some(kv))
            }
            KvSource::Shared => (linear("self_attn.q_proj", hq * hd, d)?, None),
        };
        let base = match kind {
            LayerKind::Sliding => c.rope_theta_sliding,
            LayerKind::Full => c.rope_theta_full,
        };
        let attention = Attention {
            q: Projection::new(q, None),
            kv,
            o: Projection::new(linear("self_attn.o_proj", d, hq * hd)?, None),
            q_norm: Some(norm("self_attn.q_norm", hd)?),
            rope: Some(Rope::plain(hd, base, 1.0)),
            heads: hq,
            kv_heads: hkv,
            head_dim: hd,
            // Gemma 3n's q/k norms replace the 1/sqrt(d) scaling.
            scale: 1.0,
            softcap: None,
        };
        let inter = c.intermediate_sizes[i];
        let [gate, up]: [Linear; 2] = w
            .grouped(vec![linear("mlp.gate_proj", inter, d)?, linear("mlp.up_proj", inter, d)?])?
            .try_into()
            .map_err(|_| ModelError::Weights("gate/up stack".into()))?;
        let mlp = GatedMlp::new(
            gate,
            up,
            linear("mlp.down_proj", d, inter)?,
            Activation::GeluTanh,
            Some(c.activation_sparsity[i]),
            w.options.decode_path,
            w.options.dtype,
        )?;
        Ok(DecoderLayer {
            kind,
            kv_source,
            attention,
            mlp,
            altup: AltUp::load(c, w.store, &p)?,
            laurel: Laurel {
                linear_left: linear("laurel.linear_left", c.laurel_rank, d)?,
                linear_right: linear("laurel.linear_right", d, c.laurel_rank)?,
                post_laurel_norm: norm("laurel.post_laurel_norm", d)?,
            },
            input_layernorm: norm("input_layernorm", d)?,
            post_attention_layernorm: norm("post_attention_layernorm", d)?,
            pre_feedforward_layernorm: norm("pre_feedforward_layernorm", d)?,
            post_feedforward_layernorm: norm("post_feedforward_layernorm", d)?,
            per_layer_input_gate: linear("per_layer_input_gate", d_pl, d)?,
            per_layer_projection: linear("per_layer_projection", d, d_pl)?,
            post_per_layer_input_norm: norm("post_per_layer_input_norm", d)?,
            compiled: (w.options.compiled_decode && w.options.decode_path == DecodePath::Fused).then(CompiledStep::new),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        c: &Config,
        streams: Streams,
        per_layer_input: &Array,
        caches: &mut [impl LayerCache],
        shared: &mut SharedKv,
        positions: &Positions,
        path: DecodePath,
    ) -> Result<Streams> {
        if let (Some(step), Streams::Stacked(stacked)) = (self.compiled.as_ref(), &streams)
            && is_decode_step(per_layer_input)
        {
            let before = step.before_cache(&[stacked], |a| {
                let before = self.before_cache(c, &Streams::Stacked(a[0].clone()))?;
                let Streams::Stacked(predictions) = before.predictions else { unreachable!("stacked in, stacked out") };
                let mut out = vec![predictions, before.active, before.laurel];
                out.extend(before.heads.into_arrays());
                Ok(out)
            })?;
            let mut before = before.into_iter();
            let mut next = || before.next().ok_or_else(|| ModelError::Input("a compiled step lost an output".into()));
            let (predictions, active, laurel) = (next()?, next()?, next()?);
            let attended = self.attend(Heads::from_arrays(before.collect())?, caches, shared, positions)?;
            let after = step.after_attention(&[&attended, &active, &laurel, &predictions, per_layer_input], |a| {
                let streams =
                    self.after_attention(c, &a[0], &a[1], &a[2], Streams::Stacked(a[3].clone()), &a[4], path)?;
                let Streams::Stacked(streams) = streams else { unreachable!("stacked in, stacked out") };
                Ok(vec![streams])
            })?;
            return Ok(Streams::Stacked(after.into_iter().next().expect("one output")));
        }
        let before = self.before_cache(c, &streams)?;
        let attended = self.attend(before.heads, caches, shared, positions)?;
        self.after_attention(c, &attended, &before.active, &before.laurel, before.predictions, per_layer_input, path)
    }

    fn before_cache(&self, c: &Config, streams: &Streams) -> Result<BeforeCache> {
        let predictions = self.altup.predict(streams)?;
        let active = predictions.get(c.altup_active_idx)?;
        let normed = self.input_layernorm.forward(&active)?;
        let laurel = self.laurel.forward(&normed)?;
        let heads = self.attention.heads(&normed)?;
        Ok(BeforeCache { predictions, active, laurel, heads })
    }

    /// The attention over this layer's cache, or over the keys and values its source layer
    /// shared this step: `[B, H, L, D]`.
    fn attend(
        &self,
        heads: Heads,
        caches: &mut [impl LayerCache],
        shared: &mut SharedKv,
        positions: &Positions,
    ) -> Result<Array> {
        match self.kv_source {
            KvSource::Own { cache, publishes } => {
                let (attended, inputs) = self.attention.attend_own(heads, &mut caches[cache], positions)?;
                if publishes {
                    *shared.slot(self.kind) = Some(inputs);
                }
                Ok(attended)
            }
            KvSource::Shared => {
                let inputs = shared
                    .slot(self.kind)
                    .as_ref()
                    .ok_or_else(|| ModelError::Input("a kv-shared layer ran before its source layer".into()))?;
                self.attention.attend_shared(heads, inputs, positions)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn after_attention(
        &self,
        c: &Config,
        attended: &Array,
        active: &Array,
        laurel: &Array,
        predictions: Streams,
        per_layer_input: &Array,
        path: DecodePath,
    ) -> Result<Streams> {
        let (h, normed) = self.post_attention_layernorm.forward_add_then_norm(
            &self.attention.output(attended)?,
            active,
            laurel,
            std::f64::consts::FRAC_1_SQRT_2,
            &self.pre_feedforward_layernorm,
        )?;
        let ffw = self.mlp.forward(&normed)?;
        let h = self.post_feedforward_layernorm.forward_add(&ffw, &h)?;

        let corrected = self.altup.correct(predictions, &h)?;
        let gate_input = corrected.get(c.altup_active_idx)?;
        let gate = match c.altup_correct_scale {
            true => self.per_layer_input_gate.forward_scaled(&gate_input, self.altup.correct_output_scale())?,
            false => self.per_layer_input_gate.forward(&gate_input)?,
        };
        let projected =
            self.per_layer_projection.forward_gated(Activation::GeluTanh, &gate, per_layer_input, || {
                Ok(gelu_tanh(&gate, path)?.mul(per_layer_input)?)
            })?;
        let per_layer = self.post_per_layer_input_norm.forward(&projected)?;
        self.altup.add_to_later_streams(corrected, &per_layer)
    }
}

impl Laurel {
    /// Learned augmented residual on the normed input: `x + norm(right(left(x)))`.
    fn forward(&self, x: &Array) -> Result<Array> {
        let low_rank = self.linear_right.forward(&self.linear_left.forward(x)?)?;
        self.post_laurel_norm.forward_add(&low_rank, x)
    }
}

fn gelu_tanh(x: &Array, path: DecodePath) -> Result<Array> {
    match path {
        DecodePath::Fused => Ok(fused::gelu_tanh(x)?),
        DecodePath::Split => layers::gelu_tanh(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_from_every_layout_map_to_the_same_name() {
        let config = Config::from_json(&serde_json::json!({"num_hidden_layers": 4, "num_kv_shared_layers": 1,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"]}))
        .unwrap();
        for name in [
            "model.language_model.layers.0.mlp.gate_proj.weight",
            "language_model.model.layers.0.mlp.gate_proj.weight",
            "model.layers.0.mlp.gate_proj.weight",
        ] {
            assert_eq!(rename_tensor(name, &config).as_deref(), Some("layers.0.mlp.gate_proj.weight"));
        }
        assert_eq!(rename_tensor("model.vision_tower.x.weight", &config), None);
        assert_eq!(rename_tensor("language_model.model.embed_audio.x.weight", &config), None);
        assert_eq!(rename_tensor("lm_head.weight", &config), None);
        assert_eq!(rename_tensor("model.language_model.layers.3.self_attn.k_proj.weight", &config), None);
        assert_eq!(
            rename_tensor("model.language_model.layers.3.self_attn.q_proj.weight", &config).as_deref(),
            Some("layers.3.self_attn.q_proj.weight")
        );
        assert!(rename_tensor("model.language_model.layers.2.self_attn.k_proj.weight", &config).is_some());
    }
}
