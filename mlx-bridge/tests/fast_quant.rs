//! `fast` kernels, quantization and fused blocks against the formulas they implement, in f64.

mod common;

use common::{array, assert_close, matmul_ref, to_f64};
use mlx_bridge::fast::{self, AttentionMask, Rope};
use mlx_bridge::quant::{self, QuantMode, QuantSpec};
use mlx_bridge::{Array, Dtype, fused};

#[test]
fn rms_norm_matches_the_formula_with_and_without_weight() {
    let (x, xv) = array(&[3, 16], 1);
    let (w, wv) = array(&[16], 2);
    let wv = &wv;
    let eps = 1e-5;
    let reference = |weighted: bool| -> Vec<f64> {
        xv.chunks(16)
            .flat_map(|row| {
                let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / 16.0;
                let inv = 1.0 / (ms + eps).sqrt();
                row.iter().enumerate().map(move |(i, &v)| v as f64 * inv * if weighted { wv[i] as f64 } else { 1.0 })
            })
            .collect()
    };
    assert_close(&fast::rms_norm(&x, Some(&w), eps as f32).unwrap().to_vec().unwrap(), &reference(true), 1e-5, 1e-5);
    assert_close(&fast::rms_norm(&x, None, eps as f32).unwrap().to_vec().unwrap(), &reference(false), 1e-5, 1e-5);
}

#[test]
fn layer_norm_matches_the_formula() {
    let (x, xv) = array(&[2, 8], 3);
    let (w, wv) = array(&[8], 4);
    let (b, bv) = array(&[8], 5);
    let (wv, bv) = (&wv, &bv);
    let expected: Vec<f64> = xv
        .chunks(8)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / 8.0;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 8.0;
            let inv = 1.0 / (var + 1e-5).sqrt();
            row.iter().enumerate().map(move |(i, &v)| (v as f64 - mean) * inv * wv[i] as f64 + bv[i] as f64)
        })
        .collect();
    assert_close(&fast::layer_norm(&x, Some(&w), Some(&b), 1e-5).unwrap().to_vec().unwrap(), &expected, 1e-5, 1e-5);
}

/// RoPE on `[1, heads, len, d]`, rotating the first `dims` features, positions `offset + l`.
#[allow(clippy::too_many_arguments)]
fn rope_reference(
    x: &[f32],
    heads: usize,
    len: usize,
    d: usize,
    dims: usize,
    traditional: bool,
    base: f64,
    offset: usize,
) -> Vec<f64> {
    let half = dims / 2;
    let mut out = to_f64(x);
    for h in 0..heads {
        for l in 0..len {
            let row = (h * len + l) * d;
            for i in 0..half {
                let theta = (offset + l) as f64 * base.powf(-2.0 * i as f64 / dims as f64);
                let (a, b) = if traditional { (row + 2 * i, row + 2 * i + 1) } else { (row + i, row + i + half) };
                let (xa, xb) = (x[a] as f64, x[b] as f64);
                out[a] = xa * theta.cos() - xb * theta.sin();
                out[b] = xa * theta.sin() + xb * theta.cos();
            }
        }
    }
    out
}

#[test]
fn rope_matches_the_formula_for_int_and_array_offsets() {
    let (heads, len, d) = (2usize, 5usize, 16usize);
    let (x, xv) = array(&[1, heads as i32, len as i32, d as i32], 6);
    for (dims, traditional) in [(16, false), (16, true), (8, false)] {
        let rope = Rope { dims: dims as i32, traditional, base: 10000.0, scale: 1.0, freqs: None };
        let expected = rope_reference(&xv, heads, len, d, dims, traditional, 10000.0, 7);
        assert_close(&rope.apply(&x, 7).unwrap().to_vec().unwrap(), &expected, 1e-5, 1e-5);
        let offset = Array::scalar(7i32);
        assert_close(&rope.apply_dynamic(&x, &offset).unwrap().to_vec().unwrap(), &expected, 1e-5, 1e-5);
    }
    // Explicit frequencies are wavelengths (base^(2i/dims)): the same rotation as the base form.
    let wavelengths: Vec<f32> = (0..8).map(|i| 500f32.powf(2.0 * i as f32 / 16.0)).collect();
    let rope = Rope {
        dims: 16,
        traditional: false,
        base: 0.0,
        scale: 1.0,
        freqs: Some(Array::from_slice(&wavelengths, &[8]).unwrap()),
    };
    let expected = rope_reference(&xv, heads, len, d, 16, false, 500.0, 3);
    assert_close(&rope.apply(&x, 3).unwrap().to_vec().unwrap(), &expected, 1e-4, 1e-4);
}

/// Explicit attention over `[1, hq, l, d]` queries and `[1, hkv, s, d]` keys/values.
#[allow(clippy::too_many_arguments)]
fn attention_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    hq: usize,
    hkv: usize,
    l: usize,
    s: usize,
    d: usize,
    scale: f64,
    allowed: &dyn Fn(usize, usize) -> bool,
) -> Vec<f64> {
    let mut out = vec![0.0; hq * l * d];
    for h in 0..hq {
        let kh = h / (hq / hkv);
        for i in 0..l {
            let scores: Vec<f64> = (0..s)
                .map(|j| {
                    if !allowed(i, j) {
                        return f64::NEG_INFINITY;
                    }
                    (0..d).map(|c| q[(h * l + i) * d + c] as f64 * k[(kh * s + j) * d + c] as f64).sum::<f64>() * scale
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for c in 0..d {
                out[(h * l + i) * d + c] = (0..s).map(|j| weights[j] / total * v[(kh * s + j) * d + c] as f64).sum();
            }
        }
    }
    out
}

#[test]
fn sdpa_matches_explicit_softmax_attention() {
    let (hq, hkv, l, s, d) = (4usize, 2usize, 3usize, 6usize, 16usize);
    let (q, qv) = array(&[1, hq as i32, l as i32, d as i32], 7);
    let (k, kv) = array(&[1, hkv as i32, s as i32, d as i32], 8);
    let (v, vv) = array(&[1, hkv as i32, s as i32, d as i32], 9);
    let scale = 0.25;
    let run =
        |mask| fast::scaled_dot_product_attention(&q, &k, &v, scale as f32, mask).unwrap().to_vec::<f32>().unwrap();
    let none = attention_reference(&qv, &kv, &vv, hq, hkv, l, s, d, scale, &|_, _| true);
    assert_close(&run(AttentionMask::None), &none, 1e-5, 1e-4);
    let causal = attention_reference(&qv, &kv, &vv, hq, hkv, l, s, d, scale, &|i, j| j <= s - l + i);
    assert_close(&run(AttentionMask::Causal), &causal, 1e-5, 1e-4);
    // A sliding window of 2 as a boolean mask [l, s].
    let window = |i: usize, j: usize| j <= s - l + i && j + 2 > s - l + i;
    let bools: Vec<bool> = (0..l).flat_map(|i| (0..s).map(move |j| window(i, j))).collect();
    let mask = Array::from_slice(&bools, &[l as i32, s as i32]).unwrap();
    let windowed = attention_reference(&qv, &kv, &vv, hq, hkv, l, s, d, scale, &window);
    assert_close(&run(AttentionMask::Array(&mask)), &windowed, 1e-5, 1e-4);
    // The same window as an additive float mask.
    let additive: Vec<f32> = bools.iter().map(|&b| if b { 0.0 } else { f32::NEG_INFINITY }).collect();
    let mask = Array::from_slice(&additive, &[l as i32, s as i32]).unwrap();
    assert_close(&run(AttentionMask::Array(&mask)), &windowed, 1e-5, 1e-4);
}

/// Unpacks MLX's affine layout independently: element j of a group sits at bit `j * bits` of the
/// little-endian bit stream of the packed uint32 words; `w = scale * q + bias`.
fn unpack_affine(q: &quant::Quantized, rows: usize, cols: usize) -> Vec<f64> {
    let bits = q.spec.bits as usize;
    let group = q.spec.group_size as usize;
    let words = q.weight.to_vec::<u32>().unwrap();
    let scales = q.scales.to_vec::<f32>().unwrap();
    let biases = q.biases.as_ref().unwrap().to_vec::<f32>().unwrap();
    let words_per_row = words.len() / rows;
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let row = &words[r * words_per_row..(r + 1) * words_per_row];
        for c in 0..cols {
            let bit = c * bits;
            let mut value = (row[bit / 32] as u64) >> (bit % 32);
            if bit % 32 + bits > 32 {
                value |= (row[bit / 32 + 1] as u64) << (32 - bit % 32);
            }
            let qv = (value & ((1 << bits) - 1)) as f64;
            let g = r * (cols / group) + c / group;
            out.push(scales[g] as f64 * qv + biases[g] as f64);
        }
    }
    out
}

#[test]
fn quantized_matmul_agrees_with_dequantize_then_matmul_for_every_affine_format() {
    let (rows, cols, batch) = (8usize, 256usize, 3usize);
    let (w, wv) = array(&[rows as i32, cols as i32], 10);
    let (x, xv) = array(&[batch as i32, cols as i32], 11);
    for bits in QuantSpec::AFFINE_BITS {
        for group in QuantSpec::AFFINE_GROUPS {
            let spec = QuantSpec::affine(group, bits).unwrap();
            let q = quant::quantize(&w, spec).unwrap();
            let dense = q.dequantize().unwrap();
            let deq = dense.to_vec::<f32>().unwrap();
            // Independent unpacking of the packed words reproduces MLX's dequantize.
            assert_close(&deq, &unpack_affine(&q, rows, cols), 1e-6, 1e-6);
            // MLX keeps the larger-magnitude edge of each group exact (so zero stays representable) and
            // rescales the step to fit; the far edge can then clip by up to one step. Interior elements
            // round to within half a step.
            let scales = q.scales.to_vec::<f32>().unwrap();
            for (i, (&a, &b)) in deq.iter().zip(&wv).enumerate() {
                let step = scales[(i / cols) * (cols / group as usize) + (i % cols) / group as usize];
                assert!((a - b).abs() <= step.abs() + 1e-6, "bits {bits} group {group} element {i}: {a} vs {b}");
            }
            // The quantized kernel computes x @ dequantize(W)^T.
            let expected = matmul_ref(&to_f64(&xv), &transpose(&deq, rows, cols), batch, cols, rows);
            let got = q.matmul(&x, true).unwrap().to_vec::<f32>().unwrap();
            assert_close(&got, &expected, 1e-4, 1e-4);
        }
    }
}

#[test]
fn quantized_matmul_without_transpose_and_in_bf16() {
    let (k, n) = (128usize, 64usize);
    let (w, _) = array(&[k as i32, n as i32], 12);
    let (x, xv) = array(&[2, k as i32], 13);
    let q = quant::quantize(&w, QuantSpec::affine(64, 4).unwrap()).unwrap();
    let deq = to_f64(&q.dequantize().unwrap().to_vec::<f32>().unwrap());
    let expected = matmul_ref(&to_f64(&xv), &deq, 2, k, n);
    assert_close(&q.matmul(&x, false).unwrap().to_vec().unwrap(), &expected, 1e-4, 1e-4);
    let wb = w.astype(Dtype::BF16).unwrap();
    let qb = quant::quantize(&wb, QuantSpec { group_size: 32, bits: 8, mode: QuantMode::Affine }).unwrap();
    assert_eq!(qb.scales.dtype(), Dtype::BF16);
    let y = qb.matmul(&x.astype(Dtype::BF16).unwrap(), false).unwrap();
    assert_eq!(y.dtype(), Dtype::BF16);
}

fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| m[r * cols + c] as f64)).collect()
}

fn gelu_tanh_ref(v: f64) -> f64 {
    0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
}

#[test]
fn fused_blocks_match_their_formulas_compiled_or_not() {
    let (x, xv) = array(&[4, 32], 14);
    let x = x.mul_scalar(3.0).unwrap();
    let (up, uv) = array(&[4, 32], 15);
    let gelu: Vec<f64> = xv.iter().map(|&v| gelu_tanh_ref(3.0 * v as f64)).collect();
    let gated: Vec<f64> = gelu.iter().zip(&uv).map(|(g, &u)| g * u as f64).collect();
    let capped: Vec<f64> = xv.iter().map(|&v| (3.0 * v as f64 / 2.0).tanh() * 2.0).collect();
    for compiled in [true, false] {
        fused::set_compile_enabled(compiled);
        assert_close(&fused::gelu_tanh(&x).unwrap().to_vec().unwrap(), &gelu, 1e-5, 1e-5);
        assert_close(&fused::gelu_tanh_gate(&x, &up).unwrap().to_vec().unwrap(), &gated, 1e-5, 1e-5);
        let cap = Array::scalar(2.0f32);
        assert_close(&fused::softcap(&x, &cap).unwrap().to_vec().unwrap(), &capped, 1e-5, 1e-5);
    }
    fused::set_compile_enabled(true);
    // Keeps the input dtype.
    let xb = x.astype(Dtype::BF16).unwrap();
    assert_eq!(fused::gelu_tanh(&xb).unwrap().dtype(), Dtype::BF16);
}
