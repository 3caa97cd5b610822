//! Two questions about MLX's CUDA backend that the Gemma 3n decode numbers raise, answered on
//! the GPU: (1) is MLX's quantized matmul right for several rows (prefill chunks), against the
//! dequantized weight's plain matmul; (2) what one graph node costs MLX's host side and the device, by kind: a view
//! (no kernel), a small elementwise kernel, a small matmul.
//!
//!   cargo run --release -p mlx-bridge --no-default-features --example cuda_probe [qmm [--k K]] [nodes [--json OUT]]
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

/// Microseconds per node of a chain of `nodes` nodes made by `step`: (host, total). Host is the
/// time until `async_eval` returns (MLX has encoded every kernel by then); total waits for the
/// device too. Medians of 5 chains after one warm-up.
fn per_node(
    nodes: usize,
    start: &Array,
    step: &dyn Fn(&Array, usize) -> Result<Array, Failure>,
) -> Result<(f64, f64), Failure> {
    let (mut host, mut total) = (Vec::new(), Vec::new());
    for round in 0..6 {
        let mut x = start.clone();
        for i in 0..nodes {
            x = step(&x, i)?;
        }
        let started = Instant::now();
        mlx_bridge::async_eval(&[&x])?;
        let encoded = started.elapsed();
        x.eval()?;
        if round > 0 {
            host.push(encoded.as_secs_f64() * 1e6 / nodes as f64);
            total.push(started.elapsed().as_secs_f64() * 1e6 / nodes as f64);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(host), median(total)))
}

/// `json_out`: also write the rows there (`bench-report --node-costs` renders them).
fn node_costs(json_out: Option<&str>) -> Result<(), Failure> {
    const NODES: usize = 2000;
    let row = normal(&[1, 1, 2048], 3, Dtype::BF16)?;
    row.eval()?;
    let w = normal(&[2048, 2048], 4, Dtype::BF16)?.mul_scalar(0.02)?;
    w.eval()?;
    let tiny = normal(&[64, 64], 5, Dtype::BF16)?.mul_scalar(0.1)?;
    tiny.eval()?;
    let small = normal(&[1, 64], 6, Dtype::BF16)?;
    let norm_weight = normal(&[2048], 7, Dtype::BF16)?;
    norm_weight.eval()?;
    let q4 = quant::quantize(&w, QuantSpec::affine(64, 4)?)?;
    let mut rows: Vec<(String, usize, (f64, f64))> = Vec::new();
    let mut measure =
        |name: &str, nodes: usize, start: &Array, step: &dyn Fn(&Array, usize) -> Result<Array, Failure>| {
            let cost = per_node(nodes, start, step)?;
            rows.push((name.to_string(), nodes, cost));
            Ok::<(), Failure>(())
        };
    measure("reshape view", NODES, &row, &|x, i| {
        Ok(if i % 2 == 0 { x.reshape(&[1, 2048, 1])? } else { x.reshape(&[1, 1, 2048])? })
    })?;
    measure("transpose view", NODES, &row, &|x, _| Ok(x.transpose(&[0, 2, 1])?))?;
    measure("slice view / concatenate, alternating", NODES, &row, &|x, i| {
        Ok(if i % 2 == 0 { x.slice_axis(2, 0, 1024)? } else { mlx_bridge::concatenate(&[x, x], 2)? })
    })?;
    measure("elementwise [1,2048]", NODES, &row, &|x, _| Ok(x.mul_scalar(0.999)?))?;
    measure("rms_norm [1,2048]", NODES, &row, &|x, _| Ok(mlx_bridge::fast::rms_norm(x, Some(&norm_weight), 1e-6)?))?;
    measure("matmul [1,64]x[64,64]", NODES, &small, &|x, _| Ok(x.matmul(&tiny)?))?;
    measure("matmul [1,2048]x[2048,2048] (cuBLASLt)", NODES / 4, &row, &|x, _| Ok(x.matmul(&w)?))?;
    // A layer's `x @ W^T` with `W` stored `[out, in]`: MLX's own gemv, flat and as a batch of one.
    let w_t = w.t()?;
    let w_t_batch = w_t.expand_dims(&[0])?;
    mlx_bridge::eval(&[&w_t, &w_t_batch])?;
    let flat_row = row.reshape(&[1, 2048])?;
    flat_row.eval()?;
    measure("matmul [1,2048]x[2048,2048]^T view (gemv)", NODES / 4, &flat_row, &|x, _| Ok(x.matmul(&w_t)?))?;
    measure("matmul [1,1,2048]x[1,2048,2048]^T view (gemv)", NODES / 4, &row, &|x, _| Ok(x.matmul(&w_t_batch)?))?;
    let mix = normal(&[1, 1, 4, 4], 8, Dtype::F32)?.mul_scalar(0.3)?;
    let streams = normal(&[1, 1, 4, 2048], 9, Dtype::F32)?;
    mlx_bridge::eval(&[&mix, &streams])?;
    measure("matmul [4,4]x[4,2048] (AltUp's mix)", NODES / 4, &streams, &|x, _| Ok(mix.matmul(x)?))?;
    let keys = normal(&[1, 2, 512, 256], 10, Dtype::BF16)?;
    let queries = normal(&[1, 8, 1, 256], 11, Dtype::BF16)?;
    mlx_bridge::eval(&[&keys, &queries])?;
    for kernels in [false, true] {
        mlx_bridge::fast::set_cuda_kernels(kernels);
        let name = format!("attention 1 query, 512 keys, D 256 ({})", if kernels { "mlxcel" } else { "MLX" });
        measure(&name, NODES / 4, &queries, &|q, _| {
            Ok(mlx_bridge::fast::scaled_dot_product_attention(
                q,
                &keys,
                &keys,
                1.0,
                mlx_bridge::fast::AttentionMask::None,
            )?)
        })?;
    }
    mlx_bridge::fast::set_cuda_kernels(false);
    let rope = mlx_bridge::fast::Rope::new(256, 10000.0);
    measure("rope [1,8,1,256]", NODES, &queries, &|q, i| Ok(rope.apply(q, i as i32)?))?;
    for kernels in [false, true] {
        mlx_bridge::fast::set_cuda_kernels(kernels);
        let name = format!("q4 matmul [1,2048]x[2048,2048]^T ({})", if kernels { "mlxcel gemv" } else { "MLX qmv" });
        measure(&name, NODES / 4, &row, &|x, _| Ok(q4.matmul(x, true)?))?;
    }
    mlx_bridge::fast::set_cuda_kernels(false);
    for (name, nodes, (host, total)) in &rows {
        println!("node cost {name}: host {host:.2} µs, total {total:.2} µs (chains of {nodes}, median of 5)");
    }
    if let Some(path) = json_out {
        let rows: Vec<_> = rows
            .iter()
            .map(|(kind, nodes, (host, total))| {
                serde_json::json!({"kind": kind, "chain_nodes": nodes, "host_us": host, "total_us": total})
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
    }
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
        let json_out = wanted.iter().skip_while(|w| *w != "--json").nth(1);
        node_costs(json_out.map(String::as_str))?;
    }
    if failures > 0 {
        return Err(format!("{failures} quantized matmul cases wrong").into());
    }
    Ok(())
}
