//! `tokenizer.ggml.model = "gpt2"`: byte-level BPE, as GPT-2, Llama 3, Qwen and SmolLM use.

use std::collections::HashSet;

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use super::{Built, CONTROL, MERGES, Metadata, PRE, USER_DEFINED, Vocabulary, invalid, vocabulary_map};
use crate::tokenizer::TokenizerError;

// The split regexes of the models' own tokenizer.json files (llama.cpp rewrites some for its
// regex engine; these are the originals, which the `tokenizers` crate runs as they are).
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);
const TEKKEN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*",
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);

/// How the text is cut into words before the merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WordSplit {
    /// GPT-2's regex, built into the `ByteLevel` pre-tokenizer.
    Gpt2,
    /// Every digit on its own (llama.cpp's `\p{N}`), then GPT-2's regex.
    DigitsThenGpt2,
    /// One regex, its matches kept as words (llama.cpp keeps the text between matches too).
    Regex(&'static str),
}

/// What `tokenizer.ggml.pre` stands for, after llama.cpp's `llm_tokenizer_bpe` (src/llama-vocab.cpp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PreTokenizer {
    split: WordSplit,
    /// A word the vocabulary has whole is one token, merges or not (llama.cpp's `ignore_merges`).
    ignore_merges: bool,
    /// llama.cpp adds BOS for these unless the file says otherwise.
    add_bos: bool,
}

impl PreTokenizer {
    fn named(name: Option<&str>) -> Self {
        let plain = |split| Self { split, ignore_merges: false, add_bos: false };
        let llama3 = Self { split: WordSplit::Regex(LLAMA3), ignore_merges: true, add_bos: true };
        match name {
            Some("default" | "gpt2" | "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "exaone4" | "trillion") => {
                plain(WordSplit::Gpt2)
            }
            Some("smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b") => {
                plain(WordSplit::DigitsThenGpt2)
            }
            Some("llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2") => {
                llama3
            }
            Some("dbrx" | "smaug-bpe") => plain(WordSplit::Regex(LLAMA3)),
            Some("qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2" | "hunyuan") => {
                plain(WordSplit::Regex(QWEN2))
            }
            Some("qwen35") => plain(WordSplit::Regex(QWEN35)),
            Some("gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2") => plain(WordSplit::Regex(GPT4O)),
            Some("tekken") => Self { split: WordSplit::Regex(TEKKEN), ..llama3 },
            Some(other) => {
                tracing::warn!(pre = other, "unknown tokenizer.ggml.pre; splitting words with the GPT-2 regex");
                plain(WordSplit::Gpt2)
            }
            None => {
                tracing::warn!("no tokenizer.ggml.pre; splitting words with the GPT-2 regex");
                plain(WordSplit::Gpt2)
            }
        }
    }

    fn build(self) -> Result<PreTokenizerWrapper, TokenizerError> {
        let byte_level = |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
        Ok(match self.split {
            WordSplit::Gpt2 => byte_level(true),
            WordSplit::DigitsThenGpt2 => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                byte_level(true),
            ])),
            WordSplit::Regex(regex) => {
                let split = Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(|error| TokenizerError::GgufTokenizer { error })?;
                PreTokenizerWrapper::Sequence(Sequence::new(vec![PreTokenizerWrapper::Split(split), byte_level(false)]))
            }
        })
    }
}

/// Byte-level BPE from `tokens` and `merges`, split by the words of `tokenizer.ggml.pre`.
pub(super) fn build(meta: &Metadata<'_>, vocab: &Vocabulary<'_>) -> Result<Built, TokenizerError> {
    let pre = PreTokenizer::named(meta.string(PRE)?);
    let spelled = spell(vocab);
    let map = vocabulary_map(&spelled);
    let merges = meta.strings(MERGES)?.ok_or(TokenizerError::MissingGgufKey { key: MERGES })?;
    let merges = parse_merges(&merges, &map)?;
    let model = BPE::builder()
        .vocab_and_merges(map, merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|error| TokenizerError::GgufTokenizer { error })?;
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(pre.build()?));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(Built { tokenizer, spelled, default_add_bos: pre.add_bos })
}

/// GPT-2's map of the 256 bytes to printable characters (`bytes_to_unicode`): the printable
/// Latin-1 bytes stand for themselves, the others for U+0100 onwards, in byte order.
fn byte_chars() -> [char; 256] {
    let mut chars = ['\0'; 256];
    let mut next = 0x100;
    for (byte, slot) in chars.iter_mut().enumerate() {
        let printable = matches!(byte, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        *slot = if printable {
            char::from(byte as u8)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("U+0100..U+0143 are characters")
        };
    }
    chars
}

/// The vocabulary keys. Tokens are stored in the byte alphabet, except a few that converters
/// write as plain text: those are respelled byte by byte (as transformers does), but control and
/// user-defined tokens keep their text, since they are matched in the text as written (as
/// llama.cpp matches them; transformers cannot match those spelled outside the alphabet).
fn spell(vocab: &Vocabulary<'_>) -> Vec<String> {
    let chars = byte_chars();
    let alphabet: HashSet<char> = chars.iter().copied().collect();
    let respell = |token: &str| token.bytes().map(|byte| chars[byte as usize]).collect::<String>();
    let as_written = |token: &str, kind: i64| {
        kind == CONTROL || kind == USER_DEFINED || token.chars().all(|c| alphabet.contains(&c))
    };
    vocab
        .tokens
        .iter()
        .zip(&vocab.types)
        .map(|(&token, &kind)| if as_written(token, kind) { token.to_string() } else { respell(token) })
        .collect()
}

/// `"left right"` pairs, checked against the vocabulary (the `tokenizers` crate would refuse
/// them too, without saying which merge).
fn parse_merges(merges: &[&str], vocab: &Vocab) -> Result<Vec<(String, String)>, TokenizerError> {
    merges
        .iter()
        .enumerate()
        .map(|(index, merge)| {
            // As llama.cpp: the first space after the first byte separates the two sides, so a
            // left side may itself be a space (it never is in the byte alphabet, but in files
            // that respell nothing it can be).
            let split = merge.bytes().skip(1).position(|byte| byte == b' ').map(|at| at + 1);
            let Some(split) = split else {
                return Err(invalid(
                    MERGES,
                    format!("merge {index} ({merge:?}) is not two tokens separated by a space"),
                ));
            };
            let (left, right) = (&merge[..split], &merge[split + 1..]);
            let joined = format!("{left}{right}");
            if let Some(missing) = [left, right, joined.as_str()].into_iter().find(|token| !vocab.contains_key(*token))
            {
                return Err(invalid(
                    MERGES,
                    format!("merge {index} ({merge:?}): {missing:?} is not in the vocabulary"),
                ));
            }
            Ok((left.to_string(), right.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let chars = byte_chars();
        assert_eq!(chars[b' ' as usize], 'Ġ');
        assert_eq!(chars[b'\n' as usize], 'Ċ');
        assert_eq!(chars[b'a' as usize], 'a');
        assert_eq!(chars[0xAD], 'Ń');
        assert_eq!(chars.iter().copied().collect::<HashSet<_>>().len(), 256);
    }

    #[test]
    fn known_pre_tokenizers_follow_llama_cpp() {
        assert_eq!(PreTokenizer::named(Some("smollm")).split, WordSplit::DigitsThenGpt2);
        assert_eq!(PreTokenizer::named(Some("gpt-2")).split, WordSplit::Gpt2);
        let llama3 = PreTokenizer::named(Some("llama-bpe"));
        assert!(llama3.ignore_merges && llama3.add_bos && llama3.split == WordSplit::Regex(LLAMA3));
        assert_eq!(PreTokenizer::named(Some("qwen2")).split, WordSplit::Regex(QWEN2));
        assert_eq!(PreTokenizer::named(Some("no-such-thing")).split, WordSplit::Gpt2);
        for name in ["gpt-2", "smollm", "llama3", "qwen2", "qwen35", "gpt-4o", "tekken"] {
            PreTokenizer::named(Some(name)).build().unwrap();
        }
    }
}
