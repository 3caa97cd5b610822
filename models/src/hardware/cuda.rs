//! NVIDIA GPUs through MLX's CUDA backend.
//!
//! MLX's device info gives the name, memory and compute capability. The SM count, which sizes
//! grids and split-K choices, is not among its keys, so it is read from the driver API directly:
//! `libcuda.so.1` is opened at run time, because binaries built against the CPU wheel must still
//! start on machines without a driver.

use mlx_bridge::device::DeviceInfo;
use serde::Serialize;

/// The CUDA device MLX runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CudaProfile {
    pub device_name: Option<String>,
    /// "major.minor", e.g. "9.0" for Hopper.
    pub compute_capability: String,
    pub compute_capability_major: u32,
    pub compute_capability_minor: u32,
    /// Streaming multiprocessors; `None` when `libcuda.so.1` could not be loaded or queried.
    pub sm_count: Option<u32>,
    pub memory_bytes: Option<u64>,
}

impl CudaProfile {
    /// Builds the profile from MLX's device info; `None` unless it reports a compute capability,
    /// which only the CUDA backend does.
    pub fn from_device_info(info: &DeviceInfo, sm_count: Option<u32>) -> Option<Self> {
        let (major, minor) = info.compute_capability?;
        Some(CudaProfile {
            device_name: info.name.clone(),
            compute_capability: format!("{major}.{minor}"),
            compute_capability_major: major,
            compute_capability_minor: minor,
            sm_count,
            memory_bytes: info.total_memory,
        })
    }
}

/// `CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT` in `cuda.h`.
const CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: i32 = 16;
const CUDA_SUCCESS: i32 = 0;

type CuInit = unsafe extern "C" fn(flags: u32) -> i32;
type CuDeviceGet = unsafe extern "C" fn(device: *mut i32, ordinal: i32) -> i32;
type CuDeviceGetAttribute = unsafe extern "C" fn(value: *mut i32, attribute: i32, device: i32) -> i32;

/// The SM count of CUDA device `ordinal`, from the driver API; `None` on any failure.
pub fn multiprocessor_count(ordinal: i32) -> Option<u32> {
    // SAFETY: libcuda's initialisers are safe to run (MLX's CUDA backend has usually loaded it
    // already, in which case this only takes another reference).
    let library = unsafe { libloading::Library::new("libcuda.so.1") }.ok()?;
    // SAFETY: the signatures match cuda.h (CUresult and CUdevice are C ints); the pointers handed
    // to the driver point at live locals.
    let count = unsafe {
        let init = library.get::<CuInit>(b"cuInit\0").ok()?;
        let device_get = library.get::<CuDeviceGet>(b"cuDeviceGet\0").ok()?;
        let attribute = library.get::<CuDeviceGetAttribute>(b"cuDeviceGetAttribute\0").ok()?;
        let mut device = 0;
        let mut count = 0;
        (init(0) == CUDA_SUCCESS
            && device_get(&mut device, ordinal) == CUDA_SUCCESS
            && attribute(&mut count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device) == CUDA_SUCCESS)
            .then_some(count)
    };
    // Once cuInit has run, the driver keeps state and exit handlers inside libcuda; unloading it
    // from under them can crash at exit. Keep it mapped for the life of the process.
    std::mem::forget(library);
    count.and_then(|n| u32::try_from(n).ok()).filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_mlx_device_info() {
        let info = DeviceInfo {
            name: Some("NVIDIA H100 80GB HBM3".to_string()),
            architecture: Some("sm_90".to_string()),
            total_memory: Some(85_017_755_648),
            free_memory: Some(84_000_000_000),
            compute_capability: Some((9, 0)),
            raw: Default::default(),
        };
        let cuda = CudaProfile::from_device_info(&info, Some(132)).unwrap();
        assert_eq!(cuda.compute_capability, "9.0");
        assert_eq!((cuda.compute_capability_major, cuda.compute_capability_minor), (9, 0));
        assert_eq!(cuda.sm_count, Some(132));
        assert_eq!(cuda.memory_bytes, Some(85_017_755_648));
        assert_eq!(cuda.device_name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
    }

    #[test]
    fn no_compute_capability_is_not_cuda() {
        let metal = DeviceInfo { architecture: Some("applegpu_g17s".to_string()), ..Default::default() };
        assert_eq!(CudaProfile::from_device_info(&metal, None), None);
    }

    #[test]
    fn missing_driver_is_none_not_a_panic() {
        // On machines without libcuda this is None; with one it is a positive count.
        assert_ne!(multiprocessor_count(0), Some(0));
        assert_eq!(multiprocessor_count(i32::MAX), None);
    }
}
