// The lazy MLX ops over packed block-quantized matrices.
#pragma once

#include <vector>

#include "pack.h"

namespace mlxcel::bq {

// y_i = x W_i^T for every matrix, as one primitive: x is quantized once and the pool woken once.
// x: [..., cols] float (f32, f16 or bf16); y_i: [..., rows_i] float32.
std::vector<mx::array> matmul_t_many(const std::vector<MatSpec>& specs, const std::vector<mx::array>& packed,
                                     const mx::array& x);

// Rows `ids` (int32, any shape) as float32 [ids..., cols]; an id out of range fails the eval.
mx::array gather_rows(const MatSpec& spec, const mx::array& packed, const mx::array& ids);

// The whole matrix as float32 [rows, cols].
mx::array dequantize(const MatSpec& spec, const mx::array& packed);

}  // namespace mlxcel::bq
