//! Teacher-forced bfloat16 decode logits of the fastest path against the split path, at a real
//! Gemma 3n shape with random weights: one token per step (every step a decode step), the same
//! tokens for all three runs:
//!
//! - reference: the bfloat16-rounded weights in float32, split path, op by op;
//! - split: bfloat16, split path, op by op, mlxcel's GPU kernels off;
//! - fastest: bfloat16, fused path, compiled decode steps, mlxcel's GPU kernels on.
//!
//! Tolerance: bfloat16 has an 8-bit mantissa, so the split path itself is some distance from the
//! float32 reference; the fastest path must stay within twice that distance (largest absolute
//! logit difference over all steps) and pick the reference's next token at no fewer steps than
//! the split path does, less one in ten. Exits non-zero otherwise. Random weights at full depth
//! amplify rounding (at E2B's 30 layers the bf16 split path's logits are tens away from float32),
//! so `e2b-mini` (10 layers, same layer shapes) is the sharper check. Run with `MLX_ENABLE_TF32=0`
//! on CUDA so the reference's matmuls are float32.
//!
//!   cargo run --release -p mlxcel-models --example gemma3n_decode_check -- [--shape e2b] [-n 32]

use mlx_bridge::{Array, Dtype, random};
use mlxcel_models::CausalLm;
use mlxcel_models::gemma3n::{Gemma3n, LoadOptions, random as shapes};
use mlxcel_models::hardware::DecodePath;
use mlxcel_models::weights::QuantizedWeights;

type Failure = Box<dyn std::error::Error>;

struct Args {
    shape: String,
    tokens: i32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { shape: "e2b-mini".into(), tokens: 32 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--shape" => args.shape = value()?,
            "-n" => args.tokens = value()?.parse().map_err(|e| format!("-n: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Float32 logits of every step, feeding `ids` one token at a time.
fn step_logits(model: &Gemma3n, ids: &[i32]) -> Result<Vec<Vec<f32>>, Failure> {
    let mut caches = model.make_caches();
    let mut out = Vec::with_capacity(ids.len());
    for &id in ids {
        let logits = model.forward(&Array::from_slice(&[id], &[1, 1])?, &mut caches)?;
        out.push(logits.astype(Dtype::F32)?.reshape(&[-1])?.to_vec::<f32>()?);
    }
    Ok(out)
}

fn largest_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, v)| if *v > row[best] { i } else { best })
}

fn main() -> Result<(), Failure> {
    let args = parse_args()?;
    let config = shapes::named_config(&args.shape)?;
    let bf16 = shapes::random_weights(&config, Dtype::BF16, None, 0)?;
    let f32_weights = bf16
        .iter()
        .map(|(name, w)| Ok((name.clone(), w.astype(Dtype::F32)?)))
        .collect::<Result<std::collections::HashMap<_, _>, mlx_bridge::Error>>()?;
    let options = |dtype, decode_path, compiled_decode| LoadOptions {
        dtype,
        decode_path,
        pretranspose: false,
        quantized: QuantizedWeights::Mlx,
        k_quants: Default::default(),
        compiled_decode,
    };
    let ids: Vec<i32> =
        random::randint(0, config.vocab_size as i64, &[args.tokens], Dtype::I32, Some(&random::key(1)?))?
            .to_vec::<i32>()?;

    mlx_bridge::fast::set_cuda_kernels(false);
    let reference = {
        let model =
            Gemma3n::from_arrays(config.clone(), f32_weights, None, options(Dtype::F32, DecodePath::Split, false))?;
        step_logits(&model, &ids)?
    };
    let split = {
        let model =
            Gemma3n::from_arrays(config.clone(), bf16.clone(), None, options(Dtype::BF16, DecodePath::Split, false))?;
        step_logits(&model, &ids)?
    };
    mlx_bridge::fast::set_cuda_kernels(true);
    let fastest = {
        let model = Gemma3n::from_arrays(config, bf16, None, options(Dtype::BF16, DecodePath::Fused, true))?;
        step_logits(&model, &ids)?
    };
    mlx_bridge::fast::set_cuda_kernels(false);

    let largest = reference.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    let split_error = largest_difference(&split, &reference);
    let fastest_error = largest_difference(&fastest, &reference);
    let between = largest_difference(&fastest, &split);
    let first_step = |run: &[Vec<f32>]| largest_difference(&run[..1], &reference[..1]);
    let agreeing = |run: &[Vec<f32>]| run.iter().zip(&reference).filter(|(a, b)| argmax(a) == argmax(b)).count();
    let (split_agrees, fastest_agrees) = (agreeing(&split), agreeing(&fastest));
    let steps = ids.len();
    println!(
        "{} bfloat16, {steps} teacher-forced decode steps, largest |reference logit| {largest:.3}. Largest \
         difference from the float32 reference (first step, all steps): split {:.4}, {split_error:.4}; fastest \
         (fused, compiled, GPU kernels) {:.4}, {fastest_error:.4}; fastest vs split {between:.4}. Next token as \
         the reference's: split {split_agrees}/{steps}, fastest {fastest_agrees}/{steps}",
        args.shape,
        first_step(&split),
        first_step(&fastest),
    );
    let error_limit = 2.0 * split_error.max(f32::EPSILON * largest);
    let agreement_limit = split_agrees.saturating_sub(steps.div_ceil(10));
    if fastest_error > error_limit || fastest_agrees < agreement_limit {
        return Err(format!(
            "outside the tolerance: fastest error {fastest_error:.4} (limit {error_limit:.4}), next token as the \
             reference's at {fastest_agrees} steps (limit {agreement_limit})"
        )
        .into());
    }
    println!(
        "within tolerance: error <= 2x the split path's ({error_limit:.4}), reference's next token at >= \
         {agreement_limit} steps"
    );
    Ok(())
}
