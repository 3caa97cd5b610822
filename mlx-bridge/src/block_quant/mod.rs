//! Block-quantized matrices that stay quantized on the CPU: GGUF Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
//! Q4_K, Q5_K, Q6_K and MLX affine 4/8-bit (group 32/64), with our own GEMV/GEMM kernels as MLX
//! custom primitives (lazy, on the CPU stream).
//!
//! A [`BlockMatrix`] is repacked once at load into an interleaved layout (16 rows side by side,
//! codes in bit planes; see `src/cpp/block_quant/layout.h`) of the same size as the stored bytes
//! (K-quants: their 6-bit scales widened to bytes, +2.8% for Q4_K). The weights' values are
//! exactly the format's: nothing is rounded a second time.
//!
//! `y = x W^T` quantizes each activation row once per call, per block of 32 values (f32 scale
//! `d_b = max|x_b| / L` plus the blocks' sums for offsets and mins), and runs integer dot products
//! (AVX-512 VNNI, AVX-VNNI, AVX2, NEON or the portable scalar path, chosen at run time), applying
//! the weight and activation scales per block in float. The error against the exact product is
//! the activation rounding: at most `sum_b |w|_1,b * d_b / 2` per output, plus float
//! accumulation. [`Precision`] picks `L`: 127 (int8, llama.cpp's scheme) or 32385 (16-bit codes
//! held as two int8 planes, each weight block dotted with both while it is in registers).
//!
//! `x` may have any float dtype and any strides: the kernels read it in place (or widen a copy
//! only when its columns are not adjacent), so a call adds one node to the graph and no more.
//!
//! Packed layout per format (16 rows x 32 columns per code block; parameters per row group,
//! 16 rows side by side):
//!
//! | format            | code block            | parameters                                        |
//! |-------------------|-----------------------|---------------------------------------------------|
//! | Q4_0, Q4_1        | 256 B of nibbles      | f16 d (and f16 m) per block                       |
//! | Q5_0, Q5_1        | 256 B + 64 B 5th bits | f16 d (and f16 m) per block                       |
//! | Q8_0              | 512 B signed bytes    | f16 d per block                                   |
//! | Q4_K              | 256 B of nibbles      | f16 d, dmin + 8 scales + 8 mins as bytes / 256    |
//! | Q5_K              | 256 B + 64 B 5th bits | as Q4_K                                           |
//! | Q6_K              | 256 B + 128 B 2 bits  | f16 d + 16 signed byte scales / 256               |
//! | affine 4-bit      | 256 B of nibbles      | scale, bias per group in their dtype              |
//! | affine 8-bit      | 512 B, q - 128        | scale, bias per group in their dtype              |
//!
//! Threads: one persistent pool ([`set_num_threads`]); MLX's CPU stream thread is worker 0, and
//! work is handed out in chunks of row groups so a busy or sleeping worker delays little.

mod ffi;

use crate::Dtype;
use crate::array::{Array, from_list, to_list, wrap};
use crate::error::{Error, Result, mlx};
use crate::quant::{QuantMode, Quantized};
use ffi::bridge::{self as bq, BlockSpec};
use std::sync::atomic::{AtomicU8, Ordering};

/// How a matrix's blocks are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockFormat {
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4K,
    Q5K,
    Q6K,
    /// MLX affine quantization: `w = scale * q + bias` per group along each row.
    Affine {
        bits: u8,
        group: u16,
    },
}

impl BlockFormat {
    /// Values per block (GGUF) or per group (affine).
    pub fn block_len(self) -> usize {
        match self {
            BlockFormat::Q4K | BlockFormat::Q5K | BlockFormat::Q6K => 256,
            BlockFormat::Affine { group, .. } => group as usize,
            _ => 32,
        }
    }

    /// Bytes of one block as ggml stores it; for affine, the packed codes of one group (the
    /// scales and biases are separate arrays).
    pub fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q8_0 => 34,
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4_1 => 20,
            BlockFormat::Q5_0 => 22,
            BlockFormat::Q5_1 => 24,
            BlockFormat::Q4K => 144,
            BlockFormat::Q5K => 176,
            BlockFormat::Q6K => 210,
            BlockFormat::Affine { bits, group } => group as usize * bits as usize / 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BlockFormat::Q8_0 => "Q8_0",
            BlockFormat::Q4_0 => "Q4_0",
            BlockFormat::Q4_1 => "Q4_1",
            BlockFormat::Q5_0 => "Q5_0",
            BlockFormat::Q5_1 => "Q5_1",
            BlockFormat::Q4K => "Q4_K",
            BlockFormat::Q5K => "Q5_K",
            BlockFormat::Q6K => "Q6_K",
            BlockFormat::Affine { bits: 4, group: 32 } => "affine4-g32",
            BlockFormat::Affine { bits: 4, group: 64 } => "affine4-g64",
            BlockFormat::Affine { bits: 8, group: 32 } => "affine8-g32",
            BlockFormat::Affine { bits: 8, group: 64 } => "affine8-g64",
            BlockFormat::Affine { .. } => "affine (unsupported bits/group)",
        }
    }

    /// Every GGUF format this module reads.
    pub const GGUF: [BlockFormat; 8] = [
        BlockFormat::Q8_0,
        BlockFormat::Q4_0,
        BlockFormat::Q4_1,
        BlockFormat::Q5_0,
        BlockFormat::Q5_1,
        BlockFormat::Q4K,
        BlockFormat::Q5K,
        BlockFormat::Q6K,
    ];

    /// The format of a GGUF tensor from its `ggml_type` id (`GGML_TYPE_Q4_0` = 2, ...), if it is
    /// one of the block formats read here.
    pub fn from_ggml_type(id: u32) -> Option<BlockFormat> {
        Some(match id {
            2 => BlockFormat::Q4_0,
            3 => BlockFormat::Q4_1,
            6 => BlockFormat::Q5_0,
            7 => BlockFormat::Q5_1,
            8 => BlockFormat::Q8_0,
            12 => BlockFormat::Q4K,
            13 => BlockFormat::Q5K,
            14 => BlockFormat::Q6K,
            _ => return None,
        })
    }

    /// The C++ `bq::Fmt` value.
    const fn code(self) -> u8 {
        match self {
            BlockFormat::Q8_0 => 0,
            BlockFormat::Q4_0 => 1,
            BlockFormat::Q4_1 => 2,
            BlockFormat::Q5_0 => 3,
            BlockFormat::Q5_1 => 4,
            BlockFormat::Q4K => 5,
            BlockFormat::Q5K => 6,
            BlockFormat::Q6K => 7,
            BlockFormat::Affine { bits: 4, .. } => 8,
            BlockFormat::Affine { .. } => 9,
        }
    }
}

impl std::fmt::Display for BlockFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A quantized matrix `[rows, cols]` in its repacked block layout, held in one MLX-allocated
/// uint8 array (so MLX's memory accounting sees it). Cloning shares the buffer.
#[derive(Clone)]
pub struct BlockMatrix {
    packed: Array,
    spec: BlockSpec,
    format: BlockFormat,
}

impl std::fmt::Debug for BlockMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockMatrix({} {}x{} {})", self.spec.name, self.spec.rows, self.spec.cols, self.format)
    }
}

const OP: &str = "block_quant";

fn param_type(dtype: Dtype) -> Option<u8> {
    match dtype {
        Dtype::F16 => Some(0),
        Dtype::BF16 => Some(1),
        Dtype::F32 => Some(2),
        _ => None,
    }
}

impl BlockMatrix {
    /// A GGUF tensor's bytes exactly as stored (`rows` rows of `cols` values, ggml's row-major
    /// order: GGUF dims reversed). `name` is used in error messages.
    pub fn from_gguf(name: &str, format: BlockFormat, bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        if let BlockFormat::Affine { .. } = format {
            return Err(Error::invalid(
                OP,
                format!("block matrix {name}: affine matrices come from MLX arrays (from_affine), not GGUF bytes"),
            ));
        }
        let spec = BlockSpec {
            name: name.to_string(),
            fmt: format.code(),
            ptype: 0,
            group: format.block_len() as u16,
            rows,
            cols,
        };
        let packed = wrap(OP, bq::bq_pack_gguf(&spec, bytes))?;
        Ok(BlockMatrix { packed, spec, format })
    }

    /// An MLX affine-quantized matrix (`quant::quantize` with mode affine, 4 or 8 bits, group 32
    /// or 64). Scales and biases keep their dtype (f16, bf16 or f32).
    pub fn from_affine(name: &str, q: &Quantized) -> Result<Self> {
        let bad = |why: String| Error::invalid(OP, format!("block matrix {name}: {why}"));
        if q.spec.mode != QuantMode::Affine {
            return Err(bad(format!("{:?} quantization is not supported, only affine", q.spec.mode)));
        }
        if !matches!(q.spec.bits, 4 | 8) || !matches!(q.spec.group_size, 32 | 64) {
            return Err(bad(format!(
                "affine {} bits with group {} is not supported (4 or 8 bits, group 32 or 64)",
                q.spec.bits, q.spec.group_size
            )));
        }
        let biases = q.biases.as_ref().ok_or_else(|| bad("affine quantization without biases".into()))?;
        let shape = q.weight.shape();
        if shape.len() != 2 {
            return Err(bad(format!("weight must be 2-D, got shape {shape:?}")));
        }
        let ptype = param_type(q.scales.dtype())
            .ok_or_else(|| bad(format!("scales must be f16, bf16 or f32, not {}", q.scales.dtype())))?;
        let format = BlockFormat::Affine { bits: q.spec.bits as u8, group: q.spec.group_size as u16 };
        let cols = shape[1] as usize * 32 / q.spec.bits as usize;
        let spec = BlockSpec {
            name: name.to_string(),
            fmt: format.code(),
            ptype,
            group: format.block_len() as u16,
            rows: shape[0] as usize,
            cols,
        };
        let packed = wrap(OP, bq::bq_pack_affine(&spec, &q.weight.inner, &q.scales.inner, &biases.inner))?;
        Ok(BlockMatrix { packed, spec, format })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn rows(&self) -> usize {
        self.spec.rows
    }

    pub fn cols(&self) -> usize {
        self.spec.cols
    }

    pub fn format(&self) -> BlockFormat {
        self.format
    }

    /// Bytes of the packed buffer (codes and parameters, rows padded to a multiple of 16).
    pub fn nbytes(&self) -> usize {
        self.packed.nbytes()
    }

    /// `x W^T`: `x` `[..., cols]` (any float dtype) to `[..., rows]` float32, lazily, at the
    /// process's [`default_precision`].
    pub fn matmul_t(&self, x: &Array) -> Result<Array> {
        self.matmul_t_with(x, default_precision())
    }

    /// [`matmul_t`](Self::matmul_t) with the activations rounded at `precision`.
    pub fn matmul_t_with(&self, x: &Array, precision: Precision) -> Result<Array> {
        let mut out = matmul_t_many_with(&[self], x, precision)?;
        out.pop().ok_or_else(|| Error::invalid(OP, "matmul_t returned nothing"))
    }

    /// Rows `ids` (any integer dtype and shape) as float32 `[ids..., cols]`, reading only those
    /// rows. An id outside `[0, rows)` makes the evaluation fail.
    pub fn gather_rows(&self, ids: &Array) -> Result<Array> {
        match ids.dtype() {
            Dtype::I8 | Dtype::I16 | Dtype::I32 | Dtype::I64 | Dtype::U8 | Dtype::U16 | Dtype::U32 | Dtype::U64 => {}
            other => {
                return Err(Error::invalid(
                    OP,
                    format!("block matrix {}: gather_rows needs integer ids, got {other}", self.spec.name),
                ));
            }
        }
        wrap(OP, bq::bq_gather_rows(&self.spec, &self.packed.inner, &ids.inner))
    }

    /// The whole matrix as float32 `[rows, cols]`, lazily.
    pub fn dequantize(&self) -> Result<Array> {
        wrap(OP, bq::bq_dequantize(&self.spec, &self.packed.inner))
    }

    /// The packed buffer (one uint8 array), e.g. to evaluate it or count it.
    pub fn packed(&self) -> &Array {
        &self.packed
    }
}

/// `x W_i^T` for every matrix as one primitive: `x` is quantized once and the thread pool woken
/// once (Q/K/V, gate/up). Formats may differ; every matrix must have `x`'s column count. At the
/// process's [`default_precision`].
pub fn matmul_t_many(mats: &[&BlockMatrix], x: &Array) -> Result<Vec<Array>> {
    matmul_t_many_with(mats, x, default_precision())
}

/// [`matmul_t_many`] with the activations rounded at `precision`.
pub fn matmul_t_many_with(mats: &[&BlockMatrix], x: &Array, precision: Precision) -> Result<Vec<Array>> {
    let specs: Vec<BlockSpec> = mats.iter().map(|m| m.spec.clone()).collect();
    let packed = to_list(&mats.iter().map(|m| &m.packed).collect::<Vec<_>>());
    let list = mlx(OP, bq::bq_matmul_many(&specs, &packed, &x.inner, precision.code()))?;
    from_list(OP, &list)
}

/// How activations are rounded before the integer dot products, per block of 32 values with
/// scale `d = max|x| / L` and codes `round(x / d)`. Either way each weight is read once per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// `L = 127`, one int8 per value (llama.cpp's scheme): each activation off by up to 1/254 of
    /// its block's largest, which moves a real model's logits by a few percent.
    Int8,
    /// `L = 127 * 255`, 16-bit codes held as two int8 planes `q = 255 q1 + q2` (255 is odd, so
    /// both planes fit [-127, 127]): off by up to 1/64770 of the block's largest, for one more
    /// integer dot per weight block.
    Int16,
}

impl Precision {
    pub const ALL: [Precision; 2] = [Precision::Int8, Precision::Int16];

    const fn code(self) -> u8 {
        match self {
            Precision::Int8 => 0,
            Precision::Int16 => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            Precision::Int16 => "int16",
        }
    }

    pub fn parse(name: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What [`default_precision`] is until [`set_default_precision`].
pub const DEFAULT_PRECISION: Precision = Precision::Int16;

static DEFAULT: AtomicU8 = AtomicU8::new(DEFAULT_PRECISION.code());

/// The precision [`BlockMatrix::matmul_t`] and [`matmul_t_many`] use. The execution plan's
/// `activation_precision` sets it when a model loads, as it sets the thread count.
pub fn default_precision() -> Precision {
    let code = DEFAULT.load(Ordering::Relaxed);
    Precision::ALL.into_iter().find(|p| p.code() == code).unwrap_or(DEFAULT_PRECISION)
}

/// Sets the process-wide [`default_precision`].
pub fn set_default_precision(precision: Precision) {
    DEFAULT.store(precision.code(), Ordering::Relaxed);
}

/// Sets the kernels' thread count (the caller included); `n` >= 1. The default is the number of
/// CPUs this process may use (or `MLXCEL_THREADS`).
pub fn set_num_threads(n: usize) -> Result<()> {
    mlx(OP, bq::bq_set_num_threads(n))
}

pub fn num_threads() -> usize {
    bq::bq_num_threads()
}

/// The instruction sets the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    Scalar,
    Avx2,
    AvxVnni,
    Avx512Vnni,
    Neon,
}

impl Isa {
    pub const ALL: [Isa; 5] = [Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512Vnni, Isa::Neon];

    const fn code(self) -> u8 {
        match self {
            Isa::Scalar => 0,
            Isa::Avx2 => 1,
            Isa::AvxVnni => 2,
            Isa::Avx512Vnni => 3,
            Isa::Neon => 4,
        }
    }

    /// The name `MLXCEL_CPU_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512Vnni => "avx512vnni",
            Isa::Neon => "neon",
        }
    }
}

/// The path in use: `MLXCEL_CPU_ISA` if set, else the best this CPU runs, unless [`set_isa`]
/// chose another. (A bad `MLXCEL_CPU_ISA` makes every matmul return an error until `set_isa`.)
pub fn isa() -> Isa {
    let code = bq::bq_isa();
    Isa::ALL.into_iter().find(|i| i.code() == code).unwrap_or(Isa::Scalar)
}

/// The paths this CPU and build can run, scalar first.
pub fn supported_isas() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| bq::bq_isa_supported(i.code())).collect()
}

/// Forces a path process-wide (tests compare each against scalar); an error if unsupported.
pub fn set_isa(isa: Isa) -> Result<()> {
    mlx(OP, bq::bq_set_isa(isa.code()))
}
