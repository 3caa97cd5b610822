#!/usr/bin/env bash
# Checks for one H200 call before the page runs (repository root, .gpu/ carried as in
# gpu_pages.sh, plus .gpu/bin/cuda_probe): quantized matmul by rows (MLX's kernels, and the
# bridge's route around MLX's wrong float32 multi-row kernel); the Gemma 3n fixtures' prefill in
# float32 against transformers with the CUDA kernels off and on; the prefill chunk A/B at 2048.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/results"
bash .gpu/setup.sh /tmp/mlx-cuda >/dev/null 2>&1 || { echo "setup of the MLX CUDA runtime failed" >&2; exit 1; }
source /tmp/mlx-cuda/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
B=.gpu/bin/mlxcel
echo "== quantized matmul by rows (TF32 off), one process per inner size"
# MLX compiles a kernel per new shape, seconds each: the limit ends a size's list early (its rc 124).
for k in 64 256 2048 8192; do
  MLX_ENABLE_TF32=0 timeout -k 5 ${QMM_SECONDS:-40} .gpu/bin/cuda_probe qmm --k $k > "$OUT/qmm-$k.txt" 2>&1
  echo "K=$k rc $? ($(grep -c ' ok$' "$OUT/qmm-$k.txt") ok)"; grep -v " ok$" "$OUT/qmm-$k.txt" | head -20
done
OUT=$OUT bash benchmarks/gpu_pages.sh h200-fixtures
echo "== prefill chunk A/B at 2048 (bf16)"
for chunk in 512 1024 2048; do
  timeout -k 5 45 $B bench --random e2b -p 2048 -n 0 -r 3 --prefill-chunk $chunk -o md \
    --json-out "$OUT/results/prefill-chunk-$chunk-e2b-16.json" 2>&1 | grep -E "t/s$"
done
