//! Decoding many sequences in one forward pass per step (mlx-lm's `BatchGenerator` in spirit):
//! each sequence prefills alone through its own [`Pipeline`], then joins the batch, whose caches
//! ([`BatchKvCache`], one per layer) hold every member as a row at its own position. A step takes
//! each member's turn as [`Pipeline::next_token`] does (the same turn, read and choice), but feeds
//! all their tokens through one [`mlxcel_models::CausalLm::forward_batch`], so the sequences
//! share the weight reads. Members leave between steps with their caches back as their own.

use mlx_bridge::{Array, concatenate};
use mlxcel_models::layers::BatchKvCache;
use mlxcel_models::{Logits, ModelError};

use super::{Pipeline, SampledToken, TokenChoice, Turn};
use crate::generate::GenerateError;
use crate::model::LoadedModel;

/// One member's outcome of a step: its token, `None` when it had none left (it has left the
/// batch), or the error that ends it alone.
pub type MemberStep = Result<Option<SampledToken>, GenerateError>;

/// The decoding sequences stepped together, as rows of one set of caches. Members are named by
/// the caller's ids; [`DecodeBatch::members`] is the row order [`DecodeBatch::step`] expects.
#[derive(Default)]
pub struct DecodeBatch {
    /// One per layer; empty while the batch is.
    caches: Vec<BatchKvCache>,
    members: Vec<u64>,
}

impl DecodeBatch {
    pub fn new() -> DecodeBatch {
        DecodeBatch::default()
    }

    /// Member ids in row order.
    pub fn members(&self) -> &[u64] {
        &self.members
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.members.contains(&id)
    }

    /// Moves `pipeline`, prefilled and with its first token scheduled, into the batch as the
    /// last row: its caches become that row.
    pub fn join<C: TokenChoice>(&mut self, id: u64, pipeline: &mut Pipeline<'_, C>) -> Result<(), GenerateError> {
        if pipeline.prefilling() || pipeline.caches.is_empty() || self.contains(id) {
            return Err(ModelError::Input("only a prefilled sequence outside the batch can join it".into()).into());
        }
        let rows = pipeline.caches.iter().map(|cache| BatchKvCache::merge(std::slice::from_ref(cache)));
        let rows = rows.collect::<Result<Vec<_>, _>>()?;
        if self.caches.is_empty() {
            self.caches = rows;
        } else {
            if rows.len() != self.caches.len() {
                return Err(ModelError::Input("a sequence of another model cannot join the batch".into()).into());
            }
            for (caches, row) in self.caches.iter_mut().zip(rows) {
                caches.extend(row)?;
            }
        }
        pipeline.caches.clear();
        self.members.push(id);
        Ok(())
    }

    /// Evaluates the caches the joins built, so that what follows (a benchmark's timed steps)
    /// does not pay for them.
    pub fn settle(&self) -> Result<(), GenerateError> {
        let buffers: Vec<&Array> = self.caches.iter().flat_map(BatchKvCache::buffers).collect();
        Ok(mlx_bridge::eval(&buffers)?)
    }

    /// Takes member `id` out of the batch, its row of the caches back in `pipeline` (so it can
    /// go on alone, or its caches be kept for a later prompt).
    pub fn leave<C>(&mut self, id: u64, pipeline: &mut Pipeline<'_, C>) -> Result<(), GenerateError> {
        let Some(row) = self.members.iter().position(|&m| m == id) else {
            return Err(ModelError::Input(format!("sequence {id} is not in the batch")).into());
        };
        pipeline.caches = self.caches.iter().map(|caches| caches.extract(row)).collect::<Result<_, _>>()?;
        self.drop_rows(&[row])
    }

    /// Forgets every member (after a failed step, whose sequences all fail).
    pub fn clear(&mut self) {
        self.caches.clear();
        self.members.clear();
    }

    fn drop_rows(&mut self, rows: &[usize]) -> Result<(), GenerateError> {
        let keep: Vec<usize> = (0..self.members.len()).filter(|r| !rows.contains(r)).collect();
        if keep.is_empty() {
            self.clear();
            return Ok(());
        }
        for caches in &mut self.caches {
            caches.filter(&keep)?;
        }
        self.members = keep.iter().map(|&r| self.members[r]).collect();
        Ok(())
    }

    /// One decode step for every member, `pipelines[r]` being row `r` ([`DecodeBatch::members`]):
    /// each member's scheduled token is read back and, while it has room, fed with the others'
    /// through one forward pass whose row is its next choice. Members with nothing more to
    /// compute (no room left, a failed token) leave the batch first, their caches back in their
    /// pipelines. The outcome per member, in row order; an error of the forward pass itself
    /// (every member's next token lost) is the `Err`, and the batch is then empty.
    pub fn step<C: TokenChoice>(
        &mut self,
        model: &LoadedModel,
        pipelines: &mut [&mut Pipeline<'_, C>],
    ) -> Result<Vec<MemberStep>, GenerateError> {
        if pipelines.len() != self.members.len() {
            return Err(ModelError::Input(format!(
                "{} pipelines for a batch of {} sequences",
                pipelines.len(),
                self.members.len()
            ))
            .into());
        }
        let mut turns: Vec<Option<Turn>> = pipelines.iter_mut().map(|p| p.take_turn()).collect();
        let mut outcomes: Vec<Option<MemberStep>> = turns.iter().map(|t| t.is_none().then_some(Ok(None))).collect();
        // Choices that read the previous token (penalties) need it on the host before the step.
        for ((pipeline, turn), outcome) in pipelines.iter_mut().zip(&mut turns).zip(&mut outcomes) {
            if let Some(turn) = turn.as_mut().filter(|t| t.after()) {
                *outcome = Some(pipeline.read(turn).map(Some));
            }
        }
        let fed: Vec<usize> = (0..turns.len()).filter(|&r| turns[r].as_ref().is_some_and(|t| t.room)).collect();
        let leaving: Vec<usize> = (0..turns.len()).filter(|r| !fed.contains(r)).collect();
        for &row in &leaving {
            let id = self.members[row];
            let caches = self.caches.iter().map(|caches| caches.extract(row)).collect::<Result<_, _>>();
            match caches {
                Ok(caches) => pipelines[row].caches = caches,
                Err(error) => outcomes[row] = Some(Err(error.into())),
            }
            tracing::trace!("sequence {id} leaves the decode batch");
        }
        if let Err(error) = self.drop_rows(&leaving) {
            self.clear();
            return Err(error);
        }
        if !fed.is_empty()
            && let Err(error) = self.forward(model, pipelines, &mut turns, &fed, &mut outcomes)
        {
            self.clear();
            return Err(error);
        }
        // The rest read their token now, while the next step computes.
        for ((pipeline, turn), outcome) in pipelines.iter_mut().zip(&mut turns).zip(&mut outcomes) {
            if let Some(turn) = turn.as_mut().filter(|t| t.chosen.is_some()) {
                let read = pipeline.read(turn).map(Some);
                outcome.get_or_insert(read);
            }
        }
        Ok(outcomes.into_iter().map(|o| o.expect("every member has an outcome")).collect())
    }

    /// The rows `fed` (every member now) through one forward pass; each row's choice scheduled.
    /// A member whose choice fails gets that error as its outcome.
    fn forward<C: TokenChoice>(
        &mut self,
        model: &LoadedModel,
        pipelines: &mut [&mut Pipeline<'_, C>],
        turns: &mut [Option<Turn>],
        fed: &[usize],
        outcomes: &mut [Option<MemberStep>],
    ) -> Result<(), GenerateError> {
        let inputs = fed
            .iter()
            .map(|&r| pipelines[r].step_input(turns[r].as_ref().expect("fed rows have a turn")))
            .collect::<Result<Vec<_>, _>>()?;
        let ids = concatenate(&inputs.iter().map(|(token, _)| token).collect::<Vec<&Array>>(), 0)?;
        let logits = model.causal_lm().forward_batch(&ids, &mut self.caches, Logits::Last)?;
        let mut scheduled = Vec::new();
        for (i, (&r, (_, position))) in fed.iter().zip(&inputs).enumerate() {
            let row = logits.slice_axis(0, i as i32, i as i32 + 1)?;
            match pipelines[r].choose(&row) {
                Ok(chosen) => {
                    pipelines[r].pending = Some((chosen, *position));
                    scheduled.push(r);
                }
                Err(error) => outcomes[r] = Some(Err(error)),
            }
        }
        let arrays: Vec<&Array> = scheduled
            .iter()
            .flat_map(|&r| pipelines[r].pending.as_ref().expect("scheduled above").0.arrays())
            .collect();
        mlx_bridge::async_eval(&arrays)?;
        Ok(())
    }
}
