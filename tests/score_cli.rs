//! End to end: `mlxcel score` on the tiny Gemma 3n fixture reproduces transformers' float32
//! logits through the command line, for every chunk size and decode path; bad input fails cleanly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const PROMPT: &str = "2,17,300,45,511,9,256,120,33,480,7";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3n-tiny").join(name)
}

fn mlxcel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlxcel")).args(args).output().expect("run mlxcel")
}

/// A C-ordered float32 .npy file: (shape, data).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let dims = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape = dims.split(',').filter(|d| !d.trim().is_empty()).map(|d| d.trim().parse().unwrap()).collect();
    let data = bytes[10 + header_len..].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    (shape, data)
}

fn reference(key: &str) -> Vec<f32> {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(fixture("reference.json")).unwrap()).unwrap();
    json["logits"][key]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn score_writes_transformers_logits_for_every_chunk_size_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let expected = reference("fp32");
    let model = fixture("fp32");
    for chunk in ["11", "5", "1"] {
        for path in ["fused", "split"] {
            let out = dir.path().join(format!("{chunk}-{path}.npy"));
            let args = [
                "score",
                "-m",
                model.to_str().unwrap(),
                "--ids",
                PROMPT,
                "--prefill-chunk",
                chunk,
                "--decode-path",
                path,
                "--logits-out",
                out.to_str().unwrap(),
            ];
            let result = mlxcel(&args);
            assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
            let (shape, data) = read_npy(&out);
            assert_eq!(shape, vec![11, 512]);
            let diff = data.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff <= 1e-4, "chunk {chunk} {path}: {diff}");
        }
    }
}

#[test]
fn score_json_reports_next_token_logprobs_and_argmax() {
    // Dense weights: the reference is float32, and the CPU class's default block kernels round
    // activations to int8 (models/tests/llama_gemma3.rs states their bound).
    let q8 = fixture("q8");
    let result = mlxcel(&["score", "-m", q8.to_str().unwrap(), "--ids", PROMPT, "--json", "--dequantize", "on"]);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let report: Value = serde_json::from_slice(&result.stdout).unwrap();
    let positions = report["positions"].as_array().unwrap();
    assert_eq!(positions.len(), 11);
    let expected = reference("q8");
    for (i, position) in positions.iter().enumerate() {
        let row = &expected[i * 512..(i + 1) * 512];
        let argmax = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(position["argmax"].as_u64().unwrap() as usize, argmax, "position {i}");
        let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
        if let Some(next) = position["next_token"].as_u64() {
            let logprob = row[next as usize] as f64 - lse;
            assert!((position["next_token_logprob"].as_f64().unwrap() - logprob).abs() < 1e-3, "position {i}");
        } else {
            assert_eq!(i, 10);
        }
    }
}

#[test]
fn bad_input_fails_with_one_line_and_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let no_config = dir.path().join("empty");
    std::fs::create_dir(&no_config).unwrap();
    let unsupported = dir.path().join("llama");
    std::fs::create_dir(&unsupported).unwrap();
    std::fs::write(unsupported.join("config.json"), r#"{"model_type": "mamba"}"#).unwrap();
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("config.json"), "{not json").unwrap();
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::copy(fixture("fp32/config.json"), corrupt.join("config.json")).unwrap();
    std::fs::write(corrupt.join("model.safetensors"), b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!").unwrap();
    let fp32 = fixture("fp32");
    let fp32 = fp32.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-m", "/nonexistent/model", "--ids", "1,2"], "does not exist"),
        (vec!["-m", no_config.to_str().unwrap(), "--ids", "1,2"], "no config.json"),
        (vec!["-m", unsupported.to_str().unwrap(), "--ids", "1,2"], "supported: gemma3n"),
        (vec!["-m", broken.to_str().unwrap(), "--ids", "1,2"], "invalid JSON"),
        (vec!["-m", corrupt.to_str().unwrap(), "--ids", "1,2"], "model.safetensors"),
        (vec!["-m", fp32, "--ids", "1,512"], "outside the vocabulary"),
        (vec!["-m", fp32, "--ids", "1", "--prefill-chunk", "0"], "prefill-chunk"),
        (vec!["-m", fp32, "--ids", "1", "--decode-path", "sideways"], "decode-path"),
        (vec!["-m", fp32, "--ids", "x,y"], "--ids"),
        (vec!["-m", fp32, "--ids", "1"], "nothing to output"),
        (vec!["-m", fp32, "--ids", "1", "--json"], "nothing to score"),
    ];
    for (args, needle) in cases {
        let mut full = vec!["score"];
        full.extend(&args);
        if !args.contains(&"--prefill-chunk") && !args.contains(&"--json") && needle != "nothing to output" {
            full.push("--json");
        }
        let result = mlxcel(&full);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(!result.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}
