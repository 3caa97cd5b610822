//! The ids that end generation: checkpoints spread them over several files, and a model may stop
//! on any of them (Gemma 3 instruct models end turns with `<end_of_turn>`, which only
//! generation_config.json lists; Llama 3 lists `<|eot_id|>` there too).

use std::path::Path;

use serde_json::Value;

use super::{TOKENIZER_CONFIG_FILE, Tokenizer, TokenizerError, invalid_field, read_json};

/// The union, without repeats and in this order, of `eos_token_id` in `config.json` (top level,
/// then the nested `text_config` of multimodal checkpoints), in `generation_config.json`, and
/// `eos_token` of `tokenizer_config.json` resolved to an id through `tokenizer` (then the
/// tokenizer's own EOS, for tokenizers whose config came from elsewhere). Each `eos_token_id` may
/// be an integer or a list of integers. A missing file contributes nothing; a malformed one is an
/// error naming it.
pub fn eos_token_ids(dir: &Path, tokenizer: Option<&Tokenizer>) -> Result<Vec<u32>, TokenizerError> {
    let mut ids = Vec::new();
    let mut add = |id: u32| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };

    let config_path = dir.join("config.json");
    if let Some(config) = read_json(&config_path)? {
        ids_of(config.get("eos_token_id"), &config_path, "eos_token_id")?.into_iter().for_each(&mut add);
        let nested = config.get("text_config").and_then(|text| text.get("eos_token_id"));
        ids_of(nested, &config_path, "text_config.eos_token_id")?.into_iter().for_each(&mut add);
    }

    let generation_path = dir.join("generation_config.json");
    if let Some(generation) = read_json(&generation_path)? {
        ids_of(generation.get("eos_token_id"), &generation_path, "eos_token_id")?.into_iter().for_each(&mut add);
    }

    if let Some(tokenizer) = tokenizer {
        let tokenizer_config_path = dir.join(TOKENIZER_CONFIG_FILE);
        if let Some(tokenizer_config) = read_json(&tokenizer_config_path)? {
            let eos_token = match tokenizer_config.get("eos_token") {
                Some(Value::String(token)) => Some(token.as_str()),
                Some(Value::Object(added_token)) => added_token.get("content").and_then(Value::as_str),
                _ => None,
            };
            if let Some(token) = eos_token {
                match tokenizer.token_to_id(token) {
                    Some(id) => add(id),
                    None => tracing::warn!(token, "eos_token of tokenizer_config.json is not in the vocabulary"),
                }
            }
        }
        if let Some(id) = tokenizer.eos_token_id() {
            add(id);
        }
    }
    Ok(ids)
}

/// An `eos_token_id` value: absent or `null` (none), an integer, or a list of integers.
fn ids_of(value: Option<&Value>, path: &Path, field: &str) -> Result<Vec<u32>, TokenizerError> {
    let as_id = |value: &Value| -> Result<u32, TokenizerError> {
        value
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| invalid_field(path, field, &format!("expected a token id (an integer >= 0), found {value}")))
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(as_id).collect(),
        Some(single) => Ok(vec![as_id(single)?]),
    }
}

/// Tokens that end a turn in the chat formats llama.cpp recognises by name; a GGUF names only
/// one EOS id, while chat models stop on their end-of-turn token.
const END_OF_TURN_TOKENS: &[&str] =
    &["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>"];

/// The ids that end generation for a GGUF model: `tokenizer.ggml.eos_token_id`,
/// `tokenizer.ggml.eot_token_id`, and the end-of-turn tokens of [`END_OF_TURN_TOKENS`] the
/// vocabulary marks special (llama.cpp's own rule).
pub fn gguf_eos_token_ids(header: &mlxcel_models::gguf::Header, tokenizer: &Tokenizer) -> Vec<u32> {
    let mut ids = Vec::new();
    let mut add = |id: u32| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
        if let Some(id) = header.get(key).and_then(|v| v.as_i64()).and_then(|id| u32::try_from(id).ok()) {
            add(id);
        }
    }
    for token in END_OF_TURN_TOKENS {
        if let Some(id) = tokenizer.token_to_id(token).filter(|&id| tokenizer.is_special(id)) {
            add(id);
        }
    }
    ids
}
