// Portable readers and writers of the repacked layout (layout.h): the packers, dequantize/gather
// and the scalar reference kernel use these; the SIMD kernels read the same bytes their own way.
#pragma once

#include "layout.h"

namespace mlxcel::bq {
namespace {

// The integer offset subtracted from a code before its scale applies (value = ws * (code - off)
// + wm). Affine 8-bit codes are stored as q - 128 so that every 8-bit format is signed.
inline int code_offset(Fmt f) {
  switch (f) {
    case Fmt::Q4_0: return 8;
    case Fmt::Q5_0: return 16;
    case Fmt::Q6K: return 32;
    case Fmt::Affine8: return -128;
    default: return 0;
  }
}

inline bool has_min(Fmt f) {
  switch (f) {
    case Fmt::Q4_1:
    case Fmt::Q5_1:
    case Fmt::Q4K:
    case Fmt::Q5K:
    case Fmt::Affine4:
    case Fmt::Affine8: return true;
    default: return false;
  }
}

// 8 chunks of 64 bytes: V[c][4 r + t] is the code of row r, column 4 c + t of a block.
struct BlockCodes {
  std::uint8_t v[8][kChunk];
};

inline void write_block(CodeKind kind, const BlockCodes& bc, std::uint8_t* out) {
  if (kind == CodeKind::Byte8) {
    for (int c = 0; c < 8; ++c)
      for (int i = 0; i < kChunk; ++i) out[c * kChunk + i] = bc.v[c][i];
    return;
  }
  for (int p = 0; p < 4; ++p)
    for (int i = 0; i < kChunk; ++i)
      out[p * kChunk + i] =
          static_cast<std::uint8_t>((bc.v[p][i] & 0x0f) | ((bc.v[p + 4][i] & 0x0f) << 4));
  if (kind == CodeKind::Nib5) {
    for (int i = 0; i < kChunk; ++i) {
      unsigned bits = 0;
      for (int c = 0; c < 8; ++c) bits |= ((bc.v[c][i] >> 4) & 1u) << c;
      out[256 + i] = static_cast<std::uint8_t>(bits);
    }
  } else if (kind == CodeKind::Nib6) {
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < kChunk; ++i) {
        unsigned bits = 0;
        for (int j = 0; j < 4; ++j) bits |= ((bc.v[4 * h + j][i] >> 4) & 3u) << (2 * j);
        out[256 + h * kChunk + i] = static_cast<std::uint8_t>(bits);
      }
  }
}

// The 32 codes of row r (0..15) of one code block, as integers (8-bit codes signed).
inline void read_row(CodeKind kind, const std::uint8_t* blk, int r, int out[kBlock]) {
  for (int c = 0; c < 8; ++c)
    for (int t = 0; t < 4; ++t) {
      const int i = 4 * r + t;
      int code;
      if (kind == CodeKind::Byte8) {
        code = static_cast<std::int8_t>(blk[c * kChunk + i]);
      } else {
        code = c < 4 ? blk[c * kChunk + i] & 0x0f : blk[(c - 4) * kChunk + i] >> 4;
        if (kind == CodeKind::Nib5) code |= ((blk[256 + i] >> c) & 1) << 4;
        if (kind == CodeKind::Nib6) code |= ((blk[256 + (c / 4) * kChunk + i] >> (2 * (c % 4))) & 3) << 4;
      }
      out[4 * c + t] = code;
    }
}

inline const std::uint8_t* code_block(const MatView& w, int g, int b) {
  return w.codes + static_cast<std::size_t>(g) * w.code_group_bytes +
         static_cast<std::size_t>(b) * code_block_bytes(code_kind(w.fmt));
}

// Row r's parameters for code block b: value(k) = ws[k / 16] * (code(k) - off) + wm.
// The products are rounded exactly as ggml's and gguf-py's dequantizers round them.
struct RowParams {
  float ws[2];
  float wm;
};

inline RowParams row_params(const MatView& w, int g, int b, int r) {
  const std::uint8_t* p = w.params + static_cast<std::size_t>(g) * w.param_group_bytes;
  RowParams out{{0.0f, 0.0f}, 0.0f};
  switch (w.fmt) {
    case Fmt::Q8_0:
    case Fmt::Q4_0:
    case Fmt::Q5_0:
      out.ws[0] = out.ws[1] = half_to_float(load_u16(p + b * 32 + 2 * r));
      break;
    case Fmt::Q4_1:
    case Fmt::Q5_1:
      out.ws[0] = out.ws[1] = half_to_float(load_u16(p + b * 64 + 2 * r));
      out.wm = half_to_float(load_u16(p + b * 64 + 32 + 2 * r));
      break;
    case Fmt::Q4K:
    case Fmt::Q5K: {
      const std::uint8_t* sb = p + (b / 8) * 320;
      const int j = b % 8;
      const float d = half_to_float(load_u16(sb + 2 * r));
      const float dmin = half_to_float(load_u16(sb + 32 + 2 * r));
      out.ws[0] = out.ws[1] = d * static_cast<float>(sb[64 + j * 16 + r]);
      out.wm = -(dmin * static_cast<float>(sb[192 + j * 16 + r]));
      break;
    }
    case Fmt::Q6K: {
      const std::uint8_t* sb = p + (b / 8) * 288;
      const int j = 2 * (b % 8);
      const float d = half_to_float(load_u16(sb + 2 * r));
      out.ws[0] = d * static_cast<float>(static_cast<std::int8_t>(sb[32 + j * 16 + r]));
      out.ws[1] = d * static_cast<float>(static_cast<std::int8_t>(sb[32 + (j + 1) * 16 + r]));
      break;
    }
    case Fmt::Affine4:
    case Fmt::Affine8: {
      const std::size_t es = param_size(w.ptype);
      const std::uint8_t* gp = p + static_cast<std::size_t>(b / (w.group / kBlock)) * 32 * es;
      out.ws[0] = out.ws[1] = load_param(gp, w.ptype, r);
      out.wm = load_param(gp + 16 * es, w.ptype, r);
      break;
    }
  }
  return out;
}

// Activation row m's values [k0, k0 + n) as floats (exact: every XType widens exactly).
inline void load_x(const XRows& x, int m, int k0, int n, float* out) {
  const void* row = x.rows[m];
  for (int k = 0; k < n; ++k) {
    switch (x.type) {
      case XType::F32: out[k] = static_cast<const float*>(row)[k0 + k]; break;
      case XType::F16: out[k] = half_to_float(static_cast<const std::uint16_t*>(row)[k0 + k]); break;
      case XType::BF16: out[k] = bf16_to_float(static_cast<const std::uint16_t*>(row)[k0 + k]); break;
    }
  }
}

// The float values of row r of code block b (the format's own dequantization).
inline void dequantize_row_block(const MatView& w, int g, int b, int r, float* out) {
  int codes[kBlock];
  read_row(code_kind(w.fmt), code_block(w, g, b), r, codes);
  const RowParams rp = row_params(w, g, b, r);
  const int off = code_offset(w.fmt);
  const bool min = has_min(w.fmt);
  for (int k = 0; k < kBlock; ++k) {
    const float v = rp.ws[k / 16] * static_cast<float>(codes[k] - off);
    out[k] = min ? v + rp.wm : v;
  }
}

}  // namespace
}  // namespace mlxcel::bq
