#!/usr/bin/env bash
# The CPU page's measurements, on this 2-core x86-64 class, from the repository root. Needs the
# release binary (./dev run builds it) and a Python environment with mlx==0.32.4, mlx-lm==0.32.2,
# xllamacpp, gguf, transformers and torch (for mlx-lm, the GGUF is dequantized to an HF folder):
#   PY=/path/to/python bash benchmarks/cpu_pages.sh [OUT]
# Engines on the same files: mlxcel (its CPU plan, and A/B variants), mlx-lm as pip installs it
# (its bundled reference BLAS) and with OpenBLAS preloaded, and llama.cpp (xllamacpp).
# Two cores make some runs long, so the larger models get fewer variants: mlx-lm's bundled BLAS is
# measured on SmolLM2 only (its prefill runs ~5 GFLOP/s), and quantized-weight A/B on SmolLM2.
set -euo pipefail
OUT=${1:-/tmp/cpu-bench}
PY=${PY:-python3}
mkdir -p "$OUT"
B=target/release/mlxcel
SMOL=$($B fetch smollm2)
GEMMA=$($B fetch gemma-3-270m)
OPENBLAS=$(ldconfig -p | awk '/libopenblas\.so\.0/ {print $NF; exit}')
T=(-p 256 -n 64 -r 3 --warmup 1)
TM=(-p 128 -n 32 -r 3 --warmup 1)   # the Gemma 3n shape is ~10x the small models' work
openblas() { MLXCEL_BENCH_BLAS=openblas LD_PRELOAD=$OPENBLAS "$@"; }
step=${STEP:-1}   # resume from a step after an interruption
run() { local n=$1; shift; if [ "$n" -ge "$step" ]; then echo "== step $n: $*" >&2; "$@"; fi; }

n=$(basename "$SMOL" .gguf)
run 1 $B bench -m "$SMOL" "${T[@]}" --dequantize on,off --json-out "$OUT/mlxcel-$n.json" -o md
run 2 $B bench -m "$SMOL" "${T[@]}" --compute-dtype bfloat16 --json-out "$OUT/mlxcel-$n-bf16.json" -o md
run 3 $B bench -m "$SMOL" "${T[@]}" --pretranspose off --decode-path split,fused --json-out "$OUT/mlxcel-$n-layout.json" -o md
run 4 $PY benchmarks/peers.py llama.cpp --gguf "$SMOL" "${T[@]}" --out "$OUT/llamacpp-$n.json"
run 5 $PY benchmarks/peers.py mlx-lm --gguf "$SMOL" --dtype float32 "${T[@]}" --out "$OUT/mlxlm-$n.json"
run 6 openblas $PY benchmarks/peers.py mlx-lm --gguf "$SMOL" --dtype float32 "${T[@]}" --out "$OUT/mlxlm-openblas-$n.json"
run 7 openblas $PY benchmarks/peers.py mlx-lm --gguf "$SMOL" --dtype float32 --bits 4 "${T[@]}" --out "$OUT/mlxlm-openblas-$n-q4.json"
n=$(basename "$GEMMA" .gguf)
run 8 $B bench -m "$GEMMA" "${T[@]}" --json-out "$OUT/mlxcel-$n.json" -o md
run 9 $PY benchmarks/peers.py llama.cpp --gguf "$GEMMA" "${T[@]}" --out "$OUT/llamacpp-$n.json"
run 10 openblas $PY benchmarks/peers.py mlx-lm --gguf "$GEMMA" --dtype float32 "${T[@]}" --out "$OUT/mlxlm-openblas-$n.json"
run 11 $B bench --random e2b-mini "${TM[@]}" --json-out "$OUT/mlxcel-e2b-mini.json" -o md
run 12 $B bench --random e2b-mini --bits 4 "${TM[@]}" --json-out "$OUT/mlxcel-e2b-mini-q4.json" -o md
run 13 openblas $PY benchmarks/peers.py mlx-lm --random e2b-mini --dtype float32 "${TM[@]}" --out "$OUT/mlxlm-openblas-e2b-mini.json"
run 14 $B bench --random e2b-mini --bits 8 "${TM[@]}" --json-out "$OUT/mlxcel-e2b-mini-q8.json" -o md
run 15 openblas $PY benchmarks/peers.py mlx-lm --gguf "$SMOL" --dtype float32 --bits 8 "${T[@]}" --out "$OUT/mlxlm-openblas-$(basename "$SMOL" .gguf)-q8.json"
