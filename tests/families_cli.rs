//! `mlxcel generate` and `mlxcel inspect` on every family's tiny checkpoints: a safetensors folder
//! (with the tiny tokenizer beside it) and a GGUF file (which carries the same tokenizer).

mod common;

use std::process::{Command, Output};

/// Fixture folder and family name.
const FAMILIES: [(&str, &str); 8] = [
    ("llama-tiny", "llama"),
    ("gemma3-tiny", "gemma3"),
    ("gemma3n-tiny", "gemma3n"),
    ("qwen2-tiny", "qwen2"),
    ("qwen3-tiny", "qwen3"),
    ("qwen3_moe-tiny", "qwen3_moe"),
    ("phi3-tiny", "phi3"),
    ("smollm3-tiny", "smollm3"),
];

fn mlxcel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlxcel")).args(args).env("HF_HUB_OFFLINE", "1").output().expect("run mlxcel")
}

fn succeeds(args: &[&str]) -> String {
    let out = mlxcel(args);
    assert!(out.status.success(), "mlxcel {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn generate_and_inspect_work_for_every_family_from_every_source() {
    for (fixture, model_type) in FAMILIES {
        let dir = common::model_dir(fixture);
        let folder = dir.path().to_str().unwrap();
        let gguf = common::fixtures().join(fixture).join("tiny.gguf");
        let mut sources = vec![folder.to_string()];
        if gguf.is_file() {
            sources.push(gguf.to_str().unwrap().to_string());
        }
        for source in &sources {
            // gen_llama_gemma3.py's GGUF files carry a vocabulary without merges: no tokenizer.
            let tokenizer = !(source.ends_with(".gguf") && ["llama-tiny", "gemma3-tiny"].contains(&fixture));
            if tokenizer {
                let text = succeeds(&["generate", "-m", source, "-p", "Hello there", "-n", "6", "--temp", "0"]);
                assert!(!text.is_empty(), "{fixture} {source}: no text");
            }
            let report: serde_json::Value =
                serde_json::from_str(&succeeds(&["inspect", "-m", source, "--json"])).unwrap();
            let model = &report["model"];
            let architecture = model["model_type"].as_str().unwrap();
            // A GGUF names llama.cpp's architecture (qwen3moe), a folder its model_type.
            let family = mlxcel_models::families::by_model_type(architecture)
                .or_else(|| mlxcel_models::families::by_gguf_architecture(architecture))
                .unwrap_or_else(|| panic!("{source}: inspect says {architecture}"));
            assert_eq!(family.name, model_type, "{source}");
            assert!(
                model["layers"].as_u64().unwrap() >= 2 && report["kv_cache_bytes"].as_u64().unwrap() > 0,
                "{report}"
            );
        }
    }
}
