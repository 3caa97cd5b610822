//! Model specs to local folders: a folder path, an alias from [`ALIASES`], or a Hugging Face repo
//! id `owner/name[@revision]` downloaded (only the files inference needs) into the standard HF
//! cache, or read from it alone in offline mode.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};
use thiserror::Error;

/// Short names for the models mlxcel is tuned for, in one place.
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
    #[error("unknown model {0:?}: not a folder, not an alias ({aliases}) and not a Hugging Face repo id owner/name[@revision]", aliases = alias_names())]
    UnknownSpec(String),
    #[error("model {model} is not in the Hugging Face cache at {} and offline mode is on (--offline or HF_HUB_OFFLINE); run once with network access, or point HF_HUB_CACHE at a cache that has it", cache.display())]
    NotCached { model: String, cache: PathBuf },
    #[error("cannot download model {model} from the Hugging Face Hub ({reason}) and the cache at {} does not have it; check the network or HF_TOKEN, or use --offline with a populated cache", cache.display())]
    Download { model: String, cache: PathBuf, reason: String },
}

fn alias_names() -> String {
    ALIASES.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Local(PathBuf),
    Hub { repo: String, revision: String },
}

impl ModelSpec {
    pub fn parse(spec: &str) -> Result<ModelSpec, HubError> {
        if let Some((_, repo)) = ALIASES.iter().find(|(name, _)| *name == spec) {
            return Ok(ModelSpec::Hub { repo: repo.to_string(), revision: "main".into() });
        }
        let path = Path::new(spec);
        let looks_like_path =
            spec.starts_with(['/', '.', '~']) || spec.contains(std::path::MAIN_SEPARATOR) && path.exists();
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

/// Where and how to reach the Hub, from the same environment variables huggingface_hub reads.
#[derive(Debug, Clone)]
pub struct HubOptions {
    pub offline: bool,
    /// The hub cache (`models--owner--name/...` lives here).
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    pub endpoint: Option<String>,
    pub progress: bool,
}

impl HubOptions {
    /// `HF_HUB_OFFLINE`, `HF_HUB_CACHE` (or `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`), `HF_TOKEN`, `HF_ENDPOINT`; `offline` forces offline mode.
    pub fn from_env(offline: bool) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let offline = offline
            || var("HF_HUB_OFFLINE")
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"));
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .or_else(|| var("HF_HOME").map(|home| PathBuf::from(home).join("hub")))
            .unwrap_or_else(|| expand_home("~/.cache/huggingface/hub"));
        let token = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN"));
        HubOptions { offline, cache_dir, token, endpoint: var("HF_ENDPOINT"), progress: true }
    }
}

/// The local folder holding the model's files, downloading what is missing unless offline.
pub fn resolve(spec: &ModelSpec, options: &HubOptions) -> Result<PathBuf, HubError> {
    let (repo, revision) = match spec {
        ModelSpec::Local(path) => return Ok(path.clone()),
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
        for bad in ["no-slash-and-not-a-folder", "a/b/c", "owner/", "own er/name", "owner/name@"] {
            assert!(matches!(ModelSpec::parse(bad), Err(HubError::UnknownSpec(_))), "{bad}");
        }
    }

    #[test]
    fn offline_reads_only_the_cache_and_names_it_when_missing() {
        let cache = tempfile::tempdir().unwrap();
        let options =
            HubOptions { offline: true, cache_dir: cache.path().into(), token: None, endpoint: None, progress: false };
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
        let options = HubOptions {
            offline: false,
            cache_dir: cache.path().into(),
            token: None,
            endpoint: Some("http://127.0.0.1:9".into()),
            progress: false,
        };
        let spec = ModelSpec::Hub { repo: "owner/model".into(), revision: "main".into() };
        let err = resolve(&spec, &options).unwrap_err().to_string();
        assert!(
            err.contains("cannot download model owner/model") && err.contains(&cache.path().display().to_string()),
            "{err}"
        );
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
