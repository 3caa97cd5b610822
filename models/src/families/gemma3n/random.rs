//! Random-weight Gemma 3n checkpoints at real shapes: benchmarks measure E2B/E4B (and smaller
//! named shapes) with no download. Values are random normals at scales that keep activations
//! finite (timing on zeros hides work and can run faster than real data).

use std::collections::HashMap;

use mlx_bridge::quant::{self, QuantSpec};
use mlx_bridge::{Array, Dtype, random};
use serde_json::{Value, json};

use super::config::{Config, KvSource};
use crate::error::{ModelError, Result};

/// The named shapes: `e2b`, `e4b` (the real models' text configs) and `e2b-mini` (E2B's layer
/// dimensions with 10 layers and a 32k vocabulary, small enough for a CPU box).
pub const SHAPES: [&str; 3] = ["e2b", "e4b", "e2b-mini"];

/// The config.json text fields of a named shape.
pub fn shape_config(name: &str) -> Option<Value> {
    let (layers, shared, intermediate, vocab, per_layer_vocab, sparse) = match name {
        "e2b" => (30, 10, 8192, 262_400, 262_144, 10),
        "e4b" => (35, 15, 16_384, 262_400, 262_144, 10),
        "e2b-mini" => (10, 2, 8192, 32_768, 32_768, 4),
        _ => return None,
    };
    let layer_types: Vec<&str> =
        (0..layers).map(|i| if (i + 1) % 5 == 0 { "full_attention" } else { "sliding_attention" }).collect();
    let sparsity: Vec<f32> = (0..layers).map(|i| if i < sparse { 0.95 } else { 0.0 }).collect();
    Some(json!({
        "model_type": "gemma3n_text", "hidden_size": 2048, "num_hidden_layers": layers,
        "intermediate_size": intermediate, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 256,
        "rms_norm_eps": 1e-6, "vocab_size": vocab, "vocab_size_per_layer_input": per_layer_vocab,
        "num_kv_shared_layers": shared, "sliding_window": 512, "max_position_embeddings": 32768,
        "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0, "final_logit_softcapping": 30.0,
        "layer_types": layer_types, "activation_sparsity_pattern": sparsity, "hidden_size_per_layer_input": 256,
        "altup_num_inputs": 4, "altup_coef_clip": 120.0, "altup_correct_scale": true, "altup_active_idx": 0,
        "laurel_rank": 64,
    }))
}

/// Every tensor of the text model with its shape, by the model's own names.
pub fn tensor_shapes(c: &Config) -> Vec<(String, Vec<i32>)> {
    let (d, n, dpl) = (c.hidden_size, c.altup_num_inputs as i32, c.hidden_size_per_layer_input);
    let layers = c.num_layers as i32;
    let mut out = vec![
        ("embed_tokens.weight".to_string(), vec![c.vocab_size, d]),
        ("embed_tokens_per_layer.weight".to_string(), vec![c.vocab_size_per_layer_input, layers * dpl]),
        ("per_layer_model_projection.weight".to_string(), vec![layers * dpl, d]),
        ("per_layer_projection_norm.weight".to_string(), vec![dpl]),
        ("norm.weight".to_string(), vec![d]),
    ];
    for i in 0..n - 1 {
        out.push((format!("altup_projections.{i}.weight"), vec![d, d]));
        out.push((format!("altup_unembed_projections.{i}.weight"), vec![d, d]));
    }
    let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    for (i, source) in c.kv_sources.iter().enumerate() {
        let p = format!("layers.{i}");
        let inter = c.intermediate_sizes[i];
        let mut layer = vec![
            ("self_attn.q_proj.weight", vec![q, d]),
            ("self_attn.o_proj.weight", vec![d, q]),
            ("self_attn.q_norm.weight", vec![c.head_dim]),
            ("mlp.gate_proj.weight", vec![inter, d]),
            ("mlp.up_proj.weight", vec![inter, d]),
            ("mlp.down_proj.weight", vec![d, inter]),
            ("altup.correct_output_scale", vec![d]),
            ("altup.correction_coefs.weight", vec![n, n]),
            ("altup.prediction_coefs.weight", vec![n * n, n]),
            ("altup.modality_router.weight", vec![n, d]),
            ("altup.router_norm.weight", vec![d]),
            ("laurel.linear_left.weight", vec![c.laurel_rank, d]),
            ("laurel.linear_right.weight", vec![d, c.laurel_rank]),
            ("laurel.post_laurel_norm.weight", vec![d]),
            ("input_layernorm.weight", vec![d]),
            ("post_attention_layernorm.weight", vec![d]),
            ("pre_feedforward_layernorm.weight", vec![d]),
            ("post_feedforward_layernorm.weight", vec![d]),
            ("per_layer_input_gate.weight", vec![dpl, d]),
            ("per_layer_projection.weight", vec![d, dpl]),
            ("post_per_layer_input_norm.weight", vec![d]),
        ];
        if matches!(source, KvSource::Own { .. }) {
            layer.extend([
                ("self_attn.k_proj.weight", vec![kv, d]),
                ("self_attn.v_proj.weight", vec![kv, d]),
                ("self_attn.k_norm.weight", vec![c.head_dim]),
            ]);
        }
        out.extend(layer.into_iter().map(|(name, shape)| (format!("{p}.{name}"), shape)));
    }
    out
}

/// Random weights for `config` in `dtype`; with `quantize`, every 2-D weight whose input size
/// divides into groups is quantized (as mlx-lm's converter does), the rest stay dense.
pub fn random_weights(
    c: &Config,
    dtype: Dtype,
    quantize: Option<QuantSpec>,
    seed: u64,
) -> Result<HashMap<String, Array>> {
    let shapes = tensor_shapes(c);
    let keys = random::split(&random::key(seed)?, shapes.len() as i32)?;
    let mut out = HashMap::new();
    for (i, (name, shape)) in shapes.into_iter().enumerate() {
        let key = keys.slice_axis(0, i as i32, i as i32 + 1)?.squeeze(&[0])?;
        let fan_in = *shape.last().expect("every tensor has a shape") as f32;
        let value = if shape.len() == 1 {
            // Norm weights near one; the AltUp output scale likewise.
            random::normal(&shape, dtype, 1.0, 0.1, Some(&key))?
        } else if name.contains("coefs") {
            random::normal(&shape, dtype, 0.0, 0.1, Some(&key))?
        } else if name.starts_with("embed") {
            random::normal(&shape, dtype, 0.0, 0.5, Some(&key))?
        } else {
            random::normal(&shape, dtype, 0.0, fan_in.powf(-0.5), Some(&key))?
        };
        let prefix = name.trim_end_matches(".weight");
        match quantize {
            Some(spec) if shape.len() == 2 && !name.contains("coefs") && shape[1] % spec.group_size == 0 => {
                let q = quant::quantize(&value, spec)?;
                mlx_bridge::eval(&[&q.weight, &q.scales])?;
                out.insert(format!("{prefix}.weight"), q.weight);
                out.insert(format!("{prefix}.scales"), q.scales);
                if let Some(biases) = q.biases {
                    out.insert(format!("{prefix}.biases"), biases);
                }
            }
            _ => {
                value.eval()?;
                out.insert(name, value);
            }
        }
    }
    Ok(out)
}

/// The weight bytes one decode step reads, the memory roofline's numerator: every tensor whole
/// (the token embedding too, as the tied LM head) except the per-layer embedding table, of which
/// a step gathers one row.
pub fn decode_weight_bytes(weights: &HashMap<String, Array>) -> u64 {
    weights
        .iter()
        .map(|(name, a)| {
            let bytes = a.nbytes() as u64;
            match a.shape().first() {
                Some(&rows) if rows > 0 && name.starts_with("embed_tokens_per_layer.") => bytes / rows as u64,
                _ => bytes,
            }
        })
        .sum()
}

/// A config for a named shape, or an error listing the names.
pub fn named_config(name: &str) -> Result<Config> {
    let value = shape_config(name)
        .ok_or_else(|| ModelError::Input(format!("unknown shape {name:?}; known: {}", SHAPES.join(", "))))?;
    Config::from_json(&value).map_err(|message| ModelError::Input(format!("shape {name}: {message}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decode_step_reads_one_row_of_the_per_layer_table_and_every_other_weight() {
        let zeros = |shape: &[i32]| Array::from_slice(&vec![0f32; shape.iter().product::<i32>() as usize], shape);
        let weights = HashMap::from([
            ("embed_tokens_per_layer.weight".to_string(), zeros(&[4, 3]).unwrap()),
            ("embed_tokens_per_layer.scales".to_string(), zeros(&[4, 1]).unwrap()),
            ("embed_tokens.weight".to_string(), zeros(&[4, 2]).unwrap()),
            ("layers.0.mlp.down_proj.weight".to_string(), zeros(&[2, 2]).unwrap()),
        ]);
        // One 3-wide and one 1-wide row of the per-layer table, the whole token table and layer.
        assert_eq!(decode_weight_bytes(&weights), (3 + 1 + 8 + 4) * 4);
    }
}
