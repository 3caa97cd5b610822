//! MLX's fused `fast` kernels: normalisation, rotary embeddings and attention.
//!
//! On the CPU, MLX 0.32.4 has no fused kernels for these: it expands each call into its op-by-op
//! fallback. There mlxcel's own CPU kernels (`src/cpp/cpu_fast.cc`) compute the same result in one
//! graph node ([`set_cpu_kernels`] turns them off for A/B runs); attention over long chunks keeps
//! the fallback, whose matmuls go through the BLAS.

use crate::array::{Array, from_list, opt_ptr, wrap};
use crate::error::{Result, mlx};
use crate::ffi::bridge as ffi;

/// `x * rsqrt(mean(x^2) + eps) * weight` over the last axis; no weight scales by one.
pub fn rms_norm(x: &Array, weight: Option<&Array>, eps: f32) -> Result<Array> {
    // SAFETY: the pointer borrows `weight` for the duration of the call.
    wrap("rms_norm", unsafe { ffi::rms_norm(&x.inner, opt_ptr(weight), eps) })
}

pub fn layer_norm(x: &Array, weight: Option<&Array>, bias: Option<&Array>, eps: f32) -> Result<Array> {
    // SAFETY: the pointers borrow `weight`/`bias` for the duration of the call.
    wrap("layer_norm", unsafe { ffi::layer_norm(&x.inner, opt_ptr(weight), opt_ptr(bias), eps) })
}

/// Rotary position embedding over the first `dims` features of the last axis of `[.., L, D]` input.
///
/// `traditional` rotates adjacent pairs; otherwise the two halves (the "split-half" form used by
/// Llama/Gemma checkpoints). Frequencies are `base^(-2i/dims)` unless `freqs` gives them
/// explicitly (then `base` is ignored); positions are `offset + l` scaled by `scale`.
#[derive(Debug, Clone)]
pub struct Rope {
    pub dims: i32,
    pub traditional: bool,
    pub base: f32,
    pub scale: f32,
    pub freqs: Option<Array>,
}

impl Rope {
    pub fn new(dims: i32, base: f32) -> Self {
        Rope { dims, traditional: false, base, scale: 1.0, freqs: None }
    }

    pub fn apply(&self, x: &Array, offset: i32) -> Result<Array> {
        // SAFETY: the pointer borrows `self.freqs` for the duration of the call.
        wrap("rope", unsafe {
            ffi::rope(
                &x.inner,
                self.dims,
                self.traditional,
                self.base,
                self.scale,
                offset,
                opt_ptr(self.freqs.as_ref()),
            )
        })
    }

    /// With the position offset read from a scalar (or per-batch) int array at evaluation time.
    pub fn apply_dynamic(&self, x: &Array, offset: &Array) -> Result<Array> {
        // SAFETY: the pointer borrows `self.freqs` for the duration of the call.
        wrap("rope", unsafe {
            ffi::rope_dynamic(
                &x.inner,
                self.dims,
                self.traditional,
                self.base,
                self.scale,
                &offset.inner,
                opt_ptr(self.freqs.as_ref()),
            )
        })
    }

    /// `self.apply(&rms_norm(x, norm), offset)` in one kernel for `x` `[B, H, 1, D]` (one
    /// position per row, all `D` features rotated, split-half): `None` where mlxcel has no
    /// kernel for the call (as for [`rms_norm_add`]), and the caller runs the two ops.
    pub fn apply_after_rms_norm(
        &self,
        x: &Array,
        norm: NormWeight<'_>,
        offset: RopeOffset<'_>,
    ) -> Result<Option<Array>> {
        let (shared, per_row) = match offset {
            RopeOffset::Shared(offset) => (offset, None),
            RopeOffset::PerRow(offsets) => (0, Some(offsets)),
        };
        // SAFETY: the pointers borrow `offset`'s array and `self.freqs` for the duration of the call.
        let list = mlx("rms_norm_rope", unsafe {
            ffi::rms_norm_rope(
                &x.inner,
                &norm.weight.inner,
                norm.eps,
                self.dims,
                self.traditional,
                self.base,
                self.scale,
                shared,
                opt_ptr(per_row),
                opt_ptr(self.freqs.as_ref()),
            )
        })?;
        Ok(from_list("rms_norm_rope", &list)?.pop())
    }
}

/// Where a step's rows sit: one offset for every row, or int32 `[B]`, one per row.
#[derive(Debug, Clone, Copy)]
pub enum RopeOffset<'a> {
    Shared(i32),
    PerRow(&'a Array),
}

/// Which keys each query may attend to.
#[derive(Debug, Clone, Copy)]
pub enum AttentionMask<'a> {
    None,
    /// Query `i` of `L` sees keys `0..=S-L+i` (queries are the last `L` of `S` positions).
    Causal,
    /// A boolean mask (true = attend) or an additive float mask, broadcastable to `[B, H, L, S]`.
    Array(&'a Array),
}

/// `softmax(scale * Q K^T + mask) V` for `q: [B, Hq, L, D]`, `k, v: [B, Hkv, S, D]`; grouped-query
/// attention when `Hq` is a multiple of `Hkv`.
pub fn scaled_dot_product_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: AttentionMask<'_>,
) -> Result<Array> {
    let (mode, array) = match mask {
        AttentionMask::None => ("", None),
        AttentionMask::Causal => ("causal", None),
        AttentionMask::Array(a) => ("array", Some(a)),
    };
    // SAFETY: the pointer borrows the mask for the duration of the call.
    wrap("scaled_dot_product_attention", unsafe {
        ffi::scaled_dot_product_attention(&q.inner, &k.inner, &v.inner, scale, mode, opt_ptr(array))
    })
}

/// The router's inputs to a routed stream mix:
/// `route(x) = tanh(router @ (rms_norm(x, norm_weight, eps) / divisor))` (`router` `[N, D]` dense,
/// of the streams' dtype; the division rounds as MLX's op does, and a divisor of 1 is none).
#[derive(Debug, Clone, Copy)]
pub struct StreamRouter<'a> {
    pub norm_weight: &'a Array,
    pub eps: f32,
    pub divisor: f32,
    pub router: &'a Array,
}

/// `y[i] = x[i] + sum_j M[i][j] x[j]` over `N` streams `x` `[N, .., D]`, where
/// `M = reshape(coefs @ route(x[active]), N x N)` and `coefs` is `[N*N, N]` float32, in one
/// kernel: `None` where mlxcel has none for the call (anything but its CUDA kernels, or
/// arguments they do not take), and the caller runs the ops instead.
pub fn routed_stream_mix(
    streams: &Array,
    route: StreamRouter<'_>,
    coefs: &Array,
    active: usize,
) -> Result<Option<Array>> {
    let list = mlx(
        "routed_stream_mix",
        ffi::routed_stream_mix(
            &streams.inner,
            &route.norm_weight.inner,
            route.eps,
            route.divisor,
            &route.router.inner,
            &coefs.inner,
            active as i32,
        ),
    )?;
    Ok(from_list("routed_stream_mix", &list)?.pop())
}

/// `y[i] = p[i] + (1 + coefs @ route(h))[i] * (h - p[active])` over `N` streams `p` `[N, .., D]`
/// and one stream `h` `[.., D]`, with `coefs` `[N, N]` float32, in one kernel; `None` as for
/// [`routed_stream_mix`].
pub fn routed_stream_correction(
    predictions: &Array,
    activated: &Array,
    route: StreamRouter<'_>,
    coefs: &Array,
    active: usize,
) -> Result<Option<Array>> {
    let list = mlx(
        "routed_stream_correction",
        ffi::routed_stream_correction(
            &predictions.inner,
            &activated.inner,
            &route.norm_weight.inner,
            route.eps,
            route.divisor,
            &route.router.inner,
            &coefs.inner,
            active as i32,
        ),
    )?;
    Ok(from_list("routed_stream_correction", &list)?.pop())
}

/// A weighted RMS norm's parameters: `x / sqrt(mean(x^2) + eps) * weight`.
#[derive(Debug, Clone, Copy)]
pub struct NormWeight<'a> {
    pub weight: &'a Array,
    pub eps: f32,
}

/// `residual + rms_norm(x)` in one kernel, rounded as the two ops round it: `None` where mlxcel
/// has no kernel for the call (as for [`routed_stream_mix`]).
pub fn rms_norm_add(x: &Array, norm: NormWeight<'_>, residual: &Array) -> Result<Option<Array>> {
    let list = mlx("rms_norm_add", ffi::rms_norm_add(&x.inner, &norm.weight.inner, norm.eps, &residual.inner))?;
    Ok(from_list("rms_norm_add", &list)?.pop())
}

/// `h = ((residual + rms_norm(x)) + extra) * scale` and `next(h)`, the norm of the sum, in one
/// kernel; `scale` rounds to `x`'s dtype as a scalar of it does. `None` as for [`rms_norm_add`].
pub fn rms_norm_add_then_norm(
    x: &Array,
    norm: NormWeight<'_>,
    residual: &Array,
    extra: &Array,
    scale: f32,
    next: NormWeight<'_>,
) -> Result<Option<(Array, Array)>> {
    let list = mlx(
        "rms_norm_add_then_norm",
        ffi::rms_norm_add_then_norm(
            &x.inner,
            &norm.weight.inner,
            norm.eps,
            &residual.inner,
            &extra.inner,
            scale,
            &next.weight.inner,
            next.eps,
        ),
    )?;
    let mut out = from_list("rms_norm_add_then_norm", &list)?.into_iter();
    Ok(match (out.next(), out.next()) {
        (Some(h), Some(normed)) => Some((h, normed)),
        _ => None,
    })
}

/// Whether rms_norm, rope and (decode-sized) attention on the CPU run mlxcel's kernels (the
/// default) or MLX's op-by-op fallbacks. Process-wide; other devices are unaffected.
pub fn set_cpu_kernels(enabled: bool) {
    ffi::set_cpu_kernels(enabled)
}

pub fn cpu_kernels() -> bool {
    ffi::cpu_kernels()
}

/// Whether single-position attention and one-row affine 4/8-bit matmuls on an NVIDIA GPU run
/// mlxcel's kernels (`src/cpp/cuda_fast.cc`, compiled by NVRTC when first used) or MLX's own ops.
/// Off by default; process-wide; other devices are unaffected.
pub fn set_cuda_kernels(enabled: bool) {
    if enabled {
        // Their code goes into files under the cache root, which NVRTC includes by absolute
        // path; a root that is not UTF-8 leaves the code inline in each kernel's source.
        if let Some(dir) = crate::cache_root().join("cuda-kernels").to_str() {
            ffi::set_cuda_kernel_code_dir(dir);
        }
    }
    ffi::set_cuda_kernels(enabled)
}

/// The prefetching variant of mlxcel's one-row affine products on an NVIDIA GPU: `rows` of the
/// weight per warp (2, 4 or 8; it loads a warp's next rows while it works on the current ones),
/// also asking L2 for the rows `l2_ahead` turns on (0: not); `rows` 0 is the default kernel, the
/// one the A/B measured fastest. For A/B runs (`cuda_kernels`); any other `rows` means 0.
/// Process-wide.
pub fn set_cuda_gemv_prefetch(rows: i32, l2_ahead: i32) {
    ffi::set_cuda_gemv_prefetch(rows, l2_ahead)
}

pub fn cuda_kernels() -> bool {
    ffi::cuda_kernels()
}
