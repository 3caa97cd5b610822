//! Llama and Gemma 3 against transformers' float32 logits on tiny random checkpoints
//! (`tests/fixtures/gen_llama_gemma3.py`): HF safetensors, MLX-quantized safetensors, and GGUF
//! files written as llama.cpp writes them, with transformers' own GGUF loader as the reference.

mod common;

use std::path::Path;

use mlx_bridge::Dtype;
use mlxcel_models::gemma3::{self, Gemma3};
use mlxcel_models::gguf::{GgufFile, KQuants};
use mlxcel_models::hardware::DecodePath;
use mlxcel_models::llama::{self, Llama};
use mlxcel_models::weights::QuantizedWeights;
use mlxcel_models::{CausalLm, ModelError};

use common::{fixture, max_abs_diff, read_config, reference};

/// Same bound as Gemma 3n's fixture: float32 on both sides, differing only in summation order.
const TOLERANCE: f32 = 1e-4;

/// Block-quantized weights on mlxcel's CPU kernels multiply activations rounded to 16-bit codes
/// per block of 32 (the default activation precision; each off by up to 1/64770 of its block's
/// largest): over these tiny models' layers the logits move by up to 0.010% of the largest logit
/// (gemma3n q4, measured; int8 rounding, llama.cpp's, moved them 2.4%). The bound is 0.05%, against
/// the 67% a mis-ordered row gives (the Q/K un-permute broken: 1.04 on logits of at most 1.56).
const BLOCK_RELATIVE_TOLERANCE: f32 = 5e-4;

/// The representations quantized weights can be held in, with the relative tolerance each is held
/// to (0 = the float32 `TOLERANCE`).
const REPRESENTATIONS: [(QuantizedWeights, f32); 3] = [
    (QuantizedWeights::Mlx, 0.0),
    (QuantizedWeights::Dense, 0.0),
    (QuantizedWeights::Blocks, BLOCK_RELATIVE_TOLERANCE),
];

fn llama_options(pretranspose: bool, quantized: QuantizedWeights) -> llama::LoadOptions {
    llama::LoadOptions {
        dtype: Dtype::F32,
        decode_path: DecodePath::Fused,
        pretranspose,
        quantized,
        k_quants: KQuants::Dequantize,
        compiled_decode: false,
    }
}

fn gemma3_options(decode_path: DecodePath, pretranspose: bool) -> gemma3::LoadOptions {
    gemma3::LoadOptions {
        dtype: Dtype::F32,
        decode_path,
        pretranspose,
        quantized: QuantizedWeights::Mlx,
        k_quants: KQuants::Dequantize,
        compiled_decode: false,
    }
}

fn logits(model: &dyn CausalLm, prompt: &[i32], chunk: usize) -> Vec<f32> {
    let logits = model.teacher_forced_logits(prompt, chunk).unwrap();
    assert_eq!(logits.shape(), vec![prompt.len() as i32, model.vocab_size() as i32]);
    logits.to_vec::<f32>().unwrap()
}

/// Every chunking of the prompt (chunk 1 = the single-token decode step) against `expected`.
fn assert_matches(model: &dyn CausalLm, prompt: &[i32], expected: &[f32], what: &str) {
    assert_within(model, prompt, expected, TOLERANCE, what);
}

/// Like [`assert_matches`], within `relative` of the largest expected logit (0: `TOLERANCE`).
fn assert_within(model: &dyn CausalLm, prompt: &[i32], expected: &[f32], relative: f32, what: &str) {
    let largest = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let tolerance = if relative > 0.0 { relative * largest } else { TOLERANCE };
    for chunk in [prompt.len(), 5, 3, 1] {
        let diff = max_abs_diff(&logits(model, prompt, chunk), expected);
        assert!(diff <= tolerance, "{what}, chunk {chunk}: max abs logit difference {diff} > {tolerance}");
    }
}

fn load_llama(dir: &Path, options: llama::LoadOptions) -> Result<Llama, ModelError> {
    Llama::load(dir, &read_config(dir), options)
}

fn load_gemma3(dir: &Path, options: gemma3::LoadOptions) -> Result<Gemma3, ModelError> {
    Gemma3::load(dir, &read_config(dir), options)
}

#[test]
fn llama_float32_matches_transformers_with_llama3_rope_scaling() {
    let dir = fixture("llama-tiny");
    let reference = reference(&dir);
    for path in [DecodePath::Fused, DecodePath::Split] {
        for pretranspose in [false, true] {
            let options =
                llama::LoadOptions { decode_path: path, ..llama_options(pretranspose, QuantizedWeights::Mlx) };
            let model = load_llama(&dir.join("fp32"), options).unwrap();
            assert_matches(&model, &reference.prompt, &reference.logits["fp32"], &format!("{path} {pretranspose}"));
        }
    }
    let compiled = llama::LoadOptions { compiled_decode: true, ..llama_options(false, QuantizedWeights::Mlx) };
    let model = load_llama(&dir.join("fp32"), compiled).unwrap();
    assert_matches(&model, &reference.prompt, &reference.logits["fp32"], "compiled decode");
}

#[test]
fn llama_mlx_quantized_matches_transformers_on_the_dequantized_weights() {
    let dir = fixture("llama-tiny");
    let reference = reference(&dir);
    for (quantized, tolerance) in REPRESENTATIONS {
        for compiled_decode in [false, true] {
            let options = llama::LoadOptions { compiled_decode, ..llama_options(false, quantized) };
            let model = load_llama(&dir.join("q4"), options).unwrap();
            let what = format!("{quantized:?} compiled {compiled_decode}");
            assert_within(&model, &reference.prompt, &reference.logits["q4"], tolerance, &what);
        }
    }
}

#[test]
fn llama_gguf_matches_transformers_gguf_loader() {
    let dir = fixture("llama-tiny");
    let reference = reference(&dir);
    let file = GgufFile::open(&dir.join("tiny.gguf")).unwrap();
    for k_quants in [KQuants::Exact, KQuants::Dequantize] {
        for (quantized, tolerance) in REPRESENTATIONS {
            let model = Llama::load_gguf(&file, llama::LoadOptions { k_quants, ..llama_options(false, quantized) });
            let model = model.unwrap();
            assert!(model.config().tie_word_embeddings.eq(&false), "the file has an output tensor");
            let what = format!("{quantized:?}, K-quants {k_quants:?}");
            assert_within(&model, &reference.prompt, &reference.logits["gguf"], tolerance, &what);
        }
    }
}

#[test]
fn gemma3_float32_matches_transformers_on_every_path() {
    let dir = fixture("gemma3-tiny");
    let reference = reference(&dir);
    for (path, pretranspose) in [(DecodePath::Split, false), (DecodePath::Fused, false), (DecodePath::Fused, true)] {
        let model = load_gemma3(&dir.join("fp32"), gemma3_options(path, pretranspose)).unwrap();
        assert_matches(&model, &reference.prompt, &reference.logits["fp32"], &format!("{path} {pretranspose}"));
    }
    let compiled = gemma3::LoadOptions { compiled_decode: true, ..gemma3_options(DecodePath::Fused, false) };
    let model = load_gemma3(&dir.join("fp32"), compiled).unwrap();
    assert_matches(&model, &reference.prompt, &reference.logits["fp32"], "compiled decode");
}

#[test]
fn gemma3_mlx_quantized_matches_transformers_on_the_dequantized_weights() {
    let dir = fixture("gemma3-tiny");
    let reference = reference(&dir);
    for (quantized, tolerance) in REPRESENTATIONS {
        for compiled_decode in [false, true] {
            let options =
                gemma3::LoadOptions { quantized, compiled_decode, ..gemma3_options(DecodePath::Fused, false) };
            let model = load_gemma3(&dir.join("q4"), options).unwrap();
            let what = format!("q4 {quantized:?} compiled {compiled_decode}");
            assert_within(&model, &reference.prompt, &reference.logits["q4"], tolerance, &what);
        }
    }
}

#[test]
fn gemma3_gguf_matches_transformers_gguf_loader() {
    let dir = fixture("gemma3-tiny");
    let reference = reference(&dir);
    let file = GgufFile::open(&dir.join("tiny.gguf")).unwrap();
    for k_quants in [KQuants::Exact, KQuants::Dequantize] {
        for (quantized, tolerance) in REPRESENTATIONS {
            let options = gemma3::LoadOptions { k_quants, quantized, ..gemma3_options(DecodePath::Fused, false) };
            let model = Gemma3::load_gguf(&file, options).unwrap();
            assert_eq!(model.config().layer_kinds.iter().filter(|k| **k == gemma3::LayerKind::Full).count(), 1);
            let what = format!("{quantized:?}, K-quants {k_quants:?}");
            assert_within(&model, &reference.prompt, &reference.logits["gguf"], tolerance, &what);
        }
    }
}

#[test]
fn requantized_k_quants_stay_close_to_the_exact_decode() {
    // Requantizing adds a second rounding: the logits move, but only a little.
    let dir = fixture("gemma3-tiny");
    let reference = reference(&dir);
    let file = GgufFile::open(&dir.join("tiny.gguf")).unwrap();
    let options =
        gemma3::LoadOptions { k_quants: KQuants::parse("q8").unwrap(), ..gemma3_options(DecodePath::Fused, false) };
    let model = Gemma3::load_gguf(&file, options).unwrap();
    let got = logits(&model, &reference.prompt, reference.prompt.len());
    let diff = max_abs_diff(&got, &reference.logits["gguf"]);
    assert!(diff > 0.0 && diff < 0.5, "8-bit requantized K tensors: max abs logit difference {diff}");
}

#[test]
fn a_missing_tensor_and_bad_ids_are_errors() {
    let dir = fixture("llama-tiny");
    let model = load_llama(&dir.join("fp32"), llama_options(false, QuantizedWeights::Mlx)).unwrap();
    assert!(matches!(model.teacher_forced_logits(&[1, 512], 4), Err(ModelError::Input(_))));
    assert!(matches!(model.teacher_forced_logits(&[], 4), Err(ModelError::Input(_))));
    let mut config = read_config(&dir.join("fp32"));
    config["num_hidden_layers"] = 3.into();
    match Llama::load(&dir.join("fp32"), &config, llama_options(false, QuantizedWeights::Mlx)) {
        Err(ModelError::MissingTensor { name }) => assert!(name.starts_with("layers.2."), "{name}"),
        Err(other) => panic!("expected a missing tensor, got {other}"),
        Ok(_) => panic!("a config with more layers than the weights loaded"),
    }
}
