//! `MLXCEL_CPU_ISA` is read once per process, so each value is tried in a child process: this
//! test binary runs itself with the variable set and the child checks what it sees.

use std::process::Command;

use mlx_bridge::Array;
use mlx_bridge::block_quant::{self, BlockFormat, BlockMatrix, Isa};

const CHILD: &str = "MLXCEL_TEST_ISA_CHILD";

/// One Q8_0 block: d = 1 (f16 0x3c00), codes 0..31, so x = ones gives 496.
fn product() -> mlx_bridge::Result<f32> {
    let mut bytes = vec![0x00, 0x3c];
    bytes.extend(0..32u8);
    let w = BlockMatrix::from_gguf("env.q8", BlockFormat::Q8_0, &bytes, 1, 32)?;
    w.matmul_t(&Array::from_slice(&[1.0f32; 32], &[1, 32])?)?.item::<f32>()
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
