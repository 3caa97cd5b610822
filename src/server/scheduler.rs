//! Continuous scheduling on the engine thread, llama.cpp's slots in spirit: up to `--parallel`
//! sequences run at once; each step spends at most one prefill chunk's worth of tokens on prompts,
//! then gives every decoding sequence one token, so a new prompt is fed in chunks between the
//! running streams' steps instead of stalling them. Finished, failed and cancelled sequences
//! (a closed event channel: the client went away) leave between steps, and waiting requests take
//! their slots.
//!
//! Prompt chunks run per sequence; a prefilled sequence joins the [`DecodeBatch`], and each step
//! decodes all its members in one forward pass (they share the weight reads), each sampled with
//! its own request's parameters. The generation core pipelines it as `generate` does: the next
//! step is scheduled before this step's tokens are read back. A failure of one request's token
//! fails that request alone; a failure of the batched forward pass fails the requests in it.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc as tokio_mpsc;

use super::engine::{
    Command, EngineConfig, Prompt, Request, SequenceEvent, Shared, TokenInfo, fail_command, panic_message,
};
use super::error::ApiError;
use super::prefix_cache::PrefixCache;
use crate::api::{Event, Model};
use crate::generate::{FinishReason, SampledToken, Start, TokenGenerator};
use crate::pipeline::DecodeBatch;
use crate::text_events::TextAssembler;

/// How often an idle engine looks at the shutdown flag.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// With `MLXCEL_FAULT_INJECTION=1`, a prompt containing one of these markers has its sequence
/// misbehave, so the tests can check what the server does then whatever the machine's speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Panic mid-sequence: the panic must fail only that request.
    Panic,
    /// Take 20 ms per token: a stream that is surely still running when a test disconnects it
    /// or shuts the server down.
    Slow,
    /// Panic inside the batched decode step mid-sequence: it must fail the requests in that
    /// step, and the engine must go on.
    StepPanic,
}

impl Fault {
    const MARKERS: [(&'static str, Fault); 3] = [
        ("mlxcel-fault-injection:panic", Fault::Panic),
        ("mlxcel-fault-injection:slow", Fault::Slow),
        ("mlxcel-fault-injection:step-panic", Fault::StepPanic),
    ];

    fn in_prompt(prompt: &Prompt) -> Option<Fault> {
        let Prompt::Chat(messages) = prompt else { return None };
        Self::MARKERS
            .iter()
            .find(|(marker, _)| messages.iter().any(|m| m.content.contains(marker)))
            .map(|&(_, fault)| fault)
    }
}

const SLOW_TOKEN: Duration = Duration::from_millis(20);

struct Sequence<'m> {
    /// Its name in the decode batch.
    id: u64,
    tokens: TokenGenerator<'m>,
    text: TextAssembler<'m>,
    events: tokio_mpsc::UnboundedSender<SequenceEvent>,
    prompt_tokens: usize,
    cached_tokens: usize,
    generated: usize,
    arrived: Instant,
    last_token: Option<Instant>,
    fault: Option<Fault>,
}

enum Outcome {
    Running,
    Finished(FinishReason),
    Failed(ApiError),
}

pub(super) struct Scheduler<'m> {
    model: &'m Model,
    shared: &'m Shared,
    parallel: usize,
    context: usize,
    prefill_chunk: usize,
    waiting: VecDeque<Request>,
    running: Vec<Sequence<'m>>,
    /// The running sequences that are decoding.
    batch: DecodeBatch,
    next_id: u64,
    prefix: PrefixCache,
    fault_injection: bool,
}

impl<'m> Scheduler<'m> {
    pub(super) fn new(model: &'m Model, config: &EngineConfig, context: usize, shared: &'m Shared) -> Self {
        Scheduler {
            model,
            shared,
            parallel: config.parallel.max(1),
            context,
            prefill_chunk: model.plan().prefill_chunk.max(1) as usize,
            waiting: VecDeque::new(),
            running: Vec::new(),
            batch: DecodeBatch::new(),
            next_id: 0,
            prefix: PrefixCache::new(config.cache_ram),
            fault_injection: std::env::var("MLXCEL_FAULT_INJECTION").is_ok_and(|v| v == "1"),
        }
    }

    /// Serves until shutdown (or until every handler is gone).
    pub(super) fn run(&mut self, commands: &mpsc::Receiver<Command>) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                if self.shared.shutting_down() {
                    return;
                }
                match commands.recv_timeout(IDLE_POLL) {
                    Ok(command) => self.handle(command),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            while let Ok(command) = commands.try_recv() {
                self.handle(command);
            }
            if self.shared.shutting_down() {
                self.fail_all(ApiError::unavailable("the server is shutting down"));
                continue;
            }
            self.admit();
            self.step();
            self.update_gauges();
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Generate(request) => self.waiting.push_back(request),
            Command::Tokenize { prompt, reply } => {
                let _ = reply.send(self.tokenize(&prompt));
            }
            Command::Detokenize { ids, reply } => {
                let vocab = self.model.loaded_model().vocab_size();
                let answer = match ids.iter().find(|&&id| id as usize >= vocab) {
                    Some(bad) => Err(ApiError::invalid_param(
                        "tokens",
                        format!("token id {bad} is outside the vocabulary of {vocab}"),
                    )),
                    None => self.model.tokenizer().decode(&ids, false).map_err(|e| ApiError::invalid(e.to_string())),
                };
                let _ = reply.send(answer);
            }
        }
    }

    fn tokenize(&self, prompt: &Prompt) -> Result<Vec<u32>, ApiError> {
        let tokenizer = self.model.tokenizer();
        match prompt {
            Prompt::Text { text, add_special } => {
                tokenizer.encode(text, *add_special).map_err(|e| ApiError::invalid(e.to_string()))
            }
            Prompt::Chat(messages) => {
                let text = self.model.render_chat(messages).map_err(|e| ApiError::invalid(e.to_string()))?;
                tokenizer.encode(&text, false).map_err(|e| ApiError::invalid(e.to_string()))
            }
            Prompt::Ids(ids) => {
                let vocab = self.model.loaded_model().vocab_size();
                match ids.iter().find(|&&id| id as usize >= vocab) {
                    Some(bad) => Err(ApiError::invalid_param(
                        "prompt",
                        format!("token id {bad} is outside the vocabulary of {vocab}"),
                    )),
                    None => Ok(ids.clone()),
                }
            }
        }
    }

    /// Moves waiting requests into free slots.
    fn admit(&mut self) {
        while self.running.len() < self.parallel {
            let Some(request) = self.waiting.pop_front() else { break };
            if request.events.is_closed() {
                self.shared.metrics.cancelled.inc();
                self.shared.release();
                continue;
            }
            let events = request.events.clone();
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.start(request))) {
                Ok(Ok(sequence)) => {
                    let _ = sequence.events.send(SequenceEvent::Started {
                        prompt_tokens: sequence.prompt_tokens,
                        cached_tokens: sequence.cached_tokens,
                    });
                    self.running.push(sequence);
                }
                Ok(Err(error)) => {
                    let _ = events.send(SequenceEvent::Failed(error));
                    self.shared.release();
                }
                Err(panic) => {
                    tracing::error!("starting a sequence panicked: {}", panic_message(&panic));
                    let _ = events.send(SequenceEvent::Failed(ApiError::internal("the engine failed this request")));
                    self.shared.release();
                }
            }
        }
    }

    fn start(&mut self, request: Request) -> Result<Sequence<'m>, ApiError> {
        let prompt = self.tokenize(&request.prompt)?;
        if prompt.is_empty() {
            return Err(ApiError::invalid_param("prompt", "the prompt is empty"));
        }
        if prompt.len() >= self.context {
            return Err(ApiError::context_exceeded(format!(
                "the prompt has {} tokens; this server's context is {} tokens",
                prompt.len(),
                self.context
            )));
        }
        let room = self.context - prompt.len();
        let max_tokens = match request.max_tokens {
            Some(0) => return Err(ApiError::invalid_param("max_tokens", "max_tokens must be at least 1")),
            Some(n) if n > room => {
                return Err(ApiError::context_exceeded(format!(
                    "the prompt has {} tokens and max_tokens is {n}: together more than this server's context of {} \
                     tokens (at most {room} new tokens fit)",
                    prompt.len(),
                    self.context
                )));
            }
            Some(n) => n,
            None => room,
        };
        self.shared.metrics.prefix_cache_lookups.inc();
        let hit = self.prefix.lookup(&prompt);
        let (caches, reused) = match hit {
            Some(hit) => {
                self.shared.metrics.prefix_cache_hits.inc();
                self.shared.metrics.prefix_cache_reused_tokens.inc_by(hit.reused as u64);
                (Some(hit.caches), hit.reused)
            }
            None => (None, 0),
        };
        let fault = if self.fault_injection { Fault::in_prompt(&request.prompt) } else { None };
        let start = Start { prompt: &prompt, caches, reused };
        let tokens = TokenGenerator::start(
            self.model.loaded_model(),
            start,
            request.sampling,
            max_tokens,
            self.prefill_chunk,
            request.logprobs,
        )
        .map_err(|e| ApiError::invalid(e.to_string()))?;
        self.shared.metrics.prompt_tokens.inc_by(prompt.len() as u64);
        self.next_id += 1;
        Ok(Sequence {
            id: self.next_id,
            tokens,
            text: TextAssembler::new(self.model.tokenizer(), self.model.eos_token_ids(), &request.stop),
            events: request.events,
            prompt_tokens: prompt.len(),
            cached_tokens: reused,
            generated: 0,
            arrived: request.arrived,
            last_token: None,
            fault,
        })
    }

    /// One scheduling step: prompt chunks within the budget, then one batched decode step.
    fn step(&mut self) {
        let mut budget = self.prefill_chunk;
        let mut index = 0;
        while index < self.running.len() {
            let sequence = &mut self.running[index];
            let outcome = if sequence.events.is_closed() {
                Outcome::Finished(FinishReason::Cancelled)
            } else if sequence.tokens.prefilling() && budget > 0 {
                budget = budget.saturating_sub(sequence.tokens.pipeline().prefill_remaining().min(self.prefill_chunk));
                match guarded(|| prefill(sequence)) {
                    Outcome::Running if !sequence.tokens.prefilling() => {
                        self.snapshot_prompt(index);
                        self.join_batch(index)
                    }
                    other => other,
                }
            } else {
                Outcome::Running
            };
            if self.settle(index, outcome) {
                index += 1;
            }
        }
        self.decode();
    }

    /// A prefilled sequence becomes a row of the decode batch.
    fn join_batch(&mut self, index: usize) -> Outcome {
        let sequence = &mut self.running[index];
        let (batch, id) = (&mut self.batch, sequence.id);
        guarded(|| match batch.join(id, sequence.tokens.pipeline_mut()) {
            Ok(()) => Outcome::Running,
            Err(error) => Outcome::Failed(ApiError::internal(error.to_string())),
        })
    }

    /// One token for every member of the decode batch, from one forward pass.
    fn decode(&mut self) {
        let mut index = 0;
        while index < self.running.len() {
            let outcome = match &self.running[index] {
                sequence if self.batch.contains(sequence.id) => guarded(|| inject_fault(sequence)),
                _ => Outcome::Running,
            };
            if self.settle(index, outcome) {
                index += 1;
            }
        }
        if self.batch.is_empty() {
            return;
        }
        let members = self.batch.members().to_vec();
        let (batch, model) = (&mut self.batch, self.model.loaded_model());
        let mut rows: Vec<_> = self.running.iter_mut().filter(|s| members.contains(&s.id)).collect();
        rows.sort_by_key(|s| members.iter().position(|&m| m == s.id));
        let step_panic = rows.iter().any(|s| s.fault == Some(Fault::StepPanic) && s.generated > 0);
        let mut pipelines: Vec<_> = rows.into_iter().map(|s| s.tokens.pipeline_mut()).collect();
        let stepped = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if step_panic {
                panic!("fault injection: {:?}", Fault::StepPanic);
            }
            batch.step(model, &mut pipelines)
        }));
        let outcomes = match stepped {
            Ok(Ok(outcomes)) => {
                // The batch now holds the rows the forward pass ran over (those with no next
                // token left before it).
                if !self.batch.is_empty() {
                    self.shared.metrics.decode_batch_size.observe(self.batch.members().len() as f64);
                }
                outcomes
            }
            Ok(Err(error)) => {
                tracing::error!("a batched decode step failed: {error}");
                return self.fail_batch(&members, ApiError::internal(error.to_string()));
            }
            Err(panic) => {
                tracing::error!("a batched decode step panicked: {}", panic_message(&panic));
                self.batch.clear();
                return self
                    .fail_batch(&members, ApiError::internal("the engine failed while generating this request"));
            }
        };
        for (id, outcome) in members.into_iter().zip(outcomes) {
            let Some(index) = self.running.iter().position(|s| s.id == id) else { continue };
            let sequence = &mut self.running[index];
            let outcome = match outcome {
                Ok(None) => Outcome::Finished(FinishReason::Length),
                Ok(Some(token)) => match guarded(|| deliver(sequence, token, self.model, self.shared)) {
                    // It left the batch in the step: that was its last token (max_tokens, or the
                    // end of the context).
                    Outcome::Running if !self.batch.contains(id) => Outcome::Finished(FinishReason::Length),
                    other => other,
                },
                Err(error) => Outcome::Failed(ApiError::internal(error.to_string())),
            };
            self.settle(index, outcome);
        }
    }

    /// Fails the sequences `members` after a decode step that lost all their tokens.
    fn fail_batch(&mut self, members: &[u64], error: ApiError) {
        self.batch.clear();
        while let Some(index) = self.running.iter().position(|s| members.contains(&s.id)) {
            let sequence = self.running.remove(index);
            self.fail(sequence, error.clone());
        }
    }

    /// Acts on a step's outcome for `running[index]`; returns whether it is still running.
    fn settle(&mut self, index: usize, outcome: Outcome) -> bool {
        let reason = match outcome {
            Outcome::Running => return true,
            Outcome::Finished(reason) => Ok(reason),
            Outcome::Failed(error) => Err(error),
        };
        let mut sequence = self.running.remove(index);
        if self.batch.contains(sequence.id)
            && let Err(error) = self.batch.leave(sequence.id, sequence.tokens.pipeline_mut())
        {
            // Its caches are lost (nothing is kept for a later prompt); the others go on.
            tracing::warn!("a sequence could not leave the decode batch: {error}");
        }
        match reason {
            Ok(reason) => self.finish(sequence, reason),
            Err(error) => self.fail(sequence, error),
        }
        false
    }

    /// Models with sliding-window layers keep the prompt's caches as soon as it is prefilled: a
    /// later turn's prompt starts with this one's, which is all such snapshots can serve.
    fn snapshot_prompt(&mut self, index: usize) {
        let sequence = &self.running[index];
        if sequence.generated > 0 {
            return;
        }
        let pipeline = sequence.tokens.pipeline();
        let caches = pipeline.snapshot();
        if caches.iter().any(|cache| cache.window().is_some()) {
            let prompt = pipeline.history()[..sequence.prompt_tokens].to_vec();
            self.prefix.insert(prompt, caches);
        }
    }

    fn finish(&mut self, mut sequence: Sequence<'m>, reason: FinishReason) {
        if reason == FinishReason::Cancelled {
            self.shared.metrics.cancelled.inc();
        } else {
            let result = sequence.text.end(reason.clone()).map_err(|e| ApiError::internal(e.to_string()));
            match result {
                Ok(_) => {
                    send_text(&mut sequence, self.model);
                    let _ = sequence.events.send(SequenceEvent::Done {
                        finish_reason: reason.clone(),
                        prompt_tokens: sequence.prompt_tokens,
                        completion_tokens: sequence.generated,
                        cached_tokens: sequence.cached_tokens,
                    });
                }
                Err(error) => {
                    let _ = sequence.events.send(SequenceEvent::Failed(error));
                }
            }
        }
        self.shared.release();
        // What the caches hold stays valid whatever ended the sequence.
        let (caches, tokens) = sequence.tokens.into_pipeline().into_caches();
        self.prefix.insert(tokens, caches);
        self.shared.metrics.prefix_cache_bytes.set(self.prefix.bytes() as i64);
    }

    fn fail(&mut self, sequence: Sequence<'m>, error: ApiError) {
        tracing::warn!("sequence failed: {}", error.message);
        self.shared.metrics.failed_sequences.inc();
        let _ = sequence.events.send(SequenceEvent::Failed(error));
        self.shared.release();
    }

    /// Ends every running and waiting request with `error` (shutdown, or a panic in the loop).
    pub(super) fn fail_all(&mut self, error: ApiError) {
        self.batch.clear();
        for sequence in std::mem::take(&mut self.running) {
            let _ = sequence.events.send(SequenceEvent::Failed(error.clone()));
            self.shared.release();
        }
        for request in std::mem::take(&mut self.waiting) {
            fail_command(Command::Generate(request), self.shared, error.clone());
        }
        self.update_gauges();
    }

    fn update_gauges(&self) {
        let metrics = &self.shared.metrics;
        metrics.queue_depth.set(self.waiting.len() as i64);
        metrics.active_sequences.set(self.running.len() as i64);
    }
}

/// Runs one sequence's work, turning a panic into that sequence's failure.
fn guarded(work: impl FnOnce() -> Outcome) -> Outcome {
    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        tracing::error!("a sequence step panicked: {}", panic_message(&panic));
        Outcome::Failed(ApiError::internal("the engine failed while generating this request"))
    })
}

fn prefill(sequence: &mut Sequence<'_>) -> Outcome {
    match sequence.tokens.prefill_step() {
        Ok(_) => Outcome::Running,
        Err(error) => Outcome::Failed(ApiError::internal(error.to_string())),
    }
}

/// What fault injection asks of a decoding sequence before its next token.
fn inject_fault(sequence: &Sequence<'_>) -> Outcome {
    match sequence.fault {
        Some(Fault::Panic) if sequence.generated > 0 => panic!("fault injection: {:?}", Fault::Panic),
        Some(Fault::Slow) => std::thread::sleep(SLOW_TOKEN),
        _ => {}
    }
    Outcome::Running
}

/// Hands a sequence's new token to its text assembler and its client.
fn deliver(sequence: &mut Sequence<'_>, token: SampledToken, model: &Model, shared: &Shared) -> Outcome {
    sequence.tokens.record();
    let now = Instant::now();
    match sequence.last_token {
        None => shared.metrics.time_to_first_token.observe((now - sequence.arrived).as_secs_f64()),
        Some(last) => shared.metrics.inter_token_latency.observe((now - last).as_secs_f64()),
    }
    sequence.last_token = Some(now);
    sequence.generated += 1;
    shared.metrics.generated_tokens.inc();
    let finished = match sequence.text.push(token) {
        Ok(finished) => finished,
        Err(error) => return Outcome::Failed(ApiError::internal(error.to_string())),
    };
    send_text(sequence, model);
    match finished {
        Some(reason) => Outcome::Finished(reason),
        None => Outcome::Running,
    }
}

/// Sends the assembler's pending events as text pieces.
fn send_text(sequence: &mut Sequence<'_>, model: &Model) {
    let decode = |id: u32| model.tokenizer().decode(&[id], false).unwrap_or_default();
    while let Some(event) = sequence.text.pop() {
        let message = match event {
            Event::Token { id, text, logprob, top_logprobs } => SequenceEvent::Text {
                text,
                token: Some(TokenInfo {
                    id,
                    text: if logprob.is_some() { decode(id) } else { String::new() },
                    logprob,
                    top_logprobs: top_logprobs.into_iter().map(|(id, lp)| (decode(id), lp)).collect(),
                }),
            },
            Event::Flush { text } => SequenceEvent::Text { text, token: None },
            Event::Done { .. } => continue,
        };
        let _ = sequence.events.send(message);
    }
}
