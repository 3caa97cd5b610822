use std::fmt;

use cxx::UniquePtr;

use crate::error::{Error, Result, mlx};
use crate::ffi::bridge as ffi;

pub use crate::ffi::bridge::Dtype;

impl Dtype {
    pub fn size_in_bytes(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::U16 | Dtype::I16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::U32 | Dtype::I32 | Dtype::F32 => 4,
            _ => 8,
        }
    }

    pub fn is_floating(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64)
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
            Dtype::BF16 => "bfloat16",
            Dtype::C64 => "complex64",
            _ => "unknown",
        }
    }

    /// Parses MLX/NumPy names and the safetensors short forms (`F32`, `BF16`, ...).
    pub fn parse(name: &str) -> Option<Dtype> {
        Some(match name.to_ascii_lowercase().as_str() {
            "bool" => Dtype::Bool,
            "uint8" | "u8" => Dtype::U8,
            "uint16" | "u16" => Dtype::U16,
            "uint32" | "u32" => Dtype::U32,
            "uint64" | "u64" => Dtype::U64,
            "int8" | "i8" => Dtype::I8,
            "int16" | "i16" => Dtype::I16,
            "int32" | "i32" => Dtype::I32,
            "int64" | "i64" => Dtype::I64,
            "float16" | "f16" | "fp16" | "half" => Dtype::F16,
            "float32" | "f32" | "fp32" | "float" => Dtype::F32,
            "float64" | "f64" | "fp64" | "double" => Dtype::F64,
            "bfloat16" | "bf16" => Dtype::BF16,
            "complex64" | "c64" => Dtype::C64,
            _ => return None,
        })
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Host element types that map one-to-one onto an MLX dtype.
pub trait Element: Copy + Default + 'static {
    const DTYPE: Dtype;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {
        $(impl Element for $t { const DTYPE: Dtype = Dtype::$d; })*
    };
}
element!(bool => Bool, u8 => U8, u16 => U16, u32 => U32, u64 => U64, i8 => I8, i16 => I16,
         i32 => I32, i64 => I64, f32 => F32, f64 => F64);

/// A handle to an MLX array. Cloning shares the underlying buffer and graph node.
pub struct Array {
    pub(crate) inner: UniquePtr<ffi::Array>,
}

impl Clone for Array {
    fn clone(&self) -> Self {
        Array { inner: ffi::array_clone(&self.inner) }
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array(shape={:?}, dtype={})", self.shape(), self.dtype())
    }
}

pub(crate) fn wrap(
    op: &'static str,
    result: std::result::Result<UniquePtr<ffi::Array>, cxx::Exception>,
) -> Result<Array> {
    mlx(op, result).map(|inner| Array { inner })
}

pub(crate) fn to_list(arrays: &[&Array]) -> UniquePtr<ffi::ArrayList> {
    let mut list = ffi::array_list_new();
    for a in arrays {
        ffi::array_list_push(list.pin_mut(), &a.inner);
    }
    list
}

pub(crate) fn from_list(op: &'static str, list: &ffi::ArrayList) -> Result<Vec<Array>> {
    (0..ffi::array_list_len(list)).map(|i| wrap(op, ffi::array_list_get(list, i))).collect()
}

/// A nullable pointer for an optional array argument; valid while `a` is borrowed.
pub(crate) fn opt_ptr(a: Option<&Array>) -> *const ffi::Array {
    a.map_or(std::ptr::null(), |a| &*a.inner as *const ffi::Array)
}

impl Array {
    /// Copies host data into a new array of `shape`.
    pub fn from_slice<T: Element>(data: &[T], shape: &[i32]) -> Result<Array> {
        // SAFETY: `T` is a plain numeric type (or bool); its bytes are read, never reinterpreted as another T.
        let bytes = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) };
        Self::from_bytes(bytes, shape, T::DTYPE)
    }

    /// Copies raw little-endian bytes of `dtype` (e.g. bf16 bits from a file) into a new array.
    pub fn from_bytes(bytes: &[u8], shape: &[i32], dtype: Dtype) -> Result<Array> {
        wrap("array_from_bytes", ffi::array_from_bytes(bytes, shape, dtype))
    }

    /// A 0-d array.
    pub fn scalar<T: Element>(value: T) -> Array {
        Self::from_slice(&[value], &[]).expect("a one-element scalar always fits its shape")
    }

    pub fn full(shape: &[i32], value: f64, dtype: Dtype) -> Result<Array> {
        wrap("full", ffi::array_full(shape, value, dtype))
    }

    pub fn zeros(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Self::full(shape, 0.0, dtype)
    }

    pub fn ones(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Self::full(shape, 1.0, dtype)
    }

    pub fn arange(start: f64, stop: f64, step: f64, dtype: Dtype) -> Result<Array> {
        wrap("arange", ffi::array_arange(start, stop, step, dtype))
    }

    /// A 0-d array of this array's dtype: MLX's C++ scalars are float32 and would promote a bf16 operand.
    pub fn scalar_like(&self, value: f64) -> Result<Array> {
        Self::full(&[], value, self.dtype())
    }

    pub fn shape(&self) -> Vec<i32> {
        ffi::array_shape(&self.inner)
    }

    /// The size of `axis` (negative counts from the end).
    pub fn dim(&self, axis: i32) -> Result<i32> {
        let shape = self.shape();
        let n = shape.len() as i32;
        let index = if axis < 0 { axis + n } else { axis };
        if !(0..n).contains(&index) {
            return Err(Error::invalid("dim", format!("axis {axis} out of range for shape {shape:?}")));
        }
        Ok(shape[index as usize])
    }

    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    pub fn size(&self) -> usize {
        ffi::array_size(&self.inner)
    }

    pub fn nbytes(&self) -> usize {
        ffi::array_nbytes(&self.inner)
    }

    pub fn dtype(&self) -> Dtype {
        ffi::array_dtype(&self.inner)
    }

    pub fn eval(&self) -> Result<()> {
        eval(&[self])
    }

    /// Evaluates and copies the elements out (row-major), converting to `T`'s dtype first if needed.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let source = if self.dtype() == T::DTYPE { self.clone() } else { self.astype(T::DTYPE)? };
        let mut out = vec![T::default(); source.size()];
        // SAFETY: `out` is exactly size * size_of::<T>() bytes and every bit pattern written by MLX
        // for dtype T::DTYPE is a valid T (bool is written as 0/1 bytes).
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(&out[..])) };
        mlx("to_vec", ffi::array_read_into(&source.inner, bytes))?;
        Ok(out)
    }

    /// Evaluates and returns the raw row-major bytes in the array's own dtype.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.size() * self.dtype().size_in_bytes()];
        mlx("to_bytes", ffi::array_read_into(&self.inner, &mut out))?;
        Ok(out)
    }

    /// The single element of a one-element array.
    pub fn item<T: Element>(&self) -> Result<T> {
        if self.size() != 1 {
            return Err(Error::invalid(
                "item",
                format!("array of shape {:?} has {} elements", self.shape(), self.size()),
            ));
        }
        Ok(self.to_vec::<T>()?[0])
    }

    /// MLX's own printout of the array (evaluates it).
    pub fn describe(&self) -> Result<String> {
        mlx("describe", ffi::array_describe(&self.inner))
    }
}

/// Evaluates the arrays (and what they depend on) and waits for the results.
pub fn eval(arrays: &[&Array]) -> Result<()> {
    mlx("eval", ffi::eval(&to_list(arrays)))
}

/// Schedules evaluation and returns at once; a later read or [`eval`] waits for it.
pub fn async_eval(arrays: &[&Array]) -> Result<()> {
    mlx("async_eval", ffi::async_eval(&to_list(arrays)))
}

/// How many operations evaluating `arrays` would run (distinct unevaluated nodes of their graph):
/// a proxy for the kernels one step launches.
pub fn pending_graph_nodes(arrays: &[&Array]) -> usize {
    ffi::pending_graph_nodes(&to_list(arrays))
}

/// The operations [`pending_graph_nodes`] counts, by primitive name, most frequent first.
pub fn pending_graph_ops(arrays: &[&Array]) -> Vec<(String, usize)> {
    let text = ffi::pending_graph_ops(&to_list(arrays));
    let mut ops: Vec<(String, usize)> = text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter_map(|(name, count)| Some((name.to_string(), count.parse().ok()?)))
        .collect();
    ops.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ops
}

/// Waits until the default stream has finished its queued work.
pub fn synchronize() -> Result<()> {
    mlx("synchronize", ffi::synchronize_default())
}
