// Picking the kernel table at run time: the best the CPU supports, MLXCEL_CPU_ISA, or set_isa.
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>

#include "kernels.h"

namespace mlxcel::bq {

#if !defined(__x86_64__)
const KernelTable* avx2_kernels() { return nullptr; }
const KernelTable* avxvnni_kernels() { return nullptr; }
const KernelTable* avx512vnni_kernels() { return nullptr; }
#endif
#if !defined(__aarch64__)
const KernelTable* neon_kernels() { return nullptr; }
#endif

namespace {

bool cpu_has(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return true;
#if defined(__x86_64__)
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case Isa::AvxVnni:
      return cpu_has(Isa::Avx2) && __builtin_cpu_supports("avxvnni");
    case Isa::Avx512Vnni:
      return cpu_has(Isa::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    case Isa::Avx2:
    case Isa::AvxVnni:
    case Isa::Avx512Vnni: return false;
#endif
    case Isa::Neon:
#if defined(__aarch64__)
      return true;
#else
      return false;
#endif
  }
  return false;
}

const KernelTable* table_of(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return scalar_kernels();
    case Isa::Avx2: return avx2_kernels();
    case Isa::AvxVnni: return avxvnni_kernels();
    case Isa::Avx512Vnni: return avx512vnni_kernels();
    case Isa::Neon: return neon_kernels();
  }
  return nullptr;
}

Isa best_isa() {
  for (Isa isa : {Isa::Avx512Vnni, Isa::AvxVnni, Isa::Avx2, Isa::Neon})
    if (isa_supported(isa)) return isa;
  return Isa::Scalar;
}

std::atomic<int> g_isa{-1};
std::string g_env_error;  // written once, under g_init
std::atomic<bool> g_env_error_active{false};
std::once_flag g_init;

void init_from_env() {
  std::call_once(g_init, [] {
    const char* env = std::getenv("MLXCEL_CPU_ISA");
    Isa chosen = best_isa();
    if (env != nullptr && *env != '\0') {
      const std::string want(env);
      bool known = false;
      for (Isa isa : {Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512Vnni, Isa::Neon})
        if (want == isa_name(isa)) {
          known = true;
          if (isa_supported(isa))
            chosen = isa;
          else
            g_env_error = "MLXCEL_CPU_ISA=" + want + ": this CPU or build cannot run " + want;
        }
      if (!known)
        g_env_error = "MLXCEL_CPU_ISA=" + want + " is not one of scalar, avx2, avxvnni, avx512vnni, neon";
    }
    g_env_error_active.store(!g_env_error.empty());
    g_isa.store(static_cast<int>(chosen));
  });
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::AvxVnni: return "avxvnni";
    case Isa::Avx512Vnni: return "avx512vnni";
    case Isa::Neon: return "neon";
  }
  return "?";
}

bool isa_supported(Isa isa) { return table_of(isa) != nullptr && cpu_has(isa); }

Isa active_isa() {
  init_from_env();
  return static_cast<Isa>(g_isa.load(std::memory_order_relaxed));
}

const KernelTable& active_kernels() {
  init_from_env();
  // An explicit set_isa clears a bad MLXCEL_CPU_ISA; until then every kernel call reports it.
  if (g_env_error_active.load(std::memory_order_relaxed)) throw std::invalid_argument(g_env_error);
  return *table_of(static_cast<Isa>(g_isa.load(std::memory_order_relaxed)));
}

void set_isa(Isa isa) {
  init_from_env();
  if (!isa_supported(isa)) throw std::invalid_argument(std::string("this CPU or build cannot run ") + isa_name(isa));
  g_env_error_active.store(false);
  g_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace mlxcel::bq
