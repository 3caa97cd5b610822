//! Two questions about MLX's CUDA backend that the Gemma 3n decode numbers raise, answered on
//! the GPU: (1) is MLX's quantized matmul right for several rows (prefill chunks), against the
//! dequantized weight's plain matmul; (2) what one graph node costs to evaluate, by kind: a view
//! (no kernel), a small elementwise kernel, a small matmul.
//!
//!   cargo run --release -p mlx-bridge --no-default-features --example cuda_probe [qmm [--k K]] [nodes]
//!
//! GPU only (on the CPU, MLX's bfloat16 kernel misses the bfloat16 bound by design: it
//! accumulates in bfloat16). Run with MLX_ENABLE_TF32=0 so float32 matmuls are float32. Exits
//! non-zero on a mismatch. The quantized products go through mlx-bridge, so the rows it routes
//! around MLX's CUDA kernel (see `quantized_matmul` in nn.cc) check that route; the rest check
//! MLX's own.

#[path = "gpu_checks/mod.rs"]
mod gpu_checks;

use std::time::Instant;

use gpu_checks::{Failure, normal, relative_error};
use mlx_bridge::quant::{self, QuantSpec};
use mlx_bridge::{Array, Dtype};

fn values(a: &Array) -> Result<Vec<f32>, Failure> {
    Ok(a.astype(Dtype::F32)?.to_vec::<f32>()?)
}

/// `only_k`: just the shapes with that inner size (a wrong kernel can leave the device unusable
/// for later cases in the same process, so shapes can be checked one process each).
fn quantized_rows(only_k: Option<i32>) -> Result<usize, Failure> {
    let mut failures = 0;
    for dtype in [Dtype::BF16, Dtype::F32] {
        // bfloat16: the output's rounding plus float32 accumulation, far below a wrong kernel's
        // error (MLX's CPU kernel accumulates in bfloat16 and misses this bound: GPU only).
        let tolerance = if dtype == Dtype::F32 { 1e-4 } else { 2e-2 };
        for bits in [4, 8] {
            let shapes = [(64, 64), (64, 256), (256, 64), (2048, 2048), (2048, 256), (8192, 2048)];
            for (k, n) in shapes.into_iter().filter(|(k, _)| only_k.is_none_or(|only| only == *k)) {
                let w = normal(&[n, k], 1, dtype)?;
                let q = quant::quantize(&w, QuantSpec::affine(64, bits)?)?;
                let dense = q.dequantize()?;
                for m in [1, 2, 3, 4, 8, 11, 16, 33, 512, 2048] {
                    let x = normal(&[1, m, k], 2 + m as u64, dtype)?;
                    let got = values(&q.matmul(&x, true)?)?;
                    let want = values(&x.astype(Dtype::F32)?.matmul(&dense.astype(Dtype::F32)?.t()?)?)?;
                    let error = relative_error(&got, &want);
                    let ok = error <= tolerance;
                    failures += usize::from(!ok);
                    println!(
                        "qmm {:?} bits={bits} K={k} N={n} M={m}: relative error {error:.2e} {}",
                        dtype,
                        if ok { "ok" } else { "WRONG" }
                    );
                }
            }
        }
    }
    Ok(failures)
}

/// Microseconds per node of a chain of `nodes` nodes made by `step`, evaluated at once.
fn per_node(
    nodes: usize,
    start: &Array,
    step: &dyn Fn(&Array, usize) -> Result<Array, Failure>,
) -> Result<f64, Failure> {
    let mut samples = Vec::new();
    for round in 0..6 {
        let mut x = start.clone();
        for i in 0..nodes {
            x = step(&x, i)?;
        }
        let started = Instant::now();
        x.eval()?;
        if round > 0 {
            samples.push(started.elapsed().as_secs_f64() * 1e6 / nodes as f64);
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

fn node_costs() -> Result<(), Failure> {
    const NODES: usize = 2000;
    let row = normal(&[1, 1, 2048], 3, Dtype::BF16)?;
    row.eval()?;
    let views = per_node(NODES, &row, &|x, i| {
        Ok(if i % 2 == 0 { x.reshape(&[1, 2048, 1])? } else { x.reshape(&[1, 1, 2048])? })
    })?;
    let transposes = per_node(NODES, &row, &|x, _| Ok(x.transpose(&[0, 2, 1])?))?;
    let elementwise = per_node(NODES, &row, &|x, _| Ok(x.mul_scalar(0.999)?))?;
    let w = normal(&[2048, 2048], 4, Dtype::BF16)?.mul_scalar(0.02)?;
    w.eval()?;
    let matmuls = per_node(NODES / 4, &row, &|x, _| Ok(x.matmul(&w)?))?;
    let tiny = normal(&[64, 64], 5, Dtype::BF16)?.mul_scalar(0.1)?;
    tiny.eval()?;
    let small = normal(&[1, 64], 6, Dtype::BF16)?;
    let tiny_matmuls = per_node(NODES, &small, &|x, _| Ok(x.matmul(&tiny)?))?;
    println!(
        "node cost (µs, median of 5 chains of {NODES}; matmul 2048x2048 chains of {}): reshape view {views:.2}, \
         transpose view {transposes:.2}, elementwise [1,2048] {elementwise:.2}, matmul [1,64]x[64,64] \
         {tiny_matmuls:.2}, matmul [1,2048]x[2048,2048] {matmuls:.2}",
        NODES / 4
    );
    Ok(())
}

fn main() -> Result<(), Failure> {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let all = wanted.is_empty();
    let mut failures = 0;
    if all || wanted.iter().any(|w| w == "qmm") {
        let only_k = wanted.iter().skip_while(|w| *w != "--k").nth(1).map(|k| k.parse()).transpose()?;
        failures += quantized_rows(only_k)?;
    }
    if all || wanted.iter().any(|w| w == "nodes") {
        node_costs()?;
    }
    if failures > 0 {
        return Err(format!("{failures} quantized matmul cases wrong").into());
    }
    Ok(())
}
