//! mlx-bridge's CUDA kernel sources, checked without a GPU: they compile for sm_90 with NVRTC
//! (`benchmarks/nvrtc_check.py`), and the default one-row affine product still compiles to the
//! SASS of the variant the H200 A/B measured (`benchmarks/gemv_sass_check.py`, which reads that
//! commit from git). Both fetch NVRTC, the CUDA headers and cuobjdump from PyPI once (~70 MB, into
//! ~/.cache/mlxcel/nvrtc), so they are ignored by default; `./dev test` runs them with the other
//! tests that fetch from PyPI.

use std::path::Path;
use std::process::Command;

fn run_script(script: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("mlx-bridge sits in the workspace");
    let output = Command::new("python3")
        .arg(script)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("python3 {script}: {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python3 {script} failed ({}):\n{text}", output.status);
}

#[test]
#[ignore = "fetches NVRTC and the CUDA headers from PyPI"]
fn cuda_kernel_sources_compile_for_sm_90() {
    run_script("benchmarks/nvrtc_check.py");
}

#[test]
#[ignore = "fetches NVRTC and cuobjdump from PyPI"]
fn default_one_row_product_is_the_measured_kernel() {
    run_script("benchmarks/gemv_sass_check.py");
}
