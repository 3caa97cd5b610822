// MLX custom primitives over packed block-quantized matrices. They run on the CPU stream through
// its command encoder, like MLX's own CPU ops, so they stay lazy and compose with the graph.
#include "primitives.h"

#include <cstring>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "kernels.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"
#include "pool.h"

namespace mlxcel::bq {

namespace {

mx::Stream cpu_stream() { return mx::default_stream(mx::Device::cpu); }

bool same_shape(const MatSpec& a, const MatSpec& b) {
  return a.fmt == b.fmt && a.ptype == b.ptype && a.group == b.group && a.rows == b.rows && a.cols == b.cols;
}

[[noreturn]] void gpu_unsupported(const char* op) {
  throw std::runtime_error(std::string(op) +
                           " has no GPU kernel: block-quantized matrices are evaluated on the CPU stream");
}

// x as eval_cpu sees it: any float dtype, any strides (a slice, a transpose, a broadcast),
// read through its strides by the task it dispatches, so no Contiguous or AsType node is added
// to the graph for it.
struct XSource {
  const std::uint8_t* data;
  mx::Dtype dtype;
  bool row_contiguous;
  mx::Shape shape;      // only when not row-contiguous
  mx::Strides strides;  // elements

  explicit XSource(const mx::array& x)
      : data(static_cast<const std::uint8_t*>(x.data<void>())),
        dtype(x.dtype()),
        row_contiguous(x.flags().row_contiguous) {
    if (!row_contiguous) {
      shape = x.shape();
      strides = x.strides();
    }
  }
};

bool kernel_reads(mx::Dtype t) { return t == mx::float32 || t == mx::float16 || t == mx::bfloat16; }

XType xtype_of(mx::Dtype t) {
  return t == mx::float16 ? XType::F16 : t == mx::bfloat16 ? XType::BF16 : XType::F32;
}

float load_float(const std::uint8_t* p, mx::Dtype t) {
  if (t == mx::float32) {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  if (t == mx::float64) {
    double v;
    std::memcpy(&v, p, 8);
    return static_cast<float>(v);
  }
  const std::uint16_t h = load_u16(p);
  return t == mx::float16 ? half_to_float(h) : bf16_to_float(h);
}

// Element offset of entry i of a strided array's first `dims` dimensions (row-major order).
std::int64_t strided_offset(const mx::Shape& shape, const mx::Strides& strides, int dims, std::int64_t i) {
  std::int64_t off = 0;
  for (int d = dims - 1; d >= 0; --d) {
    off += (i % shape[d]) * strides[d];
    i /= shape[d];
  }
  return off;
}

// Element offset of row m (every dimension but the last).
std::int64_t row_offset(const mx::Shape& shape, const mx::Strides& strides, std::int64_t m) {
  return strided_offset(shape, strides, static_cast<int>(shape.size()) - 1, m);
}

// Quantized activations of the call in flight; owned by the thread that evaluates (the CPU
// stream's), grown to the largest call seen so the hot path allocates nothing.
struct ActScratch {
  std::vector<std::int8_t> q;  // Int16: both planes, the low one after the high one
  std::vector<float> d, xs;
  std::vector<std::int32_t> s, s16;
  std::vector<const void*> rows;
  std::vector<float> staged;  // rows the kernels cannot read in place, as f32

  // Buffers for M rows of K and the view the kernels read through them.
  ActView reserve(int M, int K, Precision p, ActOut& out) {
    const std::size_t n = static_cast<std::size_t>(M) * K, nb = n / kBlock;
    const bool wide = p == Precision::Int16;
    if (q.size() < (wide ? 2 * n : n)) q.resize(wide ? 2 * n : n);
    if (d.size() < nb) {
      d.resize(nb);
      xs.resize(nb);
      s.resize(nb);
      s16.resize(2 * nb);
    }
    out = ActOut{q.data(), wide ? q.data() + n : nullptr, d.data(), s.data(), s16.data(), xs.data()};
    return ActView{q.data(), out.q2, d.data(), s.data(), s16.data(), xs.data(), M, K, K / kBlock};
  }

  // x's rows where they lie when the kernels can read them (unit column stride, f32/f16/bf16),
  // else widened to f32 here.
  XRows rows_of(const XSource& x, int M, int K) {
    if (rows.size() < static_cast<std::size_t>(M)) rows.resize(M);
    const std::size_t item = x.dtype.size();
    if (x.row_contiguous && kernel_reads(x.dtype)) {
      for (int m = 0; m < M; ++m) rows[m] = x.data + static_cast<std::size_t>(m) * K * item;
      return XRows{rows.data(), xtype_of(x.dtype), K};
    }
    const std::int64_t col = x.row_contiguous ? 1 : x.strides.back();
    const auto at = [&](std::int64_t element) { return x.data + element * static_cast<std::int64_t>(item); };
    if (col == 1 && kernel_reads(x.dtype)) {
      for (int m = 0; m < M; ++m) rows[m] = at(row_offset(x.shape, x.strides, m));
      return XRows{rows.data(), xtype_of(x.dtype), K};
    }
    const std::size_t n = static_cast<std::size_t>(M) * K;
    if (staged.size() < n) staged.resize(n);
    for (int m = 0; m < M; ++m) {
      const std::int64_t base =
          x.row_contiguous ? static_cast<std::int64_t>(m) * K : row_offset(x.shape, x.strides, m);
      float* dst = staged.data() + static_cast<std::size_t>(m) * K;
      for (int k = 0; k < K; ++k) dst[k] = load_float(at(base + k * col), x.dtype);
      rows[m] = dst;
    }
    return XRows{rows.data(), XType::F32, K};
  }
};

struct QuantJob {
  const KernelTable* kt;
  const XRows* x;
  const ActOut* out;
  int M, rows_per_chunk;
};

void run_quant_chunk(void* p, int k) {
  const auto& job = *static_cast<const QuantJob*>(p);
  const int r0 = k * job.rows_per_chunk;
  const int r1 = r0 + job.rows_per_chunk < job.M ? r0 + job.rows_per_chunk : job.M;
  job.kt->quantize(*job.x, r0, r1, *job.out);
}

// Quantizes x once for the whole call; a long prompt's rows are shared out among the threads
// (alone, quantizing 512 rows would take a few percent of the GEMM's time, more with 2 threads).
ActView quantize_activations(ActScratch& scratch, const KernelTable& kt, const XSource& src, int M, int K,
                             Precision p) {
  const XRows x = scratch.rows_of(src, M, K);
  ActOut out;
  const ActView act = scratch.reserve(M, K, p, out);
  const int threads = Pool::instance().threads();
  if (threads == 1 || M < 8) {
    kt.quantize(x, 0, M, out);
  } else {
    const int per = (M + 2 * threads - 1) / (2 * threads);
    QuantJob job{&kt, &x, &out, M, per};
    Pool::instance().run((M + per - 1) / per, run_quant_chunk, &job);
  }
  return act;
}

ActScratch& act_scratch() {
  thread_local ActScratch scratch;
  return scratch;
}

// A contiguous run of one matrix's row groups: the unit threads claim.
struct Chunk {
  int mat, g0, g1;
};

struct MatmulJob {
  const KernelTable* kt;
  const MatView* views;
  float* const* ys;
  const Chunk* chunks;
  ActView act;
};

void run_chunk(void* p, int k) {
  const auto& job = *static_cast<const MatmulJob*>(p);
  const Chunk& c = job.chunks[k];
  const MatView& w = job.views[c.mat];
  job.kt->gemm(w, job.act, c.g0, c.g1, job.ys[c.mat], static_cast<std::size_t>(w.rows));
}

// About four chunks per thread of equal weight bytes (which is also equal work: every matrix
// sees the same activations), so a late or preempted thread leaves little to wait for, and
// matrices of different formats in one call still split evenly.
void plan_chunks(const std::vector<MatView>& views, int threads, std::vector<Chunk>& out) {
  out.clear();
  double total = 0;
  for (const auto& v : views) total += static_cast<double>(v.code_group_bytes + v.param_group_bytes) * v.groups;
  const double target = threads > 1 ? total / (4.0 * threads) : total;
  for (int i = 0; i < static_cast<int>(views.size()); ++i) {
    const double per_group = static_cast<double>(views[i].code_group_bytes + views[i].param_group_bytes);
    int per = static_cast<int>(target / per_group + 0.5);
    if (per < 1) per = 1;
    for (int g = 0; g < views[i].groups; g += per)
      out.push_back(Chunk{i, g, g + per < views[i].groups ? g + per : views[i].groups});
  }
}

std::vector<Chunk>& chunk_scratch() {
  thread_local std::vector<Chunk> chunks;
  return chunks;
}

class BlockMatmul : public mx::Primitive {
 public:
  BlockMatmul(mx::Stream s, std::vector<MatSpec> specs, Precision precision)
      : mx::Primitive(s), specs_(std::move(specs)), precision_(precision) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    const mx::array& x = inputs[0];
    const int n = static_cast<int>(specs_.size());
    std::vector<MatView> views;
    views.reserve(n);
    for (int i = 0; i < n; ++i) views.push_back(view_of(specs_[i], inputs[i + 1]));
    const KernelTable* kt = &active_kernels();
    for (auto& out : outputs) out.set_data(mx::allocator::malloc(out.nbytes()));

    auto& enc = mx::cpu::get_command_encoder(stream());
    for (const auto& in : inputs) enc.set_input_array(in);
    for (auto& out : outputs) enc.set_output_array(out);
    std::vector<float*> ys;
    for (auto& out : outputs) ys.push_back(out.data<float>());
    const int K = specs_[0].cols;
    const int M = static_cast<int>(x.size() / static_cast<std::size_t>(K));
    enc.dispatch([kt, views = std::move(views), ys = std::move(ys), src = XSource(x), M, K, p = precision_]() {
      if (M == 0) return;
      const ActView act = quantize_activations(act_scratch(), *kt, src, M, K, p);
      std::vector<Chunk>& chunks = chunk_scratch();
      plan_chunks(views, Pool::instance().threads(), chunks);
      MatmulJob job{kt, views.data(), ys.data(), chunks.data(), act};
      Pool::instance().run(static_cast<int>(chunks.size()), run_chunk, &job);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override { gpu_unsupported(name()); }

  const char* name() const override { return "BlockMatmul"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    const auto* o = dynamic_cast<const BlockMatmul*>(&other);
    if (o == nullptr || o->precision_ != precision_ || o->specs_.size() != specs_.size()) return false;
    for (std::size_t i = 0; i < specs_.size(); ++i)
      if (!same_shape(specs_[i], o->specs_[i])) return false;
    return true;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    std::vector<mx::Shape> shapes;
    for (const auto& spec : specs_) {
      mx::Shape s = inputs[0].shape();
      s.back() = spec.rows;
      shapes.push_back(std::move(s));
    }
    return shapes;
  }

 private:
  std::vector<MatSpec> specs_;
  Precision precision_;
};

// gather_rows' ids as eval_cpu sees them: any integer dtype, any strides, read in place by the
// task (int32 in order) or widened into its scratch, so no graph node is added for them.
struct IdSource {
  const std::uint8_t* data;
  mx::Dtype dtype;
  bool row_contiguous;
  mx::Shape shape;
  mx::Strides strides;

  explicit IdSource(const mx::array& ids)
      : data(static_cast<const std::uint8_t*>(ids.data<void>())),
        dtype(ids.dtype()),
        row_contiguous(ids.flags().row_contiguous),
        shape(ids.shape()),
        strides(ids.strides()) {}

  // Id i in row-major order, or false (with its text) when it is outside [0, rows).
  bool read(std::size_t i, int rows, std::int32_t& id, std::string& text) const {
    const std::int64_t e = row_contiguous ? static_cast<std::int64_t>(i)
                                          : strided_offset(shape, strides, static_cast<int>(shape.size()), i);
    const std::uint8_t* p = data + e * static_cast<std::int64_t>(dtype.size());
    switch (dtype.val()) {
      case mx::Dtype::Val::int8: return fetch<std::int8_t>(p, rows, id, text);
      case mx::Dtype::Val::int16: return fetch<std::int16_t>(p, rows, id, text);
      case mx::Dtype::Val::int32: return fetch<std::int32_t>(p, rows, id, text);
      case mx::Dtype::Val::int64: return fetch<std::int64_t>(p, rows, id, text);
      case mx::Dtype::Val::uint8: return fetch<std::uint8_t>(p, rows, id, text);
      case mx::Dtype::Val::uint16: return fetch<std::uint16_t>(p, rows, id, text);
      case mx::Dtype::Val::uint32: return fetch<std::uint32_t>(p, rows, id, text);
      default: return fetch<std::uint64_t>(p, rows, id, text);
    }
  }

  template <typename T>
  static bool fetch(const std::uint8_t* p, int rows, std::int32_t& id, std::string& text) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    // Compared in the id's own type, so no value wraps into range.
    const bool in_range = std::is_signed_v<T> ? v >= 0 && static_cast<std::int64_t>(v) < rows
                                              : static_cast<std::uint64_t>(v) < static_cast<std::uint64_t>(rows);
    if (in_range) {
      id = static_cast<std::int32_t>(v);
      return true;
    }
    text = std::to_string(v);
    return false;
  }
};

struct RowsJob {
  const MatView* w;
  const std::int32_t* ids;
  std::size_t n;
  float* y;
  std::size_t per;
};

void run_rows_chunk(void* p, int k) {
  const auto& job = *static_cast<const RowsJob*>(p);
  const std::size_t r0 = static_cast<std::size_t>(k) * job.per;
  const std::size_t r1 = r0 + job.per < job.n ? r0 + job.per : job.n;
  if (job.ids != nullptr) {
    dequantize_rows(*job.w, job.ids + r0, r1 - r0, job.y + r0 * job.w->cols);
  } else {
    // Every row in order: rows r0.. are ids r0..
    std::int32_t ids[64];
    for (std::size_t i = r0; i < r1; i += 64) {
      const std::size_t m = r1 - i < 64 ? r1 - i : 64;
      for (std::size_t j = 0; j < m; ++j) ids[j] = static_cast<std::int32_t>(i + j);
      dequantize_rows(*job.w, ids, m, job.y + i * job.w->cols);
    }
  }
}

// Rows of one matrix as floats: a gather by ids, or every row (dequantize) when there are none.
class BlockRows : public mx::UnaryPrimitive {
 public:
  BlockRows(mx::Stream s, MatSpec spec, bool gather) : mx::UnaryPrimitive(s), spec_(std::move(spec)), gather_(gather) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    const MatView w = view_of(spec_, inputs[0]);
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (const auto& in : inputs) enc.set_input_array(in);
    enc.set_output_array(out);
    const std::size_t n = gather_ ? inputs[1].size() : static_cast<std::size_t>(spec_.rows);
    std::optional<IdSource> src;
    if (gather_) src.emplace(inputs[1]);
    enc.dispatch([w, src = std::move(src), n, y = out.data<float>(), name = spec_.name]() {
      const std::int32_t* ids = nullptr;
      if (src) {
        // Read and checked once; int32 ids in order are used where they lie.
        thread_local std::vector<std::int32_t> widened;
        const bool in_place = src->dtype == mx::int32 && src->row_contiguous;
        if (!in_place && widened.size() < n) widened.resize(n);
        std::string text;
        for (std::size_t i = 0; i < n; ++i) {
          std::int32_t id;
          if (!src->read(i, w.rows, id, text)) {
            std::ostringstream msg;
            msg << "block matrix " << name << ": gather_rows id " << text << " is outside [0, " << w.rows << ")";
            throw std::out_of_range(msg.str());
          }
          if (!in_place) widened[i] = id;
        }
        ids = in_place ? reinterpret_cast<const std::int32_t*>(src->data) : widened.data();
      }
      // A whole matrix (or a long prompt's embeddings) is shared out among the threads.
      constexpr std::size_t kRowsPerChunk = 64;
      RowsJob job{&w, ids, n, y, kRowsPerChunk};
      Pool::instance().run(static_cast<int>((n + kRowsPerChunk - 1) / kRowsPerChunk), run_rows_chunk, &job);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override { gpu_unsupported(name()); }

  const char* name() const override { return gather_ ? "BlockGatherRows" : "BlockDequantize"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    const auto* o = dynamic_cast<const BlockRows*>(&other);
    return o != nullptr && o->gather_ == gather_ && same_shape(o->spec_, spec_);
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    if (!gather_) return {mx::Shape{spec_.rows, spec_.cols}};
    mx::Shape s = inputs[1].shape();
    s.push_back(spec_.cols);
    return {s};
  }

 private:
  MatSpec spec_;
  bool gather_;
};

void check_packed(const MatSpec& spec, const mx::array& packed) {
  const Layout l = layout_of(spec.fmt, spec.ptype, spec.group, spec.rows, spec.cols);
  if (packed.dtype() != mx::uint8 || packed.ndim() != 1 || packed.nbytes() != l.total)
    throw std::invalid_argument("block matrix " + spec.name + ": not a packed buffer of this matrix");
}

}  // namespace

std::vector<mx::array> matmul_t_many(const std::vector<MatSpec>& specs, const std::vector<mx::array>& packed,
                                     const mx::array& x, Precision precision) {
  if (specs.empty()) throw std::invalid_argument("matmul_t_many: no matrices");
  if (specs.size() != packed.size()) throw std::invalid_argument("matmul_t_many: specs and buffers differ in number");
  if (x.ndim() < 1) throw std::invalid_argument("matmul_t: x must have at least one dimension");
  if (!mx::issubdtype(x.dtype(), mx::floating))
    throw std::invalid_argument("matmul_t: x must be a float array (float32, float16, bfloat16 or float64)");
  for (std::size_t i = 0; i < specs.size(); ++i) {
    check_packed(specs[i], packed[i]);
    if (x.shape(-1) != specs[i].cols) {
      std::ostringstream msg;
      msg << "block matrix " << specs[i].name << ": x has " << x.shape(-1) << " columns, the matrix has "
          << specs[i].cols;
      throw std::invalid_argument(msg.str());
    }
  }
  active_kernels();  // reports a bad MLXCEL_CPU_ISA here, where it can become an Err
  const mx::Stream s = cpu_stream();
  std::vector<mx::array> inputs{x};
  inputs.insert(inputs.end(), packed.begin(), packed.end());
  std::vector<mx::Shape> shapes;
  std::vector<mx::Dtype> dtypes;
  for (const auto& spec : specs) {
    mx::Shape sh = x.shape();
    sh.back() = spec.rows;
    shapes.push_back(std::move(sh));
    dtypes.push_back(mx::float32);
  }
  return mx::array::make_arrays(std::move(shapes), dtypes, std::make_shared<BlockMatmul>(s, specs, precision),
                                 inputs);
}

mx::array gather_rows(const MatSpec& spec, const mx::array& packed, const mx::array& ids) {
  check_packed(spec, packed);
  if (!mx::issubdtype(ids.dtype(), mx::integer))
    throw std::invalid_argument("block matrix " + spec.name + ": gather_rows needs integer ids");
  const mx::Stream s = cpu_stream();
  mx::Shape shape = ids.shape();
  shape.push_back(spec.cols);
  return mx::array(std::move(shape), mx::float32, std::make_shared<BlockRows>(s, spec, true),
                   {packed, ids});
}

mx::array dequantize(const MatSpec& spec, const mx::array& packed) {
  check_packed(spec, packed);
  return mx::array(mx::Shape{spec.rows, spec.cols}, mx::float32, std::make_shared<BlockRows>(cpu_stream(), spec, false),
                   {packed});
}

}  // namespace mlxcel::bq
