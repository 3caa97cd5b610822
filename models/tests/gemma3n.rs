//! Gemma 3n against transformers' float32 logits on a tiny random checkpoint
//! (`tests/fixtures/gen_gemma3n.py`): every path and layout must reproduce them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlx_bridge::io::{SafeTensors, save_safetensors};
use mlx_bridge::{Array, Dtype};
use mlxcel_models::gemma3n::{Gemma3n, LoadOptions};
use mlxcel_models::hardware::DecodePath;
use mlxcel_models::weights::QuantizedWeights;
use mlxcel_models::{CausalLm, ModelError};
use serde_json::Value;

mod common;

use common::{Reference, max_abs_diff};

fn fixtures() -> PathBuf {
    common::fixture("gemma3n-tiny")
}

fn reference() -> Reference {
    common::reference(&fixtures())
}

fn options(decode_path: DecodePath, pretranspose: bool) -> LoadOptions {
    LoadOptions {
        dtype: Dtype::F32,
        decode_path,
        pretranspose,
        quantized: QuantizedWeights::Mlx,
        k_quants: Default::default(),
        compiled_decode: false,
    }
}

fn load(dir: &Path, options: LoadOptions) -> Result<Gemma3n, ModelError> {
    Gemma3n::load(dir, &common::read_config(dir), options)
}

fn logits(model: &Gemma3n, prompt: &[i32], chunk: usize) -> Vec<f32> {
    let logits = model.teacher_forced_logits(prompt, chunk).unwrap();
    assert_eq!(logits.shape(), vec![prompt.len() as i32, 512]);
    logits.to_vec::<f32>().unwrap()
}

#[test]
fn float32_logits_match_transformers_at_every_position() {
    let reference = reference();
    let model = load(&fixtures().join("fp32"), options(DecodePath::Split, false)).unwrap();
    let got = logits(&model, &reference.prompt, reference.prompt.len());
    let diff = max_abs_diff(&got, &reference.logits["fp32"]);
    assert!(diff <= 1e-4, "max abs logit difference {diff}");
}

#[test]
fn chunked_prefill_is_exact_for_any_chunk_size() {
    // The window is 4: chunks of 5 and 3 cross it, chunk 1 runs the single-token ring buffer.
    let reference = reference();
    let model = load(&fixtures().join("fp32"), options(DecodePath::Split, false)).unwrap();
    let one_shot = logits(&model, &reference.prompt, reference.prompt.len());
    for chunk in [5, 3, 2, 1] {
        let chunked = logits(&model, &reference.prompt, chunk);
        let diff = max_abs_diff(&chunked, &one_shot);
        assert!(diff <= 1e-4, "chunk {chunk}: {diff} from one-shot");
        let diff = max_abs_diff(&chunked, &reference.logits["fp32"]);
        assert!(diff <= 1e-4, "chunk {chunk}: {diff} from transformers");
    }
}

#[test]
fn fused_split_and_pretransposed_paths_agree() {
    let reference = reference();
    let dir = fixtures().join("fp32");
    let split = logits(&load(&dir, options(DecodePath::Split, false)).unwrap(), &reference.prompt, 11);
    for (path, pretranspose) in [(DecodePath::Fused, false), (DecodePath::Fused, true), (DecodePath::Split, true)] {
        let model = load(&dir, options(path, pretranspose)).unwrap();
        for chunk in [11, 1] {
            let got = logits(&model, &reference.prompt, chunk);
            let diff = max_abs_diff(&got, &split);
            assert!(diff <= 1e-4, "{path:?} pretranspose={pretranspose} chunk {chunk}: {diff} from split");
            assert!(max_abs_diff(&got, &reference.logits["fp32"]) <= 1e-4);
        }
    }
}

#[test]
fn compiled_decode_steps_match_transformers() {
    // Chunk 1 runs every position as a decode step: each layer's AltUp, Laurel, projections,
    // feed-forward and per-layer gating as compiled graphs, RoPE and the sliding ring outside.
    let reference = reference();
    let compiled = |pretranspose, quantized| LoadOptions {
        compiled_decode: true,
        quantized,
        ..options(DecodePath::Fused, pretranspose)
    };
    for pretranspose in [false, true] {
        let model = load(&fixtures().join("fp32"), compiled(pretranspose, QuantizedWeights::Mlx)).unwrap();
        for chunk in [1, 11] {
            let diff = max_abs_diff(&logits(&model, &reference.prompt, chunk), &reference.logits["fp32"]);
            assert!(diff <= 1e-4, "fp32 pretranspose={pretranspose} chunk {chunk}: {diff}");
        }
    }
    for (quantized, relative) in [(QuantizedWeights::Mlx, 0.0), (QuantizedWeights::Blocks, 5e-4)] {
        let model = load(&fixtures().join("q4"), compiled(true, quantized)).unwrap();
        let expected = &reference.logits["q4"];
        let largest = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let bound = if relative > 0.0 { relative * largest } else { 1e-4 };
        let diff = max_abs_diff(&logits(&model, &reference.prompt, 1), expected);
        assert!(diff <= bound, "q4 {quantized:?}: {diff} > {bound}");
    }
}

/// Rewrites the fp32 fixture into `dir` with renamed tensors (and optionally split in two shards).
fn rewrite_checkpoint(dir: &Path, rename: &dyn Fn(&str) -> String, config: Value, shards: usize) {
    let source = SafeTensors::load(fixtures().join("fp32/model.safetensors")).unwrap();
    let names = source.names();
    let arrays: Vec<(String, Array)> = names.iter().map(|n| (rename(n), source.get(n).unwrap())).collect();
    let per_shard = arrays.len().div_ceil(shards);
    let mut weight_map = serde_json::Map::new();
    for (i, chunk) in arrays.chunks(per_shard).enumerate() {
        let file = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{shards:05}.safetensors", i + 1)
        };
        let tensors: Vec<(&str, &Array)> = chunk.iter().map(|(n, a)| (n.as_str(), a)).collect();
        save_safetensors(dir.join(&file), &tensors, &HashMap::new()).unwrap();
        for (name, _) in chunk {
            weight_map.insert(name.clone(), Value::String(file.clone()));
        }
    }
    if shards > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

fn fp32_config() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("fp32/config.json")).unwrap()).unwrap()
}

#[test]
fn mlx_vlm_layout_with_nested_config_and_sharded_hf_layout_load_the_same_model() {
    let reference = reference();
    let vlm = tempfile::tempdir().unwrap();
    let nested = serde_json::json!({"model_type": "gemma3n", "text_config": fp32_config()});
    rewrite_checkpoint(vlm.path(), &|n| n.replacen("model.", "language_model.model.", 1), nested.clone(), 1);
    let got = logits(&load(vlm.path(), options(DecodePath::Split, false)).unwrap(), &reference.prompt, 11);
    assert!(max_abs_diff(&got, &reference.logits["fp32"]) <= 1e-4);

    let sharded = tempfile::tempdir().unwrap();
    rewrite_checkpoint(sharded.path(), &|n| n.replacen("model.", "model.language_model.", 1), nested, 3);
    let got = logits(&load(sharded.path(), options(DecodePath::Fused, false)).unwrap(), &reference.prompt, 4);
    assert!(max_abs_diff(&got, &reference.logits["fp32"]) <= 1e-4);
}

#[test]
fn quantized_checkpoints_match_transformers_on_their_dequantized_weights() {
    // transformers ran on exactly the weights MLX's quantization represents, so the only
    // difference left is quantized_matmul's accumulation order: the fp32 tolerance applies.
    let reference = reference();
    for bits in ["q4", "q8"] {
        for path in [DecodePath::Split, DecodePath::Fused] {
            let model = load(&fixtures().join(bits), options(path, true)).unwrap();
            for chunk in [11, 1] {
                let got = logits(&model, &reference.prompt, chunk);
                let diff = max_abs_diff(&got, &reference.logits[bits]);
                assert!(diff <= 1e-4, "{bits} {path:?} chunk {chunk}: {diff}");
            }
        }
    }
    // Against the float model the quantization error shows. This random model moves its logits by
    // ~0.1 per 1e-3 of relative weight noise (measured in transformers when the fixture was made);
    // 8-bit affine rounding is ~0.5% relative per weight, so ~0.5 is expected, and 4-bit's 16x
    // coarser step far more. The float model's greedy choice must survive 8-bit.
    let model = |bits: &str| load(&fixtures().join(bits), options(DecodePath::Split, false)).unwrap();
    let float = &reference.logits["fp32"];
    let q8_logits = logits(&model("q8"), &reference.prompt, 11);
    let q8 = max_abs_diff(&q8_logits, float);
    let q4 = max_abs_diff(&logits(&model("q4"), &reference.prompt, 11), float);
    assert!(q8 < 1.0 && q8 * 4.0 < q4, "q8 {q8}, q4 {q4}");
    let argmax = |row: &[f32]| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    for (q, f) in q8_logits.chunks(512).zip(float.chunks(512)) {
        assert_eq!(argmax(q), argmax(f));
    }
}

#[test]
fn quantized_checkpoints_on_the_cpu_block_kernels_stay_within_activation_rounding() {
    // The block kernels multiply activations rounded to 16-bit codes per 32 values (the default
    // activation precision), which this sensitive random model (0.1 logit per 1e-3 of relative
    // noise, above) moves by at most 0.010% of the largest logit, measured (int8 rounding,
    // llama.cpp's, moved it 2.4%); the bound is 0.05%, as for Llama and Gemma 3.
    let reference = reference();
    for bits in ["q4", "q8"] {
        for path in [DecodePath::Split, DecodePath::Fused] {
            let options = LoadOptions { quantized: QuantizedWeights::Blocks, ..options(path, true) };
            let model = load(&fixtures().join(bits), options).unwrap();
            let expected = &reference.logits[bits];
            let largest = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for chunk in [11, 1] {
                let diff = max_abs_diff(&logits(&model, &reference.prompt, chunk), expected);
                assert!(diff <= 5e-4 * largest, "{bits} {path:?} chunk {chunk}: {diff} (largest logit {largest})");
            }
        }
    }
}

#[test]
fn a_missing_or_misshaped_tensor_is_an_error_naming_it() {
    let missing = tempfile::tempdir().unwrap();
    let drop_name = "model.layers.2.mlp.up_proj.weight";
    let source = SafeTensors::load(fixtures().join("fp32/model.safetensors")).unwrap();
    let kept: Vec<(String, Array)> =
        source.names().into_iter().filter(|n| n != drop_name).map(|n| (n.clone(), source.get(&n).unwrap())).collect();
    let tensors: Vec<(&str, &Array)> = kept.iter().map(|(n, a)| (n.as_str(), a)).collect();
    save_safetensors(missing.path().join("model.safetensors"), &tensors, &HashMap::new()).unwrap();
    std::fs::write(missing.path().join("config.json"), fp32_config().to_string()).unwrap();
    let err = load(missing.path(), options(DecodePath::Split, false)).err().expect("loaded without a tensor");
    assert!(err.to_string().contains("layers.2.mlp.up_proj.weight"), "{err}");

    let misshaped = tempfile::tempdir().unwrap();
    let bad = Array::zeros(&[7, 64], Dtype::F32).unwrap();
    let mut tensors: Vec<(&str, &Array)> = kept.iter().map(|(n, a)| (n.as_str(), a)).collect();
    tensors.push((drop_name, &bad));
    save_safetensors(misshaped.path().join("model.safetensors"), &tensors, &HashMap::new()).unwrap();
    std::fs::write(misshaped.path().join("config.json"), fp32_config().to_string()).unwrap();
    let err = load(misshaped.path(), options(DecodePath::Split, false)).err().expect("loaded a mis-shaped tensor");
    let text = err.to_string();
    assert!(text.contains("layers.2.mlp.up_proj.weight") && text.contains("[7, 64]"), "{text}");
}

#[test]
fn prompts_beyond_the_context_or_vocabulary_are_input_errors() {
    let model = load(&fixtures().join("fp32"), options(DecodePath::Split, false)).unwrap();
    assert!(matches!(model.teacher_forced_logits(&[1, 512], 4), Err(ModelError::Input(_))));
    assert!(matches!(model.teacher_forced_logits(&[], 4), Err(ModelError::Input(_))));
    assert!(matches!(model.teacher_forced_logits(&[1, 2], 0), Err(ModelError::Input(_))));
}

#[test]
fn bfloat16_checkpoint_matches_transformers_on_its_rounded_weights() {
    // transformers ran in float32 on the bf16-rounded weights: loading the bf16 file with a float32
    // compute dtype must reproduce that exactly.
    let reference = reference();
    let model = load(&fixtures().join("bf16"), options(DecodePath::Fused, false)).unwrap();
    let got = logits(&model, &reference.prompt, 4);
    let diff = max_abs_diff(&got, &reference.logits["bf16"]);
    assert!(diff <= 1e-4, "{diff}");
}
