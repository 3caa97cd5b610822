//! The generating endpoints: chat completions, completions and responses, whole or streamed as
//! server-sent events (axum's `Sse`). A handler submits the request to the engine and waits for
//! its first event, so a request the engine refuses (a prompt over the context, say) is an HTTP
//! error even when streaming; after that, dropping the response (the client went away) closes
//! the sequence's channel, which the engine notices before its next step.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::engine::{Prompt, Request, SequenceEvent, TokenInfo};
use super::error::ApiError;
use super::openai::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatRequest, ChoiceLogprobs, ChunkChoice,
    Completion, CompletionChoice, CompletionLogprobs, CompletionPrompt, CompletionRequest, Delta, ResponsesRequest,
    TokenLogprob, TopLogprob, Usage, chat_messages,
};
use super::routes::{ApiJson, App, RequestTokens};
use crate::generate::FinishReason;
use crate::pipeline::LogprobRequest;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `prefix-<unique>`: ids unique within the process and unlikely to repeat across restarts.
fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{:08x}{n:06x}", nanos)
}

fn finish_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        FinishReason::Eos | FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

/// A submitted request whose first event has arrived.
struct Started {
    events: mpsc::UnboundedReceiver<SequenceEvent>,
}

/// The parts of a request every endpoint fills in.
struct Submission {
    prompt: Prompt,
    max_tokens: Option<u64>,
    sampling: crate::sampling::SamplingParams,
    stop: Vec<String>,
    logprobs: LogprobRequest,
}

async fn submit(app: &App, submission: Submission) -> Result<Started, ApiError> {
    let (sender, mut events) = mpsc::unbounded_channel();
    let request = Request {
        prompt: submission.prompt,
        max_tokens: submission.max_tokens.map(|n| n.min(usize::MAX as u64) as usize),
        sampling: submission.sampling,
        stop: submission.stop,
        logprobs: submission.logprobs,
        arrived: Instant::now(),
        events: sender,
    };
    app.engine.submit(request)?;
    match events.recv().await {
        Some(SequenceEvent::Started { .. }) => Ok(Started { events }),
        Some(SequenceEvent::Failed(error)) => Err(error),
        Some(_) => Err(ApiError::internal("the engine sent events out of order")),
        None => Err(ApiError::internal("the engine dropped the request")),
    }
}

/// A whole generation, collected.
struct Collected {
    text: String,
    tokens: Vec<TokenInfo>,
    finish_reason: FinishReason,
    usage: Usage,
}

async fn collect(mut started: Started, counter: &RequestTokens) -> Result<Collected, ApiError> {
    let mut text = String::new();
    let mut tokens = Vec::new();
    while let Some(event) = started.events.recv().await {
        match event {
            SequenceEvent::Text { text: piece, token } => {
                text.push_str(&piece);
                if let Some(token) = token {
                    counter.0.fetch_add(1, Ordering::Relaxed);
                    tokens.push(token);
                }
            }
            SequenceEvent::Done { finish_reason, prompt_tokens, completion_tokens, cached_tokens } => {
                let usage = Usage::new(prompt_tokens, completion_tokens, cached_tokens);
                return Ok(Collected { text, tokens, finish_reason, usage });
            }
            SequenceEvent::Failed(error) => return Err(error),
            SequenceEvent::Started { .. } => {}
        }
    }
    Err(ApiError::internal("the engine dropped the request"))
}

fn chat_logprobs(tokens: &[TokenInfo]) -> Option<ChoiceLogprobs> {
    let content: Vec<TokenLogprob> = tokens
        .iter()
        .filter_map(|token| {
            Some(TokenLogprob {
                token: token.text.clone(),
                logprob: token.logprob?,
                bytes: token.text.as_bytes().to_vec(),
                top_logprobs: token
                    .top_logprobs
                    .iter()
                    .map(|(text, logprob)| TopLogprob {
                        token: text.clone(),
                        logprob: *logprob,
                        bytes: text.as_bytes().to_vec(),
                    })
                    .collect(),
            })
        })
        .collect();
    (!content.is_empty()).then_some(ChoiceLogprobs { content, refusal: None })
}

/// Server-sent events from a sequence: `convert` turns each engine event into zero or more SSE
/// events, `closing` adds the last ones once the sequence is done.
struct EventStream<F> {
    started: Started,
    outbox: VecDeque<SseEvent>,
    convert: F,
    finished: bool,
    counter: RequestTokens,
}

fn event_stream<F>(
    started: Started,
    counter: RequestTokens,
    convert: F,
) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnMut(SequenceEvent, &mut VecDeque<SseEvent>) + Send + 'static,
{
    let state = EventStream { started, outbox: VecDeque::new(), convert, finished: false, counter };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.outbox.pop_front() {
                return Some((Ok(event), state));
            }
            if state.finished {
                return None;
            }
            let event = match state.started.events.recv().await {
                Some(event) => event,
                None => SequenceEvent::Failed(ApiError::internal("the engine dropped the request")),
            };
            match &event {
                SequenceEvent::Done { .. } | SequenceEvent::Failed(_) => state.finished = true,
                SequenceEvent::Text { token: Some(_), .. } => {
                    state.counter.0.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            if let SequenceEvent::Failed(error) = &event {
                // The final event of a stream the engine could not finish (shutdown, failure):
                // the openai clients raise it as an APIError.
                state.outbox.push_back(SseEvent::default().data(error.body().to_string()));
                continue;
            }
            (state.convert)(event, &mut state.outbox);
        }
    })
}

fn sse(stream: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> Response {
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

fn data(value: &impl serde::Serialize) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(value).expect("response types serialize"))
}

pub async fn chat(
    State(app): State<App>,
    Extension(counter): Extension<RequestTokens>,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    request.check()?;
    let info = app.check_model(Some(&request.model))?;
    let sampling = request.sampling.params(info.vocab)?;
    let logprobs = if request.logprobs {
        LogprobRequest::Chosen { top: request.top_logprobs.unwrap_or(0) as usize }
    } else {
        LogprobRequest::None
    };
    let include_usage = request.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let max_tokens = request.max_tokens();
    let submission = Submission {
        prompt: Prompt::Chat(chat_messages(request.messages)?),
        max_tokens,
        sampling,
        stop: request.sampling.stop.into_vec(),
        logprobs,
    };
    let started = submit(&app, submission).await?;
    let (id, created, model) = (new_id("chatcmpl"), unix_now(), request.model);
    if !request.stream {
        let done = collect(started, &counter).await?;
        return Ok(Json(ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model,
            choices: vec![ChatChoice {
                index: 0,
                message: AssistantMessage { role: "assistant", content: done.text, refusal: None },
                logprobs: if request.logprobs { chat_logprobs(&done.tokens) } else { None },
                finish_reason: finish_reason(&done.finish_reason),
            }],
            usage: done.usage,
            system_fingerprint: None,
        })
        .into_response());
    }
    let chunk = move |choices: Vec<ChunkChoice>, usage: Option<Usage>| ChatCompletionChunk {
        id: id.clone(),
        object: "chat.completion.chunk",
        created,
        model: model.clone(),
        choices,
        usage,
        system_fingerprint: None,
    };
    let first = chunk(
        vec![ChunkChoice {
            index: 0,
            delta: Delta { role: Some("assistant"), content: Some(String::new()) },
            logprobs: None,
            finish_reason: None,
        }],
        None,
    );
    let mut first = Some(first);
    let want_logprobs = request.logprobs;
    let stream = event_stream(started, counter, move |event, out| {
        if let Some(first) = first.take() {
            out.push_back(data(&first));
        }
        match event {
            SequenceEvent::Text { text, token } => {
                let logprobs = if want_logprobs { chat_logprobs(token.as_slice()) } else { None };
                if text.is_empty() && logprobs.is_none() {
                    return;
                }
                let delta = Delta { role: None, content: Some(text) };
                out.push_back(data(&chunk(vec![ChunkChoice { index: 0, delta, logprobs, finish_reason: None }], None)));
            }
            SequenceEvent::Done { finish_reason: reason, prompt_tokens, completion_tokens, cached_tokens } => {
                let last = ChunkChoice {
                    index: 0,
                    delta: Delta::default(),
                    logprobs: None,
                    finish_reason: Some(finish_reason(&reason)),
                };
                out.push_back(data(&chunk(vec![last], None)));
                if include_usage {
                    let usage = Usage::new(prompt_tokens, completion_tokens, cached_tokens);
                    out.push_back(data(&chunk(Vec::new(), Some(usage))));
                }
                out.push_back(SseEvent::default().data("[DONE]"));
            }
            SequenceEvent::Started { .. } | SequenceEvent::Failed(_) => {}
        }
    });
    Ok(sse(stream))
}

/// Completions' logprobs for `tokens`, whose texts start at `start` in the completion.
fn completion_logprobs(tokens: &[TokenInfo], start: usize) -> CompletionLogprobs {
    let mut logprobs = CompletionLogprobs::default();
    let mut offset = start;
    for token in tokens {
        let Some(logprob) = token.logprob else { continue };
        logprobs.tokens.push(token.text.clone());
        logprobs.token_logprobs.push(logprob);
        logprobs.top_logprobs.push(token.top_logprobs.iter().cloned().collect::<HashMap<_, _>>());
        logprobs.text_offset.push(offset);
        offset += token.text.len();
    }
    logprobs
}

pub async fn completions(
    State(app): State<App>,
    Extension(counter): Extension<RequestTokens>,
    ApiJson(request): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    request.check()?;
    let info = app.check_model(Some(&request.model))?;
    let sampling = request.sampling.params(info.vocab)?;
    let prompt = match request.prompt()? {
        CompletionPrompt::Text(text) => Prompt::Text { text, add_special: true },
        CompletionPrompt::Ids(ids) => Prompt::Ids(ids),
    };
    let logprobs = match request.logprobs {
        Some(top) => LogprobRequest::Chosen { top: top as usize },
        None => LogprobRequest::None,
    };
    let include_usage = request.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let submission = Submission {
        prompt,
        max_tokens: request.max_tokens,
        sampling,
        stop: request.sampling.stop.into_vec(),
        logprobs,
    };
    let started = submit(&app, submission).await?;
    let (id, created, model) = (new_id("cmpl"), unix_now(), request.model);
    let want_logprobs = request.logprobs.is_some();
    if !request.stream {
        let done = collect(started, &counter).await?;
        return Ok(Json(Completion {
            id,
            object: "text_completion",
            created,
            model,
            choices: vec![CompletionChoice {
                index: 0,
                logprobs: want_logprobs.then(|| completion_logprobs(&done.tokens, 0)),
                text: done.text,
                finish_reason: Some(finish_reason(&done.finish_reason)),
            }],
            usage: Some(done.usage),
            system_fingerprint: None,
        })
        .into_response());
    }
    let chunk = move |choices: Vec<CompletionChoice>, usage: Option<Usage>| Completion {
        id: id.clone(),
        object: "text_completion",
        created,
        model: model.clone(),
        choices,
        usage,
        system_fingerprint: None,
    };
    let mut offset = 0;
    let stream = event_stream(started, counter, move |event, out| match event {
        SequenceEvent::Text { text, token } => {
            let logprobs = want_logprobs.then(|| completion_logprobs(token.as_slice(), offset));
            offset += text.len();
            if text.is_empty() && logprobs.as_ref().is_none_or(|l| l.tokens.is_empty()) {
                return;
            }
            out.push_back(data(&chunk(vec![CompletionChoice { index: 0, text, logprobs, finish_reason: None }], None)));
        }
        SequenceEvent::Done { finish_reason: reason, prompt_tokens, completion_tokens, cached_tokens } => {
            let last = CompletionChoice {
                index: 0,
                text: String::new(),
                logprobs: None,
                finish_reason: Some(finish_reason(&reason)),
            };
            out.push_back(data(&chunk(vec![last], None)));
            if include_usage {
                out.push_back(data(&chunk(
                    Vec::new(),
                    Some(Usage::new(prompt_tokens, completion_tokens, cached_tokens)),
                )));
            }
            out.push_back(SseEvent::default().data("[DONE]"));
        }
        SequenceEvent::Started { .. } | SequenceEvent::Failed(_) => {}
    });
    Ok(sse(stream))
}

/// The Responses API's `Response` object.
struct ResponseShape {
    id: String,
    message_id: String,
    created_at: u64,
    model: String,
    instructions: Option<String>,
    max_output_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
}

impl ResponseShape {
    fn message(&self, text: &str, status: &str) -> Value {
        json!({
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": if status == "in_progress" { json!([]) } else { json!([self.part(text)]) },
        })
    }

    fn part(&self, text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }

    /// `done`: the finished text, reason and usage; `None` while in progress.
    fn response(&self, done: Option<(&str, &FinishReason, &Usage)>) -> Value {
        let (status, output, usage, incomplete) = match done {
            None => ("in_progress", json!([]), Value::Null, Value::Null),
            Some((text, reason, usage)) => {
                let truncated = *reason == FinishReason::Length;
                (
                    if truncated { "incomplete" } else { "completed" },
                    json!([self.message(text, "completed")]),
                    json!({
                        "input_tokens": usage.prompt_tokens,
                        "input_tokens_details": {"cached_tokens": usage.prompt_tokens_details.cached_tokens},
                        "output_tokens": usage.completion_tokens,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": usage.total_tokens,
                    }),
                    if truncated { json!({"reason": "max_output_tokens"}) } else { Value::Null },
                )
            }
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": incomplete,
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": false,
            "temperature": self.temperature,
            "tool_choice": "none",
            "tools": [],
            "top_p": self.top_p,
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        })
    }
}

pub async fn responses(
    State(app): State<App>,
    Extension(counter): Extension<RequestTokens>,
    ApiJson(request): ApiJson<ResponsesRequest>,
) -> Result<Response, ApiError> {
    request.check()?;
    let info = app.check_model(Some(&request.model))?;
    let sampling = request.sampling().params(info.vocab)?;
    let submission = Submission {
        prompt: Prompt::Chat(request.messages()?),
        max_tokens: request.max_output_tokens,
        sampling,
        stop: Vec::new(),
        logprobs: LogprobRequest::None,
    };
    let started = submit(&app, submission).await?;
    let shape = ResponseShape {
        id: new_id("resp"),
        message_id: new_id("msg"),
        created_at: unix_now(),
        model: request.model.clone(),
        instructions: request.instructions.clone(),
        max_output_tokens: request.max_output_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
    };
    if !request.stream {
        let done = collect(started, &counter).await?;
        return Ok(Json(shape.response(Some((&done.text, &done.finish_reason, &done.usage)))).into_response());
    }
    let mut sequence_number = 0u64;
    let mut text = String::new();
    let mut opened = false;
    let stream = event_stream(started, counter, move |event, out| {
        let mut emit = |kind: &str, mut body: Value| {
            body["type"] = json!(kind);
            body["sequence_number"] = json!(sequence_number);
            sequence_number += 1;
            out.push_back(SseEvent::default().event(kind).data(body.to_string()));
        };
        if !opened {
            opened = true;
            emit("response.created", json!({"response": shape.response(None)}));
            emit("response.in_progress", json!({"response": shape.response(None)}));
            emit("response.output_item.added", json!({"output_index": 0, "item": shape.message("", "in_progress")}));
            emit(
                "response.content_part.added",
                json!({"item_id": shape.message_id, "output_index": 0, "content_index": 0, "part": shape.part("")}),
            );
        }
        match event {
            SequenceEvent::Text { text: delta, .. } => {
                if delta.is_empty() {
                    return;
                }
                text.push_str(&delta);
                emit(
                    "response.output_text.delta",
                    json!({"item_id": shape.message_id, "output_index": 0, "content_index": 0, "delta": delta, "logprobs": []}),
                );
            }
            SequenceEvent::Done { finish_reason: reason, prompt_tokens, completion_tokens, cached_tokens } => {
                let usage = Usage::new(prompt_tokens, completion_tokens, cached_tokens);
                let ids = json!({"item_id": shape.message_id, "output_index": 0, "content_index": 0});
                let mut done = ids.clone();
                done["text"] = json!(text);
                done["logprobs"] = json!([]);
                emit("response.output_text.done", done);
                let mut part = ids;
                part["part"] = shape.part(&text);
                emit("response.content_part.done", part);
                emit(
                    "response.output_item.done",
                    json!({"output_index": 0, "item": shape.message(&text, "completed")}),
                );
                let response = shape.response(Some((&text, &reason, &usage)));
                let kind = if reason == FinishReason::Length { "response.incomplete" } else { "response.completed" };
                emit(kind, json!({"response": response}));
            }
            SequenceEvent::Started { .. } | SequenceEvent::Failed(_) => {}
        }
    });
    Ok(sse(stream))
}
