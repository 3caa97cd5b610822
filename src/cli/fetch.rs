//! `mlxcel fetch`: puts a registry model (a GGUF file shipped as PyPI packages) into the mlxcel
//! cache and prints its path, for scripts and CI; `--list` shows what the registry has.

use mlxcel::registry::{self, RegistryError, RegistryOptions};

use super::table::render_columns;

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// A registry model alias (see --list).
    #[arg(required_unless_present = "list", conflicts_with = "list")]
    alias: Option<String>,
    /// List the registry models with their size and whether they are cached.
    #[arg(long)]
    list: bool,
    /// Only look in the cache, never download (also HF_HUB_OFFLINE=1).
    #[arg(long, env = "MLXCEL_OFFLINE")]
    offline: bool,
}

pub fn run(args: &FetchArgs) -> anyhow::Result<()> {
    let options = RegistryOptions::from_env(args.offline);
    if args.list {
        return super::print_stdout(&list(&options));
    }
    let alias = args.alias.as_deref().expect("clap requires an alias without --list");
    let model = registry::find(alias).ok_or_else(|| RegistryError::UnknownAlias(alias.to_string()))?;
    let path = registry::fetch(model, &options)?;
    super::print_stdout(&format!("{}\n", path.display()))
}

fn list(options: &RegistryOptions) -> String {
    let megabytes = |bytes: u64| format!("{:.0} MB", bytes as f64 / 1e6);
    let rows: Vec<Vec<String>> = registry::MODELS
        .iter()
        .map(|model| {
            let packages = match model.parts {
                [part] => format!("{}=={}", part.package, part.version),
                parts => format!("{} packages", parts.len()),
            };
            vec![
                model.alias.to_string(),
                megabytes(model.size),
                if model.is_cached(&options.cache_root) { "yes" } else { "no" }.to_string(),
                format!("{} (PyPI: {packages}, {} download)", model.description, megabytes(model.download_size())),
            ]
        })
        .collect();
    let mut out = render_columns(&["alias", "size", "cached", "description"], &rows);
    out.push_str(&format!("cache: {}\n", options.cache_root.join("models").display()));
    out
}
