// One-row affine products for NVIDIA GPUs through MLX's custom-kernel API (compiled by NVRTC at
// run time): y = x W^T for one row of x and MLX affine 4-/8-bit W, reading each weight byte once
// with 128-bit loads (MLX 0.32.4's qmv measured 0.66 TB/s of weight bytes on an H200), also with
// the row formed as it is read (x * scale, or a gated activation act(gate) * up): one launch
// where MLX runs an elementwise kernel and the product. Each returns nullopt when the call is not
// one it takes, so MLX's op runs instead.
#include "mlx-bridge/src/cpp/cuda_fast.h"

#include <array>
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

// One warp per output row; each lane reads 16 bytes of codes at a time (32 4-bit or 16 8-bit
// values), four loads in flight, and the matching x values straight from global memory (L1
// serves the repeats): lanes' chunks are 64 bytes of x apart, which in shared memory would put
// every lane on the same bank.
constexpr const char* kGemv = R"(
  const int K = x_shape[x_ndim - 1];
  const int N = w_shape[0];
  const int lane = threadIdx.x & 31;
  const int n = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (n >= N) return;
  constexpr int PER_CHUNK = 128 / BITS;
  constexpr int X_VECTORS = PER_CHUNK / 8;
  const int words = K * BITS / 32;
  const int chunks = words / 4;
  const uint4* row = reinterpret_cast<const uint4*>(w + static_cast<long>(n) * words);
  const T* srow = scales + static_cast<long>(n) * (K / G);
  const T* brow = biases + static_cast<long>(n) * (K / G);
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  [[maybe_unused]] const uint4* uv = reinterpret_cast<const uint4*>(u);
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
      float xf[PER_CHUNK];
      for (int t = 0; t < X_VECTORS; ++t) {
        const uint4 xr = __ldg(xv + c * X_VECTORS + t);
        const T* xh = reinterpret_cast<const T*>(&xr);
        if constexpr (IN == 0) {
          for (int j = 0; j < 8; ++j) xf[t * 8 + j] = static_cast<float>(xh[j]);
        } else {
          const uint4 ur = __ldg(uv + c * X_VECTORS + t);
          const T* uh = reinterpret_cast<const T*>(&ur);
          for (int j = 0; j < 8; ++j) xf[t * 8 + j] = mlxcel_gemv_input<T, IN>(xh[j], uh[j]);
        }
      }
      const unsigned int* q = reinterpret_cast<const unsigned int*>(&raw[u]);
      float dot = 0.0f, sum = 0.0f;
      for (int t = 0; t < 4; ++t) {
        const unsigned int word = q[t];
        for (int j = 0; j < 32 / BITS; ++j) {
          const float xj = xf[t * (32 / BITS) + j];
          dot += static_cast<float>((word >> (BITS * j)) & ((1u << BITS) - 1)) * xj;
          sum += xj;
        }
      }
      const int g = (c * PER_CHUNK) / G;
      acc += static_cast<float>(srow[g]) * dot + static_cast<float>(brow[g]) * sum;
    }
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, o);
  if (lane == 0) y[n] = static_cast<T>(acc);
)";

// The same product with R rows per warp: each lane loads and forms its chunk of x once for the R
// rows (the one-row kernel reloads it, 8x the weight bytes through L1, and re-adds its group
// sums per row), issues the R rows' 16-byte weight loads together, and turns codes into floats
// by the exponent trick (2^23 + q as a float, minus 2^23) instead of an integer conversion. Each
// lane visits its chunks and adds in the one-row kernel's order (outputs equal up to where the
// compiler fuses multiply-adds). Not the default: set_gemv_rows_per_warp picks it for
// measurement (cuda_kernels).
constexpr const char* kGemvRows = R"(
  const int K = x_shape[x_ndim - 1];
  const int N = w_shape[0];
  const int lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5)) * R;
  if (n0 >= N) return;
  constexpr int PER_CHUNK = 128 / BITS;
  constexpr int X_VECTORS = PER_CHUNK / 8;
  const int words = K * BITS / 32;
  const int chunks = words / 4;
  const int groups = K / G;
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  [[maybe_unused]] const uint4* uv = reinterpret_cast<const uint4*>(u);
  float acc[R];
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  for (int c = lane; c < chunks; c += 32) {
    uint4 raw[R];
    for (int r = 0; r < R; ++r) {
      if (n0 + r < N) raw[r] = reinterpret_cast<const uint4*>(w + static_cast<long>(n0 + r) * words)[c];
    }
    float xf[PER_CHUNK];
    for (int t = 0; t < X_VECTORS; ++t) {
      const uint4 xr = __ldg(xv + c * X_VECTORS + t);
      const T* xh = reinterpret_cast<const T*>(&xr);
      if constexpr (IN == 0) {
        for (int j = 0; j < 8; ++j) xf[t * 8 + j] = static_cast<float>(xh[j]);
      } else {
        const uint4 ur = __ldg(uv + c * X_VECTORS + t);
        const T* uh = reinterpret_cast<const T*>(&ur);
        for (int j = 0; j < 8; ++j) xf[t * 8 + j] = mlxcel_gemv_input<T, IN>(xh[j], uh[j]);
      }
    }
    float sum = 0.0f;
    for (int j = 0; j < PER_CHUNK; ++j) sum += xf[j];
    const int g = (c * PER_CHUNK) / G;
    for (int r = 0; r < R; ++r) {
      if (n0 + r >= N) break;
      const unsigned int* q = reinterpret_cast<const unsigned int*>(&raw[r]);
      float dot = 0.0f;
      for (int t = 0; t < 4; ++t) {
        const unsigned int word = q[t];
        for (int j = 0; j < 32 / BITS; ++j) {
          const float code = __int_as_float(0x4b000000 | ((word >> (BITS * j)) & ((1u << BITS) - 1))) - 8388608.0f;
          dot += code * xf[t * (32 / BITS) + j];
        }
      }
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

// The product's input from x and u, as the ops it replaces compute it: x itself; x * u rounded
// to T (the product op); act(x) * u, the activation and the product in float32 and rounded to T
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
)";

// The plain product and the one with a formed input, sharing one file of code (the input form
// is the IN template argument: 0 plain, then GemvInput's values).
std::array<KernelSource, 2> affine_gemv_sources() {
  const auto plain = kernel_source(
      "affine_gemv",
      std::string(kGemvInput) +
          "template <typename T, int BITS, int G, int IN, typename ShapeT>\n"
          "__device__ __forceinline__ void mlxcel_affine_gemv(const T* x, const T* u, const uint32_t* w,\n"
          "    const T* scales, const T* biases, T* y, const ShapeT& x_shape, int x_ndim, const ShapeT& w_shape) {" +
          kGemv + "}\n",
      "mlxcel_affine_gemv<T, BITS, G, 0>(x, nullptr, w, scales, biases, y, x_shape, x_ndim, w_shape);");
  return {plain, KernelSource{plain.header, "mlxcel_affine_gemv<T, BITS, G, IN>(x, u, w, scales, biases, y, x_shape, "
                                            "x_ndim, w_shape);"}};
}

// The R-rows-per-warp product, plain and with a formed row, in a file of its own (the one-row
// kernels' file stays as it is).
std::array<KernelSource, 2> affine_gemv_rows_sources() {
  const auto plain = kernel_source(
      "affine_gemv_rows",
      std::string(kGemvInput) +
          "template <typename T, int BITS, int G, int IN, int R, typename ShapeT>\n"
          "__device__ __forceinline__ void mlxcel_affine_gemv_rows(const T* x, const T* u, const uint32_t* w,\n"
          "    const T* scales, const T* biases, T* y, const ShapeT& x_shape, int x_ndim, const ShapeT& w_shape) {" +
          kGemvRows + "}\n",
      "mlxcel_affine_gemv_rows<T, BITS, G, 0, R>(x, nullptr, w, scales, biases, y, x_shape, x_ndim, w_shape);");
  return {plain, KernelSource{plain.header, "mlxcel_affine_gemv_rows<T, BITS, G, IN, R>(x, u, w, scales, biases, y, "
                                            "x_shape, x_ndim, w_shape);"}};
}

}  // namespace

namespace {

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

int& gemv_rows_flag() {
  static int rows = 1;
  return rows;
}

// y = f(inputs) W^T [..., N] in x's dtype by `kernel`, one or `rows` rows of W per warp; `args`
// are the kernel's template arguments beyond T (and R, which this adds for `rows` > 1).
mx::array launch_gemv(const mx::fast::CustomKernelFunction& kernel, const std::vector<mx::array>& inputs,
                      const mx::array& x, const mx::array& w, int rows,
                      std::vector<std::pair<std::string, mx::fast::TemplateArg>> args) {
  const int N = w.shape(0);
  const int per_block = kGemvWarps * rows;
  auto out_shape = x.shape();
  out_shape.back() = N;
  args.insert(args.begin(), {"T", x.dtype()});
  if (rows > 1) args.emplace_back("R", rows);
  return kernel(inputs, {out_shape}, {x.dtype()}, std::make_tuple(((N + per_block - 1) / per_block) * kGemvWarps * 32, 1, 1),
                std::make_tuple(kGemvWarps * 32, 1, 1), args, std::nullopt, false,
                mx::default_stream(mx::default_device()))[0];
}

}  // namespace

std::optional<mx::array> quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales,
                                          const std::optional<mx::array>& biases, bool transpose, int group_size,
                                          int bits, const std::string& mode) {
  if (!affine_gemv_fits(x, w, scales, biases, transpose, group_size, bits, mode)) return std::nullopt;
  const std::vector<mx::array> inputs{x, w, scales, *biases};
  const int rows = gemv_rows_flag();
  // The variant's code is written and compiled only once a run asks for it.
  if (rows > 1) {
    static const auto source = affine_gemv_rows_sources()[0];
    static const auto gemv = mx::fast::cuda_kernel("mlxcel_affine_gemv_rows", {"x", "w", "scales", "biases"}, {"y"},
                                                   source.source, source.header, true);
    return launch_gemv(gemv, inputs, x, w, rows, {{"BITS", bits}, {"G", group_size}});
  }
  static const auto source = affine_gemv_sources()[0];
  static const auto gemv =
      mx::fast::cuda_kernel("mlxcel_affine_gemv", {"x", "w", "scales", "biases"}, {"y"}, source.source, source.header, true);
  return launch_gemv(gemv, inputs, x, w, 1, {{"BITS", bits}, {"G", group_size}});
}

void set_gemv_rows_per_warp(int rows) { gemv_rows_flag() = rows == 2 || rows == 4 ? rows : 1; }

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
  const std::vector<mx::array> inputs{x, u, w, scales, *biases};
  const int rows = gemv_rows_flag();
  if (rows > 1) {
    static const auto source = affine_gemv_rows_sources()[1];
    static const auto gemv = mx::fast::cuda_kernel("mlxcel_affine_gemv_rows_of", {"x", "u", "w", "scales", "biases"},
                                                   {"y"}, source.source, source.header, true);
    return launch_gemv(gemv, inputs, x, w, rows, {{"BITS", bits}, {"G", group_size}, {"IN", static_cast<int>(input)}});
  }
  static const auto source = affine_gemv_sources()[1];
  static const auto gemv = mx::fast::cuda_kernel("mlxcel_affine_gemv_of", {"x", "u", "w", "scales", "biases"}, {"y"},
                                                 source.source, source.header, true);
  return launch_gemv(gemv, inputs, x, w, 1, {{"BITS", bits}, {"G", group_size}, {"IN", static_cast<int>(input)}});
}

}  // namespace mlxcel::cuda_fast
