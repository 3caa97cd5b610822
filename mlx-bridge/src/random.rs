//! Counter-based random numbers. Pass a key for reproducible streams; `None` draws from MLX's
//! global generator (seeded with [`seed`]).

use crate::array::{Array, Dtype, opt_ptr, wrap};
use crate::error::Result;
use crate::ffi::bridge as ffi;

pub fn key(seed: u64) -> Result<Array> {
    wrap("random_key", ffi::random_key(seed))
}

/// Seeds MLX's global generator.
pub fn seed(seed: u64) {
    ffi::random_seed(seed)
}

/// `num` independent keys derived from `key`, as a `[num, 2]` array.
pub fn split(key: &Array, num: i32) -> Result<Array> {
    wrap("random_split", ffi::random_split(&key.inner, num))
}

pub fn uniform(low: f64, high: f64, shape: &[i32], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    // SAFETY: the pointer borrows `key` for the duration of the call.
    wrap("random_uniform", unsafe { ffi::random_uniform(low, high, shape, dtype, opt_ptr(key)) })
}

pub fn normal(shape: &[i32], dtype: Dtype, loc: f32, scale: f32, key: Option<&Array>) -> Result<Array> {
    // SAFETY: the pointer borrows `key` for the duration of the call.
    wrap("random_normal", unsafe { ffi::random_normal(shape, dtype, loc, scale, opt_ptr(key)) })
}

/// Integers in `[low, high)`.
pub fn randint(low: i64, high: i64, shape: &[i32], dtype: Dtype, key: Option<&Array>) -> Result<Array> {
    // SAFETY: the pointer borrows `key` for the duration of the call.
    wrap("random_randint", unsafe { ffi::random_randint(low, high, shape, dtype, opt_ptr(key)) })
}

/// One draw per row from the distribution `softmax(logits)` along `axis` (logits unnormalised).
pub fn categorical(logits: &Array, axis: i32, key: Option<&Array>) -> Result<Array> {
    // SAFETY: the pointer borrows `key` for the duration of the call.
    wrap("random_categorical", unsafe { ffi::random_categorical(&logits.inner, axis, opt_ptr(key)) })
}
