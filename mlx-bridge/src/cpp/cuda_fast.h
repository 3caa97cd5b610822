// mlxcel's decode kernels for NVIDIA GPUs (see cuda_fast.cc). Each returns nullopt when the op
// goes elsewhere: a CPU stream, the kernels switched off (the default until the plan turns them
// on), or arguments the kernel does not take (MLX's own op then runs).
#pragma once

#include <optional>
#include <string>

#include "mlx/mlx.h"

namespace mlxcel {
namespace mx = mlx::core;
}

namespace mlxcel::cuda_fast {

bool cuda_kernels_enabled();
void set_cuda_kernels_enabled(bool enabled);

std::optional<mx::array> scaled_dot_product_attention(const mx::array& q, const mx::array& k, const mx::array& v,
                                                      float scale, const std::string& mask_mode,
                                                      const std::optional<mx::array>& mask);
std::optional<mx::array> quantized_matmul(const mx::array& x, const mx::array& w, const mx::array& scales,
                                          const std::optional<mx::array>& biases, bool transpose, int group_size,
                                          int bits, const std::string& mode);
// The one-row affine products' prefetching variant with 2, 4 or 8 rows of W per warp (0: the
// default, the measured kernel), also asking L2 for the item `l2_ahead` turns on (0: not); for A/B
// runs until it is measured.
void set_gemv_prefetch(int rows, int l2_ahead);

// How a one-row product's input is formed from x and u as the kernel reads it.
enum class GemvInput { Scaled = 1, GeluTanhGated = 2, SiluGated = 3 };
// f(x, u) W^T for one row x: x * u (u a vector of x's width), gelu_tanh(x) * u or silu(x) * u
// (u of x's shape).
std::optional<mx::array> quantized_matmul_of(GemvInput input, const mx::array& x, const mx::array& u,
                                             const mx::array& w, const mx::array& scales,
                                             const std::optional<mx::array>& biases, int group_size, int bits,
                                             const std::string& mode);

// y[i] = x[i] + sum_j M[i][j] x[j] over streams x [N, ..., D], with
// M = reshape(coefs @ route(x[active]), N x N), coefs [N*N, N] float32, where
// route(r) = tanh(router @ (rms_norm(r, norm_weight, eps) / divisor)).
std::optional<mx::array> routed_stream_mix(const mx::array& streams, const mx::array& norm_weight, float eps,
                                           float divisor, const mx::array& router, const mx::array& coefs,
                                           int active);
// y[i] = p[i] + (1 + coefs @ route(h))[i] * (h - p[active]), p [N, ..., D], h [..., D], coefs [N, N] float32.
std::optional<mx::array> routed_stream_correction(const mx::array& predictions, const mx::array& activated,
                                                  const mx::array& norm_weight, float eps, float divisor,
                                                  const mx::array& router, const mx::array& coefs, int active);

// residual + rms_norm(x, weight, eps), rows of x's last axis.
std::optional<mx::array> rms_norm_add(const mx::array& x, const mx::array& weight, float eps,
                                      const mx::array& residual);
// h = ((residual + rms_norm(x, weight, eps)) + extra) * scale and rms_norm(h, next_weight, next_eps).
std::optional<std::pair<mx::array, mx::array>> rms_norm_add_then_norm(const mx::array& x, const mx::array& weight,
                                                                      float eps, const mx::array& residual,
                                                                      const mx::array& extra, float scale,
                                                                      const mx::array& next_weight, float next_eps);

// rope(rms_norm(x, weight, eps)) for x [B, H, 1, D] (one position per row): split-half RoPE over
// all D features at positions offset (int32, one per sequence or one for all) times scale.
std::optional<mx::array> rms_norm_rope(const mx::array& x, const mx::array& weight, float eps, int dims,
                                       bool traditional, float base, float scale, const mx::array& offset);

}  // namespace mlxcel::cuda_fast
