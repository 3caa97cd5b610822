//! `MLXCEL_CPU_ISA` is read once per process and the default activation precision is
//! process-wide, so each case runs in a child process: this test binary runs itself with the
//! variable set and the child checks what it sees.

use std::process::Command;

use mlx_bridge::Array;
use mlx_bridge::block_quant::{self, BlockFormat, BlockMatrix, Isa, Precision};

const CHILD: &str = "MLXCEL_TEST_ISA_CHILD";
const PRECISION_CHILD: &str = "MLXCEL_TEST_PRECISION_CHILD";

/// One Q8_0 block: d = 1 (f16 0x3c00), codes 0..31.
fn q8_block() -> mlx_bridge::Result<BlockMatrix> {
    let mut bytes = vec![0x00, 0x3c];
    bytes.extend(0..32u8);
    BlockMatrix::from_gguf("env.q8", BlockFormat::Q8_0, &bytes, 1, 32)
}

/// x = ones against the block: 496, exactly at Int8 (127 * fl(1 / 127) rounds to 1).
fn product() -> mlx_bridge::Result<f32> {
    q8_block()?.matmul_t_with(&Array::from_slice(&[1.0f32; 32], &[1, 32])?, Precision::Int8)?.item::<f32>()
}

/// x = 1, 2, .., 32 at the default precision: 10912 exactly; each value is rounded to a step of
/// 32 / 127 at Int8 (the product comes out 8.8 low) or 32 / 32385 at Int16 (0.035 high; at most
/// 496 times half a step, 0.245).
fn default_product() -> mlx_bridge::Result<f32> {
    let x: Vec<f32> = (1..=32).map(|v| v as f32).collect();
    q8_block()?.matmul_t(&Array::from_slice(&x, &[1, 32])?)?.item::<f32>()
}

fn child(value: &str) {
    let supported = block_quant::supported_isas();
    match Isa::ALL.into_iter().find(|i| i.name() == value) {
        Some(isa) if supported.contains(&isa) => {
            assert_eq!(block_quant::isa(), isa);
            assert_eq!(product().unwrap(), 496.0);
        }
        Some(isa) => {
            let msg = product().expect_err("an unsupported ISA must be an error").to_string();
            assert!(msg.contains("MLXCEL_CPU_ISA") && msg.contains(isa.name()), "{msg}");
            block_quant::set_isa(Isa::Scalar).unwrap();
            assert_eq!(product().unwrap(), 496.0);
        }
        None => {
            let msg = product().expect_err("an unknown ISA must be an error").to_string();
            assert!(msg.contains("MLXCEL_CPU_ISA") && msg.contains("not one of"), "{msg}");
            block_quant::set_isa(Isa::Scalar).unwrap();
            assert_eq!(product().unwrap(), 496.0);
        }
    }
}

#[test]
fn mlxcel_cpu_isa_forces_a_path_or_is_an_error() {
    if let Ok(value) = std::env::var(CHILD) {
        child(&value);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for value in Isa::ALL.iter().map(|i| i.name()).chain(["sse9"]) {
        let out = Command::new(&exe)
            .args(["--exact", "mlxcel_cpu_isa_forces_a_path_or_is_an_error", "--test-threads", "1"])
            .env("MLXCEL_CPU_ISA", value)
            .env(CHILD, value)
            .output()
            .unwrap();
        // "1 passed": the child really ran the check (a filter matching nothing also succeeds).
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "MLXCEL_CPU_ISA={value}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_default_precision_is_int16_until_set() {
    if let Ok(value) = std::env::var(PRECISION_CHILD) {
        // A child process: the default is process-wide.
        assert_eq!(block_quant::default_precision(), Precision::Int16, "{value}");
        assert!((default_product().unwrap() - 10912.0).abs() < 0.25);
        block_quant::set_default_precision(Precision::Int8);
        assert!((default_product().unwrap() - 10912.0).abs() > 1.0);
        // Explicit precisions do not read the default.
        assert_eq!(product().unwrap(), 496.0);
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "the_default_precision_is_int16_until_set", "--test-threads", "1"])
        .env(PRECISION_CHILD, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
