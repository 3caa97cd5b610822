// The portable reference path for every format: the same integer dots and the same float
// operations, in the same order per output, as the SIMD kernels (so they agree bit for bit),
// written plainly over the layout readers. Also the fallback where no SIMD path exists.
#include <cmath>

#include "codec.h"
#include "kernels.h"

namespace mlxcel::bq {
namespace {

void quantize_scalar(const float* x, int M, int K, std::int8_t* q, float* d, std::int32_t* s,
                     std::int32_t* s16, float* xs) {
  const int nb = K / kBlock;
  for (int m = 0; m < M; ++m)
    for (int b = 0; b < nb; ++b) {
      const float* xb = x + static_cast<std::size_t>(m) * K + b * kBlock;
      float amax = 0.0f;
      for (int k = 0; k < kBlock; ++k) amax = std::fmax(amax, std::fabs(xb[k]));
      const float scale = amax / 127.0f;
      const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
      std::int32_t sum[2] = {0, 0};
      std::int8_t* qb = q + static_cast<std::size_t>(m) * K + b * kBlock;
      for (int k = 0; k < kBlock; ++k) {
        const int v = static_cast<int>(std::nearbyint(xb[k] * inv));
        qb[k] = static_cast<std::int8_t>(v);
        sum[k / 16] += v;
      }
      const std::size_t i = static_cast<std::size_t>(m) * nb + b;
      d[i] = scale;
      s16[2 * i] = sum[0];
      s16[2 * i + 1] = sum[1];
      s[i] = sum[0] + sum[1];
      xs[i] = scale * static_cast<float>(sum[0] + sum[1]);
    }
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
          const std::int8_t* xq = a.q + static_cast<std::size_t>(m0 + i) * a.K + b * kBlock;
          const float dx = a.d[ab];
          for (int r = 0; r < kRows; ++r) {
            if (q6k) {
              for (int h = 0; h < 2; ++h) {
                std::int32_t dot = 0;
                for (int k = 16 * h; k < 16 * h + 16; ++k) dot += codes[r][k] * xq[k];
                dot -= off * a.s16[2 * ab + h];
                acc[i][r] = std::fma(static_cast<float>(dot), rp[r].ws[h] * dx, acc[i][r]);
              }
            } else {
              std::int32_t dot = 0;
              for (int k = 0; k < kBlock; ++k) dot += codes[r][k] * xq[k];
              dot -= off * a.s[ab];
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
