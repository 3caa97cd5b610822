#!/usr/bin/env bash
# On the GPU machine, from the repository root, with .gpu/ carried (see benchmarks/gpu_foundation.sh):
#   .gpu/bin/mlxcel and .gpu/bin/gemma3n_ab, built here with --release --no-default-features.
# 1. Exactness on CUDA: `mlxcel score` on the tiny fixture (float32, TF32 off) vs transformers'
#    logits, every chunk size and decode path.
# 2. The plan A/B on random weights at E2B/E4B shapes (models/examples/gemma3n_ab.rs).
# 3. mlx-lm 0.32.2 on the same machine and shapes, for reference.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
bash .gpu/setup.sh /tmp/mlx-cuda >/dev/null && source /tmp/mlx-cuda/env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
F=tests/fixtures/gemma3n-tiny
IDS=$(python3 -c "import json; print(','.join(map(str, json.load(open('$F/reference.json'))['prompt'])))")
echo "== exactness on CUDA (float32, MLX_ENABLE_TF32=0)"
for chunk in 11 5 1; do for path in fused split; do
  MLX_ENABLE_TF32=0 .gpu/bin/mlxcel score -m $F/fp32 --ids "$IDS" --compute-dtype float32 --prefill-chunk $chunk \
    --decode-path $path --logits-out /tmp/l.npy || exit 1
  python3 -c "import json, numpy as np; r=json.load(open('$F/reference.json')); print('chunk $chunk $path max|diff|', float(np.abs(np.load('/tmp/l.npy') - np.array(r['logits']['fp32'])).max()))"
done; done | tee "$OUT/exactness.txt"
echo "== plan A/B"
{ .gpu/bin/gemma3n_ab --shape e2b --dtype bfloat16 -p 512 -n 64 -r 3
  .gpu/bin/gemma3n_ab --shape e2b --dtype bfloat16 --bits 4 -p 512 -n 64 -r 3
  .gpu/bin/gemma3n_ab --shape e4b --dtype bfloat16 -p 512 -n 64 -r 3; } 2>&1 | tee "$OUT/ab.txt"
echo "== mlx-lm reference"
for bits in 0 4; do python3 .gpu/bench_mlxlm_gemma3n.py --kind e2b --bits $bits -p 512 -g 64 --trials 3 | tail -1; done 2>&1 | tee "$OUT/mlxlm.txt"
