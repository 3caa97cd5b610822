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

}  // namespace mlxcel::cuda_fast
