//! GGUF tensors to MLX arrays. Float types are copied as they are; Q8_0, Q4_0, Q4_1, Q5_0 and
//! Q5_1 map exactly onto MLX's affine quantization (group 32), so they stay quantized with no loss:
//!
//! - Q8_0: `w = d * q`, `q` in -128..=127  →  `q + 128` unsigned, scale `d`, bias `-128 d`;
//! - Q4_0: `w = d * (q - 8)`, `q` in 0..=15  →  scale `d`, bias `-8 d`;
//! - Q5_0: `w = d * (q - 16)`, `q` in 0..=31 →  scale `d`, bias `-16 d` (5-bit);
//! - Q4_1 / Q5_1: `w = d * q + m`           →  scale `d`, bias `m`.
//!
//! Scales and biases are widened to float32, where `d * q + bias` is exact for these ranges.
//! Q4_K and Q5_K map exactly too ([`GgufFile::load_tensor_exact`]): each 32-value sub-block has
//! `w = (d * sc) q - (dmin * m)` with 6-bit `sc`, `m`, so scale `d * sc` and bias `-dmin * m` are
//! exact float32 products. Q6_K's 16-value sub-blocks have no affine group size in MLX; it is
//! dequantized to float32 (`kquants.rs`, following ggml's reference decoder), as are the K types
//! by [`GgufFile::load_tensor`].

use mlx_bridge::block_quant::BlockFormat;
use mlx_bridge::quant::{QuantMode, QuantSpec, Quantized};
use mlx_bridge::{Array, Dtype};

use super::{GgmlType, GgufError, GgufFile, Result, TensorInfo};

/// A tensor ready for a model: dense, quantized in MLX's layout, or a matrix to keep in its block
/// format (its bytes stay in the file until the weight store repacks them).
#[derive(Debug, Clone)]
pub enum GgufTensor {
    Dense(Array),
    Quantized(Quantized),
    Blocks(BlockRows),
}

/// A `[rows, cols]` block-quantized matrix of the file, possibly with its rows reordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRows {
    pub format: BlockFormat,
    pub rows: usize,
    pub cols: usize,
    /// Row `i` of the matrix is the file's row `order[i]`; `None` keeps the file's order.
    pub order: Option<Vec<usize>>,
}

impl GgmlType {
    /// The format mlxcel's CPU kernels keep this type in, if they take it.
    pub fn block_format(self) -> Option<BlockFormat> {
        Some(match self {
            GgmlType::Q8_0 => BlockFormat::Q8_0,
            GgmlType::Q4_0 => BlockFormat::Q4_0,
            GgmlType::Q4_1 => BlockFormat::Q4_1,
            GgmlType::Q5_0 => BlockFormat::Q5_0,
            GgmlType::Q5_1 => BlockFormat::Q5_1,
            GgmlType::Q4K => BlockFormat::Q4K,
            GgmlType::Q5K => BlockFormat::Q5K,
            GgmlType::Q6K => BlockFormat::Q6K,
            _ => return None,
        })
    }
}

impl GgufFile {
    /// Loads `info`'s tensor (row-major shape: GGUF's dims reversed); K-quant tensors come out
    /// dense.
    pub fn load_tensor(&self, info: &TensorInfo) -> Result<GgufTensor> {
        self.load(info, false)
    }

    /// Like [`GgufFile::load_tensor`], keeping Q4_K and Q5_K quantized as exact MLX affine
    /// 4-/5-bit groups of 32 (Q6_K still comes out dense).
    pub fn load_tensor_exact(&self, info: &TensorInfo) -> Result<GgufTensor> {
        self.load(info, true)
    }

    /// A 2-D block-quantized tensor as a matrix to keep in its format (`None` for other tensors).
    pub fn block_rows(&self, info: &TensorInfo) -> Option<BlockRows> {
        let format = info.ggml_type.block_format()?;
        match info.shape().as_slice() {
            &[rows, cols] => Some(BlockRows { format, rows: rows as usize, cols: cols as usize, order: None }),
            _ => None,
        }
    }

    /// Bytes of the matrix `rows` describes, in its row order (borrowed when it keeps the file's).
    pub fn block_bytes<'a>(&'a self, info: &TensorInfo, rows: &BlockRows) -> std::borrow::Cow<'a, [u8]> {
        let bytes = self.tensor_bytes(info);
        match &rows.order {
            None => std::borrow::Cow::Borrowed(bytes),
            Some(order) => {
                let row_bytes = bytes.len() / rows.rows.max(1);
                std::borrow::Cow::Owned(
                    order.iter().flat_map(|&r| &bytes[r * row_bytes..(r + 1) * row_bytes]).copied().collect(),
                )
            }
        }
    }

    fn load(&self, info: &TensorInfo, k_quants_as_affine: bool) -> Result<GgufTensor> {
        let bytes = self.tensor_bytes(info);
        let shape = info.shape().iter().map(|&d| i32::try_from(d)).collect::<std::result::Result<Vec<i32>, _>>();
        let shape = shape.map_err(|_| GgufError::Invalid(format!("tensor {} is too large", info.name)))?;
        let dense = |dtype| Ok(GgufTensor::Dense(Array::from_bytes(bytes, &shape, dtype)?));
        match info.ggml_type {
            GgmlType::F32 => dense(Dtype::F32),
            GgmlType::F16 => dense(Dtype::F16),
            GgmlType::BF16 => dense(Dtype::BF16),
            GgmlType::Q8_0 => affine(bytes, &shape, Block::Q8_0),
            GgmlType::Q4_0 => affine(bytes, &shape, Block::Q4_0),
            GgmlType::Q4_1 => affine(bytes, &shape, Block::Q4_1),
            GgmlType::Q5_0 => affine(bytes, &shape, Block::Q5_0),
            GgmlType::Q5_1 => affine(bytes, &shape, Block::Q5_1),
            GgmlType::Q4K | GgmlType::Q5K if k_quants_as_affine => {
                let bits = if info.ggml_type == GgmlType::Q4K { 4 } else { 5 };
                let groups = super::kquants::affine_groups(info.ggml_type, bytes);
                pack_affine(&shape, bits, groups)
            }
            GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => {
                let values = super::kquants::dequantize(info.ggml_type, bytes);
                Ok(GgufTensor::Dense(Array::from_slice(&values, &shape)?))
            }
            other => Err(GgufError::Invalid(format!("tensor {}: {other:?} is not supported yet", info.name))),
        }
    }
}

impl From<mlx_bridge::Error> for GgufError {
    fn from(e: mlx_bridge::Error) -> Self {
        GgufError::Invalid(e.to_string())
    }
}

#[derive(Clone, Copy)]
enum Block {
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
}

const GROUP: usize = 32;

impl Block {
    fn bytes(self) -> usize {
        match self {
            Block::Q8_0 => 34,
            Block::Q4_0 => 18,
            Block::Q4_1 => 20,
            Block::Q5_0 => 22,
            Block::Q5_1 => 24,
        }
    }

    fn bits(self) -> usize {
        match self {
            Block::Q8_0 => 8,
            Block::Q4_0 | Block::Q4_1 => 4,
            Block::Q5_0 | Block::Q5_1 => 5,
        }
    }

    /// The block's unsigned codes in element order, its scale and its bias.
    fn decode(self, block: &[u8], codes: &mut [u8; GROUP]) -> (f32, f32) {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        match self {
            Block::Q8_0 => {
                for (code, &q) in codes.iter_mut().zip(&block[2..34]) {
                    *code = (q as i8 as i16 + 128) as u8;
                }
                (d, -128.0 * d)
            }
            Block::Q5_0 | Block::Q5_1 => {
                let (bias, rest) = match self {
                    Block::Q5_1 => (f16_to_f32(u16::from_le_bytes([block[2], block[3]])), &block[4..24]),
                    _ => (-16.0 * d, &block[2..22]),
                };
                // ggml: the fifth bits of all 32 elements in a u32, then the low nibbles as Q4_0.
                let high = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                for (j, &byte) in rest[4..20].iter().enumerate() {
                    codes[j] = (byte & 0x0f) | ((((high >> j) & 1) as u8) << 4);
                    codes[j + 16] = (byte >> 4) | ((((high >> (j + 16)) & 1) as u8) << 4);
                }
                (d, bias)
            }
            Block::Q4_0 | Block::Q4_1 => {
                let (bias, nibbles) = match self {
                    Block::Q4_1 => (f16_to_f32(u16::from_le_bytes([block[2], block[3]])), &block[4..20]),
                    _ => (-8.0 * d, &block[2..18]),
                };
                // ggml: element j is the low nibble of byte j, element j + 16 the high nibble.
                for (j, &byte) in nibbles.iter().enumerate() {
                    codes[j] = byte & 0x0f;
                    codes[j + 16] = byte >> 4;
                }
                (d, bias)
            }
        }
    }
}

fn affine(bytes: &[u8], shape: &[i32], block: Block) -> Result<GgufTensor> {
    let groups = bytes.chunks_exact(block.bytes()).map(|raw| {
        let mut codes = [0u8; GROUP];
        let (scale, bias) = block.decode(raw, &mut codes);
        AffineGroup { codes, scale, bias }
    });
    pack_affine(shape, block.bits(), groups)
}

/// One group of 32 values as `scale * code + bias`, codes unsigned.
pub(super) struct AffineGroup {
    pub codes: [u8; GROUP],
    pub scale: f32,
    pub bias: f32,
}

/// Packs row-major groups (every row holds a whole number of them) into MLX's affine layout.
fn pack_affine(shape: &[i32], bits: usize, groups: impl Iterator<Item = AffineGroup>) -> Result<GgufTensor> {
    let cols = *shape.last().expect("tensors have at least one dimension") as usize;
    let elements: usize = shape.iter().map(|&d| d as usize).product();
    let mut words = vec![0u32; elements * bits / 32];
    let mut scales = Vec::with_capacity(elements / GROUP);
    let mut biases = Vec::with_capacity(elements / GROUP);
    for (g, AffineGroup { codes, scale, bias }) in groups.enumerate() {
        scales.push(scale);
        biases.push(bias);
        // MLX packs element i of a row at bit `i * bits` of the row's little-endian u32 stream;
        // groups are contiguous within rows, so the flat element index works across rows too.
        for (j, &code) in codes.iter().enumerate() {
            let bit = (g * GROUP + j) * bits;
            words[bit / 32] |= (code as u32) << (bit % 32);
            // 5-bit codes can straddle two words.
            if bit % 32 + bits > 32 {
                words[bit / 32 + 1] |= (code as u32) >> (32 - bit % 32);
            }
        }
    }
    let mut packed_shape = shape.to_vec();
    *packed_shape.last_mut().expect("non-empty") = (cols * bits / 32) as i32;
    let mut group_shape = shape.to_vec();
    *group_shape.last_mut().expect("non-empty") = (cols / GROUP) as i32;
    Ok(GgufTensor::Quantized(Quantized {
        weight: Array::from_slice(&words, &packed_shape)?,
        scales: Array::from_slice(&scales, &group_shape)?,
        biases: Some(Array::from_slice(&biases, &group_shape)?),
        spec: QuantSpec { group_size: GROUP as i32, bits: bits as i32, mode: QuantMode::Affine },
    }))
}

/// IEEE half to single precision, subnormals, infinities and NaN included.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exponent = ((bits >> 10) & 0x1f) as u32;
    let mantissa = (bits & 0x3ff) as u32;
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        // Subnormal: normalise into single precision's wider exponent range.
        (0, m) => {
            let shift = m.leading_zeros() - 21;
            ((127 - 15 + 1 - shift) << 23) | ((m << shift) & 0x3ff) << 13
        }
        (0x1f, m) => 0x7f80_0000 | (m << 13),
        (e, m) => ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(sign | magnitude)
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn half_precision_decodes_every_class() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert!(f16_to_f32(0x7c00).is_infinite() && f16_to_f32(0x7e00).is_nan());
    }
}
