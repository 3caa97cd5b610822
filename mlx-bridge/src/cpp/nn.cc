// mlx::core::fast kernels, quantization, and the fused blocks compiled with mx::compile.
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "mlx/compile_impl.h"

#include "mlx-bridge/src/cpp/cpu_fast.h"
#include "mlx-bridge/src/cpp/cuda_fast.h"
#include "mlx-bridge/src/cpp/cuda_kernel_source.h"
#include "mlx-bridge/src/cpp/shim.h"
#include "mlx-bridge/src/ffi.rs.h"

namespace mlxcel {

ArrayPtr rms_norm(const Array& x, const Array* weight, float eps) {
  if (auto out = cpu_fast::rms_norm(x.inner, optional(weight), eps)) return wrap(std::move(*out));
  return wrap(mx::fast::rms_norm(x.inner, optional(weight), eps));
}

ArrayPtr layer_norm(const Array& x, const Array* weight, const Array* bias, float eps) {
  return wrap(mx::fast::layer_norm(x.inner, optional(weight), optional(bias), eps));
}

// MLX takes either a base or explicit frequencies, never both.
static std::optional<float> rope_base(float base, const Array* freqs) {
  return freqs ? std::nullopt : std::optional<float>(base);
}

ArrayPtr rope(const Array& x, std::int32_t dims, bool traditional, float base, float scale, std::int32_t offset,
              const Array* freqs) {
  if (auto out = cpu_fast::rope(x.inner, dims, traditional, rope_base(base, freqs), scale, mx::array(offset, mx::int32),
                                optional(freqs)))
    return wrap(std::move(*out));
  return wrap(mx::fast::rope(x.inner, dims, traditional, rope_base(base, freqs), scale, offset, optional(freqs)));
}

ArrayPtr rope_dynamic(const Array& x, std::int32_t dims, bool traditional, float base, float scale,
                      const Array& offset, const Array* freqs) {
  if (auto out =
          cpu_fast::rope(x.inner, dims, traditional, rope_base(base, freqs), scale, offset.inner, optional(freqs)))
    return wrap(std::move(*out));
  return wrap(
      mx::fast::rope(x.inner, dims, traditional, rope_base(base, freqs), scale, offset.inner, optional(freqs)));
}

ArrayPtr scaled_dot_product_attention(const Array& q, const Array& k, const Array& v, float scale,
                                      rust::Str mask_mode, const Array* mask) {
  std::string mode(mask_mode);
  if (auto out = cpu_fast::scaled_dot_product_attention(q.inner, k.inner, v.inner, scale, mode, optional(mask)))
    return wrap(std::move(*out));
  if (auto out = cuda_fast::scaled_dot_product_attention(q.inner, k.inner, v.inner, scale, mode, optional(mask)))
    return wrap(std::move(*out));
  return wrap(mx::fast::scaled_dot_product_attention(q.inner, k.inner, v.inner, scale, mode, optional(mask)));
}

void set_cpu_kernels(bool enabled) { cpu_fast::set_cpu_kernels_enabled(enabled); }
bool cpu_kernels() { return cpu_fast::cpu_kernels_enabled(); }
void set_cuda_kernels(bool enabled) { cuda_fast::set_cuda_kernels_enabled(enabled); }
void set_cuda_gemv_prefetch(std::int32_t rows, std::int32_t l2_ahead) {
  cuda_fast::set_gemv_prefetch(rows, l2_ahead);
}
void set_cuda_kernel_code_dir(rust::Str dir) { cuda_fast::set_kernel_code_dir(std::string(dir)); }
bool cuda_kernels() { return cuda_fast::cuda_kernels_enabled(); }

namespace {
std::unique_ptr<ArrayList> optional_list(std::optional<mx::array> a) {
  auto out = std::make_unique<ArrayList>();
  if (a) out->items.push_back(std::move(*a));
  return out;
}
}  // namespace

std::unique_ptr<ArrayList> routed_stream_mix(const Array& streams, const Array& norm_weight, float eps, float divisor,
                                             const Array& router, const Array& coefs, std::int32_t active) {
  return optional_list(
      cuda_fast::routed_stream_mix(streams.inner, norm_weight.inner, eps, divisor, router.inner, coefs.inner, active));
}

std::unique_ptr<ArrayList> routed_stream_correction(const Array& predictions, const Array& activated,
                                                    const Array& norm_weight, float eps, float divisor, const Array& router,
                                                    const Array& coefs, std::int32_t active) {
  return optional_list(cuda_fast::routed_stream_correction(predictions.inner, activated.inner, norm_weight.inner, eps,
                                                           divisor, router.inner, coefs.inner, active));
}

std::unique_ptr<ArrayList> rms_norm_add(const Array& x, const Array& weight, float eps, const Array& residual) {
  return optional_list(cuda_fast::rms_norm_add(x.inner, weight.inner, eps, residual.inner));
}

std::unique_ptr<ArrayList> rms_norm_add_then_norm(const Array& x, const Array& weight, float eps, const Array& residual,
                                                  const Array& extra, float scale, const Array& next_weight,
                                                  float next_eps) {
  auto out = std::make_unique<ArrayList>();
  if (auto pair = cuda_fast::rms_norm_add_then_norm(x.inner, weight.inner, eps, residual.inner, extra.inner, scale,
                                                    next_weight.inner, next_eps)) {
    out->items = {std::move(pair->first), std::move(pair->second)};
  }
  return out;
}

std::unique_ptr<ArrayList> quantized_matmul_of(std::int32_t input, const Array& x, const Array& u, const Array& w,
                                               const Array& scales, const Array* biases, std::int32_t group_size,
                                               std::int32_t bits, rust::Str mode) {
  if (input < static_cast<int>(cuda_fast::GemvInput::Scaled) || input > static_cast<int>(cuda_fast::GemvInput::SiluGated)) {
    throw std::invalid_argument("quantized_matmul_of: unknown input form " + std::to_string(input));
  }
  return optional_list(cuda_fast::quantized_matmul_of(static_cast<cuda_fast::GemvInput>(input), x.inner, u.inner,
                                                      w.inner, scales.inner, optional(biases), group_size, bits,
                                                      std::string(mode)));
}

std::unique_ptr<ArrayList> rms_norm_rope(const Array& x, const Array& weight, float eps, std::int32_t dims,
                                         bool traditional, float base, float scale, std::int32_t offset,
                                         const Array* offsets, const Array* freqs) {
  if (freqs) return std::make_unique<ArrayList>();  // explicit frequencies: the ops run
  return optional_list(cuda_fast::rms_norm_rope(x.inner, weight.inner, eps, dims, traditional, base, scale,
                                                offsets ? offsets->inner : mx::array({offset}, {1}, mx::int32)));
}

std::unique_ptr<ArrayList> quantize(const Array& w, std::int32_t group_size, std::int32_t bits, rust::Str mode) {
  auto out = std::make_unique<ArrayList>();
  out->items = mx::quantize(w.inner, group_size, bits, std::string(mode));
  return out;
}

ArrayPtr dequantize(const Array& w, const Array& scales, const Array* biases, std::int32_t group_size,
                    std::int32_t bits, rust::Str mode) {
  return wrap(mx::dequantize(w.inner, scales.inner, optional(biases), group_size, bits, std::string(mode)));
}

namespace {
// MLX 0.32.4's CUDA quantized matmul gives wrong products for more than one row when the inner
// size is 64 (a relative error of ~1, or overflow, against the dequantized weight's matmul, in
// bfloat16 and float32 alike); one row, and bfloat16 rows with inner sizes 256, 2048 and 8192,
// are right (H200, examples/cuda_probe.rs). Float32 rows were checked only at 64 (the larger
// sizes' checks did not finish compiling within the device call), so they all take the safe
// route. Gemma 3n's Laurel projection back to the hidden size has inner size 64. These products
// (prefill chunks, and batched decode steps of several rows) go through the dequantized weight
// instead: a temporary per product, exact. Metal's kernels are not affected.
bool mlx_cuda_quantized_matmul_unreliable(const mx::array& x) {
  if (!mx::cu::is_available() || mx::default_device().type != mx::Device::gpu || x.ndim() == 0) return false;
  const auto inner = static_cast<std::size_t>(x.shape(-1));
  const bool rows = x.size() > inner;
  return rows && (inner < 256 || x.dtype() == mx::float32);
}
}  // namespace

ArrayPtr quantized_matmul(const Array& x, const Array& w, const Array& scales, const Array* biases, bool transpose,
                          std::int32_t group_size, std::int32_t bits, rust::Str mode) {
  if (auto out = cuda_fast::quantized_matmul(x.inner, w.inner, scales.inner, optional(biases), transpose, group_size,
                                             bits, std::string(mode)))
    return wrap(std::move(*out));
  if (mlx_cuda_quantized_matmul_unreliable(x.inner)) {
    auto dense = mx::dequantize(w.inner, scales.inner, optional(biases), group_size, bits, std::string(mode));
    return wrap(mx::matmul(x.inner, transpose ? mx::swapaxes(dense, -1, -2) : dense));
  }
  return wrap(mx::quantized_matmul(x.inner, w.inner, scales.inner, optional(biases), transpose, group_size, bits,
                                   std::string(mode)));
}

// ---- Fused blocks -------------------------------------------------------------------------------
// Each block is a plain function of arrays, compiled once by MLX (keyed by the function pointer)
// into as few kernels as its graph allows. Models add their own blocks here.

namespace {

using Arrays = std::vector<mx::array>;

mx::array scalar_like(float value, const mx::array& like) { return mx::array(value, like.dtype()); }

mx::array gelu_tanh_expr(const mx::array& x) {
  const float k = std::sqrt(2.0f / static_cast<float>(M_PI));
  auto inner = mx::multiply(scalar_like(k, x),
                            mx::add(x, mx::multiply(scalar_like(0.044715f, x), mx::multiply(x, mx::square(x)))));
  return mx::multiply(mx::multiply(scalar_like(0.5f, x), x), mx::add(scalar_like(1.0f, x), mx::tanh(inner)));
}

Arrays gelu_tanh_block(const Arrays& in) { return {gelu_tanh_expr(in.at(0))}; }

Arrays gelu_tanh_gate_block(const Arrays& in) { return {mx::multiply(gelu_tanh_expr(in.at(0)), in.at(1))}; }

Arrays softcap_block(const Arrays& in) {
  const auto& x = in.at(0);
  auto cap = mx::astype(in.at(1), x.dtype());
  return {mx::multiply(mx::tanh(mx::divide(x, cap)), cap)};
}

// Keeps the activations above mean + k * std (population std) of the last axis.
mx::array gaussian_topk(const mx::array& gate, const mx::array& k) {
  auto mean = mx::mean(gate, -1, true);
  auto std = mx::std(gate, -1, true, 0);
  auto cutoff = mx::add(mean, mx::multiply(std, mx::astype(k, gate.dtype())));
  return mx::maximum(mx::subtract(gate, cutoff), scalar_like(0.0f, gate));
}

Arrays gaussian_topk_gelu_gate_block(const Arrays& in) {
  return {mx::multiply(gelu_tanh_expr(gaussian_topk(in.at(0), in.at(2))), in.at(1))};
}

mx::array silu_expr(const mx::array& x) { return mx::multiply(x, mx::sigmoid(x)); }

Arrays silu_gate_block(const Arrays& in) { return {mx::multiply(silu_expr(in.at(0)), in.at(1))}; }

enum class Act { GeluTanh, Silu };

// down(act(gate(x)) * up(x)), each weight given as W^T ([in, out], or [1, in, out] for one
// sequence, so no transpose or flatten node sits between the activations and the product).
template <Act A, bool Sparse>
Arrays gated_mlp_block(const Arrays& in) {
  const auto& x = in.at(0);
  auto gate = mx::matmul(x, in.at(1));
  if constexpr (Sparse) gate = gaussian_topk(gate, in.at(4));
  auto activated = A == Act::GeluTanh ? gelu_tanh_expr(gate) : silu_expr(gate);
  return {mx::matmul(mx::multiply(activated, mx::matmul(x, in.at(2))), in.at(3))};
}

struct BlockSpec {
  Arrays (*fn)(const Arrays&);
  std::size_t arity;
  const char* name;
};

BlockSpec spec(FusedBlock block) {
  switch (block) {
    case FusedBlock::GeluTanh: return {gelu_tanh_block, 1, "gelu_tanh"};
    case FusedBlock::GeluTanhGate: return {gelu_tanh_gate_block, 2, "gelu_tanh_gate"};
    case FusedBlock::Softcap: return {softcap_block, 2, "softcap"};
    case FusedBlock::GaussianTopkGeluGate: return {gaussian_topk_gelu_gate_block, 3, "gaussian_topk_gelu_gate"};
    case FusedBlock::GeluGatedMlp: return {gated_mlp_block<Act::GeluTanh, false>, 4, "gelu_gated_mlp"};
    case FusedBlock::GeluGatedMlpSparse: return {gated_mlp_block<Act::GeluTanh, true>, 5, "gelu_gated_mlp_sparse"};
    case FusedBlock::SiluGate: return {silu_gate_block, 2, "silu_gate"};
    case FusedBlock::SiluGatedMlp: return {gated_mlp_block<Act::Silu, false>, 4, "silu_gated_mlp"};
  }
  throw std::invalid_argument("unknown fused block");
}

}  // namespace

std::unique_ptr<ArrayList> fused(FusedBlock block, const ArrayList& inputs) {
  auto s = spec(block);
  if (inputs.items.size() != s.arity) {
    throw std::invalid_argument(std::string("fused block ") + s.name + " takes " + std::to_string(s.arity) +
                                " inputs, got " + std::to_string(inputs.items.size()));
  }
  auto out = std::make_unique<ArrayList>();
  if (block == FusedBlock::SiluGate || block == FusedBlock::GeluTanhGate) {
    if (auto y = cpu_fast::gated_activation(block == FusedBlock::SiluGate, inputs.items[0], inputs.items[1])) {
      out->items = {std::move(*y)};
      return out;
    }
  }
  out->items = mx::compile(s.fn)(inputs.items);
  return out;
}

// ---- Rust functions compiled with mx::compile -------------------------------------------------

namespace {

// Keys for MLX's compile cache, far from the function addresses its other entries are keyed by.
constexpr std::uintptr_t kTracedKeyBase = std::uintptr_t{1} << 62;

// MLX keeps one compile cache per thread: the caches each id was compiled in, to forget it in.
std::mutex traced_mutex;
std::unordered_map<std::uint64_t, std::vector<mx::detail::CompileCacheWeakPtr>> traced_caches;

}  // namespace

std::unique_ptr<ArrayList> compiled_call(const TracedFn& f, std::uint64_t id, const ArrayList& inputs) {
  // Once per id and thread: the registration is off the per-step path.
  thread_local std::unordered_set<std::uint64_t> registered;
  if (registered.insert(id).second) {
    std::lock_guard<std::mutex> lock(traced_mutex);
    traced_caches[id].push_back(mx::detail::compile_cache());
  }
  // Called only while MLX traces, within this call, so the reference to `f` stays valid.
  auto trace = [&f](const std::vector<mx::array>& in) {
    ArrayList list{in};
    return call_traced(f, list)->items;
  };
  auto out = std::make_unique<ArrayList>();
  out->items = mx::detail::compile(trace, kTracedKeyBase + id)(inputs.items);
  return out;
}

void compiled_forget(std::uint64_t id) {
  std::vector<mx::detail::CompileCacheWeakPtr> caches;
  {
    std::lock_guard<std::mutex> lock(traced_mutex);
    auto found = traced_caches.find(id);
    if (found == traced_caches.end()) return;
    caches = std::move(found->second);
    traced_caches.erase(found);
  }
  for (const auto& cache : caches)
    if (!cache.expired()) mx::detail::compile_erase(cache, kTracedKeyBase + id);
}

void set_compile_enabled(bool enabled) {
  if (enabled) {
    mx::enable_compile();
  } else {
    mx::disable_compile();
  }
}

}  // namespace mlxcel
