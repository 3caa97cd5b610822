//! Throughput measurement with llama-bench's conventions: `ppN` is the rate at which an N-token
//! prompt is processed from an empty cache (after `depth` tokens of context), `tgN` the rate at
//! which N tokens are generated one at a time after that context, and `tgN@bB` the aggregate rate
//! of B sequences generating N tokens each in one batched forward pass per step (the server's
//! decode; llama-batched-bench's `-npl`). Each test runs `warmup` times
//! unrecorded, then `repetitions` times; the report carries mean ± standard deviation, time to
//! first token for prompt tests, and the peak memory MLX saw.
//!
//! Prefill and decode are the generation core's ([`crate::pipeline`]) with greedy choice (step
//! n+1 built and scheduled before token n is read back), so `tg` measures what `generate`
//! delivers, minus sampling filters.

use std::collections::HashMap;
use std::time::Instant;

use mlx_bridge::quant::QuantSpec;
use mlx_bridge::{Array, Dtype, memory, random};
use mlxcel_models::gemma3n::{Gemma3n, random as shapes};
use mlxcel_models::gguf::KQuants;
use mlxcel_models::hardware::ExecutionPlan;
use mlxcel_models::layers::KvCache;
use mlxcel_models::weights::QuantizationConfig;
use mlxcel_models::{Logits, Prefill};
use serde::Serialize;

use crate::generate::GenerateError;
use crate::model::LoadedModel;
use crate::pipeline::{DecodeBatch, Greedy, Pipeline};

/// One test: `pp` or `tg`, at a context depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    Prompt {
        tokens: usize,
        depth: usize,
    },
    /// `batch` sequences at once, each after its own `depth` tokens of context.
    Generate {
        tokens: usize,
        depth: usize,
        batch: usize,
    },
}

impl Test {
    /// `pp512`, `tg128`, `pp512@d1024`, `tg128@b16`.
    pub fn name(&self) -> String {
        let (kind, tokens, depth, batch) = match *self {
            Test::Prompt { tokens, depth } => ("pp", tokens, depth, 1),
            Test::Generate { tokens, depth, batch } => ("tg", tokens, depth, batch),
        };
        let mut name = format!("{kind}{tokens}");
        if depth > 0 {
            name += &format!("@d{depth}");
        }
        if batch > 1 {
            name += &format!("@b{batch}");
        }
        name
    }

    fn depth(&self) -> usize {
        match *self {
            Test::Prompt { depth, .. } | Test::Generate { depth, .. } => depth,
        }
    }

    /// Sequences decoding together.
    pub fn batch(&self) -> usize {
        match *self {
            Test::Prompt { .. } => 1,
            Test::Generate { batch, .. } => batch,
        }
    }

    /// Positions the test needs in the cache (`None`: more than a `usize` holds).
    pub fn positions(&self) -> Option<usize> {
        match *self {
            Test::Prompt { tokens, depth } => depth.checked_add(tokens),
            Test::Generate { tokens, depth, .. } => depth.checked_add(1)?.checked_add(tokens),
        }
    }
}

/// Mean and (sample) standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub std: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        let n = samples.len() as f64;
        if samples.is_empty() {
            return Spread { mean: 0.0, std: 0.0 };
        }
        let mean = samples.iter().sum::<f64>() / n;
        let var =
            if samples.len() > 1 { samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        Spread { mean, std: var.sqrt() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TokensPerSecond {
    pub mean: f64,
    pub std: f64,
    pub samples: Vec<f64>,
}

/// One test's result, in the `mlxcel-bench/1` run shape.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub depth: usize,
    /// Sequences generating together (`tg` tests; their aggregate rate).
    pub batch: usize,
    pub repetitions: usize,
    pub tokens_per_second: TokensPerSecond,
    /// Prompt tests: time until the first token's logits are ready.
    pub ttft_ms: Option<Spread>,
    /// MLX's peak of allocated buffers during the test.
    pub peak_memory_bytes: usize,
    /// The process's peak resident memory (Linux `VmHWM`) since [`reset_peak_rss`]: the model's
    /// load included, and everything MLX does not allocate (the tokenizer, the GGUF map).
    pub peak_rss_bytes: Option<u64>,
}

/// Restarts the process's peak-RSS count (Linux: `/proc/self/clear_refs`), so that the next
/// [`peak_rss_bytes`] covers only what follows. Best effort: elsewhere it does nothing.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory, where the OS reports it (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A real model's shape with random weights, loaded under a plan (`mlxcel bench --random`), with
/// the sizes a result row reports.
pub struct RandomModel {
    pub model: LoadedModel,
    /// Logical parameters: a packed `uint32` word holds `32 / bits` weights.
    pub params: u64,
    pub size_bytes: u64,
    /// The weight bytes a decode step reads.
    pub decode_weight_bytes: u64,
}

/// Gemma 3n at `shape` (e2b, e4b, e2b-mini) with random weights from `seed`, in the plan's compute
/// dtype or, with `bits`, MLX affine groups of 64; the plan's process-wide settings are applied.
pub fn random_gemma3n(
    shape: &str,
    bits: Option<i32>,
    plan: &ExecutionPlan,
    k_quants: KQuants,
    seed: u64,
) -> Result<RandomModel, GenerateError> {
    crate::model::apply_runtime_settings(plan);
    let config = shapes::named_config(shape)?;
    let quantize = bits.map(|b| QuantSpec::affine(64, b)).transpose()?;
    let weights = shapes::random_weights(&config, plan.compute_dtype, quantize, seed)?;
    let size_bytes = weights.values().map(Array::nbytes).sum::<usize>() as u64;
    let decode_weight_bytes = shapes::decode_weight_bytes(&weights);
    let params = logical_params(&weights, quantize);
    let quantization = quantize.map(|default| QuantizationConfig { default, overrides: HashMap::new() });
    let options = mlxcel_models::LoadOptions::from_plan(plan, k_quants);
    let model = Gemma3n::from_arrays(config, weights, quantization, options)?;
    Ok(RandomModel { model: LoadedModel::new(Box::new(model), "gemma3n"), params, size_bytes, decode_weight_bytes })
}

fn logical_params(weights: &HashMap<String, Array>, quantize: Option<QuantSpec>) -> u64 {
    weights
        .iter()
        .filter(|(name, _)| !name.ends_with(".scales") && !name.ends_with(".biases"))
        .map(|(_, a)| match (a.dtype(), quantize) {
            (Dtype::U32, Some(spec)) => a.size() as u64 * 32 / spec.bits as u64,
            _ => a.size() as u64,
        })
        .sum()
}

/// How to run the tests.
#[derive(Debug, Clone, Copy)]
pub struct BenchSettings {
    pub repetitions: usize,
    pub warmup: usize,
    pub prefill_chunk: usize,
    pub seed: u64,
}

/// Runs `test` `warmup + repetitions` times on fresh caches with random token ids.
pub fn measure(model: &LoadedModel, test: Test, settings: BenchSettings) -> Result<Measurement, GenerateError> {
    let vocab = model.vocab_size() as i64;
    let context = model.context_length();
    let positions = test
        .positions()
        .filter(|&positions| positions <= context)
        .ok_or_else(|| GenerateError::BeyondContext { what: test.name(), context })?;
    let mut rates = Vec::with_capacity(settings.repetitions);
    let mut ttfts = Vec::new();
    memory::reset_peak();
    for run in 0..settings.warmup + settings.repetitions {
        // Fresh ids per run: a repeated prompt could hit caches that real prompts never do.
        let key = random::key(settings.seed.wrapping_add(run as u64))?;
        let depth = test.depth();
        let (rate, ttft) = match test {
            Test::Prompt { tokens, .. } => {
                let ids = random_ids(vocab, positions, &key)?;
                let mut caches = model.make_caches();
                prefill(model, &ids[..depth], settings.prefill_chunk, &mut caches)?;
                let started = Instant::now();
                if let Some(logits) = prefill(model, &ids[depth..depth + tokens], settings.prefill_chunk, &mut caches)?
                {
                    logits.argmax(-1, false)?.eval()?;
                }
                let seconds = started.elapsed().as_secs_f64();
                (tokens as f64 / seconds, Some(seconds * 1e3))
            }
            Test::Generate { tokens, batch: 1, .. } => {
                // The generation core with greedy choice: one more token than timed steps, the
                // first coming from the prefill.
                let ids = random_ids(vocab, depth + 1, &key)?;
                let mut pipeline =
                    Pipeline::new(model, &ids, model.make_caches(), 0, Greedy, tokens + 1, settings.prefill_chunk)?;
                pipeline.prefill_all()?;
                pipeline.wait()?;
                let started = Instant::now();
                while pipeline.next_token()?.is_some() {}
                (tokens as f64 / started.elapsed().as_secs_f64(), None)
            }
            Test::Generate { tokens, batch, .. } => {
                (batched_decode_rate(model, test, batch, tokens, settings, &key)?, None)
            }
        };
        if run >= settings.warmup {
            rates.push(rate);
            ttfts.extend(ttft);
        }
    }
    let spread = Spread::of(&rates);
    let (n_prompt, n_gen) = match test {
        Test::Prompt { tokens, .. } => (tokens, 0),
        Test::Generate { tokens, .. } => (0, tokens),
    };
    Ok(Measurement {
        test: test.name(),
        n_prompt,
        n_gen,
        depth: test.depth(),
        batch: test.batch(),
        repetitions: settings.repetitions,
        tokens_per_second: TokensPerSecond { mean: spread.mean, std: spread.std, samples: rates },
        ttft_ms: (!ttfts.is_empty()).then(|| Spread::of(&ttfts)),
        peak_memory_bytes: memory::peak(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// `batch` sequences, each with its own random context, prefilled alone and then decoding
/// `tokens` more tokens together through [`DecodeBatch`]: the aggregate tokens per second.
fn batched_decode_rate(
    model: &LoadedModel,
    test: Test,
    batch: usize,
    tokens: usize,
    settings: BenchSettings,
    key: &Array,
) -> Result<f64, GenerateError> {
    let depth = test.depth();
    let ids = random_ids(model.vocab_size() as i64, batch * (depth + 1), key)?;
    let mut members = Vec::with_capacity(batch);
    let mut decoding = DecodeBatch::new();
    for (id, prompt) in ids.chunks(depth + 1).enumerate() {
        let mut pipeline =
            Pipeline::new(model, prompt, model.make_caches(), 0, Greedy, tokens + 1, settings.prefill_chunk)?;
        pipeline.prefill_all()?;
        pipeline.wait()?;
        decoding.join(id as u64, &mut pipeline)?;
        members.push((id as u64, pipeline));
    }
    decoding.settle()?;
    let started = Instant::now();
    // The first step reads the prefills' tokens back (and schedules the first forward pass):
    // they are not counted, as `tg` counts the tokens after the first.
    let mut generated = 0;
    let mut first = true;
    while !members.is_empty() {
        let mut rows: Vec<&mut Pipeline<'_, Greedy>> = members.iter_mut().map(|(_, pipeline)| pipeline).collect();
        for outcome in decoding.step(model, &mut rows)? {
            generated += usize::from(outcome?.is_some() && !first);
        }
        first = false;
        // Those with no token left have left the batch; a member's last token is read in the
        // step after its last forward pass.
        members.retain(|(id, _)| decoding.contains(*id));
    }
    Ok(generated as f64 / started.elapsed().as_secs_f64())
}

/// `count` random token ids below `vocab`.
fn random_ids(vocab: i64, count: usize, key: &Array) -> Result<Vec<u32>, GenerateError> {
    let ids = random::randint(0, vocab, &[count as i32], Dtype::I32, Some(key))?;
    Ok(ids.to_vec::<i32>()?.into_iter().map(|id| id as u32).collect())
}

/// Feeds `tokens` through the generation core's chunked prefill, evaluating each chunk; returns
/// the last position's logits.
fn prefill(
    model: &LoadedModel,
    tokens: &[u32],
    chunk: usize,
    caches: &mut [KvCache],
) -> Result<Option<Array>, GenerateError> {
    let mut prefill = Prefill::new(tokens, chunk.max(1), Logits::Last)?;
    let mut logits = None;
    while let Some(step) = prefill.step(model.causal_lm(), caches)? {
        step.logits.eval()?;
        logits = Some(step.logits);
    }
    Ok(logits)
}

/// Where one decode step's time goes, measured without pipelining: building the graph on the
/// host, then evaluating it (device work, launches and the wait for the token).
#[derive(Debug, Clone, Serialize)]
pub struct DecodeBreakdown {
    pub depth: usize,
    pub steps: usize,
    /// Operations one step evaluates (distinct graph nodes; a compiled block counts once): a
    /// proxy for kernel launches.
    pub graph_nodes_per_token: usize,
    /// Those operations by MLX primitive, most frequent first.
    pub graph_ops: Vec<(String, usize)>,
    /// Host time to build one step's graph (the model's forward pass and the argmax, lazily).
    pub build_ms: Spread,
    /// Time from scheduling the step to having the token on the host.
    pub eval_ms: Spread,
    /// The part of `eval` before MLX hands the step to the device: its host work per operation
    /// (`async_eval` returning). Where it is most of `eval`, the host bounds decode, not the device.
    pub encode_ms: Spread,
    /// `build + eval`: a step when nothing overlaps.
    pub step_ms: Spread,
}

/// `steps` unpipelined greedy decode steps after `depth` random tokens.
pub fn decode_breakdown(
    model: &LoadedModel,
    depth: usize,
    steps: usize,
    settings: BenchSettings,
) -> Result<DecodeBreakdown, GenerateError> {
    if depth >= model.context_length() {
        return Err(GenerateError::BeyondContext {
            what: format!("a decode step at depth {depth}"),
            context: model.context_length(),
        });
    }
    let key = random::key(settings.seed)?;
    let ids = random_ids(model.vocab_size() as i64, depth + 1, &key)?;
    let mut caches = model.make_caches();
    let logits = prefill(model, &ids, settings.prefill_chunk, &mut caches)?.ok_or(GenerateError::EmptyPrompt)?;
    let mut token = logits.argmax(-1, false)?;
    token.eval()?;
    let (mut build, mut encode, mut eval, mut step) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut nodes, mut ops) = (0, Vec::new());
    for i in 0..settings.warmup + steps {
        let started = Instant::now();
        let next = model.forward_last(&token.astype(Dtype::I32)?.reshape(&[1, 1])?, &mut caches)?.argmax(-1, false)?;
        let built = Instant::now();
        if i == settings.warmup {
            nodes = mlx_bridge::pending_graph_nodes(&[&next]);
            ops = mlx_bridge::pending_graph_ops(&[&next]);
        }
        mlx_bridge::async_eval(&[&next])?;
        let encoded = Instant::now();
        next.item::<u32>()?;
        let done = Instant::now();
        if i >= settings.warmup {
            build.push((built - started).as_secs_f64() * 1e3);
            encode.push((encoded - built).as_secs_f64() * 1e3);
            eval.push((done - built).as_secs_f64() * 1e3);
            step.push((done - started).as_secs_f64() * 1e3);
        }
        token = next;
    }
    Ok(DecodeBreakdown {
        depth,
        steps,
        graph_nodes_per_token: nodes,
        graph_ops: ops,
        build_ms: Spread::of(&build),
        eval_ms: Spread::of(&eval),
        encode_ms: Spread::of(&encode),
        step_ms: Spread::of(&step),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_names_follow_llama_bench() {
        assert_eq!(Test::Prompt { tokens: 512, depth: 0 }.name(), "pp512");
        assert_eq!(Test::Generate { tokens: 128, depth: 4096, batch: 1 }.name(), "tg128@d4096");
        assert_eq!(Test::Generate { tokens: 64, depth: 256, batch: 16 }.name(), "tg64@d256@b16");
        assert_eq!(Test::Generate { tokens: 128, depth: 10, batch: 4 }.positions(), Some(139));
        assert_eq!(Test::Prompt { tokens: 1, depth: usize::MAX }.positions(), None);
        assert_eq!(Test::Generate { tokens: 0, depth: usize::MAX, batch: 1 }.positions(), None);
    }

    #[test]
    fn spread_is_the_sample_standard_deviation() {
        let s = Spread::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.mean, 5.0);
        assert!((s.std - 2.138_089_935).abs() < 1e-6);
        assert_eq!(Spread::of(&[3.0]).std, 0.0);
    }
}
