// The C++ half of mlx-bridge: opaque holders for MLX values and the functions declared in
// src/ffi.rs. Shared enums/structs are defined by cxx in the generated ffi.rs.h; they are only
// forward-declared here because cxx includes this header before defining them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mlx/mlx.h"
#include "rust/cxx.h"

namespace mlxcel {

namespace mx = mlx::core;

enum class Dtype : std::uint8_t;
enum class DeviceKind : std::uint8_t;
enum class UnaryOp : std::uint8_t;
enum class BinaryOp : std::uint8_t;
enum class ReduceOp : std::uint8_t;
enum class FusedBlock : std::uint8_t;
struct Device;
struct Stream;
struct TracedFn;

struct Array {
  mx::array inner;
  explicit Array(mx::array a) : inner(std::move(a)) {}
};

struct ArrayList {
  std::vector<mx::array> items;
};

struct TensorMap {
  std::unordered_map<std::string, mx::array> tensors;
  std::unordered_map<std::string, std::string> metadata;
};

using ArrayPtr = std::unique_ptr<Array>;
using Ints = rust::Slice<const std::int32_t>;

// Arrays and host data.
ArrayPtr array_clone(const Array& a);
ArrayPtr array_from_bytes(rust::Slice<const std::uint8_t> data, Ints shape, Dtype dtype);
ArrayPtr array_full(Ints shape, double value, Dtype dtype);
ArrayPtr array_arange(double start, double stop, double step, Dtype dtype);
rust::Vec<std::int32_t> array_shape(const Array& a);
Dtype array_dtype(const Array& a);
std::size_t array_size(const Array& a);
std::size_t array_nbytes(const Array& a);
void array_read_into(const Array& a, rust::Slice<std::uint8_t> out);
rust::String array_describe(const Array& a);

std::unique_ptr<ArrayList> array_list_new();
void array_list_push(ArrayList& list, const Array& a);
std::size_t array_list_len(const ArrayList& list);
ArrayPtr array_list_get(const ArrayList& list, std::size_t index);

void eval(const ArrayList& list);
void async_eval(const ArrayList& list);
std::size_t pending_graph_nodes(const ArrayList& list);
rust::String pending_graph_ops(const ArrayList& list);
void synchronize(const Stream& stream);
void synchronize_default();

// Ops.
ArrayPtr unary(UnaryOp op, const Array& a);
ArrayPtr binary(BinaryOp op, const Array& a, const Array& b);
ArrayPtr where_select(const Array& cond, const Array& x, const Array& y);
ArrayPtr clip(const Array& a, const Array* lo, const Array* hi);
ArrayPtr astype(const Array& a, Dtype dtype);
ArrayPtr reduce(ReduceOp op, const Array& a, Ints axes, bool keepdims);
ArrayPtr variance(const Array& a, Ints axes, bool keepdims, std::int32_t ddof, bool std);
ArrayPtr softmax(const Array& a, Ints axes, bool precise);
ArrayPtr argmax(const Array& a, std::int32_t axis, bool keepdims);
ArrayPtr argmin(const Array& a, std::int32_t axis, bool keepdims);
ArrayPtr argpartition(const Array& a, std::int32_t kth, std::int32_t axis);
ArrayPtr sort(const Array& a, std::int32_t axis);
ArrayPtr argsort(const Array& a, std::int32_t axis);
ArrayPtr topk(const Array& a, std::int32_t k, std::int32_t axis);
ArrayPtr cumsum(const Array& a, std::int32_t axis, bool reverse, bool inclusive);
ArrayPtr reshape(const Array& a, Ints shape);
ArrayPtr transpose(const Array& a, Ints axes);
ArrayPtr swapaxes(const Array& a, std::int32_t axis1, std::int32_t axis2);
ArrayPtr expand_dims(const Array& a, Ints axes);
ArrayPtr squeeze(const Array& a, Ints axes);
ArrayPtr broadcast_to(const Array& a, Ints shape);
ArrayPtr contiguous(const Array& a);
ArrayPtr slice(const Array& a, Ints start, Ints stop, Ints strides);
ArrayPtr slice_dynamic(const Array& a, const Array& start, Ints axes, Ints sizes);
ArrayPtr slice_update(const Array& src, const Array& update, Ints start, Ints stop, Ints strides);
ArrayPtr slice_update_dynamic(const Array& src, const Array& update, const Array& start, Ints axes);
ArrayPtr concatenate(const ArrayList& list, std::int32_t axis);
ArrayPtr stack(const ArrayList& list, std::int32_t axis);
std::unique_ptr<ArrayList> split_sections(const Array& a, std::int32_t sections, std::int32_t axis);
std::unique_ptr<ArrayList> split_at(const Array& a, Ints indices, std::int32_t axis);
ArrayPtr take(const Array& a, const Array& indices, std::int32_t axis);
ArrayPtr take_along_axis(const Array& a, const Array& indices, std::int32_t axis);
ArrayPtr put_along_axis(const Array& a, const Array& indices, const Array& values, std::int32_t axis);
ArrayPtr matmul(const Array& a, const Array& b);
ArrayPtr addmm(const Array& c, const Array& a, const Array& b, float alpha, float beta);

// Random.
ArrayPtr random_key(std::uint64_t seed);
void random_seed(std::uint64_t seed);
ArrayPtr random_split(const Array& key, std::int32_t num);
ArrayPtr random_uniform(double low, double high, Ints shape, Dtype dtype, const Array* key);
ArrayPtr random_normal(Ints shape, Dtype dtype, float loc, float scale, const Array* key);
ArrayPtr random_randint(std::int64_t low, std::int64_t high, Ints shape, Dtype dtype, const Array* key);
ArrayPtr random_categorical(const Array& logits, std::int32_t axis, const Array* key);

// Fast kernels, quantization, fused blocks.
ArrayPtr rms_norm(const Array& x, const Array* weight, float eps);
ArrayPtr layer_norm(const Array& x, const Array* weight, const Array* bias, float eps);
ArrayPtr rope(const Array& x, std::int32_t dims, bool traditional, float base, float scale, std::int32_t offset,
              const Array* freqs);
ArrayPtr rope_dynamic(const Array& x, std::int32_t dims, bool traditional, float base, float scale,
                      const Array& offset, const Array* freqs);
ArrayPtr scaled_dot_product_attention(const Array& q, const Array& k, const Array& v, float scale,
                                      rust::Str mask_mode, const Array* mask);
std::unique_ptr<ArrayList> routed_stream_mix(const Array& streams, const Array& norm_weight, float eps, float divisor,
                                             const Array& router, const Array& coefs, std::int32_t active);
std::unique_ptr<ArrayList> routed_stream_correction(const Array& predictions, const Array& activated,
                                                    const Array& norm_weight, float eps, float divisor, const Array& router,
                                                    const Array& coefs, std::int32_t active);
std::unique_ptr<ArrayList> rms_norm_add(const Array& x, const Array& weight, float eps, const Array& residual);
std::unique_ptr<ArrayList> rms_norm_add_then_norm(const Array& x, const Array& weight, float eps, const Array& residual,
                                                  const Array& extra, float scale, const Array& next_weight,
                                                  float next_eps);
std::unique_ptr<ArrayList> rms_norm_rope(const Array& x, const Array& weight, float eps, std::int32_t dims,
                                         bool traditional, float base, float scale, std::int32_t offset,
                                         const Array* offsets, const Array* freqs);
std::unique_ptr<ArrayList> quantize(const Array& w, std::int32_t group_size, std::int32_t bits, rust::Str mode);
ArrayPtr dequantize(const Array& w, const Array& scales, const Array* biases, std::int32_t group_size,
                    std::int32_t bits, rust::Str mode);
ArrayPtr quantized_matmul(const Array& x, const Array& w, const Array& scales, const Array* biases, bool transpose,
                          std::int32_t group_size, std::int32_t bits, rust::Str mode);
std::unique_ptr<ArrayList> quantized_matmul_of(std::int32_t input, const Array& x, const Array& u, const Array& w,
                                               const Array& scales, const Array* biases, std::int32_t group_size,
                                               std::int32_t bits, rust::Str mode);
ArrayPtr gather_mm(const Array& a, const Array& b, const Array* lhs_indices, const Array* rhs_indices,
                   bool sorted_indices);
ArrayPtr gather_qmm(const Array& x, const Array& w, const Array& scales, const Array* biases,
                    const Array* lhs_indices, const Array* rhs_indices, bool transpose, std::int32_t group_size,
                    std::int32_t bits, rust::Str mode, bool sorted_indices);
std::unique_ptr<ArrayList> fused(FusedBlock block, const ArrayList& inputs);
std::unique_ptr<ArrayList> compiled_call(const TracedFn& f, std::uint64_t id, const ArrayList& inputs);
void compiled_forget(std::uint64_t id);
void set_compile_enabled(bool enabled);
void set_cpu_kernels(bool enabled);
bool cpu_kernels();
void set_cuda_kernels(bool enabled);
void set_cuda_gemv_prefetch(std::int32_t rows, std::int32_t l2_ahead);
void set_cuda_kernel_code_dir(rust::Str dir);
bool cuda_kernels();

// Safetensors, memory, devices.
std::unique_ptr<TensorMap> load_safetensors(rust::Str path);
rust::Vec<rust::String> tensor_map_keys(const TensorMap& map);
ArrayPtr tensor_map_get(const TensorMap& map, rust::Str name);
rust::Vec<rust::String> tensor_map_metadata(const TensorMap& map);
void save_safetensors(rust::Str path, rust::Slice<const rust::String> names, const ArrayList& arrays,
                      rust::Slice<const rust::String> metadata);

std::size_t get_active_memory();
std::size_t get_peak_memory();
std::size_t get_cache_memory();
void reset_peak_memory();
std::size_t get_memory_limit();
std::size_t set_memory_limit(std::size_t limit);
std::size_t set_cache_limit(std::size_t limit);
std::size_t set_wired_limit(std::size_t limit);
void clear_cache();

rust::String mlx_version();
Device default_device();
void set_default_device(const Device& device);
bool device_available(const Device& device);
std::int32_t device_count(DeviceKind kind);
rust::Vec<rust::String> device_info(const Device& device);
Stream default_stream(const Device& device);
Stream new_stream(const Device& device);
void set_default_stream(const Stream& stream);
bool metal_nax_available();

// Conversions shared by the .cc files (defined in array.cc).
mx::Dtype to_mx(Dtype dtype);
Dtype from_mx(mx::Dtype dtype);
mx::Shape to_shape(Ints shape);
std::vector<int> to_ints(Ints values);
mx::Device to_mx(const Device& device);

inline ArrayPtr wrap(mx::array a) { return std::make_unique<Array>(std::move(a)); }
inline std::optional<mx::array> optional(const Array* a) {
  return a ? std::optional<mx::array>(a->inner) : std::nullopt;
}

}  // namespace mlxcel
