// aarch64 kernels: the 4-bit and 8-bit code kinds (Q4_0, Q4_1, Q4_K, Q8_0, affine 4/8-bit) with
// the ARMv8.2 dot-product instructions, over the same layout and with the same operation order as
// kernels_scalar.cc; 5- and 6-bit codes (Q5_*, Q6_K) use the scalar kernel. build.rs compiles
// this file with +dotprod; isa.cc offers it only where the CPU reports the instructions.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cstring>

#include "codec.h"
#include "kernels.h"

#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

namespace mlxcel::bq {
namespace {

// 16 rows: four quarters of 4 rows x 4 bytes (or 4 rows of one lane each).
struct VI {
  int32x4_t q[4];
};
struct VB {
  int8x16_t q[4];
};
struct VF {
  float32x4_t q[4];
};

inline VB load_bytes(const std::uint8_t* p) {
  VB v;
  for (int i = 0; i < 4; ++i) v.q[i] = vreinterpretq_s8_u8(vld1q_u8(p + 16 * i));
  return v;
}

inline int8x16_t bcast32(const std::int8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

inline void dot_add(VI& acc, const VB& codes, const std::int8_t* x) {
  const int8x16_t xb = bcast32(x);
  for (int i = 0; i < 4; ++i) acc.q[i] = vdotq_s32(acc.q[i], codes.q[i], xb);
}

inline VF load_f16(const std::uint8_t* p) {
  VF v;
  for (int i = 0; i < 4; ++i) {
    float16x4_t h;
    std::memcpy(&h, p + 8 * i, 8);
    v.q[i] = vcvt_f32_f16(h);
  }
  return v;
}

inline VF load_params(const std::uint8_t* p, ParamType pt) {
  VF v;
  if (pt == ParamType::F16) return load_f16(p);
  for (int i = 0; i < 4; ++i) {
    if (pt == ParamType::F32) {
      v.q[i] = vld1q_f32(reinterpret_cast<const float*>(p) + 4 * i);
    } else {
      const uint16x4_t h = vld1_u16(reinterpret_cast<const std::uint16_t*>(p) + 4 * i);
      v.q[i] = vreinterpretq_f32_u32(vshll_n_u16(h, 16));
    }
  }
  return v;
}

inline VF load_u8f(const std::uint8_t* p) {
  const uint8x16_t b = vld1q_u8(p);
  const uint16x8_t lo = vmovl_u8(vget_low_u8(b)), hi = vmovl_u8(vget_high_u8(b));
  VF v;
  v.q[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
  v.q[1] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo)));
  v.q[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)));
  v.q[3] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(hi)));
  return v;
}

inline VF mul(const VF& a, const VF& b) {
  VF v;
  for (int i = 0; i < 4; ++i) v.q[i] = vmulq_f32(a.q[i], b.q[i]);
  return v;
}

// One row group against one activation row (the scalar kernel's arithmetic, 16 rows at once).
// Int16 activations (W): each code vector is dotted with both planes, recombined per block as
// 255 * hi + lo.
template <bool W>
void tile(const MatView& w, const ActView& a, int g, int m, float* y, std::size_t ldy) {
  const CodeKind kind = code_kind(w.fmt);
  const int off = code_offset(w.fmt);
  const bool min = has_min(w.fmt);
  const std::size_t bb = code_block_bytes(kind);
  const std::uint8_t* cb = w.codes + static_cast<std::size_t>(g) * w.code_group_bytes;
  const std::uint8_t* pg = w.params + static_cast<std::size_t>(g) * w.param_group_bytes;
  VF acc;
  for (int i = 0; i < 4; ++i) acc.q[i] = vdupq_n_f32(0.0f);
  for (int b = 0; b < a.nb; ++b, cb += bb) {
    const std::size_t at = static_cast<std::size_t>(m) * a.K + b * kBlock;
    const std::int8_t* x = a.q + at;
    const std::int8_t* x2 = W ? a.q2 + at : x;
    VI dot, dot2;
    for (int i = 0; i < 4; ++i) dot.q[i] = dot2.q[i] = vdupq_n_s32(0);
    if (kind == CodeKind::Nib4) {
      for (int p = 0; p < 4; ++p) {
        VB raw = load_bytes(cb + 64 * p), lo, hi;
        for (int i = 0; i < 4; ++i) {
          const uint8x16_t r = vreinterpretq_u8_s8(raw.q[i]);
          lo.q[i] = vreinterpretq_s8_u8(vandq_u8(r, vdupq_n_u8(0x0f)));
          hi.q[i] = vreinterpretq_s8_u8(vshrq_n_u8(r, 4));
        }
        dot_add(dot, lo, x + 4 * p);
        dot_add(dot, hi, x + 4 * p + 16);
        if (W) {
          dot_add(dot2, lo, x2 + 4 * p);
          dot_add(dot2, hi, x2 + 4 * p + 16);
        }
      }
    } else {
      for (int c = 0; c < 8; ++c) {
        const VB codes = load_bytes(cb + 64 * c);
        dot_add(dot, codes, x + 4 * c);
        if (W) dot_add(dot2, codes, x2 + 4 * c);
      }
    }
    if (W)
      for (int i = 0; i < 4; ++i) dot.q[i] = vmlaq_n_s32(dot2.q[i], dot.q[i], kPlaneRatio);
    VF ws, wm;
    switch (w.fmt) {
      case Fmt::Q4_0:
      case Fmt::Q8_0: ws = load_f16(pg + b * 32); break;
      case Fmt::Q4_1:
        ws = load_f16(pg + b * 64);
        wm = load_f16(pg + b * 64 + 32);
        break;
      case Fmt::Q4K: {
        const std::uint8_t* sb = pg + (b / 8) * 320;
        ws = mul(load_f16(sb), load_u8f(sb + 64 + 16 * (b % 8)));
        wm = mul(load_f16(sb + 32), load_u8f(sb + 192 + 16 * (b % 8)));
        for (int i = 0; i < 4; ++i) wm.q[i] = vnegq_f32(wm.q[i]);
        break;
      }
      default: {
        const std::size_t es = param_size(w.ptype);
        const std::uint8_t* gp = pg + static_cast<std::size_t>(w.group == 64 ? b >> 1 : b) * 32 * es;
        ws = load_params(gp, w.ptype);
        wm = load_params(gp + 16 * es, w.ptype);
      }
    }
    const std::size_t ab = static_cast<std::size_t>(m) * a.nb + b;
    const float32x4_t dx = vdupq_n_f32(a.d[ab]);
    const int32x4_t corr = vdupq_n_s32(off * a.s[ab]);
    for (int i = 0; i < 4; ++i) {
      const float32x4_t t = vcvtq_f32_s32(vsubq_s32(dot.q[i], corr));
      acc.q[i] = vfmaq_f32(acc.q[i], t, vmulq_f32(ws.q[i], dx));
      if (min) acc.q[i] = vfmaq_f32(acc.q[i], wm.q[i], vdupq_n_f32(a.xs[ab]));
    }
  }
  float out[kRows];
  for (int i = 0; i < 4; ++i) vst1q_f32(out + 4 * i, acc.q[i]);
  const int valid = w.rows - g * kRows < kRows ? w.rows - g * kRows : kRows;
  for (int r = 0; r < valid; ++r) y[static_cast<std::size_t>(m) * ldy + g * kRows + r] = out[r];
}

void gemm(const MatView& w, const ActView& a, int g0, int g1, float* y, std::size_t ldy) {
  const CodeKind kind = code_kind(w.fmt);
  if (kind == CodeKind::Nib5 || kind == CodeKind::Nib6) return scalar_kernels()->gemm(w, a, g0, g1, y, ldy);
  for (int g = g0; g < g1; ++g)
    for (int m = 0; m < a.M; ++m) {
      if (a.q2 != nullptr)
        tile<true>(w, a, g, m, y, ldy);
      else
        tile<false>(w, a, g, m, y, ldy);
    }
}

}  // namespace

const KernelTable* neon_kernels() {
  static const KernelTable table{"neon", scalar_kernels()->quantize, gemm};
#if defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) ? &table : nullptr;
#else
  // Apple silicon, the other aarch64 target here, has the dot-product instructions throughout.
  return &table;
#endif
}

}  // namespace mlxcel::bq

#endif
