//! Batched decoding on every family's tiny fixture: sequences of different lengths decoded in one
//! forward pass per step ([`CausalLm::forward_batch`] over [`BatchKvCache`]s) give, row by row,
//! the logits each sequence gets decoded alone, while one sequence joins the batch mid-way (longer
//! than the rows already there, so both sides get padded) and another leaves. On the CPU this
//! goes through mlxcel's CPU kernels (RoPE reads per-row offsets, decode attention the batch's
//! padding mask) and, in one test, through MLX's own op-by-op fallbacks with them off.

// The reference logits go unused: each batch row is held to its sequence decoded alone.
#[allow(dead_code)]
mod common;

use std::sync::{Mutex, MutexGuard};

use mlx_bridge::{Array, Dtype, fast};
use mlxcel_models::gguf::KQuants;
use mlxcel_models::hardware::DecodePath;
use mlxcel_models::layers::{BatchKvCache, KvCache};
use mlxcel_models::weights::QuantizedWeights;
use mlxcel_models::{CausalLm, LoadOptions, Logits, families};

use common::{fixture, max_abs_diff, read_config, reference};

/// Float32 on both sides: a batch row differs from the sequence alone only in summation order.
const TOLERANCE: f32 = 1e-4;

/// mlxcel's CPU block kernels round activations to 16-bit codes per 32 values, so float32 noise
/// between a batch row and the sequence alone (summation order) can move a code by one step; it
/// stays within the bound `tests/families.rs` holds these kernels to against transformers, a
/// fraction of the largest logit (measured: at most 6.7e-5 on Gemma 3n q4).
const BLOCK_RELATIVE_TOLERANCE: f32 = 5e-4;

/// Decode steps in all; the batch starts with sequences 0 and 1.
const STEPS: usize = 7;
/// Sequence 2 is prefilled alone and joins before this step.
const JOIN: usize = 2;
/// Sequence 0 leaves after this step.
const LEAVE: usize = 3;

/// Held by every test: one switches the (process-wide) CPU kernels off for a while.
static KERNELS: Mutex<()> = Mutex::new(());

fn kernels() -> MutexGuard<'static, ()> {
    KERNELS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A prompt of `length` ids: the fixture's reference prompt from its `seed`-th id on, repeated,
/// each repetition shifted within the fixtures' vocabulary of 512.
fn prompt(name: &str, length: usize, seed: usize) -> Vec<i32> {
    let ids = reference(&fixture(&format!("{name}-tiny"))).prompt;
    (0..length).map(|i| (ids[(i + seed) % ids.len()] + (i / ids.len()) as i32 * 7) % 512).collect()
}

fn load(name: &str, decode_path: DecodePath) -> Box<dyn CausalLm> {
    load_variant(name, "fp32", QuantizedWeights::Mlx, decode_path)
}

fn load_variant(name: &str, variant: &str, quantized: QuantizedWeights, decode_path: DecodePath) -> Box<dyn CausalLm> {
    load_with(name, variant, quantized, decode_path, false)
}

fn load_with(
    name: &str,
    variant: &str,
    quantized: QuantizedWeights,
    decode_path: DecodePath,
    compiled_decode: bool,
) -> Box<dyn CausalLm> {
    let dir = fixture(&format!("{name}-tiny")).join(variant);
    let config = read_config(&dir);
    let text = config.get("text_config").unwrap_or(&config);
    let model_type = text["model_type"].as_str().or(config["model_type"].as_str()).unwrap();
    let family = families::by_model_type(model_type).unwrap_or_else(|| panic!("{model_type}"));
    let options = LoadOptions {
        dtype: Dtype::F32,
        decode_path,
        pretranspose: false,
        quantized,
        k_quants: KQuants::Dequantize,
        compiled_decode,
    };
    (family.load)(&dir, &config, options).unwrap()
}

fn argmax(logits: &[f32]) -> i32 {
    logits.iter().enumerate().fold((0, f32::MIN), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0 as i32
}

/// A prompt prefilled alone: its caches, and the token its last logits pick.
fn prefill(model: &dyn CausalLm, prompt: &[i32]) -> (Vec<KvCache>, i32) {
    let mut caches = model.make_caches();
    let ids = Array::from_slice(prompt, &[1, prompt.len() as i32]).unwrap();
    let logits = model.forward_logits(&ids, &mut caches, Logits::Last).unwrap().to_vec::<f32>().unwrap();
    (caches, argmax(&logits))
}

/// `steps` greedy decode steps of `prompt` alone: the logits of each step.
fn alone(model: &dyn CausalLm, prompt: &[i32], steps: usize) -> Vec<Vec<f32>> {
    let (mut caches, mut token) = prefill(model, prompt);
    (0..steps)
        .map(|_| {
            let ids = Array::from_slice(&[token], &[1, 1]).unwrap();
            let logits = model.forward_logits(&ids, &mut caches, Logits::Last).unwrap().to_vec::<f32>().unwrap();
            token = argmax(&logits);
            logits
        })
        .collect()
}

/// One batch cache per layer holding these sequences' caches, in this order.
fn merge(sequences: &[&Vec<KvCache>]) -> Vec<BatchKvCache> {
    (0..sequences[0].len())
        .map(|layer| BatchKvCache::merge(&sequences.iter().map(|s| s[layer].clone()).collect::<Vec<_>>()).unwrap())
        .collect()
}

fn check(name: &str, lengths: [usize; 3], decode_path: DecodePath) {
    let _kernels = kernels();
    run(name, lengths, decode_path);
}

fn run(name: &str, lengths: [usize; 3], decode_path: DecodePath) {
    run_on(load(name, decode_path).as_ref(), name, lengths, decode_path, 0.0);
}

/// `relative`: the bound as a fraction of the largest logit (0: [`TOLERANCE`]).
fn run_on(model: &dyn CausalLm, name: &str, lengths: [usize; 3], decode_path: DecodePath, relative: f32) {
    let prompts: Vec<Vec<i32>> = lengths.iter().enumerate().map(|(i, &n)| prompt(name, n, 3 * i)).collect();
    assert!(lengths.iter().all(|&n| n + STEPS < model.context_length()));
    let steps = [LEAVE + 1, STEPS, STEPS - JOIN];
    let expected: Vec<Vec<Vec<f32>>> = prompts.iter().zip(steps).map(|(p, n)| alone(model, p, n)).collect();

    // Rows: (sequence, its next step, the token it feeds).
    let prefilled: Vec<(Vec<KvCache>, i32)> = prompts.iter().map(|p| prefill(model, p)).collect();
    let mut batch = merge(&[&prefilled[0].0, &prefilled[1].0]);
    let mut rows: Vec<(usize, usize, i32)> = vec![(0, 0, prefilled[0].1), (1, 0, prefilled[1].1)];
    for step in 0..STEPS {
        if step == JOIN {
            for (caches, joining) in batch.iter_mut().zip(merge(&[&prefilled[2].0])) {
                caches.extend(joining).unwrap();
            }
            rows.push((2, 0, prefilled[2].1));
        }
        let tokens: Vec<i32> = rows.iter().map(|&(_, _, token)| token).collect();
        let ids = Array::from_slice(&tokens, &[tokens.len() as i32, 1]).unwrap();
        let logits = model.forward_batch(&ids, &mut batch, Logits::Last).unwrap();
        assert_eq!(logits.shape()[..2], [rows.len() as i32, 1]);
        for (r, (sequence, at, token)) in rows.iter_mut().enumerate() {
            let row = logits.slice_axis(0, r as i32, r as i32 + 1).unwrap().to_vec::<f32>().unwrap();
            let diff = max_abs_diff(&row, &expected[*sequence][*at]);
            let largest = expected[*sequence][*at].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let tolerance = if relative > 0.0 { relative * largest } else { TOLERANCE };
            let what = format!("{name} {decode_path}: sequence {sequence} (prompt {}), step {at}", lengths[*sequence]);
            eprintln!("{what}: {diff:.2e}");
            assert!(diff <= tolerance, "{what}: max abs logit difference {diff} > {tolerance}");
            *token = argmax(&row);
            *at += 1;
        }
        if step == LEAVE {
            let keep: Vec<usize> = (0..rows.len()).filter(|&r| rows[r].0 != 0).collect();
            for caches in &mut batch {
                caches.filter(&keep).unwrap();
            }
            rows.retain(|&(sequence, _, _)| sequence != 0);
        }
    }
    assert!(rows.iter().all(|&(sequence, at, _)| at == steps[sequence]));
}

/// Prompt lengths on both sides of the fixtures' sliding window of 4, and a joining prompt longer
/// than every row already in the batch.
const LENGTHS: [usize; 3] = [9, 3, 14];

#[test]
fn llama_batched_decode_equals_each_sequence_alone() {
    check("llama", LENGTHS, DecodePath::Fused);
}

#[test]
fn gemma3_batched_decode_equals_each_sequence_alone() {
    for path in [DecodePath::Fused, DecodePath::Split] {
        check("gemma3", LENGTHS, path);
    }
}

#[test]
fn gemma3n_batched_decode_equals_each_sequence_alone() {
    // kv-shared layers, sliding layers and AltUp, on both decode paths.
    for path in [DecodePath::Fused, DecodePath::Split] {
        check("gemma3n", LENGTHS, path);
    }
}

#[test]
fn compiled_batched_decode_equals_each_sequence_alone() {
    // The compiled pieces traced once per batch size: rows joining and leaving retrace them.
    let _kernels = kernels();
    for name in ["llama", "gemma3n", "qwen3_moe"] {
        let model = load_with(name, "fp32", QuantizedWeights::Mlx, DecodePath::Fused, true);
        run_on(model.as_ref(), name, LENGTHS, DecodePath::Fused, 0.0);
    }
}

#[test]
fn qwen2_batched_decode_equals_each_sequence_alone() {
    check("qwen2", LENGTHS, DecodePath::Fused);
}

#[test]
fn qwen3_batched_decode_equals_each_sequence_alone() {
    check("qwen3", LENGTHS, DecodePath::Fused);
}

#[test]
fn qwen3_moe_batched_decode_equals_each_sequence_alone() {
    check("qwen3_moe", LENGTHS, DecodePath::Fused);
}

#[test]
fn phi3_batched_decode_equals_each_sequence_alone() {
    // LongRoPE switches frequencies past 32 positions: sequence 0 crosses it while decoding, with
    // sequence 1 short and sequence 2 long in the same batch.
    check("phi3", [29, 4, 33], DecodePath::Fused);
    check("phi3", LENGTHS, DecodePath::Fused);
}

#[test]
fn smollm3_batched_decode_equals_each_sequence_alone() {
    check("smollm3", LENGTHS, DecodePath::Fused);
}

#[test]
fn batched_decode_equals_each_sequence_alone_without_the_cpu_kernels() {
    let _kernels = kernels();
    let was = fast::cpu_kernels();
    fast::set_cpu_kernels(false);
    let outcome = std::panic::catch_unwind(|| {
        for name in ["llama", "gemma3", "gemma3n", "phi3"] {
            run(name, LENGTHS, DecodePath::Split);
        }
    });
    fast::set_cpu_kernels(was);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn block_quantized_batched_decode_equals_each_sequence_alone() {
    let _kernels = kernels();
    for name in ["llama", "gemma3n"] {
        let model = load_variant(name, "q4", QuantizedWeights::Blocks, DecodePath::Fused);
        run_on(model.as_ref(), name, LENGTHS, DecodePath::Fused, BLOCK_RELATIVE_TOLERANCE);
    }
}
