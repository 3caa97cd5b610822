//! `mlxcel serve`: the OpenAI-compatible server's flags.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use mlxcel::server::{self, EngineConfig, HttpConfig, ListenConfig};

use super::model_args::ModelArgs;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on; the default takes connections from this machine only.
    #[arg(long, default_value = "127.0.0.1", env = "MLXCEL_HOST")]
    host: String,
    /// Port to listen on (0 picks a free one; the chosen address is printed).
    #[arg(long, default_value_t = 8080, env = "MLXCEL_PORT")]
    port: u16,
    /// Sequences generated at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    parallel: u32,
    /// Requests that may wait for a free sequence slot; beyond that, 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_queue: usize,
    /// Positions per sequence, prompt and answer together (default: the model's context).
    #[arg(short = 'c', long)]
    ctx_size: Option<usize>,
    /// Memory for the prefix cache of reusable prompt keys and values, in MiB (0 = off).
    #[arg(long, default_value_t = 2048)]
    cache_ram: usize,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "MLXCEL_API_KEY", conflicts_with = "api_key_file", hide_env_values = true)]
    api_key: Option<String>,
    /// Read the API key from this file (its first line).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Allow browsers from this origin (repeatable; * for any).
    #[arg(long)]
    cors_origin: Vec<String>,
    /// Largest request body accepted, in KiB (larger: 413).
    #[arg(long, default_value_t = 8192)]
    max_body_kib: usize,
}

impl ServeArgs {
    fn api_key(&self) -> anyhow::Result<Option<String>> {
        let key = match (&self.api_key, &self.api_key_file) {
            (Some(key), _) => key.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the API key from {}", path.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
            (None, None) => return Ok(None),
        };
        if key.is_empty() {
            bail!("the API key is empty");
        }
        Ok(Some(key))
    }
}

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    if args.ctx_size == Some(0) {
        bail!("--ctx-size must be at least 1");
    }
    let http = HttpConfig {
        api_key: args.api_key()?,
        cors_origins: args.cors_origin.clone(),
        body_limit: args.max_body_kib.saturating_mul(1024),
    };
    let engine = EngineConfig {
        model: args.model.model.clone(),
        load: args.model.load_options(),
        parallel: args.parallel as usize,
        max_queue: args.max_queue,
        ctx_size: args.ctx_size,
        cache_ram: args.cache_ram.saturating_mul(1 << 20),
    };
    let listen = ListenConfig { host: args.host.clone(), port: args.port };
    server::serve(listen, http, engine, |address| {
        // Scripts (and the tests) read the chosen port from this line.
        println!("mlxcel serve: listening on http://{address}");
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}
