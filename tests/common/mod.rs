//! Fixtures shared by the command-line tests: tiny models assembled in temporary folders.

#![allow(dead_code)]

pub mod gguf;
pub mod tokenizer;

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A checkpoint folder: `model`'s fp32 weights and config (`llama-tiny`, `gemma3-tiny`,
/// `gemma3n-tiny`) with the tiny tokenizer beside them, in a fresh folder.
pub fn model_dir(model: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join(model).join("fp32").join(file), dir.path().join(file)).unwrap();
    }
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures().join("tokenizer-tiny").join(file), dir.path().join(file)).unwrap();
    }
    dir
}

/// Changes `dir/config.json` with `edit`.
pub fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

/// The byte range of tensor `name`'s data in a safetensors file.
pub fn safetensors_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let offsets = &header[name]["data_offsets"];
    let at = |i: usize| 8 + header_len + offsets[i].as_u64().unwrap() as usize;
    at(0)..at(1)
}

/// Replaces every float `x` of float32 tensor `name` in `dir/model.safetensors` by `change(x)`.
pub fn change_floats(dir: &Path, name: &str, change: impl Fn(f32) -> f32) {
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    for at in safetensors_range(&bytes, name).step_by(4) {
        let value = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        bytes[at..at + 4].copy_from_slice(&change(value).to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Sets every float of float32 tensor `name` in `dir/model.safetensors` to NaN.
pub fn make_nan(dir: &Path, name: &str) {
    change_floats(dir, name, |_| f32::NAN);
}
