//! The one generation core, used by `generate` and the API ([`crate::generate::TokenGenerator`]),
//! `bench` and the server: a chunked prefill (models' [`Prefill`], which scoring's teacher-forced
//! pass uses too), then decode steps pipelined like mlx-lm's: step n+1 is built and scheduled with
//! `async_eval` before token n is read back, so graph building overlaps the device work. What
//! picks each token is pluggable ([`TokenChoice`]): the sampler, or greedy argmax.
//!
//! A server steps many pipelines at once: [`DecodeBatch`] runs one forward pass per step over
//! every sequence that is decoding, through the same per-sequence steps ([`Pipeline`]'s turns)
//! as a sequence decoding alone.

mod batch;

use mlx_bridge::{Array, Dtype};
use mlxcel_models::layers::KvCache;
use mlxcel_models::{Logits, ModelError, Prefill};

use crate::generate::GenerateError;
use crate::model::LoadedModel;
use crate::sampling::Sampler;

pub use batch::DecodeBatch;

/// A chosen token still on the device (lazy), with what was asked about its distribution.
pub struct Chosen {
    /// `[1]` uint32.
    pub token: Array,
    /// `[1]` float32: the token's log-probability under the model's distribution.
    pub logprob: Option<Array>,
    /// `[1, n]` uint32 ids and `[1, n]` float32 log-probabilities of the `n` most likely tokens,
    /// most likely first.
    pub top: Option<(Array, Array)>,
    /// `[]` bool: whether the logits held a NaN or an infinity (checked when the choice asks).
    /// Greedy decoding of NaN logits picks id 0 (often EOS), which would end generation silently.
    pub non_finite: Option<Array>,
}

impl Chosen {
    fn arrays(&self) -> Vec<&Array> {
        let mut arrays = vec![&self.token];
        arrays.extend(self.logprob.as_ref());
        arrays.extend(self.non_finite.as_ref());
        if let Some((ids, logprobs)) = &self.top {
            arrays.extend([ids, logprobs]);
        }
        arrays
    }

    /// Reads the token (and its log-probabilities) back: the step's one wait for the device.
    /// `position` is the one whose logits it was chosen from.
    fn read(self, position: usize) -> Result<SampledToken, GenerateError> {
        let id = self.token.item::<u32>()?;
        // Computed with the token: reading it waits for nothing more.
        if let Some(non_finite) = self.non_finite
            && non_finite.item::<bool>()?
        {
            return Err(ModelError::NonFiniteLogits { position }.into());
        }
        let logprob = self.logprob.map(|l| l.item::<f32>()).transpose()?;
        let top_logprobs = match self.top {
            Some((ids, logprobs)) => ids.to_vec::<u32>()?.into_iter().zip(logprobs.to_vec::<f32>()?).collect(),
            None => Vec::new(),
        };
        Ok(SampledToken { id, logprob, top_logprobs })
    }
}

/// One generated token on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledToken {
    pub id: u32,
    /// Log-probability under the model's distribution (before sampling filters), when asked for.
    pub logprob: Option<f32>,
    /// The most likely tokens and their log-probabilities, most likely first, when asked for.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Picks the next token from a step's logits.
pub trait TokenChoice {
    /// The token for `logits` `[1, vocab]` (float32, lazy), given every token so far (`history`,
    /// prompt included). Nothing may be read back: the pipeline schedules the result.
    fn choose(&mut self, logits: &Array, history: &[u32]) -> Result<Chosen, GenerateError>;

    /// Whether [`TokenChoice::choose`] reads the previous token's value (penalties): then step
    /// n+1 is built only after token n is on the host.
    fn needs_history(&self) -> bool {
        false
    }
}

/// The most likely token (benchmarks).
pub struct Greedy;

impl TokenChoice for Greedy {
    fn choose(&mut self, logits: &Array, _history: &[u32]) -> Result<Chosen, GenerateError> {
        let token = logits.argmax(-1, false)?.astype(Dtype::U32)?;
        Ok(Chosen { token, logprob: None, top: None, non_finite: None })
    }
}

/// Which log-probabilities to return with each token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogprobRequest {
    #[default]
    None,
    /// The chosen token's, and those of the `top` most likely tokens (0 = none).
    Chosen { top: usize },
}

/// The sampler's choice (generation, the server), with log-probabilities on request.
pub struct Sampled {
    pub sampler: Sampler,
    pub logprobs: LogprobRequest,
}

impl TokenChoice for Sampled {
    fn choose(&mut self, logits: &Array, history: &[u32]) -> Result<Chosen, GenerateError> {
        let token = self.sampler.sample(logits, history)?;
        let non_finite = Some(mlxcel_models::non_finite(logits, &[-1])?);
        let LogprobRequest::Chosen { top } = self.logprobs else {
            return Ok(Chosen { token, logprob: None, top: None, non_finite });
        };
        let logprobs = logits.sub(&logits.logsumexp(&[-1], true)?)?;
        let logprob = logprobs.take_along_axis(&token.astype(Dtype::I32)?.reshape(&[1, 1])?, -1)?.reshape(&[1])?;
        let top = if top > 0 {
            let vocab = logprobs.dim(-1)?;
            let top = (top as i32).min(vocab);
            // The `top` largest, unordered, then ordered most likely first.
            let candidates = logprobs.neg()?.argpartition(top - 1, -1)?.slice_axis(-1, 0, top)?;
            let values = logprobs.take_along_axis(&candidates, -1)?;
            let order = values.neg()?.argsort(-1)?;
            let ids = candidates.take_along_axis(&order, -1)?.astype(Dtype::U32)?;
            Some((ids, values.take_along_axis(&order, -1)?))
        } else {
            None
        };
        Ok(Chosen { token, logprob: Some(logprob), top, non_finite })
    }

    fn needs_history(&self) -> bool {
        self.sampler.params().uses_penalties()
    }
}

/// A prompt's prefill, then its tokens one by one, over caches the pipeline owns.
pub struct Pipeline<'m, C> {
    model: &'m LoadedModel,
    caches: Vec<KvCache>,
    choice: C,
    /// The prompt and every token read back so far.
    history: Vec<u32>,
    prefill: Prefill,
    /// The next token, scheduled but perhaps not computed yet, and the position of its logits.
    pending: Option<(Chosen, usize)>,
    remaining: usize,
    context: usize,
}

impl<'m, C: TokenChoice> Pipeline<'m, C> {
    /// A pipeline for `prompt` whose first `reused` tokens are already in `caches` (a prefix-cache
    /// hit; 0 with fresh caches). Nothing runs until [`Pipeline::prefill_step`] or
    /// [`Pipeline::next_token`].
    pub fn new(
        model: &'m LoadedModel,
        prompt: &[u32],
        caches: Vec<KvCache>,
        reused: usize,
        choice: C,
        max_tokens: usize,
        prefill_chunk: usize,
    ) -> Result<Self, GenerateError> {
        let context = model.context_length();
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        if prompt.len() >= context {
            return Err(GenerateError::PromptTooLong { prompt: prompt.len(), context });
        }
        model.causal_lm().check_token_ids(prompt)?;
        // At least one prompt token must go through the model for the first token's logits.
        let reused = reused.min(prompt.len() - 1);
        if caches.iter().any(|cache| cache.offset() as usize != reused) {
            return Err(GenerateError::CacheMismatch { reused });
        }
        Ok(Pipeline {
            model,
            caches,
            choice,
            history: prompt.to_vec(),
            prefill: Prefill::new(&prompt[reused..], prefill_chunk.max(1), Logits::Last)?,
            pending: None,
            remaining: max_tokens.min(context - prompt.len()),
            context,
        })
    }

    /// Whether prompt tokens are still waiting for the model.
    pub fn prefilling(&self) -> bool {
        self.prefill.remaining() > 0
    }

    /// Prompt tokens not yet fed to the model.
    pub fn prefill_remaining(&self) -> usize {
        self.prefill.remaining()
    }

    /// Feeds the next prefill chunk; the last one schedules the first token. Returns whether the
    /// prompt is now in the caches.
    pub fn prefill_step(&mut self) -> Result<bool, GenerateError> {
        let Some(step) = self.prefill.step(self.model.causal_lm(), &mut self.caches)? else { return Ok(true) };
        if step.last && self.remaining > 0 {
            self.pending = Some(self.schedule(&step.logits, self.history.len() - 1)?);
        } else {
            // Only the caches matter here: evaluating the last position's logits computes them.
            step.logits.eval()?;
        }
        Ok(step.last)
    }

    /// The rest of the prefill at once.
    pub fn prefill_all(&mut self) -> Result<(), GenerateError> {
        while !self.prefill_step()? {}
        Ok(())
    }

    /// Waits until the scheduled token is computed, without reading it (benchmarks start their
    /// clock after it).
    pub fn wait(&self) -> Result<(), GenerateError> {
        if let Some((chosen, _)) = &self.pending {
            for array in chosen.arrays() {
                array.eval()?;
            }
        }
        Ok(())
    }

    /// The next token, or `None` after `max_tokens` or at the end of the context.
    pub fn next_token(&mut self) -> Result<Option<SampledToken>, GenerateError> {
        if self.prefilling() {
            self.prefill_all()?;
        }
        let Some(mut turn) = self.take_turn() else { return Ok(None) };
        // Build the next step on the still-lazy token unless the choice must see its value first.
        if turn.ahead() {
            self.decode_step(&turn)?;
        }
        let token = self.read(&mut turn)?;
        if turn.after() {
            self.decode_step(&turn)?;
        }
        Ok(Some(token))
    }

    /// Starts a decode step: takes the scheduled token, and says whether another step follows.
    fn take_turn(&mut self) -> Option<Turn> {
        let (chosen, position) = self.pending.take()?;
        self.remaining -= 1;
        Some(Turn {
            chosen: Some(chosen),
            position,
            room: self.remaining > 0 && self.history.len() + 1 < self.context,
            needs_history: self.choice.needs_history(),
        })
    }

    /// The `[1, 1]` id the next step feeds and its position: the turn's token, still lazy ahead
    /// of reading it, or the one read back.
    fn step_input(&self, turn: &Turn) -> Result<(Array, usize), GenerateError> {
        Ok(match &turn.chosen {
            Some(chosen) => (chosen.token.astype(Dtype::I32)?.reshape(&[1, 1])?, self.history.len()),
            None => {
                let last = *self.history.last().expect("a read token is in the history");
                (Array::from_slice(&[last as i32], &[1, 1])?, self.history.len() - 1)
            }
        })
    }

    /// Reads the turn's token back (the step's one wait for the device) into the history.
    fn read(&mut self, turn: &mut Turn) -> Result<SampledToken, GenerateError> {
        let chosen = turn.chosen.take().expect("a turn's token is read once");
        match chosen.read(turn.position) {
            Ok(token) => {
                self.history.push(token.id);
                Ok(token)
            }
            Err(error) => {
                // Nothing after a failed token is worth computing.
                self.pending = None;
                self.remaining = 0;
                turn.room = false;
                Err(error)
            }
        }
    }

    /// Feeds the turn's token through this pipeline's own caches and schedules the next choice.
    fn decode_step(&mut self, turn: &Turn) -> Result<(), GenerateError> {
        let (token, position) = self.step_input(turn)?;
        let logits = self.model.forward_last(&token, &mut self.caches)?;
        self.pending = Some(self.schedule(&logits, position)?);
        Ok(())
    }

    /// Chooses from `logits` `[1, 1, vocab]`, those at `position`, and starts computing the choice.
    fn schedule(&mut self, logits: &Array, position: usize) -> Result<(Chosen, usize), GenerateError> {
        let chosen = self.choose(logits)?;
        mlx_bridge::async_eval(&chosen.arrays())?;
        Ok((chosen, position))
    }

    /// The choice from `logits` `[1, 1, vocab]` (lazy; nothing scheduled yet).
    fn choose(&mut self, logits: &Array) -> Result<Chosen, GenerateError> {
        let logits = logits.reshape(&[1, -1])?.astype(Dtype::F32)?;
        self.choice.choose(&logits, &self.history)
    }

    /// The prompt and the tokens read back so far.
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    pub fn choice(&self) -> &C {
        &self.choice
    }

    /// The caches and the tokens they hold (`history[..offset]`: a token scheduled but not yet
    /// read back may be in the caches too, so their offset says how far they go).
    pub fn into_caches(self) -> (Vec<KvCache>, Vec<u32>) {
        let held = self.caches.first().map_or(0, |cache| cache.offset() as usize).min(self.history.len());
        let mut history = self.history;
        history.truncate(held);
        (self.caches, history)
    }

    /// A copy of the caches right now (cheap: MLX arrays are shared, and updates make new ones).
    /// Empty while the pipeline is a row of a [`DecodeBatch`], which holds its caches then.
    pub fn snapshot(&self) -> Vec<KvCache> {
        self.caches.clone()
    }
}

/// One sequence's part of a decode step: the token scheduled last step (until it is read back),
/// the position it was chosen at, and whether a next step follows.
struct Turn {
    chosen: Option<Chosen>,
    position: usize,
    room: bool,
    needs_history: bool,
}

impl Turn {
    /// Whether the next step is built on the token before it is read back.
    fn ahead(&self) -> bool {
        self.room && !self.needs_history
    }

    /// Whether the next step waits for the token's value (penalties read it).
    fn after(&self) -> bool {
        self.room && self.needs_history
    }
}
