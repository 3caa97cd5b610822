// The lazy MLX ops over packed block-quantized matrices.
#pragma once

#include <vector>

#include "pack.h"

namespace mlxcel::bq {

// y_i = x W_i^T for every matrix, as one primitive: x is quantized once (at `precision`) and the
// pool woken once. x: [..., cols] of any float dtype and any strides; y_i: [..., rows_i] float32.
std::vector<mx::array> matmul_t_many(const std::vector<MatSpec>& specs, const std::vector<mx::array>& packed,
                                     const mx::array& x, Precision precision);

// Rows `ids` (any integer dtype and shape) as float32 [ids..., cols]; an id out of range fails
// the eval.
mx::array gather_rows(const MatSpec& spec, const mx::array& packed, const mx::array& ids);

// The whole matrix as float32 [rows, cols].
mx::array dequantize(const MatSpec& spec, const mx::array& packed);

}  // namespace mlxcel::bq
