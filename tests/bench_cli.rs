//! `mlxcel bench`'s report: batched decode tests (`-b`) beside the single-sequence ones, each
//! with its batch size, on a tiny fixture (the rates themselves are the benchmark pages' concern).

mod common;

use std::process::Command;

#[test]
fn batched_decode_tests_are_reported_with_their_batch_size() {
    let dir = common::model_dir("llama-tiny");
    let output = Command::new(env!("CARGO_BIN_EXE_mlxcel"))
        .args(["bench", "-m"])
        .arg(dir.path())
        .args(["-p", "0", "-n", "5", "-d", "0,7", "-b", "1,3", "-r", "1", "--warmup", "0", "-o", "json"])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let runs = report["runs"].as_array().expect("runs");
    let tests: Vec<(&str, u64, u64)> = runs
        .iter()
        .map(|run| (run["test"].as_str().unwrap(), run["batch"].as_u64().unwrap(), run["depth"].as_u64().unwrap()))
        .collect();
    assert_eq!(tests, [("tg5", 1, 0), ("tg5@b3", 3, 0), ("tg5@d7", 1, 7), ("tg5@d7@b3", 3, 7)], "{stderr}");
    for run in runs {
        let rate = run["tokens_per_second"]["mean"].as_f64().unwrap();
        assert!(rate.is_finite() && rate > 0.0, "{run}");
    }
}
