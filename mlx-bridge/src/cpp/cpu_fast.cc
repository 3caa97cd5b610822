// CPU kernels for MLX's `fast` ops. MLX 0.32.4 has fused kernels for rms_norm, rope and
// scaled_dot_product_attention on its GPU backends only; on the CPU it expands each call into
// its op-by-op fallback (a Llama layer's two norms, two RoPEs and one attention become ~90 graph
// nodes, ~3.9k per SmolLM2 token, each paying MLX's per-op cost of a few microseconds). These
// primitives compute the same results as those fallbacks in one node each, scheduled through the
// CPU command encoder like MLX's own ops, so they stay lazy and compose with the graph.
#include "mlx-bridge/src/cpp/cpu_fast.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "mlx-bridge/src/cpp/block_quant/pool.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"

namespace mlxcel::cpu_fast {

namespace {

using mx::array;

// ---- Element access --------------------------------------------------------------------------

template <typename T>
inline float to_float(T value) {
  return static_cast<float>(value);
}

template <typename T>
inline T from_float(float value) {
  return static_cast<T>(value);
}

// The strides and shape of a 4-D view, in elements.
struct View4 {
  std::int64_t shape[4];
  std::int64_t strides[4];

  static View4 of(const array& a) {
    if (a.ndim() != 4) throw std::invalid_argument("expected a 4-D array");
    View4 v{};
    for (int i = 0; i < 4; ++i) {
      v.shape[i] = a.shape(i);
      v.strides[i] = a.strides()[i];
    }
    return v;
  }

  std::int64_t at(std::int64_t i0, std::int64_t i1, std::int64_t i2) const {
    return i0 * strides[0] + i1 * strides[1] + i2 * strides[2];
  }
};

// Offsets of the rows (all but the last axis) of an N-D array in row-major order, so kernels
// that work row by row can read any view (transposed, sliced, broadcast) without a copy.
std::vector<std::int64_t> row_offsets(const array& a) {
  const int nd = static_cast<int>(a.ndim());
  std::int64_t rows = 1;
  for (int i = 0; i + 1 < nd; ++i) rows *= a.shape(i);
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(rows));
  std::vector<std::int64_t> index(static_cast<std::size_t>(std::max(nd - 1, 0)), 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t offset = 0;
    for (int i = 0; i + 1 < nd; ++i) offset += index[i] * a.strides()[i];
    offsets[static_cast<std::size_t>(r)] = offset;
    for (int i = nd - 2; i >= 0; --i) {
      if (++index[i] < a.shape(i)) break;
      index[i] = 0;
    }
  }
  return offsets;
}

void allocate(array& out) { out.set_data(mx::allocator::malloc(out.nbytes())); }

// The float32 inner loops of attention, cloned per ISA (picked once by the loader's ifunc) since
// the bridge itself is built for baseline x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MLXCEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MLXCEL_CLONES
#endif

// Sixteen partial sums let the compiler vectorise without reassociating one sum; inlined into
// each ISA clone that calls it.
inline float dot16(const float* __restrict a, const float* __restrict b, std::int64_t n) {
  float partial[16] = {};
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) partial[j] += a[i + j] * b[i + j];
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (float p : partial) sum += p;
  return sum;
}

MLXCEL_CLONES float dot_f32(const float* a, const float* b, std::int64_t n) { return dot16(a, b, n); }

MLXCEL_CLONES void axpy_f32(float alpha, const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Q K^T and P V for a block of query rows of one head: each key and value row is read once per
// block (from L2, then L1 for the other rows) instead of once per query row, and the per-key work
// inlines and vectorises.
MLXCEL_CLONES void block_scores_f32(const float* __restrict q, std::int64_t rows, std::int64_t D,
                                    const float* __restrict k, std::int64_t stride, std::int64_t n,
                                    float* __restrict out, std::int64_t out_stride) {
  for (std::int64_t s = 0; s < n; ++s) {
    const float* __restrict key = k + s * stride;
    for (std::int64_t r = 0; r < rows; ++r) out[r * out_stride + s] = dot16(q + r * D, key, D);
  }
}

MLXCEL_CLONES void block_weighted_sum_f32(const float* __restrict p, std::int64_t p_stride, std::int64_t rows,
                                          const float* __restrict v, std::int64_t stride, std::int64_t n,
                                          std::int64_t Dv, float* __restrict acc) {
  for (std::int64_t i = 0; i < rows * Dv; ++i) acc[i] = 0.0f;
  for (std::int64_t s = 0; s < n; ++s) {
    const float* __restrict value = v + s * stride;
    for (std::int64_t r = 0; r < rows; ++r) {
      const float w = p[r * p_stride + s];
      if (w == 0.0f) continue;
      float* __restrict out = acc + r * Dv;
      // Fixed 16-wide steps: the bridge builds at -O2, whose cost model vectorises these and not
      // a loop of unknown length.
      std::int64_t d = 0;
      for (; d + 16 <= Dv; d += 16)
        for (int j = 0; j < 16; ++j) out[d + j] += w * value[d + j];
      for (; d < Dv; ++d) out[d] += w * value[d];
    }
  }
}

// exp(x - shift) for every x, in place, then their sum. Scores minus their maximum are <= 0;
// libm's expf is a call per value and MLX's softmax runs its scalar exp (most of a prefill's
// attention time), so this is Cephes' expf polynomial, branch-free so the loop vectorises:
// 2^n * p(r) with x = n ln2 + r, |r| <= ln2 / 2, within 2 ulp. Below -87.3, exp is 0.
inline float exp_nonpositive(float v) {
  const float c = std::max(v, -87.3f);
  const float k = std::floor(c * 1.44269504088896341f + 0.5f);
  const float r = c - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<std::int32_t>(k) + 127) << 23);
  return v < -87.3f ? 0.0f : p * scale;
}

MLXCEL_CLONES float exp_shifted_sum_f32(float* __restrict x, std::int64_t n, float shift) {
  std::int64_t e = 0;
  for (; e + 16 <= n; e += 16)
    for (int j = 0; j < 16; ++j) x[e + j] = exp_nonpositive(x[e + j] - shift);
  for (; e < n; ++e) x[e] = exp_nonpositive(x[e] - shift);
  float partial[16] = {};
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) partial[j] += x[i + j];
  float sum = 0.0f;
  for (; i < n; ++i) sum += x[i];
  for (float p : partial) sum += p;
  return sum;
}

// exp on [-87.3, 88.3] (clamped outside: sigmoid and tanh saturate there anyway), as
// exp_nonpositive.
inline float exp_clamped(float v) { return v > 0.0f ? 1.0f / exp_nonpositive(-std::min(v, 88.3f)) : exp_nonpositive(v); }

inline float silu_one(float x) { return x / (1.0f + exp_clamped(-x)); }

// silu(g) * u and gelu_tanh(g) * u over n float32 values: MLX's compiled CPU kernels for these
// evaluate exp one value at a time through a libm fma call, a sixth of a prefill; these loops
// vectorise.
MLXCEL_CLONES void silu_gate_f32(const float* __restrict g, const float* __restrict u, float* __restrict out,
                                 std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) out[i + j] = silu_one(g[i + j]) * u[i + j];
  for (; i < n; ++i) out[i] = silu_one(g[i]) * u[i];
}

inline float gelu_tanh_one(float x) {
  const float inner = 0.7978845608028654f * (x + 0.044715f * (x * (x * x)));
  // tanh(y) = 1 - 2 / (1 + exp(2y)).
  const float t = 1.0f - 2.0f / (1.0f + exp_clamped(2.0f * inner));
  return 0.5f * x * (1.0f + t);
}

MLXCEL_CLONES void gelu_tanh_gate_f32(const float* __restrict g, const float* __restrict u, float* __restrict out,
                                      std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) out[i + j] = gelu_tanh_one(g[i + j]) * u[i + j];
  for (; i < n; ++i) out[i] = gelu_tanh_one(g[i]) * u[i];
}

template <typename F>
void dispatch_float(mx::Dtype dtype, const char* op, F&& f) {
  switch (dtype) {
    case mx::float32: f(float{}); break;
    case mx::bfloat16: f(mx::bfloat16_t{}); break;
    case mx::float16: f(mx::float16_t{}); break;
    default: throw std::invalid_argument(std::string("[") + op + "] expects a floating-point input");
  }
}

// ---- RMSNorm ---------------------------------------------------------------------------------

class RmsNorm : public mx::Primitive {
 public:
  RmsNorm(mx::Stream stream, float eps) : mx::Primitive(stream), eps_(eps) {}

  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    const array& x = inputs[0];
    const array& w = inputs[1];
    array& out = outputs[0];
    allocate(out);
    auto& encoder = mx::cpu::get_command_encoder(stream());
    encoder.set_input_array(x);
    encoder.set_input_array(w);
    encoder.set_output_array(out);
    dispatch_float(out.dtype(), "rms_norm", [&](auto tag) {
      using T = decltype(tag);
      encoder.dispatch([x_data = x.data<T>(), w_data = w.data<T>(), w_stride = w.strides()[0],
                        out_data = out.data<T>(), rows = row_offsets(x), x_last = x.strides().back(),
                        d = x.shape(-1), eps = eps_]() {
        for (std::size_t r = 0; r < rows.size(); ++r) {
          const T* row = x_data + rows[r];
          T* dst = out_data + static_cast<std::int64_t>(r) * d;
          // Eight partial sums let the compiler vectorise without reassociating one sum.
          float partial[8] = {};
          std::int64_t i = 0;
          for (; i + 8 <= d; i += 8)
            for (int j = 0; j < 8; ++j) {
              float v = to_float(row[(i + j) * x_last]);
              partial[j] += v * v;
            }
          float sum = 0.0f;
          for (; i < d; ++i) {
            float v = to_float(row[i * x_last]);
            sum += v * v;
          }
          for (float p : partial) sum += p;
          const float inv = 1.0f / std::sqrt(sum / static_cast<float>(d) + eps);
          // As MLX's fallback: normalise in float32, round to the output type, then scale by the
          // weight in the output type.
          for (std::int64_t k = 0; k < d; ++k) {
            T normalized = from_float<T>(to_float(row[k * x_last]) * inv);
            dst[k] = from_float<T>(to_float(normalized) * to_float(w_data[k * w_stride]));
          }
        }
      });
    });
  }

  void eval_gpu(const std::vector<array>&, std::vector<array>&) override {
    throw std::runtime_error("[mlxcel rms_norm] is a CPU kernel; use mlx::core::fast::rms_norm on the GPU");
  }

  const char* name() const override { return "MlxcelRmsNorm"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    return eps_ == static_cast<const RmsNorm&>(other).eps_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override { return {inputs[0].shape()}; }

 private:
  float eps_;
};

// ---- RoPE ------------------------------------------------------------------------------------

class Rope : public mx::Primitive {
 public:
  Rope(mx::Stream stream, int dims, bool traditional, float base, float scale, bool has_freqs)
      : mx::Primitive(stream),
        dims_(dims),
        traditional_(traditional),
        base_(base),
        scale_(scale),
        has_freqs_(has_freqs) {}

  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    const array& x = inputs[0];
    const array& offset = inputs[1];
    array& out = outputs[0];
    allocate(out);
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (const auto& in : inputs) encoder.set_input_array(in);
    encoder.set_output_array(out);

    const int half = dims_ / 2;
    // Inverse frequencies exactly as MLX's fallback computes them, in float32.
    std::vector<float> inv_freqs(static_cast<std::size_t>(half));
    if (has_freqs_) {
      const array& freqs = inputs[2];
      const float* f = freqs.data<float>();
      for (int i = 0; i < half; ++i) inv_freqs[i] = 1.0f / f[i * freqs.strides()[0]];
    } else {
      const float step = std::log(base_) / static_cast<float>(half);
      for (int i = 0; i < half; ++i) inv_freqs[i] = std::exp(static_cast<float>(-i) * step);
    }
    // Offsets: one, or one per batch entry.
    std::vector<std::int32_t> offsets(static_cast<std::size_t>(offset.size()));
    const std::int32_t* o = offset.data<std::int32_t>();
    for (std::size_t i = 0; i < offsets.size(); ++i) offsets[i] = o[i * (offset.ndim() ? offset.strides()[0] : 0)];

    dispatch_float(out.dtype(), "rope", [&](auto tag) {
      using T = decltype(tag);
      encoder.dispatch([x_data = x.data<T>(), view = View4::of(x), out_data = out.data<T>(),
                        inv_freqs = std::move(inv_freqs), offsets = std::move(offsets), dims = dims_, half,
                        traditional = traditional_, scale = scale_]() {
        const std::int64_t B = view.shape[0], H = view.shape[1], L = view.shape[2], D = view.shape[3];
        const std::int64_t last = view.strides[3];
        std::vector<T> coss(static_cast<std::size_t>(half)), sins(static_cast<std::size_t>(half));
        for (std::int64_t b = 0; b < B; ++b) {
          const float base_position = static_cast<float>(offsets.size() > 1 ? offsets[b] : offsets[0]);
          for (std::int64_t l = 0; l < L; ++l) {
            // MLX: positions = (arange(L) + offset) * scale in float32; cos/sin rounded to x's type.
            const float position = (static_cast<float>(l) + base_position) * scale;
            for (int i = 0; i < half; ++i) {
              const float theta = position * inv_freqs[i];
              coss[i] = from_float<T>(std::cos(theta));
              sins[i] = from_float<T>(std::sin(theta));
            }
            for (std::int64_t h = 0; h < H; ++h) {
              const T* src = x_data + view.at(b, h, l);
              T* dst = out_data + ((b * H + h) * L + l) * D;
              for (int i = 0; i < half; ++i) {
                const std::int64_t i1 = traditional ? 2 * i : i;
                const std::int64_t i2 = traditional ? 2 * i + 1 : i + half;
                // Products and differences rounded in T, as the fallback's ops in x's dtype.
                const T x1 = src[i1 * last], x2 = src[i2 * last];
                const T a = from_float<T>(to_float(x1) * to_float(coss[i]));
                const T b2 = from_float<T>(to_float(x2) * to_float(sins[i]));
                const T c = from_float<T>(to_float(x1) * to_float(sins[i]));
                const T d2 = from_float<T>(to_float(x2) * to_float(coss[i]));
                dst[i1] = from_float<T>(to_float(a) - to_float(b2));
                dst[i2] = from_float<T>(to_float(c) + to_float(d2));
              }
              for (std::int64_t k = dims; k < D; ++k) dst[k] = src[k * last];
            }
          }
        }
      });
    });
  }

  void eval_gpu(const std::vector<array>&, std::vector<array>&) override {
    throw std::runtime_error("[mlxcel rope] is a CPU kernel; use mlx::core::fast::rope on the GPU");
  }

  const char* name() const override { return "MlxcelRope"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    const auto& o = static_cast<const Rope&>(other);
    return dims_ == o.dims_ && traditional_ == o.traditional_ && base_ == o.base_ && scale_ == o.scale_ &&
           has_freqs_ == o.has_freqs_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override { return {inputs[0].shape()}; }

 private:
  int dims_;
  bool traditional_;
  float base_;
  float scale_;
  bool has_freqs_;
};

// ---- Gated activations -------------------------------------------------------------------------

enum class GateKind { Silu, GeluTanh };

constexpr std::int64_t kRun = 4096;

// act(gate) * up for row-contiguous float32 inputs of one shape, split over the kernel thread
// pool in runs of 4096 values.
class GatedActivation : public mx::Primitive {
 public:
  GatedActivation(mx::Stream stream, GateKind kind) : mx::Primitive(stream), kind_(kind) {}

  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    array& out = outputs[0];
    allocate(out);
    auto& encoder = mx::cpu::get_command_encoder(stream());
    encoder.set_input_array(inputs[0]);
    encoder.set_input_array(inputs[1]);
    encoder.set_output_array(out);
    struct Job {
      const float* g;
      const float* u;
      float* out;
      std::int64_t n;
      GateKind kind;
    };
    const array& gate = inputs[0];
    const array& up = inputs[1];
    if (!gate.flags().row_contiguous || !up.flags().row_contiguous) {
      // Views (rare: models pass matmul outputs) row by row, through their strides.
      encoder.dispatch([g = gate.data<float>(), u = up.data<float>(), o = out.data<float>(), g_rows = row_offsets(gate),
                        u_rows = row_offsets(up), g_last = gate.strides().back(), u_last = up.strides().back(),
                        d = gate.ndim() ? gate.shape(-1) : 1, kind = kind_]() {
        for (std::size_t r = 0; r < g_rows.size(); ++r)
          for (std::int64_t i = 0; i < d; ++i) {
            const float x = g[g_rows[r] + i * g_last], y = u[u_rows[r] + i * u_last];
            o[static_cast<std::int64_t>(r) * d + i] =
                (kind == GateKind::Silu ? silu_one(x) : gelu_tanh_one(x)) * y;
          }
      });
      return;
    }
    Job job{gate.data<float>(), up.data<float>(), out.data<float>(), static_cast<std::int64_t>(out.size()), kind_};
    encoder.dispatch([job]() mutable {
      const int chunks = static_cast<int>((job.n + kRun - 1) / kRun);
      mlxcel::bq::Pool::instance().run(
          chunks,
          [](void* ctx, int chunk) {
            const auto& j = *static_cast<const Job*>(ctx);
            const std::int64_t start = chunk * kRun, count = std::min(kRun, j.n - start);
            if (j.kind == GateKind::Silu)
              silu_gate_f32(j.g + start, j.u + start, j.out + start, count);
            else
              gelu_tanh_gate_f32(j.g + start, j.u + start, j.out + start, count);
          },
          &job);
    });
  }

  void eval_gpu(const std::vector<array>&, std::vector<array>&) override {
    throw std::runtime_error("[mlxcel gated activation] is a CPU kernel");
  }

  const char* name() const override { return kind_ == GateKind::Silu ? "MlxcelSiluGate" : "MlxcelGeluTanhGate"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    return kind_ == static_cast<const GatedActivation&>(other).kind_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override { return {inputs[0].shape()}; }

 private:
  GateKind kind_;
};

// ---- Attention for a few queries ---------------------------------------------------------------

enum class MaskKind { None, Causal, Array };

// float32 attention for any number of queries, split over the kernel thread pool by (batch,
// head, block of query rows): decode steps spread their heads, prefill chunks their rows. Per row
// the same arithmetic as the fallback (q * scale, Q K^T, mask, softmax, P V) in one pass over the
// visible keys, so a causal chunk computes half the scores the fallback's matmuls do. A block's
// rows share their reads of the keys and values: with grouped-query attention and enough work to
// spread, a block takes its rows from every query head of one key-value head (a batched decode
// step then reads each cache row once, not once per query head).
struct ParallelAttention {
  static constexpr std::int64_t kRowsPerChunk = 8;

  const float* q;
  const float* k;
  const float* v;
  float* out;
  View4 qv, kv, vv, mask_view;
  const void* mask_data;
  bool bool_mask;
  MaskKind mask;
  float scale;
  // Whether a block's rows come from all the query heads of one key-value head.
  bool grouped = false;

  std::int64_t heads() const { return grouped ? kv.shape[1] : qv.shape[1]; }
  std::int64_t rows_per_head() const { return (grouped ? qv.shape[1] / kv.shape[1] : 1) * qv.shape[2]; }
  std::int64_t blocks() const { return (rows_per_head() + kRowsPerChunk - 1) / kRowsPerChunk; }
  std::int64_t chunks() const { return qv.shape[0] * heads() * blocks(); }

  void run() {
    // Grouping cuts the key-value reads by the group size but also the number of blocks: keep
    // at least two per pool thread, or a lone decode step would run its heads on fewer threads.
    const std::int64_t threads = mlxcel::bq::Pool::instance().threads();
    grouped = qv.shape[1] != kv.shape[1];
    if (grouped && chunks() < 2 * threads) grouped = false;
    const std::int64_t chunks = this->chunks();
    mlxcel::bq::Pool::instance().run(
        static_cast<int>(chunks), [](void* self, int chunk) { static_cast<ParallelAttention*>(self)->rows(chunk); },
        this);
  }

  void rows(int chunk) const {
    const std::int64_t Hq = qv.shape[1], L = qv.shape[2], D = qv.shape[3];
    const std::int64_t Hkv = kv.shape[1], S = kv.shape[2], Dv = vv.shape[3];
    const std::int64_t group = Hq / Hkv, G = heads(), per_head = rows_per_head(), nblocks = blocks();
    const std::int64_t b = chunk / (G * nblocks), unit = chunk / nblocks % G, block = chunk % nblocks;
    const std::int64_t hk = grouped ? unit : unit / group;
    const std::int64_t first = block * kRowsPerChunk, rows = std::min(per_head, first + kRowsPerChunk) - first;
    // Row r of the block: query head and position.
    auto head_of = [&](std::int64_t r) { return grouped ? hk * group + (first + r) / L : unit; };
    auto pos_of = [&](std::int64_t r) { return (first + r) % L; };
    thread_local std::vector<float> queries, scores, acc;
    queries.resize(static_cast<std::size_t>(rows * D));
    scores.resize(static_cast<std::size_t>(rows * S));
    acc.resize(static_cast<std::size_t>(rows * Dv));
    const float lowest = std::numeric_limits<float>::lowest();
    const float* k_head = k + b * kv.strides[0] + hk * kv.strides[1];
    const float* v_head = v + b * vv.strides[0] + hk * vv.strides[1];
    // Keys past a row's causal edge get no score: exp would make them exactly 0.
    auto visible = [&](std::int64_t l) {
      return mask == MaskKind::Causal ? std::clamp<std::int64_t>(S - L + l + 1, 0, S) : S;
    };
    std::int64_t n = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* qrow = q + qv.at(b, head_of(r), pos_of(r));
      for (std::int64_t d = 0; d < D; ++d) queries[r * D + d] = scale * qrow[d];
      n = std::max(n, visible(pos_of(r)));
    }
    std::int64_t reach = n;  // the values the block reads: all S once a row averages every key
    block_scores_f32(queries.data(), rows, D, k_head, kv.strides[2], n, scores.data(), S);
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t h = head_of(r), l = pos_of(r);
      float* row = scores.data() + r * S;
      if (mask == MaskKind::Array) {
        const std::int64_t m = mask_view.at(b, h, l);
        for (std::int64_t s = 0; s < n; ++s) {
          const std::int64_t at = m + s * mask_view.strides[3];
          if (bool_mask) {
            if (!static_cast<const bool*>(mask_data)[at]) row[s] = lowest;
          } else {
            row[s] += static_cast<const float*>(mask_data)[at];
          }
        }
      }
      const std::int64_t seen = visible(l);
      float max_score = lowest;
      for (std::int64_t s = 0; s < seen; ++s) max_score = std::max(max_score, row[s]);
      // Every key masked: the fallback's softmax of equal scores is uniform over all of them.
      const bool none_visible = max_score == lowest;
      if (none_visible) std::fill(row, row + S, 0.0f);
      if (none_visible) reach = S;
      const std::int64_t used = none_visible ? S : seen;
      const float inv_total = 1.0f / exp_shifted_sum_f32(row, used, none_visible ? 0.0f : max_score);
      for (std::int64_t s = 0; s < used; ++s) row[s] *= inv_total;
      std::fill(row + used, row + std::max(used, n), 0.0f);
    }
    block_weighted_sum_f32(scores.data(), S, rows, v_head, vv.strides[2], reach, Dv, acc.data());
    for (std::int64_t r = 0; r < rows; ++r)
      std::copy(acc.begin() + r * Dv, acc.begin() + (r + 1) * Dv,
                out + ((b * Hq + head_of(r)) * L + pos_of(r)) * Dv);
  }
};

class Attention : public mx::Primitive {
 public:
  Attention(mx::Stream stream, float scale, MaskKind mask) : mx::Primitive(stream), scale_(scale), mask_(mask) {}

  void eval_cpu(const std::vector<array>& inputs, std::vector<array>& outputs) override {
    const array& q = inputs[0];
    const array& k = inputs[1];
    const array& v = inputs[2];
    array& out = outputs[0];
    allocate(out);
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (const auto& in : inputs) encoder.set_input_array(in);
    encoder.set_output_array(out);
    const bool bool_mask = mask_ == MaskKind::Array && inputs[3].dtype() == mx::bool_;

    if (out.dtype() == mx::float32 && q.strides()[3] == 1 && k.strides()[3] == 1 && v.strides()[3] == 1) {
      const void* mask_data = mask_ == MaskKind::Array ? inputs[3].data<void>() : nullptr;
      ParallelAttention job{q.data<float>(), k.data<float>(), v.data<float>(), out.data<float>(),
                            View4::of(q), View4::of(k), View4::of(v), mask_ == MaskKind::Array ? View4::of(inputs[3]) : View4{},
                            mask_data, bool_mask, mask_, scale_};
      encoder.dispatch([job]() mutable { job.run(); });
      return;
    }
    dispatch_float(out.dtype(), "scaled_dot_product_attention", [&](auto tag) {
      using T = decltype(tag);
      const void* mask_data = mask_ == MaskKind::Array ? inputs[3].data<void>() : nullptr;
      View4 mask_view = mask_ == MaskKind::Array ? View4::of(inputs[3]) : View4{};
      encoder.dispatch([q_data = q.data<T>(), k_data = k.data<T>(), v_data = v.data<T>(), qv = View4::of(q),
                        kv = View4::of(k), vv = View4::of(v), out_data = out.data<T>(), mask_data, mask_view,
                        bool_mask, mask = mask_, scale = scale_]() {
        const std::int64_t B = qv.shape[0], Hq = qv.shape[1], L = qv.shape[2], D = qv.shape[3];
        const std::int64_t Hkv = kv.shape[1], S = kv.shape[2], Dv = vv.shape[3];
        const std::int64_t repeats = Hq / Hkv;
        const float lowest = std::numeric_limits<float>::lowest();
        std::vector<float> query(static_cast<std::size_t>(D)), scores(static_cast<std::size_t>(S)),
            acc(static_cast<std::size_t>(Dv));
        for (std::int64_t b = 0; b < B; ++b)
          for (std::int64_t h = 0; h < Hq; ++h) {
            const std::int64_t hk = h / repeats;
            for (std::int64_t l = 0; l < L; ++l) {
              // As the fallback: q * scale rounded to T, then Q K^T.
              const T* qrow = q_data + qv.at(b, h, l);
              for (std::int64_t d = 0; d < D; ++d)
                query[d] = to_float(from_float<T>(scale * to_float(qrow[d * qv.strides[3]])));
              float max_score = lowest;
              for (std::int64_t s = 0; s < S; ++s) {
                bool visible = true;
                float bias = 0.0f;
                if (mask == MaskKind::Causal) {
                  visible = s <= S - L + l;
                } else if (mask == MaskKind::Array) {
                  const std::int64_t m = mask_view.at(b, h, l) + s * mask_view.strides[3];
                  if (bool_mask) {
                    visible = static_cast<const bool*>(mask_data)[m];
                  } else {
                    bias = to_float(static_cast<const T*>(mask_data)[m]);
                  }
                }
                float score;
                if (!visible) {
                  score = lowest;
                } else {
                  const T* krow = k_data + kv.at(b, hk, s);
                  float dot = 0.0f;
                  if constexpr (std::is_same_v<T, float>) {
                    if (kv.strides[3] == 1) dot = dot_f32(query.data(), krow, D);
                  }
                  if (!std::is_same_v<T, float> || kv.strides[3] != 1)
                    for (std::int64_t d = 0; d < D; ++d) dot += query[d] * to_float(krow[d * kv.strides[3]]);
                  // Rounded to T as the fallback's matmul output, then the mask added in T.
                  score = to_float(from_float<T>(to_float(from_float<T>(dot)) + bias));
                }
                scores[s] = score;
                max_score = std::max(max_score, score);
              }
              float total = 0.0f;
              for (std::int64_t s = 0; s < S; ++s) {
                scores[s] = std::exp(scores[s] - max_score);
                total += scores[s];
              }
              std::fill(acc.begin(), acc.end(), 0.0f);
              const float inv_total = 1.0f / total;
              for (std::int64_t s = 0; s < S; ++s) {
                const float p = to_float(from_float<T>(scores[s] * inv_total));
                if (p == 0.0f) continue;
                const T* vrow = v_data + vv.at(b, hk, s);
                if constexpr (std::is_same_v<T, float>) {
                  if (vv.strides[3] == 1) {
                    axpy_f32(p, vrow, acc.data(), Dv);
                    continue;
                  }
                }
                for (std::int64_t d = 0; d < Dv; ++d) acc[d] += p * to_float(vrow[d * vv.strides[3]]);
              }
              T* dst = out_data + ((b * Hq + h) * L + l) * Dv;
              for (std::int64_t d = 0; d < Dv; ++d) dst[d] = from_float<T>(acc[d]);
            }
          }
      });
    });
  }

  void eval_gpu(const std::vector<array>&, std::vector<array>&) override {
    throw std::runtime_error(
        "[mlxcel scaled_dot_product_attention] is a CPU kernel; use mlx::core::fast on the GPU");
  }

  const char* name() const override { return "MlxcelAttention"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    const auto& o = static_cast<const Attention&>(other);
    return scale_ == o.scale_ && mask_ == o.mask_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<array>& inputs) override {
    return {{inputs[0].shape(0), inputs[0].shape(1), inputs[0].shape(2), inputs[2].shape(3)}};
  }

 private:
  float scale_;
  MaskKind mask_;
};

bool is_float(mx::Dtype dtype) { return dtype == mx::float32 || dtype == mx::bfloat16 || dtype == mx::float16; }

}  // namespace

bool enabled_for(const mx::Stream& stream) { return stream.device == mx::Device::cpu && cpu_kernels_enabled(); }

static bool& enabled_flag() {
  static bool enabled = true;
  return enabled;
}

bool cpu_kernels_enabled() { return enabled_flag(); }
void set_cpu_kernels_enabled(bool enabled) { enabled_flag() = enabled; }

std::optional<array> rms_norm(const array& x, const std::optional<array>& weight, float eps) {
  auto s = mx::default_stream(mx::default_device());
  if (!enabled_for(s) || x.ndim() == 0) return std::nullopt;
  auto out_type = weight ? mx::promote_types(x.dtype(), weight->dtype()) : x.dtype();
  if (!is_float(out_type) || (weight && (weight->ndim() != 1 || weight->shape(0) != x.shape(-1))))
    return std::nullopt;  // MLX's own op reports the error.
  auto w = weight ? mx::astype(*weight, out_type, s) : mx::ones({x.shape(-1)}, out_type, s);
  return array(x.shape(), out_type, std::make_shared<RmsNorm>(s, eps), {mx::astype(x, out_type, s), w});
}

std::optional<array> rope(const array& x, int dims, bool traditional, std::optional<float> base, float scale,
                          const array& offset, const std::optional<array>& freqs) {
  auto s = mx::default_stream(mx::default_device());
  if (!enabled_for(s) || x.ndim() != 4 || !is_float(x.dtype())) return std::nullopt;
  if (dims <= 0 || dims % 2 != 0 || dims > x.shape(-1) || offset.ndim() > 1) return std::nullopt;
  if (offset.size() != 1 && offset.size() != static_cast<std::size_t>(x.shape(0))) return std::nullopt;
  if (!mx::issubdtype(offset.dtype(), mx::integer)) return std::nullopt;
  if (freqs && (freqs->ndim() != 1 || freqs->shape(0) != dims / 2)) return std::nullopt;
  if (freqs.has_value() == base.has_value()) return std::nullopt;
  std::vector<array> inputs = {x, mx::astype(offset, mx::int32, s)};
  if (freqs) inputs.push_back(mx::astype(*freqs, mx::float32, s));
  return array(x.shape(), x.dtype(),
               std::make_shared<Rope>(s, dims, traditional, base.value_or(1.0f), scale, freqs.has_value()),
               std::move(inputs));
}

// Beyond this many query-key products per head the fallback's matmuls (through the BLAS) beat the
// serial loop that rounds like the fallback in bfloat16/float16; float32 runs the parallel kernel
// at any size.
constexpr std::int64_t kMaxLoopScores = 16 * 8192;

std::optional<array> scaled_dot_product_attention(const array& q, const array& k, const array& v, float scale,
                                                  const std::string& mask_mode,
                                                  const std::optional<array>& mask) {
  auto s = mx::default_stream(mx::default_device());
  if (!enabled_for(s) || q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4) return std::nullopt;
  const auto dtype = mx::promote_types(mx::promote_types(q.dtype(), k.dtype()), v.dtype());
  if (!is_float(dtype)) return std::nullopt;
  if (k.shape(0) != q.shape(0) || v.shape(0) != q.shape(0) || k.shape(-1) != q.shape(-1) ||
      k.shape(1) != v.shape(1) || k.shape(2) != v.shape(2) || q.shape(1) % k.shape(1) != 0)
    return std::nullopt;
  if (dtype != mx::float32 && static_cast<std::int64_t>(q.shape(2)) * k.shape(2) > kMaxLoopScores)
    return std::nullopt;
  MaskKind kind = MaskKind::None;
  std::vector<array> inputs = {mx::astype(q, dtype, s), mx::astype(k, dtype, s), mx::astype(v, dtype, s)};
  if (mask_mode == "causal") {
    if (mask) return std::nullopt;
    kind = MaskKind::Causal;
  } else if (mask_mode == "array" || (mask_mode.empty() && mask)) {
    if (!mask || mask->ndim() > 4) return std::nullopt;
    kind = MaskKind::Array;
    auto m = mask->dtype() == mx::bool_ ? *mask : mx::astype(*mask, dtype, s);
    inputs.push_back(mx::broadcast_to(m, {q.shape(0), q.shape(1), q.shape(2), k.shape(2)}, s));
  } else if (!mask_mode.empty()) {
    return std::nullopt;
  }
  mx::Shape shape{q.shape(0), q.shape(1), q.shape(2), v.shape(3)};
  return array(std::move(shape), dtype, std::make_shared<Attention>(s, scale, kind), std::move(inputs));
}

std::optional<array> gated_activation(bool silu, const array& gate, const array& up) {
  auto s = mx::default_stream(mx::default_device());
  if (!enabled_for(s) || gate.dtype() != mx::float32 || up.dtype() != mx::float32 || gate.shape() != up.shape())
    return std::nullopt;
  return array(gate.shape(), mx::float32,
               std::make_shared<GatedActivation>(s, silu ? GateKind::Silu : GateKind::GeluTanh), {gate, up});
}

}  // namespace mlxcel::cpu_fast
