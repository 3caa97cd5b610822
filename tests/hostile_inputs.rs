//! `mlxcel` as a hostile user would run it: corrupt and inconsistent models, values that make NaN,
//! out-of-range ids and flags, bad environment values, and files where folders should be. Every
//! case must end with a non-zero exit status (not a signal), one `error:` line that names the
//! problem (said once), nothing on stdout, and no panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mlxcel_models::gguf::Value;

/// One hostile run: the arguments, extra environment, and what the error line must say.
struct Case {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    expect: String,
    /// A text the error line must hold exactly once (a path, so it is not repeated).
    once: Option<String>,
}

fn case(name: &str, args: &[&str], expect: &str) -> Case {
    Case {
        name: name.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        stdin: None,
        expect: expect.to_string(),
        once: None,
    }
}

impl Case {
    fn env(mut self, variable: &str, value: &str) -> Self {
        self.env.push((variable.to_string(), value.to_string()));
        self
    }

    fn stdin(mut self, bytes: &[u8]) -> Self {
        self.stdin = Some(bytes.to_vec());
        self
    }

    fn once(mut self, text: &str) -> Self {
        self.once = Some(text.to_string());
        self
    }
}

/// Runs `mlxcel` with no network, a private cache, no pip and no `MLXCEL_*` settings from the
/// developer's shell.
fn mlxcel(args: &[String], env: &[(String, String)], stdin: Option<&[u8]>, cache: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mlxcel"));
    command.args(args);
    for (variable, _) in std::env::vars() {
        if variable.starts_with("MLXCEL_") {
            command.env_remove(variable);
        }
    }
    command
        .env("HF_HUB_OFFLINE", "1")
        .env("MLXCEL_CACHE_DIR", cache)
        .env("MLXCEL_PYTHON", "/nonexistent/python")
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().expect("mlxcel runs");
    if let Some(bytes) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// What is wrong with how `case` ended, if anything.
fn judge(case: &Case, output: &Output) -> Option<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let Some(code) = output.status.code() else { return Some(format!("killed by a signal: {:?}", output.status)) };
    if code == 0 {
        return Some("exited 0".into());
    }
    if stderr.contains("panicked") {
        return Some(format!("panicked: {stderr}"));
    }
    if stderr.contains('\x1b') {
        return Some(format!("colour codes on a non-terminal stderr: {stderr:?}"));
    }
    if !output.stdout.is_empty() {
        return Some(format!("wrote to stdout: {:?}", String::from_utf8_lossy(&output.stdout)));
    }
    let errors: Vec<&str> =
        stderr.lines().filter(|line| line.starts_with("mlxcel: error:") || line.starts_with("error:")).collect();
    let [line] = errors.as_slice() else { return Some(format!("not one error line: {stderr}")) };
    if !line.contains(&case.expect) {
        return Some(format!("expected {:?} in {line}", case.expect));
    }
    if let Some(once) = &case.once {
        if line.matches(once.as_str()).count() != 1 {
            return Some(format!("{once:?} is not said exactly once: {line}"));
        }
    }
    repeated_cause(line).map(|cause| format!("repeats {cause:?}: {line}"))
}

/// A `: `-separated part of an error line that appears twice ("X: Y: Y").
fn repeated_cause(line: &str) -> Option<&str> {
    let parts: Vec<&str> = line.split(": ").filter(|part| part.len() >= 12).collect();
    parts.iter().enumerate().find(|(i, part)| parts[i + 1..].contains(part)).map(|(_, part)| *part)
}

/// Folders and files for the cases, in one temporary directory.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `model`'s tiny checkpoint with the tiny tokenizer, changed by `edit`.
    fn folder(&self, name: &str, model: &str, edit: impl FnOnce(&Path)) -> String {
        let source = common::model_dir(model);
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(source.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        edit(&dir);
        dir.to_str().unwrap().to_string()
    }

    /// A checkpoint whose config.json field `field` is `value`.
    fn config(&self, name: &str, model: &str, field: &str, value: serde_json::Value) -> String {
        self.folder(name, model, |dir| common::edit_config(dir, |config| config[field] = value))
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// The GGUF fixture `source` with its metadata changed by `edit`.
    fn gguf(&self, name: &str, source: &str, edit: impl FnOnce(&mut Vec<(String, Value)>)) -> String {
        let bytes = std::fs::read(common::fixtures().join(source)).unwrap();
        self.file(name, &common::gguf::with_metadata(&bytes, edit))
    }
}

/// The tiny SentencePiece GGUF (a one-layer Llama with a tokenizer): it can `generate`.
const GGUF_MODEL: &str = "gguf_tokenizers/tiny-llama.gguf";
/// The tiny two-layer Llama GGUF of every tensor type (no tokenizer): it can `score`.
const GGUF_LAYERS: &str = "llama-tiny/tiny.gguf";

fn nan_weights(dir: &Path) {
    common::make_nan(dir, "model.norm.weight");
}

/// The GGUF fixture with every float of its F32 tensors (the norms) NaN.
fn nan_gguf(scratch: &Scratch, name: &str, source: &str) -> String {
    let mut bytes = std::fs::read(common::fixtures().join(source)).unwrap();
    let header = mlxcel_models::gguf::parse_header(&bytes).unwrap();
    for tensor in header.tensors.iter().filter(|t| t.ggml_type == mlxcel_models::gguf::GgmlType::F32) {
        let start = (header.data_offset + tensor.offset) as usize;
        for at in (start..start + tensor.n_bytes as usize).step_by(4) {
            bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
    }
    scratch.file(name, &bytes)
}

fn generate(model: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["generate", "-m", model, "--no-chat-template", "-n", "4"];
    if !extra.contains(&"-p") && !extra.contains(&"-f") {
        args.extend(["-p", "Hello there"]);
    }
    args.extend(extra);
    args.iter().map(|a| a.to_string()).collect()
}

fn score(model: &str, ids: &str) -> Vec<String> {
    ["score", "-m", model, "--ids", ids, "--json"].iter().map(|a| a.to_string()).collect()
}

fn bench(model: &str, extra: &[&str]) -> Vec<String> {
    ["bench", "-m", model].iter().chain(extra).map(|a| a.to_string()).collect()
}

fn run_case(name: &str, args: Vec<String>, expect: &str) -> Case {
    Case { args, ..case(name, &[], expect) }
}

#[test]
fn every_hostile_input_fails_with_one_clear_line() {
    let scratch = Scratch { dir: tempfile::tempdir().unwrap() };
    let cache = scratch.path("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let good = scratch.folder("good", "llama-tiny", |_| {});

    // 1. Token ids past the embedding.
    let big_vocab = scratch.folder("big-vocab", "llama-tiny", |dir| {
        let path = dir.join("tokenizer.json");
        let mut tokenizer: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        tokenizer["model"]["vocab"]["Z"] = 1_000_000.into();
        std::fs::write(path, tokenizer.to_string()).unwrap();
    });
    let long_token_list = scratch.gguf("long-token-list.gguf", GGUF_MODEL, |metadata| {
        // Declared vocabulary of 16: the token list is longer than the embedding it claims.
        common::gguf::set(metadata, "llama.vocab_size", Value::U32(16));
    });
    // 2. NaN by corruption and by construction.
    let nan_folder = scratch.folder("nan-weights", "llama-tiny", nan_weights);
    let nan_gemma = scratch.folder("nan-gemma3n", "gemma3n-tiny", nan_weights);
    // Logits around 1e30: finite in float32, but the ids' probabilities underflow to nothing.
    let huge_logits =
        scratch.folder("huge-logits", "llama-tiny", |dir| common::change_floats(dir, "lm_head.weight", |x| x * 1e30));
    let nan_gguf_model = nan_gguf(&scratch, "nan.gguf", GGUF_MODEL);
    let nan_gguf_layers = nan_gguf(&scratch, "nan-layers.gguf", GGUF_LAYERS);
    let eps_nan_gguf = scratch.gguf("eps-nan.gguf", GGUF_LAYERS, |metadata| {
        common::gguf::set(metadata, "llama.attention.layer_norm_rms_epsilon", Value::F32(f32::NAN));
    });
    let theta_zero_gguf = scratch.gguf("theta-zero.gguf", GGUF_LAYERS, |metadata| {
        common::gguf::set(metadata, "llama.rope.freq_base", Value::F32(0.0));
    });
    let theta_inf_gguf = scratch.gguf("theta-inf.gguf", GGUF_LAYERS, |metadata| {
        common::gguf::set(metadata, "llama.rope.freq_base", Value::F64(f64::INFINITY));
    });
    let gemma_theta_gguf = scratch.gguf("gemma-theta.gguf", "gemma3-tiny/tiny.gguf", |metadata| {
        common::gguf::set(metadata, "gemma3.rope.freq_base", Value::F32(-1.0));
    });
    // 9. A block count below the tensors' layers.
    let short_blocks = scratch.gguf("short-blocks.gguf", GGUF_LAYERS, |metadata| {
        common::gguf::set(metadata, "llama.block_count", Value::U32(1));
    });
    let no_blocks = scratch.gguf("no-blocks.gguf", GGUF_LAYERS, |metadata| {
        metadata.retain(|(key, _)| key != "llama.block_count");
    });
    // Neighbours: broken safetensors and config.json, files and folders swapped.
    let weights = std::fs::read(common::fixtures().join("llama-tiny/fp32/model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let with_weights = |name: &str, bytes: Vec<u8>| {
        scratch.folder(name, "llama-tiny", |dir| std::fs::write(dir.join("model.safetensors"), bytes).unwrap())
    };
    let empty_weights = with_weights("empty-weights", Vec::new());
    let truncated_weights = with_weights("truncated-weights", weights[..weights.len() - 1000].to_vec());
    let lying_weights = with_weights("lying-weights", {
        let header: serde_json::Value = serde_json::from_slice(&weights[8..8 + header_len]).unwrap();
        let mut header = header;
        let end = (weights.len() - 8 - header_len) as u64;
        header["model.norm.weight"]["data_offsets"] = serde_json::json!([end + 1024, end + 1280]);
        let mut text = header.to_string().into_bytes();
        text.resize(text.len().div_ceil(8) * 8, b' ');
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend(text);
        bytes.extend(&weights[8 + header_len..]);
        bytes
    });
    let huge_header = with_weights("huge-header", {
        let mut bytes = weights.clone();
        bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        bytes
    });
    let weights_dir = scratch.folder("weights-dir", "llama-tiny", |dir| {
        std::fs::remove_file(dir.join("model.safetensors")).unwrap();
        std::fs::create_dir(dir.join("model.safetensors")).unwrap();
    });
    let config_dir = scratch.folder("config-dir", "llama-tiny", |dir| {
        std::fs::remove_file(dir.join("config.json")).unwrap();
        std::fs::create_dir(dir.join("config.json")).unwrap();
    });
    let empty_config =
        scratch.folder("empty-config", "llama-tiny", |dir| std::fs::write(dir.join("config.json"), "").unwrap());
    let nan_json = scratch.folder("nan-json", "llama-tiny", |dir| {
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        std::fs::write(dir.join("config.json"), text.replace("1e-05", "NaN")).unwrap();
    });
    let empty_tokenizer =
        scratch.folder("empty-tokenizer", "llama-tiny", |dir| std::fs::write(dir.join("tokenizer.json"), "").unwrap());
    let deeper = scratch.config("deeper", "llama-tiny", "num_hidden_layers", 3.into());
    let empty_gguf = scratch.file("empty.gguf", b"");
    let not_gguf = scratch.file("not-really.gguf", b"{\"model_type\": \"llama\"}");
    let gguf_dir = scratch.path("folder.gguf");
    std::fs::create_dir_all(&gguf_dir).unwrap();
    let gguf_dir = gguf_dir.to_str().unwrap().to_string();
    let binary_prompt = scratch.file("prompt.bin", b"\xff\xfe\x00 not text");
    // 3, 4, 9. A cached registry file that is not the pinned one, offline.
    let registry_file = mlxcel::registry::find("smollm2").unwrap().path(&cache);
    std::fs::create_dir_all(registry_file.parent().unwrap()).unwrap();
    std::fs::write(&registry_file, b"GGUF but much too short").unwrap();

    // A case whose checkpoint has config.json field `field` set to `value`.
    let config_case = |name: &str, model: &str, field: &str, value: serde_json::Value, expect: &str| {
        let folder: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        run_case(name, generate(&scratch.config(&folder, model, field, value), &[]), expect)
    };
    let cases = vec![
        run_case("1: tokenizer past the embedding", generate(&big_vocab, &["-p", "ZZZ"]), "embedding rows"),
        run_case("1: the same through run", vec!["run".into(), "-m".into(), big_vocab.clone()], "embedding rows"),
        run_case("1: GGUF token list past its embedding", generate(&long_token_list, &[]), "long-token-list.gguf"),
        run_case("1: score id at the vocabulary size", score(&good, "1,512"), "outside the vocabulary of 512"),
        run_case("1: score negative id", score(&good, "1,-1"), "outside the vocabulary"),
        run_case("1: score id past i32", score(&good, "1,4294967296"), "--ids"),
        run_case("2: NaN safetensors weights", generate(&nan_folder, &[]), "NaN or infinite logits"),
        run_case(
            "2: NaN weights, sampled",
            generate(&nan_folder, &["--temp", "0.8", "--seed", "1"]),
            "NaN or infinite",
        ),
        run_case("2: NaN weights, penalised", generate(&nan_folder, &["--repeat-penalty", "1.3"]), "NaN or infinite"),
        run_case("2: NaN Gemma 3n weights", generate(&nan_gemma, &[]), "NaN or infinite logits"),
        run_case("2: NaN weights through score", score(&nan_folder, "1,2,3"), "NaN or infinite logits at position 0"),
        run_case("2: NaN GGUF tensor data", generate(&nan_gguf_model, &[]), "NaN or infinite logits"),
        run_case("2: score whose perplexity overflows", score(&huge_logits, "1,2,3,4"), "perplexity overflows"),
        run_case("2: NaN GGUF tensor data, score", score(&nan_gguf_layers, "1,2"), "NaN or infinite logits"),
        config_case("2: rms_norm_eps 0", "llama-tiny", "rms_norm_eps", 0.0.into(), "rms_norm_eps"),
        config_case("2: rms_norm_eps negative", "llama-tiny", "rms_norm_eps", (-1e-5).into(), "rms_norm_eps"),
        config_case("2: rms_norm_eps overflowing f32", "llama-tiny", "rms_norm_eps", 1e39.into(), "got inf"),
        run_case("2: NaN literal in config.json", generate(&nan_json, &[]), "invalid JSON"),
        config_case(
            "2: rope_theta 0",
            "llama-tiny",
            "rope_parameters",
            serde_json::json!({"rope_type": "default", "rope_theta": 0.0}),
            "rope_theta",
        ),
        config_case(
            "2: Gemma 3 sliding RoPE base negative",
            "gemma3-tiny",
            "rope_parameters",
            serde_json::json!({"full_attention": {"rope_type": "default"}, "sliding_attention": {"rope_theta": -10.0}}),
            "rope_local_base_freq",
        ),
        config_case("2: Gemma 3n rms_norm_eps 0", "gemma3n-tiny", "rms_norm_eps", 0.0.into(), "rms_norm_eps"),
        run_case(
            "2: GGUF NaN epsilon",
            score(&eps_nan_gguf, "1,2"),
            "rms_norm_eps must be a positive finite number, got NaN",
        ),
        run_case("2: GGUF RoPE base 0", score(&theta_zero_gguf, "1,2"), "rope_theta"),
        run_case("2: GGUF RoPE base infinite", score(&theta_inf_gguf, "1,2"), "got inf"),
        run_case("2: Gemma 3 GGUF RoPE base negative", score(&gemma_theta_gguf, "1,2"), "rope_theta"),
        run_case("3: corrupt cached registry model, offline", generate("smollm2", &[]), "not the pinned one"),
        case("3: the same through fetch", &["fetch", "smollm2", "--offline"], "it was kept"),
        run_case(
            "7: logit bias past the float range",
            generate(&good, &["--logit-bias", "28=3e38", "--temp", "0.5"]),
            "[-100, 100]",
        ),
        run_case("7: logit bias just past -100", generate(&good, &["--logit-bias", "28=-100.5"]), "[-100, 100]"),
        run_case("7: logit bias NaN", generate(&good, &["--logit-bias", "28=NaN"]), "[-100, 100]"),
        run_case("7: logit bias infinite", generate(&good, &["--logit-bias", "28=inf"]), "[-100, 100]"),
        run_case("7: logit bias not a number", generate(&good, &["--logit-bias", "28=lots"]), "not a number"),
        run_case("9: bench depth overflow", bench(&good, &["-d", "18446744073709551615"]), "overflows"),
        run_case("9: bench --bits on a checkpoint", bench(&good, &["--bits", "4"]), "--bits"),
        run_case("9: bench prefill chunk 0", bench(&good, &["--prefill-chunk", "0"]), "--prefill-chunk"),
        run_case("9: bench batch 0", bench(&good, &["-b", "0"]), "--batch"),
        run_case("9: generate prefill chunk 0", generate(&good, &["--prefill-chunk", "0"]), "--prefill-chunk"),
        run_case("9: bench past the context", bench(&good, &["-p", "300"]), "context of 256"),
        run_case(
            "9: GGUF block_count below its tensors",
            score(&short_blocks, "1,2"),
            "belongs to block 1, but llama.block_count is 1",
        ),
        run_case("9: GGUF without block_count", score(&no_blocks, "1,2"), "block_count"),
        run_case("9: score one id", score(&good, "7"), "nothing to score"),
        run_case("9: MLXCEL_TEMP not a number", generate(&good, &[]), "MLXCEL_TEMP").env("MLXCEL_TEMP", "abc"),
        case("9: MLXCEL_MAX_TOKENS negative", &["generate", "-m", &good, "-p", "Hi"], "MLXCEL_MAX_TOKENS")
            .env("MLXCEL_MAX_TOKENS", "-3"),
        run_case("9: MLXCEL_SEED huge", generate(&good, &[]), "MLXCEL_SEED")
            .env("MLXCEL_SEED", "99999999999999999999999"),
        run_case("9: MLXCEL_TOP_P out of range", generate(&good, &[]), "top_p").env("MLXCEL_TOP_P", "7"),
        run_case("9: MLXCEL_PREFILL_CHUNK 0", generate(&good, &[]), "MLXCEL_PREFILL_CHUNK")
            .env("MLXCEL_PREFILL_CHUNK", "0"),
        run_case("8: GGUF config error names the file once", score(&eps_nan_gguf, "1,2"), "rms_norm_eps")
            .once(&eps_nan_gguf),
        run_case("8: model error names the folder once", generate(&deeper, &[]), "missing tensor layers.2")
            .once(&deeper),
        config_case(
            "8: config error names the folder once",
            "llama-tiny",
            "vocab_size",
            (-1).into(),
            "vocab_size must be positive",
        )
        .once("names-the-folder-once/config.json"),
        run_case("empty safetensors", generate(&empty_weights, &[]), "model.safetensors"),
        run_case("truncated safetensors", generate(&truncated_weights, &[]), "model.safetensors"),
        run_case("safetensors offsets past the end", generate(&lying_weights, &[]), "model.norm.weight"),
        run_case("safetensors header length 2^64-1", generate(&huge_header, &[]), "header length"),
        run_case("model.safetensors is a folder", generate(&weights_dir, &[]), "model.safetensors"),
        run_case("config.json is a folder", generate(&config_dir, &[]), "config.json"),
        run_case("empty config.json", generate(&empty_config, &[]), "invalid JSON"),
        run_case("empty tokenizer.json", generate(&empty_tokenizer, &[]), "tokenizer.json"),
        config_case("config.json hidden_size a string", "llama-tiny", "hidden_size", "64".into(), "invalid type"),
        config_case(
            "config.json vocab_size past i32",
            "llama-tiny",
            "vocab_size",
            99_999_999_999u64.into(),
            "vocab_size",
        ),
        config_case("config.json layers a float", "llama-tiny", "num_hidden_layers", 1e10.into(), "num_hidden_layers"),
        config_case(
            "config.json model_type a number",
            "llama-tiny",
            "model_type",
            7.into(),
            "unsupported model_type \"7\"",
        ),
        config_case(
            "config.json context 0",
            "llama-tiny",
            "max_position_embeddings",
            0.into(),
            "max_position_embeddings must be positive",
        ),
        config_case(
            "Gemma 3 context negative",
            "gemma3-tiny",
            "max_position_embeddings",
            (-5).into(),
            "max_position_embeddings must be positive",
        ),
        config_case("config.json head_dim odd", "llama-tiny", "head_dim", 15.into(), "head_dim"),
        run_case("empty GGUF file", generate(&empty_gguf, &[]), "empty.gguf"),
        run_case("JSON in a .gguf", generate(&not_gguf, &[]), "not a GGUF file"),
        run_case("a folder named .gguf", generate(&gguf_dir, &[]), "folder.gguf"),
        run_case("prompt file not UTF-8", generate(&good, &["-f", &binary_prompt]), "prompt.bin"),
        run_case(
            "prompt file a folder",
            generate(&good, &["-f", scratch.dir.path().to_str().unwrap()]),
            "reading the prompt",
        ),
        run_case("empty prompt on stdin", generate(&good, &["-f", "-"]), "the prompt is empty").stdin(b"  \n"),
        run_case("temperature overflowing f32", generate(&good, &["--temp", "1e39"]), "temperature"),
        run_case("temperature NaN", generate(&good, &["--temp", "NaN"]), "temperature"),
        case(
            "max tokens past u64",
            &["generate", "-m", &good, "-p", "Hi", "-n", "99999999999999999999"],
            "--max-tokens",
        ),
        run_case("top-k past u32", generate(&good, &["--top-k", "4294967296"]), "--top-k"),
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let output = mlxcel(&case.args, &case.env, case.stdin.as_deref(), &cache);
        if let Some(problem) = judge(case, &output) {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    assert!(registry_file.exists(), "offline, a bad cached file is kept");
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// A stdout whose reader is already gone, as `mlxcel ... | head -c 10` leaves it once head exits.
fn closed_pipe() -> Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `pipe` fills both descriptors on success; each is owned exactly once below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let model = common::model_dir("llama-tiny");
    let cache = tempfile::tempdir().unwrap();
    let path = model.path().to_str().unwrap();
    let commands: [&[&str]; 7] = [
        &["generate", "-m", path, "-p", "Hello there", "-n", "20"],
        &["score", "-m", path, "--ids", "1,2,3", "--json"],
        &["inspect", "-m", path],
        &["detect"],
        &["detect", "--json"],
        &["fetch", "--list"],
        &["bench", "-m", path, "-p", "8", "-n", "2", "-r", "1", "--warmup", "0"],
    ];
    for args in commands {
        let output = Command::new(env!("CARGO_BIN_EXE_mlxcel"))
            .args(args)
            .env("MLXCEL_CACHE_DIR", cache.path())
            .env("HF_HUB_OFFLINE", "1")
            .stdin(Stdio::null())
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("error") && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn warnings_are_plain_text_off_a_terminal() {
    // This GGUF has no tokenizer.ggml.pre: a warning, then the missing merges are an error.
    let model = common::fixtures().join("gemma3-tiny/tiny.gguf");
    let args = generate(model.to_str().unwrap(), &[]);
    let cache = tempfile::tempdir().unwrap();
    let output = mlxcel(&args, &[], None, cache.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "colour codes in {stderr:?}");
}
