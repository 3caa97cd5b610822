//! `tokenizer.ggml.model = "llama"`: SentencePiece BPE, as Llama 2, Mistral and Gemma use.
//!
//! The file has the pieces and their scores but no merges. llama.cpp's SPM tokenizer merges, at
//! each step, the adjacent pair whose joined piece has the highest score; a BPE model whose
//! merges are every split of every piece, ranked by that score, does the same.

use std::cmp::Ordering;
use std::collections::HashSet;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{DecoderWrapper, NormalizerWrapper};

use super::{ADD_SPACE_PREFIX, ARCHITECTURE, Built, Metadata, SCORES, Vocabulary, invalid, vocabulary_map};
use crate::tokenizer::TokenizerError;

/// SentencePiece's stand-in for a space.
const SPACE: &str = "\u{2581}";

/// SentencePiece BPE from `tokens` and `scores`, with byte fallback.
pub(super) fn build(meta: &Metadata<'_>, vocab: &Vocabulary<'_>, unk: Option<u32>) -> Result<Built, TokenizerError> {
    let scores = meta.floats(SCORES)?.ok_or(TokenizerError::MissingGgufKey { key: SCORES })?;
    if scores.len() != vocab.tokens.len() {
        return Err(invalid(SCORES, format!("{} scores for {} tokens", scores.len(), vocab.tokens.len())));
    }
    // Gemma's files differ in two ways (transformers' `gemma_tokenizer` handles the same two):
    // whitespace runs are stored with real spaces, which the model never sees, and its
    // user-defined tokens are scored -1000, out of step with the merge order, which is the
    // order of the vocabulary (llama.cpp gets the same result by matching the runs in the raw
    // text as user-defined tokens). transformers names gemma, gemma2 and gemma3; the prefix also
    // takes in gemma3n and gemma-embedding, assumed (not checked on a file) to be laid out alike.
    let gemma = meta.string(ARCHITECTURE)?.is_some_and(|architecture| architecture.starts_with("gemma"));
    let spelled: Vec<String> = vocab
        .tokens
        .iter()
        .map(
            |&token| if gemma && is_space_run(token) { SPACE.repeat(token.chars().count()) } else { token.to_string() },
        )
        .collect();
    let ranks: Vec<f64> = if gemma { (0..spelled.len()).map(|id| -(id as f64)).collect() } else { scores };
    let map = vocabulary_map(&spelled);
    let merges = derive_merges(&spelled, &map, &ranks);

    let mut model = BPE::builder().vocab_and_merges(map, merges).byte_fallback(true).fuse_unk(true);
    if let Some(unk) = unk {
        model = model.unk_token(spelled[unk as usize].clone());
    }
    let model = model.build().map_err(|error| TokenizerError::GgufTokenizer { error })?;

    // llama.cpp prepends a space to each text fragment when add_space_prefix holds, which it
    // does for SentencePiece unless the file says otherwise; Gemma's files say otherwise, and
    // transformers never prepends for Gemma.
    let prefix = meta.bool(ADD_SPACE_PREFIX)?.unwrap_or(!gemma);
    let replace =
        |from: &str, to: &str| Replace::new(from, to).map_err(|error| TokenizerError::GgufTokenizer { error });
    let mut normalizers = Vec::new();
    if prefix {
        normalizers.push(NormalizerWrapper::Prepend(Prepend::new(SPACE.to_string())));
    }
    normalizers.push(NormalizerWrapper::Replace(replace(" ", SPACE)?));
    let mut decoders = vec![
        DecoderWrapper::Replace(replace(SPACE, " ")?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if prefix {
        decoders.push(DecoderWrapper::Strip(Strip::new(' ', 1, 0)));
    }

    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(Built { tokenizer, spelled, default_add_bos: true })
}

/// A token of whitespace only, with a space in it (Python's `" " in t and not t.strip()`).
fn is_space_run(token: &str) -> bool {
    token.contains(' ') && token.chars().all(char::is_whitespace)
}

/// Every split of every token into two tokens of the vocabulary, best first: by the rank of the
/// token they join into (highest first), then by longer left and right sides. Ties keep the
/// order transformers' `generate_merges` gives them (tokens in vocabulary order, a token's
/// splits by the ids of their sides), so the two build the same model.
fn derive_merges(spelled: &[String], vocab: &Vocab, ranks: &[f64]) -> Vec<(String, String)> {
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    for token in spelled {
        if !seen.insert(token.as_str()) {
            continue;
        }
        // Python compares -0.0 and 0.0 as equal, and a NaN score can only sort last.
        let rank = match ranks[vocab[token] as usize] {
            rank if rank.is_nan() => f64::NEG_INFINITY,
            rank => rank + 0.0,
        };
        let mut splits: Vec<(u32, u32, &str, &str)> = token
            .char_indices()
            .skip(1)
            .filter_map(|(at, _)| {
                let (left, right) = token.split_at(at);
                Some((*vocab.get(left)?, *vocab.get(right)?, left, right))
            })
            .collect();
        splits.sort_by_key(|&(left, right, ..)| (left, right));
        candidates.extend(
            splits
                .into_iter()
                .map(|(.., left, right)| (rank, left.chars().count(), right.chars().count(), left, right)),
        );
    }
    // A stable sort, as Python's: equal keys keep the order above.
    candidates.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
    candidates.into_iter().map(|(.., left, right)| (left.to_string(), right.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spelled(tokens: &[&str]) -> Vec<String> {
        tokens.iter().map(|token| token.to_string()).collect()
    }

    #[test]
    fn merges_rank_by_the_joined_token_then_by_longer_sides() {
        let tokens = spelled(&["a", "b", "c", "ab", "bc", "abc"]);
        let map = vocabulary_map(&tokens);
        let ranks = [0.0, 0.0, 0.0, -1.0, -2.0, -0.5];
        let merges = derive_merges(&tokens, &map, &ranks);
        let pairs: Vec<(&str, &str)> = merges.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
        // "abc" (-0.5) first, its split with the longer left side ("ab" + "c") before "a" + "bc".
        assert_eq!(pairs, [("ab", "c"), ("a", "bc"), ("a", "b"), ("b", "c")]);
    }

    #[test]
    fn whitespace_runs_are_spotted() {
        assert!(is_space_run("  ") && is_space_run(" \t"));
        assert!(!is_space_run("\t\t") && !is_space_run(" a") && !is_space_run(""));
    }
}
