#!/usr/bin/env bash
# On the GPU machine, from the repository root, with .gpu/ carried (see README "Running on an NVIDIA GPU"):
#   .gpu/          = shared/cuda (slim MLX 0.32.4 CUDA runtime) + bin/ below
#   .gpu/bin/      = mlxcel and the gemm example, built here with --release --no-default-features
#   .gpu/bin/tests = the mlx-bridge test binaries, same build
# Proves the CPU-built binary runs on CUDA, records `mlxcel detect`, runs the bridge tests on the GPU
# and measures matmul throughput. Writes its outputs under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
bash .gpu/setup.sh /tmp/mlx-cuda >/dev/null && source /tmp/mlx-cuda/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/nvidia-smi.txt"
echo "== libraries the binary resolves"; ldd .gpu/bin/mlxcel | grep -E "mlx|blas|cuda" | tee "$OUT/ldd.txt"
echo "== mlxcel detect"; .gpu/bin/mlxcel detect | tee "$OUT/detect.txt"
.gpu/bin/mlxcel detect --json > "$OUT/detect.json"; echo "json exit $?"
echo "== bridge tests on CUDA"
for t in .gpu/bin/tests/*; do echo "-- $(basename "$t")"; "$t" --test-threads=1 2>&1 | grep -E "^test |panicked|result|MLX" ; done | tee "$OUT/bridge_tests.txt"
echo "== gemm"; .gpu/bin/gemm 8192 10 bfloat16,float32 | tee "$OUT/gemm.txt"
