//! The router and its middleware: one log line and one metrics sample per request, API-key
//! checks, body limits and CORS; the small endpoints (health, metrics, models, tokenize).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use super::engine::{Engine, ModelInfo, Prompt};
use super::error::ApiError;
use super::generation;
use super::openai::{DetokenizeRequest, ModelList, ModelObject, TokenizeRequest, chat_messages};

/// What the handlers share.
pub struct AppState {
    pub engine: Engine,
    /// SHA-256 of the API key: comparing digests in constant time leaks neither the key nor its
    /// length.
    api_key: Option<[u8; 32]>,
}

pub type App = Arc<AppState>;

/// HTTP-side settings.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    pub api_key: Option<String>,
    pub cors_origins: Vec<String>,
    pub body_limit: usize,
}

impl AppState {
    /// The model, or 503 while it loads (or after its load failed).
    pub fn ready(&self) -> Result<&ModelInfo, ApiError> {
        if let Some(error) = self.engine.shared.unavailable() {
            return Err(error);
        }
        self.engine.shared.info().ok_or_else(|| ApiError::unavailable("the model is loading"))
    }

    /// The model a request names must be the served one (or an alias of it).
    pub fn check_model(&self, name: Option<&str>) -> Result<&ModelInfo, ApiError> {
        let info = self.ready()?;
        match name {
            Some(name) if !info.serves(name) => Err(ApiError::model_not_found(name)),
            _ => Ok(info),
        }
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

pub fn router(engine: Engine, config: &HttpConfig) -> Router {
    let app = Arc::new(AppState { engine, api_key: config.api_key.as_deref().map(digest) });
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(generation::chat))
        .route("/v1/completions", post(generation::completions))
        .route("/v1/responses", post(generation::responses))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .layer(RequestBodyLimitLayer::new(config.body_limit))
        .layer(middleware::from_fn_with_state(config.body_limit, read_declared_oversize))
        .layer(middleware::map_response(openai_shaped_413));
    if !config.cors_origins.is_empty() {
        let origins = if config.cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(config.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        router = router.layer(CorsLayer::new().allow_origin(origins).allow_methods(Any).allow_headers(Any));
    }
    router.layer(middleware::from_fn_with_state(app.clone(), log_request)).with_state(app)
}

/// Generated tokens of the request, counted by the handler for the log line.
#[derive(Clone, Default)]
pub struct RequestTokens(pub Arc<AtomicUsize>);

/// Writes the request's log line and metrics sample when its response body ends (a stream's
/// last event, or the client going away).
struct RequestLog {
    app: App,
    method: String,
    route: String,
    status: u16,
    tokens: RequestTokens,
    started: Instant,
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        let tokens = self.tokens.0.load(Ordering::Relaxed);
        let ms = self.started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(target: "mlxcel::serve", "{} {} {} tokens={tokens} {ms:.1}ms", self.method, self.route, self.status);
        let status = self.status.to_string();
        self.app.engine.shared.metrics.requests.with_label_values(&[self.route.as_str(), status.as_str()]).inc();
    }
}

async fn log_request(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let tokens = RequestTokens::default();
    request.extensions_mut().insert(tokens.clone());
    let response = next.run(request).await;
    let log = RequestLog { app, method, route, status: response.status().as_u16(), tokens, started };
    let (parts, body) = response.into_parts();
    // The log entry lives as long as the body stream does.
    let body = body.into_data_stream().map(move |chunk| {
        let _ = &log;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

async fn authenticate(State(app): State<App>, request: Request, next: Next) -> Response {
    let Some(expected) = &app.api_key else { return next.run(request).await };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(digest);
    match given {
        Some(given) if bool::from(given.ct_eq(expected)) => next.run(request).await,
        _ => ApiError::unauthorized().into_response(),
    }
}

/// The one 413 every body-limit path answers with.
fn body_too_large() -> ApiError {
    ApiError::too_large("the request body is larger than this server accepts")
}

/// The most of a declared-oversized body read before answering 413, and for how long.
const OVERSIZE_DRAIN_BYTES: usize = 64 << 20;
const OVERSIZE_DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Answering 413 to a `Content-Length` over the limit without reading the body closes the
/// connection under a client still writing it: the client sees a broken pipe, not the 413.
/// Reading (and dropping) a bounded amount first lets ordinary clients get the answer, as
/// nginx's lingering close does; bodies past the bound still get the connection closed.
async fn read_declared_oversize(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    match declared {
        Some(length) if length > limit => {
            if length <= OVERSIZE_DRAIN_BYTES {
                let mut body = request.into_body().into_data_stream();
                let drain = async { while let Some(Ok(_)) = body.next().await {} };
                let _ = tokio::time::timeout(OVERSIZE_DRAIN_TIME, drain).await;
            }
            body_too_large().into_response()
        }
        _ => next.run(request).await,
    }
}

/// tower-http answers an oversized body with plain text; clients expect OpenAI's error object.
async fn openai_shaped_413(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return body_too_large().into_response();
    }
    response
}

/// `Json<T>` whose rejections are OpenAI-shaped errors with the rejection's status.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return body_too_large();
    }
    ApiError::invalid(rejection.body_text())
}

async fn health(State(app): State<App>) -> Response {
    match app.ready() {
        Ok(_) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let text = app.engine.shared.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn models(State(app): State<App>) -> Result<Json<ModelList>, ApiError> {
    let info = app.ready()?;
    Ok(Json(ModelList {
        object: "list",
        data: vec![ModelObject { id: info.id.clone(), object: "model", created: info.created, owned_by: "mlxcel" }],
    }))
}

async fn tokenize(State(app): State<App>, ApiJson(request): ApiJson<TokenizeRequest>) -> Result<Response, ApiError> {
    app.check_model(request.model.as_deref())?;
    let prompt = match (request.content.or(request.prompt), request.messages) {
        (Some(text), None) => Prompt::Text { text, add_special: request.add_special.unwrap_or(true) },
        (None, Some(messages)) => Prompt::Chat(chat_messages(messages)?),
        _ => return Err(ApiError::invalid("give either content (text) or messages")),
    };
    let tokens = app.engine.tokenize(prompt).await?;
    Ok(Json(serde_json::json!({"tokens": tokens, "count": tokens.len()})).into_response())
}

async fn detokenize(
    State(app): State<App>,
    ApiJson(request): ApiJson<DetokenizeRequest>,
) -> Result<Response, ApiError> {
    app.check_model(request.model.as_deref())?;
    let content = app.engine.detokenize(request.tokens).await?;
    Ok(Json(serde_json::json!({"content": content})).into_response())
}

async fn fallback(request: Request) -> ApiError {
    ApiError::not_found(request.uri().path())
}
