// Every SIMD kernel table against the scalar one, bit for bit, on random layouts (all code
// patterns, sane scales) without MLX: the way to check the NEON path from an x86 machine, under
// qemu. The Rust tests (tests/block_quant.rs) cover the x86 paths through the full stack.
//
//   mlx-bridge/tests/cpp/build.sh && /tmp/bq-tools/kernels_vs_scalar
//   qemu-aarch64 -cpu max /tmp/bq-tools/kernels_vs_scalar_neon
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels.h"
#include "layout.h"

using namespace mlxcel::bq;

#if !defined(__aarch64__)
// isa.cc supplies this on x86 builds; the harness does without isa.cc.
const KernelTable* mlxcel::bq::neon_kernels() { return nullptr; }
#endif

namespace {

std::uint64_t state = 0x2545f4914f6cdd1dull;
std::uint32_t next() {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return static_cast<std::uint32_t>(state >> 16);
}

// Small positive or negative values in every parameter slot, in the slot's encoding.
void fill_params(std::uint8_t* p, std::size_t n, ParamType pt, bool kquant_bytes) {
  if (kquant_bytes) {
    for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(next());
    return;
  }
  const std::size_t es = param_size(pt);
  for (std::size_t i = 0; i + es <= n; i += es) {
    const float v = ((next() % 2001) - 1000) * 1e-5f;
    if (pt == ParamType::F32) {
      std::memcpy(p + i, &v, 4);
    } else if (pt == ParamType::BF16) {
      std::uint32_t b;
      std::memcpy(&b, &v, 4);
      const std::uint16_t h = static_cast<std::uint16_t>(b >> 16);
      std::memcpy(p + i, &h, 2);
    } else {
      // A half in [2^-15, 2^-6) with a random sign: exponent 0..9 above the minimum normal.
      const std::uint16_t h = static_cast<std::uint16_t>(((next() & 1) << 15) | ((1 + next() % 9) << 10) | (next() & 0x3ff));
      std::memcpy(p + i, &h, 2);
    }
  }
}

}  // namespace

int main() {
  struct Case {
    Fmt fmt;
    ParamType pt;
    int group;
  };
  const Case cases[] = {
      {Fmt::Q8_0, ParamType::F16, 32},     {Fmt::Q4_0, ParamType::F16, 32},     {Fmt::Q4_1, ParamType::F16, 32},
      {Fmt::Q5_0, ParamType::F16, 32},     {Fmt::Q5_1, ParamType::F16, 32},     {Fmt::Q4K, ParamType::F16, 256},
      {Fmt::Q5K, ParamType::F16, 256},     {Fmt::Q6K, ParamType::F16, 256},     {Fmt::Affine4, ParamType::F16, 32},
      {Fmt::Affine4, ParamType::BF16, 64}, {Fmt::Affine4, ParamType::F32, 32},  {Fmt::Affine8, ParamType::F16, 64},
      {Fmt::Affine8, ParamType::BF16, 32}, {Fmt::Affine8, ParamType::F32, 64},
  };
  std::vector<const KernelTable*> tables;
#if defined(__aarch64__)
  tables.push_back(neon_kernels());
#else
  tables = {avx2_kernels(), avxvnni_kernels(), avx512vnni_kernels()};
#endif
  const KernelTable* ref = scalar_kernels();
  int failures = 0, checks = 0;
  for (const KernelTable* kt : tables) {
    if (kt == nullptr) continue;
    for (const Case& c : cases)
      for (int rows : {1, 19, 48})
        for (int M : {1, 2, 5, 9, 13}) {
          const int cols = c.fmt == Fmt::Q4K || c.fmt == Fmt::Q5K || c.fmt == Fmt::Q6K ? 512 : 128;
          const Layout l = layout_of(c.fmt, c.pt, c.group, rows, cols);
          std::vector<std::uint8_t> buf(l.total);
          for (std::size_t i = 0; i < l.params_offset; ++i) buf[i] = static_cast<std::uint8_t>(next());
          const bool kq = c.fmt == Fmt::Q4K || c.fmt == Fmt::Q5K || c.fmt == Fmt::Q6K;
          fill_params(buf.data() + l.params_offset, l.total - l.params_offset, c.pt, false);
          if (kq) {
            // d (and dmin) halves stay as filled; the byte scales after them get any value.
            const std::size_t sb = c.fmt == Fmt::Q6K ? 288 : 320, head = c.fmt == Fmt::Q6K ? 32 : 64;
            for (std::size_t at = l.params_offset; at < l.total; at += sb)
              fill_params(buf.data() + at + head, sb - head, c.pt, true);
          }
          const MatView w{c.fmt, c.pt, c.group, rows, cols, l.groups, l.nb, buf.data(), buf.data() + l.params_offset,
                          l.code_group_bytes, l.param_group_bytes};
          std::vector<float> x(static_cast<std::size_t>(M) * cols);
          for (auto& v : x) v = ((next() % 20001) - 10000) * 1e-4f;
          // A block of zeros (scale 0) in the last row.
          if (M > 1)
            for (int k = 0; k < 32; ++k) x[static_cast<std::size_t>(M - 1) * cols + k] = 0.0f;
          // Every input type the kernels read: the values rounded to f16 and bf16 first, so each
          // type's widening is checked against the scalar one's.
          std::vector<std::uint16_t> xh(x.size()), xb(x.size());
          for (std::size_t i = 0; i < x.size(); ++i) {
            std::uint32_t bits;
            std::memcpy(&bits, &x[i], 4);
            xb[i] = static_cast<std::uint16_t>(bits >> 16);
            xh[i] = static_cast<std::uint16_t>(((bits >> 16) & 0x8000) | ((next() % 10 + 5) << 10) | (bits & 0x3ff));
          }
          const std::size_t nb = x.size() / 32;
          for (XType xt : {XType::F32, XType::F16, XType::BF16})
            for (bool wide : {false, true}) {
              std::vector<const void*> xrows(M);
              for (int m = 0; m < M; ++m) {
                const std::size_t at = static_cast<std::size_t>(m) * cols;
                xrows[m] = xt == XType::F32   ? static_cast<const void*>(&x[at])
                           : xt == XType::F16 ? static_cast<const void*>(&xh[at])
                                              : static_cast<const void*>(&xb[at]);
              }
              const XRows xr{xrows.data(), xt, cols};
              std::vector<std::int8_t> q0(x.size()), q1(x.size()), p0(x.size()), p1(x.size());
              std::vector<float> d0(nb), d1(nb), xs0(nb), xs1(nb);
              std::vector<std::int32_t> s0(nb), s1(nb), t0(2 * nb), t1(2 * nb);
              const ActOut o0{q0.data(), wide ? p0.data() : nullptr, d0.data(), s0.data(), t0.data(), xs0.data()};
              const ActOut o1{q1.data(), wide ? p1.data() : nullptr, d1.data(), s1.data(), t1.data(), xs1.data()};
              ref->quantize(xr, 0, M, o0);
              // In two calls, as threads share out a long prompt's rows.
              kt->quantize(xr, 0, M / 2, o1);
              kt->quantize(xr, M / 2, M, o1);
              ++checks;
              if (q0 != q1 || p0 != p1 || std::memcmp(d0.data(), d1.data(), nb * 4) || s0 != s1 || t0 != t1 ||
                  std::memcmp(xs0.data(), xs1.data(), nb * 4)) {
                std::printf("FAIL %s quantize type=%d wide=%d M=%d\n", kt->name, static_cast<int>(xt), wide, M);
                ++failures;
              }
              if (xt != XType::F32) continue;
              const ActView act{q0.data(), o0.q2, d0.data(), s0.data(), t0.data(), xs0.data(), M, cols, cols / 32};
              std::vector<float> y0(static_cast<std::size_t>(M) * rows, -1.0f), y1(y0);
              ref->gemm(w, act, 0, l.groups, y0.data(), rows);
              kt->gemm(w, act, 0, l.groups, y1.data(), rows);
              ++checks;
              if (std::memcmp(y0.data(), y1.data(), y0.size() * 4) != 0) {
                std::printf("FAIL %s fmt=%d ptype=%d rows=%d M=%d wide=%d (y0[0]=%g y1[0]=%g)\n", kt->name,
                            static_cast<int>(c.fmt), static_cast<int>(c.pt), rows, M, wide, y0[0], y1[0]);
                ++failures;
              }
            }
        }
  }
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures != 0;
}
