//! The host CPU: cores, SIMD/matrix features, memory, and which BLAS this process actually loaded.
//!
//! The BLAS matters more than anything else on the CPU class: MLX's CPU matmuls go through it, and
//! the reference BLAS bundled in the mlx-cpu wheel is far slower than OpenBLAS in fp32. Which one
//! wins is decided by the dynamic linker, so it is read back from the process's own mappings rather
//! than inferred from the build.

use serde::Serialize;

use super::procfs::{file_name, mapped_paths};

/// What the CPU side of this machine offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuProfile {
    /// The model name (`/proc/cpuinfo` "model name", `machdep.cpu.brand_string` on macOS), when known.
    pub model: Option<String>,
    /// `std::env::consts::ARCH`: "x86_64", "aarch64", ...
    pub arch: String,
    /// Logical CPUs this process may use (`available_parallelism`: honours affinity and cgroup quotas).
    pub cores: usize,
    /// Physical cores of the whole machine, when cheaply known (Linux x86 `/proc/cpuinfo`, macOS
    /// `hw.physicalcpu`). Not limited by affinity, so it can exceed `cores` in a container.
    pub physical_cores: Option<usize>,
    /// SIMD and matrix extensions detected at run time, among those relevant to matmul kernels.
    pub features: Vec<String>,
    /// The BLAS library loaded in this process.
    pub blas: BlasProfile,
}

/// Which BLAS MLX's CPU matmuls will reach in this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlasProfile {
    pub library: BlasLibrary,
    /// The mapped shared object, when one was found.
    pub path: Option<String>,
}

/// Serialized as [`BlasLibrary::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlasLibrary {
    OpenBlas,
    /// The netlib reference BLAS that the mlx-cpu wheel bundles (auditwheel renames it
    /// `libblas-<hash>.so`): correct, unvectorised, and the one to avoid.
    BundledReference,
    /// Apple's, which MLX always links on macOS.
    Accelerate,
    Unknown,
}

impl BlasLibrary {
    pub fn name(self) -> &'static str {
        match self {
            BlasLibrary::OpenBlas => "openblas",
            BlasLibrary::BundledReference => "reference (netlib, bundled with mlx-cpu)",
            BlasLibrary::Accelerate => "accelerate",
            BlasLibrary::Unknown => "unknown",
        }
    }
}

impl Serialize for BlasLibrary {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for BlasLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads everything cheap about the CPU. Infallible: a fact that cannot be read is `None`.
pub(super) fn detect() -> CpuProfile {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let os = os_cpu_facts();
    let mut features = runtime_features();
    features.extend(os.features);
    CpuProfile {
        model: os.model,
        arch: std::env::consts::ARCH.to_string(),
        cores,
        physical_cores: os.physical_cores,
        features,
        blas: loaded_blas(),
    }
}

/// What the OS says about the CPU beyond what `std` can probe.
#[derive(Default)]
struct OsCpuFacts {
    model: Option<String>,
    physical_cores: Option<usize>,
    /// Features `std` cannot detect on stable Rust (AMX), read from the kernel instead.
    features: Vec<String>,
}

#[cfg(target_os = "linux")]
fn os_cpu_facts() -> OsCpuFacts {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else { return OsCpuFacts::default() };
    OsCpuFacts {
        model: super::procfs::cpuinfo_model_name(&cpuinfo),
        physical_cores: super::procfs::cpuinfo_physical_cores(&cpuinfo),
        features: super::procfs::cpuinfo_amx_features(&cpuinfo),
    }
}

#[cfg(target_os = "macos")]
fn os_cpu_facts() -> OsCpuFacts {
    OsCpuFacts {
        model: super::sysctl::string("machdep.cpu.brand_string").ok(),
        physical_cores: super::sysctl::integer("hw.physicalcpu").ok().and_then(|n| usize::try_from(n).ok()),
        features: Vec::new(),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn os_cpu_facts() -> OsCpuFacts {
    OsCpuFacts::default()
}

/// Total RAM: `MemTotal` from `/proc/meminfo` on Linux, `hw.memsize` on macOS.
#[cfg(target_os = "linux")]
pub(super) fn total_memory_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| super::procfs::meminfo_total_bytes(&text))
}

#[cfg(target_os = "macos")]
pub(super) fn total_memory_bytes() -> Option<u64> {
    super::sysctl::integer("hw.memsize").ok()
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(super) fn total_memory_bytes() -> Option<u64> {
    None
}

/// The BLAS mapped into this process (see [`classify_blas`]); Accelerate on macOS, where MLX
/// always links it.
fn loaded_blas() -> BlasProfile {
    if cfg!(target_os = "macos") {
        return BlasProfile { library: BlasLibrary::Accelerate, path: None };
    }
    match std::fs::read_to_string("/proc/self/maps") {
        Ok(maps) => classify_blas(&maps),
        Err(_) => BlasProfile { library: BlasLibrary::Unknown, path: None },
    }
}

/// Decides which BLAS a process is using from its `/proc/self/maps`.
///
/// With the `openblas` feature both OpenBLAS and the wheel's reference BLAS are mapped: OpenBLAS
/// is linked ahead of libmlx, so the dynamic linker resolves libmlx's BLAS calls to it, and it wins
/// here too. (A libopenblas dlopen'ed later would not take over, but nothing in mlxcel does that.)
/// A `libblas.so` from an `openblas` directory is Debian's alternatives link to OpenBLAS.
pub fn classify_blas(maps: &str) -> BlasProfile {
    let found = |library, path: &str| BlasProfile { library, path: Some(path.to_string()) };
    let paths: Vec<&str> = mapped_paths(maps).collect();
    let openblas = paths.iter().find(|path| {
        let name = file_name(path);
        name.starts_with("libopenblas") || (name.starts_with("libblas") && path.contains("openblas"))
    });
    if let Some(path) = openblas {
        return found(BlasLibrary::OpenBlas, path);
    }
    if let Some(path) = paths.iter().find(|path| file_name(path).starts_with("libblas-")) {
        return found(BlasLibrary::BundledReference, path);
    }
    BlasProfile { library: BlasLibrary::Unknown, path: None }
}

/// Features that decide which matmul kernels are fast here. Names follow `/proc/cpuinfo` where the
/// Rust name differs (`avx512_vnni`, not `avx512vnni`).
#[cfg(target_arch = "x86_64")]
fn runtime_features() -> Vec<String> {
    let mut found = Vec::new();
    macro_rules! probe {
        ($($name:literal => $feature:tt),* $(,)?) => {
            $(if std::arch::is_x86_feature_detected!($feature) { found.push($name.to_string()); })*
        };
    }
    probe!(
        "avx" => "avx",
        "avx2" => "avx2",
        "fma" => "fma",
        "f16c" => "f16c",
        "avx_vnni" => "avxvnni",
        "avx512f" => "avx512f",
        "avx512bw" => "avx512bw",
        "avx512_vnni" => "avx512vnni",
        "avx512bf16" => "avx512bf16",
        "avx512fp16" => "avx512fp16",
    );
    found
}

#[cfg(target_arch = "aarch64")]
fn runtime_features() -> Vec<String> {
    let mut found = Vec::new();
    macro_rules! probe {
        ($($name:literal => $feature:tt),* $(,)?) => {
            $(if std::arch::is_aarch64_feature_detected!($feature) { found.push($name.to_string()); })*
        };
    }
    probe!(
        "neon" => "neon",
        "fp16" => "fp16",
        "dotprod" => "dotprod",
        "i8mm" => "i8mm",
        "bf16" => "bf16",
        "sve" => "sve",
        "sve2" => "sve2",
    );
    found
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn runtime_features() -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHEEL_BLAS: &str = "/root/.cache/mlxcel/mlx/mlx-cpu-0.32.4/mlx_cpu.libs/libblas-bd8a282c.so.3.10.0";
    const OPENBLAS: &str = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so";

    fn maps(paths: &[&str]) -> String {
        let mut text = String::from("55d0c0a00000-55d0c0a21000 r--p 00000000 00:00 0          [heap]\n");
        for path in paths {
            for perms in ["r--p", "r-xp"] {
                text.push_str(&format!("7f0000000000-7f0000001000 {perms} 00000000 fd:01 1234 {path}\n"));
            }
        }
        text.push_str("7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                  [stack]\n");
        text
    }

    #[test]
    fn openblas_wins_over_the_bundled_reference_blas() {
        let blas = classify_blas(&maps(&["/root/.cache/mlxcel/mlx/lib/libmlx.so", WHEEL_BLAS, OPENBLAS]));
        assert_eq!(blas, BlasProfile { library: BlasLibrary::OpenBlas, path: Some(OPENBLAS.to_string()) });
    }

    #[test]
    fn debian_alternatives_libblas_under_openblas_is_openblas() {
        let path = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3";
        assert_eq!(classify_blas(&maps(&[path])).library, BlasLibrary::OpenBlas);
    }

    #[test]
    fn bundled_reference_blas_alone() {
        let blas = classify_blas(&maps(&["/opt/mlx/lib/libmlx.so", WHEEL_BLAS]));
        assert_eq!(blas, BlasProfile { library: BlasLibrary::BundledReference, path: Some(WHEEL_BLAS.to_string()) });
    }

    #[test]
    fn no_blas_mapped_is_unknown() {
        let blas = classify_blas(&maps(&["/usr/lib/x86_64-linux-gnu/libc.so.6"]));
        assert_eq!(blas, BlasProfile { library: BlasLibrary::Unknown, path: None });
        assert_eq!(classify_blas("").library, BlasLibrary::Unknown);
    }

    #[test]
    fn blas_library_serializes_as_its_name() {
        for library in
            [BlasLibrary::OpenBlas, BlasLibrary::BundledReference, BlasLibrary::Accelerate, BlasLibrary::Unknown]
        {
            assert_eq!(serde_json::to_value(library).unwrap(), library.name());
        }
    }

    #[test]
    fn detect_reports_this_machine() {
        let cpu = detect();
        assert!(cpu.cores >= 1);
        assert_eq!(cpu.arch, std::env::consts::ARCH);
        #[cfg(target_arch = "aarch64")]
        assert!(cpu.features.iter().any(|f| f == "neon"));
    }
}
