// One-row affine products for NVIDIA GPUs through MLX's custom-kernel API (compiled by NVRTC at
// run time): y = x W^T for one row of x and MLX affine 4-/8-bit W, reading each weight byte once
// with 128-bit loads (MLX 0.32.4's qmv measured 0.66 TB/s of weight bytes on an H200), also with
// the row formed as it is read (x * scale, or a gated activation act(gate) * up): one launch
// where MLX runs an elementwise kernel and the product. Each returns nullopt when the call is not
// one it takes, so MLX's op runs instead.
#include "mlx-bridge/src/cpp/cuda_fast.h"

#include <algorithm>
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
// sums per row), issues the R rows' 16-byte weight loads together (streaming: they are read
// once), and turns codes into floats without the integer conversion, whose quarter-rate issue
// bounds the one-row kernel (32 per 16 bytes of 4-bit codes: ~2.1 TB/s on an H200). Byte
// permutes place each code in a float's mantissa: exactly, as 2^23 + q less 2^23, or (FOLD) as
// 1 + q/2^S, where the product then takes sum(q x) = 2^S (sum(f x) - sum(x)), one multiply-add
// per code at a cost of ~S - log2(mean q) bits of float32 cancellation (4-bit: S 7; 8-bit: S 15),
// far under the half-precision output's rounding. Not the default: set_gemv_variant picks it for
// measurement (cuda_kernels).
constexpr const char* kGemvRows = R"(
  const int K = x_shape[x_ndim - 1];
  const int N = w_shape[0];
  const int lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5)) * R;
  if (n0 >= N) return;
  constexpr int PER_CHUNK = 128 / BITS;
  constexpr int X_VECTORS = PER_CHUNK / 8;
  // Folded codes: 4-bit codes in the mantissa's bits 16-19 (1 + q/128), 8-bit in bits 8-15.
  constexpr float UNFOLD = BITS == 4 ? 128.0f : 32768.0f;
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
      if (n0 + r < N) raw[r] = __ldcs(reinterpret_cast<const uint4*>(w + static_cast<long>(n0 + r) * words) + c);
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
        const float* xt = xf + t * (32 / BITS);
        if constexpr (BITS == 4) {
          // Byte b of lo holds code 2b, of hi code 2b + 1.
          const unsigned int lo = (q[t] & 0x0f0f0f0fu) | (FOLD ? 0x80808080u : 0u);
          const unsigned int hi = ((q[t] >> 4) & 0x0f0f0f0fu) | (FOLD ? 0x80808080u : 0u);
          for (int b = 0; b < 4; ++b) {
            if constexpr (FOLD) {
              dot = fmaf(__uint_as_float(__byte_perm(lo, 0x3f000000u, 0x7044 | (b << 8))), xt[2 * b], dot);
              dot = fmaf(__uint_as_float(__byte_perm(hi, 0x3f000000u, 0x7044 | (b << 8))), xt[2 * b + 1], dot);
            } else {
              dot = fmaf(__uint_as_float(__byte_perm(lo, 0x4b000000u, 0x7440 | b)) - 8388608.0f, xt[2 * b], dot);
              dot = fmaf(__uint_as_float(__byte_perm(hi, 0x4b000000u, 0x7440 | b)) - 8388608.0f, xt[2 * b + 1], dot);
            }
          }
        } else {
          for (int b = 0; b < 4; ++b) {
            if constexpr (FOLD) {
              dot = fmaf(__uint_as_float(__byte_perm(q[t], 0x3f800000u, 0x7604 | (b << 4))), xt[b], dot);
            } else {
              dot = fmaf(__uint_as_float(__byte_perm(q[t], 0x4b000000u, 0x7440 | b)) - 8388608.0f, xt[b], dot);
            }
          }
        }
      }
      const long at = static_cast<long>(n0 + r) * groups + g;
      const float codes_x = FOLD ? UNFOLD * (dot - sum) : dot;
      acc[r] += static_cast<float>(scales[at]) * codes_x + static_cast<float>(biases[at]) * sum;
    }
  }
  for (int r = 0; r < R; ++r) {
    float v = acc[r];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    if (lane == 0 && n0 + r < N) y[n0 + r] = static_cast<T>(v);
  }
)";

// 4-bit products on the tensor cores: a block takes 16 rows of W, its warps split K in steps of 256
// values, and each step is 16 mma.sync m16n8k16 (bf16 or fp16 in, float32 sums). A code becomes the
// half-precision value 2^E + q (E 7 for bf16, 10 for fp16; two codes an instruction, where the
// scalar kernels spend two instructions a code) and sum((2^E + q) x) less 2^E sum(x) is sum(q x),
// cancelling ~E - 3 of float32's 24 bits, far under the output's rounding. Lane 4r + m holds 64
// codes of rows r and r + 8 (k 64m to 64m + 63 of the step), its share of A's 16 columns; B holds
// each lane's x in its own column (zero elsewhere), so column j of D sums over those 64 values (one
// group of 64, two of 32 kept apart), which its group's scale multiplies, as in MLX's product. The
// row x, formed as read, is staged once per block in shared memory (XCAP values: K rounded up to a
// power of two) in the order B takes it, with its sums over each 32 values.
constexpr const char* kGemvMma = R"(
  const int K = x_shape[x_ndim - 1];
  const int N = w_shape[0];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  const int r = lane >> 2;
  const int m = lane & 3;
  const int n0 = blockIdx.x * 16;
  const int row0 = min(n0 + r, N - 1);
  const int row1 = min(n0 + r + 8, N - 1);
  const int steps = K / 256;
  const int groups = K / G;
  constexpr bool BF16 = mlxcel_is_bf16<T>::value;
  constexpr unsigned int MAGIC = BF16 ? 0x43004300u : 0x64006400u;
  constexpr float OFFSET = BF16 ? 128.0f : 1024.0f;
  constexpr int PER_LANE = 128 / G;  // groups in the 128 values of D's two columns a lane holds
  // x in B's order, then 64 zeros (what lanes outside B's diagonal read); the sums of x per 32.
  __shared__ uint4 xs[XCAP / 8 + 8];
  __shared__ float4 xsum[XCAP / 128];
  __shared__ float partial[8][16];
  // This lane's two 16-byte chunks of each row per step: 128 contiguous bytes over the 4 lanes.
  const uint4* p0 = reinterpret_cast<const uint4*>(w) + static_cast<long>(row0) * (K / 32) + warp * 8 + 2 * m;
  const uint4* p1 = reinterpret_cast<const uint4*>(w) + static_cast<long>(row1) * (K / 32) + warp * 8 + 2 * m;
  const int stride = warps * 8;
  uint4 q[4] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
  int s = warp;
  if (s < steps) {
    q[0] = __ldcs(p0);
    q[1] = __ldcs(p0 + 1);
    q[2] = __ldcs(p1);
    q[3] = __ldcs(p1 + 1);
  }
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  [[maybe_unused]] const uint4* uv = reinterpret_cast<const uint4*>(u);
  // K / 8 is a multiple of 32: every lane of a warp stages, and four lanes make one sum of 32.
  for (int i = threadIdx.x; i < K / 8; i += blockDim.x) {
    uint4 v = __ldg(xv + i);
    T* xh = reinterpret_cast<T*>(&v);
    if constexpr (IN != 0) {
      const uint4 ur = __ldg(uv + i);
      const T* uh = reinterpret_cast<const T*>(&ur);
      for (int j = 0; j < 8; ++j) xh[j] = static_cast<T>(mlxcel_gemv_input<T, IN>(xh[j], uh[j]));
    }
    float sum = 0.0f;
    for (int j = 0; j < 8; ++j) sum += static_cast<float>(xh[j]);
    sum += __shfl_xor_sync(0xffffffff, sum, 1);
    sum += __shfl_xor_sync(0xffffffff, sum, 2);
    if ((i & 3) == 0) reinterpret_cast<float*>(xsum)[i / 4] = sum;
    // B's pairs for codes (2h, 2h + 4) and (2h + 1, 2h + 5) of the word, h = 0 then 1.
    xs[i] = make_uint4(__byte_perm(v.x, v.z, 0x5410), __byte_perm(v.x, v.z, 0x7632), __byte_perm(v.y, v.w, 0x5410),
                       __byte_perm(v.y, v.w, 0x7632));
  }
  if (threadIdx.x < 8) xs[K / 8 + threadIdx.x] = make_uint4(0, 0, 0, 0);
  __syncthreads();
  float acc0 = 0.0f, acc1 = 0.0f;
  for (; s < steps; s += warps) {
    const uint4 c[4] = {q[0], q[1], q[2], q[3]};
    p0 += stride;
    p1 += stride;
    if (s + warps < steps) {
      q[0] = __ldcs(p0);
      q[1] = __ldcs(p0 + 1);
      q[2] = __ldcs(p1);
      q[3] = __ldcs(p1 + 1);
    }
    // Lanes m < 2 hold D's columns 2m and 2m + 1 (k from 256s + 128m): their groups' scales and biases.
    float sc0[PER_LANE], sc1[PER_LANE], bi0[PER_LANE], bi1[PER_LANE];
    const long g0 = static_cast<long>(row0) * groups + (s * 256 + 128 * m) / G;
    const long g1 = static_cast<long>(row1) * groups + (s * 256 + 128 * m) / G;
    if (m < 2) {
      for (int i = 0; i < PER_LANE; ++i) {
        sc0[i] = static_cast<float>(scales[g0 + i]);
        sc1[i] = static_cast<float>(scales[g1 + i]);
        bi0[i] = static_cast<float>(biases[g0 + i]);
        bi1[i] = static_cast<float>(biases[g1 + i]);
      }
    }
    // Lanes with r == m hold their 64 values of x (B's column m); the others read zeros.
    const uint4* xb = xs + (r == m ? s * 32 + m * 8 : K / 8);
    // d: the first 32 values' sums (and, for groups of 64 or more, the second's); dh: the second 32's.
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    [[maybe_unused]] float dh[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int half = 0; half < 2; ++half) {
      const unsigned int* a = reinterpret_cast<const unsigned int*>(&c[half]);
      const unsigned int* b = reinterpret_cast<const unsigned int*>(&c[2 + half]);
      float* dd = G == 32 && half == 1 ? dh : d;
      for (int t = 0; t < 4; ++t) {
        const uint4 bx = xb[half * 4 + t];
        // Codes 2h and 2h + 4 of word t (k 8t + 2h and + 4), then 2h + 1 and 2h + 5.
        mlxcel_mma<T>(dd, (a[t] & mlxcel_low_nibbles) | MAGIC, (b[t] & mlxcel_low_nibbles) | MAGIC,
                      ((a[t] >> 4) & mlxcel_low_nibbles) | MAGIC, ((b[t] >> 4) & mlxcel_low_nibbles) | MAGIC, bx.x, bx.y);
        mlxcel_mma<T>(dd, ((a[t] >> 8) & mlxcel_low_nibbles) | MAGIC, ((b[t] >> 8) & mlxcel_low_nibbles) | MAGIC,
                      ((a[t] >> 12) & mlxcel_low_nibbles) | MAGIC, ((b[t] >> 12) & mlxcel_low_nibbles) | MAGIC, bx.z, bx.w);
      }
    }
    if (m < 2) {
      const float4 sx = xsum[s * 2 + m];  // sums of x over the lane's four 32s
      if constexpr (G == 128) {
        const float all = (sx.x + sx.y) + (sx.z + sx.w);
        acc0 += sc0[0] * (d[0] + d[1] - OFFSET * all) + bi0[0] * all;
        acc1 += sc1[0] * (d[2] + d[3] - OFFSET * all) + bi1[0] * all;
      } else if constexpr (G == 64) {
        const float lo = sx.x + sx.y, hi = sx.z + sx.w;
        acc0 += sc0[0] * (d[0] - OFFSET * lo) + bi0[0] * lo + sc0[1] * (d[1] - OFFSET * hi) + bi0[1] * hi;
        acc1 += sc1[0] * (d[2] - OFFSET * lo) + bi1[0] * lo + sc1[1] * (d[3] - OFFSET * hi) + bi1[1] * hi;
      } else {
        acc0 += sc0[0] * (d[0] - OFFSET * sx.x) + bi0[0] * sx.x + sc0[1] * (dh[0] - OFFSET * sx.y) + bi0[1] * sx.y +
                sc0[2] * (d[1] - OFFSET * sx.z) + bi0[2] * sx.z + sc0[3] * (dh[1] - OFFSET * sx.w) + bi0[3] * sx.w;
        acc1 += sc1[0] * (d[2] - OFFSET * sx.x) + bi1[0] * sx.x + sc1[1] * (dh[2] - OFFSET * sx.y) + bi1[1] * sx.y +
                sc1[2] * (d[3] - OFFSET * sx.z) + bi1[2] * sx.z + sc1[3] * (dh[3] - OFFSET * sx.w) + bi1[3] * sx.w;
      }
    }
  }
  acc0 += __shfl_xor_sync(0xffffffff, acc0, 1);
  acc1 += __shfl_xor_sync(0xffffffff, acc1, 1);
  if (m == 0) {
    partial[warp][r] = acc0;
    partial[warp][r + 8] = acc1;
  }
  __syncthreads();
  if (threadIdx.x < 16 && n0 + threadIdx.x < N) {
    float v = 0.0f;
    for (int i = 0; i < warps; ++i) v += partial[i][threadIdx.x];
    y[n0 + threadIdx.x] = static_cast<T>(v);
  }
)";

// The tensor-core kernel's helpers: D += A B for one m16n8k16 tile in T (bf16 or fp16) with float32
// sums, and the code mask as a constant-bank operand (as an immediate, the compiler materialises it
// before each of its 16 uses a step, beside the other immediate).
constexpr const char* kMmaHelpers = R"(
__constant__ unsigned int mlxcel_low_nibbles = 0x000f000fu;
template <typename T> struct mlxcel_is_bf16 { static constexpr bool value = false; };
template <> struct mlxcel_is_bf16<__nv_bfloat16> { static constexpr bool value = true; };
template <typename T>
__device__ __forceinline__ void mlxcel_mma(float* d, unsigned int a0, unsigned int a1, unsigned int a2,
                                           unsigned int a3, unsigned int b0, unsigned int b1) {
  if constexpr (mlxcel_is_bf16<T>::value) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
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
          "template <typename T, int BITS, int G, int IN, int R, bool FOLD, typename ShapeT>\n"
          "__device__ __forceinline__ void mlxcel_affine_gemv_rows(const T* x, const T* u, const uint32_t* w,\n"
          "    const T* scales, const T* biases, T* y, const ShapeT& x_shape, int x_ndim, const ShapeT& w_shape) {" +
          kGemvRows + "}\n",
      "mlxcel_affine_gemv_rows<T, BITS, G, 0, R, FOLD>(x, nullptr, w, scales, biases, y, x_shape, x_ndim, w_shape);");
  return {plain, KernelSource{plain.header, "mlxcel_affine_gemv_rows<T, BITS, G, IN, R, FOLD>(x, u, w, scales, biases, y, "
                                            "x_shape, x_ndim, w_shape);"}};
}

// The tensor-core product, plain and with a formed row.
std::array<KernelSource, 2> affine_gemv_mma_sources() {
  const auto plain = kernel_source(
      "affine_gemv_mma",
      std::string(kGemvInput) + kMmaHelpers +
          "template <typename T, int G, int IN, int XCAP, typename ShapeT>\n"
          "__device__ __forceinline__ void mlxcel_affine_gemv_mma(const T* x, const T* u, const uint32_t* w,\n"
          "    const T* scales, const T* biases, T* y, const ShapeT& x_shape, int x_ndim, const ShapeT& w_shape) {" +
          kGemvMma + "}\n",
      "mlxcel_affine_gemv_mma<T, G, 0, XCAP>(x, nullptr, w, scales, biases, y, x_shape, x_ndim, w_shape);");
  return {plain, KernelSource{plain.header, "mlxcel_affine_gemv_mma<T, G, IN, XCAP>(x, u, w, scales, biases, y, "
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

// The variant "rows" value that picks the tensor-core kernel (4-bit; 8-bit products then take the
// rows kernel with 4 rows).
constexpr int kTensorTile = 16;

struct GemvVariant {
  int rows = 0;  // 0: the one-row kernel
  bool folded = false;
};

GemvVariant& gemv_variant() {
  static GemvVariant variant;
  return variant;
}

// y = f(inputs) W^T [..., N] in x's dtype by `kernel`: the one-row kernel (`rows` 0) or the
// variant with `rows` rows of W per warp; `args` are the kernel's template arguments beyond T (and
// the variant's R and FOLD, which this adds).
mx::array launch_gemv(const mx::fast::CustomKernelFunction& kernel, const std::vector<mx::array>& inputs,
                      const mx::array& x, const mx::array& w, int rows,
                      std::vector<std::pair<std::string, mx::fast::TemplateArg>> args) {
  const int N = w.shape(0);
  const int per_block = kGemvWarps * std::max(rows, 1);
  auto out_shape = x.shape();
  out_shape.back() = N;
  args.insert(args.begin(), {"T", x.dtype()});
  if (rows > 0) {
    args.emplace_back("R", rows);
    args.emplace_back("FOLD", gemv_variant().folded);
  }
  return kernel(inputs, {out_shape}, {x.dtype()}, std::make_tuple(((N + per_block - 1) / per_block) * kGemvWarps * 32, 1, 1),
                std::make_tuple(kGemvWarps * 32, 1, 1), args, std::nullopt, false,
                mx::default_stream(mx::default_device()))[0];
}

// The tensor-core kernel's launch: one block per 16 rows of W, up to 8 warps splitting K's steps
// of 256, x staged in XCAP values of shared memory (K rounded up to a power of two).
constexpr int kMmaMaxK = 16384;

bool mma_fits(const mx::array& x, int bits) { return bits == 4 && x.shape(-1) % 256 == 0 && x.shape(-1) <= kMmaMaxK; }

mx::array launch_gemv_mma(const mx::fast::CustomKernelFunction& kernel, const std::vector<mx::array>& inputs,
                          const mx::array& x, const mx::array& w,
                          std::vector<std::pair<std::string, mx::fast::TemplateArg>> args) {
  const int K = x.shape(-1);
  const int N = w.shape(0);
  const int warps = std::min(8, K / 256);
  int capacity = 1024;
  while (capacity < K) capacity *= 2;
  auto out_shape = x.shape();
  out_shape.back() = N;
  args.insert(args.begin(), {"T", x.dtype()});
  args.emplace_back("XCAP", capacity);
  return kernel(inputs, {out_shape}, {x.dtype()}, std::make_tuple(((N + 15) / 16) * warps * 32, 1, 1),
                std::make_tuple(warps * 32, 1, 1), args, std::nullopt, false, mx::default_stream(mx::default_device()))[0];
}

}  // namespace

std::optional<mx::array> quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales,
                                          const std::optional<mx::array>& biases, bool transpose, int group_size,
                                          int bits, const std::string& mode) {
  if (!affine_gemv_fits(x, w, scales, biases, transpose, group_size, bits, mode)) return std::nullopt;
  const std::vector<mx::array> inputs{x, w, scales, *biases};
  const int rows = gemv_variant().rows;
  if (rows == kTensorTile && mma_fits(x, bits)) {
    static const auto source = affine_gemv_mma_sources()[0];
    static const auto gemv = mx::fast::cuda_kernel("mlxcel_affine_gemv_mma", {"x", "w", "scales", "biases"}, {"y"},
                                                   source.source, source.header, true);
    return launch_gemv_mma(gemv, inputs, x, w, {{"G", group_size}});
  }
  // The variant's code is written and compiled only once a run asks for it.
  if (rows > 0) {
    static const auto source = affine_gemv_rows_sources()[0];
    static const auto gemv = mx::fast::cuda_kernel("mlxcel_affine_gemv_rows", {"x", "w", "scales", "biases"}, {"y"},
                                                   source.source, source.header, true);
    return launch_gemv(gemv, inputs, x, w, rows == kTensorTile ? 4 : rows, {{"BITS", bits}, {"G", group_size}});
  }
  static const auto source = affine_gemv_sources()[0];
  static const auto gemv =
      mx::fast::cuda_kernel("mlxcel_affine_gemv", {"x", "w", "scales", "biases"}, {"y"}, source.source, source.header, true);
  return launch_gemv(gemv, inputs, x, w, 0, {{"BITS", bits}, {"G", group_size}});
}

void set_gemv_variant(int rows, bool folded_codes) {
  const bool known = rows == 1 || rows == 2 || rows == 4 || rows == 8 || rows == kTensorTile;
  gemv_variant() = {known ? rows : 0, folded_codes};
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
  const std::vector<mx::array> inputs{x, u, w, scales, *biases};
  const int rows = gemv_variant().rows;
  if (rows == kTensorTile && mma_fits(x, bits)) {
    static const auto source = affine_gemv_mma_sources()[1];
    static const auto gemv = mx::fast::cuda_kernel("mlxcel_affine_gemv_mma_of", {"x", "u", "w", "scales", "biases"},
                                                   {"y"}, source.source, source.header, true);
    return launch_gemv_mma(gemv, inputs, x, w, {{"G", group_size}, {"IN", static_cast<int>(input)}});
  }
  if (rows > 0) {
    static const auto source = affine_gemv_rows_sources()[1];
    static const auto gemv = mx::fast::cuda_kernel("mlxcel_affine_gemv_rows_of", {"x", "u", "w", "scales", "biases"},
                                                   {"y"}, source.source, source.header, true);
    return launch_gemv(gemv, inputs, x, w, rows == kTensorTile ? 4 : rows,
                       {{"BITS", bits}, {"G", group_size}, {"IN", static_cast<int>(input)}});
  }
  static const auto source = affine_gemv_sources()[1];
  static const auto gemv = mx::fast::cuda_kernel("mlxcel_affine_gemv_of", {"x", "u", "w", "scales", "biases"}, {"y"},
                                                 source.source, source.header, true);
  return launch_gemv(gemv, inputs, x, w, 0, {{"BITS", bits}, {"G", group_size}, {"IN", static_cast<int>(input)}});
}

}  // namespace mlxcel::cuda_fast
