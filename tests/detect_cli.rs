//! Runs the built `mlxcel detect` as a user would, and checks its JSON and its errors.

use std::process::{Command, Output};

use serde_json::Value;

/// Cleared for every run, so an override set in the developer's shell cannot change the results.
const OVERRIDE_VARS: [&str; 4] =
    ["MLXCEL_DECODE_PATH", "MLXCEL_PRETRANSPOSE", "MLXCEL_COMPUTE_DTYPE", "MLXCEL_PREFILL_CHUNK"];

fn mlxcel_detect(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mlxcel"));
    command.arg("detect").args(args);
    for variable in OVERRIDE_VARS {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied());
    command.output().expect("mlxcel runs")
}

fn detect_json(env: &[(&str, &str)]) -> Value {
    let output = mlxcel_detect(&["--json"], env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mlxcel detect --json failed: {stderr}");
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON object")
}

#[test]
fn json_report_describes_this_cpu_machine() {
    let report = detect_json(&[]);
    let (profile, plan) = (&report["profile"], &report["plan"]);
    // The CUDA build is meant for GPU machines, where the backend and dtype differ.
    if !cfg!(feature = "cuda") {
        assert_eq!(profile["backend"], "cpu", "{profile:#}");
        assert_eq!(plan["compute_dtype"], "float32", "{plan:#}");
        assert!(plan["hardware_class"].as_str().is_some_and(|class| class.starts_with("cpu-")), "{plan:#}");
    }
    assert!(profile["cpu"]["cores"].as_u64().is_some_and(|cores| cores >= 1), "{profile:#}");
    let version = profile["mlx_version"].as_str().expect("mlx_version is a string");
    assert!(version.starts_with("0."), "mlx_version {version:?}");
    for setting in ["decode_path", "pretranspose", "compute_dtype", "prefill_chunk"] {
        assert!(!plan[setting].is_null(), "plan.{setting} missing: {plan:#}");
        let source = plan["provenance"][setting]["source"].as_str().unwrap_or_default();
        assert!(source.starts_with("default ("), "plan.provenance.{setting}.source = {source:?}");
    }
}

#[test]
fn bad_override_is_a_one_line_error_naming_the_variable() {
    let output = mlxcel_detect(&["--json"], &[("MLXCEL_DECODE_PATH", "bogus")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a bad MLXCEL_DECODE_PATH must fail the command");
    assert!(stderr.contains("MLXCEL_DECODE_PATH") && stderr.contains("bogus"), "stderr: {stderr}");
    assert!(stderr.contains("fused") && stderr.contains("split"), "accepted values listed: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line, no panic or backtrace: {stderr}");
    assert!(output.stdout.is_empty(), "nothing printed on stdout");
}

#[test]
fn env_override_shows_in_plan_with_its_source() {
    let report = detect_json(&[("MLXCEL_PREFILL_CHUNK", "64")]);
    let plan = &report["plan"];
    assert_eq!(plan["prefill_chunk"], 64, "{plan:#}");
    let source = plan["provenance"]["prefill_chunk"]["source"].as_str().unwrap_or_default();
    assert!(source.contains("MLXCEL_PREFILL_CHUNK"), "source {source:?}");
}

#[test]
fn table_shows_every_section_and_the_override_source() {
    let output = mlxcel_detect(&[], &[("MLXCEL_PRETRANSPOSE", "off")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8(output.stdout).expect("UTF-8 output");
    for heading in ["MLX\n", "Device\n", "CPU\n", "Execution plan ("] {
        assert!(table.contains(heading), "missing {heading:?} in:\n{table}");
    }
    let pretranspose = table.lines().find(|line| line.trim_start().starts_with("pretranspose")).expect("plan row");
    assert!(pretranspose.contains(" off ") && pretranspose.contains("env MLXCEL_PRETRANSPOSE"), "{pretranspose}");
}
