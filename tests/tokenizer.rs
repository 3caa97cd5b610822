//! The tokenizer against transformers' golden values (tests/fixtures/tokenizer-tiny, made by
//! gen_tokenizer.py there), the stream decoder on byte-level and SentencePiece-style tokenizers,
//! the EOS id union, and the errors for broken folders.

use std::fs;
use std::path::{Path, PathBuf};

use mlxcel::tokenizer::{StreamDecoder, Tokenizer, TokenizerError, eos_token_ids};
use serde::Deserialize;
use serde_json::json;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper};

const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer-tiny")
}

fn fixture_tokenizer() -> Tokenizer {
    Tokenizer::from_dir(&fixture_dir()).unwrap()
}

#[derive(Deserialize)]
struct Golden {
    vocab_size: usize,
    cases: Vec<GoldenCase>,
}

#[derive(Deserialize)]
struct GoldenCase {
    text: String,
    ids: Vec<u32>,
    ids_without_special: Vec<u32>,
    tokens: Vec<String>,
    decoded: String,
    decoded_skip_special: String,
    decoded_without_special: String,
}

fn golden() -> Golden {
    let text = fs::read_to_string(fixture_dir().join("golden.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Pushes `ids` one at a time, then finishes; returns every non-empty delta in order.
fn stream_all(decoder: &mut StreamDecoder<'_>, ids: &[u32]) -> Vec<String> {
    let mut deltas: Vec<String> = ids.iter().filter_map(|&id| decoder.push(id).unwrap()).collect();
    deltas.extend(decoder.finish().unwrap());
    deltas
}

/// Streams `ids` and checks the deltas against the full decode: same text when joined, no empty
/// delta, no U+FFFD unless the full decode has one, and every delta ending on a character
/// boundary of the full text (no character split between deltas).
fn check_stream(tokenizer: &Tokenizer, ids: &[u32], skip_special_tokens: bool) -> Vec<String> {
    let full = tokenizer.decode(ids, skip_special_tokens).unwrap();
    let deltas = stream_all(&mut tokenizer.stream_decoder(skip_special_tokens), ids);
    assert_eq!(deltas.concat(), full, "stream of {ids:?} (skip_special_tokens {skip_special_tokens}): {deltas:?}");
    let mut end = 0;
    for delta in &deltas {
        assert!(!delta.is_empty(), "empty delta in {deltas:?}");
        if !full.contains(REPLACEMENT) {
            assert!(!delta.contains(REPLACEMENT), "U+FFFD in delta {delta:?} of {deltas:?}");
        }
        end += delta.len();
        assert!(full.is_char_boundary(end), "delta {delta:?} ends inside a character of {full:?}");
    }
    deltas
}

// ---------------------------------------------------------------------------------------------
// The fixture against transformers

#[test]
fn fixture_matches_the_tiny_gemma3n_model() {
    let tokenizer = fixture_tokenizer();
    assert_eq!(tokenizer.vocab_size(), golden().vocab_size);
    assert!(tokenizer.vocab_size() <= 512, "the test model has 512 embedding rows");
    for (id, token) in ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"].iter().enumerate() {
        assert_eq!(tokenizer.token_to_id(token), Some(id as u32), "{token}");
        assert_eq!(tokenizer.id_to_token(id as u32).as_deref(), Some(*token));
        assert!(tokenizer.is_special(id as u32), "{token} is special");
    }
    assert!(!tokenizer.is_special(100));
    assert_eq!((tokenizer.bos_token(), tokenizer.bos_token_id()), (Some("<bos>"), Some(2)));
    assert_eq!((tokenizer.eos_token(), tokenizer.eos_token_id()), (Some("<eos>"), Some(1)));
    assert_eq!((tokenizer.pad_token(), tokenizer.pad_token_id()), (Some("<pad>"), Some(0)));
    assert_eq!((tokenizer.unk_token(), tokenizer.unk_token_id()), (Some("<unk>"), Some(3)));
    assert_eq!(tokenizer.add_bos_token(), Some(true));
    assert_eq!(tokenizer.add_eos_token(), Some(false));
    let template = tokenizer.tokenizer_config().and_then(|config| config["chat_template"].as_str());
    assert!(template.is_some_and(|template| template.contains("<start_of_turn>")), "{template:?}");
    assert_eq!(tokenizer.id_to_token(100_000), None);
    assert_eq!(tokenizer.token_to_id("not a token"), None);
}

#[test]
fn encodings_match_transformers() {
    let tokenizer = fixture_tokenizer();
    for case in golden().cases {
        assert_eq!(tokenizer.encode(&case.text, true).unwrap(), case.ids, "{:?} with special tokens", case.text);
        assert_eq!(tokenizer.encode(&case.text, false).unwrap(), case.ids_without_special, "{:?}", case.text);
        let tokens: Vec<String> = case.ids.iter().map(|&id| tokenizer.id_to_token(id).unwrap()).collect();
        assert_eq!(tokens, case.tokens, "{:?}", case.text);
    }
}

#[test]
fn decodings_match_transformers() {
    let tokenizer = fixture_tokenizer();
    for case in golden().cases {
        assert_eq!(tokenizer.decode(&case.ids, false).unwrap(), case.decoded, "{:?}", case.text);
        assert_eq!(tokenizer.decode(&case.ids, true).unwrap(), case.decoded_skip_special, "{:?}", case.text);
        let without = tokenizer.decode(&case.ids_without_special, false).unwrap();
        assert_eq!(without, case.decoded_without_special, "{:?}", case.text);
        assert_eq!(without, case.text, "byte-level BPE round-trips");
    }
}

#[test]
fn streaming_every_golden_string_equals_the_full_decode() {
    let tokenizer = fixture_tokenizer();
    for case in golden().cases {
        for skip_special_tokens in [false, true] {
            check_stream(&tokenizer, &case.ids, skip_special_tokens);
            check_stream(&tokenizer, &case.ids_without_special, skip_special_tokens);
        }
    }
}

#[test]
fn streaming_holds_back_characters_split_over_byte_tokens() {
    let tokenizer = fixture_tokenizer();
    let text = "🙂👍🏽";
    let ids = tokenizer.encode(text, false).unwrap();
    // Each emoji is four bytes, and the tiny vocabulary has no merge for them.
    assert!(ids.len() > 3, "{ids:?}");
    let mut decoder = tokenizer.stream_decoder(true);
    let pushed: Vec<Option<String>> = ids.iter().map(|&id| decoder.push(id).unwrap()).collect();
    assert!(pushed.iter().any(Option::is_none), "some ids complete no character: {pushed:?}");
    let emitted: Vec<&str> = pushed.iter().flatten().map(String::as_str).collect();
    assert_eq!(emitted, ["🙂", "👍", "🏽"]);
    assert_eq!(decoder.finish().unwrap(), None);
}

#[test]
fn streaming_keeps_byte_level_spaces_and_specials() {
    let tokenizer = fixture_tokenizer();
    let ids = tokenizer.encode("<start_of_turn>user\n  Hi there  <end_of_turn>", true).unwrap();
    let with_specials = check_stream(&tokenizer, &ids, false);
    assert_eq!(with_specials.first().map(String::as_str), Some("<bos>"));
    assert_eq!(with_specials.concat(), "<bos><start_of_turn>user\n  Hi there  <end_of_turn>");
    let without = check_stream(&tokenizer, &ids, true);
    assert_eq!(without.concat(), "user\n  Hi there  ");
}

#[test]
fn streaming_drops_unknown_ids_like_decode() {
    let tokenizer = fixture_tokenizer();
    let mut ids = tokenizer.encode("Hello", false).unwrap();
    ids.insert(1, 9_999);
    assert_eq!(check_stream(&tokenizer, &ids, false).concat(), "Hello");
}

// ---------------------------------------------------------------------------------------------
// SentencePiece-style tokenizers: `▁` for spaces, byte fallback for what the vocabulary lacks

const SPM_TOKENS: [&str; 31] = [
    "<unk>", "<s>", "</s>", "<0x0A>", "<0x82>", "<0x99>", "<0x9F>", "<0xA9>", "<0xC3>", "<0xF0>", "▁", "H", "e", "l",
    "o", "w", "r", "d", "c", "a", "f", "ll", "▁H", "▁He", "▁Hell", "▁Hello", "▁w", "or", "▁wor", "▁worl", "▁world",
];
const SPM_MERGES: [(&str, &str); 10] = [
    ("l", "l"),
    ("▁", "H"),
    ("▁H", "e"),
    ("▁He", "ll"),
    ("▁Hell", "o"),
    ("▁", "w"),
    ("o", "r"),
    ("▁w", "or"),
    ("▁wor", "l"),
    ("▁worl", "d"),
];

fn spm_id(token: &str) -> u32 {
    SPM_TOKENS.iter().position(|&candidate| candidate == token).unwrap() as u32
}

#[derive(Clone, Copy, Debug)]
enum SpmStyle {
    /// Metaspace pre-tokenizer and decoder (after byte fallback): the decoder drops the `▁` of
    /// the first token only.
    Metaspace,
    /// Llama 2's tokenizer.json: `▁` put in by the normalizer; the decoder turns `▁` into spaces,
    /// fuses, and strips one leading space from the whole text.
    LlamaStrip,
}

fn spm_tokenizer(style: SpmStyle) -> Tokenizer {
    let vocab: [(String, u32); SPM_TOKENS.len()] = std::array::from_fn(|id| (SPM_TOKENS[id].to_string(), id as u32));
    let merges = SPM_MERGES.iter().map(|(left, right)| (left.to_string(), right.to_string())).collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token("<unk>".to_string())
        .byte_fallback(true)
        .build()
        .unwrap();
    let mut inner = tokenizers::Tokenizer::new(bpe);
    match style {
        SpmStyle::Metaspace => {
            inner.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, true)));
            inner.with_decoder(Some(DecoderSequence::new(vec![
                DecoderWrapper::ByteFallback(ByteFallback::new()),
                DecoderWrapper::Metaspace(Metaspace::new('▁', PrependScheme::First, true)),
            ])));
        }
        SpmStyle::LlamaStrip => {
            inner.with_normalizer(Some(NormalizerSequence::new(vec![
                NormalizerWrapper::Prepend(Prepend::new("▁".to_string())),
                NormalizerWrapper::Replace(Replace::new(" ", "▁").unwrap()),
            ])));
            inner.with_decoder(Some(DecoderSequence::new(vec![
                DecoderWrapper::Replace(Replace::new("▁", " ").unwrap()),
                DecoderWrapper::ByteFallback(ByteFallback::new()),
                DecoderWrapper::Fuse(Fuse::new()),
                DecoderWrapper::Strip(Strip::new(' ', 1, 0)),
            ])));
        }
    }
    inner.add_special_tokens(&[
        AddedToken::from("<unk>", true),
        AddedToken::from("<s>", true),
        AddedToken::from("</s>", true),
    ]);
    let post_processor = TemplateProcessing::builder()
        .try_single("<s> $A")
        .unwrap()
        .special_tokens(vec![("<s>", spm_id("<s>"))])
        .build()
        .unwrap();
    inner.with_post_processor(Some(post_processor));
    Tokenizer::from_tokenizers(inner)
}

const SPM_STYLES: [SpmStyle; 2] = [SpmStyle::Metaspace, SpmStyle::LlamaStrip];

#[test]
fn spm_fixture_splits_as_intended() {
    for style in SPM_STYLES {
        let tokenizer = spm_tokenizer(style);
        let ids = tokenizer.encode("Hello world café 🙂", true).unwrap();
        let tokens: Vec<String> = ids.iter().map(|&id| tokenizer.id_to_token(id).unwrap()).collect();
        let expected = [
            "<s>", "▁Hello", "▁world", "▁", "c", "a", "f", "<0xC3>", "<0xA9>", "▁", "<0xF0>", "<0x9F>", "<0x99>",
            "<0x82>",
        ];
        assert_eq!(tokens, expected, "{style:?}");
        assert_eq!(tokenizer.decode(&ids, true).unwrap(), "Hello world café 🙂", "{style:?}");
    }
}

#[test]
fn spm_stream_keeps_the_space_a_lone_token_decode_drops() {
    for style in SPM_STYLES {
        let tokenizer = spm_tokenizer(style);
        let world = spm_id("▁world");
        // Alone, the token is at the start of the text, where the decoder drops its space ...
        assert_eq!(tokenizer.decode(&[world], true).unwrap(), "world", "{style:?}");
        // ... but after another token the stream must keep it.
        let mut decoder = tokenizer.stream_decoder(true);
        assert_eq!(decoder.push(spm_id("<s>")).unwrap(), None, "{style:?}");
        assert_eq!(decoder.push(spm_id("▁Hello")).unwrap().as_deref(), Some("Hello"), "{style:?}: first space dropped");
        assert_eq!(decoder.push(world).unwrap().as_deref(), Some(" world"), "{style:?}");
        assert_eq!(decoder.push(world).unwrap().as_deref(), Some(" world"), "{style:?}");
        assert_eq!(decoder.finish().unwrap(), None);
    }
}

#[test]
fn spm_stream_completes_byte_fallback_characters() {
    for style in SPM_STYLES {
        let tokenizer = spm_tokenizer(style);
        let mut decoder = tokenizer.stream_decoder(true);
        let mut push = |token: &str| decoder.push(spm_id(token)).unwrap();
        assert_eq!(push("▁Hello").as_deref(), Some("Hello"), "{style:?}");
        assert_eq!(push("▁").as_deref(), Some(" "), "{style:?}");
        assert_eq!(push("<0xF0>"), None, "{style:?}: 1 of 4 bytes");
        assert_eq!(push("<0x9F>"), None, "{style:?}: 2 of 4 bytes");
        assert_eq!(push("<0x99>"), None, "{style:?}: 3 of 4 bytes");
        assert_eq!(push("<0x82>").as_deref(), Some("🙂"), "{style:?}");
        assert_eq!(push("<0xC3>"), None, "{style:?}");
        assert_eq!(push("<0xA9>").as_deref(), Some("é"), "{style:?}: bytes right after other bytes");
        assert_eq!(push("▁world").as_deref(), Some(" world"), "{style:?}");
    }
}

#[test]
fn spm_stream_equals_full_decode() {
    let texts = ["Hello world café 🙂", " Hello", "Hello\nworld", "🙂🙂 world", "  Hello  world  ", "é"];
    for style in SPM_STYLES {
        let tokenizer = spm_tokenizer(style);
        for text in texts {
            let ids = tokenizer.encode(text, true).unwrap();
            for skip_special_tokens in [false, true] {
                check_stream(&tokenizer, &ids, skip_special_tokens);
            }
        }
    }
}

#[test]
fn spm_stream_flushes_incomplete_bytes_on_finish() {
    for style in SPM_STYLES {
        let tokenizer = spm_tokenizer(style);
        let ids = [spm_id("▁Hello"), spm_id("<0xF0>"), spm_id("<0x9F>")];
        let mut decoder = tokenizer.stream_decoder(true);
        assert_eq!(decoder.push(ids[0]).unwrap().as_deref(), Some("Hello"));
        assert_eq!(decoder.push(ids[1]).unwrap(), None);
        assert_eq!(decoder.push(ids[2]).unwrap(), None);
        let full = tokenizer.decode(&ids, true).unwrap();
        assert_eq!(full, "Hello\u{FFFD}\u{FFFD}", "{style:?}");
        assert_eq!(decoder.finish().unwrap().as_deref(), Some("\u{FFFD}\u{FFFD}"), "{style:?}");
        assert_eq!(decoder.finish().unwrap(), None, "nothing left");
    }
}

#[test]
fn spm_stream_does_not_hold_invalid_bytes_forever() {
    for style in SPM_STYLES {
        let tokenizer = spm_tokenizer(style);
        // A lone lead byte followed by text: invalid, but the text after it must still come out.
        let ids = [spm_id("<0xF0>"), spm_id("▁Hello")];
        let deltas = check_stream(&tokenizer, &ids, true);
        assert!(deltas.concat().ends_with("Hello"), "{style:?}: {deltas:?}");
        // A long run of bytes that never makes a character is emitted before the end, so the
        // window the decoder re-reads stays bounded.
        let run = vec![spm_id("<0xF0>"); 40];
        let mut decoder = tokenizer.stream_decoder(true);
        let emitted_before_finish: String = run.iter().filter_map(|&id| decoder.push(id).unwrap()).collect();
        assert!(!emitted_before_finish.is_empty(), "{style:?}");
        let all = emitted_before_finish + &decoder.finish().unwrap().unwrap_or_default();
        assert_eq!(all, tokenizer.decode(&run, true).unwrap(), "{style:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// EOS ids

fn write(dir: &Path, file: &str, value: serde_json::Value) {
    fs::write(dir.join(file), serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

#[test]
fn eos_ids_of_the_fixture_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3n-tiny/fp32");
    for file in ["config.json", "generation_config.json"] {
        fs::copy(model.join(file), dir.path().join(file)).unwrap();
    }
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        fs::copy(fixture_dir().join(file), dir.path().join(file)).unwrap();
    }
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(eos_token_ids(dir.path(), Some(&tokenizer)).unwrap(), [1]);
}

#[test]
fn eos_ids_are_the_union_of_every_source_in_order() {
    let tokenizer = fixture_tokenizer();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.json", json!({"eos_token_id": 1, "text_config": {"eos_token_id": [1, 106]}}));
    write(dir.path(), "generation_config.json", json!({"eos_token_id": [107, 1, 106]}));
    write(dir.path(), "tokenizer_config.json", json!({"eos_token": "<end_of_turn>"}));
    // <end_of_turn> is 5; the tokenizer's own EOS (<eos>, 1) is already in.
    assert_eq!(eos_token_ids(dir.path(), Some(&tokenizer)).unwrap(), [1, 106, 107, 5]);
    // Without a tokenizer the eos_token string cannot be resolved.
    assert_eq!(eos_token_ids(dir.path(), None).unwrap(), [1, 106, 107]);
}

#[test]
fn eos_ids_accept_each_shape() {
    let tokenizer = fixture_tokenizer();
    let dir = tempfile::tempdir().unwrap();
    // Only a nested text_config (multimodal checkpoints), as a single integer.
    write(dir.path(), "config.json", json!({"text_config": {"eos_token_id": 7}, "eos_token_id": null}));
    write(dir.path(), "tokenizer_config.json", json!({"eos_token": {"content": "<end_of_turn>", "special": true}}));
    assert_eq!(eos_token_ids(dir.path(), Some(&tokenizer)).unwrap(), [7, 5, 1]);

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "generation_config.json", json!({"eos_token_id": [3, 4]}));
    assert_eq!(eos_token_ids(dir.path(), None).unwrap(), [3, 4]);
    // The tokenizer's own EOS comes last when no tokenizer_config.json names one.
    assert_eq!(eos_token_ids(dir.path(), Some(&tokenizer)).unwrap(), [3, 4, 1]);
}

#[test]
fn eos_ids_of_an_empty_folder_are_empty() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(eos_token_ids(dir.path(), None).unwrap(), Vec::<u32>::new());
}

#[test]
fn eos_ids_from_malformed_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.json", json!({"eos_token_id": 1}));
    fs::write(dir.path().join("generation_config.json"), "{\"eos_token_id\": [1,").unwrap();
    let error = eos_token_ids(dir.path(), None).unwrap_err();
    assert!(matches!(error, TokenizerError::InvalidJson { .. }), "{error:?}");
    assert!(error.to_string().contains("generation_config.json"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.json", json!({"text_config": {"eos_token_id": ["</s>"]}}));
    let error = eos_token_ids(dir.path(), None).unwrap_err().to_string();
    assert!(error.contains("config.json") && error.contains("text_config.eos_token_id"), "{error}");

    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.json", json!({"eos_token_id": -1}));
    let error = eos_token_ids(dir.path(), None).unwrap_err().to_string();
    assert!(error.contains("eos_token_id") && error.contains("-1"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Broken folders

#[test]
fn missing_tokenizer_json_says_the_folder_has_no_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let error = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(error, TokenizerError::MissingTokenizer { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&dir.path().join("tokenizer.json").display().to_string()), "{message}");
    assert!(message.contains("has no tokenizer"), "{message}");
}

#[test]
fn corrupt_tokenizer_json_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for content in ["{\"model\": ", "{\"version\": \"1.0\"}", "not json at all"] {
        fs::write(dir.path().join("tokenizer.json"), content).unwrap();
        let error = Tokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(error, TokenizerError::InvalidTokenizer { .. }), "{content}: {error:?}");
        assert!(error.to_string().contains("tokenizer.json"), "{error}");
    }
}

#[test]
fn corrupt_tokenizer_config_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(fixture_dir().join("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    fs::write(dir.path().join("tokenizer_config.json"), "{\"bos_token\": ").unwrap();
    let error = Tokenizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(error, TokenizerError::InvalidJson { .. }), "{error:?}");
    assert!(error.to_string().contains("tokenizer_config.json"), "{error}");

    write(dir.path(), "tokenizer_config.json", json!({"bos_token": 2}));
    let error = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
    assert!(error.contains("tokenizer_config.json") && error.contains("bos_token"), "{error}");
}

#[test]
fn folder_without_tokenizer_config_has_no_named_special_tokens() {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(fixture_dir().join("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
    assert_eq!(tokenizer.tokenizer_config(), None);
    assert_eq!((tokenizer.bos_token(), tokenizer.eos_token_id()), (None, None));
    // tokenizer.json's post-processor still adds <bos>.
    assert_eq!(tokenizer.encode("Hello", true).unwrap()[0], 2);
}

#[test]
fn config_supplied_in_memory_names_the_special_tokens() {
    let inner = fixture_tokenizer().inner().clone();
    let config = json!({
        "bos_token": {"__type": "AddedToken", "content": "<bos>"},
        "eos_token": "<end_of_turn>",
        "add_bos_token": "yes",
        "chat_template": "{{ messages }}",
    });
    let tokenizer = Tokenizer::from_tokenizers(inner).with_tokenizer_config(config).unwrap();
    assert_eq!(tokenizer.bos_token_id(), Some(2));
    assert_eq!(tokenizer.eos_token_id(), Some(5));
    assert_eq!(tokenizer.add_bos_token(), None, "a flag of the wrong type is ignored");
    assert_eq!(tokenizer.tokenizer_config().unwrap()["chat_template"], "{{ messages }}");
    let error = Tokenizer::from_tokenizers(fixture_tokenizer().inner().clone())
        .with_tokenizer_config(json!(["not", "an", "object"]))
        .unwrap_err();
    assert!(matches!(error, TokenizerError::InvalidField { .. }), "{error:?}");
}
