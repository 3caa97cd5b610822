//! Qwen2.5, Qwen3, Qwen3-MoE, Phi-3 and SmolLM3 against transformers' float32 logits on tiny
//! random checkpoints (`tests/fixtures/gen_families.py`), from HF safetensors, MLX-quantized
//! safetensors and GGUF files written as llama.cpp writes them, on both decode paths, with and
//! without pre-transposed weights, at every prompt chunking; the one-token chunks also with
//! compiled decode steps.

mod common;

use std::path::Path;

use mlx_bridge::Dtype;
use mlxcel_models::decoder::{Family, Model};
use mlxcel_models::families::{phi3, qwen2, qwen3, qwen3_moe, smollm3};
use mlxcel_models::gguf::{GgufFile, KQuants};
use mlxcel_models::hardware::DecodePath;
use mlxcel_models::weights::QuantizedWeights;
use mlxcel_models::{CausalLm, LoadOptions};

use common::{fixture, max_abs_diff, read_config, reference};

/// Float32 on both sides, differing only in summation order.
const TOLERANCE: f32 = 1e-4;

/// mlxcel's CPU block kernels round activations to 16-bit codes per 32 values (the default
/// activation precision): the bound the Llama and Gemma fixtures hold them to, a fraction of the
/// largest reference logit (these families measured at most 0.0093%).
const BLOCK_RELATIVE_TOLERANCE: f32 = 5e-4;

/// The ways quantized weights are held, with the relative bound each meets (0: `TOLERANCE`).
const REPRESENTATIONS: [(QuantizedWeights, f32); 3] = [
    (QuantizedWeights::Mlx, 0.0),
    (QuantizedWeights::Dense, 0.0),
    (QuantizedWeights::Blocks, BLOCK_RELATIVE_TOLERANCE),
];

fn options(decode_path: DecodePath, pretranspose: bool, quantized: QuantizedWeights) -> LoadOptions {
    LoadOptions {
        dtype: Dtype::F32,
        decode_path,
        pretranspose,
        quantized,
        k_quants: KQuants::Dequantize,
        compiled_decode: false,
    }
}

/// Every plan variant a family must agree on.
fn variants() -> Vec<LoadOptions> {
    let mut all = Vec::new();
    for path in [DecodePath::Fused, DecodePath::Split] {
        for pretranspose in [false, true] {
            all.push(options(path, pretranspose, QuantizedWeights::Mlx));
        }
    }
    all.push(LoadOptions { compiled_decode: true, ..options(DecodePath::Fused, false, QuantizedWeights::Mlx) });
    all
}

fn assert_matches(model: &dyn CausalLm, prompt: &[i32], expected: &[f32], chunks: &[usize], what: &str) {
    assert_within(model, prompt, expected, chunks, 0.0, what);
}

/// Like [`assert_matches`], within `relative` of the largest expected logit (0: `TOLERANCE`).
fn assert_within(model: &dyn CausalLm, prompt: &[i32], expected: &[f32], chunks: &[usize], relative: f32, what: &str) {
    let largest = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tolerance = if relative > 0.0 { relative * largest } else { TOLERANCE };
    for &chunk in chunks {
        let logits = model.teacher_forced_logits(prompt, chunk).unwrap().to_vec::<f32>().unwrap();
        let diff = max_abs_diff(&logits, expected);
        eprintln!("{what}, chunk {chunk}: {diff:.2e} (bound {tolerance:.1e})");
        assert!(diff <= tolerance, "{what}, chunk {chunk}: max abs logit difference {diff} > {tolerance}");
    }
}

fn every_chunking(prompt: &[i32]) -> Vec<usize> {
    vec![prompt.len(), 5, 3, 1]
}

/// fp32 and q4 folders on every variant, and the GGUF file kept quantized and dequantized.
fn check_family<C: Family>(name: &str) {
    let dir = fixture(&format!("{name}-tiny"));
    let reference = reference(&dir);
    let chunks = every_chunking(&reference.prompt);
    for options in variants() {
        let what = format!(
            "{name} fp32 {} pretranspose {} compiled {}",
            options.decode_path, options.pretranspose, options.compiled_decode
        );
        let model = Model::<C>::load(&dir.join("fp32"), &read_config(&dir.join("fp32")), options).unwrap();
        assert_matches(&model, &reference.prompt, &reference.logits["fp32"], &chunks, &what);
    }
    for (quantized, relative) in REPRESENTATIONS {
        for (path, compiled_decode) in
            [(DecodePath::Fused, false), (DecodePath::Split, false), (DecodePath::Fused, true)]
        {
            let options = LoadOptions { compiled_decode, ..options(path, false, quantized) };
            let q4 = Model::<C>::load(&dir.join("q4"), &read_config(&dir.join("q4")), options).unwrap();
            let what = format!("{name} q4 {path} {quantized:?} compiled {compiled_decode}");
            assert_within(&q4, &reference.prompt, &reference.logits["q4"], &chunks, relative, &what);
        }
        let file = GgufFile::open(&dir.join("tiny.gguf")).unwrap();
        for k_quants in [KQuants::Exact, KQuants::Dequantize] {
            let options = LoadOptions { k_quants, ..options(DecodePath::Fused, true, quantized) };
            let gguf = Model::<C>::load_gguf(&file, options).unwrap();
            let what = format!("{name} gguf {quantized:?} {k_quants:?}");
            assert_within(&gguf, &reference.prompt, &reference.logits["gguf"], &chunks, relative, &what);
        }
    }
}

#[test]
fn qwen2_matches_transformers_with_qkv_biases() {
    check_family::<qwen2::Config>("qwen2");
}

#[test]
fn qwen3_matches_transformers_with_qk_norms_yarn_and_a_sliding_layer() {
    let config = qwen3::Config::from_json(&read_config(&fixture("qwen3-tiny").join("fp32"))).unwrap();
    let spec = config.spec().unwrap();
    assert_eq!(spec.layers.iter().map(|l| l.window).collect::<Vec<_>>(), [None, None, Some(4)]);
    check_family::<qwen3::Config>("qwen3");
}

#[test]
fn qwen3_moe_matches_transformers_with_per_token_experts() {
    let dir = fixture("qwen3_moe-tiny");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
    // Every position's pair of experts, as transformers chose them: routing that ignored the
    // token could not match all of them; and the chosen probabilities sum well below one, so
    // skipping (or misplacing) the renormalisation would show.
    let sums: Vec<f64> =
        json["experts_chosen"]["prob_sums"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(sums.iter().all(|&s| s < 0.9), "renormalisation must matter in the fixture: {sums:?}");
    let chosen: Vec<Vec<i64>> = json["experts_chosen"]["experts"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            let mut pair: Vec<i64> = pair.as_array().unwrap().iter().map(|e| e.as_i64().unwrap()).collect();
            pair.sort();
            pair
        })
        .collect();
    let distinct: std::collections::BTreeSet<_> = chosen.iter().collect();
    assert!(distinct.len() >= chosen.len() / 2, "the fixture's tokens pick different experts: {chosen:?}");
    check_family::<qwen3_moe::Config>("qwen3_moe");
}

#[test]
fn phi3_matches_transformers_with_fused_projections_and_longrope() {
    check_family::<phi3::Config>("phi3");
    // The same weights with the original context under the prompt: transformers picks the long
    // factors for a whole-prompt forward (chunks shorter than it would pick the short ones, in
    // transformers too).
    let dir = fixture("phi3-tiny");
    let reference = reference(&dir);
    let mut config = read_config(&dir.join("fp32"));
    config["max_position_embeddings"] = 32.into();
    config["original_max_position_embeddings"] = 8.into();
    config["rope_parameters"]["original_max_position_embeddings"] = 8.into();
    for options in variants() {
        let model = phi3::Phi3::load(&dir.join("fp32"), &config, options).unwrap();
        let what = format!("phi3 long factors {}", options.decode_path);
        assert_matches(&model, &reference.prompt, &reference.logits["fp32_long"], &[reference.prompt.len()], &what);
    }
}

#[test]
fn smollm3_matches_transformers_with_nope_layers() {
    let config = smollm3::Config::from_json(&read_config(&fixture("smollm3-tiny").join("fp32"))).unwrap();
    let rotary: Vec<bool> = config.spec().unwrap().layers.iter().map(|l| l.rope.is_some()).collect();
    assert_eq!(rotary, [true, true, true, false]);
    check_family::<smollm3::Config>("smollm3");
}

#[test]
fn the_table_loads_every_new_family_by_name() {
    for name in ["qwen2", "qwen3", "qwen3_moe", "phi3", "smollm3"] {
        let dir = fixture(&format!("{name}-tiny"));
        let root = read_config(&dir.join("fp32"));
        let model_type = root["model_type"].as_str().unwrap();
        let family = mlxcel_models::families::by_model_type(model_type).unwrap();
        assert_eq!(family.name, name);
        let model =
            (family.load)(&dir.join("fp32"), &root, options(DecodePath::Fused, true, QuantizedWeights::Mlx)).unwrap();
        let reference = reference(&dir);
        assert_matches(model.as_ref(), &reference.prompt, &reference.logits["fp32"], &[4], name);
        let file = GgufFile::open(&dir.join("tiny.gguf")).unwrap();
        let architecture = file.header().get("general.architecture").and_then(|v| v.as_str()).unwrap().to_string();
        let family = mlxcel_models::families::by_gguf_architecture(&architecture).unwrap();
        assert_eq!(family.name, name);
        let _ = Path::new(&architecture);
    }
}
