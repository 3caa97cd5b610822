//! Block-quantized matrices against outside references: the `gguf` Python package's
//! dequantization (fixtures written by tests/fixtures/block_quant/gen.py) for the GGUF formats,
//! and MLX's own `dequantize` for the affine ones. Every SIMD path this CPU runs is compared with
//! the scalar path bit for bit, and 1, 2 and 3 threads with each other.
//!
//! Tolerance of `x W^T`. The kernels quantize each activation row per block of 32 to codes
//! `round(x / d_b)` with scale `d_b = max|x_b| / L`: L = 127 at `Precision::Int8`, 127 * 255 =
//! 32385 at `Precision::Int16` (the codes held as two int8 planes); the rest (integer dots,
//! scales applied per block in float) is exact up to float rounding. So per output
//!     |y - x.w| <= sum_b d_b (1/2 + e) |w_b|_1  +  float slack,
//! e covering `x * (L / max)` versus `x / d` and the rounding of `d` itself, which move a code
//! by about 3 L 2^-24: 2e-5 at Int8 (e = 1e-3) and 6e-3 at Int16 (e = 1e-2). The float slack
//! `2^-20 (n_blocks + 4) sum_k (|w_k| + max_k |w_k|) |x_k|` bounds the float32 accumulation (one
//! fma per block and per min term; the max |w| term covers the magnitude of a block's min or
//! offset, which can exceed its values) and, at Int16, the rounding of a block's integer dot
//! (up to 2^28) to float32, 2^-24 of it.

mod common;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use mlx_bridge::block_quant::{self, BlockFormat, BlockMatrix, Isa, Precision};
use mlx_bridge::quant::{self, QuantSpec};
use mlx_bridge::{Array, Dtype};

/// The ISA and thread count are process-wide: tests that run kernels hold this.
static GLOBAL: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    let guard = GLOBAL.lock().unwrap_or_else(|e| e.into_inner());
    block_quant::set_num_threads(2).unwrap();
    guard
}

struct Case {
    name: String,
    format: BlockFormat,
    rows: usize,
    cols: usize,
    m: usize,
    bytes: Vec<u8>,
    weights: Vec<f32>,
    x: Vec<f32>,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/block_quant")
}

fn parse_format(name: &str) -> BlockFormat {
    match name {
        "Q8_0" => BlockFormat::Q8_0,
        "Q4_0" => BlockFormat::Q4_0,
        "Q4_1" => BlockFormat::Q4_1,
        "Q5_0" => BlockFormat::Q5_0,
        "Q5_1" => BlockFormat::Q5_1,
        "Q4_K" => BlockFormat::Q4K,
        "Q5_K" => BlockFormat::Q5K,
        "Q6_K" => BlockFormat::Q6K,
        other => panic!("unknown format {other} in cases.txt"),
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn cases() -> Vec<Case> {
    let dir = fixtures_dir();
    let list = std::fs::read_to_string(dir.join("cases.txt")).expect("cases.txt");
    list.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let name = f[0].to_string();
            let data = std::fs::read(dir.join(format!("{name}.bin"))).expect("fixture");
            let header: Vec<usize> =
                data[..16].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
            let (rows, cols, m, nbytes) = (header[0], header[1], header[2], header[3]);
            assert_eq!((rows, cols, m), (f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap()));
            let bytes = data[16..16 + nbytes].to_vec();
            let w_end = 16 + nbytes + rows * cols * 4;
            let weights = floats(&data[16 + nbytes..w_end]);
            let x = floats(&data[w_end..w_end + m * cols * 4]);
            Case { name, format: parse_format(f[1]), rows, cols, m, bytes, weights, x }
        })
        .collect()
}

fn matrix(case: &Case) -> BlockMatrix {
    BlockMatrix::from_gguf(&case.name, case.format, &case.bytes, case.rows, case.cols).unwrap()
}

/// Deterministic activations with a few large entries, like hidden states.
fn activations(m: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut x = common::values(m * cols, seed);
    for (i, v) in x.iter_mut().enumerate() {
        if i % 61 == 7 {
            *v *= 9.0;
        }
    }
    x
}

fn run(w: &BlockMatrix, x: &[f32], m: usize, precision: Precision) -> Vec<f32> {
    let xa = Array::from_slice(x, &[m as i32, w.cols() as i32]).unwrap();
    w.matmul_t_with(&xa, precision).unwrap().to_vec().unwrap()
}

/// The levels L of a precision's codes and the allowance e for rounding `d` and `x * (L / max)`
/// (header comment).
fn levels(precision: Precision) -> (f64, f64) {
    match precision {
        Precision::Int8 => (127.0, 1e-3),
        Precision::Int16 => (32385.0, 1e-2),
    }
}

/// Checks y against x W^T in f64 within the bound derived in the header comment; returns the
/// worst |error| as a fraction of the bound's activation term and of the largest |x.w|.
#[allow(clippy::too_many_arguments)]
fn check_product(
    label: &str,
    y: &[f32],
    x: &[f32],
    w: &[f32],
    m: usize,
    rows: usize,
    cols: usize,
    precision: Precision,
) -> (f64, f64) {
    assert_eq!(y.len(), m * rows, "{label}: output size");
    let nb = cols / 32;
    let (levels, e) = levels(precision);
    let (mut worst_of_bound, mut worst_error, mut largest) = (0f64, 0f64, 0f64);
    for i in 0..m {
        let xr = &x[i * cols..(i + 1) * cols];
        let d: Vec<f64> =
            xr.chunks(32).map(|b| b.iter().fold(0f64, |a, &v| a.max((v as f64).abs())) / levels).collect();
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            let wmax = wr.iter().fold(0f64, |a, &v| a.max((v as f64).abs()));
            let (mut exact, mut act, mut mag) = (0f64, 0f64, 0f64);
            for k in 0..cols {
                exact += wr[k] as f64 * xr[k] as f64;
                act += (wr[k] as f64).abs() * d[k / 32] * (0.5 + e);
                mag += ((wr[k] as f64).abs() + wmax) * (xr[k] as f64).abs();
            }
            let bound = act + mag * (nb as f64 + 4.0) * 2f64.powi(-20);
            let got = y[i * rows + r] as f64;
            assert!(got.is_finite(), "{label}: y[{i}][{r}] = {got}");
            assert!(
                (got - exact).abs() <= bound,
                "{label}: y[{i}][{r}] = {got}, exact {exact}, |err| {} > bound {bound}",
                (got - exact).abs()
            );
            if act > 0.0 {
                worst_of_bound = worst_of_bound.max((got - exact).abs() / act);
            }
            worst_error = worst_error.max((got - exact).abs());
            largest = largest.max(exact.abs());
        }
    }
    (worst_of_bound, if largest > 0.0 { worst_error / largest } else { 0.0 })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn for_each_isa(mut f: impl FnMut(Isa)) {
    let before = block_quant::isa();
    for isa in block_quant::supported_isas() {
        block_quant::set_isa(isa).unwrap();
        f(isa);
    }
    block_quant::set_isa(before).unwrap();
}

#[test]
fn formats_map_from_ggml_type_ids() {
    // ggml.h: Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q4_K = 12, Q5_K = 13, Q6_K = 14.
    let ids =
        [(2, "Q4_0"), (3, "Q4_1"), (6, "Q5_0"), (7, "Q5_1"), (8, "Q8_0"), (12, "Q4_K"), (13, "Q5_K"), (14, "Q6_K")];
    for (id, name) in ids {
        assert_eq!(BlockFormat::from_ggml_type(id).map(BlockFormat::name), Some(name));
    }
    for id in [0, 1, 9, 10, 11, 15, 30] {
        assert_eq!(BlockFormat::from_ggml_type(id), None, "type {id}");
    }
    for f in BlockFormat::GGUF {
        assert_eq!(f.block_len() % 32, 0);
        assert!(f.block_bytes() > f.block_len() / 2);
    }
}

#[test]
fn fixtures_cover_every_gguf_format_and_stay_small() {
    let cases = cases();
    for format in BlockFormat::GGUF {
        assert!(cases.iter().any(|c| c.format == format), "no fixture for {format}");
    }
    let total: u64 = std::fs::read_dir(fixtures_dir()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(total < 1 << 20, "fixtures are {total} bytes");
}

#[test]
fn dequantize_and_gather_equal_gguf_py_exactly() {
    let _g = lock();
    for case in cases() {
        let w = matrix(&case);
        assert_eq!((w.rows(), w.cols(), w.format()), (case.rows, case.cols, case.format));
        let dense = w.dequantize().unwrap();
        assert_eq!(dense.shape(), vec![case.rows as i32, case.cols as i32]);
        assert_eq!(bits(&dense.to_vec::<f32>().unwrap()), bits(&case.weights), "{}: dequantize", case.name);

        let ids: Vec<i32> = [case.rows - 1, 0, case.rows / 2, case.rows - 1].iter().map(|&r| r as i32).collect();
        let got = w.gather_rows(&Array::from_slice(&ids, &[2, 2]).unwrap()).unwrap();
        assert_eq!(got.shape(), vec![2, 2, case.cols as i32]);
        let expected: Vec<f32> = ids
            .iter()
            .flat_map(|&r| case.weights[r as usize * case.cols..(r as usize + 1) * case.cols].to_vec())
            .collect();
        assert_eq!(bits(&got.to_vec::<f32>().unwrap()), bits(&expected), "{}: gather_rows", case.name);
    }
}

#[test]
fn matmul_t_matches_gguf_reference_within_the_activation_bound() {
    let _g = lock();
    for precision in Precision::ALL {
        // The worst error over every case, as a fraction of the largest |x.w| of its case.
        let mut worst = 0f64;
        for case in cases() {
            let w = matrix(&case);
            for_each_isa(|isa| {
                let label = format!("{} ({isa:?}, {precision:?}, fixture x, M={})", case.name, case.m);
                let y = run(&w, &case.x, case.m, precision);
                let (_, relative) =
                    check_product(&label, &y, &case.x, &case.weights, case.m, case.rows, case.cols, precision);
                worst = worst.max(relative);
                for (m, seed) in [(1, 11), (17, 12), (70, 13)] {
                    let x = activations(m, case.cols, seed);
                    let label = format!("{} ({isa:?}, {precision:?}, M={m})", case.name);
                    let y = run(&w, &x, m, precision);
                    let (_, relative) =
                        check_product(&label, &y, &x, &case.weights, m, case.rows, case.cols, precision);
                    worst = worst.max(relative);
                }
            });
        }
        eprintln!("{precision:?}: worst |y - x.w| is {:.3e} of the case's largest |x.w|", worst);
    }
}

#[test]
fn int16_activations_cut_the_error_by_two_orders_of_magnitude() {
    // The bound shrinks 255-fold; the measured error must follow (not merely stay within the
    // looser Int8 bound), on every fixture. Each case's worst error against its largest output.
    let _g = lock();
    for case in cases() {
        let w = matrix(&case);
        let x = activations(17, case.cols, 31);
        let worst =
            |p| check_product(&case.name, &run(&w, &x, 17, p), &x, &case.weights, 17, case.rows, case.cols, p).1;
        let (int8, int16) = (worst(Precision::Int8), worst(Precision::Int16));
        assert!(int16 * 100.0 < int8, "{}: Int16 error {int16:.3e} vs Int8 {int8:.3e}", case.name);
    }
}

#[test]
fn every_simd_path_is_bit_identical_to_scalar() {
    let _g = lock();
    let cases = cases();
    let mut compared = 0;
    for precision in Precision::ALL {
        for case in &cases {
            let w = matrix(case);
            for (m, seed) in [(1, 21), (3, 22), (17, 23), (70, 24)] {
                let x = activations(m, case.cols, seed);
                block_quant::set_isa(Isa::Scalar).unwrap();
                let reference = bits(&run(&w, &x, m, precision));
                for_each_isa(|isa| {
                    let got = bits(&run(&w, &x, m, precision));
                    assert!(got == reference, "{} M={m} {precision:?}: {isa:?} differs from scalar", case.name);
                    compared += 1;
                });
            }
        }
    }
    assert!(compared >= 2 * cases.len() * 4, "nothing compared");
}

fn affine(rows: i32, cols: i32, bits: i32, group: i32, dtype: Dtype, seed: u64) -> quant::Quantized {
    let (w, _) = common::array(&[rows, cols], seed);
    quant::quantize(&w.astype(dtype).unwrap(), QuantSpec::affine(group, bits).unwrap()).unwrap()
}

/// MLX's dequantization with scales and biases widened to f32: the affine values exactly (MLX's
/// own bf16 output would round them to bf16).
fn mlx_values(q: &quant::Quantized) -> Vec<f32> {
    let wide = quant::Quantized {
        weight: q.weight.clone(),
        scales: q.scales.astype(Dtype::F32).unwrap(),
        biases: Some(q.biases.as_ref().unwrap().astype(Dtype::F32).unwrap()),
        spec: q.spec,
    };
    wide.dequantize().unwrap().to_vec().unwrap()
}

#[test]
fn affine_matches_mlx_dequantize_and_the_reference_product() {
    let _g = lock();
    for bits_ in [4, 8] {
        for group in [32, 64] {
            for dtype in [Dtype::F32, Dtype::BF16, Dtype::F16] {
                for (rows, cols) in [(19, 128), (3, 64), (1, 192)] {
                    let q = affine(rows, cols, bits_, group, dtype, (rows * 7 + bits_ + group) as u64);
                    let label = format!("affine{bits_}-g{group} {dtype} {rows}x{cols}");
                    let w = BlockMatrix::from_affine(&label, &q).unwrap();
                    assert_eq!(w.format(), BlockFormat::Affine { bits: bits_ as u8, group: group as u16 });
                    let values = mlx_values(&q);
                    if dtype == Dtype::F32 {
                        let mlx_own: Vec<f32> = q.dequantize().unwrap().to_vec().unwrap();
                        assert_eq!(bits_of(&mlx_own), bits_of(&values), "{label}: widening changed f32 values");
                    }
                    assert_eq!(bits_of(&w.dequantize().unwrap().to_vec().unwrap()), bits_of(&values), "{label}");
                    let (rows, cols) = (rows as usize, cols as usize);
                    for (m, precision) in [1, 5, 33].into_iter().flat_map(|m| Precision::ALL.map(|p| (m, p))) {
                        let x = activations(m, cols, m as u64);
                        block_quant::set_isa(Isa::Scalar).unwrap();
                        let reference = bits_of(&run(&w, &x, m, precision));
                        for_each_isa(|isa| {
                            let y = run(&w, &x, m, precision);
                            let what = format!("{label} {isa:?} {precision:?} M={m}");
                            check_product(&what, &y, &x, &values, m, rows, cols, precision);
                            assert!(bits_of(&y) == reference, "{what}: differs from scalar");
                        });
                    }
                }
            }
        }
    }
}

fn bits_of(v: &[f32]) -> Vec<u32> {
    bits(v)
}

#[test]
fn thread_counts_give_identical_results() {
    let _g = lock();
    // 13 row groups of 16, the last partial: uneven shares for 2 and 3 threads.
    let q = affine(200, 256, 4, 32, Dtype::F32, 5);
    let a = BlockMatrix::from_affine("threads.a", &q).unwrap();
    let case = cases().into_iter().find(|c| c.format == BlockFormat::Q6K && c.rows == 17).unwrap();
    let b = matrix(&case);
    // Dequantizing 200 rows is shared out in chunks of 64 rows.
    let values = bits(&mlx_values(&q));
    for threads in [1, 2, 3] {
        block_quant::set_num_threads(threads).unwrap();
        assert!(bits(&a.dequantize().unwrap().to_vec().unwrap()) == values, "dequantize, {threads} threads");
        let ids: Vec<i32> = (0..150).map(|i| i * 37 % 200).collect();
        let rows: Vec<u32> =
            ids.iter().flat_map(|&r| values[r as usize * 256..(r as usize + 1) * 256].to_vec()).collect();
        let got = a.gather_rows(&Array::from_slice(&ids, &[150]).unwrap()).unwrap();
        assert!(bits(&got.to_vec().unwrap()) == rows, "gather_rows, {threads} threads");
    }
    for_each_isa(|isa| {
        for (m, precision) in [1, 9, 64].into_iter().flat_map(|m| Precision::ALL.map(|p| (m, p))) {
            let xa = Array::from_slice(&activations(m, 256, 3), &[m as i32, 256]).unwrap();
            let xb = Array::from_slice(&activations(m, 512, 4), &[m as i32, 512]).unwrap();
            let mut outputs = Vec::new();
            for threads in [1, 2, 3] {
                block_quant::set_num_threads(threads).unwrap();
                assert_eq!(block_quant::num_threads(), threads);
                let ya = bits(&a.matmul_t_with(&xa, precision).unwrap().to_vec().unwrap());
                let yb = bits(&b.matmul_t_with(&xb, precision).unwrap().to_vec().unwrap());
                outputs.push((ya, yb));
            }
            assert!(outputs.windows(2).all(|p| p[0] == p[1]), "{isa:?} {precision:?} M={m}: thread counts disagree");
        }
    });
    block_quant::set_num_threads(2).unwrap();
}

#[test]
fn matmul_t_many_mixes_formats_and_equals_separate_calls() {
    let _g = lock();
    let cases = cases();
    let q4k = matrix(cases.iter().find(|c| c.format == BlockFormat::Q4K && c.rows == 17).unwrap());
    // Each row of the 3x256 Q6_K case twice over: a 3x512 matrix.
    let c = cases.iter().find(|c| c.format == BlockFormat::Q6K && c.rows == 3).unwrap();
    let row = c.bytes.len() / 3;
    let wide: Vec<u8> = (0..3).flat_map(|r| c.bytes[r * row..(r + 1) * row].repeat(2)).collect();
    let q6k = BlockMatrix::from_gguf("q6k.wide", BlockFormat::Q6K, &wide, 3, 512).unwrap();
    let aff = BlockMatrix::from_affine("aff8", &affine(40, 512, 8, 64, Dtype::BF16, 9)).unwrap();
    for_each_isa(|isa| {
        for (m, precision) in [1, 4, 20].into_iter().flat_map(|m| Precision::ALL.map(|p| (m, p))) {
            let x = Array::from_slice(&activations(m, 512, 8), &[1, m as i32, 512]).unwrap();
            let many = block_quant::matmul_t_many_with(&[&q4k, &q6k, &aff], &x, precision).unwrap();
            assert_eq!(many.len(), 3);
            for (out, w) in many.iter().zip([&q4k, &q6k, &aff]) {
                assert_eq!(out.shape(), vec![1, m as i32, w.rows() as i32]);
                let alone = bits(&w.matmul_t_with(&x, precision).unwrap().to_vec().unwrap());
                assert!(
                    bits(&out.to_vec().unwrap()) == alone,
                    "{isa:?} {precision:?} M={m}: {} differs inside matmul_t_many",
                    w.name()
                );
            }
        }
    });
}

#[test]
fn vectors_empty_batches_and_laziness() {
    // Input dtypes and layouts: tests/block_quant_inputs.rs.
    let _g = lock();
    let case = cases().into_iter().find(|c| c.format == BlockFormat::Q4_1 && c.rows == 40).unwrap();
    let w = matrix(&case);
    let x = Array::from_slice(&activations(5, case.cols, 77), &[5, case.cols as i32]).unwrap();
    // A vector in gives a vector out; an empty batch gives an empty result.
    let v = Array::from_slice(&activations(1, case.cols, 78), &[case.cols as i32]).unwrap();
    assert_eq!(w.matmul_t(&v).unwrap().shape(), vec![case.rows as i32]);
    let empty = Array::zeros(&[0, case.cols as i32], Dtype::F32).unwrap();
    let y = w.matmul_t(&empty).unwrap();
    assert_eq!(y.shape(), vec![0, case.rows as i32]);
    assert!(y.to_vec::<f32>().unwrap().is_empty());
    // Nothing runs until evaluation, and the result composes with ordinary ops.
    let y = w.matmul_t(&x).unwrap().add_scalar(1.0).unwrap();
    assert!(mlx_bridge::pending_graph_nodes(&[&y]) >= 2);
    let plain = w.matmul_t(&x).unwrap().to_vec::<f32>().unwrap();
    let shifted = y.to_vec::<f32>().unwrap();
    assert!(plain.iter().zip(&shifted).all(|(a, b)| (a + 1.0).to_bits() == b.to_bits()));
}

fn err_text<T: std::fmt::Debug>(r: mlx_bridge::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn bad_input_is_an_error_naming_the_tensor() {
    let _g = lock();
    let case = cases().into_iter().find(|c| c.format == BlockFormat::Q4K && c.rows == 3).unwrap();
    let short = &case.bytes[..case.bytes.len() - 1];
    let msg = err_text(BlockMatrix::from_gguf("blk.0.attn_q.weight", BlockFormat::Q4K, short, 3, 256));
    assert!(msg.contains("blk.0.attn_q.weight") && msg.contains("truncated"), "{msg}");
    let long = [case.bytes.clone(), vec![0u8; 144]].concat();
    let msg = err_text(BlockMatrix::from_gguf("t.long", BlockFormat::Q4K, &long, 3, 256));
    assert!(msg.contains("t.long") && msg.contains("bytes"), "{msg}");
    let msg = err_text(BlockMatrix::from_gguf("t.cols", BlockFormat::Q4K, &case.bytes, 6, 128));
    assert!(msg.contains("t.cols") && msg.contains("multiple of the block length 256"), "{msg}");
    let msg = err_text(BlockMatrix::from_gguf("t.q8", BlockFormat::Q8_0, &[0u8; 34], 1, 33));
    assert!(msg.contains("t.q8") && msg.contains("multiple"), "{msg}");
    let msg = err_text(BlockMatrix::from_gguf("t.empty", BlockFormat::Q8_0, &[], 0, 32));
    assert!(msg.contains("t.empty"), "{msg}");
    let msg = err_text(BlockMatrix::from_gguf("t.aff", BlockFormat::Affine { bits: 4, group: 32 }, &[0u8; 16], 1, 32));
    assert!(msg.contains("t.aff") && msg.contains("from_affine"), "{msg}");

    for (bits_, group) in [(2, 32), (3, 64), (4, 128), (6, 32)] {
        let q = affine(4, 128, bits_, group, Dtype::F32, 1);
        let msg = err_text(BlockMatrix::from_affine("lm_head", &q));
        assert!(msg.contains("lm_head") && msg.contains("not supported"), "{bits_} bits, group {group}: {msg}");
    }

    let w = matrix(&case);
    let x = Array::from_slice(&activations(2, 128, 1), &[2, 128]).unwrap();
    let msg = err_text(w.matmul_t(&x));
    assert!(msg.contains(&case.name) && msg.contains("128 columns"), "{msg}");
    let xi = Array::from_slice(&[1i32; 256], &[1, 256]).unwrap();
    assert!(err_text(w.matmul_t(&xi)).contains("float"));
    let ids = Array::from_slice(&[0i32, 3], &[2]).unwrap();
    let msg = err_text(w.gather_rows(&ids).and_then(|a| a.to_vec::<f32>()));
    assert!(msg.contains(&case.name) && msg.contains("outside [0, 3)"), "{msg}");
    assert!(err_text(w.gather_rows(&Array::from_slice(&[0.5f32], &[1]).unwrap())).contains("integer ids"));

    assert!(err_text(block_quant::set_num_threads(0)).contains("at least 1"));
    for isa in Isa::ALL {
        if !block_quant::supported_isas().contains(&isa) {
            assert!(err_text(block_quant::set_isa(isa)).contains(isa.name()));
        }
    }
}
