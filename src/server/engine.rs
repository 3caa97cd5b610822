//! The engine thread and its channel API. One thread loads and owns the model (MLX state never
//! crosses threads); HTTP handlers submit requests over a channel and get each sequence's events
//! back on a channel of its own. Admission is bounded (`--parallel` slots plus `--max-queue`
//! waiting), and a failure, even a panic, inside the engine fails the request it belongs to.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc as tokio_mpsc, oneshot};

use super::error::ApiError;
use super::metrics::Metrics;
use super::scheduler::Scheduler;
use crate::api::{LoadOptions, Model};
use crate::chat_template::Message;
use crate::generate::FinishReason;
use crate::pipeline::LogprobRequest;
use crate::sampling::SamplingParams;

/// How the engine runs (from `mlxcel serve`'s flags).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// What `mlxcel serve -m` names: alias, repo id or path.
    pub model: String,
    pub load: LoadOptions,
    /// Sequences running at once.
    pub parallel: usize,
    /// Requests that may wait for a slot beyond those running.
    pub max_queue: usize,
    /// Positions per sequence (the model's context when `None` or larger).
    pub ctx_size: Option<usize>,
    /// Prefix-cache budget in bytes (0 disables it).
    pub cache_ram: usize,
}

/// What the loaded model is, for the routes.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The id `/v1/models` lists and requests must name (or an alias of it).
    pub id: String,
    pub aliases: Vec<String>,
    pub context: usize,
    pub vocab: usize,
    pub created: u64,
}

impl ModelInfo {
    pub fn serves(&self, name: &str) -> bool {
        self.id == name || self.aliases.iter().any(|alias| alias == name)
    }
}

const LOADING: u8 = 0;
const READY: u8 = 1;
const FAILED: u8 = 2;

/// State the handlers and the engine share.
pub struct Shared {
    pub metrics: Metrics,
    info: OnceLock<ModelInfo>,
    state: AtomicU8,
    load_error: OnceLock<String>,
    /// Requests admitted and not yet finished: running plus waiting.
    inflight: AtomicUsize,
    capacity: usize,
    shutting_down: AtomicBool,
}

impl Shared {
    pub fn info(&self) -> Option<&ModelInfo> {
        self.info.get().filter(|_| self.state.load(Ordering::Acquire) == READY)
    }

    /// Why the model is not being served (still loading, or the load failed).
    pub fn unavailable(&self) -> Option<ApiError> {
        match self.state.load(Ordering::Acquire) {
            READY if self.shutting_down.load(Ordering::Acquire) => {
                Some(ApiError::unavailable("the server is shutting down"))
            }
            READY => None,
            FAILED => Some(ApiError::unavailable(format!(
                "the model failed to load: {}",
                self.load_error.get().map_or("unknown error", String::as_str)
            ))),
            _ => Some(ApiError::unavailable("the model is loading")),
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// A finished (or never started) request's slot in the admission count.
    pub(super) fn release(&self) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The prompt as the request gives it.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// Plain text; `add_special` adds the tokenizer's BOS as `generate` does.
    Text {
        text: String,
        add_special: bool,
    },
    /// Chat messages through the model's chat template.
    Chat(Vec<Message>),
    Ids(Vec<u32>),
}

/// One generation request.
pub struct Request {
    pub prompt: Prompt,
    /// `None`: up to the end of the context.
    pub max_tokens: Option<usize>,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub logprobs: LogprobRequest,
    pub arrived: Instant,
    pub events: tokio_mpsc::UnboundedSender<SequenceEvent>,
}

/// A generated token's text form and log-probabilities (for `logprobs`).
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub id: u32,
    /// The token decoded alone.
    pub text: String,
    pub logprob: Option<f32>,
    pub top_logprobs: Vec<(String, f32)>,
}

/// What a sequence reports, in order: `Started`, text pieces, then `Done` or `Failed`.
#[derive(Debug, Clone)]
pub enum SequenceEvent {
    Started {
        prompt_tokens: usize,
        cached_tokens: usize,
    },
    /// New text; `token` is the generated token it completes (`None` for text flushed at the end).
    Text {
        text: String,
        token: Option<TokenInfo>,
    },
    Done {
        finish_reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        cached_tokens: usize,
    },
    Failed(ApiError),
}

pub(super) enum Command {
    Generate(Request),
    Tokenize { prompt: Prompt, reply: oneshot::Sender<Result<Vec<u32>, ApiError>> },
    Detokenize { ids: Vec<u32>, reply: oneshot::Sender<Result<String, ApiError>> },
}

/// The handlers' side of the engine.
#[derive(Clone)]
pub struct Engine {
    commands: mpsc::Sender<Command>,
    pub shared: Arc<Shared>,
}

impl Engine {
    /// Starts the engine thread, which loads the model (`/health` says 503 until it is ready).
    pub fn start(config: EngineConfig) -> (Engine, JoinHandle<()>) {
        let (commands, receiver) = mpsc::channel();
        let shared = Arc::new(Shared {
            metrics: Metrics::new(),
            info: OnceLock::new(),
            state: AtomicU8::new(LOADING),
            load_error: OnceLock::new(),
            inflight: AtomicUsize::new(0),
            capacity: config.parallel.max(1) + config.max_queue,
            shutting_down: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mlxcel-engine".into())
            .spawn(move || engine_main(config, receiver, thread_shared))
            .expect("spawning the engine thread");
        (Engine { commands, shared }, thread)
    }

    /// Queues a request, or refuses it: 503 while loading or stopping, 429 when the queue is full.
    pub fn submit(&self, request: Request) -> Result<(), ApiError> {
        if let Some(error) = self.shared.unavailable() {
            return Err(error);
        }
        let capacity = self.shared.capacity;
        self.shared
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < capacity).then_some(n + 1))
            .map_err(|_| ApiError::queue_full(1))?;
        if self.commands.send(Command::Generate(request)).is_err() {
            self.shared.release();
            return Err(ApiError::unavailable("the engine has stopped"));
        }
        Ok(())
    }

    pub async fn tokenize(&self, prompt: Prompt) -> Result<Vec<u32>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Command::Tokenize { prompt, reply }, answer).await
    }

    pub async fn detokenize(&self, ids: Vec<u32>) -> Result<String, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Command::Detokenize { ids, reply }, answer).await
    }

    async fn ask<T>(&self, command: Command, answer: oneshot::Receiver<Result<T, ApiError>>) -> Result<T, ApiError> {
        if let Some(error) = self.shared.unavailable() {
            return Err(error);
        }
        self.commands.send(command).map_err(|_| ApiError::unavailable("the engine has stopped"))?;
        answer.await.map_err(|_| ApiError::internal("the engine dropped the request"))?
    }

    /// Stops admitting requests; the engine ends the running ones with a final event and exits.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn engine_main(config: EngineConfig, commands: mpsc::Receiver<Command>, shared: Arc<Shared>) {
    let model = match Model::load_with(&config.model, &config.load) {
        Ok(model) => model,
        Err(error) => {
            tracing::error!("model load failed: {error}");
            let _ = shared.load_error.set(error.to_string());
            shared.state.store(FAILED, Ordering::Release);
            // Answer whatever arrives so no handler waits forever.
            for command in commands {
                fail_command(command, &shared, ApiError::unavailable(format!("the model failed to load: {error}")));
            }
            return;
        }
    };
    let model_context = model.loaded_model().context_length();
    let context = config.ctx_size.map_or(model_context, |c| c.min(model_context));
    let mut aliases = vec![model.dir().display().to_string()];
    if let Some(name) = model.dir().file_name().and_then(|n| n.to_str()) {
        aliases.push(name.to_string());
    }
    let info = ModelInfo {
        id: config.model.clone(),
        aliases,
        context,
        vocab: model.loaded_model().vocab_size(),
        created: unix_now(),
    };
    tracing::info!(model = %info.id, architecture = model.architecture(), context, "model ready");
    let _ = shared.info.set(info);
    shared.state.store(READY, Ordering::Release);
    let mut scheduler = Scheduler::new(&model, &config, context, &shared);
    loop {
        // Per-sequence work is guarded inside the scheduler; this catches a panic in the loop
        // itself, fails what was in flight, and goes on serving.
        match std::panic::catch_unwind(AssertUnwindSafe(|| scheduler.run(&commands))) {
            Ok(()) => break,
            Err(panic) => {
                tracing::error!("engine loop panicked: {}", panic_message(&panic));
                scheduler.fail_all(ApiError::internal("the engine failed while serving this request"));
            }
        }
    }
    tracing::info!("engine stopped");
}

pub(super) fn fail_command(command: Command, shared: &Shared, error: ApiError) {
    match command {
        Command::Generate(request) => {
            let _ = request.events.send(SequenceEvent::Failed(error));
            shared.release();
        }
        Command::Tokenize { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        Command::Detokenize { reply, .. } => {
            let _ = reply.send(Err(error));
        }
    }
}

pub(super) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
