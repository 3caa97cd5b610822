//! Token-level generation with the sampler: the generation core ([`crate::pipeline`]) plus
//! timings, and the errors and finish reasons every caller shares.

use std::time::{Duration, Instant};

use mlx_bridge::memory;
use mlxcel_models::ModelError;
use mlxcel_models::layers::KvCache;
use serde::Serialize;
use thiserror::Error;

use crate::model::LoadedModel;
pub use crate::pipeline::SampledToken;
use crate::pipeline::{LogprobRequest, Pipeline, Sampled};
use crate::sampling::{Sampler, SamplingError, SamplingParams};

#[derive(Debug, Error)]
pub enum GenerateError {
    #[error("the prompt has {prompt} tokens; the model's context is {context}")]
    PromptTooLong { prompt: usize, context: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("the reused caches do not all hold the {reused} reused prompt tokens")]
    CacheMismatch { reused: usize },
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

/// Produces tokens one at a time from a prompt; an iterator of [`SampledToken`]. The sampler's
/// face of the generation core ([`Pipeline`]), with timings.
pub struct TokenGenerator<'m> {
    pipeline: Pipeline<'m, Sampled>,
    stats: GenerationStats,
    started: Instant,
    first_token_at: Option<Instant>,
}

/// Where generation starts: the prompt and, on a prefix-cache hit, caches that already hold its
/// first `reused` tokens.
pub struct Start<'p> {
    pub prompt: &'p [u32],
    pub caches: Option<Vec<KvCache>>,
    pub reused: usize,
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
        let logprobs = if want_logprobs { LogprobRequest::Chosen { top: 0 } } else { LogprobRequest::None };
        let start = Start { prompt, caches: None, reused: 0 };
        let mut generator = Self::start(model, start, params, max_tokens, prefill_chunk, logprobs)?;
        generator.pipeline.prefill_all()?;
        Ok(generator)
    }

    /// A generator that has not run yet: [`TokenGenerator::prefill_step`] feeds the prompt one
    /// chunk at a time (a server interleaves them with other sequences' steps), and the first
    /// [`Iterator::next`] feeds whatever is left.
    pub fn start(
        model: &'m LoadedModel,
        start: Start<'_>,
        params: SamplingParams,
        max_tokens: usize,
        prefill_chunk: usize,
        logprobs: LogprobRequest,
    ) -> Result<Self, GenerateError> {
        let sampler = Sampler::new(params, model.vocab_size())?;
        let (caches, reused) = match start.caches {
            Some(caches) => (caches, start.reused),
            None => (model.make_caches(), 0),
        };
        memory::reset_peak();
        let started = Instant::now();
        let choice = Sampled { sampler, logprobs };
        let pipeline = Pipeline::new(model, start.prompt, caches, reused, choice, max_tokens, prefill_chunk)?;
        Ok(TokenGenerator {
            pipeline,
            stats: GenerationStats { prompt_tokens: start.prompt.len(), ..Default::default() },
            started,
            first_token_at: None,
        })
    }

    /// Feeds one prefill chunk; returns whether the prompt is done.
    pub fn prefill_step(&mut self) -> Result<bool, GenerateError> {
        self.pipeline.prefill_step()
    }

    pub fn prefilling(&self) -> bool {
        self.pipeline.prefilling()
    }

    /// The generation core underneath (its caches and history, for a prefix cache).
    pub fn pipeline(&self) -> &Pipeline<'m, Sampled> {
        &self.pipeline
    }

    /// The generation core, for a [`crate::pipeline::DecodeBatch`] to step; tokens it produces
    /// are counted with [`TokenGenerator::record`].
    pub fn pipeline_mut(&mut self) -> &mut Pipeline<'m, Sampled> {
        &mut self.pipeline
    }

    pub fn into_pipeline(self) -> Pipeline<'m, Sampled> {
        self.pipeline
    }

    /// The statistics so far (complete once the iterator is exhausted).
    pub fn stats(&self) -> &GenerationStats {
        &self.stats
    }

    fn step(&mut self) -> Result<Option<SampledToken>, GenerateError> {
        let Some(token) = self.pipeline.next_token()? else { return Ok(None) };
        self.record();
        Ok(Some(token))
    }

    /// Counts a token the pipeline produced (here, or in a batch step) in the statistics.
    pub fn record(&mut self) {
        let now = Instant::now();
        let first = *self.first_token_at.get_or_insert_with(|| {
            self.stats.prompt_seconds = (now - self.started).as_secs_f64();
            now
        });
        self.stats.generated_tokens += 1;
        self.stats.generation_seconds = (now - first).as_secs_f64();
        self.finish_stats();
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
