//! mlxcel's CUDA decode kernels (`src/cpp/cuda_fast.cc`) against MLX's own ops on the GPU: first
//! correctness (every shape class the models use, against MLX's result on the same inputs), then
//! speed. Needs an NVIDIA GPU with MLX's CUDA backend (`libmlx.so` of the mlx-cuda wheel first on
//! the library path); exits non-zero on a mismatch.
//!
//!   cargo run --release -p mlx-bridge --no-default-features --example cuda_kernels [-- --json OUT]
//!
//! Speed: weight (or KV) bytes read per second, median of 50 timed evaluations after 5 warm-ups.

#[path = "gpu_checks/mod.rs"]
mod gpu_checks;

use std::time::Instant;

use gpu_checks::{Failure, normal, relative_error};
use mlx_bridge::fast::{self, AttentionMask};
use mlx_bridge::quant::{self, QuantSpec};
use mlx_bridge::{Array, Dtype};

/// `f` with mlxcel's kernels and with MLX's, as float32 values.
fn both(f: &dyn Fn() -> Result<Array, Failure>) -> Result<(Vec<f32>, Vec<f32>), Failure> {
    fast::set_cuda_kernels(true);
    let ours = f()?.astype(Dtype::F32)?.to_vec::<f32>()?;
    fast::set_cuda_kernels(false);
    let theirs = f()?.astype(Dtype::F32)?.to_vec::<f32>()?;
    Ok((ours, theirs))
}

/// Median seconds per call of `f`, from graphs of 20 independent calls evaluated together: one
/// evaluation's own cost (tens of microseconds) would otherwise hide a kernel's.
fn time(f: &dyn Fn() -> Result<Array, Failure>) -> Result<f64, Failure> {
    const CALLS: usize = 20;
    let batch = || -> Result<Vec<Array>, Failure> { (0..CALLS).map(|_| f()).collect() };
    for _ in 0..3 {
        mlx_bridge::eval(&batch()?.iter().collect::<Vec<_>>())?;
    }
    let mut samples = Vec::new();
    for _ in 0..15 {
        let outs = batch()?;
        let started = Instant::now();
        mlx_bridge::eval(&outs.iter().collect::<Vec<_>>())?;
        samples.push(started.elapsed().as_secs_f64() / CALLS as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

fn main() -> Result<(), Failure> {
    let json_out = std::env::args().skip_while(|a| a != "--json").nth(1);
    let mut failures = 0;
    let mut report = Vec::new();
    // bf16 rounding of the output: ~2^-8 relative, plus accumulation order.
    let tolerance = 1.5e-2;

    // The bandwidth to measure against: a STREAM-style copy (x + 1 over 2 GiB of bf16: read + write).
    let big = normal(&[1 << 30], 6, Dtype::BF16)?;
    big.eval()?;
    let copy = time(&|| Ok(big.add_scalar(1.0)?))?;
    let copy_tb = 2.0 * big.nbytes() as f64 / copy / 1e12;
    println!("copy bandwidth: {copy_tb:.2} TB/s (read + write)");
    report.push(format!(r#"{{"kernel":"copy","tb_per_s":{copy_tb:.3}}}"#));
    drop(big);

    // Attention: head sizes 64..256, 1-8 query heads per KV head, caches that fit one block or
    // need the split, read through a view of a larger buffer as the KV caches hand them over.
    for (d, hq, hkv) in [(256, 8, 2), (256, 4, 4), (128, 32, 8), (64, 8, 1)] {
        for s in [1, 7, 128, 129, 1000, 4096] {
            let capacity = (s + 255) / 256 * 256;
            let q = normal(&[1, hq, 1, d], 1, Dtype::BF16)?;
            let k_buffer = normal(&[1, hkv, capacity, d], 2, Dtype::BF16)?;
            let v_buffer = normal(&[1, hkv, capacity, d], 3, Dtype::BF16)?;
            mlx_bridge::eval(&[&q, &k_buffer, &v_buffer])?;
            let scale = 1.0 / (d as f32).sqrt();
            let run = || -> Result<Array, Failure> {
                let k = k_buffer.slice_axis(2, 0, s)?;
                let v = v_buffer.slice_axis(2, 0, s)?;
                Ok(fast::scaled_dot_product_attention(&q, &k, &v, scale, AttentionMask::None)?)
            };
            let (ours, theirs) = both(&run)?;
            let error = relative_error(&ours, &theirs);
            let ok = error <= tolerance;
            failures += usize::from(!ok);
            println!(
                "attention D={d} Hq={hq} Hkv={hkv} S={s}: relative error {error:.2e} {}",
                if ok { "ok" } else { "FAIL" }
            );
            if s == 4096 {
                fast::set_cuda_kernels(true);
                let ours = time(&run)?;
                fast::set_cuda_kernels(false);
                let theirs = time(&run)?;
                let bytes = 2.0 * (hkv * s * d * 2) as f64;
                println!(
                    "  {:.1} us ({:.2} TB/s of KV) vs MLX {:.1} us",
                    ours * 1e6,
                    bytes / ours / 1e12,
                    theirs * 1e6
                );
                report.push(format!(
                    r#"{{"kernel":"attention","D":{d},"Hq":{hq},"Hkv":{hkv},"S":{s},"ours_us":{:.2},"mlx_us":{:.2},"kv_tb_per_s":{:.3}}}"#,
                    ours * 1e6,
                    theirs * 1e6,
                    bytes / ours / 1e12
                ));
            }
        }
    }

    // One-row affine matmuls: Gemma 3n E2B's shapes (hidden 2048, MLP 8192, vocab 262144).
    for (n, k) in [(2048, 2048), (8192, 2048), (2048, 8192), (262144, 2048), (16384, 4096)] {
        for (bits, group) in [(4, 64), (8, 64), (4, 32), (4, 128)] {
            let w = normal(&[n, k], 4, Dtype::BF16)?;
            let q = quant::quantize(&w, QuantSpec::affine(group, bits)?)?;
            let x = normal(&[1, 1, k], 5, Dtype::BF16)?;
            mlx_bridge::eval(&[&q.weight, &q.scales, &x])?;
            let run = || -> Result<Array, Failure> { Ok(q.matmul(&x, true)?) };
            let (ours, theirs) = both(&run)?;
            let error = relative_error(&ours, &theirs);
            let ok = error <= tolerance;
            failures += usize::from(!ok);
            println!("gemv {n}x{k} {bits}-bit g{group}: relative error {error:.2e} {}", if ok { "ok" } else { "FAIL" });
            if group == 64 {
                fast::set_cuda_kernels(true);
                let ours = time(&run)?;
                fast::set_cuda_kernels(false);
                let theirs = time(&run)?;
                let bytes = (q.weight.nbytes() + q.scales.nbytes() * 2) as f64;
                println!(
                    "  {:.1} us ({:.2} TB/s) vs MLX {:.1} us ({:.2} TB/s)",
                    ours * 1e6,
                    bytes / ours / 1e12,
                    theirs * 1e6,
                    bytes / theirs / 1e12
                );
                report.push(format!(
                    r#"{{"kernel":"affine_gemv","N":{n},"K":{k},"bits":{bits},"group":{group},"ours_us":{:.2},"mlx_us":{:.2},"ours_tb_per_s":{:.3},"mlx_tb_per_s":{:.3}}}"#,
                    ours * 1e6,
                    theirs * 1e6,
                    bytes / ours / 1e12,
                    bytes / theirs / 1e12
                ));
            }
        }
    }
    if let Some(path) = json_out {
        std::fs::write(&path, format!("[\n{}\n]\n", report.join(",\n")))?;
    }
    if failures > 0 {
        return Err(format!("{failures} kernel checks failed").into());
    }
    println!("all kernel checks passed");
    Ok(())
}
