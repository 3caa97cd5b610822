//! `mlxcel score`: a teacher-forced pass that writes every position's logits, the way the model
//! is checked from outside (against transformers or mlx-lm) without a tokenizer.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use mlxcel::model::{LoadedModel, ModelSource};
use mlxcel::npy;
use serde::Serialize;

use super::plan_args::PlanArgs;

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Checkpoint folder (config.json + safetensors; no tokenizer needed).
    #[arg(short, long)]
    model: PathBuf,
    /// Token ids, comma-separated: 2,651,1234,...
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    ids: Vec<i32>,
    /// Write the logits as a float32 NumPy array of shape [len(ids), vocab].
    #[arg(long, value_name = "FILE.npy")]
    logits_out: Option<PathBuf>,
    /// Print, per position, the next token's log-probability and the argmax as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    plan: PlanArgs,
}

#[derive(Serialize)]
struct Position {
    position: usize,
    token: i32,
    /// The following prompt token, and its log-probability under this position's logits.
    next_token: Option<i32>,
    next_token_logprob: Option<f32>,
    argmax: u32,
    argmax_logprob: f32,
}

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    architecture: &'a str,
    decode_path: String,
    pretranspose: bool,
    compute_dtype: &'a str,
    prefill_chunk: u32,
    tokens: usize,
    vocab: usize,
    /// Sum of the next-token log-probabilities and the perplexity they give.
    total_logprob: f64,
    perplexity: f64,
    positions: Vec<Position>,
}

pub fn run(args: &ScoreArgs) -> anyhow::Result<()> {
    if args.logits_out.is_none() && !args.json {
        bail!("nothing to output: give --logits-out FILE.npy and/or --json");
    }
    if args.json && args.ids.len() < 2 {
        // One id has no next token to predict: the perplexity would be a meaningless 1.0.
        bail!("nothing to score: perplexity needs at least 2 token ids (--ids gave {})", args.ids.len());
    }
    let plan = args.plan.plan()?;
    let source = ModelSource::locate(&args.model)?;
    let model = LoadedModel::load(&source, &plan, args.plan.gguf_k_quants)?;
    let logits = model.teacher_forced_logits(&args.ids, plan.prefill_chunk as usize)?;
    let shape: Vec<usize> = logits.shape().iter().map(|&d| d as usize).collect();
    if let Some(path) = &args.logits_out {
        let data = logits.to_vec::<f32>()?;
        let mut out = BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
        npy::write_f32(&mut out, &shape, &data)
            .and_then(|()| out.flush())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let logprobs = logits.sub(&logits.logsumexp(&[-1], true)?)?;
        let argmax = logprobs.argmax(-1, false)?.to_vec::<u32>()?;
        let logprobs = logprobs.to_vec::<f32>()?;
        let vocab = shape[1];
        let positions: Vec<Position> = (0..shape[0])
            .map(|i| {
                let row = &logprobs[i * vocab..(i + 1) * vocab];
                let next_token = args.ids.get(i + 1).copied();
                Position {
                    position: i,
                    token: args.ids[i],
                    next_token,
                    next_token_logprob: next_token.map(|t| row[t as usize]),
                    argmax: argmax[i],
                    argmax_logprob: row[argmax[i] as usize],
                }
            })
            .collect();
        let total: f64 = positions.iter().filter_map(|p| p.next_token_logprob).map(f64::from).sum();
        let scored = positions.len() - 1;
        let perplexity = (-total / scored as f64).exp();
        // JSON has no infinity: serde would print null, which reads as "no value" rather than
        // "no probability at all".
        if !perplexity.is_finite() {
            bail!(
                "the perplexity overflows (total log-probability {total:e} over {scored} tokens): the model gives these ids next to no probability, and its weights are likely corrupt"
            );
        }
        let report = Report {
            model: args.model.display().to_string(),
            architecture: model.architecture(),
            decode_path: plan.decode_path.to_string(),
            pretranspose: plan.pretranspose,
            compute_dtype: plan.compute_dtype.name(),
            prefill_chunk: plan.prefill_chunk,
            tokens: shape[0],
            vocab,
            total_logprob: total,
            perplexity,
            positions,
        };
        super::print_stdout(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    }
    Ok(())
}
