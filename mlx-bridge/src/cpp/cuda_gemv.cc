// One-row affine products for NVIDIA GPUs through MLX's custom-kernel API (compiled by NVRTC at
// run time): y = x W^T for one row of x and MLX affine 4-/8-bit W, reading each weight byte once
// with 128-bit loads (MLX 0.32.4's qmv measured 0.66 TB/s of weight bytes on an H200), also with
// the row formed as it is read (x * scale, or a gated activation act(gate) * up): one launch
// where MLX runs an elementwise kernel and the product. Each returns nullopt when the call is not
// one it takes, so MLX's op runs instead. The kernel is the variant an A/B on an H200 chose
// (benchmarks/results/h200-2026-12-04-gemv/, docs/benchmarks/h200-kernels.md): at every shape
// there at least as fast as the one-row kernel it replaced, and the fastest on the LM head.
#include "mlx-bridge/src/cpp/cuda_fast.h"

#include <algorithm>
#include <array>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "mlx-bridge/src/cpp/cuda_fast_common.h"
#include "mlx-bridge/src/cpp/cuda_kernel_source.h"
#include "mlx/fast.h"

namespace mlxcel::cuda_fast {

using detail::is_half;
using detail::on_gpu;

namespace {

// ---- y = x W^T for one row, MLX affine 4/8-bit ----------------------------------------------

// R rows of W per warp (8, kGemvRows): each lane reads 16 bytes of each row's codes at a time (32
// 4-bit or 16 8-bit values; the R rows' loads issued together, streaming: read once), loads and
// forms the matching chunk of x once for the R rows, straight from global memory (L1 serves the
// warps' repeats; lanes' chunks are 64 bytes of x apart, which in shared memory would put every
// lane on the same bank), and turns codes into floats by byte permutes, not the integer
// conversion, whose quarter-rate issue bounded the one-row kernel this replaced (32 per 16 bytes
// of 4-bit codes: ~2.1 TB/s on an H200).
constexpr const char* kGemv = R"(
  const int K = x_shape[x_ndim - 1];
  const int N = w_shape[0];
  const int lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5)) * R;
  if (n0 >= N) return;
  constexpr int PER_CHUNK = 128 / BITS;
  const int words = K * BITS / 32;
  const int chunks = words / 4;
  const int groups = K / G;
  float acc[R];
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  for (int c = lane; c < chunks; c += 32) {
    uint4 raw[R];
    for (int r = 0; r < R; ++r) {
      if (n0 + r < N) raw[r] = __ldcs(reinterpret_cast<const uint4*>(w + static_cast<long>(n0 + r) * words) + c);
    }
    float xf[PER_CHUNK];
    for (int t = 0; t < PER_CHUNK / 8; ++t) {
      const long at = static_cast<long>(c) * PER_CHUNK + t * 8;
      mlxcel_gemv_load<T, IN, 8>(x + at, u + at, xf + t * 8);
    }
    float sum = 0.0f;
    for (int j = 0; j < PER_CHUNK; ++j) sum += xf[j];
    const int g = (c * PER_CHUNK) / G;
    for (int r = 0; r < R; ++r) {
      if (n0 + r >= N) break;
      const unsigned int* q = reinterpret_cast<const unsigned int*>(&raw[r]);
      float dot = 0.0f;
      for (int t = 0; t < 4; ++t) dot = mlxcel_word_dot<BITS>(q[t], xf + t * (32 / BITS), dot);
      const long at = static_cast<long>(n0 + r) * groups + g;
      acc[r] += static_cast<float>(scales[at]) * dot + static_cast<float>(biases[at]) * sum;
    }
  }
  for (int r = 0; r < R; ++r) {
    float v = acc[r];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    if (lane == 0 && n0 + r < N) y[n0 + r] = static_cast<T>(v);
  }
)";

// The same product walking a warp's items (R rows, one chunk a lane) across rows too, grid-strided,
// and loading the next item's weights, scales and biases before it works on the current one, so a
// warp's loads stay in flight while it computes; with L2 > 0 it also asks L2 for the item L2 turns
// on, which holds no registers. For A/B runs against kGemv (set_gemv_prefetch), not yet
// measured. Each lane adds in kGemv's order.
constexpr const char* kGemvPrefetch = R"(
  const int K = x_shape[x_ndim - 1];
  const int N = w_shape[0];
  const int lane = threadIdx.x & 31;
  const int warps = gridDim.x * (blockDim.x / 32);
  constexpr int PER_WORD = 32 / BITS;
  const int chunks = K * BITS / 128;
  const int groups = K / G;
  const int iters = (chunks + 31) / 32;
  const int sets = (N + R - 1) / R;
  int set = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (set >= sets) return;
  const uint4* wv = reinterpret_cast<const uint4*>(w);
  // One item's loads: R rows' chunk it * 32 + lane (zeros past the row's end or past N), and each
  // row's scale and bias for it, packed in one word.
  auto load = [&](int at_set, int at_it, uint4* raw, unsigned int* scale_bias) {
    const int c = at_it * 32 + lane;
    for (int r = 0; r < R; ++r) {
      const int n = at_set * R + r;
      raw[r] = make_uint4(0, 0, 0, 0);
      scale_bias[r] = 0;
      if (c < chunks && n < N) {
        raw[r] = __ldcs(wv + static_cast<long>(n) * chunks + c);
        const long at = static_cast<long>(n) * groups + (c * 4 * PER_WORD) / G;
        scale_bias[r] = static_cast<unsigned int>(__ldg(reinterpret_cast<const unsigned short*>(scales) + at)) |
                        (static_cast<unsigned int>(__ldg(reinterpret_cast<const unsigned short*>(biases) + at)) << 16);
      }
    }
  };
  float acc[R];
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  // One item on `raw`: the products of the chunk, added to acc; at a row set's last chunk, its sums
  // reduced over the warp and stored.
  auto work = [&](int at_set, int at_it, const uint4* raw, const unsigned int* scale_bias) {
    const int c = at_it * 32 + lane;
    float dot[R];
    for (int r = 0; r < R; ++r) dot[r] = 0.0f;
    float sum = 0.0f;
    // Word t of each row's chunk against its PER_WORD values of x (formed as read).
    for (int t = 0; t < 4; ++t) {
      float xf[PER_WORD];
      for (int j = 0; j < PER_WORD; ++j) xf[j] = 0.0f;
      const long at = static_cast<long>(c) * 4 * PER_WORD + t * PER_WORD;
      if (c < chunks) mlxcel_gemv_load<T, IN, PER_WORD>(x + at, u + at, xf);
      for (int j = 0; j < PER_WORD; ++j) sum += xf[j];
      for (int r = 0; r < R; ++r) {
        dot[r] = mlxcel_word_dot<BITS>(reinterpret_cast<const unsigned int*>(&raw[r])[t], xf, dot[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      acc[r] += mlxcel_half_bits<T>(scale_bias[r]) * dot[r] + mlxcel_half_bits<T>(scale_bias[r] >> 16) * sum;
    }
    if (at_it == iters - 1) {
      for (int r = 0; r < R; ++r) {
        float v = acc[r];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
        if (lane == 0 && at_set * R + r < N) y[at_set * R + r] = static_cast<T>(v);
        acc[r] = 0.0f;
      }
    }
  };
  // Items in order: the set's chunks, then the set `warps` on. Two buffers take turns: the next
  // item's loads go out before the current item's work.
  auto advance = [&](int& at_set, int& at_it) {
    if (++at_it == iters) {
      at_it = 0;
      at_set += warps;
    }
  };
  uint4 raw_a[R], raw_b[R];
  unsigned int sb_a[R], sb_b[R];
  int it = 0;
  // One turn: the next item's loads into the other buffers, then this item's work; false once the
  // warp's items are done.
  auto turn = [&](const uint4* raw, const unsigned int* sb, uint4* next_raw, unsigned int* next_sb) {
    int next_set = set, next_it = it;
    advance(next_set, next_it);
    if (next_set < sets) load(next_set, next_it, next_raw, next_sb);
    if constexpr (L2 > 0) {
      // The item L2 turns on into L2 (no registers held): its weights, scales and biases.
      const int ahead = it + L2;
      const int at_set = set + (ahead / iters) * warps;
      const int c = (ahead % iters) * 32 + lane;
      if (at_set < sets && c < chunks) {
        for (int r = 0; r < R && at_set * R + r < N; ++r) {
          const long n = at_set * R + r;
          const long g = n * groups + (c * 4 * PER_WORD) / G;
          asm volatile("prefetch.global.L2 [%0];" ::"l"(wv + n * chunks + c));
          asm volatile("prefetch.global.L2 [%0];" ::"l"(scales + g));
          asm volatile("prefetch.global.L2 [%0];" ::"l"(biases + g));
        }
      }
    }
    work(set, it, raw, sb);
    set = next_set;
    it = next_it;
    return set < sets;
  };
  load(set, 0, raw_a, sb_a);
  while (turn(raw_a, sb_a, raw_b, sb_b) && turn(raw_b, sb_b, raw_a, sb_a)) {
  }
)";

// The product's input from x and u, as the ops it replaces compute it: x itself; x * u rounded to T
// (the product op); act(x) * u, the activation and the product in float32 and rounded to T
// once (as mlxcel's CPU kernels and MLX's float32 ops; in half precision within an ulp of MLX's
// compiled op chain, which rounds every step). tanh(y) = 1 - 2 / (1 + exp(2y)) and exp's
// overflow to inf give tanh's limits.
constexpr const char* kGemvInput = R"(
template <typename T, int IN>
__device__ __forceinline__ float mlxcel_gemv_input(T x, T u) {
  const float xf = static_cast<float>(x);
  const float uf = static_cast<float>(u);
  if constexpr (IN == 1) {
    return static_cast<float>(static_cast<T>(xf * uf));
  } else if constexpr (IN == 2) {
    const float inner = 0.7978845608028654f * (xf + 0.044715f * (xf * (xf * xf)));
    const float t = 1.0f - 2.0f / (1.0f + __expf(2.0f * inner));
    return static_cast<float>(static_cast<T>(0.5f * xf * (1.0f + t) * uf));
  } else {
    return static_cast<float>(static_cast<T>(xf / (1.0f + __expf(-xf)) * uf));
  }
}
// The helpers the two kernels share. V (4 or 8) values of the product's input from x and u, as
// floats, in one vector load each.
template <typename T, int IN, int V>
__device__ __forceinline__ void mlxcel_gemv_load(const T* x, const T* u, float* out) {
  uint4 xr, ur;
  if constexpr (V == 8) {
    xr = __ldg(reinterpret_cast<const uint4*>(x));
    if constexpr (IN != 0) ur = __ldg(reinterpret_cast<const uint4*>(u));
  } else {
    const uint2 x2 = __ldg(reinterpret_cast<const uint2*>(x));
    xr = make_uint4(x2.x, x2.y, 0, 0);
    if constexpr (IN != 0) {
      const uint2 u2 = __ldg(reinterpret_cast<const uint2*>(u));
      ur = make_uint4(u2.x, u2.y, 0, 0);
    }
  }
  const T* xh = reinterpret_cast<const T*>(&xr);
  [[maybe_unused]] const T* uh = reinterpret_cast<const T*>(&ur);
  for (int j = 0; j < V; ++j) {
    if constexpr (IN == 0) {
      out[j] = static_cast<float>(xh[j]);
    } else {
      out[j] = mlxcel_gemv_input<T, IN>(xh[j], uh[j]);
    }
  }
}
// The T value in the low 16 bits of `bits`, as a float.
template <typename T>
__device__ __forceinline__ float mlxcel_half_bits(unsigned int bits) {
  const unsigned short h = static_cast<unsigned short>(bits);
  return static_cast<float>(*reinterpret_cast<const T*>(&h));
}

// dot + the word's codes (BITS each, first in the low bits) times x[0 .. 32 / BITS), each code a
// float by one byte permute: 2^23 + q, less 2^23.
template <int BITS>
__device__ __forceinline__ float mlxcel_word_dot(unsigned int word, const float* x, float dot) {
  if constexpr (BITS == 4) {
    // Byte b of lo holds code 2b, of hi code 2b + 1.
    const unsigned int lo = word & 0x0f0f0f0fu;
    const unsigned int hi = (word >> 4) & 0x0f0f0f0fu;
    for (int b = 0; b < 4; ++b) {
      dot = fmaf(__uint_as_float(__byte_perm(lo, 0x4b000000u, 0x7440 | b)) - 8388608.0f, x[2 * b], dot);
      dot = fmaf(__uint_as_float(__byte_perm(hi, 0x4b000000u, 0x7440 | b)) - 8388608.0f, x[2 * b + 1], dot);
    }
  } else {
    for (int b = 0; b < 4; ++b) {
      dot = fmaf(__uint_as_float(__byte_perm(word, 0x4b000000u, 0x7440 | b)) - 8388608.0f, x[b], dot);
    }
  }
  return dot;
}
)";

// A kernel's plain product and the one with a formed input, sharing one file of code (the input
// form is the IN template argument: 0 plain, then GemvInput's values); `name` is its device
// function, `body` its code, `params` its int template parameters after IN (comma-separated names).
std::array<KernelSource, 2> gemv_sources(const std::string& name, const char* body, const std::string& params) {
  std::string declared;
  for (std::size_t at = 0; at < params.size();) {
    const auto end = std::min(params.find(',', at), params.size());
    declared += "int " + params.substr(at, end - at) + ", ";
    at = end + 1;
  }
  const auto plain = kernel_source(
      name,
      std::string(kGemvInput) + "template <typename T, int BITS, int G, int IN, " + declared +
          "typename ShapeT>\n__device__ __forceinline__ void mlxcel_" + name +
          "(const T* x, const T* u, const uint32_t* w,\n"
          "    const T* scales, const T* biases, T* y, const ShapeT& x_shape, int x_ndim, const ShapeT& w_shape) {" +
          body + "}\n",
      "mlxcel_" + name + "<T, BITS, G, 0, " + params + ">(x, nullptr, w, scales, biases, y, x_shape, x_ndim, w_shape);");
  return {plain, KernelSource{plain.header, "mlxcel_" + name + "<T, BITS, G, IN, " + params +
                                                ">(x, u, w, scales, biases, y, x_shape, x_ndim, w_shape);"}};
}

// Whether W [N, K*BITS/32] (MLX affine, 4/8-bit, group 32/64/128, with biases) times one row x
// of K values fits the gemv kernel.
bool affine_gemv_fits(const mx::array& x, const mx::array& w, const mx::array& scales,
                      const std::optional<mx::array>& biases, bool transpose, int group_size, int bits,
                      const std::string& mode) {
  if (!on_gpu(mx::default_stream(mx::default_device()))) return false;
  if (!transpose || mode != "affine" || !biases || (bits != 4 && bits != 8)) return false;
  if (group_size != 32 && group_size != 64 && group_size != 128) return false;
  if (x.ndim() < 1 || w.ndim() != 2 || w.dtype() != mx::uint32 || !is_half(x.dtype())) return false;
  if (scales.dtype() != x.dtype() || biases->dtype() != x.dtype()) return false;
  const int K = x.shape(-1);
  if (static_cast<std::size_t>(K) != x.size() || K % 128 != 0) return false;  // one row, whole chunks
  const int N = w.shape(0);
  return w.shape(1) == K * bits / 32 && scales.shape(0) == N && scales.shape(1) == K / group_size;
}

constexpr int kGemvWarps = 8;
// Rows of W per warp in kGemv (1, 2, 4 and 8 measured): 8 led on the LM head and was within the
// run-to-run spread of the best elsewhere but for 8-bit 16384 x 4096 (2 rows, 15% ahead).
constexpr int kGemvRows = 8;
// With prefetch, a warp walks several items: at most this many blocks (about 8 per SM of an H200),
// each warp's share of the rows then loaded while it works.
constexpr int kPrefetchBlocks = 1024;

// The prefetching variant's rows per warp (0 when it is off, the default) and L2 distance.
struct GemvPrefetch {
  int rows = 0;
  int l2_ahead = 0;
};

GemvPrefetch& gemv_prefetch() {
  static GemvPrefetch prefetch;
  return prefetch;
}

// y = f(inputs) W^T [..., N] in x's dtype, kGemv or (when set) the prefetching variant; `args`
// are the kernel's template arguments beyond T and R.
mx::array launch_gemv(const mx::fast::CustomKernelFunction& kernel, const std::vector<mx::array>& inputs,
                      const mx::array& x, const mx::array& w, int rows, int max_blocks,
                      std::vector<std::pair<std::string, mx::fast::TemplateArg>> args) {
  const int N = w.shape(0);
  const int per_block = kGemvWarps * rows;
  auto out_shape = x.shape();
  out_shape.back() = N;
  args.insert(args.begin(), {"T", x.dtype()});
  args.emplace_back("R", rows);
  const int blocks = std::min((N + per_block - 1) / per_block, max_blocks);
  return kernel(inputs, {out_shape}, {x.dtype()}, std::make_tuple(blocks * kGemvWarps * 32, 1, 1),
                std::make_tuple(kGemvWarps * 32, 1, 1), args, std::nullopt, false,
                mx::default_stream(mx::default_device()))[0];
}

// The kernels by input names (plain or formed) and variant, compiled once a call needs them.
const mx::fast::CustomKernelFunction& gemv_kernel(bool formed, bool prefetch) {
  static const std::vector<std::string> plain_inputs{"x", "w", "scales", "biases"};
  static const std::vector<std::string> formed_inputs{"x", "u", "w", "scales", "biases"};
  const auto make = [](const char* name, const char* body, const char* params, bool with_u) {
    const auto source = gemv_sources(name, body, params)[with_u ? 1 : 0];
    return mx::fast::cuda_kernel(std::string("mlxcel_") + name + (with_u ? "_of" : ""),
                                 with_u ? formed_inputs : plain_inputs, {"y"}, source.source, source.header, true);
  };
  if (prefetch) {
    static const auto plain = make("affine_gemv_prefetch", kGemvPrefetch, "R,L2", false);
    static const auto of = make("affine_gemv_prefetch", kGemvPrefetch, "R,L2", true);
    return formed ? of : plain;
  }
  static const auto plain = make("affine_gemv", kGemv, "R", false);
  static const auto of = make("affine_gemv", kGemv, "R", true);
  return formed ? of : plain;
}

mx::array gemv(bool formed, const std::vector<mx::array>& inputs, const mx::array& x, const mx::array& w,
               std::vector<std::pair<std::string, mx::fast::TemplateArg>> args) {
  const auto prefetch = gemv_prefetch();
  if (prefetch.rows > 0) {
    args.emplace_back("L2", prefetch.l2_ahead);
    return launch_gemv(gemv_kernel(formed, true), inputs, x, w, prefetch.rows, kPrefetchBlocks, std::move(args));
  }
  return launch_gemv(gemv_kernel(formed, false), inputs, x, w, kGemvRows, std::numeric_limits<int>::max(),
                     std::move(args));
}

}  // namespace

std::optional<mx::array> quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales,
                                          const std::optional<mx::array>& biases, bool transpose, int group_size,
                                          int bits, const std::string& mode) {
  if (!affine_gemv_fits(x, w, scales, biases, transpose, group_size, bits, mode)) return std::nullopt;
  return gemv(false, {x, w, scales, *biases}, x, w, {{"BITS", bits}, {"G", group_size}});
}

void set_gemv_prefetch(int rows, int l2_ahead) {
  gemv_prefetch() = {rows == 2 || rows == 4 || rows == 8 ? rows : 0, std::clamp(l2_ahead, 0, 16)};
}

std::optional<mx::array> quantized_matmul_of(GemvInput input, const mx::array& x, const mx::array& u,
                                             const mx::array& w, const mx::array& scales,
                                             const std::optional<mx::array>& biases, int group_size, int bits,
                                             const std::string& mode) {
  if (!affine_gemv_fits(x, w, scales, biases, true, group_size, bits, mode) || u.dtype() != x.dtype()) {
    return std::nullopt;
  }
  // The scale is one vector of x's width; a gate's other half has x's shape.
  if (input == GemvInput::Scaled ? (u.ndim() != 1 || u.shape(0) != x.shape(-1)) : u.shape() != x.shape()) {
    return std::nullopt;
  }
  return gemv(true, {x, u, w, scales, *biases}, x, w,
              {{"BITS", bits}, {"G", group_size}, {"IN", static_cast<int>(input)}});
}

}  // namespace mlxcel::cuda_fast
