// What cuda_fast.cc and cuda_gemv.cc share: whether a stream runs mlxcel's CUDA kernels, and
// which dtypes are half precision.
#pragma once

#include "mlx/mlx.h"

namespace mlxcel::cuda_fast::detail {

namespace mx = mlx::core;

// A GPU stream with mlxcel's kernels switched on.
bool on_gpu(const mx::Stream& s);
bool is_half(mx::Dtype t);

}  // namespace mlxcel::cuda_fast::detail
