//! `mlxcel generate`: one prompt, the reply streamed to stdout, statistics on stderr.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use mlxcel::api::{Event, Model};
use mlxcel::chat_template::Message;
use mlxcel::generate::GenerationStats;

use super::model_args::ModelArgs;
use super::sampling_args::SamplingArgs;

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(short, long, conflicts_with = "file")]
    prompt: Option<String>,
    /// Read the prompt from a file ("-" for standard input).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// A system message (chat template only).
    #[arg(long)]
    system: Option<String>,
    /// Send the prompt as plain text instead of through the model's chat template.
    #[arg(long)]
    no_chat_template: bool,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let prompt = read_prompt(args)?;
    let options = args.sampling.options()?;
    let model = args.model.load()?;
    let use_template = !args.no_chat_template && model.has_chat_template();
    if args.system.is_some() && !use_template {
        bail!("--system needs the chat template (the model has none, or --no-chat-template was given)");
    }
    let stream = if use_template {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(Message::system(system));
        }
        messages.push(Message::user(&prompt));
        model.chat_stream(&messages, &options)?
    } else {
        model.stream(&prompt, &options)?
    };
    let mut stdout = std::io::stdout().lock();
    let mut done = None;
    for event in stream {
        match event? {
            Event::Token { text, .. } | Event::Flush { text } => {
                stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).context("writing to stdout")?;
            }
            Event::Done { stats, .. } => done = Some(stats),
        }
    }
    writeln!(stdout).context("writing to stdout")?;
    if let Some(stats) = done {
        eprint!("{}", summary(&model, &stats));
    }
    Ok(())
}

fn read_prompt(args: &GenerateArgs) -> anyhow::Result<String> {
    let prompt = match (&args.prompt, &args.file) {
        (Some(prompt), None) => prompt.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            std::io::read_to_string(std::io::stdin()).context("reading the prompt from stdin")?
        }
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("reading the prompt from {}", path.display()))?
        }
        _ => bail!("no prompt: give -p/--prompt TEXT or -f/--file FILE"),
    };
    if prompt.trim().is_empty() {
        bail!("the prompt is empty");
    }
    Ok(prompt)
}

/// mlx-lm's summary: prompt and generation throughput, peak memory.
pub fn summary(model: &Model, stats: &GenerationStats) -> String {
    format!(
        "==========\nPrompt: {} tokens, {:.3} tokens-per-sec\nGeneration: {} tokens, {:.3} tokens-per-sec\nPeak memory: {:.3} GB\nPlan: {} decode, pretranspose {}, {}, prefill chunk {}\n",
        stats.prompt_tokens,
        stats.prompt_tokens_per_second,
        stats.generated_tokens,
        stats.generation_tokens_per_second,
        stats.peak_memory_bytes as f64 / 1e9,
        model.plan().decode_path,
        if model.plan().pretranspose { "on" } else { "off" },
        model.plan().compute_dtype,
        model.plan().prefill_chunk,
    )
}
