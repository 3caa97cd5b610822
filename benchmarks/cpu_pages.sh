#!/usr/bin/env bash
# The CPU pages' measurements, on the 2-core x86-64 class, from the repository root, on a quiet
# machine (nothing else running: check `uptime`). Needs the release binary (./dev run builds it)
# and a Python with xllamacpp and gguf (llama.cpp), and mlx==0.32.4, mlx-lm==0.32.2, transformers
# and torch for the mlx-lm rows (the GGUF is dequantized to an HF folder for it):
#   PY=/path/to/python bash benchmarks/cpu_pages.sh [OUT]
# then renders docs/benchmarks/cpu-x86_64.md and docs/benchmarks/cpu-kernels.md from the JSON.
# Engines on the same GGUF files: mlxcel (its CPU plan: weights kept in their block formats on
# mlxcel's kernels, with the float32-dequantized path as an A/B row), llama.cpp (xllamacpp, 2
# threads) and mlx-lm with OpenBLAS.
set -euo pipefail
OUT=${1:-/tmp/cpu-bench}
PY=${PY:-python3}
mkdir -p "$OUT"
B=target/release/mlxcel
SMOL=$($B fetch smollm2)
GEMMA=$($B fetch gemma-3-270m)
OPENBLAS=$(ldconfig -p | awk '/libopenblas\.so\.0/ {print $NF; exit}')
COMMIT=$(git rev-parse --short=10 HEAD)
T=(-p 512 -n 128 -r 3 --warmup 1)
TM=(-p 128 -n 32 -r 3 --warmup 1)   # the Gemma 3n shape is ~10x the small models' work
openblas() { MLXCEL_BENCH_BLAS=openblas LD_PRELOAD=$OPENBLAS "$@"; }
step=${STEP:-1}   # resume from a step after an interruption
run() { local n=$1; shift; if [ "$n" -ge "$step" ]; then echo "== step $n: $* (load $(cut -d' ' -f1 /proc/loadavg))" >&2; "$@"; fi; }

for gguf in "$SMOL" "$GEMMA"; do
  n=$(basename "$gguf" .gguf)
  # Engines alternate per model, so both see the same machine state.
  run 1 $B bench -m "$gguf" "${T[@]}" --dequantize off,on --json-out "$OUT/mlxcel-$n.json" -o md
  run 2 $PY benchmarks/peers.py llama.cpp --gguf "$gguf" "${T[@]}" --threads 2 --out "$OUT/llamacpp-$n.json"
  run 3 $B bench -m "$gguf" "${T[@]}" --activation-precision int8 --json-out "$OUT/mlxcel-$n-int8.json" -o md
  run 3 $B bench -m "$gguf" "${T[@]}" --threads 1 --json-out "$OUT/mlxcel-$n-1thread.json" -o md
  run 4 openblas $PY benchmarks/peers.py mlx-lm --gguf "$gguf" --dtype float32 "${T[@]}" --out "$OUT/mlxlm-openblas-$n.json"
done
# Gemma 3n e2b-mini 4-bit (random weights): kept quantized on the kernels vs dequantized to float32.
run 5 $B bench --random e2b-mini --bits 4 "${TM[@]}" --dequantize off,on --json-out "$OUT/mlxcel-e2b-mini-q4.json" -o md
run 6 $B bench --random e2b-mini "${TM[@]}" --json-out "$OUT/mlxcel-e2b-mini.json" -o md
# Where a decode step's time goes, for the page's breakdown section.
run 7 $B bench -m "$SMOL" -p 512 -n 0 -r 1 --warmup 0 --breakdown 32 --json-out "$OUT/breakdown-smollm2.json" -o md
run 8 $B bench -m "$GEMMA" -p 512 -n 0 -r 1 --warmup 0 --breakdown 32 --json-out "$OUT/breakdown-gemma-3-270m.json" -o md
# The kernels alone against the memory bandwidth.
run 9 cargo run --release -q -p mlx-bridge --example block_gemv_bench -- --json "$OUT/kernels.json"

cargo run --release -q -p mlxcel-bench-report -- --title "CPU: 2-core x86-64" --out docs/benchmarks/cpu-x86_64.md \
  --charts-dir docs/benchmarks/cpu-x86_64 --baseline llama.cpp --notes docs/benchmarks/notes-cpu.md \
  "$OUT"/mlxcel-*.json "$OUT"/llamacpp-*.json "$OUT"/mlxlm-*.json
$PY - "$OUT/kernels.json" "$COMMIT" <<'EOF'
import json, sys
path, commit = sys.argv[1], sys.argv[2]
data = json.load(open(path))
data["commit"] = commit
json.dump(data, open(path, "w"), indent=1)
EOF
$PY benchmarks/kernel_page.py "$OUT/kernels.json" \
  "cargo run --release -p mlx-bridge --example block_gemv_bench -- --json kernels.json" > docs/benchmarks/cpu-kernels.md
mkdir -p benchmarks/results/cpu-x86_64 && cp "$OUT"/*.json benchmarks/results/cpu-x86_64/
