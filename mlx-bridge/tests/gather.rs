//! gather_mm / gather_qmm against an f64 reference that picks each row's matrix by hand.

mod common;

use common::{array, assert_close};
use mlx_bridge::quant::{QuantSpec, quantize};
use mlx_bridge::{Array, gather_mm};

const EXPERTS: usize = 4;
const IN: usize = 64;
const OUT: usize = 8;

/// `x[t] @ w[e]^T` for every (token, chosen expert): `[tokens, k, OUT]` flattened.
fn reference(x: &[f32], w: &[f32], chosen: &[i32], k: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for (t, row) in x.chunks(IN).enumerate() {
        for &e in &chosen[t * k..(t + 1) * k] {
            for o in 0..OUT {
                let weights = &w[(e as usize * OUT + o) * IN..][..IN];
                out.push(row.iter().zip(weights).map(|(&a, &b)| a as f64 * b as f64).sum());
            }
        }
    }
    out
}

#[test]
fn gather_mm_reads_the_chosen_matrices() {
    let (tokens, k) = (3, 2);
    let (x, xs) = array(&[tokens, 1, 1, IN as i32], 1);
    let (w, ws) = array(&[EXPERTS as i32, OUT as i32, IN as i32], 2);
    let chosen = [3, 0, 1, 1, 2, 3];
    let indices = Array::from_slice(&chosen, &[tokens, k as i32]).unwrap();
    let out = gather_mm(&x, &w.swapaxes(-1, -2).unwrap(), None, Some(&indices), false).unwrap();
    assert_eq!(out.shape(), vec![tokens, k as i32, 1, OUT as i32]);
    assert_close(&out.to_vec::<f32>().unwrap(), &reference(&xs, &ws, &chosen, k), 1e-5, 1e-5);
}

#[test]
fn gather_qmm_matches_gather_mm_on_the_dequantized_matrices() {
    let (tokens, k) = (2, 2);
    let (x, _) = array(&[tokens, 1, 1, IN as i32], 3);
    let (w, _) = array(&[EXPERTS as i32, OUT as i32, IN as i32], 4);
    let q = quantize(&w, QuantSpec::affine(32, 4).unwrap()).unwrap();
    let chosen = [2, 1, 0, 3];
    let indices = Array::from_slice(&chosen, &[tokens, k]).unwrap();
    let got = q.gather_matmul(&x, None, Some(&indices), true, false).unwrap();
    let dense = q.dequantize().unwrap();
    let want = gather_mm(&x, &dense.swapaxes(-1, -2).unwrap(), None, Some(&indices), false).unwrap();
    assert_eq!(got.shape(), want.shape());
    let want: Vec<f64> = want.to_vec::<f32>().unwrap().into_iter().map(f64::from).collect();
    assert_close(&got.to_vec::<f32>().unwrap(), &want, 1e-5, 1e-5);
}
