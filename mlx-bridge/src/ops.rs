//! Array ops as methods on [`Array`]. Axes are `i32` and may be negative, as in MLX.

use crate::array::{Array, Dtype, from_list, opt_ptr, to_list, wrap};
use crate::error::{Error, Result};
use crate::ffi::bridge::{self as ffi, BinaryOp, ReduceOp, UnaryOp};

macro_rules! unary_ops {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {
        impl Array {
            $($(#[$doc])* pub fn $name(&self) -> Result<Array> {
                wrap(stringify!($name), ffi::unary(UnaryOp::$op, &self.inner))
            })*
        }
    };
}

unary_ops! {
    neg => Neg, abs => Abs, sign => Sign, exp => Exp, log => Log, log1p => Log1p, sqrt => Sqrt,
    rsqrt => Rsqrt, square => Square, reciprocal => Reciprocal, tanh => Tanh, sigmoid => Sigmoid,
    erf => Erf, erfinv => ErfInv, sin => Sin, cos => Cos, floor => Floor, ceil => Ceil, round => Round,
    logical_not => LogicalNot, isnan => IsNan, isinf => IsInf, stop_gradient => StopGradient,
}

macro_rules! binary_ops {
    ($($name:ident => $op:ident),* $(,)?) => {
        impl Array {
            $(pub fn $name(&self, other: &Array) -> Result<Array> {
                wrap(stringify!($name), ffi::binary(BinaryOp::$op, &self.inner, &other.inner))
            })*
        }
    };
}

binary_ops! {
    add => Add, sub => Subtract, mul => Multiply, div => Divide, floor_div => FloorDivide,
    remainder => Remainder, power => Power, maximum => Maximum, minimum => Minimum, equal => Equal,
    not_equal => NotEqual, less => Less, less_equal => LessEqual, greater => Greater,
    greater_equal => GreaterEqual, logical_and => LogicalAnd, logical_or => LogicalOr,
}

macro_rules! scalar_ops {
    ($($name:ident => $op:ident),* $(,)?) => {
        impl Array {
            $(/// With a scalar of this array's dtype (no promotion of bf16/f16 operands).
            pub fn $name(&self, value: f64) -> Result<Array> {
                self.$op(&self.scalar_like(value)?)
            })*
        }
    };
}

scalar_ops! {
    add_scalar => add, sub_scalar => sub, mul_scalar => mul, div_scalar => div, pow_scalar => power,
    maximum_scalar => maximum, minimum_scalar => minimum,
}

macro_rules! reductions {
    ($($name:ident / $all:ident => $op:ident),* $(,)?) => {
        impl Array {
            $(pub fn $name(&self, axes: &[i32], keepdims: bool) -> Result<Array> {
                wrap(stringify!($name), ffi::reduce(ReduceOp::$op, &self.inner, axes, keepdims))
            }
            /// Over every axis.
            pub fn $all(&self, keepdims: bool) -> Result<Array> {
                self.$name(&self.all_axes(), keepdims)
            })*
        }
    };
}

reductions! {
    sum / sum_all => Sum, mean / mean_all => Mean, max / max_all => Max, min / min_all => Min,
    prod / prod_all => Prod, all / all_all => All, any / any_all => Any,
    logsumexp / logsumexp_all => LogSumExp,
}

impl Array {
    fn all_axes(&self) -> Vec<i32> {
        (0..self.ndim() as i32).collect()
    }

    /// Variance with `ddof` degrees of freedom removed (0: population variance).
    pub fn var(&self, axes: &[i32], keepdims: bool, ddof: i32) -> Result<Array> {
        wrap("var", ffi::variance(&self.inner, axes, keepdims, ddof, false))
    }

    /// Standard deviation with `ddof` degrees of freedom removed (0: population).
    pub fn std(&self, axes: &[i32], keepdims: bool, ddof: i32) -> Result<Array> {
        wrap("std", ffi::variance(&self.inner, axes, keepdims, ddof, true))
    }

    /// `precise` accumulates low-precision inputs in float32.
    pub fn softmax(&self, axes: &[i32], precise: bool) -> Result<Array> {
        wrap("softmax", ffi::softmax(&self.inner, axes, precise))
    }

    pub fn argmax(&self, axis: i32, keepdims: bool) -> Result<Array> {
        wrap("argmax", ffi::argmax(&self.inner, axis, keepdims))
    }

    pub fn argmin(&self, axis: i32, keepdims: bool) -> Result<Array> {
        wrap("argmin", ffi::argmin(&self.inner, axis, keepdims))
    }

    /// Indices that partition `axis` so the element at `kth` is in sorted position.
    pub fn argpartition(&self, kth: i32, axis: i32) -> Result<Array> {
        wrap("argpartition", ffi::argpartition(&self.inner, kth, axis))
    }

    pub fn sort(&self, axis: i32) -> Result<Array> {
        wrap("sort", ffi::sort(&self.inner, axis))
    }

    pub fn argsort(&self, axis: i32) -> Result<Array> {
        wrap("argsort", ffi::argsort(&self.inner, axis))
    }

    /// The `k` largest values along `axis` (unordered).
    pub fn topk(&self, k: i32, axis: i32) -> Result<Array> {
        wrap("topk", ffi::topk(&self.inner, k, axis))
    }

    pub fn cumsum(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        wrap("cumsum", ffi::cumsum(&self.inner, axis, reverse, inclusive))
    }

    pub fn astype(&self, dtype: Dtype) -> Result<Array> {
        wrap("astype", ffi::astype(&self.inner, dtype))
    }

    /// Clamps to `[lo, hi]`; either bound may be absent.
    pub fn clip(&self, lo: Option<&Array>, hi: Option<&Array>) -> Result<Array> {
        if lo.is_none() && hi.is_none() {
            return Err(Error::invalid("clip", "at least one of lo and hi is required"));
        }
        // SAFETY: the pointers borrow `lo`/`hi`, which outlive the call.
        wrap("clip", unsafe { ffi::clip(&self.inner, opt_ptr(lo), opt_ptr(hi)) })
    }

    /// Clamps to `[lo, hi]` with scalars of this array's dtype.
    pub fn clip_scalar(&self, lo: f64, hi: f64) -> Result<Array> {
        self.clip(Some(&self.scalar_like(lo)?), Some(&self.scalar_like(hi)?))
    }

    pub fn reshape(&self, shape: &[i32]) -> Result<Array> {
        wrap("reshape", ffi::reshape(&self.inner, shape))
    }

    /// Permutes axes; an empty `axes` reverses them.
    pub fn transpose(&self, axes: &[i32]) -> Result<Array> {
        wrap("transpose", ffi::transpose(&self.inner, axes))
    }

    /// Swaps the last two axes (the usual weight transpose).
    pub fn t(&self) -> Result<Array> {
        self.swapaxes(-1, -2)
    }

    pub fn swapaxes(&self, axis1: i32, axis2: i32) -> Result<Array> {
        wrap("swapaxes", ffi::swapaxes(&self.inner, axis1, axis2))
    }

    pub fn expand_dims(&self, axes: &[i32]) -> Result<Array> {
        wrap("expand_dims", ffi::expand_dims(&self.inner, axes))
    }

    /// Removes the size-1 `axes`; an empty `axes` removes every size-1 axis.
    pub fn squeeze(&self, axes: &[i32]) -> Result<Array> {
        wrap("squeeze", ffi::squeeze(&self.inner, axes))
    }

    pub fn broadcast_to(&self, shape: &[i32]) -> Result<Array> {
        wrap("broadcast_to", ffi::broadcast_to(&self.inner, shape))
    }

    /// A row-major copy if this array is a strided or broadcast view; itself otherwise.
    pub fn contiguous(&self) -> Result<Array> {
        wrap("contiguous", ffi::contiguous(&self.inner))
    }

    /// `self[start:stop]` per axis with stride 1.
    pub fn slice(&self, start: &[i32], stop: &[i32]) -> Result<Array> {
        self.slice_strided(start, stop, &vec![1; start.len()])
    }

    pub fn slice_strided(&self, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
        wrap("slice", ffi::slice(&self.inner, start, stop, strides))
    }

    /// `start..stop` along one axis, everything along the others.
    pub fn slice_axis(&self, axis: i32, start: i32, stop: i32) -> Result<Array> {
        let shape = self.shape();
        let n = shape.len() as i32;
        let index = if axis < 0 { axis + n } else { axis };
        if !(0..n).contains(&index) {
            return Err(Error::invalid("slice_axis", format!("axis {axis} out of range for shape {shape:?}")));
        }
        let mut starts = vec![0; shape.len()];
        let mut stops = shape.clone();
        starts[index as usize] = start;
        stops[index as usize] = stop;
        self.slice(&starts, &stops)
    }

    /// A slice whose start along `axes` is read from an array at evaluation time.
    pub fn slice_dynamic(&self, start: &Array, axes: &[i32], sizes: &[i32]) -> Result<Array> {
        wrap("slice_dynamic", ffi::slice_dynamic(&self.inner, &start.inner, axes, sizes))
    }

    /// A copy of `self` with `self[start:stop:strides] = update`.
    pub fn slice_update(&self, update: &Array, start: &[i32], stop: &[i32]) -> Result<Array> {
        let strides = vec![1; start.len()];
        wrap("slice_update", ffi::slice_update(&self.inner, &update.inner, start, stop, &strides))
    }

    /// [`Array::slice_update`] with the start along `axes` read from an array at evaluation time.
    pub fn slice_update_dynamic(&self, update: &Array, start: &Array, axes: &[i32]) -> Result<Array> {
        wrap("slice_update_dynamic", ffi::slice_update_dynamic(&self.inner, &update.inner, &start.inner, axes))
    }

    /// Splits into `sections` equal parts along `axis`.
    pub fn split(&self, sections: i32, axis: i32) -> Result<Vec<Array>> {
        let list = crate::error::mlx("split", ffi::split_sections(&self.inner, sections, axis))?;
        from_list("split", &list)
    }

    /// Splits before each of `indices` along `axis`.
    pub fn split_at(&self, indices: &[i32], axis: i32) -> Result<Vec<Array>> {
        let list = crate::error::mlx("split_at", ffi::split_at(&self.inner, indices, axis))?;
        from_list("split_at", &list)
    }

    /// Gathers `indices` along `axis` (an embedding lookup is `table.take(ids, 0)`).
    pub fn take(&self, indices: &Array, axis: i32) -> Result<Array> {
        wrap("take", ffi::take(&self.inner, &indices.inner, axis))
    }

    pub fn take_along_axis(&self, indices: &Array, axis: i32) -> Result<Array> {
        wrap("take_along_axis", ffi::take_along_axis(&self.inner, &indices.inner, axis))
    }

    pub fn put_along_axis(&self, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
        wrap("put_along_axis", ffi::put_along_axis(&self.inner, &indices.inner, &values.inner, axis))
    }

    pub fn matmul(&self, other: &Array) -> Result<Array> {
        wrap("matmul", ffi::matmul(&self.inner, &other.inner))
    }

    /// `beta * self + alpha * (a @ b)` in one op.
    pub fn addmm(&self, a: &Array, b: &Array, alpha: f32, beta: f32) -> Result<Array> {
        wrap("addmm", ffi::addmm(&self.inner, &a.inner, &b.inner, alpha, beta))
    }
}

/// Element-wise `cond ? x : y` with broadcasting.
pub fn where_select(cond: &Array, x: &Array, y: &Array) -> Result<Array> {
    wrap("where", ffi::where_select(&cond.inner, &x.inner, &y.inner))
}

pub fn concatenate(arrays: &[&Array], axis: i32) -> Result<Array> {
    wrap("concatenate", ffi::concatenate(&to_list(arrays), axis))
}

pub fn stack(arrays: &[&Array], axis: i32) -> Result<Array> {
    wrap("stack", ffi::stack(&to_list(arrays), axis))
}

/// `a[lhs_indices] @ b[rhs_indices]` over the batch axes of `a` (`[.., M, K]`) and `b`
/// (`[.., K, N]`): only the matrices the indices name are read (mixture-of-experts). `sorted`
/// promises the indices are sorted, which lets MLX group the products.
pub fn gather_mm(
    a: &Array,
    b: &Array,
    lhs_indices: Option<&Array>,
    rhs_indices: Option<&Array>,
    sorted: bool,
) -> Result<Array> {
    // SAFETY: the pointers borrow the indices for the duration of the call.
    wrap("gather_mm", unsafe { ffi::gather_mm(&a.inner, &b.inner, opt_ptr(lhs_indices), opt_ptr(rhs_indices), sorted) })
}
