#!/bin/sh
# Builds the standalone kernel tools (no MLX, no cargo) into ${OUT:-/tmp/bq-tools}:
#   kernels_vs_scalar  every x86 kernel table against the scalar one, bit for bit
#   kernel_bench       single-thread kernel throughput (examples/kernel_bench.cc)
#   kernels_vs_scalar_neon  the same check for NEON, when aarch64-linux-gnu-g++ is installed
#                      (run it with qemu-aarch64 -cpu max)
# The flags are build.rs's.
set -e
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../../src/cpp/block_quant"
out=${OUT:-/tmp/bq-tools}
mkdir -p "$out"
cxx="g++ -std=c++20 -O3 -ffp-contract=off -Wall -Wextra -I$src"
$cxx -c "$src/kernels_scalar.cc" -o "$out/scalar.o"
$cxx -mavx2 -mfma -mf16c -c "$src/kernels_avx2.cc" -o "$out/avx2.o"
$cxx -mavx2 -mfma -mf16c -mavxvnni -c "$src/kernels_avxvnni.cc" -o "$out/avxvnni.o"
$cxx -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni \
  -c "$src/kernels_avx512vnni.cc" -o "$out/avx512vnni.o"
objs="$out/scalar.o $out/avx2.o $out/avxvnni.o $out/avx512vnni.o"
$cxx "$here/kernels_vs_scalar.cc" $objs -o "$out/kernels_vs_scalar"
$cxx -mavx2 "$here/../../examples/kernel_bench.cc" $objs -o "$out/kernel_bench"
if command -v aarch64-linux-gnu-g++ >/dev/null; then
  aarch64-linux-gnu-g++ -std=c++20 -O3 -ffp-contract=off -Wall -Wextra -march=armv8.2-a+dotprod -static -I"$src" \
    "$here/kernels_vs_scalar.cc" "$src/kernels_scalar.cc" "$src/kernels_neon.cc" -o "$out/kernels_vs_scalar_neon"
fi
echo "built in $out"
