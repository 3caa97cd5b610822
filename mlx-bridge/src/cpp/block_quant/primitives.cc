// MLX custom primitives over packed block-quantized matrices. They run on the CPU stream through
// its command encoder, like MLX's own CPU ops, so they stay lazy and compose with the graph.
#include "primitives.h"

#include <sstream>
#include <stdexcept>

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

// Quantized activations of the call in flight; owned by the thread that evaluates (the CPU
// stream's), grown to the largest call seen so the hot path allocates nothing.
struct ActScratch {
  std::vector<std::int8_t> q;
  std::vector<float> d, xs;
  std::vector<std::int32_t> s, s16;

  ActView prepare(int M, int K) {
    const std::size_t n = static_cast<std::size_t>(M) * K, nb = n / kBlock;
    if (q.size() < n) q.resize(n);
    if (d.size() < nb) {
      d.resize(nb);
      xs.resize(nb);
      s.resize(nb);
      s16.resize(2 * nb);
    }
    return ActView{q.data(), d.data(), s.data(), s16.data(), xs.data(), M, K, K / kBlock};
  }
};

ActScratch& act_scratch() {
  thread_local ActScratch scratch;
  return scratch;
}

struct MatmulJob {
  const KernelTable* kt;
  const MatView* views;
  float* const* ys;
  const double* cost_start;  // where each matrix's row groups start in cost units
  const double* group_cost;  // cost of one row group of each matrix
  double total;
  int n;
  ActView act;
};

// Row groups are handed out as equal shares of the bytes to stream (which is also the work),
// so matrices of different formats in one call split evenly too.
void run_matmul(void* p, int t, int nt) {
  const auto& job = *static_cast<const MatmulJob*>(p);
  const double lo = job.total * t / nt, hi = job.total * (t + 1) / nt;
  for (int i = 0; i < job.n; ++i) {
    const MatView& w = job.views[i];
    auto first_group_at = [&](double c) {
      const double g = (c - job.cost_start[i]) / job.group_cost[i];
      if (g <= 0) return 0;
      const double up = static_cast<double>(static_cast<long long>(g));
      const int gi = static_cast<int>(up < g ? up + 1 : up);
      return gi > w.groups ? w.groups : gi;
    };
    const int g0 = t == 0 ? first_group_at(-1) : first_group_at(lo);
    const int g1 = t == nt - 1 ? w.groups : first_group_at(hi);
    if (g0 < g1) job.kt->gemm(w, job.act, g0, g1, job.ys[i], static_cast<std::size_t>(w.rows));
  }
}

class BlockMatmul : public mx::Primitive {
 public:
  BlockMatmul(mx::Stream s, std::vector<MatSpec> specs) : mx::Primitive(s), specs_(std::move(specs)) {}

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
    enc.dispatch([kt, views = std::move(views), ys = std::move(ys), xp = x.data<float>(), M, K]() {
      if (M == 0) return;
      ActView act = act_scratch().prepare(M, K);
      kt->quantize(xp, M, K, const_cast<std::int8_t*>(act.q), const_cast<float*>(act.d),
                   const_cast<std::int32_t*>(act.s), const_cast<std::int32_t*>(act.s16),
                   const_cast<float*>(act.xs));
      const int n = static_cast<int>(views.size());
      double start[16], cost[16];
      std::vector<double> heap_start, heap_cost;
      double* cs = start;
      double* gc = cost;
      if (n > 16) {
        heap_start.resize(n);
        heap_cost.resize(n);
        cs = heap_start.data();
        gc = heap_cost.data();
      }
      double total = 0;
      for (int i = 0; i < n; ++i) {
        cs[i] = total;
        gc[i] = static_cast<double>(views[i].code_group_bytes + views[i].param_group_bytes);
        total += gc[i] * views[i].groups;
      }
      MatmulJob job{kt, views.data(), ys.data(), cs, gc, total, n, act};
      Pool::instance().run(run_matmul, &job);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override { gpu_unsupported(name()); }

  const char* name() const override { return "BlockMatmul"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    const auto* o = dynamic_cast<const BlockMatmul*>(&other);
    if (o == nullptr || o->specs_.size() != specs_.size()) return false;
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
};

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
    const std::int32_t* ids = gather_ ? inputs[1].data<std::int32_t>() : nullptr;
    const std::size_t n = gather_ ? inputs[1].size() : static_cast<std::size_t>(spec_.rows);
    enc.dispatch([w, ids, n, y = out.data<float>(), name = spec_.name]() {
      if (ids != nullptr)
        for (std::size_t i = 0; i < n; ++i)
          if (ids[i] < 0 || ids[i] >= w.rows) {
            std::ostringstream msg;
            msg << "block matrix " << name << ": gather_rows id " << ids[i] << " is outside [0, " << w.rows << ")";
            throw std::out_of_range(msg.str());
          }
      dequantize_rows(w, ids, n, y);
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
                                     const mx::array& x) {
  if (specs.empty()) throw std::invalid_argument("matmul_t_many: no matrices");
  if (specs.size() != packed.size()) throw std::invalid_argument("matmul_t_many: specs and buffers differ in number");
  if (x.ndim() < 1) throw std::invalid_argument("matmul_t: x must have at least one dimension");
  if (!mx::issubdtype(x.dtype(), mx::floating))
    throw std::invalid_argument("matmul_t: x must be float32, float16 or bfloat16");
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
  std::vector<mx::array> inputs{mx::contiguous(mx::astype(x, mx::float32, s), false, s)};
  inputs.insert(inputs.end(), packed.begin(), packed.end());
  std::vector<mx::Shape> shapes;
  std::vector<mx::Dtype> dtypes;
  for (const auto& spec : specs) {
    mx::Shape sh = x.shape();
    sh.back() = spec.rows;
    shapes.push_back(std::move(sh));
    dtypes.push_back(mx::float32);
  }
  return mx::array::make_arrays(std::move(shapes), dtypes, std::make_shared<BlockMatmul>(s, specs), inputs);
}

mx::array gather_rows(const MatSpec& spec, const mx::array& packed, const mx::array& ids) {
  check_packed(spec, packed);
  if (ids.dtype() != mx::int32)
    throw std::invalid_argument("block matrix " + spec.name + ": gather_rows needs int32 ids");
  const mx::Stream s = cpu_stream();
  mx::Shape shape = ids.shape();
  shape.push_back(spec.cols);
  return mx::array(std::move(shape), mx::float32, std::make_shared<BlockRows>(s, spec, true),
                   {packed, mx::contiguous(ids, false, s)});
}

mx::array dequantize(const MatSpec& spec, const mx::array& packed) {
  check_packed(spec, packed);
  return mx::array(mx::Shape{spec.rows, spec.cols}, mx::float32, std::make_shared<BlockRows>(cpu_stream(), spec, false),
                   {packed});
}

}  // namespace mlxcel::bq
