// cxx glue: BlockSpec to MatSpec, arrays in and out, errors as exceptions (cxx makes them Err).
#include "bridge.h"

#include <stdexcept>
#include <string>

#include "kernels.h"
#include "mlx-bridge/src/block_quant/ffi.rs.h"
#include "pool.h"
#include "primitives.h"

namespace mlxcel {

namespace {

bq::MatSpec to_spec(const BlockSpec& s) {
  const std::string name(s.name);
  if (s.fmt > static_cast<std::uint8_t>(bq::Fmt::Affine8))
    throw std::invalid_argument("block matrix " + name + ": unknown format code " + std::to_string(s.fmt));
  if (s.ptype > static_cast<std::uint8_t>(bq::ParamType::F32))
    throw std::invalid_argument("block matrix " + name + ": unknown parameter type");
  constexpr std::size_t kMax = 1u << 30;
  if (s.rows == 0 || s.cols == 0 || s.rows > kMax || s.cols > kMax)
    throw std::invalid_argument("block matrix " + name + ": bad shape " + std::to_string(s.rows) + " x " +
                                std::to_string(s.cols));
  return bq::MatSpec{name, static_cast<bq::Fmt>(s.fmt), static_cast<bq::ParamType>(s.ptype), s.group,
                     static_cast<int>(s.rows), static_cast<int>(s.cols)};
}

// A row-contiguous, evaluated copy of `a` (or `a` itself when it already is one).
mx::array host_contiguous(const mx::array& a, mx::Dtype dtype) {
  mx::array c = mx::contiguous(mx::astype(a, dtype, mx::Device::cpu), false, mx::Device::cpu);
  mx::eval(c);
  return c;
}

}  // namespace

ArrayPtr bq_pack_gguf(const BlockSpec& spec, rust::Slice<const std::uint8_t> bytes) {
  return wrap(bq::pack_gguf(to_spec(spec), bytes.data(), bytes.size()));
}

ArrayPtr bq_pack_affine(const BlockSpec& spec, const Array& w, const Array& scales, const Array& biases) {
  const bq::MatSpec s = to_spec(spec);
  const int bits = s.fmt == bq::Fmt::Affine4 ? 4 : 8;
  auto fail = [&](const std::string& why) { throw std::invalid_argument("block matrix " + s.name + ": " + why); };
  if (s.fmt != bq::Fmt::Affine4 && s.fmt != bq::Fmt::Affine8) fail("not an affine format");
  if (s.group != 32 && s.group != 64) fail("affine group " + std::to_string(s.group) + " is not 32 or 64");
  if (s.cols % s.group != 0) fail("cols is not a multiple of the group");
  const mx::Shape wshape{s.rows, s.cols * bits / 32}, gshape{s.rows, s.cols / s.group};
  if (w.inner.dtype() != mx::uint32 || w.inner.shape() != wshape) fail("packed weight is not uint32 of the matrix's shape");
  if (scales.inner.shape() != gshape || biases.inner.shape() != gshape) fail("scales or biases do not match the groups");
  const mx::Dtype pd = scales.inner.dtype();
  if (biases.inner.dtype() != pd) fail("scales and biases differ in dtype");
  bq::MatSpec ps = s;
  if (pd == mx::float16) ps.ptype = bq::ParamType::F16;
  else if (pd == mx::bfloat16) ps.ptype = bq::ParamType::BF16;
  else if (pd == mx::float32) ps.ptype = bq::ParamType::F32;
  else fail("scales must be float16, bfloat16 or float32");
  if (ps.ptype != s.ptype) fail("parameter type does not match the scales' dtype");
  const mx::array wc = host_contiguous(w.inner, mx::uint32);
  const mx::array sc = host_contiguous(scales.inner, pd);
  const mx::array bc = host_contiguous(biases.inner, pd);
  return wrap(bq::pack_affine(ps, wc.data<std::uint32_t>(), static_cast<const std::uint8_t*>(sc.data<void>()),
                              static_cast<const std::uint8_t*>(bc.data<void>())));
}

std::unique_ptr<ArrayList> bq_matmul_many(rust::Slice<const BlockSpec> specs, const ArrayList& packed,
                                          const Array& x, std::uint8_t precision) {
  if (precision > static_cast<std::uint8_t>(bq::Precision::Int16))
    throw std::invalid_argument("unknown activation precision code " + std::to_string(precision));
  std::vector<bq::MatSpec> ms;
  for (const auto& s : specs) ms.push_back(to_spec(s));
  auto out = std::make_unique<ArrayList>();
  out->items = bq::matmul_t_many(ms, packed.items, x.inner, static_cast<bq::Precision>(precision));
  return out;
}

ArrayPtr bq_gather_rows(const BlockSpec& spec, const Array& packed, const Array& ids) {
  return wrap(bq::gather_rows(to_spec(spec), packed.inner, ids.inner));
}

ArrayPtr bq_dequantize(const BlockSpec& spec, const Array& packed) {
  return wrap(bq::dequantize(to_spec(spec), packed.inner));
}

void bq_set_num_threads(std::size_t n) {
  if (n > 1024) throw std::invalid_argument("set_num_threads: " + std::to_string(n) + " threads is too many");
  bq::Pool::instance().set_threads(static_cast<int>(n));
}

std::size_t bq_num_threads() { return static_cast<std::size_t>(bq::Pool::instance().threads()); }

void bq_set_isa(std::uint8_t isa) {
  if (isa > static_cast<std::uint8_t>(bq::Isa::Neon)) throw std::invalid_argument("unknown ISA code");
  bq::set_isa(static_cast<bq::Isa>(isa));
}

std::uint8_t bq_isa() { return static_cast<std::uint8_t>(bq::active_isa()); }

bool bq_isa_supported(std::uint8_t isa) {
  return isa <= static_cast<std::uint8_t>(bq::Isa::Neon) && bq::isa_supported(static_cast<bq::Isa>(isa));
}

}  // namespace mlxcel
