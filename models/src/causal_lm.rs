//! What the engine needs from any text model: a forward step over caches it owns, fresh caches,
//! and the model's limits. Input checks and the teacher-forced pass live here once, for every
//! family.

use mlx_bridge::{Array, Dtype};

use crate::error::{ModelError, Result};
use crate::layers::{BatchKvCache, KvCache};

/// Which positions get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    All,
    /// Only the last position (`[B, 1, vocab]`): generation needs the last position of a prompt,
    /// not a `[L, vocab]` matrix for every prompt token.
    Last,
}

/// A decoder-only language model whose caches live outside it (mlx-lm's discipline).
pub trait CausalLm {
    /// Logits `[B, L or 1, vocab]` for token ids `[B, L]`, continuing from `caches`.
    fn forward_logits(&self, ids: &Array, caches: &mut [KvCache], which: Logits) -> Result<Array>;

    /// [`CausalLm::forward_logits`] for `B` sequences at their own positions, one row each
    /// (a server's decoding sequences in one pass): the same layers over batch caches (one per
    /// layer, [`BatchKvCache::merge`] of the sequences' own). Row `b` of the logits equals
    /// sequence `b`'s alone, up to float rounding.
    fn forward_batch(&self, ids: &Array, caches: &mut [BatchKvCache], which: Logits) -> Result<Array>;

    /// Fresh caches, one per layer that computes its own keys and values.
    fn make_caches(&self) -> Vec<KvCache>;

    /// The most positions the model supports.
    fn context_length(&self) -> usize;

    fn vocab_size(&self) -> usize;

    /// Logits `[B, L, vocab]` for every position.
    fn forward(&self, ids: &Array, caches: &mut [KvCache]) -> Result<Array> {
        self.forward_logits(ids, caches, Logits::All)
    }

    /// Rejects ids the model cannot embed and prompts longer than the context.
    fn check_ids(&self, ids: &[i32]) -> Result<()> {
        check_id_range(ids.iter().map(|&id| i64::from(id)), ids.len(), self.vocab_size(), self.context_length())
    }

    /// [`CausalLm::check_ids`] for ids as a tokenizer gives them. An id past the embedding would
    /// read outside its rows (the gather is unchecked on the device), so every path that feeds
    /// the model ids from outside goes through one of the two.
    fn check_token_ids(&self, ids: &[u32]) -> Result<()> {
        check_id_range(ids.iter().map(|&id| i64::from(id)), ids.len(), self.vocab_size(), self.context_length())
    }

    /// A teacher-forced pass over `ids` from empty caches, `chunk` tokens per forward call
    /// (chunk 1 sends every token through the single-token decode step): logits `[L, vocab]` in
    /// float32.
    fn teacher_forced_logits(&self, ids: &[i32], chunk: usize) -> Result<Array> {
        self.check_ids(ids)?;
        let mut caches = self.make_caches();
        let tokens: Vec<u32> = ids.iter().map(|&id| id as u32).collect();
        let mut prefill = Prefill::new(&tokens, chunk, Logits::All)?;
        let mut pieces = Vec::with_capacity(ids.len().div_ceil(chunk));
        let mut position = 0;
        while let Some(step) = prefill.step(self, &mut caches)? {
            let logits = step.logits.squeeze(&[0])?.astype(Dtype::F32)?;
            // Evaluate per chunk so the graph (and the chunk's activations) stay bounded; the
            // finiteness of each row is computed in the same evaluation.
            let bad_rows = non_finite(&logits, &[-1])?;
            mlx_bridge::eval(&[&logits, &bad_rows])?;
            if let Some(row) = bad_rows.to_vec::<bool>()?.iter().position(|&bad| bad) {
                return Err(ModelError::NonFiniteLogits { position: position + row });
            }
            position += logits.dim(0)? as usize;
            pieces.push(logits);
        }
        Ok(mlx_bridge::concatenate(&pieces.iter().collect::<Vec<_>>(), 0)?)
    }
}

/// The one chunked prefill: feeds a prompt `chunk` tokens per forward call, one call per
/// [`Prefill::step`], so a caller can interleave other work (a server's decode steps) between
/// chunks. Generation, scoring and benchmarks all prefill through it.
#[derive(Debug, Clone)]
pub struct Prefill {
    tokens: Vec<i32>,
    chunk: usize,
    at: usize,
    which: Logits,
}

/// One chunk's forward pass: its logits (lazy) and whether it was the prompt's last chunk.
pub struct PrefillStep {
    pub logits: Array,
    pub last: bool,
}

impl Prefill {
    pub fn new(tokens: &[u32], chunk: usize, which: Logits) -> Result<Prefill> {
        if chunk == 0 {
            return Err(ModelError::Input("the prefill chunk must be at least 1".into()));
        }
        Ok(Prefill { tokens: tokens.iter().map(|&t| t as i32).collect(), chunk, at: 0, which })
    }

    /// Tokens not yet fed.
    pub fn remaining(&self) -> usize {
        self.tokens.len() - self.at
    }

    /// Feeds the next chunk through `model`, or `None` once the prompt is in the caches.
    pub fn step<M: CausalLm + ?Sized>(&mut self, model: &M, caches: &mut [KvCache]) -> Result<Option<PrefillStep>> {
        if self.at == self.tokens.len() {
            return Ok(None);
        }
        let end = (self.at + self.chunk).min(self.tokens.len());
        let piece = &self.tokens[self.at..end];
        let input = Array::from_slice(piece, &[1, piece.len() as i32])?;
        let logits = model.forward_logits(&input, caches, self.which)?;
        self.at = end;
        Ok(Some(PrefillStep { logits, last: end == self.tokens.len() }))
    }
}

/// Whether `logits` holds a NaN or an infinity along `axes` (boolean, lazy): evaluated together
/// with the logits it costs no extra synchronisation.
pub fn non_finite(logits: &Array, axes: &[i32]) -> Result<Array> {
    Ok(logits.isnan()?.logical_or(&logits.isinf()?)?.any(axes, false)?)
}

fn check_id_range(ids: impl Iterator<Item = i64>, count: usize, vocab: usize, context: usize) -> Result<()> {
    if count == 0 {
        return Err(ModelError::Input("no token ids".into()));
    }
    if count > context {
        return Err(ModelError::Input(format!("{count} tokens exceed the context of {context}")));
    }
    for id in ids {
        if id < 0 || id as u64 >= vocab as u64 {
            return Err(ModelError::Input(format!("token id {id} is outside the vocabulary of {vocab}")));
        }
    }
    Ok(())
}

/// `[B, L]` ids and the expected number of caches, or an input error.
pub(crate) fn check_step(ids: &Array, caches: usize, expected: usize) -> Result<()> {
    if ids.ndim() != 2 {
        return Err(ModelError::Input(format!("token ids must be [batch, length], got {:?}", ids.shape())));
    }
    if caches != expected {
        return Err(ModelError::Input(format!("{caches} caches given, the model needs {expected}")));
    }
    Ok(())
}

/// The last position of `[B, L, D]` hidden states when only its logits are wanted.
pub(crate) fn select_positions(h: Array, which: Logits) -> Result<Array> {
    match which {
        Logits::All => Ok(h),
        Logits::Last => {
            let length = h.dim(1)?;
            Ok(h.slice_axis(1, length - 1, length)?)
        }
    }
}
