#!/usr/bin/env bash
# Where a decode step's time goes on the H200: what one graph node costs MLX's host side (encoding)
# and the device, by node kind (cuda_probe nodes), and tg128 under MLX's CUDA graph settings
# (graphs on with its default 100 ops per graph, more ops per graph, graphs off), each precision.
# Repository root, .gpu/ carried as in gpu_pages.sh.
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/results"
bash .gpu/setup.sh /tmp/mlx-cuda >/dev/null 2>&1 || { echo "setup of the MLX CUDA runtime failed" >&2; exit 1; }
source /tmp/mlx-cuda/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
nproc; uptime
B=.gpu/bin/mlxcel
for graphs in "" "MLX_USE_CUDA_GRAPHS=0"; do
  echo "== node costs ${graphs:-graphs on}"
  env $graphs timeout -k 5 60 .gpu/bin/cuda_probe nodes 2>&1 | grep "node cost"
done
for bits in "" 4; do
  for setting in "" "MLX_MAX_OPS_PER_BUFFER=400" "MLX_USE_CUDA_GRAPHS=0"; do
    name=$(echo "${setting:-default}" | tr -c 'A-Za-z0-9\n' '-')
    echo "== tg128 ${bits:-bf16} ${setting:-default}"
    env $setting timeout -k 5 90 $B bench --random e2b ${bits:+--bits $bits} -p 0 -n 128 -r 3 --breakdown 16 -o md \
      --json-out "$OUT/results/tg-${bits:-16}-$name.json" 2>&1 | grep -E "tg128|breakdown|nodes" | head -4
  done
done
