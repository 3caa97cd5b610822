//! Sampling and stop flags shared by `generate` and `run`; each has an `MLXCEL_*` mirror.

use std::collections::HashMap;

use mlxcel::api::GenerateOptions;
use mlxcel::sampling::SamplingParams;

#[derive(Debug, Clone, clap::Args)]
pub struct SamplingArgs {
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 256, env = "MLXCEL_MAX_TOKENS")]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0, env = "MLXCEL_TEMP", allow_negative_numbers = true)]
    pub temp: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass (1 = off).
    #[arg(long, default_value_t = 1.0, env = "MLXCEL_TOP_P", allow_negative_numbers = true)]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0, env = "MLXCEL_TOP_K")]
    pub top_k: u32,
    /// Drop tokens less likely than this fraction of the most likely one (0 = off).
    #[arg(long, default_value_t = 0.0, env = "MLXCEL_MIN_P", allow_negative_numbers = true)]
    pub min_p: f32,
    /// Penalize recent tokens (transformers' repetition penalty; 1 = off).
    #[arg(long, default_value_t = 1.0, env = "MLXCEL_REPEAT_PENALTY", allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// Subtract from the logits of tokens present in the penalty window (0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// Subtract per occurrence in the penalty window (0 = off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties consider.
    #[arg(long, default_value_t = 64)]
    pub penalty_window: usize,
    /// Add BIAS to token ID's logit: ID=BIAS, repeatable.
    #[arg(long, value_parser = parse_bias)]
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed for sampling: the same seed gives the same text.
    #[arg(long, env = "MLXCEL_SEED")]
    pub seed: Option<u64>,
    /// Stop when this text appears (repeatable); it is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
}

fn parse_bias(value: &str) -> Result<(u32, f32), String> {
    let (id, bias) = value.split_once('=').ok_or("expected TOKEN_ID=BIAS")?;
    let id = id.trim().parse().map_err(|_| format!("token id {id:?} is not a non-negative integer"))?;
    // The range is SamplingParams::validate's, shared with the API.
    let bias: f32 = bias.trim().parse().map_err(|_| format!("bias {bias:?} is not a number"))?;
    Ok((id, bias))
}

impl SamplingArgs {
    pub fn options(&self) -> anyhow::Result<GenerateOptions> {
        let sampling = SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            penalty_window: self.penalty_window,
            logit_bias: self.logit_bias.iter().copied().collect::<HashMap<_, _>>(),
            seed: self.seed,
        };
        if self.max_tokens == 0 {
            anyhow::bail!("--max-tokens must be at least 1");
        }
        // Range checks that need no model: fail before a slow load (top_k and biases are
        // checked against the vocabulary once it is known).
        sampling.validate(usize::MAX)?;
        Ok(GenerateOptions { max_tokens: self.max_tokens, sampling, stop: self.stop.clone(), logprobs: false })
    }
}
