// Packing into the interleaved layout and reading it back; compiled with the bridge's baseline
// flags (these use MLX and the standard library, unlike the per-ISA kernel files).
#pragma once

#include <string>

#include "layout.h"
#include "mlx/mlx.h"

namespace mlxcel::bq {

namespace mx = mlx::core;

// What the primitives need to know about one matrix besides its packed bytes.
struct MatSpec {
  std::string name;
  Fmt fmt;
  ParamType ptype;
  int group;  // affine group (32/64); the GGUF block length otherwise
  int rows;
  int cols;
};

int gguf_block_len(Fmt f);
int gguf_block_bytes(Fmt f);
const char* format_name(Fmt f);

// The matrix's view over `packed`, which must be the layout's size (checked).
MatView view_of(const MatSpec& spec, const mx::array& packed);

// GGUF blocks exactly as ggml stores them, `rows` rows of `cols` values each.
mx::array pack_gguf(const MatSpec& spec, const std::uint8_t* bytes, std::size_t nbytes);

// MLX affine: `w` uint32 [rows, cols * bits / 32], scales and biases [rows, cols / group] of
// `spec.ptype`, all row-contiguous.
mx::array pack_affine(const MatSpec& spec, const std::uint32_t* w, const std::uint8_t* scales,
                      const std::uint8_t* biases);

// Rows `ids[0..n)` (all rows in order when ids is null) as floats, `cols` per row.
void dequantize_rows(const MatView& w, const std::int32_t* ids, std::size_t n, float* out);

}  // namespace mlxcel::bq
