// mlxcel's CPU kernels for MLX's `fast` ops (see cpu_fast.cc). Each returns nullopt when the op
// goes elsewhere: a non-CPU stream, the kernels switched off, or arguments the kernel does not
// take (MLX's own op then runs, and reports any error).
#pragma once

#include <optional>
#include <string>

#include "mlx/mlx.h"

namespace mlxcel {
namespace mx = mlx::core;
}

namespace mlxcel::cpu_fast {

bool cpu_kernels_enabled();
void set_cpu_kernels_enabled(bool enabled);

std::optional<mx::array> rms_norm(const mx::array& x, const std::optional<mx::array>& weight, float eps);
std::optional<mx::array> rope(const mx::array& x, int dims, bool traditional, std::optional<float> base, float scale,
                              const mx::array& offset, const std::optional<mx::array>& freqs);
std::optional<mx::array> scaled_dot_product_attention(const mx::array& q, const mx::array& k, const mx::array& v,
                                                      float scale, const std::string& mask_mode,
                                                      const std::optional<mx::array>& mask);
// silu(gate) * up (`silu`) or gelu_tanh(gate) * up.
std::optional<mx::array> gated_activation(bool silu, const mx::array& gate, const mx::array& up);

}  // namespace mlxcel::cpu_fast
