//! What machine this is, and how to run on it.
//!
//! [`detect`] builds a [`HardwareProfile`] from MLX and the OS; [`ExecutionPlan::for_profile`]
//! turns it into the code-path choices the model runners follow, each with the reason it was made
//! and where it came from (a hardware-class default, an environment override, the command line).

pub mod apple;
pub mod cpu;
pub mod cuda;
pub mod overrides;
pub mod plan;
mod procfs;
#[cfg(target_os = "macos")]
mod sysctl;

use mlx_bridge::device::{self, DeviceInfo};
use mlx_bridge::{Device, DeviceKind};
use serde::Serialize;

pub use apple::AppleProfile;
pub use cpu::{BlasLibrary, BlasProfile, CpuProfile};
pub use cuda::CudaProfile;
pub use overrides::{
    InvalidValue, OverrideOrigin, Overrides, PlanError, parse_activation_precision, parse_compute_dtype,
    parse_prefill_chunk, parse_switch, parse_threads,
};
pub use plan::{ActivationPrecision, DecodePath, ExecutionPlan, HardwareClass, PlanSetting, Provenance, SettingSource};

/// Why hardware detection failed. Facts that are merely unavailable (no `/proc`, no libcuda) are
/// reported as `None` in the profile instead.
#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    #[error("MLX reports {count} GPU(s) but could not describe GPU 0")]
    GpuInfo {
        count: usize,
        #[source]
        source: mlx_bridge::Error,
    },
    #[cfg(target_os = "macos")]
    #[error("sysctl {name} failed")]
    Sysctl {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Which MLX backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything the execution plan is derived from, as detected in this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HardwareProfile {
    pub backend: Backend,
    /// The device the backend runs on: the GPU's name, or the CPU model on the CPU backend.
    pub device_name: String,
    /// Memory of that device: GPU memory on CUDA, unified memory on Apple, RAM on the CPU backend.
    pub memory_bytes: Option<u64>,
    /// The MLX loaded at run time (which can differ from the pinned one via `LD_LIBRARY_PATH`).
    pub mlx_version: String,
    /// The MLX wheel the build linked against (`mlx-cpu`, `mlx-cuda-13`, `mlx-metal`).
    pub mlx_package: String,
    /// Where the loaded `libmlx` lives (Linux only: read from `/proc/self/maps`).
    pub mlx_library: Option<String>,
    /// The BLAS the build linked ahead of libmlx (`openblas` or `mlx-bundled`); `cpu.blas` says
    /// which one the process actually uses.
    pub blas_linked: String,
    pub cpu: CpuProfile,
    pub apple: Option<AppleProfile>,
    pub cuda: Option<CudaProfile>,
}

/// Detects the hardware this process runs on, through MLX and the OS.
pub fn detect() -> Result<HardwareProfile, HardwareError> {
    let build = mlx_bridge::build_info();
    let cpu = cpu::detect();

    let gpu_count = device::device_count(DeviceKind::Gpu);
    let gpu_info = match gpu_count {
        0 => None,
        count => Some(device::device_info(Device::gpu()).map_err(|source| HardwareError::GpuInfo { count, source })?),
    };
    let cuda = gpu_info
        .as_ref()
        .filter(|info| info.compute_capability.is_some())
        .and_then(|info| CudaProfile::from_device_info(info, cuda::multiprocessor_count(0)));
    let apple = detect_apple(gpu_info.as_ref())?;

    let (backend, device_name, memory_bytes) = match (&cuda, &gpu_info, &apple) {
        (Some(cuda), _, _) => {
            let name = cuda.device_name.clone().unwrap_or_else(|| "CUDA device 0".to_string());
            (Backend::Cuda, name, cuda.memory_bytes)
        }
        (None, Some(info), Some(apple)) => {
            (Backend::Metal, apple.chip.clone(), info.total_memory.or_else(cpu::total_memory_bytes))
        }
        _ => {
            let name = cpu.model.clone().unwrap_or_else(|| format!("{} CPU", cpu.arch));
            (Backend::Cpu, name, cpu::total_memory_bytes())
        }
    };

    Ok(HardwareProfile {
        backend,
        device_name,
        memory_bytes,
        mlx_version: mlx_bridge::mlx_version(),
        mlx_package: build.mlx_package.to_string(),
        mlx_library: loaded_libmlx(),
        blas_linked: build.blas.to_string(),
        cpu,
        apple,
        cuda,
    })
}

#[cfg(target_os = "macos")]
fn detect_apple(gpu_info: Option<&DeviceInfo>) -> Result<Option<AppleProfile>, HardwareError> {
    apple::detect(gpu_info).map(Some)
}

#[cfg(not(target_os = "macos"))]
fn detect_apple(_gpu_info: Option<&DeviceInfo>) -> Result<Option<AppleProfile>, HardwareError> {
    Ok(None)
}

fn loaded_libmlx() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    procfs::mapped_library(&maps, "libmlx")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_on_this_machine() {
        let profile = detect().expect("detection succeeds");
        assert!(profile.mlx_version.starts_with("0."), "{}", profile.mlx_version);
        assert!(profile.cpu.cores >= 1);
        assert!(!profile.device_name.is_empty());
        match profile.backend {
            Backend::Cuda => assert!(profile.cuda.is_some()),
            Backend::Metal => assert!(profile.apple.is_some()),
            Backend::Cpu => assert!(profile.cuda.is_none()),
        }
        #[cfg(not(target_os = "macos"))]
        assert!(profile.apple.is_none());
        #[cfg(target_os = "linux")]
        assert!(profile.memory_bytes.is_some_and(|bytes| bytes > 0));
    }

    #[test]
    fn profile_json_field_names() {
        let profile = detect().expect("detection succeeds");
        let json = serde_json::to_value(&profile).unwrap();
        for field in [
            "backend",
            "device_name",
            "memory_bytes",
            "mlx_version",
            "mlx_package",
            "blas_linked",
            "cpu",
            "apple",
            "cuda",
        ] {
            assert!(json.get(field).is_some(), "missing {field} in {json}");
        }
        for field in ["cores", "physical_cores", "arch", "features", "blas"] {
            assert!(json["cpu"].get(field).is_some(), "missing cpu.{field} in {json}");
        }
        assert_eq!(json["backend"], profile.backend.name());
    }
}
