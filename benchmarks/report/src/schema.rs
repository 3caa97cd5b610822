//! The "mlxcel-bench/1" result format, and loading several result files into one validated set.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

/// The only schema this generator understands; a bumped version means the fields changed meaning.
pub const SCHEMA: &str = "mlxcel-bench/1";

/// Inside a run's `variant`, this key marks the engine's default settings rather than a setting itself.
pub const DEFAULT_KEY: &str = "default";

/// The underlying io/serde error is part of each message rather than a `source()`, so the CLI prints
/// one line per problem instead of repeating the cause.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no result files given")]
    NoInput,
    #[error("cannot read {path}: {error}", path = .path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("cannot write {path}: {error}", path = .path.display())]
    Write { path: PathBuf, error: std::io::Error },
    #[error("{path}: not valid JSON: {error}", path = .path.display())]
    Json { path: PathBuf, error: serde_json::Error },
    #[error("{path}: missing \"schema\" field (expected \"{SCHEMA}\")", path = .path.display())]
    MissingSchema { path: PathBuf },
    #[error("{path}: unknown schema {found:?} (this generator reads \"{SCHEMA}\")", path = .path.display())]
    UnknownSchema { path: PathBuf, found: String },
    #[error("{path}: does not match {SCHEMA}: {error}", path = .path.display())]
    Fields { path: PathBuf, error: serde_json::Error },
    #[error("{path}: {message}", path = .path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(
        "results come from different machines: {first} has hardware class {first_class:?} but {other} has \
         {other_class:?}; make one page per machine",
        first = .first.display(),
        other = .other.display()
    )]
    MixedMachines { first: PathBuf, first_class: String, other: PathBuf, other_class: String },
    /// `run` names the engine, model, precision and test, e.g. "mlxcel SmolLM2 (float32) pp512".
    #[error(
        "{run} was measured with the same settings twice ({first} and {other}); keep one of them",
        first = .first.display(),
        other = .other.display()
    )]
    DuplicateRun { run: String, first: PathBuf, other: PathBuf },
    #[error("baseline engine {baseline:?} has no results (engines present: {present})")]
    UnknownBaseline { baseline: String, present: String },
    #[error("cannot draw chart {path}: {message}", path = .path.display())]
    Chart { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResultFile {
    pub schema: String,
    pub machine: Machine,
    pub engine: Engine,
    pub date: String,
    pub command: String,
    pub runs: Vec<Run>,
    /// mlxcel's `--breakdown`: where one unpipelined decode step's time goes, per variant.
    #[serde(default)]
    pub decode_breakdowns: Vec<Breakdown>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Breakdown {
    pub model: String,
    pub dtype: String,
    pub bits: Option<u32>,
    pub variant: Map<String, Value>,
    pub breakdown: BreakdownTimes,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BreakdownTimes {
    pub depth: u64,
    pub steps: u64,
    pub graph_nodes_per_token: u64,
    /// `(primitive, count)`, most frequent first.
    pub graph_ops: Vec<(String, u64)>,
    pub build_ms: Spread,
    pub eval_ms: Spread,
    /// MLX's host encoding within `eval` (absent in files from before it was measured).
    #[serde(default)]
    pub encode_ms: Option<Spread>,
    pub step_ms: Spread,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Machine {
    pub hardware_class: String,
    pub device: String,
    pub backend: String,
    pub os: String,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Engine {
    pub name: String,
    pub version: String,
    /// Null for engines that do not run on MLX (llama.cpp).
    pub mlx_version: Option<String>,
    /// Free-form build facts (BLAS, CUDA version) shown as given.
    #[serde(default)]
    pub details: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub model: String,
    pub source: String,
    pub params: u64,
    pub size_bytes: u64,
    /// Weight bytes one decode step reads, where the engine knows them (mlxcel on its random
    /// shapes): the memory roofline's numerator.
    #[serde(default)]
    pub decode_weight_bytes: Option<u64>,
    pub dtype: String,
    pub bits: Option<u32>,
    /// Engine-specific settings; `{}` when the engine has none. Key order is kept (serde_json
    /// preserve_order) so the A/B tables show settings in the order the engine wrote them.
    pub variant: Map<String, Value>,
    pub test: String,
    pub n_prompt: u64,
    pub n_gen: u64,
    pub depth: u64,
    pub repetitions: u32,
    pub tokens_per_second: Stat,
    pub ttft_ms: Option<Stat>,
    pub peak_memory_bytes: Option<u64>,
    /// The process's peak resident memory (Linux `VmHWM`), the model's load included.
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    #[serde(default)]
    pub samples: Vec<f64>,
}

/// A parsed result file and where it came from, so errors and the page can name it.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub file: ResultFile,
}

impl Run {
    /// The variant without the `default` marker: what actually differs between A/B rows.
    pub fn settings(&self) -> Map<String, Value> {
        self.variant.iter().filter(|(k, _)| k.as_str() != DEFAULT_KEY).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn is_marked_default(&self) -> bool {
        self.variant.get(DEFAULT_KEY).and_then(Value::as_bool).unwrap_or(false)
    }

    /// llama-bench calls a test with generated tokens "tg" even when it also has a prompt.
    pub fn is_generation(&self) -> bool {
        self.n_gen > 0
    }

    pub fn precision(&self) -> Precision {
        Precision { dtype: self.dtype.clone(), bits: self.bits }
    }
}

/// dtype plus quantization bits: runs with different precision are never compared in one table column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Precision {
    pub dtype: String,
    pub bits: Option<u32>,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bits {
            Some(bits) => write!(f, "{}-bit, {}", bits, self.dtype),
            None => f.write_str(&self.dtype),
        }
    }
}

/// Parses one result file's text. The schema is checked before the fields so that a file from a
/// newer generator says "unknown schema" rather than naming whichever field moved.
pub fn parse(path: &Path, text: &str) -> Result<ResultFile, ReportError> {
    let value: Value = serde_json::from_str(text).map_err(|error| ReportError::Json { path: path.into(), error })?;
    match value.get("schema") {
        None => return Err(ReportError::MissingSchema { path: path.into() }),
        Some(Value::String(s)) if s == SCHEMA => {}
        Some(other) => {
            let found = other.as_str().map(str::to_owned).unwrap_or_else(|| other.to_string());
            return Err(ReportError::UnknownSchema { path: path.into(), found });
        }
    }
    // Parsed again from the text rather than from `value` so that field errors carry a line number.
    let file: ResultFile =
        serde_json::from_str(text).map_err(|error| ReportError::Fields { path: path.into(), error })?;
    check_file(path, &file)?;
    Ok(file)
}

fn check_file(path: &Path, file: &ResultFile) -> Result<(), ReportError> {
    let invalid = |message: String| ReportError::Invalid { path: path.into(), message };
    if file.engine.name.trim().is_empty() {
        return Err(invalid("engine.name is empty".into()));
    }
    // A file of decode breakdowns alone (an earlier run's "before" plan) has no rates to show.
    if file.runs.is_empty() && file.decode_breakdowns.is_empty() {
        return Err(invalid("\"runs\" and \"decode_breakdowns\" are both empty".into()));
    }
    for (i, run) in file.runs.iter().enumerate() {
        let stat = &run.tokens_per_second;
        // A NaN or negative rate would silently turn into a nonsense ratio or bar on the page.
        if !(stat.mean.is_finite() && stat.mean > 0.0 && stat.std.is_finite() && stat.std >= 0.0) {
            return Err(invalid(format!(
                "runs[{i}] ({} {}): tokens_per_second must have a positive mean and a non-negative std, got {} ± {}",
                run.model, run.test, stat.mean, stat.std
            )));
        }
        if run.model.trim().is_empty() || run.test.trim().is_empty() {
            return Err(invalid(format!("runs[{i}]: model and test must not be empty")));
        }
    }
    Ok(())
}

/// Reads and validates every file, then checks that they describe one machine.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Source>, ReportError> {
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|error| ReportError::Read { path: path.clone(), error })?;
        sources.push(Source { path: path.clone(), file: parse(path, &text)? });
    }
    check_same_machine(&sources)?;
    Ok(sources)
}

/// Comparing engines is only meaningful on one hardware class; the device string is allowed to
/// differ because each engine describes the same hardware in its own words.
pub fn check_same_machine(sources: &[Source]) -> Result<(), ReportError> {
    let first = sources.first().ok_or(ReportError::NoInput)?;
    for other in &sources[1..] {
        if other.file.machine.hardware_class != first.file.machine.hardware_class {
            return Err(ReportError::MixedMachines {
                first: first.path.clone(),
                first_class: first.file.machine.hardware_class.clone(),
                other: other.path.clone(),
                other_class: other.file.machine.hardware_class.clone(),
            });
        }
    }
    Ok(())
}
