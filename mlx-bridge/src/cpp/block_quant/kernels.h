// The kernel tables of each instruction set and the run-time choice among them.
#pragma once

#include "layout.h"

namespace mlxcel::bq {

// Each is defined in its own translation unit, compiled with that ISA's -m flags; the x86 ones
// exist only on x86-64 builds and NEON only on aarch64 (see isa.cc).
const KernelTable* scalar_kernels();
const KernelTable* avx2_kernels();
const KernelTable* avxvnni_kernels();
const KernelTable* avx512vnni_kernels();
const KernelTable* neon_kernels();

enum class Isa : std::uint8_t { Scalar = 0, Avx2 = 1, AvxVnni = 2, Avx512Vnni = 3, Neon = 4 };

// The table in use: MLXCEL_CPU_ISA if set (checked on first use), else the best this CPU runs.
const KernelTable& active_kernels();
Isa active_isa();
// Throws std::invalid_argument when this CPU or build cannot run `isa`.
void set_isa(Isa isa);
bool isa_supported(Isa isa);
const char* isa_name(Isa isa);

}  // namespace mlxcel::bq
