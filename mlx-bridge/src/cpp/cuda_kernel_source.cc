#include "mlx-bridge/src/cpp/cuda_kernel_source.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>

namespace mlxcel::cuda_fast {

namespace fs = std::filesystem;

namespace {

// The user's cache directory (the one the build fetches MLX into), never a shared temp
// directory: NVRTC compiles whatever the file holds.
std::optional<fs::path> cache_dir() {
  if (const char* dir = std::getenv("MLXCEL_CACHE_DIR"); dir && *dir) return fs::path(dir) / "cuda-kernels";
  if (const char* dir = std::getenv("XDG_CACHE_HOME"); dir && *dir) return fs::path(dir) / "mlxcel" / "cuda-kernels";
  if (const char* home = std::getenv("HOME"); home && *home)
    return fs::path(home) / ".cache" / "mlxcel" / "cuda-kernels";
  return std::nullopt;
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

KernelSource kernel_source(const std::string& name, const std::string& definitions, const std::string& call) {
  const std::string code = "#pragma once\n" + definitions;
  if (auto path = code_file(name, code)) return {"#include \"" + path->string() + "\"\n", call};
  return {definitions, call};
}

}  // namespace mlxcel::cuda_fast
