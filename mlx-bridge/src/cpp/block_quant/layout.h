// The repacked layout of block-quantized matrices, shared by the packers, the primitives and every
// per-ISA kernel translation unit.
//
// This header is included by translation units compiled with different -m flags. Everything with
// code in it lives in an anonymous namespace, so no inline function compiled for AVX-512 can be
// picked by the linker for a caller on an AVX2-only machine (the ODR would let it).
//
// Layout. Rows are interleaved in groups of 16 (the last group zero-padded). Within a group the
// columns are cut into code blocks of 32. A block's codes are 8 "chunks" of 64 bytes: chunk c
// holds, for rows r = 0..15, the 4 codes of columns 4c..4c+3 at bytes 4r..4r+3. That is what a
// u8 x s8 dot instruction (vpdpbusd, or vpmaddubsw + vpmaddwd) consumes with the activation's 4
// bytes broadcast: each 32-bit lane accumulates one row, so 16 rows come out in one zmm (or two
// ymm) with no horizontal sums, and one decoded weight chunk serves every activation row of a
// tile. Narrow codes are stored in bit planes over the same 64-byte chunk geometry:
//
//   4-bit: 4 x 64 bytes; byte i of plane p = chunk p (low nibble) | chunk p + 4 (high nibble)
//   5-bit: the 4-bit planes, then 64 bytes whose bit c is bit 4 of chunk c
//   6-bit: the 4-bit planes, then 2 x 64 bytes whose bits 2j..2j+1 of plane h are bits 4..5 of
//          chunk 4h + j
//   8-bit: the 8 chunks as they are (signed codes)
//
// All code blocks of a row group are contiguous (group-major, then block), and the per-block
// parameters (scales, mins; K-quant super-block scales decoded to bytes) live in a second plane,
// also group-major, 16 rows side by side so one vector load fetches a parameter for every row.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mlxcel::bq {

enum class Fmt : std::uint8_t { Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4K, Q5K, Q6K, Affine4, Affine8 };
enum class ParamType : std::uint8_t { F16, BF16, F32 };
enum class CodeKind : std::uint8_t { Nib4, Nib5, Nib6, Byte8 };

constexpr int kRows = 16;    // rows per interleaved group
constexpr int kBlock = 32;   // columns per code block
constexpr int kChunk = 64;   // bytes per chunk: 16 rows x 4 codes
constexpr int kSuper = 256;  // columns per K-quant super-block

// Everything a kernel needs to read one matrix.
struct MatView {
  Fmt fmt;
  ParamType ptype;     // affine scales/biases; GGUF formats are always f16
  int group;           // affine group length (32 or 64); the format's block length otherwise
  int rows;            // logical rows
  int cols;
  int groups;          // row groups of 16
  int nb;              // code blocks of 32 per row
  const std::uint8_t* codes;
  const std::uint8_t* params;
  std::size_t code_group_bytes;   // codes of one row group
  std::size_t param_group_bytes;  // parameters of one row group
};

// How activations are rounded per block of 32 values, both with a scale d = max|x| / L and
// codes Q = round(x / d):
//   Int8:  L = 127, Q one int8 (llama.cpp's scheme): off by up to 1/254 of the block's largest.
//   Int16: L = 127 * 255 = 32385, Q held as two int8 planes Q = 255 q1 + q2, so the kernels use
//          the same u8 x s8 dot instructions on each plane with the weight codes in registers.
//          255 being odd, every Q splits with both planes in [-127, 127] (a ratio of 256 would
//          leave a low plane of +-128 for 1/256 of the values, which the AVX2 sign trick for
//          signed codes cannot take); off by up to 1/64770 of the block's largest.
enum class Precision : std::uint8_t { Int8, Int16 };
constexpr int kPlaneRatio = 255;
constexpr int kLevels8 = 127, kLevels16 = 127 * kPlaneRatio;

// One call's activations quantized per block of 32: x ~= d[b] * Q, Q = q (Int8) or
// 255 q + q2 (Int16), over columns [32b, 32b + 32). s16 are the sums of Q over each 16 (Q6_K's
// scales are per 16), s their sum per 32 and xs = d * s, the block's sum in float for formats
// with a min or bias. Whatever the precision, a kernel's float arithmetic is the same: only the
// integer dot of a block changes.
struct ActView {
  const std::int8_t* q;   // [M][K]: Q (Int8) or its high plane q1 (Int16)
  const std::int8_t* q2;  // [M][K]: the low plane (Int16); null for Int8
  const float* d;         // [M][nb]
  const std::int32_t* s;  // [M][nb]
  const std::int32_t* s16;// [M][2 nb]
  const float* xs;        // [M][nb]
  int M;
  int K;
  int nb;
};

// Where quantize writes: ActView's buffers, row r of a matrix of K columns at q + r K,
// d + r nb, ... (q2 null: Int8).
struct ActOut {
  std::int8_t* q;
  std::int8_t* q2;
  float* d;
  std::int32_t* s;
  std::int32_t* s16;
  float* xs;
};

// Activation rows as the caller holds them: row m's K values at rows[m], consecutive.
enum class XType : std::uint8_t { F32, F16, BF16 };
struct XRows {
  const void* const* rows;
  XType type;
  int K;
};

// The kernels of one instruction set.
struct KernelTable {
  const char* name;
  // Quantizes rows [r0, r1) of x (K a multiple of 32) into out's rows [r0, r1).
  void (*quantize)(const XRows& x, int r0, int r1, const ActOut& out);
  // y[m][r] for row groups [g0, g1) of `w` and every activation row; ldy is y's row stride.
  void (*gemm)(const MatView& w, const ActView& a, int g0, int g1, float* y, std::size_t ldy);
};

namespace {

inline CodeKind code_kind(Fmt f) {
  switch (f) {
    case Fmt::Q8_0:
    case Fmt::Affine8: return CodeKind::Byte8;
    case Fmt::Q5_0:
    case Fmt::Q5_1:
    case Fmt::Q5K: return CodeKind::Nib5;
    case Fmt::Q6K: return CodeKind::Nib6;
    default: return CodeKind::Nib4;
  }
}

inline std::size_t code_block_bytes(CodeKind k) {
  switch (k) {
    case CodeKind::Nib4: return 256;
    case CodeKind::Nib5: return 320;
    case CodeKind::Nib6: return 384;
    case CodeKind::Byte8: return 512;
  }
  return 0;
}

inline std::size_t param_size(ParamType p) { return p == ParamType::F32 ? 4 : 2; }

// Parameter bytes of one row group.
inline std::size_t param_group_bytes(Fmt f, ParamType p, int group, int cols) {
  const std::size_t nb = static_cast<std::size_t>(cols) / kBlock;
  const std::size_t ns = static_cast<std::size_t>(cols) / kSuper;
  switch (f) {
    case Fmt::Q8_0:
    case Fmt::Q4_0:
    case Fmt::Q5_0: return nb * kRows * 2;       // d
    case Fmt::Q4_1:
    case Fmt::Q5_1: return nb * kRows * 4;       // d, m
    case Fmt::Q4K:
    case Fmt::Q5K: return ns * kRows * (4 + 16); // d, dmin, 8 scales, 8 mins
    case Fmt::Q6K: return ns * kRows * (2 + 16); // d, 16 signed scales
    case Fmt::Affine4:
    case Fmt::Affine8:
      return static_cast<std::size_t>(cols / group) * kRows * 2 * param_size(p);  // scale, bias
  }
  return 0;
}

inline std::size_t align_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

struct Layout {
  int groups;
  int nb;
  std::size_t code_group_bytes;
  std::size_t param_group_bytes;
  std::size_t params_offset;
  std::size_t total;
};

inline Layout layout_of(Fmt f, ParamType p, int group, int rows, int cols) {
  Layout l{};
  l.groups = (rows + kRows - 1) / kRows;
  l.nb = cols / kBlock;
  l.code_group_bytes = static_cast<std::size_t>(l.nb) * code_block_bytes(code_kind(f));
  l.param_group_bytes = param_group_bytes(f, p, group, cols);
  l.params_offset = align_up(static_cast<std::size_t>(l.groups) * l.code_group_bytes, 64);
  l.total = l.params_offset + static_cast<std::size_t>(l.groups) * l.param_group_bytes;
  return l;
}

// IEEE half and bfloat16 to float, without F16C (the scalar path and the packers).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h >> 15) << 31;
  std::uint32_t exp = (h >> 10) & 0x1f;
  std::uint32_t man = h & 0x3ff;
  std::uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {
      // Subnormal: renormalise into float's wider exponent range.
      int shift = 0;
      while ((man & 0x400) == 0) {
        man <<= 1;
        ++shift;
      }
      man &= 0x3ff;
      bits = sign | (static_cast<std::uint32_t>(127 - 15 + 1 - shift) << 23) | (man << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float out;
  __builtin_memcpy(&out, &bits, 4);
  return out;
}

inline float bf16_to_float(std::uint16_t h) {
  const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
  float out;
  __builtin_memcpy(&out, &bits, 4);
  return out;
}

inline std::uint16_t load_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}

inline float load_param(const std::uint8_t* base, ParamType p, std::size_t index) {
  switch (p) {
    case ParamType::F16: return half_to_float(load_u16(base + 2 * index));
    case ParamType::BF16: return bf16_to_float(load_u16(base + 2 * index));
    case ParamType::F32: {
      float v;
      __builtin_memcpy(&v, base + 4 * index, 4);
      return v;
    }
  }
  return 0.0f;
}

}  // namespace
}  // namespace mlxcel::bq
