// The cxx-facing functions of the block-quantized kernels (src/block_quant/ffi.rs).
#pragma once

#include <cstdint>

#include "mlx-bridge/src/cpp/shim.h"
#include "rust/cxx.h"

namespace mlxcel {

struct BlockSpec;

ArrayPtr bq_pack_gguf(const BlockSpec& spec, rust::Slice<const std::uint8_t> bytes);
ArrayPtr bq_pack_affine(const BlockSpec& spec, const Array& w, const Array& scales, const Array& biases);
std::unique_ptr<ArrayList> bq_matmul_many(rust::Slice<const BlockSpec> specs, const ArrayList& packed,
                                          const Array& x, std::uint8_t precision);
ArrayPtr bq_gather_rows(const BlockSpec& spec, const Array& packed, const Array& ids);
ArrayPtr bq_dequantize(const BlockSpec& spec, const Array& packed);

void bq_set_num_threads(std::size_t n);
std::size_t bq_num_threads();
void bq_set_isa(std::uint8_t isa);
std::uint8_t bq_isa();
bool bq_isa_supported(std::uint8_t isa);

}  // namespace mlxcel
