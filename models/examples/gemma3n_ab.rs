//! A/B of Gemma 3n's execution-plan choices on random weights at a real shape: decode path
//! (fused | split) x pre-transposition (on | off), one process, the same weights, interleaved
//! repeats. Prints prefill and decode tokens/s per variant (median of the repeats, after a
//! warm-up) and a JSON line per variant.
//!
//!   cargo run --release -p mlxcel-models --example gemma3n_ab -- \
//!       [--shape e2b|e4b|e2b-mini] [--dtype bfloat16|float32] [--bits 0|4|8] [-p 128] [-n 64] [-r 3]
//!
//! Decode is mlx-lm's pipelined greedy loop: step n+1 is built and scheduled (`async_eval`)
//! before token n is read, so graph building overlaps the device work.

use std::time::Instant;

use mlx_bridge::quant::QuantSpec;
use mlx_bridge::{Array, Dtype, random};
use mlxcel_models::CausalLm;
use mlxcel_models::gemma3n::{Gemma3n, LoadOptions, random as shapes};
use mlxcel_models::hardware::DecodePath;
use mlxcel_models::weights::QuantizationConfig;
use mlxcel_models::weights::QuantizedWeights;

struct Args {
    shape: String,
    dtype: Dtype,
    bits: i32,
    prompt: i32,
    tokens: usize,
    repeats: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { shape: "e2b-mini".into(), dtype: Dtype::F32, bits: 0, prompt: 128, tokens: 32, repeats: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--shape" => args.shape = value()?,
            "--dtype" => args.dtype = Dtype::parse(&value()?).ok_or("unknown dtype")?,
            "--bits" => args.bits = value()?.parse().map_err(|e| format!("--bits: {e}"))?,
            "-p" => args.prompt = value()?.parse().map_err(|e| format!("-p: {e}"))?,
            "-n" => args.tokens = value()?.parse().map_err(|e| format!("-n: {e}"))?,
            "-r" => args.repeats = value()?.parse().map_err(|e| format!("-r: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Prefill seconds and decode tokens/s for one run from empty caches.
fn run(model: &Gemma3n, prompt: &Array, tokens: usize) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let mut caches = model.make_caches();
    let start = Instant::now();
    let logits = model.forward(prompt, &mut caches)?;
    let length = logits.dim(1)?;
    let mut next = logits.slice_axis(1, length - 1, length)?.argmax(-1, false)?;
    next.eval()?;
    let prefill = start.elapsed().as_secs_f64();

    let step = |token: &Array, caches: &mut Vec<_>| -> Result<Array, Box<dyn std::error::Error>> {
        Ok(model.forward(&token.reshape(&[1, 1])?, caches)?.argmax(-1, false)?)
    };
    let start = Instant::now();
    let mut pending = step(&next, &mut caches)?;
    mlx_bridge::async_eval(&[&pending])?;
    for i in 0..tokens {
        let current = pending;
        if i + 1 < tokens {
            pending = step(&current, &mut caches)?;
            mlx_bridge::async_eval(&[&pending])?;
        } else {
            pending = current.clone();
        }
        next = current;
        next.item::<u32>()?;
    }
    Ok((prefill, tokens as f64 / start.elapsed().as_secs_f64()))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let config = shapes::named_config(&args.shape)?;
    let quantize = if args.bits > 0 { Some(QuantSpec::affine(64, args.bits)?) } else { None };
    let build = Instant::now();
    let weights = shapes::random_weights(&config, args.dtype, quantize, 0)?;
    let quantization = quantize.map(|default| QuantizationConfig { default, overrides: Default::default() });
    eprintln!("random {} weights ready in {:.1}s", args.shape, build.elapsed().as_secs_f64());

    let pretranspose_options: &[bool] = if args.bits > 0 { &[false] } else { &[false, true] };
    let mut models = Vec::new();
    for &pretranspose in pretranspose_options {
        let options = LoadOptions {
            dtype: args.dtype,
            decode_path: DecodePath::Fused,
            pretranspose,
            quantized: QuantizedWeights::Mlx,
            k_quants: Default::default(),
            compiled_decode: false,
        };
        models.push((
            pretranspose,
            Gemma3n::from_arrays(config.clone(), weights.clone(), quantization.clone(), options)?,
        ));
    }
    let prompt = random::randint(0, config.vocab_size as i64, &[1, args.prompt], Dtype::I32, Some(&random::key(1)?))?;
    prompt.eval()?;

    let variants: Vec<(usize, DecodePath)> =
        (0..models.len()).flat_map(|m| [DecodePath::Fused, DecodePath::Split].map(|p| (m, p))).collect();
    let mut results = vec![(Vec::new(), Vec::new()); variants.len()];
    for repeat in 0..=args.repeats {
        for (v, &(m, path)) in variants.iter().enumerate() {
            let model = &mut models[m].1;
            model.set_decode_path(path);
            let (prefill, decode) = run(model, &prompt, args.tokens)?;
            if repeat > 0 {
                results[v].0.push(args.prompt as f64 / prefill);
                results[v].1.push(decode);
            }
        }
    }
    println!(
        "| shape | dtype | bits | decode path | pretranspose | prefill tok/s (p={}) | decode tok/s (n={}) |",
        args.prompt, args.tokens
    );
    println!("|---|---|---|---|---|---|---|");
    let mut lines = Vec::new();
    for (v, &(m, path)) in variants.iter().enumerate() {
        let (prefill, decode) = (median(results[v].0.clone()), median(results[v].1.clone()));
        let pretranspose = models[m].0;
        println!(
            "| {} | {} | {} | {path} | {} | {prefill:.1} | {decode:.2} |",
            args.shape,
            args.dtype,
            if args.bits > 0 { args.bits.to_string() } else { "-".into() },
            if pretranspose { "on" } else { "off" }
        );
        lines.push(format!(
            "{{\"shape\":\"{}\",\"dtype\":\"{}\",\"bits\":{},\"decode_path\":\"{path}\",\"pretranspose\":{pretranspose},\"prefill_tps\":{prefill:.2},\"decode_tps\":{decode:.3},\"repeats\":{}}}",
            args.shape, args.dtype, args.bits, args.repeats
        ));
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
