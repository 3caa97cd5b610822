//! MLX's allocator statistics and limits, in bytes.

use crate::error::{Result, mlx};
use crate::ffi::bridge as ffi;

/// A snapshot of the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held by live arrays.
    pub active: usize,
    /// The high-water mark of `active` since start or the last [`reset_peak`].
    pub peak: usize,
    /// Freed buffers kept for reuse.
    pub cache: usize,
    /// The limit past which MLX waits for memory to be freed before allocating.
    pub limit: usize,
}

pub fn stats() -> MemoryStats {
    MemoryStats {
        active: ffi::get_active_memory(),
        peak: ffi::get_peak_memory(),
        cache: ffi::get_cache_memory(),
        limit: ffi::get_memory_limit(),
    }
}

pub fn active() -> usize {
    ffi::get_active_memory()
}

pub fn peak() -> usize {
    ffi::get_peak_memory()
}

pub fn cache() -> usize {
    ffi::get_cache_memory()
}

pub fn reset_peak() {
    ffi::reset_peak_memory()
}

/// Sets the memory limit and returns the previous one.
pub fn set_limit(bytes: usize) -> usize {
    ffi::set_memory_limit(bytes)
}

/// Sets the buffer cache limit and returns the previous one.
pub fn set_cache_limit(bytes: usize) -> usize {
    ffi::set_cache_limit(bytes)
}

/// Sets the wired (resident) limit on Apple GPUs; an error elsewhere or beyond the OS maximum.
pub fn set_wired_limit(bytes: usize) -> Result<usize> {
    mlx("set_wired_limit", ffi::set_wired_limit(bytes))
}

/// Returns cached buffers to the system.
pub fn clear_cache() {
    ffi::clear_cache()
}
