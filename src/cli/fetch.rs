//! `mlxcel fetch`: puts a registry model (a GGUF file shipped as PyPI packages) into the mlxcel
//! cache and prints its path, for scripts and CI; `--list` shows what the registry has and what
//! the cache holds; `--verify` hashes cached files whatever their markers say.

use anyhow::bail;
use mlxcel::registry::{self, CacheState, RegistryError, RegistryOptions};

use super::table::render_columns;

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// A registry model alias (see --list).
    #[arg(required_unless_present_any = ["list", "verify"], conflicts_with = "list")]
    alias: Option<String>,
    /// List the registry models with their size and whether they are cached.
    #[arg(long)]
    list: bool,
    /// Hash the cached file(s) again even when a marker vouches for them; without an alias,
    /// every registry model's (a listing, failing if any cached file is bad).
    #[arg(long)]
    verify: bool,
    /// Only look in the cache, never download (also HF_HUB_OFFLINE=1).
    #[arg(long, env = "MLXCEL_OFFLINE")]
    offline: bool,
}

pub fn run(args: &FetchArgs) -> anyhow::Result<()> {
    let options = RegistryOptions { verify: args.verify, ..RegistryOptions::from_env(args.offline) };
    let Some(alias) = args.alias.as_deref() else { return list(&options) };
    let model = registry::find(alias).ok_or_else(|| RegistryError::UnknownAlias(alias.to_string()))?;
    let path = registry::fetch(model, &options)?;
    super::print_stdout(&format!("{}\n", path.display()))
}

fn list(options: &RegistryOptions) -> anyhow::Result<()> {
    let megabytes = |bytes: u64| format!("{:.0} MB", bytes as f64 / 1e6);
    let mut rows = Vec::new();
    let mut corrupt = Vec::new();
    let mut unverified = false;
    for model in registry::MODELS {
        let packages = match model.parts {
            [part] => format!("{}=={}", part.package, part.version),
            parts => format!("{} packages", parts.len()),
        };
        let state = match model.cache_state(&options.cache_root, options.verify)? {
            CacheState::Missing => "no",
            CacheState::Verified => "yes",
            CacheState::Unverified => {
                unverified = true;
                "unverified"
            }
            CacheState::Corrupt { .. } => {
                corrupt.push(model.alias);
                "corrupt"
            }
        };
        rows.push(vec![
            model.alias.to_string(),
            megabytes(model.size),
            state.to_string(),
            format!("{} (PyPI: {packages}, {} download)", model.description, megabytes(model.download_size())),
        ]);
    }
    let mut out = render_columns(&["alias", "size", "cached", "description"], &rows);
    out.push_str(&format!("cache: {}\n", options.cache_root.join("models").display()));
    if unverified {
        out.push_str(
            "unverified: changed since it was hashed, or never hashed; hashed on next use, or now with --verify\n",
        );
    }
    if !corrupt.is_empty() {
        out.push_str("corrupt: not the pinned file; `mlxcel fetch ALIAS` replaces it\n");
    }
    super::print_stdout(&out)?;
    if options.verify && !corrupt.is_empty() {
        bail!("cached registry models are corrupt: {}; `mlxcel fetch ALIAS` replaces them", corrupt.join(", "));
    }
    Ok(())
}
