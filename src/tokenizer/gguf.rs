//! A tokenizer built from a GGUF file's metadata (`tokenizer.ggml.*`), for models that ship as a
//! single GGUF file with no tokenizer.json.
//!
//! Two kinds of vocabulary (`tokenizer.ggml.model`):
//! - `gpt2`: byte-level BPE from `tokens` and `merges`, the text first split by the regexes
//!   llama.cpp ties to `tokenizer.ggml.pre` ([`byte_level`]).
//! - `llama`: SentencePiece BPE from `tokens` and `scores`, merges recovered from the vocabulary,
//!   byte fallback through the `<0xXX>` tokens ([`sentencepiece`]).
//!
//! Tokens typed CONTROL become special added tokens, USER_DEFINED ones plain added tokens: both
//! are matched whole in the text, as llama.cpp does. The special token ids, the BOS/EOS flags and
//! the chat template reach [`Tokenizer::with_tokenizer_config`] as a tokenizer_config.json would.
//!
//! The references are transformers' GGUF tokenizer and llama.cpp. Where transformers departs from
//! llama.cpp, this follows llama.cpp, which is what the models' own tokenizer.json files do:
//! - `smollm` and `starcoder` split digits one by one before the GPT-2 regex (SmolLM2's
//!   tokenizer.json: Digits(individual_digits) + ByteLevel); transformers keeps "2024" whole.
//! - Plain llama SentencePiece vocabularies prepend "▁" to every text fragment, after special
//!   tokens too and also before a leading space (Llama 2's tokenizer.json: Prepend + Replace);
//!   transformers prepends once, at the start, and not before a space.
//!
//! One departure from llama.cpp: for the pre-tokenizer `default` it applies a legacy list of
//! regexes it warns degrades quality; this uses the GPT-2 regex, as transformers does.
//! tests/fixtures/gguf_tokenizers/README.md records how each reference was checked.

mod byte_level;
mod sentencepiece;

use mlxcel_models::gguf::{Header, Value};
use serde_json::{Map, json};
use tokenizers::AddedToken;
use tokenizers::processors::template::TemplateProcessing;

use super::{Tokenizer, TokenizerError};

const MODEL: &str = "tokenizer.ggml.model";
const PRE: &str = "tokenizer.ggml.pre";
const TOKENS: &str = "tokenizer.ggml.tokens";
const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const SCORES: &str = "tokenizer.ggml.scores";
const MERGES: &str = "tokenizer.ggml.merges";
const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
const PAD_ID: &str = "tokenizer.ggml.padding_token_id";
const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
const ARCHITECTURE: &str = "general.architecture";

/// llama.cpp's token types (`tokenizer.ggml.token_type`), as far as they matter here.
const NORMAL: i64 = 1;
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes from its metadata (the module documentation
    /// says how). Fails on a tokenizer kind other than `gpt2` and `llama`, and on missing or
    /// malformed metadata, naming the key.
    pub fn from_gguf(header: &Header) -> Result<Tokenizer, TokenizerError> {
        let meta = Metadata(header);
        let model = meta.string(MODEL)?.ok_or(TokenizerError::MissingGgufKey { key: MODEL })?;
        let tokens = meta.strings(TOKENS)?.ok_or(TokenizerError::MissingGgufKey { key: TOKENS })?;
        if tokens.is_empty() {
            return Err(invalid(TOKENS, "the vocabulary is empty"));
        }
        let types = match meta.integers(TOKEN_TYPE)? {
            Some(types) if types.len() != tokens.len() => {
                return Err(invalid(TOKEN_TYPE, format!("{} types for {} tokens", types.len(), tokens.len())));
            }
            Some(types) => types,
            None => vec![NORMAL; tokens.len()],
        };
        let vocab = Vocabulary { tokens, types };
        let named = NamedTokens::read(&meta, vocab.tokens.len())?;

        let built = match model {
            "gpt2" => byte_level::build(&meta, &vocab)?,
            "llama" => sentencepiece::build(&meta, &vocab, named.unk)?,
            other => return Err(TokenizerError::UnsupportedGgufModel { model: other.to_string() }),
        };
        let Built { tokenizer: mut inner, spelled, default_add_bos } = built;
        add_tokens(&mut inner, &vocab, &spelled, &named);

        let explicit_add_bos = meta.bool(ADD_BOS)?;
        let add_bos = explicit_add_bos.unwrap_or(default_add_bos);
        let add_eos = meta.bool(ADD_EOS)?.unwrap_or(false);
        // A file that asks for a BOS it does not name contradicts itself (llama.cpp refuses it
        // too); a file that only inherits the default (SentencePiece, Llama 3) gets no BOS.
        if add_bos && named.bos.is_none() && explicit_add_bos == Some(true) {
            return Err(invalid(ADD_BOS, format!("true, but {BOS_ID} is not set")));
        }
        if add_eos && named.eos.is_none() {
            return Err(invalid(ADD_EOS, format!("true, but {EOS_ID} is not set")));
        }
        let spell = |id: Option<u32>| id.map(|id| (spelled[id as usize].as_str(), id));
        let bos = spell(named.bos).filter(|_| add_bos);
        let eos = spell(named.eos).filter(|_| add_eos);
        if let Some(processor) = post_processor(bos, eos)? {
            inner.with_post_processor(Some(processor));
        }

        let mut config = Map::new();
        for (field, id) in
            [("bos_token", named.bos), ("eos_token", named.eos), ("unk_token", named.unk), ("pad_token", named.pad)]
        {
            config.insert(field.to_string(), json!(spell(id).map(|(token, _)| token)));
        }
        config.insert("add_bos_token".to_string(), json!(bos.is_some()));
        config.insert("add_eos_token".to_string(), json!(eos.is_some()));
        if let Some(template) = meta.string(CHAT_TEMPLATE)? {
            config.insert("chat_template".to_string(), json!(template));
        }
        Tokenizer::from_tokenizers(inner).with_tokenizer_config(config.into())
    }
}

/// The vocabulary as the file lists it: `tokens[id]`, and its llama.cpp token type.
struct Vocabulary<'a> {
    tokens: Vec<&'a str>,
    types: Vec<i64>,
}

/// What a vocabulary builder hands back.
struct Built {
    tokenizer: tokenizers::Tokenizer,
    /// The key each id has in the model's vocabulary: the file's text, or a respelling of it
    /// (byte-level characters, "▁" for spaces) that the model can produce.
    spelled: Vec<String>,
    /// Whether BOS goes in front when the file does not say (`tokenizer.ggml.add_bos_token`).
    default_add_bos: bool,
}

/// The ids of the named special tokens (`tokenizer.ggml.*_token_id`).
struct NamedTokens {
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
}

impl NamedTokens {
    fn read(meta: &Metadata<'_>, vocab_size: usize) -> Result<Self, TokenizerError> {
        Ok(Self {
            bos: meta.token_id(BOS_ID, vocab_size)?,
            eos: meta.token_id(EOS_ID, vocab_size)?,
            unk: meta.token_id(UNK_ID, vocab_size)?,
            pad: meta.token_id(PAD_ID, vocab_size)?,
        })
    }

    fn contains(&self, id: u32) -> bool {
        [self.bos, self.eos, self.unk, self.pad].contains(&Some(id))
    }
}

/// Adds the control and named tokens as special added tokens and the user-defined ones as plain
/// added tokens, so that they are matched whole before the model sees the text. A token whose
/// model key is a respelling is left to the model: its file text is not what the text contains
/// (transformers skips those too).
fn add_tokens(inner: &mut tokenizers::Tokenizer, vocab: &Vocabulary<'_>, spelled: &[String], named: &NamedTokens) {
    let mut special = Vec::new();
    let mut plain = Vec::new();
    for (id, (&token, &kind)) in vocab.tokens.iter().zip(&vocab.types).enumerate() {
        if token.is_empty() || spelled[id] != token {
            continue;
        }
        if kind == CONTROL || named.contains(id as u32) {
            special.push(AddedToken::from(token, true).normalized(false));
        } else if kind == USER_DEFINED {
            plain.push(AddedToken::from(token, false).normalized(false));
        }
    }
    inner.add_special_tokens(&special);
    inner.add_tokens(&plain);
}

/// A post-processor putting BOS in front and EOS behind (`None` when neither is asked for).
fn post_processor(
    bos: Option<(&str, u32)>,
    eos: Option<(&str, u32)>,
) -> Result<Option<TemplateProcessing>, TokenizerError> {
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let sequence = |name: &str, type_id: u32| -> Vec<serde_json::Value> {
        let special = |token: Option<(&str, u32)>| {
            token.map(|(token, _)| json!({"SpecialToken": {"id": token, "type_id": type_id}}))
        };
        let middle = json!({"Sequence": {"id": name, "type_id": type_id}});
        special(bos).into_iter().chain([middle]).chain(special(eos)).collect()
    };
    let mut special_tokens = Map::new();
    for (token, id) in bos.into_iter().chain(eos) {
        special_tokens.insert(token.to_string(), json!({"id": token, "ids": [id], "tokens": [token]}));
    }
    // Built through serde: the template's string syntax cannot hold a token with a space or a
    // colon in it.
    let description = json!({
        "type": "TemplateProcessing",
        "single": sequence("A", 0),
        "pair": sequence("A", 0).into_iter().chain(sequence("B", 1)).collect::<Vec<_>>(),
        "special_tokens": special_tokens,
    });
    serde_json::from_value(description).map(Some).map_err(|error| TokenizerError::GgufTokenizer { error: error.into() })
}

/// Typed access to the GGUF metadata: an absent key is `Ok(None)`, a key of the wrong type an
/// error naming it.
struct Metadata<'a>(&'a Header);

impl<'a> Metadata<'a> {
    fn string(&self, key: &'static str) -> Result<Option<&'a str>, TokenizerError> {
        self.typed(key, "a string", Value::as_str)
    }

    fn bool(&self, key: &'static str) -> Result<Option<bool>, TokenizerError> {
        self.typed(key, "a boolean", |value| match value {
            Value::Bool(flag) => Some(*flag),
            _ => None,
        })
    }

    fn strings(&self, key: &'static str) -> Result<Option<Vec<&'a str>>, TokenizerError> {
        self.elements(key, "a string", Value::as_str)
    }

    fn integers(&self, key: &'static str) -> Result<Option<Vec<i64>>, TokenizerError> {
        self.elements(key, "an integer", Value::as_i64)
    }

    fn floats(&self, key: &'static str) -> Result<Option<Vec<f64>>, TokenizerError> {
        self.elements(key, "a number", Value::as_f64)
    }

    /// A token id. One outside the vocabulary is ignored with a warning, as llama.cpp does:
    /// files in circulation carry such ids (a padding id one past the end), and refusing them
    /// would refuse models that run elsewhere.
    fn token_id(&self, key: &'static str, vocab_size: usize) -> Result<Option<u32>, TokenizerError> {
        let Some(id) = self.typed(key, "an integer", Value::as_i64)? else { return Ok(None) };
        match u32::try_from(id) {
            Ok(id) if (id as usize) < vocab_size => Ok(Some(id)),
            _ => {
                tracing::warn!(key, id, vocab_size, "special token id outside the vocabulary; ignored");
                Ok(None)
            }
        }
    }

    fn typed<T>(
        &self,
        key: &'static str,
        expected: &str,
        read: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, TokenizerError> {
        let Some(value) = self.0.get(key) else { return Ok(None) };
        read(value).map(Some).ok_or_else(|| invalid(key, format!("expected {expected}, found {}", kind(value))))
    }

    fn elements<T>(
        &self,
        key: &'static str,
        expected: &str,
        read: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>, TokenizerError> {
        let Some(values) = self.typed(key, "an array", Value::as_array)? else { return Ok(None) };
        let read_one = |(index, value): (usize, &'a Value)| {
            read(value)
                .ok_or_else(|| invalid(key, format!("element {index}: expected {expected}, found {}", kind(value))))
        };
        values.iter().enumerate().map(read_one).collect::<Result<Vec<T>, _>>().map(Some)
    }
}

/// How a metadata value is described in an error.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Bool(_) => "a boolean",
        Value::Array(_) => "an array",
        Value::F32(_) | Value::F64(_) => "a number",
        _ => "an integer",
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> TokenizerError {
    TokenizerError::InvalidGgufKey { key, message: message.into() }
}

/// The token → id map of a model: a token listed twice maps to its last id, as in llama.cpp and
/// transformers (the earlier id still decodes through llama.cpp, but not here).
fn vocabulary_map(spelled: &[String]) -> tokenizers::models::bpe::Vocab {
    let mut map = tokenizers::models::bpe::Vocab::with_capacity(spelled.len());
    let mut repeats = 0usize;
    for (id, token) in spelled.iter().enumerate() {
        repeats += usize::from(map.insert(token.clone(), id as u32).is_some());
    }
    if repeats > 0 {
        tracing::warn!(repeats, "GGUF vocabulary lists some tokens more than once; the last id of each is used");
    }
    map
}

#[cfg(test)]
mod tests;
