//! Time per call of a tiny block matmul (the fixed cost of a graph node, the primitive, the
//! activation quantization and the pool), beside a plain MLX op on an array of the same size.
//!
//!   cargo run --release -p mlx-bridge --example block_call_overhead -- [threads=1]

use std::time::Instant;

use mlx_bridge::block_quant::{self, BlockFormat, BlockMatrix};
use mlx_bridge::{Array, eval};

fn per_call(mut f: impl FnMut() -> mlx_bridge::Result<Array>) -> mlx_bridge::Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..20 {
        let start = Instant::now();
        let outs: Vec<Array> = (0..50).map(|_| f()).collect::<Result<_, _>>()?;
        eval(&outs.iter().collect::<Vec<_>>())?;
        best = best.min(start.elapsed().as_secs_f64() / 50.0);
    }
    Ok(best)
}

/// Per-thread (name, ns on CPU, ns runnable but waiting for a CPU) from /proc (Linux).
fn schedstat() -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim().to_string();
        let stat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        let v: Vec<u64> = stat.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if v.len() >= 2 {
            out.push((format!("{name}/{}", entry.file_name().to_string_lossy()), v[0], v[1]));
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::args().nth(1).map_or(Ok(1), |s| s.parse())?;
    block_quant::set_num_threads(threads)?;
    let mut bytes = Vec::new();
    for _ in 0..16 {
        bytes.extend([0x00, 0x3c]);
        bytes.extend(0..32u8);
    }
    let w = BlockMatrix::from_gguf("tiny", BlockFormat::Q8_0, &bytes, 16, 32)?;
    let x = Array::from_slice(&[0.5f32; 32], &[1, 32])?;
    let one = Array::from_slice(&[1.0f32; 16], &[1, 16])?;
    let y0 = Array::from_slice(&[0.0f32; 16], &[1, 16])?;
    eval(&[&x, &one, &y0])?;
    println!("block matmul_t 16x32, {threads} thread(s): {:.2} us per call", per_call(|| w.matmul_t(&x))? * 1e6);
    println!("mlx add [1, 16]:                  {:.2} us per call", per_call(|| y0.add(&one))? * 1e6);
    // A real layer's worth: 1536 x 576 Q4_0 (what kernel_bench times alone).
    let rows = 1536;
    let mut big = Vec::new();
    for r in 0..rows * 576 / 32 {
        big.extend([0x00, 0x20]);
        big.extend((0..16).map(|i| (r * 7 + i) as u8));
    }
    let wq = BlockMatrix::from_gguf("q4_0", BlockFormat::Q4_0, &big, rows, 576)?;
    let xq = Array::from_slice(&vec![0.25f32; 576], &[1, 576])?;
    xq.eval()?;
    let before = schedstat();
    println!(
        "block matmul_t 1536x576 Q4_0, {threads} thread(s): {:.2} us per call",
        per_call(|| wq.matmul_t(&xq))? * 1e6
    );
    // Where the time went, per thread: on a CPU, and runnable but waiting for one (contention).
    for (name, run, wait) in schedstat() {
        if let Some((_, r0, w0)) = before.iter().find(|(n, _, _)| *n == name) {
            if run > r0 + 1_000_000 {
                println!(
                    "  thread {name}: {:.1} ms on CPU, {:.1} ms waiting for a CPU",
                    (run - r0) as f64 / 1e6,
                    (wait - w0) as f64 / 1e6
                );
            }
        }
    }
    let w3: Vec<&BlockMatrix> = vec![&w, &w, &w];
    println!(
        "matmul_t_many of 3, {threads} thread(s):     {:.2} us per call",
        per_call(|| block_quant::matmul_t_many(&w3, &x).map(|mut v| v.pop().unwrap()))? * 1e6
    );
    Ok(())
}
