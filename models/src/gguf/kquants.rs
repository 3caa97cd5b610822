//! ggml's K-quant decoders (super-blocks of 256 values), as in ggml's reference
//! `dequantize_row_q{4,5,6}_K`. Q4_K and Q5_K pair a 6-bit scale and min with each 32-value
//! sub-block: sub-block `2i` uses pair `2i` and sub-block `2i + 1` pair `2i + 1` (MLX 0.32.4's own
//! GGUF loader reuses the even pair for the odd sub-block, which is why this is done here).

use super::GgmlType;
use super::tensors::{AffineGroup, f16_to_f32};

const BLOCK: usize = 256;

/// Decodes one super-block into 256 values.
type Decoder = fn(&[u8], &mut [f32]);

/// Float32 values of `bytes` (whole super-blocks of `kind`, checked by the header parser).
pub(super) fn dequantize(kind: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let (size, decode): (usize, Decoder) = match kind {
        GgmlType::Q4K => (144, q4_k),
        GgmlType::Q5K => (176, q5_k),
        GgmlType::Q6K => (210, q6_k),
        other => unreachable!("{other:?} is not a K type"),
    };
    let mut out = vec![0f32; bytes.len() / size * BLOCK];
    for (block, values) in bytes.chunks_exact(size).zip(out.chunks_exact_mut(BLOCK)) {
        decode(block, values);
    }
    out
}

/// Q4_K or Q5_K super-blocks as MLX affine groups of 32: sub-block `j` is
/// `(d * sc_j) * code - (dmin * m_j)` with 6-bit `sc_j`, `m_j`, both products exact in float32.
pub(super) fn affine_groups(kind: GgmlType, bytes: &[u8]) -> impl Iterator<Item = AffineGroup> + '_ {
    let size = match kind {
        GgmlType::Q4K => 144,
        GgmlType::Q5K => 176,
        other => unreachable!("{other:?} has no exact affine form"),
    };
    bytes.chunks_exact(size).flat_map(move |block| {
        let (d, dmin) = (half(block, 0), half(block, 2));
        let packed = &block[4..16];
        (0..8).map(move |j| {
            let (sc, m) = scale_min(j, packed);
            let mut codes = [0u8; 32];
            let chunk = j / 2;
            for (l, code) in codes.iter_mut().enumerate() {
                *code = match kind {
                    GgmlType::Q4K => {
                        let q = block[16 + 32 * chunk + l];
                        if j % 2 == 0 { q & 0x0f } else { q >> 4 }
                    }
                    _ => {
                        let (high, low) = (&block[16..48], &block[48..176]);
                        let q = low[32 * chunk + l];
                        let nibble = if j % 2 == 0 { q & 0x0f } else { q >> 4 };
                        nibble | (((high[l] >> j) & 1) << 4)
                    }
                };
            }
            AffineGroup { codes, scale: d * sc, bias: -(dmin * m) }
        })
    })
}

fn half(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// The 6-bit (scale, min) of sub-block `j` from the 12 packed bytes.
fn scale_min(j: usize, packed: &[u8]) -> (f32, f32) {
    let (scale, min) = if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        ((packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4), (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4))
    };
    (scale as f32, min as f32)
}

/// d (f16), dmin (f16), 12 bytes of scales/mins, 128 bytes of 4-bit codes.
fn q4_k(block: &[u8], out: &mut [f32]) {
    let (d, dmin) = (half(block, 0), half(block, 2));
    let (packed, codes) = (&block[4..16], &block[16..144]);
    for chunk in 0..4 {
        let (s1, m1) = scale_min(2 * chunk, packed);
        let (s2, m2) = scale_min(2 * chunk + 1, packed);
        let q = &codes[32 * chunk..32 * chunk + 32];
        let y = &mut out[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            y[l] = d * s1 * (q[l] & 0x0f) as f32 - dmin * m1;
            y[32 + l] = d * s2 * (q[l] >> 4) as f32 - dmin * m2;
        }
    }
}

/// d, dmin, 12 bytes of scales/mins, 32 bytes of fifth bits, 128 bytes of low nibbles.
fn q5_k(block: &[u8], out: &mut [f32]) {
    let (d, dmin) = (half(block, 0), half(block, 2));
    let (packed, high, low) = (&block[4..16], &block[16..48], &block[48..176]);
    for chunk in 0..4 {
        let (s1, m1) = scale_min(2 * chunk, packed);
        let (s2, m2) = scale_min(2 * chunk + 1, packed);
        let (bit1, bit2) = (1u8 << (2 * chunk), 1u8 << (2 * chunk + 1));
        let q = &low[32 * chunk..32 * chunk + 32];
        let y = &mut out[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            let h1 = if high[l] & bit1 != 0 { 16 } else { 0 };
            let h2 = if high[l] & bit2 != 0 { 16 } else { 0 };
            y[l] = d * s1 * ((q[l] & 0x0f) + h1) as f32 - dmin * m1;
            y[32 + l] = d * s2 * ((q[l] >> 4) + h2) as f32 - dmin * m2;
        }
    }
}

/// 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 signed 8-bit scales, d (f16).
fn q6_k(block: &[u8], out: &mut [f32]) {
    let d = half(block, 208);
    for half_block in 0..2 {
        let ql = &block[64 * half_block..64 * half_block + 64];
        let qh = &block[128 + 32 * half_block..128 + 32 * half_block + 32];
        let scales = &block[192 + 8 * half_block..192 + 8 * half_block + 8];
        let y = &mut out[128 * half_block..128 * half_block + 128];
        for l in 0..32 {
            let s = l / 16;
            let code = |low: u8, shift: u32| ((low | (((qh[l] >> shift) & 3) << 4)) as i32 - 32) as f32;
            let scale = |k: usize| scales[s + 2 * k] as i8 as f32;
            y[l] = d * scale(0) * code(ql[l] & 0x0f, 0);
            y[32 + l] = d * scale(1) * code(ql[32 + l] & 0x0f, 2);
            y[64 + l] = d * scale(2) * code(ql[l] >> 4, 4);
            y[96 + l] = d * scale(3) * code(ql[32 + l] >> 4, 6);
        }
    }
}
