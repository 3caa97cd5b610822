//! Runs the built `mlxcel fetch` as a user would, against a private cache and with pip made
//! unusable, so nothing here touches the network.

use std::path::Path;
use std::process::{Command, Output};

use mlxcel::registry;

fn mlxcel(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlxcel"))
        .args(args)
        .env("MLXCEL_CACHE_DIR", cache)
        .env("MLXCEL_PYTHON", "/nonexistent/python")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("MLXCEL_OFFLINE")
        .output()
        .expect("mlxcel runs")
}

#[test]
fn list_shows_every_registry_model_and_whether_it_is_cached() {
    let cache = tempfile::tempdir().unwrap();
    let output = mlxcel(&["fetch", "--list"], cache.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for model in registry::MODELS {
        let line = stdout.lines().find(|line| line.trim_start().starts_with(model.alias)).expect(model.alias);
        assert!(line.contains(" no "), "{line}");
    }
    assert!(stdout.contains(&cache.path().join("models").display().to_string()), "{stdout}");
}

#[test]
fn a_cached_model_prints_its_path_without_pip() {
    let cache = tempfile::tempdir().unwrap();
    let model = registry::find("smollm2").unwrap();
    let path = model.path(cache.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // What a verified fetch leaves: the file (sparse here; only its size is read) and the marker.
    std::fs::File::create(&path).unwrap().set_len(model.size).unwrap();
    std::fs::write(
        path.with_file_name(format!("{}.sha256", model.file)),
        format!("{}  {}\n", model.sha256, model.file),
    )
    .unwrap();
    let output = mlxcel(&["fetch", "smollm2"], cache.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{}\n", path.display()));
    let list = mlxcel(&["fetch", "--list"], cache.path());
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(stdout.lines().any(|line| line.contains("smollm2") && line.contains(" yes ")), "{stdout}");
}

#[test]
fn errors_are_one_line_and_actionable() {
    let cache = tempfile::tempdir().unwrap();
    for (args, needles) in [
        (&["fetch", "smollm2", "--offline"][..], &["smollm2", "offline", "mlxcel fetch smollm2"][..]),
        (&["fetch", "gemma-3-270m"], &["gemma-3-270m", "/nonexistent/python", "MLXCEL_PYTHON"]),
        (&["fetch", "gemma-3n"], &["unknown registry model", "smollm2", "gemma-3-270m"]),
    ] {
        let output = mlxcel(args, cache.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{args:?}: {needle:?} missing from {stderr}");
        }
    }
}

#[test]
fn model_commands_default_to_smollm2() {
    for command in ["generate", "run", "inspect"] {
        let output = Command::new(env!("CARGO_BIN_EXE_mlxcel")).args([command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("[default: smollm2]"), "{command} --help: {help}");
    }
}
