// General array ops and random numbers: thin dispatch onto mlx::core.
#include <stdexcept>

#include "mlx-bridge/src/cpp/shim.h"
#include "mlx-bridge/src/ffi.rs.h"

namespace mlxcel {

ArrayPtr unary(UnaryOp op, const Array& a) {
  const auto& x = a.inner;
  switch (op) {
    case UnaryOp::Neg: return wrap(mx::negative(x));
    case UnaryOp::Abs: return wrap(mx::abs(x));
    case UnaryOp::Sign: return wrap(mx::sign(x));
    case UnaryOp::Exp: return wrap(mx::exp(x));
    case UnaryOp::Log: return wrap(mx::log(x));
    case UnaryOp::Log1p: return wrap(mx::log1p(x));
    case UnaryOp::Sqrt: return wrap(mx::sqrt(x));
    case UnaryOp::Rsqrt: return wrap(mx::rsqrt(x));
    case UnaryOp::Square: return wrap(mx::square(x));
    case UnaryOp::Reciprocal: return wrap(mx::reciprocal(x));
    case UnaryOp::Tanh: return wrap(mx::tanh(x));
    case UnaryOp::Sigmoid: return wrap(mx::sigmoid(x));
    case UnaryOp::Erf: return wrap(mx::erf(x));
    case UnaryOp::ErfInv: return wrap(mx::erfinv(x));
    case UnaryOp::Sin: return wrap(mx::sin(x));
    case UnaryOp::Cos: return wrap(mx::cos(x));
    case UnaryOp::Floor: return wrap(mx::floor(x));
    case UnaryOp::Ceil: return wrap(mx::ceil(x));
    case UnaryOp::Round: return wrap(mx::round(x));
    case UnaryOp::LogicalNot: return wrap(mx::logical_not(x));
    case UnaryOp::IsNan: return wrap(mx::isnan(x));
    case UnaryOp::IsInf: return wrap(mx::isinf(x));
    case UnaryOp::StopGradient: return wrap(mx::stop_gradient(x));
  }
  throw std::invalid_argument("unknown unary op");
}

ArrayPtr binary(BinaryOp op, const Array& a, const Array& b) {
  const auto &x = a.inner, &y = b.inner;
  switch (op) {
    case BinaryOp::Add: return wrap(mx::add(x, y));
    case BinaryOp::Subtract: return wrap(mx::subtract(x, y));
    case BinaryOp::Multiply: return wrap(mx::multiply(x, y));
    case BinaryOp::Divide: return wrap(mx::divide(x, y));
    case BinaryOp::FloorDivide: return wrap(mx::floor_divide(x, y));
    case BinaryOp::Remainder: return wrap(mx::remainder(x, y));
    case BinaryOp::Power: return wrap(mx::power(x, y));
    case BinaryOp::Maximum: return wrap(mx::maximum(x, y));
    case BinaryOp::Minimum: return wrap(mx::minimum(x, y));
    case BinaryOp::Equal: return wrap(mx::equal(x, y));
    case BinaryOp::NotEqual: return wrap(mx::not_equal(x, y));
    case BinaryOp::Less: return wrap(mx::less(x, y));
    case BinaryOp::LessEqual: return wrap(mx::less_equal(x, y));
    case BinaryOp::Greater: return wrap(mx::greater(x, y));
    case BinaryOp::GreaterEqual: return wrap(mx::greater_equal(x, y));
    case BinaryOp::LogicalAnd: return wrap(mx::logical_and(x, y));
    case BinaryOp::LogicalOr: return wrap(mx::logical_or(x, y));
  }
  throw std::invalid_argument("unknown binary op");
}

ArrayPtr where_select(const Array& cond, const Array& x, const Array& y) {
  return wrap(mx::where(cond.inner, x.inner, y.inner));
}

ArrayPtr clip(const Array& a, const Array* lo, const Array* hi) {
  return wrap(mx::clip(a.inner, optional(lo), optional(hi)));
}

ArrayPtr astype(const Array& a, Dtype dtype) { return wrap(mx::astype(a.inner, to_mx(dtype))); }

ArrayPtr reduce(ReduceOp op, const Array& a, Ints axes, bool keepdims) {
  auto ax = to_ints(axes);
  const auto& x = a.inner;
  switch (op) {
    case ReduceOp::Sum: return wrap(mx::sum(x, ax, keepdims));
    case ReduceOp::Mean: return wrap(mx::mean(x, ax, keepdims));
    case ReduceOp::Max: return wrap(mx::max(x, ax, keepdims));
    case ReduceOp::Min: return wrap(mx::min(x, ax, keepdims));
    case ReduceOp::Prod: return wrap(mx::prod(x, ax, keepdims));
    case ReduceOp::All: return wrap(mx::all(x, ax, keepdims));
    case ReduceOp::Any: return wrap(mx::any(x, ax, keepdims));
    case ReduceOp::LogSumExp: return wrap(mx::logsumexp(x, ax, keepdims));
  }
  throw std::invalid_argument("unknown reduction");
}

ArrayPtr variance(const Array& a, Ints axes, bool keepdims, std::int32_t ddof, bool std) {
  auto ax = to_ints(axes);
  return wrap(std ? mx::std(a.inner, ax, keepdims, ddof) : mx::var(a.inner, ax, keepdims, ddof));
}

ArrayPtr softmax(const Array& a, Ints axes, bool precise) {
  return wrap(mx::softmax(a.inner, to_ints(axes), precise));
}

ArrayPtr argmax(const Array& a, std::int32_t axis, bool keepdims) { return wrap(mx::argmax(a.inner, axis, keepdims)); }
ArrayPtr argmin(const Array& a, std::int32_t axis, bool keepdims) { return wrap(mx::argmin(a.inner, axis, keepdims)); }
ArrayPtr argpartition(const Array& a, std::int32_t kth, std::int32_t axis) {
  return wrap(mx::argpartition(a.inner, kth, axis));
}
ArrayPtr sort(const Array& a, std::int32_t axis) { return wrap(mx::sort(a.inner, axis)); }
ArrayPtr argsort(const Array& a, std::int32_t axis) { return wrap(mx::argsort(a.inner, axis)); }
ArrayPtr topk(const Array& a, std::int32_t k, std::int32_t axis) { return wrap(mx::topk(a.inner, k, axis)); }
ArrayPtr cumsum(const Array& a, std::int32_t axis, bool reverse, bool inclusive) {
  return wrap(mx::cumsum(a.inner, axis, reverse, inclusive));
}

ArrayPtr reshape(const Array& a, Ints shape) { return wrap(mx::reshape(a.inner, to_shape(shape))); }
ArrayPtr transpose(const Array& a, Ints axes) {
  return wrap(axes.empty() ? mx::transpose(a.inner) : mx::transpose(a.inner, to_ints(axes)));
}
ArrayPtr swapaxes(const Array& a, std::int32_t axis1, std::int32_t axis2) {
  return wrap(mx::swapaxes(a.inner, axis1, axis2));
}
ArrayPtr expand_dims(const Array& a, Ints axes) { return wrap(mx::expand_dims(a.inner, to_ints(axes))); }
ArrayPtr squeeze(const Array& a, Ints axes) {
  return wrap(axes.empty() ? mx::squeeze(a.inner) : mx::squeeze(a.inner, to_ints(axes)));
}
ArrayPtr broadcast_to(const Array& a, Ints shape) { return wrap(mx::broadcast_to(a.inner, to_shape(shape))); }
ArrayPtr contiguous(const Array& a) { return wrap(mx::contiguous(a.inner)); }

ArrayPtr slice(const Array& a, Ints start, Ints stop, Ints strides) {
  return wrap(mx::slice(a.inner, to_shape(start), to_shape(stop), to_shape(strides)));
}
ArrayPtr slice_dynamic(const Array& a, const Array& start, Ints axes, Ints sizes) {
  return wrap(mx::slice(a.inner, start.inner, to_ints(axes), to_shape(sizes)));
}
ArrayPtr slice_update(const Array& src, const Array& update, Ints start, Ints stop, Ints strides) {
  return wrap(mx::slice_update(src.inner, update.inner, to_shape(start), to_shape(stop), to_shape(strides)));
}
ArrayPtr slice_update_dynamic(const Array& src, const Array& update, const Array& start, Ints axes) {
  return wrap(mx::slice_update(src.inner, update.inner, start.inner, to_ints(axes)));
}

ArrayPtr concatenate(const ArrayList& list, std::int32_t axis) { return wrap(mx::concatenate(list.items, axis)); }
ArrayPtr stack(const ArrayList& list, std::int32_t axis) { return wrap(mx::stack(list.items, axis)); }

static std::unique_ptr<ArrayList> to_list(std::vector<mx::array> items) {
  auto out = std::make_unique<ArrayList>();
  out->items = std::move(items);
  return out;
}

std::unique_ptr<ArrayList> split_sections(const Array& a, std::int32_t sections, std::int32_t axis) {
  return to_list(mx::split(a.inner, sections, axis));
}
std::unique_ptr<ArrayList> split_at(const Array& a, Ints indices, std::int32_t axis) {
  return to_list(mx::split(a.inner, to_shape(indices), axis));
}

ArrayPtr take(const Array& a, const Array& indices, std::int32_t axis) {
  return wrap(mx::take(a.inner, indices.inner, axis));
}
ArrayPtr take_along_axis(const Array& a, const Array& indices, std::int32_t axis) {
  return wrap(mx::take_along_axis(a.inner, indices.inner, axis));
}
ArrayPtr put_along_axis(const Array& a, const Array& indices, const Array& values, std::int32_t axis) {
  return wrap(mx::put_along_axis(a.inner, indices.inner, values.inner, axis));
}
ArrayPtr matmul(const Array& a, const Array& b) { return wrap(mx::matmul(a.inner, b.inner)); }
ArrayPtr addmm(const Array& c, const Array& a, const Array& b, float alpha, float beta) {
  return wrap(mx::addmm(c.inner, a.inner, b.inner, alpha, beta));
}

ArrayPtr random_key(std::uint64_t seed) { return wrap(mx::random::key(seed)); }
void random_seed(std::uint64_t seed) { mx::random::seed(seed); }
ArrayPtr random_split(const Array& key, std::int32_t num) { return wrap(mx::random::split(key.inner, num)); }

ArrayPtr random_uniform(double low, double high, Ints shape, Dtype dtype, const Array* key) {
  auto d = to_mx(dtype);
  return wrap(mx::random::uniform(mx::array(static_cast<float>(low), d), mx::array(static_cast<float>(high), d),
                                  to_shape(shape), d, optional(key)));
}
ArrayPtr random_normal(Ints shape, Dtype dtype, float loc, float scale, const Array* key) {
  return wrap(mx::random::normal(to_shape(shape), to_mx(dtype), loc, scale, optional(key)));
}
ArrayPtr random_randint(std::int64_t low, std::int64_t high, Ints shape, Dtype dtype, const Array* key) {
  return wrap(mx::random::randint(mx::array(low, mx::int64), mx::array(high, mx::int64), to_shape(shape),
                                  to_mx(dtype), optional(key)));
}
ArrayPtr random_categorical(const Array& logits, std::int32_t axis, const Array* key) {
  return wrap(mx::random::categorical(logits.inner, axis, optional(key)));
}

// Mixture-of-experts matmuls: only the matrices the indices name are read.
ArrayPtr gather_mm(const Array& a, const Array& b, const Array* lhs_indices, const Array* rhs_indices,
                   bool sorted_indices) {
  return wrap(mx::gather_mm(a.inner, b.inner, optional(lhs_indices), optional(rhs_indices), sorted_indices));
}

ArrayPtr gather_qmm(const Array& x, const Array& w, const Array& scales, const Array* biases,
                    const Array* lhs_indices, const Array* rhs_indices, bool transpose, std::int32_t group_size,
                    std::int32_t bits, rust::Str mode, bool sorted_indices) {
  return wrap(mx::gather_qmm(x.inner, w.inner, scales.inner, optional(biases), optional(lhs_indices),
                             optional(rhs_indices), transpose, group_size, bits, std::string(mode), std::nullopt,
                             sorted_indices));
}

}  // namespace mlxcel
