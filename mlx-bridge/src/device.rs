//! Devices, streams and what MLX reports about them.

use std::collections::HashMap;

use crate::error::{Result, mlx};
use crate::ffi::bridge as ffi;

pub use crate::ffi::bridge::{Device, DeviceKind, Stream};

impl Device {
    pub const fn cpu() -> Device {
        Device { kind: DeviceKind::Cpu, index: 0 }
    }

    pub const fn gpu() -> Device {
        Device { kind: DeviceKind::Gpu, index: 0 }
    }

    pub fn is_gpu(&self) -> bool {
        self.kind == DeviceKind::Gpu
    }
}

/// The device ops run on unless told otherwise (the GPU when MLX's build has one).
pub fn default_device() -> Device {
    ffi::default_device()
}

pub fn set_default_device(device: Device) -> Result<()> {
    mlx("set_default_device", ffi::set_default_device(&device))
}

pub fn is_available(device: Device) -> bool {
    ffi::device_available(&device)
}

/// How many devices of `kind` this MLX build can use (0 GPUs on the CPU build).
pub fn device_count(kind: DeviceKind) -> usize {
    ffi::device_count(kind).max(0) as usize
}

/// What MLX reports about a device. Keys vary by backend (see [`DeviceInfo::raw`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    pub name: Option<String>,
    /// e.g. `applegpu_g17s` on Apple GPUs, `sm_90` on CUDA.
    pub architecture: Option<String>,
    pub total_memory: Option<u64>,
    pub free_memory: Option<u64>,
    /// CUDA only.
    pub compute_capability: Option<(u32, u32)>,
    pub raw: HashMap<String, String>,
}

pub fn device_info(device: Device) -> Result<DeviceInfo> {
    let raw = crate::io::pairs(mlx("device_info", ffi::device_info(&device))?);
    let number = |key: &str| raw.get(key).and_then(|v| v.parse::<u64>().ok());
    let compute_capability = match (number("compute_capability_major"), number("compute_capability_minor")) {
        (Some(major), Some(minor)) => Some((major as u32, minor as u32)),
        _ => None,
    };
    Ok(DeviceInfo {
        name: raw.get("device_name").cloned(),
        architecture: raw.get("architecture").cloned(),
        total_memory: number("total_memory").or_else(|| number("memory_size")),
        free_memory: number("free_memory"),
        compute_capability,
        raw,
    })
}

pub fn default_stream(device: Device) -> Result<Stream> {
    mlx("default_stream", ffi::default_stream(&device))
}

pub fn new_stream(device: Device) -> Result<Stream> {
    mlx("new_stream", ffi::new_stream(&device))
}

pub fn set_default_stream(stream: Stream) -> Result<()> {
    mlx("set_default_stream", ffi::set_default_stream(&stream))
}

/// Waits for everything queued on `stream`.
pub fn synchronize_stream(stream: Stream) -> Result<()> {
    mlx("synchronize", ffi::synchronize(&stream))
}

/// Whether MLX can use the Apple GPU Neural Accelerator here (false off macOS).
pub fn metal_nax_available() -> bool {
    ffi::metal_nax_available()
}
