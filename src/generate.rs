//! The token-level generation loop: chunked prefill, then decode steps pipelined like mlx-lm's
//! (step n+1 is built and scheduled with `async_eval` before token n is read back, so graph
//! building overlaps the device work).

use std::time::{Duration, Instant};

use mlx_bridge::{Array, Dtype, memory};
use mlxcel_models::ModelError;
use mlxcel_models::layers::KvCache;
use serde::Serialize;
use thiserror::Error;

use crate::model::LoadedModel;
use crate::sampling::{Sampler, SamplingError, SamplingParams};

#[derive(Debug, Error)]
pub enum GenerateError {
    #[error("the prompt has {prompt} tokens; the model's context is {context}")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// A benchmark test that needs more positions than the model has.
    #[error("{what} needs more positions than the model's context of {context}")]
    BeyondContext { what: String, context: usize },
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Mlx(#[from] mlx_bridge::Error),
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token.
    Eos,
    /// A stop string appeared in the text.
    Stop,
    /// `max_tokens` were generated, or the context is full.
    Length,
    /// The caller stopped the stream.
    Cancelled,
}

/// Timings and memory of one generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prefill time up to the first generated token.
    pub prompt_seconds: f64,
    pub prompt_tokens_per_second: f64,
    pub generated_tokens: usize,
    pub generation_seconds: f64,
    pub generation_tokens_per_second: f64,
    pub peak_memory_bytes: usize,
}

/// One generated token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampledToken {
    pub id: u32,
    /// Log-probability under the model's distribution (before sampling filters), when asked for.
    pub logprob: Option<f32>,
}

/// A sampled token on its way: computed by the `async_eval` that scheduled it.
struct Scheduled {
    token: Array,
    logprob: Option<Array>,
    /// Whether the logits it was drawn from held a NaN or an infinity. Greedy decoding of NaN
    /// logits picks id 0 (often EOS), which would end generation silently with no text.
    non_finite: Array,
    /// The position whose logits these were.
    position: usize,
}

/// Produces tokens one at a time from a prompt; an iterator of [`SampledToken`].
pub struct TokenGenerator<'m> {
    model: &'m LoadedModel,
    caches: Vec<KvCache>,
    sampler: Sampler,
    history: Vec<u32>,
    /// The next token, scheduled but perhaps not computed yet.
    pending: Option<Scheduled>,
    remaining: usize,
    want_logprobs: bool,
    context: usize,
    stats: GenerationStats,
    started: Instant,
    first_token_at: Option<Instant>,
}

impl<'m> TokenGenerator<'m> {
    /// Prefills `prompt` in chunks of `prefill_chunk` tokens and schedules the first sample.
    pub fn new(
        model: &'m LoadedModel,
        prompt: &[u32],
        params: SamplingParams,
        max_tokens: usize,
        prefill_chunk: usize,
        want_logprobs: bool,
    ) -> Result<Self, GenerateError> {
        let context = model.context_length();
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        if prompt.len() >= context {
            return Err(GenerateError::PromptTooLong { prompt: prompt.len(), context });
        }
        model.causal_lm().check_token_ids(prompt)?;
        let sampler = Sampler::new(params, model.vocab_size())?;
        memory::reset_peak();
        let started = Instant::now();
        let mut generator = TokenGenerator {
            model,
            caches: model.make_caches(),
            sampler,
            history: prompt.to_vec(),
            pending: None,
            remaining: max_tokens.min(context - prompt.len()),
            want_logprobs,
            context,
            stats: GenerationStats { prompt_tokens: prompt.len(), ..Default::default() },
            started,
            first_token_at: None,
        };
        let chunk = prefill_chunk.max(1);
        let (head, last) = prompt.split_at(prompt.len() - prompt.len().min(chunk));
        for piece in head.chunks(chunk) {
            // Only the caches matter here: evaluating the last position's logits computes them.
            let logits = model.forward_last(&ids(piece)?, &mut generator.caches)?;
            logits.eval()?;
        }
        if generator.remaining > 0 {
            let logits = model.forward_last(&ids(last)?, &mut generator.caches)?;
            generator.pending = Some(generator.schedule(&logits, prompt.len() - 1)?);
        }
        Ok(generator)
    }

    /// The statistics so far (complete once the iterator is exhausted).
    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }

    /// Samples from `logits` `[1, 1, vocab]`, the logits at `position`, and starts computing it.
    fn schedule(&mut self, logits: &Array, position: usize) -> Result<Scheduled, GenerateError> {
        let logits = logits.reshape(&[1, -1])?.astype(Dtype::F32)?;
        let token = self.sampler.sample(&logits, &self.history)?;
        let logprob = if self.want_logprobs {
            let logprobs = logits.sub(&logits.logsumexp(&[-1], true)?)?;
            Some(logprobs.take_along_axis(&token.astype(Dtype::I32)?.reshape(&[1, 1])?, -1)?.reshape(&[1])?)
        } else {
            None
        };
        let non_finite = mlxcel_models::non_finite(&logits, &[-1])?;
        let mut arrays = vec![&token, &non_finite];
        arrays.extend(logprob.as_ref());
        mlx_bridge::async_eval(&arrays)?;
        Ok(Scheduled { token, logprob, non_finite, position })
    }

    fn step(&mut self) -> Result<Option<SampledToken>, GenerateError> {
        let Some(Scheduled { token, logprob, non_finite, position }) = self.pending.take() else { return Ok(None) };
        self.remaining -= 1;
        let penalties_need_history = self.sampler.params().uses_penalties();
        let room = self.remaining > 0 && self.history.len() + 1 < self.context;
        // Build the next step on the still-lazy token unless penalties must see its value first.
        if room && !penalties_need_history {
            let logits = self.model.forward_last(&token.astype(Dtype::I32)?.reshape(&[1, 1])?, &mut self.caches)?;
            self.pending = Some(self.schedule(&logits, self.history.len())?);
        }
        let id = token.item::<u32>()?;
        // Computed with the token: reading it waits for nothing more.
        if non_finite.item::<bool>()? {
            self.pending = None;
            return Err(ModelError::NonFiniteLogits { position }.into());
        }
        let logprob = logprob.map(|l| l.item::<f32>()).transpose()?;
        self.history.push(id);
        if room && penalties_need_history {
            let logits = self.model.forward_last(&ids(&[id])?, &mut self.caches)?;
            self.pending = Some(self.schedule(&logits, self.history.len() - 1)?);
        }
        let now = Instant::now();
        let first = *self.first_token_at.get_or_insert_with(|| {
            self.stats.prompt_seconds = (now - self.started).as_secs_f64();
            now
        });
        self.stats.generated_tokens += 1;
        self.stats.generation_seconds = (now - first).as_secs_f64();
        self.finish_stats();
        Ok(Some(SampledToken { id, logprob }))
    }

    fn finish_stats(&mut self) {
        let rate = |n: usize, seconds: f64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        self.stats.prompt_tokens_per_second = rate(self.stats.prompt_tokens, self.stats.prompt_seconds);
        // The first token's time belongs to the prompt (time to first token).
        self.stats.generation_tokens_per_second =
            rate(self.stats.generated_tokens.saturating_sub(1), self.stats.generation_seconds);
        self.stats.peak_memory_bytes = memory::peak();
    }

    /// Time since the generator started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Iterator for TokenGenerator<'_> {
    type Item = Result<SampledToken, GenerateError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.step().transpose()
    }
}

fn ids(tokens: &[u32]) -> Result<Array, mlx_bridge::Error> {
    let tokens: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    Array::from_slice(&tokens, &[1, tokens.len() as i32])
}
