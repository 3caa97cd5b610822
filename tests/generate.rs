//! End to end on the tiny Gemma 3n fixture with a real (tiny, trained) byte-level BPE tokenizer:
//! the Rust API and `mlxcel generate`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use mlxcel::api::{Event, GenerateOptions, Model, plan_for};
use mlxcel::generate::FinishReason;
use mlxcel::sampling::SamplingParams;
use mlxcel::{LoadOptions, Message};

/// The fp32 test model with the tiny tokenizer beside it, in a fresh folder.
fn model_dir() -> tempfile::TempDir {
    common::model_dir("gemma3n-tiny")
}

fn load(dir: &Path) -> Model {
    Model::load_dir(dir, plan_for(&LoadOptions::default()).unwrap()).unwrap()
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions { max_tokens, ..Default::default() }
}

#[test]
fn greedy_tokens_are_the_argmax_of_the_teacher_forced_logits() {
    // The pipelined decode loop against the scoring path (itself checked against transformers).
    let dir = model_dir();
    let model = load(dir.path());
    let prompt = model.tokenizer().encode("Hello there", true).unwrap();
    let generation = model.generate("Hello there", &GenerateOptions { max_tokens: 10, ..Default::default() }).unwrap();
    let produced = &generation.token_ids;
    assert!(!produced.is_empty());
    let mut all: Vec<i32> = prompt.iter().map(|&t| t as i32).collect();
    all.extend(produced.iter().map(|&t| t as i32));
    let plan = plan_for(&LoadOptions::default()).unwrap();
    let source = mlxcel::model::ModelSource::Folder(dir.path().to_path_buf());
    let scorer = mlxcel::model::LoadedModel::load(&source, &plan, Default::default()).unwrap();
    let argmax = scorer.teacher_forced_logits(&all, 1000).unwrap().argmax(-1, false).unwrap().to_vec::<u32>().unwrap();
    for (i, &token) in produced.iter().enumerate() {
        assert_eq!(argmax[prompt.len() - 1 + i], token, "generated token {i}");
    }
}

#[test]
fn streaming_equals_non_streaming_and_seeds_reproduce() {
    let dir = model_dir();
    let model = load(dir.path());
    for sampling in [
        SamplingParams::default(),
        SamplingParams { temperature: 1.0, seed: Some(3), top_p: 0.9, ..Default::default() },
    ] {
        let options = GenerateOptions { max_tokens: 16, sampling, ..Default::default() };
        let whole = model.generate("The quick brown fox", &options).unwrap();
        let mut text = String::new();
        let mut ids = Vec::new();
        let mut done = None;
        for event in model.stream("The quick brown fox", &options).unwrap() {
            match event.unwrap() {
                Event::Token { id, text: delta, .. } => {
                    ids.push(id);
                    text.push_str(&delta);
                }
                Event::Flush { text: delta } => text.push_str(&delta),
                Event::Done { finish_reason, .. } => done = Some(finish_reason),
            }
        }
        assert_eq!((text, ids, done), (whole.text.clone(), whole.token_ids.clone(), Some(whole.finish_reason.clone())));
        let again = model.generate("The quick brown fox", &options).unwrap();
        assert_eq!(again.token_ids, whole.token_ids, "same seed, same tokens");
        assert_eq!(whole.text, model.tokenizer().decode(&whole.token_ids, true).unwrap());
    }
    let seeded = |seed| {
        let sampling = SamplingParams { temperature: 1.5, seed: Some(seed), ..Default::default() };
        model.generate("Once", &GenerateOptions { max_tokens: 16, sampling, ..Default::default() }).unwrap().token_ids
    };
    assert_ne!(seeded(1), seeded(2));
}

#[test]
fn stop_conditions_end_generation_where_they_should() {
    let dir = model_dir();
    let model = load(dir.path());
    let full = model.generate("Hello there", &greedy(12)).unwrap();
    assert_eq!(full.finish_reason, FinishReason::Length);
    assert_eq!(full.token_ids.len(), 12);
    assert_eq!(full.stats.generated_tokens, 12);

    // A stop string taken from the middle of the greedy text: the output ends right before it.
    let chars: Vec<char> = full.text.chars().collect();
    assert!(chars.len() >= 6, "greedy text too short: {:?}", full.text);
    let stop: String = chars[3..6].iter().collect();
    let before = full.text.find(&stop).unwrap();
    let stopped = model.generate("Hello there", &GenerateOptions { stop: vec![stop.clone()], ..greedy(12) }).unwrap();
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    assert_eq!(stopped.text, full.text[..before]);

    // Biasing EOS (id 1 in config.json) to the top stops at once, with no text.
    let eos = model.eos_token_ids().to_vec();
    assert!(eos.contains(&1), "{eos:?}");
    let sampling = SamplingParams { logit_bias: [(1, 100.0)].into(), ..Default::default() };
    let ended = model.generate("Hello there", &GenerateOptions { sampling, ..greedy(12) }).unwrap();
    assert_eq!((ended.finish_reason, ended.text.as_str(), ended.token_ids.len()), (FinishReason::Eos, "", 0));

    // The chat path goes through the template and stops the same ways.
    let reply = model.chat(&[Message::user("Hi")], &greedy(5)).unwrap();
    assert_eq!(reply.token_ids.len(), 5);
    assert!(model.render_chat(&[Message::user("Hi")]).unwrap().ends_with("<start_of_turn>model\n"));
}

fn mlxcel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlxcel")).args(args).env("HF_HUB_OFFLINE", "1").output().expect("run mlxcel")
}

#[test]
fn cli_generate_is_deterministic_and_reports_statistics() {
    let dir = model_dir();
    let path = dir.path().to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["generate", "-m", path, "-p", "Hello there", "-n", "12"];
        args.extend(extra);
        let out = mlxcel(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (first, stats) = run(&["--temp", "0"]);
    assert_eq!(run(&["--temp", "0"]).0, first);
    for needle in ["Prompt:", "tokens-per-sec", "Generation: 12 tokens", "Peak memory:"] {
        assert!(stats.contains(needle), "{needle} missing from {stats}");
    }
    let seeded = run(&["--temp", "1", "--seed", "42"]).0;
    assert_eq!(run(&["--temp", "1", "--seed", "42"]).0, seeded);
    assert_ne!(run(&["--temp", "1", "--seed", "43"]).0, seeded);
    // The same through the environment mirrors.
    let out = Command::new(env!("CARGO_BIN_EXE_mlxcel"))
        .args(["generate", "-p", "Hello there"])
        .envs([("MLXCEL_MODEL", path), ("MLXCEL_MAX_TOKENS", "12"), ("MLXCEL_TEMP", "1"), ("MLXCEL_SEED", "42")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), seeded);
}

#[test]
fn bad_input_fails_with_one_line_and_no_panic() {
    let dir = model_dir();
    let good = dir.path().to_str().unwrap().to_string();
    let scratch = tempfile::tempdir().unwrap();
    let make = |name: &str, files: &[(&str, &[u8])]| -> String {
        let folder = scratch.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        for (file, bytes) in files {
            std::fs::write(folder.join(file), bytes).unwrap();
        }
        folder.to_str().unwrap().to_string()
    };
    let config = std::fs::read(dir.path().join("config.json")).unwrap();
    let weights = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let tokenizer = std::fs::read(dir.path().join("tokenizer.json")).unwrap();
    let no_config = make("no-config", &[]);
    let unsupported = make("unsupported", &[("config.json", br#"{"model_type": "mamba"}"#)]);
    let corrupt = make(
        "corrupt",
        &[
            ("config.json", &config),
            ("tokenizer.json", &tokenizer),
            ("model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!"),
        ],
    );
    let truncated = make(
        "truncated",
        &[
            ("config.json", &config),
            ("tokenizer.json", &tokenizer),
            ("model.safetensors", &weights[..weights.len() / 2]),
        ],
    );
    let no_tokenizer = make("no-tokenizer", &[("config.json", &config), ("model.safetensors", &weights)]);
    let mut short_config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    short_config["max_position_embeddings"] = 8.into();
    let short = make(
        "short-context",
        &[
            ("config.json", short_config.to_string().as_bytes()),
            ("model.safetensors", &weights),
            ("tokenizer.json", &tokenizer),
        ],
    );
    let long_prompt = "the quick brown fox jumps over the lazy dog ".repeat(4);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-m", "/nonexistent/model"], "does not exist"),
        (vec!["-m", &no_config], "no config.json"),
        (vec!["-m", &unsupported], "supported: gemma3n"),
        (vec!["-m", &corrupt], "model.safetensors"),
        (vec!["-m", &truncated], "model.safetensors"),
        (vec!["-m", &no_tokenizer], "tokenizer.json"),
        (vec!["-m", &short, "-p", &long_prompt], "context"),
        (vec!["-m", &good, "--top-p", "7"], "top_p"),
        (vec!["-m", &good, "--temp", "-1"], "temperature"),
        (vec!["-m", &good, "--min-p", "2"], "min_p"),
        (vec!["-m", &good, "--top-k", "100000"], "top_k"),
        (vec!["-m", &good, "-n", "0"], "max-tokens"),
        (vec!["-m", &good, "--logit-bias", "x=1"], "logit-bias"),
        (vec!["-m", &good, "--decode-path", "sideways"], "decode-path"),
        (vec!["-m", "not-an-alias"], "unknown model"),
        (vec!["-m", "someone/not-cached"], "offline"),
        (vec!["-m", &good, "-f", "/nonexistent/prompt.txt"], "prompt.txt"),
        (vec!["-m", &good, "-p", "   "], "empty"),
    ];
    for (args, needle) in cases {
        let mut full = vec!["generate"];
        full.extend(&args);
        if !args.contains(&"-p") && !args.contains(&"-f") {
            full.extend(["-p", "Hello"]);
        }
        let out = mlxcel(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: expected {needle:?} in {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
        assert!(stderr.trim().lines().count() <= 3, "{args:?}: not a short error: {stderr}");
    }
}

#[test]
fn ids_past_the_embedding_are_rejected_not_read() {
    let dir = model_dir();
    let model = load(dir.path());
    // Just past the end, far past it, and past i32 (which would wrap to a negative index).
    for bad in [512, 1_000_000, u32::MAX] {
        let error = model.stream_ids(&[2, bad], &greedy(2)).err().expect("an out-of-range id must fail");
        let message = error.to_string();
        assert!(message.contains(&format!("token id {bad} is outside the vocabulary of 512")), "{message}");
    }
}

#[test]
fn a_tokenizer_larger_than_the_embedding_is_a_load_error() {
    let dir = model_dir();
    let path = dir.path().join("tokenizer.json");
    let mut tokenizer: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    tokenizer["model"]["vocab"]["Z"] = 1_000_000.into();
    std::fs::write(&path, tokenizer.to_string()).unwrap();
    let error = Model::load_dir(dir.path(), plan_for(&LoadOptions::default()).unwrap()).err().unwrap();
    let message = error.to_string();
    assert!(message.contains("1000001") && message.contains("512"), "names both sizes: {message}");
}

#[test]
fn nan_weights_fail_generation_instead_of_answering_nothing() {
    let dir = model_dir();
    // Every float of the final norm becomes NaN: each logit is NaN, and greedy would pick id 0.
    common::make_nan(dir.path(), "model.norm.weight");
    let model = load(dir.path());
    for sampling in [
        SamplingParams::default(),
        SamplingParams { temperature: 0.7, seed: Some(1), ..Default::default() },
        SamplingParams { repetition_penalty: 1.3, ..Default::default() },
    ] {
        let error = model.generate("Hello there", &GenerateOptions { sampling, ..greedy(4) }).err().unwrap();
        assert!(error.to_string().contains("NaN or infinite logits"), "{error}");
    }
}
