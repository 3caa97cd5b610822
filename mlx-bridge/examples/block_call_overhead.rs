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
    let w3: Vec<&BlockMatrix> = vec![&w, &w, &w];
    println!(
        "matmul_t_many of 3, {threads} thread(s):     {:.2} us per call",
        per_call(|| block_quant::matmul_t_many(&w3, &x).map(|mut v| v.pop().unwrap()))? * 1e6
    );
    Ok(())
}
