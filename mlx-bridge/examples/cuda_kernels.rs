//! mlxcel's CUDA decode kernels (`src/cpp/cuda_fast.cc`) against MLX's own ops on the GPU: first
//! correctness (every shape class the models use, against MLX's result on the same inputs), then
//! speed. Needs an NVIDIA GPU with MLX's CUDA backend (`libmlx.so` of the mlx-cuda wheel first on
//! the library path); exits non-zero on a mismatch.
//!
//!   cargo run --release -p mlx-bridge --no-default-features --example cuda_kernels [-- --json OUT]
//!
//! `--only routed` runs the routed stream mixes', the residual norms', the formed-row products' and
//! the norm-then-RoPE checks alone; `--only gemv` the one-row products (formed-row checks, the
//! copy bandwidth, the checks and timings of the default kernel and its variants). Run with
//! `MLX_ENABLE_TF32=0`: their float32 references multiply several rows through cuBLAS, which TF32
//! rounds to ~1e-3.
//!
//! Speed: weight (or KV) bytes read per second, the median of 15 timed evaluations (each of 20
//! independent calls) after 3 warm-ups.

#[path = "gpu_checks/mod.rs"]
mod gpu_checks;

use std::time::Instant;

use gpu_checks::{Failure, normal, relative_error};
use mlx_bridge::fast::{self, AttentionMask, NormWeight, RopeOffset, StreamRouter};
use mlx_bridge::fused;
use mlx_bridge::quant::{self, QuantSpec, RowInput};
use mlx_bridge::{Array, Dtype};

/// The one-row products' prefetching variants under A/B: rows per warp, L2 distance in turns.
const PREFETCH: [(i32, i32); 4] = [(2, 0), (4, 0), (2, 8), (4, 4)];

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

/// Prints one check of `ours` against `theirs` (`None`: the kernel did not take the call, a
/// failure) and counts a failure where the relative error exceeds `tolerance`.
fn check(
    failures: &mut usize,
    name: &str,
    ours: Option<&Array>,
    theirs: &Array,
    tolerance: f32,
) -> Result<(), Failure> {
    let Some(ours) = ours else {
        *failures += 1;
        println!("{name}: the kernel did not take the call FAIL");
        return Ok(());
    };
    let error =
        relative_error(&ours.astype(Dtype::F32)?.to_vec::<f32>()?, &theirs.astype(Dtype::F32)?.to_vec::<f32>()?);
    let ok = error <= tolerance;
    *failures += usize::from(!ok);
    println!("{name}: relative error {error:.2e} {}", if ok { "ok" } else { "FAIL" });
    Ok(())
}

/// The routed mixes' inputs at one shape: streams `[N, 1, rows, D]`, the active stream's
/// replacement `h` `[1, rows, D]`, the router's norm weight and weight, both coefficient maps.
struct RoutedInputs {
    x: Array,
    h: Array,
    norm_weight: Array,
    router: Array,
    prediction: Array,
    correction: Array,
    /// 1 (the norm's weight carries the 1/D) or D (E4B's 2560, not a power of two).
    divisor: f32,
}

impl RoutedInputs {
    fn new(n: i32, rows: i32, d: i32, dtype: Dtype, divisor: f32) -> Result<RoutedInputs, Failure> {
        let inputs = RoutedInputs {
            x: normal(&[n, 1, rows, d], 7, dtype)?,
            h: normal(&[1, rows, d], 8, dtype)?,
            norm_weight: normal(&[d], 9, dtype)?,
            // Dot products of a few units, so tanh is neither saturated nor linear.
            router: normal(&[n, d], 10, Dtype::F32)?
                .mul_scalar(2.0 * divisor as f64 / (d as f64).sqrt())?
                .astype(dtype)?,
            prediction: normal(&[n * n, n], 11, Dtype::F32)?.mul_scalar(0.5)?,
            correction: normal(&[n, n], 12, Dtype::F32)?.mul_scalar(0.5)?,
            divisor,
        };
        let all = [&inputs.x, &inputs.h, &inputs.norm_weight, &inputs.router, &inputs.prediction, &inputs.correction];
        mlx_bridge::eval(&all)?;
        Ok(inputs)
    }

    fn router(&self) -> StreamRouter<'_> {
        StreamRouter { norm_weight: &self.norm_weight, eps: 1e-6, divisor: self.divisor, router: &self.router }
    }

    /// `tanh(router @ rms_norm(row))` in float32, `[1, rows, N]`.
    fn route(&self, row: &Array) -> Result<Array, Failure> {
        let f32 = |a: &Array| a.astype(Dtype::F32);
        let normed =
            fast::rms_norm(&f32(row)?, Some(&f32(&self.norm_weight)?), 1e-6)?.div_scalar(self.divisor as f64)?;
        Ok(normed.matmul(&f32(&self.router)?.t()?)?.tanh()?)
    }

    /// The mix in float32 ops: `x[i] + sum_j M[i][j] x[j]`.
    fn mix_reference(&self, active: i32) -> Result<Array, Failure> {
        let n = self.x.dim(0)?;
        let x = self.x.astype(Dtype::F32)?;
        let m = self.route(&x.slice_axis(0, active, active + 1)?.squeeze(&[0])?)?;
        let rows = m.dim(1)?;
        // [1, rows, N*N] -> [N_i, 1, rows, N_j]
        let coefs = m.matmul(&self.prediction.t()?)?.reshape(&[1, rows, n, n])?.transpose(&[2, 0, 1, 3])?;
        let mut y = x.clone();
        for j in 0..n {
            y = y.add(&coefs.slice_axis(3, j, j + 1)?.mul(&x.slice_axis(0, j, j + 1)?)?)?;
        }
        Ok(y)
    }

    /// The correction in float32 ops: `x[i] + (1 + c)[i] (h - x[active])`.
    fn correction_reference(&self, active: i32) -> Result<Array, Failure> {
        let x = self.x.astype(Dtype::F32)?;
        let h = self.h.astype(Dtype::F32)?;
        let gain = self.route(&h)?.matmul(&self.correction.t()?)?.add_scalar(1.0)?; // [1, rows, N]
        let gain = gain.transpose(&[2, 0, 1])?.expand_dims(&[3])?; // [N, 1, rows, 1]
        let innovation = h.expand_dims(&[0])?.sub(&x.slice_axis(0, active, active + 1)?)?;
        Ok(x.add(&gain.mul(&innovation)?)?)
    }
}

/// The routed stream mixes against float32 ops on the same inputs: decode rows (1), a prefill
/// chunk's (7), E2B's hidden size and E4B's (whose norm output is divided by D); both dtypes.
fn check_routed(failures: &mut usize) -> Result<(), Failure> {
    fast::set_cuda_kernels(true);
    for dtype in [Dtype::BF16, Dtype::F32] {
        // bf16: the norm's and the router's outputs and the result are rounded (~2^-8 each);
        // float32: accumulation order only.
        let tolerance = if dtype == Dtype::BF16 { 1.5e-2 } else { 1e-5 };
        for (n, rows, d, divisor) in [(4, 1, 2048, 1.0), (4, 7, 2048, 1.0), (4, 1, 2560, 2560.0), (2, 3, 512, 1.0)] {
            let inputs = RoutedInputs::new(n, rows, d, dtype, divisor)?;
            let active = if n == 4 { 0 } else { 1 }; // E2B's is 0; another checks the indexing
            for (name, ours, reference) in [
                (
                    "mix",
                    fast::routed_stream_mix(&inputs.x, inputs.router(), &inputs.prediction, active as usize)?,
                    inputs.mix_reference(active)?,
                ),
                (
                    "correction",
                    fast::routed_stream_correction(
                        &inputs.x,
                        &inputs.h,
                        inputs.router(),
                        &inputs.correction,
                        active as usize,
                    )?,
                    inputs.correction_reference(active)?,
                ),
            ] {
                let Some(ours) = ours else {
                    *failures += 1;
                    println!(
                        "routed {name} {dtype:?} N={n} rows={rows} D={d}/{divisor}: the kernel did not take the call FAIL"
                    );
                    continue;
                };
                let ours = ours.astype(Dtype::F32)?.to_vec::<f32>()?;
                let error = relative_error(&ours, &reference.to_vec::<f32>()?);
                let ok = error <= tolerance;
                *failures += usize::from(!ok);
                println!(
                    "routed {name} {dtype:?} N={n} rows={rows} D={d}/{divisor}: relative error {error:.2e} {}",
                    if ok { "ok" } else { "FAIL" }
                );
            }
        }
    }
    fast::set_cuda_kernels(false);
    Ok(())
}

/// The residual norms against MLX's ops in the same dtype on the same inputs (mlxcel's kernels
/// off): decode rows, a prefill chunk's, E2B's and E4B's hidden sizes; the kernels round each
/// step as the ops do, so only the order of the sums of squares differs.
fn check_residual_norms(failures: &mut usize) -> Result<(), Failure> {
    let eps = 1e-6;
    for dtype in [Dtype::BF16, Dtype::F32] {
        // bf16: an inverse norm a few float ulps apart can flip a rounding (2^-8 relative).
        let tolerance = if dtype == Dtype::BF16 { 1e-2 } else { 1e-5 };
        for (rows, d) in [(1, 2048), (7, 2048), (1, 2560), (3, 512)] {
            let [x, a, b] = [11, 12, 13].map(|seed| normal(&[1, rows, d], seed, dtype));
            let [w, w2] = [14, 15].map(|seed| normal(&[d], seed, dtype));
            let (x, a, b, w, w2) = (x?, a?, b?, w?, w2?);
            let norm = NormWeight { weight: &w, eps };
            let next = NormWeight { weight: &w2, eps };
            let scale = std::f32::consts::FRAC_1_SQRT_2;
            let add = |kernels: bool| -> Result<Option<Array>, Failure> {
                fast::set_cuda_kernels(kernels);
                Ok(if kernels {
                    fast::rms_norm_add(&x, norm, &a)?
                } else {
                    Some(a.add(&fast::rms_norm(&x, Some(&w), eps)?)?)
                })
            };
            let then_norm = |kernels: bool| -> Result<Option<Vec<Array>>, Failure> {
                fast::set_cuda_kernels(kernels);
                Ok(if kernels {
                    fast::rms_norm_add_then_norm(&x, norm, &a, &b, scale, next)?.map(|(h, n)| vec![h, n])
                } else {
                    let h = a.add(&fast::rms_norm(&x, Some(&w), eps)?)?.add(&b)?.mul_scalar(scale as f64)?;
                    let n = fast::rms_norm(&h, Some(&w2), eps)?;
                    Some(vec![h, n])
                })
            };
            type Outputs = Option<Vec<Array>>;
            let cases: [(&str, Outputs, Outputs); 2] = [
                ("rms_norm_add", add(true)?.map(|y| vec![y]), add(false)?.map(|y| vec![y])),
                ("rms_norm_add_then_norm", then_norm(true)?, then_norm(false)?),
            ];
            fast::set_cuda_kernels(false);
            for (name, ours, theirs) in cases {
                let theirs = theirs.ok_or("MLX's ops gave no result")?;
                for (i, t) in theirs.iter().enumerate() {
                    let label = format!("{name} {dtype:?} rows={rows} D={d} output {i}");
                    check(failures, &label, ours.as_ref().map(|o| &o[i]), t, tolerance)?;
                }
            }
        }
    }
    Ok(())
}

/// The one-row products whose row the kernel forms as it reads it (`x * scale`, `gelu_tanh(g) *
/// u`, `silu(g) * u`) against MLX's ops for the row and its product (mlxcel's kernels off), in
/// bf16 at Gemma 3n E2B's shapes: the per-layer gate (2048 -> 256, scaled), its projection (256
/// -> 2048, gated) and the MLP's down product (8192 -> 2048, gated).
fn check_formed_rows(failures: &mut usize) -> Result<(), Failure> {
    // bf16 rounding of the output and of the formed row (one rounding where the ops round each step).
    let tolerance = 1.5e-2;
    for (n, k, input) in [
        (256, 2048, RowInput::Scaled),
        (2048, 256, RowInput::GeluTanhGated),
        (2048, 8192, RowInput::GeluTanhGated),
        (2048, 8192, RowInput::SiluGated),
    ] {
        for bits in [4, 8] {
            let w = normal(&[n, k], 21, Dtype::BF16)?;
            let q = quant::quantize(&w, QuantSpec::affine(64, bits)?)?;
            let x = normal(&[1, 1, k], 22, Dtype::BF16)?;
            let u = match input {
                RowInput::Scaled => normal(&[k], 23, Dtype::BF16)?,
                _ => normal(&[1, 1, k], 23, Dtype::BF16)?,
            };
            mlx_bridge::eval(&[&q.weight, &q.scales, &x, &u])?;
            // The default kernel (0) and the prefetching variants.
            let mut ours = Vec::new();
            fast::set_cuda_kernels(true);
            for (rows, l2) in [(0, 0)].into_iter().chain(PREFETCH) {
                fast::set_cuda_gemv_prefetch(rows, l2);
                ours.push((rows, l2, q.matmul_t_of(input, &x, &u)?));
            }
            fast::set_cuda_gemv_prefetch(0, 0);
            fast::set_cuda_kernels(false);
            let row = match input {
                RowInput::Scaled => x.mul(&u)?,
                RowInput::GeluTanhGated => fused::gelu_tanh_gate(&x, &u)?,
                RowInput::SiluGated => fused::silu_gate(&x, &u)?,
            };
            let theirs = q.matmul(&row, true)?;
            for (rows, l2, ours) in &ours {
                let name = match rows {
                    0 => format!("formed row {input:?} {n}x{k} {bits}-bit"),
                    _ => format!("formed row {input:?} {n}x{k} {bits}-bit, prefetch, {rows} rows, L2 {l2}"),
                };
                check(failures, &name, ours.as_ref(), &theirs, tolerance)?;
            }
        }
    }
    Ok(())
}

/// RMS norm then RoPE over one position's heads against MLX's norm and rope (mlxcel's kernels
/// off): Gemma 3n's query and key heads (D 256, bases 10k and 1M, one offset) and a batch of
/// rows at their own offsets, in bf16 and float32, at a position past 8k where the angles are large.
fn check_norm_rope(failures: &mut usize) -> Result<(), Failure> {
    let eps = 1e-6;
    for dtype in [Dtype::BF16, Dtype::F32] {
        let tolerance = if dtype == Dtype::BF16 { 1e-2 } else { 1e-5 };
        for (b, h, d, base, offsets) in [
            (1, 8, 256, 10_000.0, vec![5]),
            (1, 2, 256, 1_000_000.0, vec![8_195]),
            (3, 4, 128, 10_000.0, vec![0, 17, 300]),
        ] {
            let x = normal(&[b, h, 1, d], 31, dtype)?;
            let w = normal(&[d], 32, dtype)?;
            let rope = fast::Rope::new(d, base);
            let offset_array = Array::from_slice(&offsets, &[b])?;
            let offset = if b == 1 { RopeOffset::Shared(offsets[0]) } else { RopeOffset::PerRow(&offset_array) };
            fast::set_cuda_kernels(true);
            let ours = rope.apply_after_rms_norm(&x, NormWeight { weight: &w, eps }, offset)?;
            fast::set_cuda_kernels(false);
            let normed = fast::rms_norm(&x, Some(&w), eps)?;
            let theirs = match offset {
                RopeOffset::Shared(o) => rope.apply(&normed, o)?,
                RopeOffset::PerRow(array) => rope.apply_dynamic(&normed, array)?,
            };
            let name = format!("rms_norm_rope {dtype:?} B={b} H={h} D={d} base={base} offsets={offsets:?}");
            check(failures, &name, ours.as_ref(), &theirs, tolerance)?;
        }
    }
    Ok(())
}

fn main() -> Result<(), Failure> {
    let json_out = std::env::args().skip_while(|a| a != "--json").nth(1);
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let mut failures = 0;
    let mut report = Vec::new();
    // bf16 rounding of the output: ~2^-8 relative, plus accumulation order.
    let tolerance = 1.5e-2;

    let gemv_only = only.as_deref() == Some("gemv");
    if !gemv_only {
        check_routed(&mut failures)?;
        check_residual_norms(&mut failures)?;
    }
    check_formed_rows(&mut failures)?;
    if !gemv_only {
        check_norm_rope(&mut failures)?;
    }
    if only.as_deref() == Some("routed") {
        return finish(failures, json_out, report);
    }

    // The bandwidth to measure against: a STREAM-style copy (x + 1 over 2 GiB of bf16: read + write).
    let big = normal(&[1 << 30], 6, Dtype::BF16)?;
    big.eval()?;
    let copy = time(&|| Ok(big.add_scalar(1.0)?))?;
    let copy_tb = 2.0 * big.nbytes() as f64 / copy / 1e12;
    println!("copy bandwidth: {copy_tb:.2} TB/s (read + write)");
    report.push(format!(r#"{{"kernel":"copy","tb_per_s":{copy_tb:.3}}}"#));
    drop(big);

    if !gemv_only {
        check_attention(&mut failures, &mut report, tolerance)?;
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
            // The prefetching variants against MLX's product, and all against the float32 product
            // of the dequantized weight (the output's bf16 rounding, ~4e-3, bounds each).
            let reference = x.astype(Dtype::F32)?.matmul(&q.dequantize()?.astype(Dtype::F32)?.transpose(&[1, 0])?)?;
            let reference = reference.reshape(&[-1])?.to_vec::<f32>()?;
            println!(
                "  against float32: ours {:.2e}, MLX {:.2e}",
                relative_error(&ours, &reference),
                relative_error(&theirs, &reference)
            );
            let theirs_array = Array::from_slice(&theirs, &[theirs.len() as i32])?;
            for (rows, l2) in PREFETCH {
                fast::set_cuda_kernels(true);
                fast::set_cuda_gemv_prefetch(rows, l2);
                let variant = run()?.reshape(&[-1])?;
                fast::set_cuda_gemv_prefetch(0, 0);
                fast::set_cuda_kernels(false);
                let name = format!("gemv {n}x{k} {bits}-bit g{group} prefetch, {rows} rows, L2 {l2}");
                check(&mut failures, &name, Some(&variant), &theirs_array, tolerance)?;
                let variant = variant.astype(Dtype::F32)?.to_vec::<f32>()?;
                println!("  against float32: {:.2e}", relative_error(&variant, &reference));
            }
            if group == 64 {
                let bytes = (q.weight.nbytes() + q.scales.nbytes() * 2) as f64;
                fast::set_cuda_kernels(true);
                let ours = time(&run)?;
                for (rows, l2) in PREFETCH {
                    fast::set_cuda_gemv_prefetch(rows, l2);
                    let seconds = time(&run)?;
                    println!(
                        "  prefetch, {rows} rows, L2 {l2}: {:.1} us ({:.2} TB/s)",
                        seconds * 1e6,
                        bytes / seconds / 1e12
                    );
                    report.push(format!(
                        r#"{{"kernel":"affine_gemv_prefetch","rows":{rows},"l2":{l2},"N":{n},"K":{k},"bits":{bits},"group":{group},"us":{:.2},"tb_per_s":{:.3}}}"#,
                        seconds * 1e6,
                        bytes / seconds / 1e12
                    ));
                }
                fast::set_cuda_gemv_prefetch(0, 0);
                fast::set_cuda_kernels(false);
                let theirs = time(&run)?;
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
                // So far: a variant that brings the GPU down leaves the shapes before it.
                save(json_out.as_deref(), &report)?;
            }
        }
    }
    finish(failures, json_out, report)
}

/// Single-position attention against MLX's, timed at 4096 positions.
fn check_attention(failures: &mut usize, report: &mut Vec<String>, tolerance: f32) -> Result<(), Failure> {
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
            *failures += usize::from(!ok);
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

    Ok(())
}

fn save(json_out: Option<&str>, report: &[String]) -> Result<(), Failure> {
    if let Some(path) = json_out {
        std::fs::write(path, format!("[\n{}\n]\n", report.join(",\n")))?;
    }
    Ok(())
}

fn finish(failures: usize, json_out: Option<String>, report: Vec<String>) -> Result<(), Failure> {
    save(json_out.as_deref(), &report)?;
    if failures > 0 {
        return Err(format!("{failures} kernel checks failed").into());
    }
    println!("all kernel checks passed");
    Ok(())
}
