//! GGUF container parsing: header, metadata, tensor infos, alignment and the data section.
//!
//! Parsing is bounded: every length and count is checked against the bytes that remain before
//! anything is allocated or indexed, so a malformed or truncated file is an error, never a panic
//! or an out-of-bounds read. Files are memory-mapped; tensor bytes are borrowed from the map.
//! (MLX's own GGUF loader is not used: MLX 0.32.4 decodes Q4_K wrongly and cannot read Q5_0.)

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

mod kquants;
mod store;
mod tensors;
pub use store::{KQuants, Transform, metadata_float, metadata_int, unpermute_rope_rows, weight_store};
pub use tensors::{BlockRows, GgufTensor, f16_to_f32};
use thiserror::Error;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// No real model has tensors of more dimensions than this (ggml's limit is 4).
const MAX_DIMS: u32 = 8;
/// Nested metadata arrays deeper than this are rejected (real files use one level).
const MAX_ARRAY_DEPTH: usize = 4;

#[derive(Debug, Error)]
pub enum GgufError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("not a GGUF file (magic {0:?})")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    UnsupportedVersion(u32),
    #[error("truncated GGUF: {what} at byte {at} needs {wanted} bytes, {left} left")]
    Truncated { what: &'static str, at: usize, wanted: u64, left: usize },
    #[error("invalid GGUF: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, GgufError>;

/// ggml tensor types: block size (elements) and bytes per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    F64,
    I8,
    I16,
    I32,
    I64,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    /// A type this reader does not know; its tensors cannot be read.
    Other(u32),
}

/// ggml's type ids for the named types.
const TYPE_IDS: [(u32, GgmlType); 20] = [
    (0, GgmlType::F32),
    (1, GgmlType::F16),
    (2, GgmlType::Q4_0),
    (3, GgmlType::Q4_1),
    (6, GgmlType::Q5_0),
    (7, GgmlType::Q5_1),
    (8, GgmlType::Q8_0),
    (9, GgmlType::Q8_1),
    (10, GgmlType::Q2K),
    (11, GgmlType::Q3K),
    (12, GgmlType::Q4K),
    (13, GgmlType::Q5K),
    (14, GgmlType::Q6K),
    (15, GgmlType::Q8K),
    (24, GgmlType::I8),
    (25, GgmlType::I16),
    (26, GgmlType::I32),
    (27, GgmlType::I64),
    (28, GgmlType::F64),
    (30, GgmlType::BF16),
];

impl GgmlType {
    pub fn from_id(id: u32) -> GgmlType {
        TYPE_IDS.iter().find(|(known, _)| *known == id).map_or(GgmlType::Other(id), |&(_, kind)| kind)
    }

    /// The type's id in the file (the inverse of [`GgmlType::from_id`]).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::Other(id) => id,
            named => TYPE_IDS.iter().find(|(_, kind)| *kind == named).map(|&(id, _)| id).expect("named types have ids"),
        }
    }

    /// (elements per block, bytes per block), as in ggml's type traits.
    pub fn block(self) -> Option<(u64, u64)> {
        Some(match self {
            GgmlType::F32 | GgmlType::I32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 => (1, 2),
            GgmlType::F64 | GgmlType::I64 => (1, 8),
            GgmlType::I8 => (1, 1),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q8_1 => (32, 36),
            GgmlType::Q2K => (256, 84),
            GgmlType::Q3K => (256, 110),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
            GgmlType::Q8K => (256, 292),
            GgmlType::Other(_) => return None,
        })
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// Any integer type as i64 (u64 beyond i64 is not representable).
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::U8(v) => v as i64,
            Value::I8(v) => v as i64,
            Value::U16(v) => v as i64,
            Value::I16(v) => v as i64,
            Value::U32(v) => v as i64,
            Value::I32(v) => v as i64,
            Value::U64(v) => i64::try_from(v).ok()?,
            Value::I64(v) => v,
            _ => return None,
        })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(values) => Some(values),
            _ => None,
        }
    }
}

/// Where a tensor's bytes are and how to read them.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the fastest-varying (row length); the row-major shape is reversed.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// From the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Row-major shape (outermost first), as MLX and safetensors use.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }
}

/// Everything but the tensor data.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u32,
    /// In file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
}

impl Header {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A memory-mapped GGUF file.
pub struct GgufFile {
    map: Mmap,
    header: Header,
    path: PathBuf,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<GgufFile> {
        let io = |error| GgufError::Io { path: path.to_path_buf(), error };
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; a file truncated while mapped would fault, which is the
        // same contract every mmap-based model loader accepts.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let header = parse_header(&map)?;
        Ok(GgufFile { map, header, path: path.to_path_buf() })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw bytes of a tensor (checked to lie inside the file when the header was parsed).
    /// Lets the kernel drop the file pages under `info`'s bytes once they have been copied out,
    /// so loading does not hold the file and its converted copy in memory at once. Best effort:
    /// the pages come back from the file if the bytes are read again.
    pub fn release_tensor_pages(&self, info: &TensorInfo) {
        let (start, len) = self.tensor_range(info);
        // SAFETY: the map is a private read-only file mapping never written through, so
        // MADV_DONTNEED only drops cached pages; later reads fault them in from the file again.
        let _ = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len) };
    }

    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let (start, len) = self.tensor_range(info);
        &self.map[start..start + len]
    }

    fn tensor_range(&self, info: &TensorInfo) -> (usize, usize) {
        ((self.header.data_offset + info.offset) as usize, info.n_bytes as usize)
    }
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.at;
        if n > left as u64 {
            return Err(GgufError::Truncated { what, at: self.at, wanted: n, left });
        }
        let slice = &self.bytes[self.at..self.at + n as usize];
        self.at += n as usize;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        Ok(self.take(N as u64, what)?.try_into().expect("take returned N bytes"))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &'static str) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GgufError::Invalid(format!("{what} at byte {} is not UTF-8", self.at)))
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn value(&mut self, kind: u32, depth: usize) -> Result<Value> {
        Ok(match kind {
            0 => Value::U8(self.array::<1>("u8")?[0]),
            1 => Value::I8(self.array::<1>("i8")?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array("u16")?)),
            3 => Value::I16(i16::from_le_bytes(self.array("i16")?)),
            4 => Value::U32(self.u32("u32")?),
            5 => Value::I32(i32::from_le_bytes(self.array("i32")?)),
            6 => Value::F32(f32::from_le_bytes(self.array("f32")?)),
            7 => match self.array::<1>("bool")?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => return Err(GgufError::Invalid(format!("bool value {other}"))),
            },
            8 => Value::String(self.string("string")?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Invalid("metadata arrays nested too deeply".into()));
                }
                let element = self.u32("array type")?;
                let count = self.u64("array length")?;
                // Every element takes at least one byte: a count beyond the bytes left is corrupt.
                if count > self.left() as u64 {
                    return Err(GgufError::Invalid(format!("array of {count} elements in {} bytes", self.left())));
                }
                let mut values = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    values.push(self.value(element, depth + 1)?);
                }
                Value::Array(values)
            }
            10 => Value::U64(self.u64("u64")?),
            11 => Value::I64(i64::from_le_bytes(self.array("i64")?)),
            12 => Value::F64(f64::from_le_bytes(self.array("f64")?)),
            other => return Err(GgufError::Invalid(format!("metadata value type {other}"))),
        })
    }
}

/// Parses everything before the tensor data and checks every tensor lies inside `bytes`.
pub fn parse_header(bytes: &[u8]) -> Result<Header> {
    let mut r = Reader { bytes, at: 0 };
    let magic = r.array::<4>("magic")?;
    if &magic != MAGIC {
        return Err(GgufError::BadMagic(magic));
    }
    let version = r.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let tensor_count = r.u64("tensor count")?;
    let kv_count = r.u64("metadata count")?;
    // A metadata entry takes at least 13 bytes, a tensor info at least 24.
    if kv_count > (r.left() / 13) as u64 || tensor_count > (r.left() / 24) as u64 {
        return Err(GgufError::Invalid(format!(
            "{kv_count} metadata entries and {tensor_count} tensors cannot fit in {} bytes",
            bytes.len()
        )));
    }
    let mut metadata = Vec::with_capacity(kv_count as usize);
    for _ in 0..kv_count {
        let key = r.string("metadata key")?;
        let kind = r.u32("metadata type")?;
        let value = r.value(kind, 0)?;
        metadata.push((key, value));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment").map(|(_, v)| v) {
        None => DEFAULT_ALIGNMENT,
        Some(value) => match value.as_i64() {
            Some(a) if a > 0 && (a as u64).is_power_of_two() => a as u64,
            _ => return Err(GgufError::Invalid(format!("general.alignment {value:?} is not a power of two"))),
        },
    };
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    for _ in 0..tensor_count {
        let name = r.string("tensor name")?;
        let n_dims = r.u32("tensor dims")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufError::Invalid(format!("tensor {name} has {n_dims} dimensions")));
        }
        let dims = (0..n_dims).map(|_| r.u64("tensor dim")).collect::<Result<Vec<_>>>()?;
        let ggml_type = GgmlType::from_id(r.u32("tensor type")?);
        let offset = r.u64("tensor offset")?;
        let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let n_bytes = match (elements, ggml_type.block()) {
            (Some(elements), Some((block, block_bytes))) => {
                if elements % block != 0 || dims[0] % block != 0 {
                    return Err(GgufError::Invalid(format!(
                        "tensor {name}: rows of {} do not fill {ggml_type:?} blocks of {block}",
                        dims[0]
                    )));
                }
                (elements / block).checked_mul(block_bytes)
            }
            (Some(_), None) => Some(0),
            (None, _) => None,
        }
        .ok_or_else(|| GgufError::Invalid(format!("tensor {name}: dimensions {dims:?} overflow")))?;
        if offset % alignment != 0 {
            return Err(GgufError::Invalid(format!("tensor {name}: offset {offset} is not aligned to {alignment}")));
        }
        tensors.push(TensorInfo { name, dims, ggml_type, offset, n_bytes });
    }
    let data_offset = (r.at as u64).div_ceil(alignment) * alignment;
    for tensor in &tensors {
        let end = data_offset.checked_add(tensor.offset).and_then(|start| start.checked_add(tensor.n_bytes));
        if end.is_none_or(|end| end > bytes.len() as u64) {
            return Err(GgufError::Invalid(format!(
                "tensor {} ({} bytes at data offset {}) runs past the end of the file ({} bytes)",
                tensor.name,
                tensor.n_bytes,
                tensor.offset,
                bytes.len()
            )));
        }
    }
    Ok(Header { version, metadata, tensors, alignment, data_offset })
}
