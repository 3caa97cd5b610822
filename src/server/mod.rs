//! `mlxcel serve`: an OpenAI-compatible HTTP server (axum on tokio) in front of one engine thread
//! that owns the model and schedules sequences continuously ([`scheduler`]), reusing cached
//! prompt prefixes ([`prefix_cache`]).
//!
//! - [`routes`]: router, middleware (request log, metrics, API key, body limit, CORS), small endpoints
//! - [`generation`]: chat completions, completions, responses; whole or as server-sent events
//! - [`openai`]: OpenAI's request and response shapes
//! - [`engine`]: the engine thread and its channel API; [`scheduler`]: the slots

pub mod engine;
pub mod error;
mod generation;
pub mod metrics;
pub mod openai;
pub mod prefix_cache;
pub mod routes;
mod scheduler;

use std::net::SocketAddr;

use thiserror::Error;

pub use engine::{Engine, EngineConfig};
pub use routes::HttpConfig;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("binding {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error("the engine thread panicked while stopping")]
    EngineThread,
}

/// Where to listen.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub host: String,
    pub port: u16,
}

/// Serves until SIGINT or SIGTERM: then stops accepting connections, ends in-flight streams with
/// a final event, waits for the engine to stop, and returns. `on_listening` gets the bound
/// address (port 0 picks a free one).
pub fn serve(
    listen: ListenConfig,
    http: HttpConfig,
    engine_config: EngineConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("mlxcel-http")
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let address = format!("{}:{}", listen.host, listen.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|source| ServeError::Bind { address: address.clone(), source })?;
        let (engine, engine_thread) = Engine::start(engine_config);
        on_listening(listener.local_addr()?);
        let app = routes::router(engine.clone(), &http);
        let stopping = engine.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                tracing::info!("shutting down: finishing in-flight requests");
                stopping.shutdown();
            })
            .await?;
        engine.shutdown();
        drop(engine);
        tokio::task::spawn_blocking(move || engine_thread.join())
            .await
            .map_err(|_| ServeError::EngineThread)?
            .map_err(|_| ServeError::EngineThread)
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!("cannot listen for SIGTERM: {error}");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
