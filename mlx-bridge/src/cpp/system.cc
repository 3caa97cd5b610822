// Safetensors I/O, memory statistics, devices, streams and versions.
#include <stdexcept>
#include <variant>

#include "mlx-bridge/src/cpp/shim.h"
#include "mlx-bridge/src/ffi.rs.h"

#ifdef __APPLE__
namespace mlx::core::metal {
bool is_nax_available();
}
#endif

namespace mlxcel {

std::unique_ptr<TensorMap> load_safetensors(rust::Str path) {
  auto [tensors, metadata] = mx::load_safetensors(std::string(path));
  auto out = std::make_unique<TensorMap>();
  out->tensors = std::move(tensors);
  out->metadata = std::move(metadata);
  return out;
}

rust::Vec<rust::String> tensor_map_keys(const TensorMap& map) {
  rust::Vec<rust::String> out;
  for (const auto& [name, _] : map.tensors) out.push_back(rust::String(name));
  return out;
}

ArrayPtr tensor_map_get(const TensorMap& map, rust::Str name) {
  auto it = map.tensors.find(std::string(name));
  if (it == map.tensors.end()) throw std::out_of_range("no tensor named " + std::string(name));
  return wrap(it->second);
}

// Flattened key/value pairs: cxx has no map type.
rust::Vec<rust::String> tensor_map_metadata(const TensorMap& map) {
  rust::Vec<rust::String> out;
  for (const auto& [k, v] : map.metadata) {
    out.push_back(rust::String(k));
    out.push_back(rust::String(v));
  }
  return out;
}

void save_safetensors(rust::Str path, rust::Slice<const rust::String> names, const ArrayList& arrays,
                      rust::Slice<const rust::String> metadata) {
  if (names.size() != arrays.items.size()) throw std::invalid_argument("save_safetensors: names and arrays differ");
  if (metadata.size() % 2 != 0) throw std::invalid_argument("save_safetensors: metadata must be key/value pairs");
  std::unordered_map<std::string, mx::array> tensors;
  for (std::size_t i = 0; i < names.size(); ++i) tensors.insert_or_assign(std::string(names[i]), arrays.items[i]);
  std::unordered_map<std::string, std::string> meta;
  for (std::size_t i = 0; i < metadata.size(); i += 2) meta[std::string(metadata[i])] = std::string(metadata[i + 1]);
  mx::save_safetensors(std::string(path), std::move(tensors), std::move(meta));
}

std::size_t get_active_memory() { return mx::get_active_memory(); }
std::size_t get_peak_memory() { return mx::get_peak_memory(); }
std::size_t get_cache_memory() { return mx::get_cache_memory(); }
void reset_peak_memory() { mx::reset_peak_memory(); }
std::size_t get_memory_limit() { return mx::get_memory_limit(); }
std::size_t set_memory_limit(std::size_t limit) { return mx::set_memory_limit(limit); }
std::size_t set_cache_limit(std::size_t limit) { return mx::set_cache_limit(limit); }
std::size_t set_wired_limit(std::size_t limit) { return mx::set_wired_limit(limit); }
void clear_cache() { mx::clear_cache(); }

rust::String mlx_version() { return rust::String(mx::version()); }

static Device from_mx(const mx::Device& d) {
  return Device{d.type == mx::Device::gpu ? DeviceKind::Gpu : DeviceKind::Cpu, d.index};
}

static Stream from_mx(const mx::Stream& s) { return Stream{s.index, from_mx(s.device)}; }

Device default_device() { return from_mx(mx::default_device()); }
void set_default_device(const Device& device) { mx::set_default_device(to_mx(device)); }
bool device_available(const Device& device) { return mx::is_available(to_mx(device)); }
std::int32_t device_count(DeviceKind kind) {
  return mx::device_count(kind == DeviceKind::Gpu ? mx::Device::gpu : mx::Device::cpu);
}

// Flattened key/value pairs; numbers as decimal text.
rust::Vec<rust::String> device_info(const Device& device) {
  rust::Vec<rust::String> out;
  for (const auto& [key, value] : mx::device_info(to_mx(device))) {
    out.push_back(rust::String(key));
    if (const auto* text = std::get_if<std::string>(&value)) {
      out.push_back(rust::String(*text));
    } else {
      out.push_back(rust::String(std::to_string(std::get<std::size_t>(value))));
    }
  }
  return out;
}

Stream default_stream(const Device& device) { return from_mx(mx::default_stream(to_mx(device))); }
Stream new_stream(const Device& device) { return from_mx(mx::new_stream(to_mx(device))); }
void set_default_stream(const Stream& stream) { mx::set_default_stream(mx::Stream(stream.index, to_mx(stream.device))); }

bool metal_nax_available() {
#ifdef __APPLE__
  return mx::metal::is_nax_available();
#else
  return false;
#endif
}

}  // namespace mlxcel
