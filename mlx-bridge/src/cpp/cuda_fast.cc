// Decode kernels for NVIDIA GPUs, through MLX's custom-kernel API (compiled by NVRTC at run time,
// so the bridge builds anywhere; they run only where MLX's CUDA backend does):
//
// - attention for one query position over a KV cache of any head size up to 256, grouped-query,
//   split over the keys across thread blocks. MLX 0.32.4's own CUDA attention has no fused
//   kernel for head size 256 (Gemma 3n): it runs matmul, softmax and matmul;
// - y = x W^T for one row of x and MLX affine 4-/8-bit W, reading each weight byte once with
//   128-bit loads (MLX 0.32.4's qmv measured 0.66 TB/s of weight bytes on an H200).
//
// Each returns nullopt when the call is not one it takes, so MLX's op runs instead.
#include "mlx-bridge/src/cpp/cuda_fast.h"

#include <algorithm>
#include <string>

#include "mlx/fast.h"

namespace mlxcel::cuda_fast {

namespace {

bool& enabled_flag() {
  static bool enabled = false;
  return enabled;
}

bool on_gpu(const mx::Stream& s) { return s.device == mx::Device::gpu && enabled_flag(); }

bool is_half(mx::Dtype t) { return t == mx::bfloat16 || t == mx::float16; }

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
    qs[r][d] = static_cast<float>(q[b * q_strides[0] + h * q_strides[1] + d * q_strides[3]]) * scale[0];
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

// ---- y = x W^T for one row, MLX affine 4/8-bit ----------------------------------------------

// One warp per output row; each lane reads 16 bytes of codes at a time (32 4-bit or 16 8-bit
// values), four loads in flight, against x staged in shared memory.
constexpr const char* kGemv = R"(
  extern __shared__ float xs[];
  const int K = x_shape[x_ndim - 1];
  const int N = w_shape[0];
  for (int i = threadIdx.x; i < K; i += blockDim.x) xs[i] = static_cast<float>(x[i]);
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (n >= N) return;
  constexpr int PER_CHUNK = 128 / BITS;
  const int words = K * BITS / 32;
  const int chunks = words / 4;
  const uint4* row = reinterpret_cast<const uint4*>(w + static_cast<long>(n) * words);
  const T* srow = scales + static_cast<long>(n) * (K / G);
  const T* brow = biases + static_cast<long>(n) * (K / G);
  float acc = 0.0f;
  for (int c0 = lane; c0 < chunks; c0 += 32 * 4) {
    uint4 raw[4];
    for (int u = 0; u < 4; ++u) {
      const int c = c0 + u * 32;
      if (c < chunks) raw[u] = row[c];
    }
    for (int u = 0; u < 4; ++u) {
      const int c = c0 + u * 32;
      if (c >= chunks) break;
      const int e0 = c * PER_CHUNK;
      const unsigned int* q = reinterpret_cast<const unsigned int*>(&raw[u]);
      float dot = 0.0f, sum = 0.0f;
      for (int t = 0; t < 4; ++t) {
        const unsigned int word = q[t];
        for (int j = 0; j < 32 / BITS; ++j) {
          const float xv = xs[e0 + t * (32 / BITS) + j];
          dot += static_cast<float>((word >> (BITS * j)) & ((1u << BITS) - 1)) * xv;
          sum += xv;
        }
      }
      const int g = e0 / G;
      acc += static_cast<float>(srow[g]) * dot + static_cast<float>(brow[g]) * sum;
    }
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, o);
  if (lane == 0) y[n] = static_cast<T>(acc);
)";

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
  static auto partial_final =
      mx::fast::cuda_kernel("mlxcel_attention_decode", {"q", "k", "v", "scale"}, {"out"},
                            std::string(kAttentionPartial) + kAttentionWriteOut, kAttentionHeader, false);
  static auto partial =
      mx::fast::cuda_kernel("mlxcel_attention_decode_split", {"q", "k", "v", "scale"}, {"part_acc", "part_ml"},
                            std::string(kAttentionPartial) + kAttentionWriteParts, kAttentionHeader, false);
  static auto combine = mx::fast::cuda_kernel("mlxcel_attention_combine", {"part_acc", "part_ml"}, {"out"},
                                              kAttentionCombine, kAttentionHeader, true);
  std::vector<std::pair<std::string, mx::fast::TemplateArg>> targs = {
      {"T", dtype}, {"D", D}, {"R", R}, {"PART", kKeysPerPartition}};
  std::vector<mx::array> inputs = {q, k, v, mx::array(scale, mx::float32)};
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

std::optional<mx::array> quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales,
                                          const std::optional<mx::array>& biases, bool transpose, int group_size,
                                          int bits, const std::string& mode) {
  auto s = mx::default_stream(mx::default_device());
  if (!on_gpu(s) || !transpose || mode != "affine" || !biases || (bits != 4 && bits != 8)) return std::nullopt;
  if (group_size != 32 && group_size != 64 && group_size != 128) return std::nullopt;
  if (x.ndim() < 1 || w.ndim() != 2 || w.dtype() != mx::uint32 || !is_half(x.dtype())) return std::nullopt;
  if (scales.dtype() != x.dtype() || biases->dtype() != x.dtype()) return std::nullopt;
  const int K = x.shape(-1);
  if (static_cast<std::size_t>(K) != x.size() || K % 128 != 0 || K > 16384) return std::nullopt;  // one row
  const int N = w.shape(0);
  if (w.shape(1) != K * bits / 32 || scales.shape(0) != N || scales.shape(1) != K / group_size) return std::nullopt;
  // x sits in shared memory as float32: one kernel object per size class, since the dynamic
  // shared memory is fixed when the kernel function is made (the compiled module is shared).
  static auto make = [](int floats) {
    return mx::fast::cuda_kernel("mlxcel_affine_gemv", {"x", "w", "scales", "biases"}, {"y"}, kGemv, "", true,
                                 floats * 4);
  };
  static auto gemv_2k = make(2048), gemv_4k = make(4096), gemv_8k = make(8192), gemv_16k = make(16384);
  auto& gemv = K <= 2048 ? gemv_2k : K <= 4096 ? gemv_4k : K <= 8192 ? gemv_8k : gemv_16k;
  auto out_shape = x.shape();
  out_shape.back() = N;
  constexpr int kWarps = 8;
  const auto grid = std::make_tuple(((N + kWarps - 1) / kWarps) * kWarps * 32, 1, 1);
  const auto block = std::make_tuple(kWarps * 32, 1, 1);
  return gemv({x, w, scales, *biases}, {out_shape}, {x.dtype()}, grid, block,
                   {{"T", x.dtype()}, {"BITS", bits}, {"G", group_size}}, std::nullopt, false, s)[0];
}

}  // namespace mlxcel::cuda_fast
