//! `mlxcel bench`: llama-bench's tests (`-p`, `-n`, `-d`, `-r`) on a real model or on a real
//! model's shape with random weights (`--random e2b`), one process, the model loaded once per
//! plan variant. Comma lists of plan settings run every combination (A/B tables in one run).
//! Output: a Markdown table, CSV, or the `mlxcel-bench/1` JSON that `benchmarks/` renders.

use std::path::PathBuf;

use anyhow::{Context, bail};
use mlx_bridge::Dtype;
use mlxcel::api::{LoadOptions, plan_for};
use mlxcel::bench::{self, BenchSettings, Measurement, Test};
use mlxcel::hub::{self, HubOptions, ModelSpec};
use mlxcel::model::{LoadedModel, ModelSource, ModelSummary};
use mlxcel_models::gemma3n::random as shapes;
use mlxcel_models::gguf::KQuants;
use mlxcel_models::hardware::{self, ActivationPrecision, DecodePath, ExecutionPlan, HardwareProfile, Overrides};
use serde::Serialize;
use serde_json::{Value, json};

use super::plan_args::{
    parse_activation_precision, parse_chunk, parse_decode_path, parse_dtype, parse_k_quants, parse_switch,
    parse_threads,
};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model: local folder or GGUF file, alias (smollm2, gemma-3-270m, gemma-3n, ...) or owner/name.
    #[arg(short, long, conflicts_with = "random")]
    model: Option<String>,
    /// A real model's shape with random weights (no download): e2b, e4b or e2b-mini (Gemma 3n).
    #[arg(long)]
    random: Option<String>,
    /// With --random: quantize the weights (MLX affine, group 64, as mlx-lm's converter).
    #[arg(long, value_parser = clap::value_parser!(i32).range(2..=8))]
    bits: Option<i32>,
    /// Prompt lengths to test (pp), comma-separated; 0 skips prompt tests.
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', default_value = "512")]
    n_prompt: Vec<usize>,
    /// Generation lengths to test (tg), comma-separated; 0 skips generation tests.
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', default_value = "128")]
    n_gen: Vec<usize>,
    /// Sequences decoding together in the tg tests (one batched forward pass per step, as the
    /// server's), comma-separated; their aggregate rate is reported.
    #[arg(short = 'b', long, value_delimiter = ',', default_value = "1", value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: Vec<u32>,
    /// Context depths (tokens already in the cache), comma-separated.
    #[arg(short = 'd', long = "n-depth", value_delimiter = ',', default_value = "0")]
    depth: Vec<usize>,
    /// Recorded repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repetitions: u32,
    /// Unrecorded runs of each test first.
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Output format.
    #[arg(short = 'o', long, default_value = "md", value_parser = ["md", "json", "csv"])]
    output: String,
    /// Seed for the random prompts (and random weights).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Decode paths to compare, comma-separated (default: the plan's).
    #[arg(long, value_delimiter = ',', value_parser = parse_decode_path)]
    decode_path: Vec<DecodePath>,
    /// Pre-transposition settings to compare: on, off (default: the plan's).
    #[arg(long, value_delimiter = ',', value_parser = parse_switch)]
    pretranspose: Vec<bool>,
    /// Compute dtypes to compare: float32, bfloat16, float16 (default: the plan's).
    #[arg(long, value_delimiter = ',', value_parser = parse_dtype)]
    compute_dtype: Vec<Dtype>,
    /// Dequantize-at-load settings to compare: on, off (default: the plan's).
    #[arg(long, value_delimiter = ',', value_parser = parse_switch)]
    dequantize: Vec<bool>,
    /// mlxcel's CPU kernels to compare: on, off (default: the plan's).
    #[arg(long, value_delimiter = ',', value_parser = parse_switch)]
    cpu_kernels: Vec<bool>,
    /// mlxcel's NVIDIA kernels to compare: on, off (default: the plan's).
    #[arg(long, value_delimiter = ',', value_parser = parse_switch)]
    cuda_kernels: Vec<bool>,
    /// Thread counts for the CPU kernels to compare (default: the plan's).
    #[arg(long, value_delimiter = ',', value_parser = parse_threads)]
    threads: Vec<u32>,
    /// CPU-kernel activation precisions to compare: int8, int16 (default: the plan's).
    #[arg(long, value_delimiter = ',', value_parser = parse_activation_precision)]
    activation_precision: Vec<ActivationPrecision>,
    /// Compiled decode steps to compare: on, off (default: the plan's).
    #[arg(long, value_delimiter = ',', value_parser = parse_switch)]
    compiled_decode: Vec<bool>,
    /// Tokens per prefill step (default: the plan's).
    #[arg(long, value_parser = parse_chunk)]
    prefill_chunk: Option<u32>,
    /// GGUF K-quant tensors where weights stay MLX-quantized: exact, dequantize, q8 or q4.
    #[arg(long, default_value = "exact", value_parser = parse_k_quants)]
    gguf_k_quants: KQuants,
    /// Use only local caches (no downloads).
    #[arg(long)]
    offline: bool,
    /// Also measure where a decode step's time goes (graph size, host build time, evaluation
    /// time; unpipelined) over this many steps, per variant.
    #[arg(long, value_name = "STEPS")]
    breakdown: Option<usize>,
    /// Also write the JSON report here (whatever -o prints).
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// One plan variant's settings as reported: every plan setting but the compute dtype (reported
/// as the run's dtype), by name, and `default` when all of them are this machine's defaults.
type Variant = serde_json::Map<String, Value>;

fn variant_of(plan: &ExecutionPlan, machine_default: &ExecutionPlan) -> Variant {
    let values = |plan: &ExecutionPlan| -> Vec<(&'static str, String)> {
        plan.settings().iter().map(|setting| (setting.name, setting.value.clone())).collect()
    };
    let mut variant: Variant = values(plan)
        .into_iter()
        .filter(|(name, _)| *name != "compute_dtype")
        .map(|(name, value)| {
            // Numbers stay numbers in the JSON (the page generator reads prefill_chunk as one).
            let value = value.parse::<u64>().map_or_else(|_| Value::String(value.clone()), Value::from);
            (name.to_string(), value)
        })
        .collect();
    variant.insert("default".to_string(), Value::Bool(values(plan) == values(machine_default)));
    variant
}

#[derive(Debug, Clone, Serialize)]
struct Run {
    model: String,
    source: String,
    params: u64,
    size_bytes: u64,
    /// Weight bytes one decode step reads, where known: the memory roofline's numerator.
    #[serde(skip_serializing_if = "Option::is_none")]
    decode_weight_bytes: Option<u64>,
    dtype: String,
    bits: Option<i32>,
    variant: Variant,
    #[serde(flatten)]
    measurement: Measurement,
}

/// What is being measured, loaded under a plan.
enum Subject {
    Random { shape: String, bits: Option<i32> },
    Checkpoint { path: PathBuf, summary: Box<ModelSummary> },
}

impl Subject {
    fn name(&self) -> String {
        match self {
            Subject::Random { shape, .. } => format!("gemma-3n-{shape}"),
            Subject::Checkpoint { path, .. } => {
                path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
            }
        }
    }

    fn source(&self) -> String {
        match self {
            Subject::Random { shape, .. } => format!("random {shape}"),
            Subject::Checkpoint { summary, .. } => {
                let types: Vec<&str> = summary.dtypes.keys().map(String::as_str).collect();
                format!("{} {}", summary.format, types.join("+"))
            }
        }
    }

    /// The model under `plan`, with its logical parameter count and weight bytes.
    fn load(&self, plan: &ExecutionPlan, k_quants: KQuants, seed: u64) -> anyhow::Result<Loaded> {
        match self {
            Subject::Checkpoint { path, summary } => {
                let source = ModelSource::locate(path)?;
                let model = LoadedModel::load(&source, plan, k_quants)?;
                Ok(Loaded {
                    model,
                    params: summary.parameters,
                    size_bytes: summary.weight_file_bytes,
                    decode_weight_bytes: None,
                })
            }
            Subject::Random { shape, bits } => {
                let random = bench::random_gemma3n(shape, *bits, plan, k_quants, seed)?;
                Ok(Loaded {
                    model: random.model,
                    params: random.params,
                    size_bytes: random.size_bytes,
                    decode_weight_bytes: Some(random.decode_weight_bytes),
                })
            }
        }
    }

    fn bits(&self) -> Option<i32> {
        match self {
            Subject::Random { bits, .. } => *bits,
            Subject::Checkpoint { .. } => None,
        }
    }
}

/// A subject loaded under one plan, with the sizes its result rows report.
struct Loaded {
    model: LoadedModel,
    params: u64,
    size_bytes: u64,
    /// The weight bytes a decode step reads (known for the random shapes).
    decode_weight_bytes: Option<u64>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    // clap's `requires` would do, but it lets `--bits` through beside `-m` (which conflicts with
    // --random), where it would be silently ignored.
    if args.bits.is_some() && args.random.is_none() {
        bail!("--bits quantizes the random weights of --random; a checkpoint (-m) keeps its own");
    }
    let tests = tests(args)?;
    let profile = hardware::detect().context("hardware detection failed")?;
    let base = LoadOptions {
        plan: Overrides { prefill_chunk: args.prefill_chunk, ..Default::default() },
        offline: args.offline,
        ..Default::default()
    };
    let default_plan = plan_for(&base)?;
    // What this machine runs with no flags: a variant equal to it is marked `default` in the report.
    let machine_default = plan_for(&LoadOptions::default())?;
    let subject = match (&args.model, &args.random) {
        (Some(spec), None) => {
            let spec = ModelSpec::parse(spec)?;
            let path = hub::resolve(&spec, &HubOptions::from_env(args.offline))?;
            let summary = ModelSummary::read(&path)?;
            Subject::Checkpoint { path, summary: Box::new(summary) }
        }
        (None, Some(shape)) => {
            shapes::named_config(shape)?;
            Subject::Random { shape: shape.clone(), bits: args.bits }
        }
        _ => bail!("give a model (-m) or a random shape (--random {})", shapes::SHAPES.join("|")),
    };
    let settings = BenchSettings {
        repetitions: args.repetitions as usize,
        warmup: args.warmup as usize,
        prefill_chunk: default_plan.prefill_chunk as usize,
        seed: args.seed,
    };
    let mut runs = Vec::new();
    let mut breakdowns = Vec::new();
    for plan in variants(args, &base)? {
        // Each variant's peak RSS counts its own load, not an earlier variant's buffers.
        mlx_bridge::memory::clear_cache();
        bench::reset_peak_rss();
        let Loaded { model, params, size_bytes, decode_weight_bytes } =
            subject.load(&plan, args.gguf_k_quants, args.seed)?;
        let variant = variant_of(&plan, &machine_default);
        for &test in &tests {
            let settings = BenchSettings { prefill_chunk: plan.prefill_chunk as usize, ..settings };
            let measurement = bench::measure(&model, test, settings)?;
            eprintln!(
                "{} {} {}: {:.2} ± {:.2} t/s",
                subject.name(),
                plan.compute_dtype,
                measurement.test,
                measurement.tokens_per_second.mean,
                measurement.tokens_per_second.std
            );
            runs.push(Run {
                model: subject.name(),
                source: subject.source(),
                params,
                size_bytes,
                decode_weight_bytes,
                dtype: plan.compute_dtype.name().to_string(),
                bits: subject.bits(),
                variant: variant.clone(),
                measurement,
            });
        }
        if let Some(steps) = args.breakdown {
            let depth = args.n_prompt.iter().copied().max().unwrap_or(0);
            let settings = BenchSettings { prefill_chunk: plan.prefill_chunk as usize, ..settings };
            let breakdown = bench::decode_breakdown(&model, depth, steps, settings)?;
            eprintln!(
                "{} decode breakdown at depth {depth}: {} graph nodes/token, build {:.2} ms + eval {:.2} ms (encode {:.2} ms)",
                subject.name(),
                breakdown.graph_nodes_per_token,
                breakdown.build_ms.mean,
                breakdown.eval_ms.mean,
                breakdown.encode_ms.mean
            );
            breakdowns.push(json!({
                "model": subject.name(),
                "dtype": plan.compute_dtype.name(),
                "bits": subject.bits(),
                "variant": variant,
                "breakdown": breakdown,
            }));
        }
    }
    let mut report = report_json(&profile, &default_plan, &runs);
    if !breakdowns.is_empty() {
        report["decode_breakdowns"] = Value::Array(breakdowns);
    }
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let text = match args.output.as_str() {
        "json" => serde_json::to_string_pretty(&report)? + "\n",
        "csv" => csv(&profile, &runs),
        _ => markdown(&profile, &runs),
    };
    super::print_stdout(&text)
}

fn tests(args: &BenchArgs) -> anyhow::Result<Vec<Test>> {
    let mut tests = Vec::new();
    for &depth in &args.depth {
        tests.extend(args.n_prompt.iter().filter(|&&n| n > 0).map(|&tokens| Test::Prompt { tokens, depth }));
        for &batch in &args.batch {
            let generate = |&tokens| Test::Generate { tokens, depth, batch: batch as usize };
            tests.extend(args.n_gen.iter().filter(|&&n| n > 0).map(generate));
        }
    }
    if tests.is_empty() {
        bail!("no tests: every -p and -n value is 0");
    }
    if let Some(test) = tests.iter().find(|test| test.positions().is_none()) {
        bail!("{} needs more positions than any model has (-d plus -p or -n overflows)", test.name());
    }
    Ok(tests)
}

/// Every combination of the listed settings; an empty list keeps the plan's value.
fn variants(args: &BenchArgs, base: &LoadOptions) -> anyhow::Result<Vec<ExecutionPlan>> {
    fn expand<T: Copy>(combos: Vec<Overrides>, values: &[T], set: impl Fn(&mut Overrides, T)) -> Vec<Overrides> {
        if values.is_empty() {
            return combos;
        }
        combos
            .into_iter()
            .flat_map(|combo| {
                values
                    .iter()
                    .map(|&value| {
                        let mut combo = combo.clone();
                        set(&mut combo, value);
                        combo
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
    let mut combos = vec![base.plan.clone()];
    combos = expand(combos, &args.compute_dtype, |o, v| o.compute_dtype = Some(v));
    combos = expand(combos, &args.dequantize, |o, v| o.dequantize = Some(v));
    combos = expand(combos, &args.cpu_kernels, |o, v| o.cpu_kernels = Some(v));
    combos = expand(combos, &args.cuda_kernels, |o, v| o.cuda_kernels = Some(v));
    combos = expand(combos, &args.threads, |o, v| o.threads = Some(v));
    combos = expand(combos, &args.activation_precision, |o, v| o.activation_precision = Some(v));
    combos = expand(combos, &args.compiled_decode, |o, v| o.compiled_decode = Some(v));
    combos = expand(combos, &args.pretranspose, |o, v| o.pretranspose = Some(v));
    combos = expand(combos, &args.decode_path, |o, v| o.decode_path = Some(v));
    combos.into_iter().map(|plan| Ok(plan_for(&LoadOptions { plan, ..base.clone() })?)).collect()
}

fn report_json(profile: &HardwareProfile, plan: &ExecutionPlan, runs: &[Run]) -> Value {
    let commit = env!("MLXCEL_GIT_COMMIT");
    json!({
        "schema": "mlxcel-bench/1",
        "machine": {
            "hardware_class": plan.hardware_class.to_string(),
            "device": device_label(profile),
            "backend": format!("{:?}", profile.backend).to_lowercase(),
            "os": std::env::consts::OS,
            "memory_bytes": profile.memory_bytes,
        },
        "engine": {
            "name": "mlxcel",
            "version": format!("{} (commit {commit})", env!("CARGO_PKG_VERSION")),
            "mlx_version": profile.mlx_version,
            "details": {
                "mlx_package": profile.mlx_package,
                "blas": profile.cpu.blas.library.name(),
                "cuda_compute_capability": profile.cuda.as_ref().map(|c| format!("{}.{}", c.compute_capability_major, c.compute_capability_minor)),
            },
        },
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "runs": runs,
    })
}

fn device_label(profile: &HardwareProfile) -> String {
    match &profile.cuda {
        Some(_) => profile.device_name.clone(),
        None => format!("{} ({} cores)", profile.device_name, profile.cpu.cores),
    }
}

const COLUMNS: [&str; 11] =
    ["model", "source", "size", "params", "backend", "dtype", "variant", "test", "t/s", "peak mem", "peak RSS"];

fn row(profile: &HardwareProfile, run: &Run) -> Vec<String> {
    let m = &run.measurement;
    let setting = |name: &str| run.variant.get(name).map_or_else(String::new, |v| v.to_string().replace('"', ""));
    let variant = format!(
        "{} pt={} dq={} ck={} t={} act={} cd={}",
        setting("decode_path"),
        setting("pretranspose"),
        setting("dequantize"),
        setting("cpu_kernels"),
        setting("threads"),
        setting("activation_precision"),
        setting("compiled_decode")
    );
    let dtype = run.bits.map_or(run.dtype.clone(), |b| format!("{} q{b}", run.dtype));
    vec![
        run.model.clone(),
        run.source.clone(),
        format!("{:.2} MiB", run.size_bytes as f64 / (1 << 20) as f64),
        format!("{:.2} M", run.params as f64 / 1e6),
        format!("{:?}", profile.backend).to_lowercase(),
        dtype,
        variant,
        m.test.clone(),
        format!("{:.2} ± {:.2}", m.tokens_per_second.mean, m.tokens_per_second.std),
        format!("{:.0} MiB", m.peak_memory_bytes as f64 / (1 << 20) as f64),
        m.peak_rss_bytes.map_or("—".to_string(), |b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64)),
    ]
}

fn markdown(profile: &HardwareProfile, runs: &[Run]) -> String {
    let mut out = format!("| {} |\n|{}\n", COLUMNS.join(" | "), "---|".repeat(COLUMNS.len()));
    for run in runs {
        out.push_str(&format!("| {} |\n", row(profile, run).join(" | ")));
    }
    out.push_str(&format!(
        "\nmlxcel {} (commit {}), MLX {}, {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("MLXCEL_GIT_COMMIT"),
        profile.mlx_version,
        device_label(profile)
    ));
    out
}

fn csv(profile: &HardwareProfile, runs: &[Run]) -> String {
    let quote = |field: &str| {
        if field.contains([',', '"', '\n']) { format!("\"{}\"", field.replace('"', "\"\"")) } else { field.to_string() }
    };
    let mut out = "model,source,size_bytes,params,backend,dtype,bits,decode_path,pretranspose,dequantize,test,n_prompt,n_gen,depth,batch,tps_mean,tps_std,ttft_ms,peak_memory_bytes,peak_rss_bytes\n".to_string();
    for run in runs {
        let m = &run.measurement;
        let setting = |name: &str| run.variant.get(name).map_or_else(String::new, |v| v.to_string().replace('"', ""));
        let fields = [
            run.model.clone(),
            run.source.clone(),
            run.size_bytes.to_string(),
            run.params.to_string(),
            format!("{:?}", profile.backend).to_lowercase(),
            run.dtype.clone(),
            run.bits.map_or(String::new(), |b| b.to_string()),
            setting("decode_path"),
            setting("pretranspose"),
            setting("dequantize"),
            m.test.clone(),
            m.n_prompt.to_string(),
            m.n_gen.to_string(),
            m.depth.to_string(),
            m.batch.to_string(),
            format!("{:.4}", m.tokens_per_second.mean),
            format!("{:.4}", m.tokens_per_second.std),
            m.ttft_ms.map_or(String::new(), |t| format!("{:.3}", t.mean)),
            m.peak_memory_bytes.to_string(),
            m.peak_rss_bytes.map_or(String::new(), |b| b.to_string()),
        ];
        out.push_str(&fields.iter().map(|f| quote(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}
