//! Parsers for the Linux `/proc` files hardware detection reads. They are pure functions of the
//! file text, so they are tested on every OS, though only Linux calls most of them.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::collections::BTreeSet;

/// The path of the first mapped shared object whose file name starts with `prefix` (e.g. the
/// `libmlx` this process loaded, which `LD_LIBRARY_PATH` can make differ from the build's).
pub(super) fn mapped_library(maps: &str, prefix: &str) -> Option<String> {
    mapped_paths(maps).find(|path| file_name(path).starts_with(prefix)).map(str::to_string)
}

/// The distinct file paths in a `/proc/<pid>/maps` listing (the sixth column, when absolute).
pub(super) fn mapped_paths(maps: &str) -> impl Iterator<Item = &str> {
    let mut seen = BTreeSet::new();
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/'))
        .filter(move |path| seen.insert(*path))
}

pub(super) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub(super) fn cpuinfo_model_name(cpuinfo: &str) -> Option<String> {
    cpuinfo_values(cpuinfo, "model name").next().map(str::to_string)
}

/// Distinct (physical id, core id) pairs. aarch64 kernels list neither, so the count is `None`
/// there rather than a guess.
pub(super) fn cpuinfo_physical_cores(cpuinfo: &str) -> Option<usize> {
    let mut cores = BTreeSet::new();
    for processor in cpuinfo.split("\n\n").filter(|block| block.contains("processor")) {
        let package = cpuinfo_values(processor, "physical id").next()?;
        let core = cpuinfo_values(processor, "core id").next()?;
        cores.insert((package, core));
    }
    (!cores.is_empty()).then_some(cores.len())
}

fn cpuinfo_values<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> {
    text.lines().filter_map(move |line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then(|| value.trim())
    })
}

/// AMX tile units, as the kernel lists them in `flags`: `std` detects AMX only on nightly. (A
/// process still has to request AMX state from the kernel before using it; oneDNN-style kernels do.)
pub(super) fn cpuinfo_amx_features(cpuinfo: &str) -> Vec<String> {
    let Some(flags) = cpuinfo_values(cpuinfo, "flags").next() else { return Vec::new() };
    let flags: BTreeSet<&str> = flags.split_whitespace().collect();
    [("amx_tile", "amx-tile"), ("amx_bf16", "amx-bf16"), ("amx_int8", "amx-int8")]
        .into_iter()
        .filter(|(flag, _)| flags.contains(flag))
        .map(|(_, name)| name.to_string())
        .collect()
}

pub(super) fn meminfo_total_bytes(meminfo: &str) -> Option<u64> {
    let mut fields = meminfo.lines().find_map(|line| line.strip_prefix("MemTotal:"))?.split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    // The kernel writes "kB" and means KiB.
    match fields.next() {
        Some("kB") | None => kib.checked_mul(1024),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_loaded_libmlx() {
        let text = "7f0000000000-7f0000001000 r--p 00000000 fd:01 1 /usr/lib/libc.so.6\n\
7f0000001000-7f0000002000 r-xp 00000000 fd:01 2 /opt/cuda-mlx/lib/libmlx.so\n\
7f0000002000-7f0000003000 r--p 00000000 fd:01 2 /opt/cuda-mlx/lib/libmlx.so\n";
        assert_eq!(mapped_library(text, "libmlx"), Some("/opt/cuda-mlx/lib/libmlx.so".to_string()));
        assert_eq!(mapped_library(text, "libcuda"), None);
    }

    const CPUINFO_X86: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n\
physical id\t: 0\ncore id\t\t: 0\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: 0\n\
core id\t\t: 0\n\nprocessor\t: 2\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: 0\ncore id\t\t: 1\n\n\
processor\t: 3\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nphysical id\t: 1\ncore id\t\t: 0\n";

    const CPUINFO_AARCH64: &str = "processor\t: 0\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd\nCPU part\t: 0xd4f\n\n\
processor\t: 1\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd\nCPU part\t: 0xd4f\n";

    #[test]
    fn cpuinfo_model_and_physical_cores() {
        assert_eq!(cpuinfo_model_name(CPUINFO_X86).as_deref(), Some("Intel(R) Xeon(R) Platinum 8480+"));
        // Two hyperthreads share core 0 of package 0; package 1 has its own core 0.
        assert_eq!(cpuinfo_physical_cores(CPUINFO_X86), Some(3));
        assert_eq!(cpuinfo_model_name(CPUINFO_AARCH64), None);
        assert_eq!(cpuinfo_physical_cores(CPUINFO_AARCH64), None);
        assert_eq!(cpuinfo_physical_cores(""), None);
    }

    #[test]
    fn amx_from_cpuinfo_flags() {
        let sapphire_rapids = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8 avx512_fp16\n";
        assert_eq!(cpuinfo_amx_features(sapphire_rapids), ["amx-tile", "amx-bf16", "amx-int8"]);
        assert!(cpuinfo_amx_features("processor\t: 0\nflags\t\t: fpu avx2 amx_tilex\n").is_empty());
        assert!(cpuinfo_amx_features(CPUINFO_AARCH64).is_empty());
    }

    #[test]
    fn meminfo_total() {
        let meminfo = "MemTotal:       131891804 kB\nMemFree:         1234 kB\n";
        assert_eq!(meminfo_total_bytes(meminfo), Some(131_891_804 * 1024));
        assert_eq!(meminfo_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(meminfo_total_bytes("MemTotal: lots kB\n"), None);
        assert_eq!(meminfo_total_bytes("MemTotal: 1 MB\n"), None);
    }
}
