//! Throughput of the block-quantized kernels against this machine's memory bandwidth and fp32
//! OpenBLAS sgemm.
//!
//!   cargo run --release -p mlx-bridge --example block_gemv_bench -- [--json PATH] [--isa avx2,avx512vnni]
//!       [--formats Q4_0,Q6_K,...] [--threads 1,2] [--precision int8,int16] [--quick]
//!       [--gemv-only | --gemm-only]
//!   OPENBLAS_CORETYPE=Haswell ... --isa avx2 --gemm-only   # how an AVX2-only machine compares
//!
//! GEMV (M = 1): weight bytes streamed per second, as the format stores them, for the shapes of
//! SmolLM2-135M and Gemma 3 270M, and that rate as a percentage of a STREAM-style copy
//! (1 GiB, best of several; read + written bytes per second) and of a streaming read (1 GiB
//! summed) with the same thread count. Matrices that fit the last-level cache exceed both. Each
//! timed step evaluates 8 products so graph construction is amortised as in a decode step.
//! GEMM (M = 512): GFLOP/s against `x @ W^T` in fp32 through MLX (OpenBLAS when linked).
//! Shapes whose columns are not a multiple of a format's block are skipped (as llama.cpp falls
//! back to another type for them).

use std::time::Instant;

use mlx_bridge::block_quant::{self, BlockFormat, BlockMatrix, Isa, Precision};
use mlx_bridge::quant::{self, QuantSpec};
use mlx_bridge::{Array, Dtype, random};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const GEMV_SHAPES: [(usize, usize); 7] =
    [(576, 576), (1536, 576), (576, 1536), (49152, 576), (640, 2048), (640, 1024), (262144, 640)];
const GEMM_SHAPES: [(usize, usize); 2] = [(1536, 576), (640, 2048)];
const GEMM_M: usize = 512;

fn all_formats() -> Vec<BlockFormat> {
    let mut f = BlockFormat::GGUF.to_vec();
    for bits in [4, 8] {
        for group in [32, 64] {
            f.push(BlockFormat::Affine { bits, group });
        }
    }
    f
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random GGUF blocks with plausible f16 scales (codes are uniformly random).
fn gguf_bytes(format: BlockFormat, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let (len, size) = (format.block_len(), format.block_bytes());
    let mut bytes: Vec<u8> = (0..rows * cols / len * size).map(|_| rng.next() as u8).collect();
    for block in bytes.chunks_exact_mut(size) {
        let half = |rng: &mut Rng, sign: u16| (0x1c00 + (rng.next() % 0x800) as u16) | sign;
        let mut put = |at: usize, v: u16| block[at..at + 2].copy_from_slice(&v.to_le_bytes());
        match format {
            BlockFormat::Q6K => put(208, half(rng, 0)),
            BlockFormat::Q4_1 | BlockFormat::Q5_1 | BlockFormat::Q4K | BlockFormat::Q5K => {
                put(0, half(rng, 0));
                put(2, half(rng, if format == BlockFormat::Q4K || format == BlockFormat::Q5K { 0 } else { 0x8000 }));
            }
            _ => put(0, half(rng, 0)),
        }
    }
    bytes
}

/// Bytes the format stores for the matrix (what a GGUF file holds; affine: f16 scales and biases).
fn stored_bytes(format: BlockFormat, rows: usize, cols: usize) -> usize {
    match format {
        BlockFormat::Affine { group, .. } => {
            rows * cols / format.block_len() * format.block_bytes() + rows * cols / group as usize * 4
        }
        _ => rows * cols / format.block_len() * format.block_bytes(),
    }
}

fn make_matrix(format: BlockFormat, rows: usize, cols: usize, rng: &mut Rng) -> Res<BlockMatrix> {
    let name = format!("bench.{}x{}", rows, cols);
    let m = match format {
        BlockFormat::Affine { bits, group } => {
            let w =
                random::normal(&[rows as i32, cols as i32], Dtype::F16, 0.0, 0.05, Some(&random::key(rng.next())?))?;
            let q = quant::quantize(&w, QuantSpec::affine(group as i32, bits as i32)?)?;
            BlockMatrix::from_affine(&name, &q)?
        }
        _ => BlockMatrix::from_gguf(&name, format, &gguf_bytes(format, rows, cols, rng), rows, cols)?,
    };
    m.packed().eval()?;
    Ok(m)
}

/// Best and median seconds per call of `f` (which runs `per` calls) over at least `min_s`.
fn time(per: usize, min_s: f64, mut f: impl FnMut() -> Res<()>) -> Res<(f64, f64)> {
    for _ in 0..2 {
        f()?;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed().as_secs_f64() < min_s && samples.len() < 200) {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed().as_secs_f64() / per as f64);
    }
    samples.sort_by(f64::total_cmp);
    Ok((samples[0], samples[samples.len() / 2]))
}

/// STREAM-style copy: bytes read + written per second, best of `reps`, `threads` halves at once.
fn copy_bandwidth(bytes: usize, threads: usize, reps: usize) -> f64 {
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    let chunk = bytes.div_ceil(threads);
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        std::thread::scope(|s| {
            for (d, sc) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                s.spawn(move || d.copy_from_slice(sc));
            }
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * bytes as f64 / best
}

/// Streaming read: bytes summed per second, best of `reps`, `threads` parts at once.
fn read_bandwidth(bytes: usize, threads: usize, reps: usize) -> f64 {
    let src: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let chunk = src.len().div_ceil(threads);
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let parts: Vec<_> = src
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        // Eight independent sums so the adds do not limit the stream.
                        let mut acc = [0u64; 8];
                        for c in part.chunks_exact(8) {
                            for (a, v) in acc.iter_mut().zip(c) {
                                *a = a.wrapping_add(*v);
                            }
                        }
                        acc.iter().fold(0u64, |a, &b| a.wrapping_add(b))
                    })
                })
                .collect();
            parts.into_iter().map(|p| p.join().unwrap()).fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(total);
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct Args {
    json: Option<String>,
    isas: Vec<Isa>,
    formats: Vec<BlockFormat>,
    threads: Vec<usize>,
    precisions: Vec<Precision>,
    quick: bool,
    gemv: bool,
    gemm: bool,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        json: None,
        isas: block_quant::supported_isas().into_iter().filter(|&i| i != Isa::Scalar).collect(),
        formats: all_formats(),
        threads: vec![1, 2],
        precisions: Precision::ALL.to_vec(),
        quick: false,
        gemv: true,
        gemm: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--json" => args.json = Some(value()?),
            "--isa" => {
                let v = value()?;
                args.isas = v
                    .split(',')
                    .map(|n| Isa::ALL.into_iter().find(|i| i.name() == n).ok_or_else(|| format!("unknown ISA {n}")))
                    .collect::<Result<_, _>>()?;
            }
            "--formats" => {
                let v = value()?;
                args.formats = v
                    .split(',')
                    .map(|n| {
                        all_formats().into_iter().find(|f| f.name() == n).ok_or_else(|| format!("unknown format {n}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--threads" => args.threads = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--precision" => {
                let v = value()?;
                args.precisions = v
                    .split(',')
                    .map(|n| Precision::parse(n).ok_or_else(|| format!("unknown precision {n}")))
                    .collect::<Result<_, _>>()?;
            }
            "--quick" => args.quick = true,
            "--gemv-only" => args.gemm = false,
            "--gemm-only" => args.gemv = false,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(args)
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let min_s = if args.quick { 0.1 } else { 0.4 };
    let mut rng = Rng(0x9e3779b97f4a7c15);
    println!(
        "cpu: {} | load: {} | mlx {} | blas {}",
        cpu_model(),
        load_average(),
        mlx_bridge::mlx_version(),
        mlx_bridge::build_info().blas
    );

    let mut bandwidth = serde_json::Map::new();
    let mut bw: std::collections::HashMap<usize, (f64, f64)> = std::collections::HashMap::new();
    for &t in &args.threads {
        let b = copy_bandwidth(1 << 30, t, if args.quick { 3 } else { 6 });
        let r = read_bandwidth(1 << 30, t, if args.quick { 3 } else { 6 });
        println!(
            "{t} thread(s): copy {:.1} GB/s (1 GiB, read + write counted), read {:.1} GB/s (1 GiB summed)",
            b / 1e9,
            r / 1e9
        );
        bandwidth.insert(t.to_string(), json!({"copy": b / 1e9, "read": r / 1e9}));
        bw.insert(t, (b, r));
    }

    let mut gemv = Vec::new();
    println!("\nGEMV M=1: GB/s of stored weight bytes (% of copy, % of read bandwidth), best of runs");
    for &format in args.formats.iter().filter(|_| args.gemv) {
        for &(rows, cols) in &GEMV_SHAPES {
            if cols % format.block_len() != 0 {
                continue;
            }
            let w = make_matrix(format, rows, cols, &mut rng)?;
            let x = random::normal(&[1, cols as i32], Dtype::F32, 0.0, 1.0, Some(&random::key(1)?))?;
            x.eval()?;
            let bytes = stored_bytes(format, rows, cols) as f64;
            let mut line = format!("{:>12} {:>6}x{:<5}", format.name(), rows, cols);
            for (&isa, &p) in args.isas.iter().flat_map(|i| args.precisions.iter().map(move |p| (i, p))) {
                block_quant::set_isa(isa)?;
                for &t in &args.threads {
                    block_quant::set_num_threads(t)?;
                    let per = 8;
                    let (best, median) = time(per, min_s, || {
                        let ys: Vec<Array> = (0..per).map(|_| w.matmul_t_with(&x, p)).collect::<Result<_, _>>()?;
                        mlx_bridge::eval(&ys.iter().collect::<Vec<_>>())?;
                        Ok(())
                    })?;
                    let gbps = bytes / best / 1e9;
                    let pct = 100.0 * bytes / best / bw[&t].0;
                    let pct_read = 100.0 * bytes / best / bw[&t].1;
                    let what = format!("{}/{}", isa.name(), p.name());
                    line += &format!(" | {what} {t}t {gbps:6.1} ({pct:3.0}%, {pct_read:3.0}%)");
                    gemv.push(json!({"format": format.name(), "rows": rows, "cols": cols, "isa": isa.name(),
                        "precision": p.name(), "threads": t, "best_us": best * 1e6, "median_us": median * 1e6,
                        "gb_per_s": gbps, "pct_of_copy_bandwidth": pct, "pct_of_read_bandwidth": pct_read}));
                }
            }
            println!("{line}");
        }
    }

    let mut gemm = Vec::new();
    let threads = *args.threads.iter().max().unwrap_or(&2);
    block_quant::set_num_threads(threads)?;
    println!("\nGEMM M={GEMM_M}, {threads} threads: GFLOP/s vs fp32 sgemm through MLX");
    for &(rows, cols) in GEMM_SHAPES.iter().filter(|_| args.gemm) {
        let key = random::key(7)?;
        let x = random::normal(&[GEMM_M as i32, cols as i32], Dtype::F32, 0.0, 1.0, Some(&key))?;
        let wd = random::normal(&[rows as i32, cols as i32], Dtype::F32, 0.0, 0.05, Some(&key))?.t()?.contiguous()?;
        mlx_bridge::eval(&[&x, &wd])?;
        let flops = 2.0 * (GEMM_M * rows * cols) as f64;
        let (sbest, _) = time(1, min_s, || Ok(x.matmul(&wd)?.eval()?))?;
        let sgemm = flops / sbest / 1e9;
        println!("{:>12} {:>6}x{:<5} sgemm {:6.1}", "fp32", rows, cols, sgemm);
        for &format in &args.formats {
            if cols % format.block_len() != 0 {
                continue;
            }
            let w = make_matrix(format, rows, cols, &mut rng)?;
            let mut line = format!("{:>12} {:>6}x{:<5}", format.name(), rows, cols);
            for (&isa, &p) in args.isas.iter().flat_map(|i| args.precisions.iter().map(move |p| (i, p))) {
                block_quant::set_isa(isa)?;
                let (best, _) = time(1, min_s, || Ok(w.matmul_t_with(&x, p)?.eval()?))?;
                let gf = flops / best / 1e9;
                line += &format!(" | {}/{} {:6.1} ({:.2}x sgemm)", isa.name(), p.name(), gf, gf / sgemm);
                gemm.push(json!({"format": format.name(), "rows": rows, "cols": cols, "m": GEMM_M, "isa": isa.name(),
                    "precision": p.name(), "threads": threads, "gflops": gf, "sgemm_gflops": sgemm,
                    "speedup_vs_sgemm": gf / sgemm}));
            }
            println!("{line}");
        }
    }

    if let Some(path) = args.json {
        let report: Value = json!({
            "machine": {"cpu_model": cpu_model(), "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                "load_average": load_average()},
            "mlx_version": mlx_bridge::mlx_version(),
            "blas": mlx_bridge::build_info().blas,
            "isas": args.isas.iter().map(|i| i.name()).collect::<Vec<_>>(),
            "precisions": args.precisions.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "copy_bandwidth_gb_per_s": bandwidth,
            "gemv": gemv,
            "gemm": gemm,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        println!("\nwrote {path}");
    }
    Ok(())
}
