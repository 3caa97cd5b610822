// The portable reference path for every format: the same integer dots and the same float
// operations, in the same order per output, as the SIMD kernels (so they agree bit for bit),
// written plainly over the layout readers. Also the fallback where no SIMD path exists.
#include <cmath>

#include "codec.h"
#include "kernels.h"

namespace mlxcel::bq {
namespace {

void quantize_scalar(const XRows& x, int r0, int r1, const ActOut& out) {
  const int K = x.K, nb = K / kBlock;
  const bool wide = out.q2 != nullptr;
  const float levels = wide ? static_cast<float>(kLevels16) : static_cast<float>(kLevels8);
  const float inv_ratio = 1.0f / static_cast<float>(kPlaneRatio);
  for (int m = r0; m < r1; ++m)
    for (int b = 0; b < nb; ++b) {
      float xb[kBlock];
      load_x(x, m, b * kBlock, kBlock, xb);
      float amax = 0.0f;
      for (int k = 0; k < kBlock; ++k) amax = std::fmax(amax, std::fabs(xb[k]));
      const float scale = amax / levels;
      const float inv = amax > 0.0f ? levels / amax : 0.0f;
      std::int32_t sum[2] = {0, 0};
      const std::size_t at = static_cast<std::size_t>(m) * K + b * kBlock;
      for (int k = 0; k < kBlock; ++k) {
        const int v = static_cast<int>(std::nearbyint(xb[k] * inv));
        if (wide) {
          // v / 255 is never a tie (255 is odd) and its float rounding is far below the 1/510
          // that separates it from one, so q1 is round(v / 255) exactly and |q2| <= 127.
          const int q1 = static_cast<int>(std::nearbyint(static_cast<float>(v) * inv_ratio));
          out.q[at + k] = static_cast<std::int8_t>(q1);
          out.q2[at + k] = static_cast<std::int8_t>(v - kPlaneRatio * q1);
        } else {
          out.q[at + k] = static_cast<std::int8_t>(v);
        }
        sum[k / 16] += v;
      }
      const std::size_t i = static_cast<std::size_t>(m) * nb + b;
      out.d[i] = scale;
      out.s16[2 * i] = sum[0];
      out.s16[2 * i + 1] = sum[1];
      out.s[i] = sum[0] + sum[1];
      out.xs[i] = scale * static_cast<float>(sum[0] + sum[1]);
    }
}

// The integer dot of codes [k0, k1) with the activations' Q (both planes recombined).
inline std::int32_t dot_codes(const int* codes, const std::int8_t* xq, const std::int8_t* xq2, int k0, int k1) {
  std::int32_t dot = 0;
  for (int k = k0; k < k1; ++k)
    dot += codes[k] * (xq2 != nullptr ? kPlaneRatio * xq[k] + xq2[k] : xq[k]);
  return dot;
}

constexpr int kTileM = 8;

void gemm_scalar(const MatView& w, const ActView& a, int g0, int g1, float* y, std::size_t ldy) {
  const CodeKind kind = code_kind(w.fmt);
  const int off = code_offset(w.fmt);
  const bool min = has_min(w.fmt);
  const bool q6k = w.fmt == Fmt::Q6K;
  int codes[kRows][kBlock];
  RowParams rp[kRows];
  float acc[kTileM][kRows];
  for (int g = g0; g < g1; ++g)
    for (int m0 = 0; m0 < a.M; m0 += kTileM) {
      const int mt = a.M - m0 < kTileM ? a.M - m0 : kTileM;
      for (int i = 0; i < mt; ++i)
        for (int r = 0; r < kRows; ++r) acc[i][r] = 0.0f;
      for (int b = 0; b < w.nb; ++b) {
        const std::uint8_t* blk = code_block(w, g, b);
        for (int r = 0; r < kRows; ++r) {
          read_row(kind, blk, r, codes[r]);
          rp[r] = row_params(w, g, b, r);
        }
        for (int i = 0; i < mt; ++i) {
          const std::size_t ab = static_cast<std::size_t>(m0 + i) * a.nb + b;
          const std::size_t xat = static_cast<std::size_t>(m0 + i) * a.K + b * kBlock;
          const std::int8_t* xq = a.q + xat;
          const std::int8_t* xq2 = a.q2 != nullptr ? a.q2 + xat : nullptr;
          const float dx = a.d[ab];
          for (int r = 0; r < kRows; ++r) {
            if (q6k) {
              for (int h = 0; h < 2; ++h) {
                const std::int32_t dot =
                    dot_codes(codes[r], xq, xq2, 16 * h, 16 * h + 16) - off * a.s16[2 * ab + h];
                acc[i][r] = std::fma(static_cast<float>(dot), rp[r].ws[h] * dx, acc[i][r]);
              }
            } else {
              const std::int32_t dot = dot_codes(codes[r], xq, xq2, 0, kBlock) - off * a.s[ab];
              acc[i][r] = std::fma(static_cast<float>(dot), rp[r].ws[0] * dx, acc[i][r]);
              if (min) acc[i][r] = std::fma(rp[r].wm, a.xs[ab], acc[i][r]);
            }
          }
        }
      }
      for (int i = 0; i < mt; ++i)
        for (int r = 0; r < kRows; ++r) {
          const int row = g * kRows + r;
          if (row < w.rows) y[static_cast<std::size_t>(m0 + i) * ldy + row] = acc[i][r];
        }
    }
}

const KernelTable kScalar{"scalar", quantize_scalar, gemm_scalar};

}  // namespace

const KernelTable* scalar_kernels() { return &kScalar; }

}  // namespace mlxcel::bq
