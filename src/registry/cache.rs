//! What the cache holds and whether it can be trusted. A file is hashed once; a marker beside it
//! (`<file>.sha256`, which `sha256sum -c` reads) then records the sha256 together with the file's
//! size and modification (and, on Unix, status-change) times at that moment. The marker vouches
//! for the file only while those still match: any write to the file changes them and the file is
//! hashed again. Writing the marker is best-effort: a read-only cache still serves a good file,
//! hashing it on each use.

use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::RegistryModel;

/// The line in the marker that records what was hashed (a comment to `sha256sum`).
const STAMP_PREFIX: &str = "# mlxcel verified:";

/// A cached file's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheState {
    Missing,
    /// Hashed now, or vouched for by a marker that saw the file as it is.
    Verified,
    /// Present with the pinned size but not vouched for (no marker, or the file changed since it
    /// was hashed): the next use hashes it.
    Unverified,
    /// Not the pinned file: a wrong size, or a wrong sha256 (`None` when the size alone decided).
    Corrupt {
        size: u64,
        sha256: Option<String>,
    },
}

/// What identifies the file's contents cheaply: any write changes at least one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    modified_ns: u128,
    /// The inode's status-change time; unlike the modification time, no tool can set it back.
    changed_ns: Option<u128>,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        let since_epoch = |time: io::Result<SystemTime>| {
            time.ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
        };
        #[cfg(unix)]
        let changed_ns = {
            use std::os::unix::fs::MetadataExt;
            Some(meta.ctime() as u128 * 1_000_000_000 + meta.ctime_nsec() as u128)
        };
        #[cfg(not(unix))]
        let changed_ns = None;
        Stamp { size: meta.len(), modified_ns: since_epoch(meta.modified()), changed_ns }
    }

    fn line(&self) -> String {
        let changed = self.changed_ns.map_or(String::new(), |ns| format!(" changed_ns {ns}"));
        format!("{STAMP_PREFIX} size {} modified_ns {}{changed}", self.size, self.modified_ns)
    }

    fn parse(line: &str) -> Option<Stamp> {
        let fields: Vec<&str> = line.strip_prefix(STAMP_PREFIX)?.split_whitespace().collect();
        let value = |key: &str| fields.iter().position(|f| *f == key).and_then(|i| fields.get(i + 1)).copied();
        Some(Stamp {
            size: value("size")?.parse().ok()?,
            modified_ns: value("modified_ns")?.parse().ok()?,
            changed_ns: value("changed_ns").map(str::parse).transpose().ok()?,
        })
    }
}

/// The marker beside a verified file: `<file>.sha256`.
pub(super) fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

/// Whether the marker records `model`'s sha256 for the file exactly as `meta` describes it.
fn marker_vouches(path: &Path, model: &RegistryModel, meta: &Metadata) -> bool {
    let Ok(text) = fs::read_to_string(marker_path(path)) else { return false };
    let mut lines = text.lines();
    let hash_matches = lines.next().and_then(|line| line.split_whitespace().next()) == Some(model.sha256);
    hash_matches && lines.filter_map(Stamp::parse).any(|stamp| stamp == Stamp::of(meta))
}

/// Records that `path` (as `meta` describes it) hashed to `model`'s sha256. A cache that cannot
/// be written to keeps working: the file is hashed again next time.
pub(super) fn record_verified(model: &RegistryModel, path: &Path, meta: &Metadata) {
    let text = format!("{}  {}\n{}\n", model.sha256, model.file, Stamp::of(meta).line());
    if let Err(error) = fs::write(marker_path(path), text) {
        tracing::warn!(
            path = %marker_path(path).display(),
            %error,
            "cannot record that the cached file was verified (a read-only cache?); it will be hashed again next time"
        );
    }
}

/// The state of `path` as `model`'s cached file. With `rehash`, or when no marker vouches for it,
/// a file of the right size is hashed (and a good one recorded as verified); without, an
/// unvouched file is reported as [`CacheState::Unverified`] unread.
pub(super) fn inspect(model: &RegistryModel, path: &Path, rehash: bool) -> io::Result<CacheState> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(CacheState::Missing),
        Err(error) => return Err(error),
    };
    if meta.len() != model.size {
        return Ok(CacheState::Corrupt { size: meta.len(), sha256: None });
    }
    if !rehash && marker_vouches(path, model, &meta) {
        return Ok(CacheState::Verified);
    }
    // The stamp is the one before reading: a file changed while it is hashed gets hashed again.
    let sha256 = sha256_of(path)?;
    if sha256 != model.sha256 {
        return Ok(CacheState::Corrupt { size: meta.len(), sha256: Some(sha256) });
    }
    record_verified(model, path, &meta);
    Ok(CacheState::Verified)
}

/// Like [`inspect`] without hashing: what the cache can tell at a glance.
pub(super) fn glance(model: &RegistryModel, path: &Path) -> CacheState {
    match fs::metadata(path) {
        Err(_) => CacheState::Missing,
        Ok(meta) if meta.len() != model.size => CacheState::Corrupt { size: meta.len(), sha256: None },
        Ok(meta) if marker_vouches(path, model, &meta) => CacheState::Verified,
        Ok(_) => CacheState::Unverified,
    }
}

fn sha256_of(path: &Path) -> io::Result<String> {
    let mut sink = HashingSink::new(io::sink());
    io::copy(&mut File::open(path)?, &mut sink)?;
    Ok(sink.finish().0)
}

/// Deletes a bad cached file and its marker; a concurrent fetch may have removed it first.
pub(super) fn remove_bad(path: &Path) -> io::Result<()> {
    let _ = fs::remove_file(marker_path(path));
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

pub(super) const PARTIAL_SUFFIX: &str = ".partial";
pub(super) const DOWNLOAD_PREFIX: &str = ".download-";

/// Temporary files and folders that a killed fetch left behind. Only old ones: a concurrent fetch
/// may be writing a fresh one.
pub(super) fn remove_stale_leftovers(dir: &Path) {
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

/// A writer that hashes and counts what passes through it.
pub(super) struct HashingSink<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingSink<W> {
    pub(super) fn new(inner: W) -> Self {
        HashingSink { inner, hasher: Sha256::new(), written: 0 }
    }

    /// Lowercase hex sha256, byte count, and the writer back.
    pub(super) fn finish(self) -> (String, u64, W) {
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
