//! Tokenization: a checkpoint folder's `tokenizer.json` (through the `tokenizers` crate) with the
//! special tokens and flags of its `tokenizer_config.json`, streaming detokenization
//! ([`StreamDecoder`]) and the set of ids that end generation ([`eos_token_ids`]). A GGUF file's
//! tokenizer metadata builds the same kind of tokenizer ([`Tokenizer::from_gguf`]).
//!
//! The reference is transformers 5 loading the same folder: encodings and decodings match it byte
//! for byte (`tests/tokenizer.rs` checks this against golden values it produced).

mod eos;
mod gguf;
mod stream;

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

pub use eos::{eos_token_ids, gguf_eos_token_ids};
pub use stream::StreamDecoder;

pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error("{} not found: the model folder {} has no tokenizer", path.display(), dir.display())]
    MissingTokenizer { dir: PathBuf, path: PathBuf },
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("{} is not a valid tokenizer file: {error}", path.display())]
    InvalidTokenizer { path: PathBuf, error: tokenizers::Error },
    #[error("{} is not valid JSON: {error}", path.display())]
    InvalidJson { path: PathBuf, error: serde_json::Error },
    /// A config field of the wrong shape (`path` is the file, or a description where the config
    /// did not come from a file).
    #[error("{}: {field}: {message}", path.display())]
    InvalidField { path: PathBuf, field: String, message: String },
    #[error("encoding failed: {error}")]
    Encode { error: tokenizers::Error },
    #[error("decoding failed: {error}")]
    Decode { error: tokenizers::Error },
    /// `tokenizer.ggml.model` names a kind of tokenizer [`Tokenizer::from_gguf`] cannot build.
    #[error("GGUF tokenizer model {model:?} is not supported (gpt2 and llama are)")]
    UnsupportedGgufModel { model: String },
    /// A GGUF metadata key the tokenizer needs is absent.
    #[error("GGUF metadata has no {key}, which the tokenizer needs")]
    MissingGgufKey { key: &'static str },
    /// A GGUF metadata key of the wrong type, or with a value that cannot be used.
    #[error("GGUF metadata {key}: {message}")]
    InvalidGgufKey { key: &'static str, message: String },
    /// The `tokenizers` crate refused a part built from the GGUF metadata.
    #[error("cannot build the tokenizer from GGUF metadata: {error}")]
    GgufTokenizer { error: tokenizers::Error },
}

/// The named special tokens of a tokenizer, as `tokenizer_config.json` spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub pad: Option<String>,
    pub unk: Option<String>,
}

/// A tokenizer with the special tokens and flags of its `tokenizer_config.json`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    config: Option<Value>,
    special_tokens: SpecialTokens,
    add_bos_token: Option<bool>,
    add_eos_token: Option<bool>,
    /// Ids of the added tokens marked special: what `decode(.., skip_special_tokens = true)` drops.
    special_ids: HashSet<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special_tokens", &self.special_tokens)
            .field("add_bos_token", &self.add_bos_token)
            .field("add_eos_token", &self.add_eos_token)
            .field("has_config", &self.config.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json`, and `dir/tokenizer_config.json` when the folder has one.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let path = dir.join(TOKENIZER_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(TokenizerError::MissingTokenizer { dir: dir.to_path_buf(), path });
            }
            Err(error) => return Err(TokenizerError::Read { path, error }),
        };
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|error| TokenizerError::InvalidTokenizer { path: path.clone(), error })?;
        let tokenizer = Self::from_tokenizers(inner);
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        match read_json(&config_path)? {
            Some(config) => tokenizer.with_config(config, &config_path),
            None => Ok(tokenizer),
        }
    }

    /// Wraps a tokenizer built elsewhere (a GGUF reader, a test), with no config: no named special
    /// tokens until [`Tokenizer::with_tokenizer_config`] supplies them.
    pub fn from_tokenizers(mut inner: tokenizers::Tokenizer) -> Self {
        // transformers' `encode` neither truncates nor pads unless asked to, whatever
        // tokenizer.json says; a prompt silently cut short would be worse than a long one.
        inner.with_padding(None);
        // Turning truncation off cannot fail (only invalid parameters are rejected).
        let _ = inner.with_truncation(None);
        let special_ids = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter_map(|(id, token)| token.special.then_some(id))
            .collect();
        Self {
            inner,
            config: None,
            special_tokens: SpecialTokens::default(),
            add_bos_token: None,
            add_eos_token: None,
            special_ids,
        }
    }

    /// Applies a `tokenizer_config.json`-shaped object (special tokens, `add_bos_token`,
    /// `add_eos_token`, and `chat_template` for the chat-template code), for tokenizers that
    /// come from somewhere other than a folder.
    pub fn with_tokenizer_config(self, config: Value) -> Result<Self, TokenizerError> {
        self.with_config(config, Path::new("<tokenizer config>"))
    }

    fn with_config(mut self, config: Value, path: &Path) -> Result<Self, TokenizerError> {
        let Some(fields) = config.as_object() else {
            return Err(invalid_field(path, "(top level)", "expected a JSON object"));
        };
        let token = |name: &str| special_token_content(fields.get(name), path, name);
        self.special_tokens = SpecialTokens {
            bos: token("bos_token")?,
            eos: token("eos_token")?,
            pad: token("pad_token")?,
            unk: token("unk_token")?,
        };
        // The flags are informational (see `add_bos_token`), so one of an odd shape is not worth
        // refusing the model over.
        let flag = |name: &str| match fields.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(value)) => Some(*value),
            Some(other) => {
                tracing::warn!(file = %path.display(), field = name, value = %other, "expected true or false; ignored");
                None
            }
        };
        self.add_bos_token = flag("add_bos_token");
        self.add_eos_token = flag("add_eos_token");
        self.config = Some(config);
        Ok(self)
    }

    /// The wrapped `tokenizers` tokenizer, for what this type does not cover.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The parsed `tokenizer_config.json` (the chat-template code reads `chat_template` from it).
    pub fn tokenizer_config(&self) -> Option<&Value> {
        self.config.as_ref()
    }

    /// `add_special_tokens`: put in what the post-processor adds (BOS for most models).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self.inner.encode(text, add_special_tokens).map_err(|error| TokenizerError::Encode { error })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Ids the tokenizer does not know are left out, as transformers does. transformers'
    /// `clean_up_tokenization_spaces` is not applied: transformers 5 skips it for BPE models,
    /// and the WordPiece decoder of the `tokenizers` crate does its own.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner.decode(ids, skip_special_tokens).map_err(|error| TokenizerError::Decode { error })
    }

    /// A decoder for text produced one token at a time.
    pub fn stream_decoder(&self, skip_special_tokens: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, skip_special_tokens)
    }

    /// Number of ids, added tokens included (transformers' `len(tokenizer)`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// One past the highest id the tokenizer can produce, added tokens included: the embedding
    /// rows a model needs for it (more than [`Tokenizer::vocab_size`] when the ids have gaps).
    pub fn id_bound(&self) -> usize {
        self.inner.get_vocab(true).into_values().max().map_or(0, |id| id as usize + 1)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Whether `id` is an added token marked special (dropped when decoding with
    /// `skip_special_tokens`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special_tokens
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.special_tokens.bos.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.special_tokens.eos.as_deref()
    }

    pub fn pad_token(&self) -> Option<&str> {
        self.special_tokens.pad.as_deref()
    }

    pub fn unk_token(&self) -> Option<&str> {
        self.special_tokens.unk.as_deref()
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token().and_then(|token| self.token_to_id(token))
    }

    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token().and_then(|token| self.token_to_id(token))
    }

    pub fn pad_token_id(&self) -> Option<u32> {
        self.pad_token().and_then(|token| self.token_to_id(token))
    }

    pub fn unk_token_id(&self) -> Option<u32> {
        self.unk_token().and_then(|token| self.token_to_id(token))
    }

    /// `add_bos_token` as the config states it. Informational: what `encode` adds is up to
    /// tokenizer.json's post-processor, as in transformers 5, which does not rebuild the
    /// post-processor from these flags when it loads a folder.
    pub fn add_bos_token(&self) -> Option<bool> {
        self.add_bos_token
    }

    /// `add_eos_token` as the config states it (informational, like [`Tokenizer::add_bos_token`]).
    pub fn add_eos_token(&self) -> Option<bool> {
        self.add_eos_token
    }
}

/// Reads and parses a JSON file; `Ok(None)` when there is no such file.
pub(crate) fn read_json(path: &Path) -> Result<Option<Value>, TokenizerError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(TokenizerError::Read { path: path.to_path_buf(), error }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| TokenizerError::InvalidJson { path: path.to_path_buf(), error })
}

pub(crate) fn invalid_field(path: &Path, field: &str, message: &str) -> TokenizerError {
    TokenizerError::InvalidField { path: path.to_path_buf(), field: field.to_string(), message: message.to_string() }
}

/// A special token as tokenizer_config.json writes it: a string, or a serialized AddedToken
/// (`{"content": "<bos>", "lstrip": false, ...}`); `null` means none.
fn special_token_content(value: Option<&Value>, path: &Path, field: &str) -> Result<Option<String>, TokenizerError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(token)) => Ok(Some(token.clone())),
        Some(Value::Object(added_token)) => match added_token.get("content") {
            Some(Value::String(token)) => Ok(Some(token.clone())),
            _ => Err(invalid_field(path, field, "an AddedToken object needs a string \"content\"")),
        },
        Some(other) => {
            Err(invalid_field(path, field, &format!("expected a string or an AddedToken object, found {other}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path() -> &'static Path {
        Path::new("tokenizer_config.json")
    }

    #[test]
    fn special_token_accepts_string_object_and_null() {
        assert_eq!(special_token_content(Some(&json!("<s>")), path(), "bos_token").unwrap().as_deref(), Some("<s>"));
        let added = json!({"__type": "AddedToken", "content": "</s>", "lstrip": false, "special": true});
        assert_eq!(special_token_content(Some(&added), path(), "eos_token").unwrap().as_deref(), Some("</s>"));
        assert_eq!(special_token_content(Some(&Value::Null), path(), "pad_token").unwrap(), None);
        assert_eq!(special_token_content(None, path(), "unk_token").unwrap(), None);
    }

    #[test]
    fn special_token_of_another_shape_is_an_error_naming_the_field() {
        let error = special_token_content(Some(&json!(7)), path(), "eos_token").unwrap_err().to_string();
        assert!(error.contains("tokenizer_config.json") && error.contains("eos_token"), "{error}");
        let error = special_token_content(Some(&json!({"id": 1})), path(), "bos_token").unwrap_err().to_string();
        assert!(error.contains("content"), "{error}");
    }
}
