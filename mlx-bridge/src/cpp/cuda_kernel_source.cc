#include "mlx-bridge/src/cpp/cuda_kernel_source.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <sstream>

namespace mlxcel::cuda_fast {

namespace fs = std::filesystem;

namespace {

std::mutex& code_dir_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::optional<fs::path>& code_dir_slot() {
  static std::optional<fs::path> dir;
  return dir;
}

// The user's cache directory (the one the build fetches MLX into), never a shared temp
// directory: NVRTC compiles whatever the file holds.
std::optional<fs::path> cache_dir() {
  std::lock_guard<std::mutex> lock(code_dir_mutex());
  return code_dir_slot();
}

std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The file holding exactly `code`, written once (through a rename, so a concurrent process
// never includes a half-written file) and read back before use.
std::optional<fs::path> code_file(const std::string& name, const std::string& code) {
  const auto dir = cache_dir();
  if (!dir) return std::nullopt;
  std::error_code error;
  fs::create_directories(*dir, error);
  if (error) return std::nullopt;
  std::ostringstream file_name;
  file_name << name << '-' << std::hex << std::hash<std::string>{}(code) << ".cuh";
  const fs::path path = *dir / file_name.str();
  if (read_file(path) != code) {
    const fs::path partial = *dir / (file_name.str() + "." + std::to_string(getpid()) + ".partial");
    {
      std::ofstream out(partial, std::ios::binary | std::ios::trunc);
      out << code;
      if (!out.flush()) return std::nullopt;
    }
    fs::rename(partial, path, error);
    if (error) {
      fs::remove(partial, error);
      return std::nullopt;
    }
    if (read_file(path) != code) return std::nullopt;
  }
  // A path NVRTC reads in a quoted #include without escapes.
  const std::string text = path.string();
  if (text.find_first_of("\"\\\n") != std::string::npos) return std::nullopt;
  return path;
}

}  // namespace

void set_kernel_code_dir(const std::string& dir) {
  std::lock_guard<std::mutex> lock(code_dir_mutex());
  code_dir_slot() = dir.empty() ? std::nullopt : std::optional<fs::path>(dir);
}

KernelSource kernel_source(const std::string& name, const std::string& definitions, const std::string& call) {
  const std::string code = "#pragma once\n" + definitions;
  if (auto path = code_file(name, code)) return {"#include \"" + path->string() + "\"\n", call};
  return {definitions, call};
}

}  // namespace mlxcel::cuda_fast
