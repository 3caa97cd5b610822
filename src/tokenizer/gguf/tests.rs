//! Malformed metadata is an error naming the key, never a panic; a small well-formed vocabulary
//! of each kind builds and reaches the config. (tests/gguf_tokenizer.rs checks real encodings.)

use mlxcel_models::gguf::{Header, Value};

use super::*;

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|item| Value::String(item.to_string())).collect())
}

fn header(metadata: Vec<(&str, Value)>) -> Header {
    Header {
        version: 3,
        metadata: metadata.into_iter().map(|(key, value)| (key.to_string(), value)).collect(),
        tensors: Vec::new(),
        alignment: 32,
        data_offset: 0,
    }
}

/// A byte-level vocabulary: the letters of "hello", "he", "ll", "hell", and two control tokens.
fn gpt2() -> Vec<(&'static str, Value)> {
    vec![
        (MODEL, Value::String("gpt2".into())),
        (PRE, Value::String("gpt-2".into())),
        (TOKENS, strings(&["<|end|>", "<|start|>", "h", "e", "l", "o", "Ġ", "he", "ll", "hell", "Ġh"])),
        (TOKEN_TYPE, Value::Array([3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1].map(Value::I32).to_vec())),
        (MERGES, strings(&["h e", "l l", "he ll", "Ġ h"])),
        (BOS_ID, Value::U32(1)),
        (EOS_ID, Value::U32(0)),
        (CHAT_TEMPLATE, Value::String("{{ messages }}".into())),
    ]
}

/// A SentencePiece vocabulary with byte fallback for "\n" only.
fn llama() -> Vec<(&'static str, Value)> {
    vec![
        (MODEL, Value::String("llama".into())),
        (TOKENS, strings(&["<unk>", "<s>", "</s>", "<0x0A>", "▁", "h", "i", "▁h", "▁hi"])),
        (SCORES, Value::Array([0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0].map(Value::F32).to_vec())),
        (TOKEN_TYPE, Value::Array([2, 3, 3, 6, 1, 1, 1, 1, 1].map(Value::I32).to_vec())),
        (BOS_ID, Value::U32(1)),
        (EOS_ID, Value::U32(2)),
        (UNK_ID, Value::U32(0)),
    ]
}

fn with(mut metadata: Vec<(&'static str, Value)>, key: &'static str, value: Option<Value>) -> Header {
    metadata.retain(|(name, _)| *name != key);
    metadata.extend(value.map(|value| (key, value)));
    header(metadata)
}

fn error(header: Header) -> TokenizerError {
    Tokenizer::from_gguf(&header).expect_err("malformed metadata must be refused")
}

fn assert_invalid(error: TokenizerError, expected_key: &str, fragment: &str) {
    match &error {
        TokenizerError::InvalidGgufKey { key, message } if *key == expected_key && message.contains(fragment) => {}
        other => panic!("expected InvalidGgufKey {{ {expected_key}, ..{fragment}.. }}, got {other:?}"),
    }
}

#[test]
fn gpt2_vocabulary_builds_with_its_config() {
    let tokenizer = Tokenizer::from_gguf(&header(gpt2())).unwrap();
    assert_eq!(tokenizer.encode("hello", true).unwrap(), [9, 5]);
    assert_eq!(tokenizer.encode("<|start|> hell", false).unwrap(), [1, 6, 9]);
    assert_eq!(tokenizer.decode(&[1, 9, 5], true).unwrap(), "hello");
    assert_eq!(tokenizer.bos_token(), Some("<|start|>"));
    assert_eq!(tokenizer.eos_token_id(), Some(0));
    assert_eq!(tokenizer.add_bos_token(), Some(false));
    assert!(tokenizer.is_special(0) && tokenizer.is_special(1) && !tokenizer.is_special(2));
    let config = tokenizer.tokenizer_config().unwrap();
    assert_eq!(config["chat_template"], "{{ messages }}");
    assert_eq!(config["unk_token"], serde_json::Value::Null);
}

#[test]
fn llama_vocabulary_builds_with_bos_and_byte_fallback() {
    let tokenizer = Tokenizer::from_gguf(&header(llama())).unwrap();
    assert_eq!(tokenizer.encode("hi\nhi", true).unwrap(), [1, 8, 3, 5, 6]);
    assert_eq!(tokenizer.encode("hi", false).unwrap(), [8]);
    assert_eq!(tokenizer.decode(&[1, 8, 3, 5, 6], true).unwrap(), "hi\nhi");
    assert_eq!(tokenizer.add_bos_token(), Some(true));
    assert_eq!(tokenizer.unk_token(), Some("<unk>"));
    // The unknown token is named, so it is special (transformers marks it so too).
    assert!(tokenizer.is_special(0));
}

#[test]
fn missing_or_unsupported_model_is_refused() {
    assert!(matches!(error(with(gpt2(), MODEL, None)), TokenizerError::MissingGgufKey { key: MODEL }));
    let unsupported = error(with(gpt2(), MODEL, Some(Value::String("bert".into()))));
    assert!(
        matches!(&unsupported, TokenizerError::UnsupportedGgufModel { model } if model == "bert"),
        "{unsupported:?}"
    );
    assert_invalid(error(with(gpt2(), MODEL, Some(Value::U32(2)))), MODEL, "expected a string");
}

#[test]
fn missing_or_ill_typed_tokens_are_refused() {
    assert!(matches!(error(with(gpt2(), TOKENS, None)), TokenizerError::MissingGgufKey { key: TOKENS }));
    assert_invalid(error(with(gpt2(), TOKENS, Some(Value::String("h".into())))), TOKENS, "expected an array");
    let mixed = Value::Array(vec![Value::String("h".into()), Value::U8(1)]);
    assert_invalid(error(with(gpt2(), TOKENS, Some(mixed))), TOKENS, "element 1: expected a string");
    assert_invalid(error(with(gpt2(), TOKENS, Some(Value::Array(Vec::new())))), TOKENS, "empty");
    let short = Value::Array(vec![Value::I32(1)]);
    assert_invalid(error(with(gpt2(), TOKEN_TYPE, Some(short))), TOKEN_TYPE, "1 types for 11 tokens");
}

#[test]
fn bad_merges_are_refused() {
    assert!(matches!(error(with(gpt2(), MERGES, None)), TokenizerError::MissingGgufKey { key: MERGES }));
    let unknown = error(with(gpt2(), MERGES, Some(strings(&["h e", "x y"]))));
    assert_invalid(unknown, MERGES, "merge 1 (\"x y\"): \"x\" is not in the vocabulary");
    let unjoined = error(with(gpt2(), MERGES, Some(strings(&["o h"]))));
    assert_invalid(unjoined, MERGES, "\"oh\" is not in the vocabulary");
    assert_invalid(error(with(gpt2(), MERGES, Some(strings(&["he"])))), MERGES, "not two tokens");
    assert_invalid(error(with(gpt2(), MERGES, Some(strings(&["h "])))), MERGES, "\"\" is not in the vocabulary");
}

#[test]
fn bad_scores_are_refused() {
    assert!(matches!(error(with(llama(), SCORES, None)), TokenizerError::MissingGgufKey { key: SCORES }));
    let short = Value::Array(vec![Value::F32(0.0)]);
    assert_invalid(error(with(llama(), SCORES, Some(short))), SCORES, "1 scores for 9 tokens");
    let text = Value::Array(vec![Value::String("0".into()); 9]);
    assert_invalid(error(with(llama(), SCORES, Some(text))), SCORES, "element 0: expected a number");
}

#[test]
fn special_token_ids_are_checked() {
    assert_invalid(error(with(gpt2(), BOS_ID, Some(Value::String("1".into())))), BOS_ID, "expected an integer");
    // Out of range: ignored, as llama.cpp does.
    let tokenizer = Tokenizer::from_gguf(&with(gpt2(), BOS_ID, Some(Value::U32(500)))).unwrap();
    assert_eq!(tokenizer.bos_token(), None);
    // Asking for a BOS the file does not name is a contradiction llama.cpp refuses too.
    let mut metadata = gpt2();
    metadata.push((ADD_BOS, Value::Bool(true)));
    assert_invalid(error(with(metadata, BOS_ID, None)), ADD_BOS, "bos_token_id is not set");
    assert_invalid(error(with(gpt2(), ADD_EOS, Some(Value::U8(1)))), ADD_EOS, "expected a boolean");
    assert_invalid(error(with(gpt2(), CHAT_TEMPLATE, Some(Value::Bool(true)))), CHAT_TEMPLATE, "expected a string");
}
