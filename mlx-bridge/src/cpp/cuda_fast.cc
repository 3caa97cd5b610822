// Decode kernels for NVIDIA GPUs, through MLX's custom-kernel API (compiled by NVRTC at run time,
// so the bridge builds anywhere; they run only where MLX's CUDA backend does):
//
// - attention for one query position over a KV cache of any head size up to 256, grouped-query,
//   split over the keys across thread blocks. MLX 0.32.4's own CUDA attention has no fused
//   kernel for head size 256 (Gemma 3n): it runs matmul, softmax and matmul;
// - routed stream mixes: N streams of the hidden state mixed by coefficients that a norm, a
//   router and tanh compute from one stream (Gemma 3n's AltUp predict and correct), one launch
//   per call instead of five kernels and a dozen views;
// - a residual added to an RMS-normed row (Gemma's post-norms, Laurel), optionally a second
//   residual and a scale after it and the norm of the sum as a second output: one launch where
//   MLX runs a norm and one to three elementwise kernels (and a second norm);
// - RMS norm then RoPE over one position's query or key heads (a norm and a rope kernel in MLX).
//
// Each returns nullopt when the call is not one it takes, so MLX's op runs instead. The one-row
// affine products are in cuda_gemv.cc.
#include "mlx-bridge/src/cpp/cuda_fast.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>

#include "mlx-bridge/src/cpp/cuda_fast_common.h"
#include "mlx-bridge/src/cpp/cuda_kernel_source.h"
#include "mlx/fast.h"

namespace mlxcel::cuda_fast {

namespace {

bool& enabled_flag() {
  static bool enabled = false;
  return enabled;
}

}  // namespace

namespace detail {

bool on_gpu(const mx::Stream& s) { return s.device == mx::Device::gpu && enabled_flag(); }

bool is_half(mx::Dtype t) { return t == mx::bfloat16 || t == mx::float16; }

}  // namespace detail

namespace {

using detail::is_half;
using detail::on_gpu;

// A float as a kernel's template argument (MLX's take ints): `__int_as_float(NAME)` in the source.
int float_bits(float v) {
  int bits;
  std::memcpy(&bits, &v, sizeof bits);
  return bits;
}

// ---- Attention for one query position -------------------------------------------------------

// Keys of one partition are taken 32 at a time by each warp: lanes own keys for the scores, then
// own head dimensions for the values, so neither phase needs a reduction per key.
constexpr const char* kAttentionHeader = R"(
#define MLXCEL_NEG_INF __int_as_float(0xff800000)
__device__ inline float mlxcel_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
  return v;
}
__device__ inline float mlxcel_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  return v;
}
)";

constexpr const char* kAttentionPartial = R"(
  constexpr int V = D / 32;
  constexpr int WARPS = 4;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int part = blockIdx.x;
  const int bh = blockIdx.y;
  const int Hkv = k_shape[1], S = k_shape[2];
  [[maybe_unused]] const int B = k_shape[0];
  const int b = bh / Hkv, hk = bh % Hkv;
  const int Hq = Hkv * R;
  __shared__ float qs[R][D];
  for (int i = threadIdx.x; i < R * D; i += blockDim.x) {
    const int r = i / D, d = i % D;
    const int h = hk * R + r;
    qs[r][d] = static_cast<float>(q[b * q_strides[0] + h * q_strides[1] + d * q_strides[3]]) * __int_as_float(SCALE_BITS);
  }
  __syncthreads();
  const int start = part * PART;
  const int end = min(S, start + PART);
  const T* kb = k + b * k_strides[0] + hk * k_strides[1];
  const T* vb = v + b * v_strides[0] + hk * v_strides[1];
  const int64_t ks = k_strides[2], vs = v_strides[2];
  float m[R], l[R], acc[R][V];
  for (int r = 0; r < R; ++r) {
    m[r] = MLXCEL_NEG_INF;
    l[r] = 0.0f;
    for (int j = 0; j < V; ++j) acc[r][j] = 0.0f;
  }
  for (int c0 = start + warp * 32; c0 < end; c0 += WARPS * 32) {
    const int s = c0 + lane;
    const bool valid = s < end;
    float score[R];
    for (int r = 0; r < R; ++r) score[r] = 0.0f;
    if (valid) {
      const T* kr = kb + s * ks;
      for (int d = 0; d < D; d += 8) {
        const uint4 raw = *reinterpret_cast<const uint4*>(kr + d);
        const T* kv = reinterpret_cast<const T*>(&raw);
        for (int j = 0; j < 8; ++j) {
          const float kf = static_cast<float>(kv[j]);
          for (int r = 0; r < R; ++r) score[r] += qs[r][d + j] * kf;
        }
      }
    }
    float p[R];
    for (int r = 0; r < R; ++r) {
      const float chunk_max = mlxcel_warp_max(valid ? score[r] : MLXCEL_NEG_INF);
      const float new_m = fmaxf(m[r], chunk_max);
      const float correction = m[r] == MLXCEL_NEG_INF ? 0.0f : __expf(m[r] - new_m);
      p[r] = valid ? __expf(score[r] - new_m) : 0.0f;
      l[r] = l[r] * correction + mlxcel_warp_sum(p[r]);
      for (int j = 0; j < V; ++j) acc[r][j] *= correction;
      m[r] = new_m;
    }
    const int keys = min(32, end - c0);
    for (int j = 0; j < keys; ++j) {
      const T* vr = vb + (c0 + j) * vs + lane * V;
      float vv[V];
      if constexpr (V == 8) {
        const uint4 raw = *reinterpret_cast<const uint4*>(vr);
        const T* vh = reinterpret_cast<const T*>(&raw);
        for (int t = 0; t < 8; ++t) vv[t] = static_cast<float>(vh[t]);
      } else {
        for (int t = 0; t < V; ++t) vv[t] = static_cast<float>(vr[t]);
      }
      for (int r = 0; r < R; ++r) {
        const float pj = __shfl_sync(0xffffffff, p[r], j);
        for (int t = 0; t < V; ++t) acc[r][t] += pj * vv[t];
      }
    }
  }
  __shared__ float wm[WARPS][R], wl[WARPS][R];
  __shared__ float wacc[WARPS][R][D];
  for (int r = 0; r < R; ++r) {
    if (lane == 0) {
      wm[warp][r] = m[r];
      wl[warp][r] = l[r];
    }
    for (int t = 0; t < V; ++t) wacc[warp][r][lane * V + t] = acc[r][t];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < R * D; i += blockDim.x) {
    const int r = i / D, d = i % D;
    float top = MLXCEL_NEG_INF;
    for (int w = 0; w < WARPS; ++w) top = fmaxf(top, wm[w][r]);
    float total = 0.0f, value = 0.0f;
    for (int w = 0; w < WARPS; ++w) {
      if (wm[w][r] == MLXCEL_NEG_INF) continue;
      const float f = __expf(wm[w][r] - top);
      total += wl[w][r] * f;
      value += wacc[w][r][d] * f;
    }
    const int row = b * Hq + hk * R + r;
)";

// The partial kernel's last lines: the answer itself when one block saw every key, else this
// block's (max, sum, weighted values) for the combine step.
constexpr const char* kAttentionWriteOut = R"(
    out[row * D + d] = static_cast<T>(value / total);
  }
)";
constexpr const char* kAttentionWriteParts = R"(
    const int rows = B * Hq;
    part_acc[(part * rows + row) * D + d] = value;
    if (d == 0) {
      part_ml[(part * rows + row) * 2] = top;
      part_ml[(part * rows + row) * 2 + 1] = total;
    }
  }
)";

constexpr const char* kAttentionCombine = R"(
  const int row = blockIdx.x;
  const int rows = part_acc_shape[1];
  const int parts = part_acc_shape[0];
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float top = MLXCEL_NEG_INF;
    for (int p = 0; p < parts; ++p) top = fmaxf(top, part_ml[(p * rows + row) * 2]);
    float total = 0.0f, value = 0.0f;
    for (int p = 0; p < parts; ++p) {
      const float pm = part_ml[(p * rows + row) * 2];
      if (pm == MLXCEL_NEG_INF) continue;
      const float f = __expf(pm - top);
      total += part_ml[(p * rows + row) * 2 + 1] * f;
      value += part_acc[(p * rows + row) * D + d] * f;
    }
    out[row * D + d] = static_cast<T>(value / total);
  }
)";

// Keys per thread block: enough blocks over a few thousand positions to fill the GPU, few
// enough that the combine step stays small.
constexpr int kKeysPerPartition = 128;

// The final (one partition), split and combine kernels' sources, sharing one file of code.
std::array<KernelSource, 3> attention_sources() {
  const std::string signature =
      "template <typename T, int D, int R, int PART, int SCALE_BITS, typename ShapeT, typename StridesT>\n"
      "__device__ __forceinline__ void ";
  const std::string inputs = "(const T* q, const T* k, const T* v, ";
  const std::string layout = "const ShapeT& k_shape, const StridesT& q_strides, const StridesT& k_strides,\n"
                             "    const StridesT& v_strides) {";
  const std::string definitions =
      std::string(kAttentionHeader) + signature + "mlxcel_attention_decode" + inputs + "T* out, " + layout +
      kAttentionPartial + kAttentionWriteOut + "}\n" + signature + "mlxcel_attention_decode_split" + inputs +
      "float* part_acc, float* part_ml, " + layout + kAttentionPartial + kAttentionWriteParts + "}\n" +
      "template <typename T, int D, typename ShapeT>\n"
      "__device__ __forceinline__ void mlxcel_attention_combine(const float* part_acc, const float* part_ml, T* out,\n"
      "    const ShapeT& part_acc_shape) {" +
      kAttentionCombine + "}\n";
  const std::string layout_args = "k_shape, q_strides, k_strides, v_strides);";
  const auto final = kernel_source("attention", definitions,
                                   "mlxcel_attention_decode<T, D, R, PART, SCALE_BITS>(q, k, v, out, " + layout_args);
  // The same file: the definitions are identical, so the other two only take their calls.
  return {final,
          KernelSource{final.header,
                       "mlxcel_attention_decode_split<T, D, R, PART, SCALE_BITS>(q, k, v, part_acc, part_ml, " +
                           layout_args},
          KernelSource{final.header, "mlxcel_attention_combine<T, D>(part_acc, part_ml, out, part_acc_shape);"}};
}

// ---- Routed stream mixes (AltUp's predict and correct) ----------------------------------------

// One thread block per token row: the RMS norm of the routed row, its N router dot products and
// tanh, the coefficient map, then the mix over the streams, all in one launch. MLX runs that as
// a norm, two matmuls and two elementwise kernels with a dozen views between them, and on CUDA
// each node costs more host time than the arithmetic (docs/benchmarks/h200.md). Roundings follow
// MLX's ops (the norm's and the router's outputs in T, the rest in float32), so the result is
// MLX's composite up to the order of additions.
constexpr const char* kRoutedHeader = R"(
template <int WARPS>
__device__ inline float mlxcel_block_sum(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < WARPS; ++w) total += scratch[w];
  return total;
}
// 1 / sqrt(mean(row^2) + eps) over one row of D values, the block's threads striding over it.
template <typename T, int WARPS>
__device__ inline float mlxcel_inv_rms(const T* row, int D, float eps, float* scratch) {
  float ss = 0.0f;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    const float v = static_cast<float>(row[d]);
    ss += v * v;
  }
  return rsqrtf(mlxcel_block_sum<WARPS>(ss, scratch) / D + eps);
}
// tanh(router . rms_norm(row) * norm_weight), rounded as MLX rounds the norm and the matmul.
// The norm's output is divided by `divisor` in T after the norm, as MLX's ops do (1 is exact).
template <typename T, int N, int WARPS>
__device__ inline void mlxcel_route(const T* row, const T* norm_weight, const T* router, int D, float eps,
                                    float divisor, float* modalities, float* scratch) {
  const float inv = mlxcel_inv_rms<T, WARPS>(row, D, eps, scratch);
  const float t_divisor = static_cast<float>(static_cast<T>(divisor));  // a scalar of the array's dtype
  float dot[N];
  for (int k = 0; k < N; ++k) dot[k] = 0.0f;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    const T scaled = static_cast<T>(static_cast<float>(row[d]) * inv);
    const T weighted = static_cast<T>(static_cast<float>(norm_weight[d]) * static_cast<float>(scaled));
    const float normed = static_cast<float>(static_cast<T>(static_cast<float>(weighted) / t_divisor));
    for (int k = 0; k < N; ++k) dot[k] += normed * static_cast<float>(router[k * D + d]);
  }
  for (int k = 0; k < N; ++k) {
    const float total = mlxcel_block_sum<WARPS>(dot[k], scratch);
    modalities[k] = tanhf(static_cast<float>(static_cast<T>(total)));
  }
}
)";

// y[i] = x[i] + sum_j M[i][j] x[j], M = reshape(coefs @ route(x[ACTIVE]), N x N); x, y [N, rows, D].
constexpr const char* kRoutedMix = R"(
  constexpr int WARPS = 8;
  const int D = x_shape[x_ndim - 1];
  const long rows = gridDim.x;
  const long row = blockIdx.x;
  __shared__ float scratch[WARPS];
  __shared__ float mix[N * N];
  float modalities[N];
  mlxcel_route<T, N, WARPS>(x + (ACTIVE * rows + row) * D, norm_weight, router, D, __int_as_float(EPS_BITS),
                            __int_as_float(DIVISOR_BITS), modalities, scratch);
  if (threadIdx.x < N * N) {
    float c = 0.0f;
    for (int k = 0; k < N; ++k) c += coefs[threadIdx.x * N + k] * modalities[k];
    mix[threadIdx.x] = c;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float xs[N];
    for (int j = 0; j < N; ++j) xs[j] = static_cast<float>(x[(j * rows + row) * D + d]);
    for (int i = 0; i < N; ++i) {
      float acc = xs[i];
      for (int j = 0; j < N; ++j) acc += mix[i * N + j] * xs[j];
      y[(i * rows + row) * D + d] = static_cast<T>(acc);
    }
  }
)";

// y[i] = p[i] + (1 + coefs @ route(h))[i] * (h - p[ACTIVE]); p, y [N, rows, D], h [rows, D].
constexpr const char* kRoutedCorrection = R"(
  constexpr int WARPS = 8;
  const int D = h_shape[h_ndim - 1];
  const long rows = gridDim.x;
  const long row = blockIdx.x;
  __shared__ float scratch[WARPS];
  __shared__ float gain[N];
  float modalities[N];
  const T* hr = h + row * D;
  mlxcel_route<T, N, WARPS>(hr, norm_weight, router, D, __int_as_float(EPS_BITS), __int_as_float(DIVISOR_BITS),
                            modalities, scratch);
  if (threadIdx.x < N) {
    float c = 0.0f;
    for (int k = 0; k < N; ++k) c += coefs[threadIdx.x * N + k] * modalities[k];
    gain[threadIdx.x] = c + 1.0f;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    const float innovation =
        static_cast<float>(static_cast<T>(static_cast<float>(hr[d]) - static_cast<float>(p[(ACTIVE * rows + row) * D + d])));
    for (int i = 0; i < N; ++i) {
      const long at = (i * rows + row) * D + d;
      y[at] = static_cast<T>(static_cast<float>(p[at]) + gain[i] * innovation);
    }
  }
)";

KernelSource routed_stream_mix_source() {
  return kernel_source(
      "routed_stream_mix",
      std::string(kRoutedHeader) +
          "template <typename T, int N, int ACTIVE, int EPS_BITS, int DIVISOR_BITS, typename ShapeT>\n"
          "__device__ __forceinline__ void mlxcel_routed_stream_mix(const T* x, const T* norm_weight,\n"
          "    const T* router, const float* coefs, T* y, const ShapeT& x_shape, int x_ndim) {" +
          kRoutedMix + "}\n",
      "mlxcel_routed_stream_mix<T, N, ACTIVE, EPS_BITS, DIVISOR_BITS>(x, norm_weight, router, coefs, y, x_shape, "
      "x_ndim);");
}

KernelSource routed_stream_correction_source() {
  return kernel_source(
      "routed_stream_correction",
      std::string(kRoutedHeader) +
          "template <typename T, int N, int ACTIVE, int EPS_BITS, int DIVISOR_BITS, typename ShapeT>\n"
          "__device__ __forceinline__ void mlxcel_routed_stream_correction(const T* p, const T* h,\n"
          "    const T* norm_weight, const T* router, const float* coefs, T* y, const ShapeT& h_shape, int h_ndim) {" +
          kRoutedCorrection + "}\n",
      "mlxcel_routed_stream_correction<T, N, ACTIVE, EPS_BITS, DIVISOR_BITS>(p, h, norm_weight, router, coefs, y, "
      "h_shape, h_ndim);");
}

// ---- Residual plus RMS-normed row ----------------------------------------------------------

// One thread block per row: h = ((a + rms_norm(x, w)) + b) * scale, then rms_norm(h, w2), each
// step rounded to T as MLX's ops round it (the norm as MLX's CUDA kernel: T(x * inv), times w in
// T), so the result is the ops' up to the order of the sums of squares.
constexpr const char* kResidualNorm = R"(
template <typename T, bool HAS_B, bool HAS_NORM2, int WARPS>
__device__ __forceinline__ void mlxcel_residual_rms_norm(const T* x, const T* w, const T* a, const T* b,
    const T* w2, T* y, T* y2, int D, float eps, float scale_f, float eps2) {
  const long row = blockIdx.x;
  __shared__ float scratch[WARPS];
  const T* xr = x + row * D;
  const float inv = mlxcel_inv_rms<T, WARPS>(xr, D, eps, scratch);
  const float scale = static_cast<float>(static_cast<T>(scale_f));
  float ss2 = 0.0f;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    const T normed = w[d] * static_cast<T>(static_cast<float>(xr[d]) * inv);
    float h = static_cast<float>(static_cast<T>(static_cast<float>(a[row * D + d]) + static_cast<float>(normed)));
    if constexpr (HAS_B) {
      h = static_cast<float>(static_cast<T>(h + static_cast<float>(b[row * D + d])));
      h = static_cast<float>(static_cast<T>(h * scale));
    }
    y[row * D + d] = static_cast<T>(h);
    ss2 += h * h;
  }
  if constexpr (HAS_NORM2) {
    const float inv2 = rsqrtf(mlxcel_block_sum<WARPS>(ss2, scratch) / D + eps2);
    // Each thread reads back only the elements it wrote.
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
      y2[row * D + d] = w2[d] * static_cast<T>(static_cast<float>(y[row * D + d]) * inv2);
    }
  }
}
)";

// The one-residual and the two-residual forms, sharing one file of code.
std::array<KernelSource, 2> residual_norm_sources() {
  const std::string definitions = std::string(kRoutedHeader) + kResidualNorm;
  const auto add = kernel_source(
      "residual_rms_norm", definitions,
      "mlxcel_residual_rms_norm<T, false, false, 8>(x, w, a, nullptr, nullptr, y, nullptr, x_shape[x_ndim - 1], "
      "__int_as_float(EPS_BITS), 1.0f, 0.0f);");
  return {add, KernelSource{add.header,
                            "mlxcel_residual_rms_norm<T, true, true, 8>(x, w, a, b, w2, y, y2, x_shape[x_ndim - 1], "
                            "__int_as_float(EPS_BITS), __int_as_float(SCALE_BITS), __int_as_float(EPS2_BITS));"}};
}

// ---- RMS norm then RoPE, one position per row ------------------------------------------------

// One thread block per head row (the query or key heads of one decode position): the row's RMS
// norm times its weight, rounded as MLX's norm rounds it (T(x * inv) * w in T), then the split-half
// rotation as MLX's rope kernel computes it (inv_freq = exp2(-i / (D/2) * log2(base)), precise
// sin and cos in float32). Where MLX runs a norm and a RoPE kernel per projection.
constexpr const char* kNormRope = R"(
template <typename T, int WARPS>
__device__ __forceinline__ void mlxcel_rms_norm_rope(const T* x, const T* w, const int* offset, T* y, int D,
    int rows_per_sequence, int offsets, float eps, float log2_base, float scale) {
  const long row = blockIdx.x;
  __shared__ float scratch[WARPS];
  const T* xr = x + row * D;
  const float inv = mlxcel_inv_rms<T, WARPS>(xr, D, eps, scratch);
  const int sequence = static_cast<int>(row / rows_per_sequence);
  const float position = scale * static_cast<float>(offset[offsets == 1 ? 0 : sequence]);
  const int half = D / 2;
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    const float x1 = static_cast<float>(w[i] * static_cast<T>(static_cast<float>(xr[i]) * inv));
    const float x2 = static_cast<float>(w[i + half] * static_cast<T>(static_cast<float>(xr[i + half]) * inv));
    const float theta = position * exp2(-(static_cast<float>(i) / static_cast<float>(half)) * log2_base);
    const float c = cos(theta), s = sin(theta);
    y[row * D + i] = static_cast<T>(x1 * c - x2 * s);
    y[row * D + i + half] = static_cast<T>(x1 * s + x2 * c);
  }
}
)";

KernelSource rms_norm_rope_source() {
  return kernel_source("rms_norm_rope", std::string(kRoutedHeader) + kNormRope,
                       "mlxcel_rms_norm_rope<T, 4>(x, w, offset, y, x_shape[3], x_shape[1], offset_shape[0], "
                       "__int_as_float(EPS_BITS), __int_as_float(LOG2_BASE_BITS), __int_as_float(SCALE_BITS));");
}

constexpr int kRoutedThreads = 256;
constexpr int kMaxStreams = 8;

// The checks both mixes share: N streams [N, ..., D] of one dtype with its norm weight [D] and
// router [N, D], float32 coefficients of `coef_rows` x N, and an active stream among them.
bool routed_arguments_fit(const mx::array& streams, const mx::array& norm_weight, const mx::array& router,
                          const mx::array& coefs, int coef_rows, int active) {
  if (streams.ndim() < 2 || !(is_half(streams.dtype()) || streams.dtype() == mx::float32)) return false;
  const int n = streams.shape(0), D = streams.shape(-1);
  if (n < 1 || n > kMaxStreams || active < 0 || active >= n || coef_rows > kRoutedThreads) return false;
  if (norm_weight.ndim() != 1 || norm_weight.shape(0) != D || norm_weight.dtype() != streams.dtype()) return false;
  if (router.ndim() != 2 || router.shape(0) != n || router.shape(1) != D || router.dtype() != streams.dtype())
    return false;
  return coefs.ndim() == 2 && coefs.shape(0) == coef_rows && coefs.shape(1) == n && coefs.dtype() == mx::float32;
}

// Rows of D values in one dtype, every array of x's shape and each weight [D].
bool residual_norm_fits(const mx::array& x, const mx::array& w, std::initializer_list<const mx::array*> rows,
                        std::initializer_list<const mx::array*> weights) {
  if (x.ndim() < 1 || x.size() == 0 || !(is_half(x.dtype()) || x.dtype() == mx::float32)) return false;
  const int D = x.shape(-1);
  if (static_cast<long>(x.size()) / D > std::numeric_limits<int>::max()) return false;
  for (const auto* r : rows)
    if (r->shape() != x.shape() || r->dtype() != x.dtype()) return false;
  for (const auto* v : weights)
    if (v->ndim() != 1 || v->shape(0) != D || v->dtype() != x.dtype()) return false;
  return w.ndim() == 1 && w.shape(0) == D && w.dtype() == x.dtype();
}

}  // namespace

bool cuda_kernels_enabled() { return enabled_flag(); }
void set_cuda_kernels_enabled(bool enabled) { enabled_flag() = enabled; }

std::optional<mx::array> scaled_dot_product_attention(const mx::array& q, const mx::array& k, const mx::array& v,
                                                      float scale, const std::string& mask_mode,
                                                      const std::optional<mx::array>& mask) {
  auto s = mx::default_stream(mx::default_device());
  if (!on_gpu(s) || mask || !(mask_mode.empty() || mask_mode == "causal")) return std::nullopt;
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4) return std::nullopt;
  const int B = q.shape(0), Hq = q.shape(1), L = q.shape(2), D = q.shape(3);
  const int Hkv = k.shape(1), S = k.shape(2);
  // One query position (causal is then no mask); head sizes the lanes split evenly; halves only.
  if (L != 1 || S < 1 || D % 32 != 0 || D > 256 || k.shape(3) != D || v.shape(3) != D) return std::nullopt;
  if (k.shape(0) != B || v.shape(0) != B || v.shape(1) != Hkv || v.shape(2) != S || Hq % Hkv != 0) return std::nullopt;
  const int R = Hq / Hkv;
  if (R > 8 || !is_half(q.dtype()) || k.dtype() != q.dtype() || v.dtype() != q.dtype()) return std::nullopt;
  // The kernel reads 16-byte vectors of each key and value row.
  if (D % 8 != 0) return std::nullopt;
  const auto dtype = q.dtype();
  const int parts = (S + kKeysPerPartition - 1) / kKeysPerPartition;
  const bool final = parts == 1;
  static const auto sources = attention_sources();
  static auto partial_final = mx::fast::cuda_kernel("mlxcel_attention_decode", {"q", "k", "v"}, {"out"},
                                                    sources[0].source, sources[0].header, false);
  static auto partial = mx::fast::cuda_kernel("mlxcel_attention_decode_split", {"q", "k", "v"},
                                              {"part_acc", "part_ml"}, sources[1].source, sources[1].header, false);
  static auto combine = mx::fast::cuda_kernel("mlxcel_attention_combine", {"part_acc", "part_ml"}, {"out"},
                                              sources[2].source, sources[2].header, true);
  std::vector<std::pair<std::string, mx::fast::TemplateArg>> targs = {
      {"T", dtype}, {"D", D}, {"R", R}, {"PART", kKeysPerPartition}, {"SCALE_BITS", float_bits(scale)}};
  // The scale is a template argument, not an input: a scalar array per call is a host
  // allocation and an upload on every step.
  std::vector<mx::array> inputs = {q, k, v};
  const auto grid = std::make_tuple(parts * 128, B * Hkv, 1);
  const auto block = std::make_tuple(128, 1, 1);
  if (final) {
    return partial_final(inputs, {{B, Hq, 1, D}}, {dtype}, grid, block, targs, std::nullopt, false, s)[0];
  }
  auto parts_out = partial(inputs, {{parts, B * Hq, D}, {parts, B * Hq, 2}}, {mx::float32, mx::float32}, grid, block,
                           targs, std::nullopt, false, s);
  return combine(parts_out, {{B, Hq, 1, D}}, {dtype}, std::make_tuple(B * Hq * std::min(D, 256), 1, 1),
                 std::make_tuple(std::min(D, 256), 1, 1), {{"T", dtype}, {"D", D}}, std::nullopt, false, s)[0];
}

std::optional<mx::array> routed_stream_mix(const mx::array& streams, const mx::array& norm_weight, float eps,
                                           float divisor, const mx::array& router, const mx::array& coefs,
                                           int active) {
  auto s = mx::default_stream(mx::default_device());
  if (!on_gpu(s) || streams.ndim() < 2) return std::nullopt;
  const int n = streams.shape(0);
  if (!routed_arguments_fit(streams, norm_weight, router, coefs, n * n, active)) return std::nullopt;
  const long rows = static_cast<long>(streams.size()) / (static_cast<long>(n) * streams.shape(-1));
  if (rows < 1 || rows > std::numeric_limits<int>::max()) return std::nullopt;
  static const auto source = routed_stream_mix_source();
  static auto kernel = mx::fast::cuda_kernel("mlxcel_routed_stream_mix", {"x", "norm_weight", "router", "coefs"},
                                             {"y"}, source.source, source.header, true);
  return kernel({streams, norm_weight, router, coefs}, {streams.shape()}, {streams.dtype()},
                std::make_tuple(static_cast<int>(rows) * kRoutedThreads, 1, 1), std::make_tuple(kRoutedThreads, 1, 1),
                {{"T", streams.dtype()}, {"N", n}, {"ACTIVE", active}, {"EPS_BITS", float_bits(eps)}, {"DIVISOR_BITS", float_bits(divisor)}}, std::nullopt,
                false, s)[0];
}

std::optional<mx::array> routed_stream_correction(const mx::array& predictions, const mx::array& activated,
                                                  const mx::array& norm_weight, float eps, float divisor,
                                                  const mx::array& router, const mx::array& coefs, int active) {
  auto s = mx::default_stream(mx::default_device());
  if (!on_gpu(s) || predictions.ndim() < 2) return std::nullopt;
  const int n = predictions.shape(0);
  if (!routed_arguments_fit(predictions, norm_weight, router, coefs, n, active)) return std::nullopt;
  // activated is one stream's shape: predictions' without the leading N.
  if (activated.dtype() != predictions.dtype() || activated.ndim() != predictions.ndim() - 1) return std::nullopt;
  for (int axis = 0; axis < static_cast<int>(activated.ndim()); ++axis)
    if (activated.shape(axis) != predictions.shape(axis + 1)) return std::nullopt;
  const long rows = static_cast<long>(activated.size()) / activated.shape(-1);
  if (rows < 1 || rows > std::numeric_limits<int>::max()) return std::nullopt;
  static const auto source = routed_stream_correction_source();
  static auto kernel =
      mx::fast::cuda_kernel("mlxcel_routed_stream_correction", {"p", "h", "norm_weight", "router", "coefs"}, {"y"},
                            source.source, source.header, true);
  return kernel({predictions, activated, norm_weight, router, coefs}, {predictions.shape()}, {predictions.dtype()},
                std::make_tuple(static_cast<int>(rows) * kRoutedThreads, 1, 1), std::make_tuple(kRoutedThreads, 1, 1),
                {{"T", predictions.dtype()}, {"N", n}, {"ACTIVE", active}, {"EPS_BITS", float_bits(eps)}, {"DIVISOR_BITS", float_bits(divisor)}},
                std::nullopt, false, s)[0];
}

std::optional<mx::array> rms_norm_add(const mx::array& x, const mx::array& weight, float eps,
                                      const mx::array& residual) {
  auto s = mx::default_stream(mx::default_device());
  if (!on_gpu(s) || !residual_norm_fits(x, weight, {&residual}, {})) return std::nullopt;
  static const auto sources = residual_norm_sources();
  static auto kernel = mx::fast::cuda_kernel("mlxcel_rms_norm_add", {"x", "w", "a"}, {"y"}, sources[0].source,
                                             sources[0].header, true);
  const int rows = static_cast<int>(x.size() / x.shape(-1));
  return kernel({x, weight, residual}, {x.shape()}, {x.dtype()}, std::make_tuple(rows * kRoutedThreads, 1, 1),
                std::make_tuple(kRoutedThreads, 1, 1), {{"T", x.dtype()}, {"EPS_BITS", float_bits(eps)}},
                std::nullopt, false, s)[0];
}

std::optional<std::pair<mx::array, mx::array>> rms_norm_add_then_norm(const mx::array& x, const mx::array& weight,
                                                                      float eps, const mx::array& residual,
                                                                      const mx::array& extra, float scale,
                                                                      const mx::array& next_weight, float next_eps) {
  auto s = mx::default_stream(mx::default_device());
  if (!on_gpu(s) || !residual_norm_fits(x, weight, {&residual, &extra}, {&next_weight})) return std::nullopt;
  static const auto sources = residual_norm_sources();
  static auto kernel = mx::fast::cuda_kernel("mlxcel_rms_norm_add_then_norm", {"x", "w", "a", "b", "w2"},
                                             {"y", "y2"}, sources[1].source, sources[1].header, true);
  const int rows = static_cast<int>(x.size() / x.shape(-1));
  auto out = kernel({x, weight, residual, extra, next_weight}, {x.shape(), x.shape()}, {x.dtype(), x.dtype()},
                    std::make_tuple(rows * kRoutedThreads, 1, 1), std::make_tuple(kRoutedThreads, 1, 1),
                    {{"T", x.dtype()},
                     {"EPS_BITS", float_bits(eps)},
                     {"SCALE_BITS", float_bits(scale)},
                     {"EPS2_BITS", float_bits(next_eps)}},
                    std::nullopt, false, s);
  return std::make_pair(out[0], out[1]);
}

std::optional<mx::array> rms_norm_rope(const mx::array& x, const mx::array& weight, float eps, int dims,
                                       bool traditional, float base, float scale, const mx::array& offset) {
  auto s = mx::default_stream(mx::default_device());
  if (!on_gpu(s) || x.ndim() != 4 || x.shape(2) != 1 || traditional) return std::nullopt;
  if (!(is_half(x.dtype()) || x.dtype() == mx::float32) || x.size() == 0) return std::nullopt;
  const int D = x.shape(3);
  if (dims != D || D % 2 != 0 || weight.ndim() != 1 || weight.shape(0) != D || weight.dtype() != x.dtype())
    return std::nullopt;
  if (offset.dtype() != mx::int32 || offset.ndim() != 1 || (offset.size() != 1 && offset.size() != static_cast<std::size_t>(x.shape(0))))
    return std::nullopt;
  const long rows = static_cast<long>(x.size()) / D;
  if (rows > std::numeric_limits<int>::max()) return std::nullopt;
  static const auto source = rms_norm_rope_source();
  static auto kernel =
      mx::fast::cuda_kernel("mlxcel_rms_norm_rope", {"x", "w", "offset"}, {"y"}, source.source, source.header, true);
  return kernel({x, weight, offset}, {x.shape()}, {x.dtype()}, std::make_tuple(static_cast<int>(rows) * 128, 1, 1),
                std::make_tuple(128, 1, 1),
                {{"T", x.dtype()},
                 {"EPS_BITS", float_bits(eps)},
                 {"LOG2_BASE_BITS", float_bits(std::log2(base))},
                 {"SCALE_BITS", float_bits(scale)}},
                std::nullopt, false, s)[0];
}

}  // namespace mlxcel::cuda_fast
