// Array construction, host transfer, lists and evaluation.
#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

#include "mlx-bridge/src/cpp/shim.h"
#include "mlx/primitives.h"
#include "mlx-bridge/src/ffi.rs.h"

namespace mlxcel {

mx::Dtype to_mx(Dtype dtype) {
  switch (dtype) {
    case Dtype::Bool: return mx::bool_;
    case Dtype::U8: return mx::uint8;
    case Dtype::U16: return mx::uint16;
    case Dtype::U32: return mx::uint32;
    case Dtype::U64: return mx::uint64;
    case Dtype::I8: return mx::int8;
    case Dtype::I16: return mx::int16;
    case Dtype::I32: return mx::int32;
    case Dtype::I64: return mx::int64;
    case Dtype::F16: return mx::float16;
    case Dtype::F32: return mx::float32;
    case Dtype::F64: return mx::float64;
    case Dtype::BF16: return mx::bfloat16;
    case Dtype::C64: return mx::complex64;
  }
  throw std::invalid_argument("unknown dtype");
}

Dtype from_mx(mx::Dtype dtype) {
  switch (dtype.val()) {
    case mx::Dtype::Val::bool_: return Dtype::Bool;
    case mx::Dtype::Val::uint8: return Dtype::U8;
    case mx::Dtype::Val::uint16: return Dtype::U16;
    case mx::Dtype::Val::uint32: return Dtype::U32;
    case mx::Dtype::Val::uint64: return Dtype::U64;
    case mx::Dtype::Val::int8: return Dtype::I8;
    case mx::Dtype::Val::int16: return Dtype::I16;
    case mx::Dtype::Val::int32: return Dtype::I32;
    case mx::Dtype::Val::int64: return Dtype::I64;
    case mx::Dtype::Val::float16: return Dtype::F16;
    case mx::Dtype::Val::float32: return Dtype::F32;
    case mx::Dtype::Val::float64: return Dtype::F64;
    case mx::Dtype::Val::bfloat16: return Dtype::BF16;
    case mx::Dtype::Val::complex64: return Dtype::C64;
  }
  throw std::invalid_argument("unknown MLX dtype");
}

mx::Shape to_shape(Ints shape) { return mx::Shape(shape.begin(), shape.end()); }

std::vector<int> to_ints(Ints values) { return std::vector<int>(values.begin(), values.end()); }

mx::Device to_mx(const Device& device) {
  return mx::Device(device.kind == DeviceKind::Gpu ? mx::Device::gpu : mx::Device::cpu, device.index);
}

ArrayPtr array_clone(const Array& a) { return wrap(a.inner); }

namespace {

// Copies through a typed, aligned buffer: the Rust byte slice carries no alignment promise.
template <typename T>
mx::array typed_from_bytes(const std::uint8_t* data, std::size_t count, mx::Shape shape, mx::Dtype dtype) {
  std::unique_ptr<T[]> values(new T[count]);
  if (count > 0) std::memcpy(values.get(), data, count * sizeof(T));
  return mx::array(values.get(), std::move(shape), dtype);
}

}  // namespace

ArrayPtr array_from_bytes(rust::Slice<const std::uint8_t> data, Ints shape, Dtype dtype) {
  auto mx_dtype = to_mx(dtype);
  std::size_t count = 1;
  for (auto d : shape) {
    if (d < 0) throw std::invalid_argument("array_from_bytes: negative dimension");
    count *= static_cast<std::size_t>(d);
  }
  if (count * mx::size_of(mx_dtype) != data.size()) {
    std::ostringstream msg;
    msg << "array_from_bytes: " << data.size() << " bytes do not hold " << count << " elements of "
        << mx_dtype;
    throw std::invalid_argument(msg.str());
  }
  auto s = to_shape(shape);
  const auto* p = data.data();
  switch (dtype) {
    case Dtype::Bool: return wrap(typed_from_bytes<bool>(p, count, s, mx_dtype));
    case Dtype::U8: return wrap(typed_from_bytes<std::uint8_t>(p, count, s, mx_dtype));
    case Dtype::U16: return wrap(typed_from_bytes<std::uint16_t>(p, count, s, mx_dtype));
    case Dtype::U32: return wrap(typed_from_bytes<std::uint32_t>(p, count, s, mx_dtype));
    case Dtype::U64: return wrap(typed_from_bytes<std::uint64_t>(p, count, s, mx_dtype));
    case Dtype::I8: return wrap(typed_from_bytes<std::int8_t>(p, count, s, mx_dtype));
    case Dtype::I16: return wrap(typed_from_bytes<std::int16_t>(p, count, s, mx_dtype));
    case Dtype::I32: return wrap(typed_from_bytes<std::int32_t>(p, count, s, mx_dtype));
    case Dtype::I64: return wrap(typed_from_bytes<std::int64_t>(p, count, s, mx_dtype));
    case Dtype::F16: return wrap(typed_from_bytes<mx::float16_t>(p, count, s, mx_dtype));
    case Dtype::F32: return wrap(typed_from_bytes<float>(p, count, s, mx_dtype));
    case Dtype::F64: return wrap(typed_from_bytes<double>(p, count, s, mx_dtype));
    case Dtype::BF16: return wrap(typed_from_bytes<mx::bfloat16_t>(p, count, s, mx_dtype));
    case Dtype::C64: return wrap(typed_from_bytes<mx::complex64_t>(p, count, s, mx_dtype));
  }
  throw std::invalid_argument("array_from_bytes: unknown dtype");
}

ArrayPtr array_full(Ints shape, double value, Dtype dtype) {
  auto mx_dtype = to_mx(dtype);
  // Through float64 only where it is exact; MLX's GPU backends have no float64.
  mx::array scalar = (mx_dtype == mx::int64 || mx_dtype == mx::uint64)
                         ? mx::array(static_cast<std::int64_t>(value), mx_dtype)
                         : mx::array(static_cast<float>(value), mx_dtype);
  // A scalar is returned as it is, already materialized: a lazy `full` would cost a graph node
  // (and a kernel launch) in every step that uses a constant.
  if (shape.empty()) return wrap(scalar);
  return wrap(mx::full(to_shape(shape), scalar, mx_dtype));
}

ArrayPtr array_arange(double start, double stop, double step, Dtype dtype) {
  return wrap(mx::arange(start, stop, step, to_mx(dtype)));
}

rust::Vec<std::int32_t> array_shape(const Array& a) {
  rust::Vec<std::int32_t> out;
  for (auto d : a.inner.shape()) out.push_back(d);
  return out;
}

Dtype array_dtype(const Array& a) { return from_mx(a.inner.dtype()); }
std::size_t array_size(const Array& a) { return a.inner.size(); }
std::size_t array_nbytes(const Array& a) { return a.inner.nbytes(); }

void array_read_into(const Array& a, rust::Slice<std::uint8_t> out) {
  // Read in place when already row-major (host-created arrays, most results): no device op, so
  // this also works for dtypes the GPU backends lack (float64).
  auto c = a.inner;
  c.eval();
  if (!c.flags().row_contiguous) {
    c = mx::contiguous(c);
    c.eval();
  }
  if (c.nbytes() != out.size()) {
    std::ostringstream msg;
    msg << "array_read_into: array holds " << c.nbytes() << " bytes, buffer has " << out.size();
    throw std::invalid_argument(msg.str());
  }
  if (c.nbytes() > 0) std::memcpy(out.data(), c.data<std::uint8_t>(), c.nbytes());
}

rust::String array_describe(const Array& a) {
  std::ostringstream out;
  out << a.inner;
  return rust::String(out.str());
}

std::unique_ptr<ArrayList> array_list_new() { return std::make_unique<ArrayList>(); }
void array_list_push(ArrayList& list, const Array& a) { list.items.push_back(a.inner); }
std::size_t array_list_len(const ArrayList& list) { return list.items.size(); }
ArrayPtr array_list_get(const ArrayList& list, std::size_t index) {
  if (index >= list.items.size()) throw std::out_of_range("array list index out of range");
  return wrap(list.items[index]);
}

void eval(const ArrayList& list) { mx::eval(list.items); }
void async_eval(const ArrayList& list) { mx::async_eval(list.items); }

namespace {
// Visits the distinct unevaluated arrays with a primitive that evaluating `list` would compute:
// roughly the kernels a step launches (a compiled block counts once; siblings of a multi-output
// primitive each count).
template <typename Visit>
void visit_pending(const ArrayList& list, Visit visit) {
  std::unordered_set<std::uintptr_t> seen;
  std::vector<mx::array> stack(list.items.begin(), list.items.end());
  while (!stack.empty()) {
    mx::array a = stack.back();
    stack.pop_back();
    if (a.is_available() || !a.has_primitive() || !seen.insert(a.id()).second) continue;
    visit(a);
    for (const auto& input : a.inputs()) stack.push_back(input);
  }
}
}  // namespace

std::size_t pending_graph_nodes(const ArrayList& list) {
  std::size_t nodes = 0;
  visit_pending(list, [&](const mx::array&) { ++nodes; });
  return nodes;
}

// "name<TAB>count" lines, one per primitive name.
rust::String pending_graph_ops(const ArrayList& list) {
  std::map<std::string, std::size_t> counts;
  visit_pending(list, [&](const mx::array& a) { ++counts[a.primitive().name()]; });
  std::ostringstream out;
  for (const auto& [name, count] : counts) out << name << '\t' << count << '\n';
  return rust::String(out.str());
}
void synchronize(const Stream& stream) { mx::synchronize(mx::Stream(stream.index, to_mx(stream.device))); }
void synchronize_default() { mx::synchronize(); }

}  // namespace mlxcel
