//! Square matmul throughput through MLX, to see which BLAS the CPU build really uses.
//!
//!   cargo run --release -p mlx-bridge --example gemm -- [N=2048] [REPEATS=5] [DTYPES=float32,bfloat16]
//!   cargo run --release -p mlx-bridge --no-default-features --example gemm   # without OpenBLAS
//!
//! Prints one line per dtype: N, median and best GFLOP/s over REPEATS timed products after one
//! warm-up, plus the BLAS library mapped into the process.

use std::time::Instant;

use mlx_bridge::{Dtype, random};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: i32 = args.first().map_or(Ok(2048), |s| s.parse())?;
    let repeats: usize = args.get(1).map_or(Ok(5), |s| s.parse())?;
    let dtypes = args.get(2).map_or("float32,bfloat16", String::as_str);
    let flops = 2.0 * (n as f64).powi(3);
    println!(
        "mlx {} | build blas: {} | mapped: {} | device: {:?}",
        mlx_bridge::mlx_version(),
        mlx_bridge::build_info().blas,
        mapped_blas(),
        mlx_bridge::device::default_device().kind
    );
    for name in dtypes.split(',') {
        let dtype = Dtype::parse(name).ok_or_else(|| format!("unknown dtype {name}"))?;
        let key = random::key(0)?;
        let a = random::normal(&[n, n], dtype, 0.0, 1.0, Some(&key))?;
        let b = random::normal(
            &[n, n],
            dtype,
            0.0,
            1.0,
            Some(&random::split(&key, 2)?.slice_axis(0, 1, 2)?.squeeze(&[0])?),
        )?;
        mlx_bridge::eval(&[&a, &b])?;
        a.matmul(&b)?.eval()?;
        let mut rates: Vec<f64> = (0..repeats)
            .map(|_| {
                let start = Instant::now();
                a.matmul(&b).and_then(|c| c.eval()).map(|_| flops / start.elapsed().as_secs_f64() / 1e9)
            })
            .collect::<Result<_, _>>()?;
        rates.sort_by(f64::total_cmp);
        println!(
            "{name:>9} N={n} median {:.1} GFLOP/s, best {:.1} GFLOP/s ({repeats} runs)",
            rates[rates.len() / 2],
            rates[rates.len() - 1]
        );
    }
    Ok(())
}

/// The BLAS shared objects mapped into this process (Linux), e.g. libopenblas or the wheel's libblas.
fn mapped_blas() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut libs: Vec<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter_map(|path| path.rsplit('/').next())
        .filter(|file| file.contains("blas"))
        .collect();
    libs.dedup();
    if libs.is_empty() { "none".into() } else { libs.join(", ") }
}
