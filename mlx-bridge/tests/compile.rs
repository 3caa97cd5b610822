//! Rust functions compiled with `mx::compile` ([`Compiled`]): the same values as the function run
//! op by op, new input values on every replay (nothing of the first call baked in), a trace per
//! input shape, captured arrays as constants, and a failing function an error, not an abort.

use std::cell::Cell;

use mlx_bridge::Array;
use mlx_bridge::compile::{Compiled, TraceError};

fn values(a: &Array) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

#[test]
fn replays_compute_each_calls_own_inputs() {
    let weight = Array::from_slice(&[0.5f32, -2.0, 3.0], &[3]).unwrap();
    let traced = Cell::new(0);
    let f = |x: &[Array]| -> Result<Vec<Array>, TraceError> {
        traced.set(traced.get() + 1);
        let y = x[0].mul(&weight)?.add(&x[1])?.tanh()?;
        Ok(vec![y.mul_scalar(2.0)?, x[0].sub(&x[1])?])
    };
    let compiled = Compiled::new();
    for (step, shift) in [0.0f32, 1.0, -3.0, 0.25].into_iter().enumerate() {
        let x = Array::from_slice(&[1.0 + shift, 2.0, -1.0 - shift], &[3]).unwrap();
        let bias = Array::from_slice(&[shift, 0.5, 0.0], &[3]).unwrap();
        let out = compiled.call(&[&x, &bias], &f).unwrap();
        let expected = f(&[x.clone(), bias.clone()]).unwrap();
        for (got, want) in out.iter().zip(&expected) {
            let (got, want) = (values(got), values(want));
            assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-6), "step {step}: {got:?} vs {want:?}");
        }
    }
    // The eager first call, one trace, the per-step reference calls above: 1 + 1 + 4.
    assert_eq!(traced.get(), 6);
    // Another shape is traced anew.
    let x = Array::from_slice(&[1.0f32; 6], &[2, 3]).unwrap();
    let out = compiled.call(&[&x, &x], &f).unwrap();
    assert_eq!(out[0].shape(), vec![2, 3]);
    assert_eq!(traced.get(), 7);
}

#[test]
fn a_failing_function_is_an_error() {
    let compiled = Compiled::new();
    let x = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
    let y = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]).unwrap();
    let add = |a: &[Array]| -> Result<Vec<Array>, TraceError> { Ok(vec![a[0].add(&a[1])?]) };
    // Eager first call: the shape error comes back as this call's error.
    assert!(compiled.call(&[&x, &y], &add).is_err());
    // Traced: the error crosses the C++ side and comes back as an error too.
    compiled.call(&[&x, &x], &add).unwrap();
    let err = compiled.call(&[&x, &y], &add).unwrap_err().to_string();
    assert!(err.contains("broadcast") || err.contains("shape"), "{err}");
    // A panic while MLX traces comes back as an error instead of aborting the process.
    let panics = |a: &[Array]| -> Result<Vec<Array>, TraceError> {
        if a[0].shape() == vec![3] {
            panic!("no rows of three");
        }
        Ok(vec![a[0].clone()])
    };
    let compiled = Compiled::new();
    compiled.call(&[&x], &panics).unwrap();
    let err = compiled.call(&[&y], &panics).unwrap_err().to_string();
    assert!(err.contains("no rows of three"), "{err}");
    // And compiling goes on working after it.
    assert_eq!(values(&compiled.call(&[&x], &panics).unwrap()[0]), values(&x));
    assert_eq!(values(&Compiled::new().call(&[&x, &x], &add).unwrap()[0]), [2.0, 4.0]);
    let empty = |_: &[Array]| -> Result<Vec<Array>, TraceError> { Err("nothing to compute".into()) };
    let err = Compiled::new().call(&[&x], &empty).unwrap_err().to_string();
    assert!(err.contains("nothing to compute"), "{err}");
}
