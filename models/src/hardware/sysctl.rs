//! `sysctlbyname(3)` on macOS, declared here rather than pulling in the `libc` crate for one call.
//! libSystem, which defines it, is linked into every macOS binary.

use std::ffi::{CString, c_char, c_int, c_void};
use std::io;

use super::HardwareError;

unsafe extern "C" {
    fn sysctlbyname(
        name: *const c_char,
        oldp: *mut c_void,
        oldlenp: *mut usize,
        newp: *mut c_void,
        newlen: usize,
    ) -> c_int;
}

/// The raw bytes of a sysctl value: one call for the size, one for the data.
fn bytes(name: &str) -> Result<Vec<u8>, HardwareError> {
    let failed = |source: io::Error| HardwareError::Sysctl { name: name.to_string(), source };
    let c_name = CString::new(name).map_err(|e| failed(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let mut len = 0usize;
    // SAFETY: a null `oldp` asks only for the size, written to `len`; nothing is set (`newp` null).
    if unsafe { sysctlbyname(c_name.as_ptr(), std::ptr::null_mut(), &mut len, std::ptr::null_mut(), 0) } != 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    let mut buffer = vec![0u8; len];
    // SAFETY: `buffer` holds `len` writable bytes and the kernel writes at most `len`, updating it.
    let status =
        unsafe { sysctlbyname(c_name.as_ptr(), buffer.as_mut_ptr().cast(), &mut len, std::ptr::null_mut(), 0) };
    if status != 0 {
        return Err(failed(io::Error::last_os_error()));
    }
    buffer.truncate(len);
    Ok(buffer)
}

/// A string sysctl such as `machdep.cpu.brand_string`, without its trailing NUL.
pub(super) fn string(name: &str) -> Result<String, HardwareError> {
    let mut value = bytes(name)?;
    if let Some(nul) = value.iter().position(|&b| b == 0) {
        value.truncate(nul);
    }
    Ok(String::from_utf8_lossy(&value).trim().to_string())
}

/// An integer sysctl: `hw.memsize` is 64-bit, `hw.physicalcpu` 32-bit.
pub(super) fn integer(name: &str) -> Result<u64, HardwareError> {
    let value = bytes(name)?;
    if let Ok(raw) = <[u8; 8]>::try_from(value.as_slice()) {
        return Ok(u64::from_ne_bytes(raw));
    }
    if let Ok(raw) = <[u8; 4]>::try_from(value.as_slice()) {
        return Ok(u32::from_ne_bytes(raw).into());
    }
    let message = format!("expected a 4- or 8-byte integer, got {} bytes", value.len());
    Err(HardwareError::Sysctl { name: name.to_string(), source: io::Error::new(io::ErrorKind::InvalidData, message) })
}
