//! Test helpers: deterministic non-trivial inputs and tolerance checks against f64 references.
#![allow(dead_code)]

use mlx_bridge::Array;

/// Deterministic values in [-1, 1), never all zero (zeros hide indexing mistakes).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn array(shape: &[i32], seed: u64) -> (Array, Vec<f32>) {
    let n = shape.iter().product::<i32>() as usize;
    let data = values(n, seed);
    (Array::from_slice(&data, shape).unwrap(), data)
}

/// Asserts |a - b| <= atol + rtol * |b| elementwise, naming the worst element.
pub fn assert_close(actual: &[f32], expected: &[f64], atol: f64, rtol: f64) {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let mut worst = (0usize, 0.0f64);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(a.is_finite(), "element {i} is {a}");
        let excess = (a as f64 - e).abs() - (atol + rtol * e.abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let i = worst.0;
    assert!(worst.1 <= 0.0, "element {i}: got {}, expected {} (atol {atol}, rtol {rtol})", actual[i], expected[i]);
}

/// Row-major [m, k] x [k, n] in f64.
pub fn matmul_ref(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p];
            for j in 0..n {
                out[i * n + j] += x * b[p * n + j];
            }
        }
    }
    out
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
