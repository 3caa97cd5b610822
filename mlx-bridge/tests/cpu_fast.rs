//! mlxcel's CPU kernels for `fast::rms_norm`, `fast::Rope` and attention against MLX's own
//! op-by-op fallbacks (what MLX computes on the CPU without them), on the inputs models give
//! them: transposed and sliced views, GQA, masks, partial rotation, bf16. The formulas themselves
//! are checked against f64 references in `fast_quant.rs`, which runs with the kernels on.

mod common;

use std::sync::{Mutex, MutexGuard};

use common::array;
use mlx_bridge::fast::{self, AttentionMask, Rope};
use mlx_bridge::{Array, Dtype};

/// The kernel switch is process-wide: each test holds this while it builds both graphs.
static SWITCH: Mutex<()> = Mutex::new(());

fn switch() -> MutexGuard<'static, ()> {
    SWITCH.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `f` built once with mlxcel's kernels and once with MLX's fallback, both as float32 values.
fn both(f: impl Fn() -> Array) -> (Vec<f32>, Vec<f32>, Vec<(String, usize)>) {
    let _guard = switch();
    fast::set_cpu_kernels(true);
    let ours = f();
    let ops = mlx_bridge::pending_graph_ops(&[&ours]);
    fast::set_cpu_kernels(false);
    let theirs = f();
    fast::set_cpu_kernels(true);
    let read = |a: Array| a.astype(Dtype::F32).unwrap().to_vec::<f32>().unwrap();
    (read(ours), read(theirs), ops)
}

fn assert_near(ours: &[f32], theirs: &[f32], tolerance: f32, what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let worst = ours.iter().zip(theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(ours.iter().all(|v| v.is_finite()), "{what}: non-finite output");
    assert!(worst <= tolerance, "{what}: worst difference {worst} > {tolerance}");
}

fn uses(ops: &[(String, usize)], name: &str) -> bool {
    ops.iter().any(|(op, _)| op == name)
}

#[test]
fn rms_norm_is_one_node_and_equals_the_fallback() {
    let (x, _) = array(&[2, 5, 64], 1);
    let (w, _) = array(&[64], 2);
    for dtype in [Dtype::F32, Dtype::BF16] {
        let (ours, theirs, ops) = both(|| {
            let x = x.astype(dtype).unwrap();
            fast::rms_norm(&x, Some(&w.astype(dtype).unwrap()), 1e-5).unwrap()
        });
        assert!(uses(&ops, "MlxcelRmsNorm"), "{ops:?}");
        assert_near(&ours, &theirs, if dtype == Dtype::F32 { 2e-6 } else { 1e-2 }, "rms_norm");
    }
    // A transposed view and no weight.
    let (ours, theirs, _) = both(|| fast::rms_norm(&x.transpose(&[1, 0, 2]).unwrap(), None, 1e-6).unwrap());
    assert_near(&ours, &theirs, 2e-6, "rms_norm of a view");
}

#[test]
fn rope_equals_the_fallback_for_every_variant() {
    // [B, L, H, D] projected activations viewed as [B, H, L, D], as attention layers do.
    let (x, _) = array(&[2, 7, 3, 32], 3);
    let view = x.transpose(&[0, 2, 1, 3]).unwrap();
    let periods: Vec<f32> = (0..12).map(|i| 10_000f32.powf(2.0 * i as f32 / 24.0) * (1.0 + i as f32 / 10.0)).collect();
    let freqs = Array::from_slice(&periods, &[12]).unwrap();
    let variants = [
        (Rope::new(32, 10_000.0), "split-half"),
        (Rope { traditional: true, ..Rope::new(32, 500_000.0) }, "traditional"),
        (Rope { scale: 0.25, ..Rope::new(16, 10_000.0) }, "partial, scaled"),
        (Rope { freqs: Some(freqs), base: 1.0, ..Rope::new(24, 1.0) }, "explicit frequencies"),
    ];
    for (rope, what) in &variants {
        let (ours, theirs, ops) = both(|| rope.apply(&view, 1000).unwrap());
        assert!(uses(&ops, "MlxcelRope"), "{what}: {ops:?}");
        // Angles near 1000 rad: MLX's vectorised sin/cos and libm's differ by a few 1e-5 there.
        assert_near(&ours, &theirs, 5e-5, what);
        let offsets = Array::from_slice(&[3i32, 40], &[2]).unwrap();
        let (ours, theirs, _) = both(|| rope.apply_dynamic(&view, &offsets).unwrap());
        assert_near(&ours, &theirs, 1e-5, &format!("{what}, per-batch offsets"));
    }
    let (ours, theirs, _) = both(|| variants[0].0.apply(&view.astype(Dtype::BF16).unwrap(), 5).unwrap());
    assert_near(&ours, &theirs, 2e-2, "bf16");
}

#[test]
fn attention_equals_the_fallback_for_decode_and_short_chunks() {
    // A cache buffer of 16 positions of which 11 are filled; 6 query heads over 2 KV heads.
    let (k_buffer, _) = array(&[1, 2, 16, 32], 4);
    let (v_buffer, _) = array(&[1, 2, 16, 32], 5);
    let keys = k_buffer.slice_axis(2, 0, 11).unwrap();
    let values = v_buffer.slice_axis(2, 0, 11).unwrap();
    let window: Vec<bool> = (0..3).flat_map(|i| (0..11).map(move |j| j <= 8 + i && j + 4 > 8 + i)).collect();
    let window = Array::from_slice(&window, &[3, 11]).unwrap();
    let additive: Vec<f32> = (0..3 * 11).map(|i| -((i % 5) as f32)).collect();
    let additive = Array::from_slice(&additive, &[3, 11]).unwrap();
    for length in [1, 3] {
        let (q, _) = array(&[1, 6, length, 32], 6 + length as u64);
        let masks: Vec<(AttentionMask<'_>, &str)> = if length == 1 {
            vec![(AttentionMask::None, "none"), (AttentionMask::Causal, "causal")]
        } else {
            vec![
                (AttentionMask::Causal, "causal"),
                (AttentionMask::Array(&window), "bool window"),
                (AttentionMask::Array(&additive), "additive"),
            ]
        };
        for (mask, what) in masks {
            let (ours, theirs, ops) =
                both(|| fast::scaled_dot_product_attention(&q, &keys, &values, 0.125, mask).unwrap());
            assert!(uses(&ops, "MlxcelAttention"), "{what}: {ops:?}");
            assert_near(&ours, &theirs, 2e-6, &format!("L={length}, mask {what}"));
        }
    }
    let (q, _) = array(&[1, 6, 1, 32], 9);
    let (ours, theirs, _) = both(|| {
        let bf = |a: &Array| a.astype(Dtype::BF16).unwrap();
        fast::scaled_dot_product_attention(&bf(&q), &bf(&keys), &bf(&values), 0.125, AttentionMask::None).unwrap()
    });
    assert_near(&ours, &theirs, 2e-2, "bf16");
}

#[test]
fn long_float32_chunks_run_the_parallel_kernel_and_equal_the_fallback() {
    // A 300-token chunk after 212 cached positions: 6 query heads over 2 KV heads, head size 64.
    let (len, keys) = (300usize, 512usize);
    let (q, _) = array(&[1, 6, len as i32, 64], 10);
    let (k, _) = array(&[1, 2, keys as i32, 64], 11);
    let (v, _) = array(&[1, 2, keys as i32, 64], 12);
    // Gemma's sliding window of 128 as a bool mask, with row 7 masked out entirely (the fallback's
    // softmax then averages every key); an additive mask of assorted biases.
    let window: Vec<bool> = (0..len)
        .flat_map(|i| (0..keys).map(move |j| i != 7 && j <= keys - len + i && j + 128 > keys - len + i))
        .collect();
    let window = Array::from_slice(&window, &[len as i32, keys as i32]).unwrap();
    let additive: Vec<f32> = (0..len * keys).map(|i| -((i % 7) as f32) * 0.5).collect();
    let additive = Array::from_slice(&additive, &[len as i32, keys as i32]).unwrap();
    let masks = [
        (AttentionMask::Causal, "causal"),
        (AttentionMask::None, "none"),
        (AttentionMask::Array(&window), "bool window"),
        (AttentionMask::Array(&additive), "additive"),
    ];
    for (mask, what) in masks {
        let (ours, theirs, ops) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, 0.125, mask).unwrap());
        assert!(uses(&ops, "MlxcelAttention") && !uses(&ops, "Matmul"), "{what}: {ops:?}");
        assert_near(&ours, &theirs, 1e-5, &format!("L={len}, S={keys}, mask {what}"));
    }
    // Keys and values as views (a transposed cache layout), as the models pass them.
    let kt = k.transpose(&[0, 2, 1, 3]).unwrap().contiguous().unwrap().transpose(&[0, 2, 1, 3]).unwrap();
    let (ours, theirs, _) =
        both(|| fast::scaled_dot_product_attention(&q, &kt, &v, 0.125, AttentionMask::Causal).unwrap());
    assert_near(&ours, &theirs, 1e-5, "keys through a transposed view");
}

#[test]
fn batched_decode_steps_equal_the_fallback() {
    // Eight rows decoding together, as a server's batch: 6 query heads over 2 KV heads (the
    // kernel then takes a block's rows from one KV head's query heads), rows left-padded by their
    // own amounts (a per-row bool mask), and two-token steps with a causal edge.
    let (batch, keys) = (8i32, 40i32);
    let (k_buffer, _) = array(&[batch, 2, 64, 32], 13);
    let (v_buffer, _) = array(&[batch, 2, 64, 32], 14);
    let k = k_buffer.slice_axis(2, 0, keys).unwrap();
    let v = v_buffer.slice_axis(2, 0, keys).unwrap();
    for length in [1, 2] {
        let (q, _) = array(&[batch, 6, length, 32], 15 + length as u64);
        let padded: Vec<bool> = (0..batch)
            .flat_map(|b| (0..length).flat_map(move |l| (0..keys).map(move |j| j >= 3 * b && j <= keys - length + l)))
            .collect();
        let padded = Array::from_slice(&padded, &[batch, 1, length, keys]).unwrap();
        let masks = [
            (AttentionMask::None, "none"),
            (AttentionMask::Causal, "causal"),
            (AttentionMask::Array(&padded), "padding"),
        ];
        for (mask, what) in masks {
            let (ours, theirs, ops) = both(|| fast::scaled_dot_product_attention(&q, &k, &v, 0.125, mask).unwrap());
            assert!(uses(&ops, "MlxcelAttention"), "{what}: {ops:?}");
            assert_near(&ours, &theirs, 2e-6, &format!("B={batch}, L={length}, mask {what}"));
        }
    }
}

#[test]
fn long_half_precision_chunks_keep_the_fallbacks_matmuls() {
    let (q, _) = array(&[1, 2, 512, 16], 10);
    let (k, _) = array(&[1, 2, 512, 16], 11);
    let bf = |a: &Array| a.astype(Dtype::BF16).unwrap();
    let _guard = switch();
    let out = fast::scaled_dot_product_attention(&bf(&q), &bf(&k), &bf(&k), 0.25, AttentionMask::Causal).unwrap();
    let ops = mlx_bridge::pending_graph_ops(&[&out]);
    assert!(!uses(&ops, "MlxcelAttention") && uses(&ops, "Matmul"), "{ops:?}");
}

#[test]
fn gated_activations_equal_the_compiled_blocks() {
    // Values across both saturations (|x| up to ~60) and around 0, in an odd length.
    let n = 3 * 1111;
    let gate: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.37).sin() * (1.0 + (i % 60) as f32)).collect();
    let up: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.11).cos()).collect();
    let gate = Array::from_slice(&gate, &[3, 1111]).unwrap();
    let up = Array::from_slice(&up, &[3, 1111]).unwrap();
    type Block = fn(&Array, &Array) -> mlx_bridge::Result<Array>;
    let blocks: [(Block, &str, &str); 2] = [
        (mlx_bridge::fused::silu_gate, "MlxcelSiluGate", "silu"),
        (mlx_bridge::fused::gelu_tanh_gate, "MlxcelGeluTanhGate", "gelu_tanh"),
    ];
    for (block, kernel, what) in blocks {
        let (ours, theirs, ops) = both(|| block(&gate, &up).unwrap());
        assert!(uses(&ops, kernel), "{what}: {ops:?}");
        // Relative to each value's size: the two exps differ in their last bits.
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0f32, f32::max);
        assert!(worst <= 2e-6, "{what}: worst relative difference {worst}");
        // A transposed view of the same values.
        let (ours, theirs, _) = both(|| block(&gate.t().unwrap(), &up.t().unwrap()).unwrap());
        assert_near(&ours, &theirs, 1e-4, &format!("{what} of a view"));
    }
}

#[test]
fn back_to_back_pool_jobs_keep_their_own_work() {
    // Pooled primitives of different kinds evaluated one after another, thousands of times: a
    // worker must never run a chunk of one job with another's function or context. A smoke
    // check only: the race the pool had (fixed in pool.cc) crashed a Gemma 3 270M benchmark in
    // 3 of 8 runs but never this test, even at 20000 steps.
    let _guard = switch();
    mlx_bridge::block_quant::set_num_threads(2).unwrap();
    let q8: Vec<u8> = (0..64).flat_map(|_| std::iter::once(0x00).chain(std::iter::once(0x3c)).chain(0..32u8)).collect();
    let w = mlx_bridge::block_quant::BlockMatrix::from_gguf(
        "stress.q8",
        mlx_bridge::block_quant::BlockFormat::Q8_0,
        &q8,
        64,
        32,
    )
    .unwrap();
    let (x, _) = array(&[3, 32], 20);
    let (gate, _) = array(&[4, 4096], 21);
    let (q, _) = array(&[1, 4, 16, 32], 22);
    let (k, _) = array(&[1, 2, 16, 32], 23);
    let step = || {
        let y = w.matmul_t(&x).unwrap();
        let h = mlx_bridge::fused::silu_gate(&gate, &gate).unwrap();
        let a = fast::scaled_dot_product_attention(&q, &k, &k, 0.2, AttentionMask::Causal).unwrap();
        mlx_bridge::eval(&[&y, &h, &a]).unwrap();
        [y, h, a].map(|out| out.to_vec::<f32>().unwrap())
    };
    let first = step();
    for i in 0..3000 {
        assert_eq!(step(), first, "evaluation {i}");
    }
}
