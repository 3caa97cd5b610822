//! MLX quantization: weights packed along their last axis in groups, each group with a scale
//! (and, in affine mode, a bias): `w ≈ scale * q + bias`.

use crate::array::{Array, from_list, opt_ptr, wrap};
use crate::error::{Error, Result, mlx};
use crate::ffi::bridge as ffi;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantMode {
    /// Per-group scale and bias; what `mlx_lm.convert -q` writes.
    Affine,
    Mxfp4,
    Mxfp8,
    Nvfp4,
}

impl QuantMode {
    pub fn as_str(self) -> &'static str {
        match self {
            QuantMode::Affine => "affine",
            QuantMode::Mxfp4 => "mxfp4",
            QuantMode::Mxfp8 => "mxfp8",
            QuantMode::Nvfp4 => "nvfp4",
        }
    }

    pub fn parse(name: &str) -> Option<QuantMode> {
        Some(match name {
            "affine" => QuantMode::Affine,
            "mxfp4" => QuantMode::Mxfp4,
            "mxfp8" => QuantMode::Mxfp8,
            "nvfp4" => QuantMode::Nvfp4,
            _ => return None,
        })
    }
}

/// How a matrix is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuantSpec {
    pub group_size: i32,
    pub bits: i32,
    pub mode: QuantMode,
}

impl QuantSpec {
    pub const AFFINE_BITS: [i32; 6] = [2, 3, 4, 5, 6, 8];
    pub const AFFINE_GROUPS: [i32; 3] = [32, 64, 128];

    /// An affine spec, checked against what MLX's kernels support.
    pub fn affine(group_size: i32, bits: i32) -> Result<Self> {
        if !Self::AFFINE_BITS.contains(&bits) {
            return Err(Error::invalid(
                "quantize",
                format!("affine quantization supports bits {:?}, not {bits}", Self::AFFINE_BITS),
            ));
        }
        if !Self::AFFINE_GROUPS.contains(&group_size) {
            return Err(Error::invalid(
                "quantize",
                format!("affine quantization supports group sizes {:?}, not {group_size}", Self::AFFINE_GROUPS),
            ));
        }
        Ok(QuantSpec { group_size, bits, mode: QuantMode::Affine })
    }
}

/// A quantized matrix: packed `uint32` weight, per-group scales and (affine) biases.
#[derive(Debug, Clone)]
pub struct Quantized {
    pub weight: Array,
    pub scales: Array,
    pub biases: Option<Array>,
    pub spec: QuantSpec,
}

/// Quantizes `w` (`[.., out, in]`, `in` divisible by the group size) along its last axis.
pub fn quantize(w: &Array, spec: QuantSpec) -> Result<Quantized> {
    let list = mlx("quantize", ffi::quantize(&w.inner, spec.group_size, spec.bits, spec.mode.as_str()))?;
    let mut parts = from_list("quantize", &list)?.into_iter();
    let (Some(weight), Some(scales)) = (parts.next(), parts.next()) else {
        return Err(Error::invalid("quantize", "MLX returned fewer than two arrays"));
    };
    Ok(Quantized { weight, scales, biases: parts.next(), spec })
}

impl Quantized {
    /// Unpacks to a dense matrix in the scales' dtype.
    pub fn dequantize(&self) -> Result<Array> {
        // SAFETY: the pointer borrows `self.biases` for the duration of the call.
        wrap("dequantize", unsafe {
            ffi::dequantize(
                &self.weight.inner,
                &self.scales.inner,
                opt_ptr(self.biases.as_ref()),
                self.spec.group_size,
                self.spec.bits,
                self.spec.mode.as_str(),
            )
        })
    }

    /// `x @ W^T` (`transpose = true`, a Linear layer) or `x @ W` without unpacking W.
    pub fn matmul(&self, x: &Array, transpose: bool) -> Result<Array> {
        // SAFETY: the pointer borrows `self.biases` for the duration of the call.
        wrap("quantized_matmul", unsafe {
            ffi::quantized_matmul(
                &x.inner,
                &self.weight.inner,
                &self.scales.inner,
                opt_ptr(self.biases.as_ref()),
                transpose,
                self.spec.group_size,
                self.spec.bits,
                self.spec.mode.as_str(),
            )
        })
    }
}

/// How [`Quantized::matmul_t_of`] forms a row from `x` and `u` before multiplying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowInput {
    /// `x * u`, `u` a vector of `x`'s width.
    Scaled = 1,
    /// `gelu_tanh(x) * u` (the tanh approximation), `u` of `x`'s shape.
    GeluTanhGated = 2,
    /// `silu(x) * u`, `u` of `x`'s shape.
    SiluGated = 3,
}

impl Quantized {
    /// `f(x, u) @ W^T` for one row `x`, `f` per `input`, in the kernel that multiplies it (one
    /// launch where the ops are an elementwise kernel and the product): `None` where mlxcel has
    /// no kernel for the call (another device, the kernels off, a layout it does not take), and
    /// the caller runs the ops. The formed row rounds to `x`'s dtype once.
    pub fn matmul_t_of(&self, input: RowInput, x: &Array, u: &Array) -> Result<Option<Array>> {
        // SAFETY: the pointer borrows `self.biases` for the duration of the call.
        let list = mlx("quantized_matmul_of", unsafe {
            ffi::quantized_matmul_of(
                input as i32,
                &x.inner,
                &u.inner,
                &self.weight.inner,
                &self.scales.inner,
                opt_ptr(self.biases.as_ref()),
                self.spec.group_size,
                self.spec.bits,
                self.spec.mode.as_str(),
            )
        })?;
        Ok(from_list("quantized_matmul_of", &list)?.pop())
    }
}

impl Quantized {
    /// `x @ W[rhs_indices]^T` (`transpose = true`) over a stack of quantized matrices
    /// `[.., n, out, in]`: only the matrices the indices name are read (mixture-of-experts).
    /// `lhs_indices` likewise picks `x`'s matrices; `sorted` promises the indices are sorted.
    pub fn gather_matmul(
        &self,
        x: &Array,
        lhs_indices: Option<&Array>,
        rhs_indices: Option<&Array>,
        transpose: bool,
        sorted: bool,
    ) -> Result<Array> {
        // SAFETY: the pointers borrow `self.biases` and the indices for the duration of the call.
        wrap("gather_qmm", unsafe {
            ffi::gather_qmm(
                &x.inner,
                &self.weight.inner,
                &self.scales.inner,
                opt_ptr(self.biases.as_ref()),
                opt_ptr(lhs_indices),
                opt_ptr(rhs_indices),
                transpose,
                self.spec.group_size,
                self.spec.bits,
                self.spec.mode.as_str(),
                sorted,
            )
        })
    }
}
