//! MLX exceptions must come back as `Err` carrying MLX's message, never abort the process.

mod common;

use mlx_bridge::fast::{self, AttentionMask};
use mlx_bridge::quant::{self, QuantMode, QuantSpec};
use mlx_bridge::{Array, Dtype, Error, fused, io::SafeTensors};

fn mlx_message(err: Error) -> String {
    match err {
        Error::Mlx { message, .. } => message,
        other => panic!("expected an MLX error, got {other:?}"),
    }
}

#[test]
fn matmul_shape_mismatch_is_an_error_with_mlx_message() {
    let (a, _) = common::array(&[2, 3], 1);
    let (b, _) = common::array(&[4, 5], 2);
    let message = mlx_message(a.matmul(&b).unwrap_err());
    assert!(message.contains("[matmul]"), "{message}");
    // The process is still healthy: the next op works.
    let c = a.matmul(&a.t().unwrap()).unwrap();
    assert_eq!(c.shape(), vec![2, 2]);
}

#[test]
fn bad_reshape_broadcast_and_concat_are_errors() {
    let (a, _) = common::array(&[2, 3], 3);
    assert!(mlx_message(a.reshape(&[4, 2]).unwrap_err()).contains("reshape"));
    assert!(matches!(a.broadcast_to(&[5, 7]), Err(Error::Mlx { .. })));
    let (b, _) = common::array(&[3, 3], 4);
    assert!(matches!(mlx_bridge::concatenate(&[&a, &b], 1), Err(Error::Mlx { .. })));
    assert!(matches!(a.add(&b), Err(Error::Mlx { .. })));
}

#[test]
fn host_data_of_the_wrong_size_is_rejected() {
    let err = Array::from_slice(&[1.0f32, 2.0, 3.0], &[2, 2]).unwrap_err();
    assert!(mlx_message(err).contains("do not hold"));
    assert!(Array::from_bytes(&[0u8; 3], &[2], Dtype::BF16).is_err());
}

#[test]
fn missing_safetensors_file_is_an_error() {
    let message = match SafeTensors::load("/nonexistent/model.safetensors") {
        Err(err) => mlx_message(err),
        Ok(_) => panic!("loading a missing file succeeded"),
    };
    assert!(message.contains("/nonexistent/model.safetensors"), "{message}");
}

#[test]
fn corrupt_safetensors_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all").unwrap();
    assert!(SafeTensors::load(&path).is_err());
}

#[test]
fn invalid_quantization_parameters_are_errors() {
    let (w, _) = common::array(&[8, 64], 5);
    assert!(matches!(QuantSpec::affine(64, 7), Err(Error::InvalidArgument { .. })));
    assert!(matches!(QuantSpec::affine(48, 4), Err(Error::InvalidArgument { .. })));
    // Bypassing the Rust-side check reaches MLX, which must also refuse (last axis 64 < group 128 works
    // only if divisible; 100 columns are not).
    let (odd, _) = common::array(&[8, 100], 6);
    let spec = QuantSpec { group_size: 64, bits: 4, mode: QuantMode::Affine };
    assert!(matches!(quant::quantize(&odd, spec), Err(Error::Mlx { .. })));
    let q = quant::quantize(&w, spec).unwrap();
    let (x, _) = common::array(&[2, 32], 7);
    assert!(matches!(q.matmul(&x, true), Err(Error::Mlx { .. })));
}

#[test]
fn attention_and_rope_shape_errors_are_errors() {
    let (q, _) = common::array(&[1, 4, 3, 8], 8);
    let (k, _) = common::array(&[1, 3, 5, 8], 9); // 4 query heads over 3 kv heads is not grouped attention
    assert!(fast::scaled_dot_product_attention(&q, &k, &k, 1.0, AttentionMask::Causal).is_err());
    let (x, _) = common::array(&[4], 10);
    assert!(fast::Rope::new(8, 10000.0).apply(&x, 0).is_err());
}

#[test]
fn fused_block_with_wrong_arity_is_an_error() {
    let (x, _) = common::array(&[4], 11);
    let err = fused::call(fused::FusedBlock::GeluTanhGate, &[&x]).unwrap_err();
    assert!(mlx_message(err).contains("takes 2 inputs"));
}

#[test]
fn reading_a_truncated_safetensors_tensor_is_an_error() {
    // The header parses; the data ends early. MLX reads lazily, so this surfaces at evaluation.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.safetensors");
    let (a, _) = common::array(&[64, 64], 12);
    mlx_bridge::io::save_safetensors(&path, &[("w", &a)], &Default::default()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let result = SafeTensors::load(&path).and_then(|st| st.get("w")).and_then(|w| w.to_vec::<f32>());
    assert!(result.is_err(), "a truncated tensor was read");
}

#[test]
fn misuse_caught_on_the_rust_side_is_an_invalid_argument() {
    let (a, _) = common::array(&[3], 13);
    assert!(matches!(a.item::<f32>(), Err(Error::InvalidArgument { .. })));
    assert!(matches!(a.dim(3), Err(Error::InvalidArgument { .. })));
    assert!(matches!(a.clip(None, None), Err(Error::InvalidArgument { .. })));
}
