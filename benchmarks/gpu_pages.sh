#!/usr/bin/env bash
# The NVIDIA page's measurements, on the GPU machine from the repository root with .gpu/ carried
# (.gpu/bin/mlxcel built here with `cargo build --release --no-default-features`, plus the slim
# MLX CUDA runtime from shared/cuda). Two halves, each under the device tool's 10-minute limit:
#   bash benchmarks/gpu_pages.sh mlxcel      # Gemma 3n E2B, bf16/8-bit/4-bit, plan A/B, breakdown
#   bash benchmarks/gpu_pages.sh mlxcel-e4b  # Gemma 3n E4B, bf16/8-bit/4-bit (3 repetitions)
#   bash benchmarks/gpu_pages.sh mlx-lm      # mlx-lm 0.32.2 on E2B, same tests
#   bash benchmarks/gpu_pages.sh mlx-lm-e4b  # mlx-lm 0.32.2 on E4B, same tests
#   bash benchmarks/gpu_pages.sh interleaved # E2B bf16/4/8-bit, mlxcel and mlx-lm alternating
#   bash benchmarks/gpu_pages.sh h200 "" 4    # E2B at these precisions (bf16, 4-bit), alternating,
#                                            # mlxcel's defaults and its plan with the CUDA kernels
#                                            # and compiled decode steps off, a process each
#   bash benchmarks/gpu_pages.sh h200-e2b-page # E2B bf16 and 4-bit for the page and the checks, in
#                                            # one call under a deadline (see the mode)
#   bash benchmarks/gpu_pages.sh h200-e4b "" 4 # E4B, class defaults, engines alternating
#   bash benchmarks/gpu_pages.sh h200-decode-check # bf16 decode logits with every kernel on vs the
#                                            # split path (.gpu/bin/gemma3n_decode_check)
#   bash benchmarks/gpu_pages.sh h200-fixtures # Gemma 3n fixtures (float32) vs transformers, kernels off/on
#   bash benchmarks/gpu_pages.sh h200-exactness # routed-mix kernel checks, fixtures, e2b-mini decode check
#   bash benchmarks/gpu_pages.sh h200-host-cost [graph-settings] # host and device time per graph
#                                            # node by kind (.gpu/bin/cuda_probe); tg128 under MLX's
#                                            # CUDA graph settings
#   bash benchmarks/gpu_pages.sh h200-pinning # E2B 4-bit tg128 unpinned and pinned to CPUs, both engines
#   bash benchmarks/gpu_pages.sh h200-sanity # kernel checks, fixtures, E2B tg128 bf16 and 4-bit
#   bash benchmarks/gpu_pages.sh h200-kernels [gemv] # the kernels (or the one-row products) alone (.gpu/bin/cuda_kernels) against MLX's
# JSON lands in $OUT/results; benchmarks/report renders docs/benchmarks/<hardware>.md from it.
set -euo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT/results"
# The device tool returns at most 8 files per call: RESULTS_TAR=1 packs the JSON into one.
if [ "${RESULTS_TAR:-}" = 1 ]; then
  trap 'tar -cf "$OUT/results.tar" -C "$OUT" results && rm -r "$OUT/results"' EXIT
fi
bash .gpu/setup.sh /tmp/mlx-cuda >/dev/null 2>&1
source /tmp/mlx-cuda/env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
B=.gpu/bin/mlxcel
TESTS=(-p 512,2048 -n 128 -r 5)
# The Gemma 3n fixtures in float32 (TF32 off) against transformers' logits, every prompt position
# scored, with mlxcel's CUDA kernels off and on: chunk 1 runs each position as a decode step (the
# compiled steps and the one-row kernels), chunk 11 the whole prompt at once.
fixtures() {
  echo "== fixtures, float32, TF32 off, against transformers"
  IDS=$(python3 -c "import json; print(','.join(map(str, json.load(open('tests/fixtures/gemma3n-tiny/reference.json'))['prompt'])))")
  for variant in q4 q8 fp32; do
    for chunk in 11 1; do
      for kernels in off on; do
        MLX_ENABLE_TF32=0 timeout -k 5 90 $B score -m tests/fixtures/gemma3n-tiny/$variant --ids "$IDS" \
          --compute-dtype float32 --prefill-chunk $chunk --cuda-kernels $kernels --logits-out /tmp/l.npy >/dev/null 2>/tmp/err \
          || { echo "$variant chunk $chunk kernels=$kernels: failed $(tail -1 /tmp/err)"; continue; }
        python3 -c "
import json, numpy as np
ref = np.array(json.load(open('tests/fixtures/gemma3n-tiny/reference.json'))['logits']['$variant'], dtype=np.float32).reshape(-1)
got = np.load('/tmp/l.npy').reshape(-1)
print('$variant chunk $chunk cuda_kernels=$kernels: max abs diff %.2e' % np.abs(got - ref).max())"
      done
    done
  done
}
# E2B at one precision ("" for bf16, or 4/8) at the class defaults; callers filter the output.
e2b_mlxcel() {
  $B bench --random e2b ${1:+--bits $1} -p 512,2048 -n 128 -r 3 --breakdown 16 -o md \
    --json-out "$OUT/results/mlxcel-e2b-${1:-16}.json"
}
e2b_mlx_lm() {
  python3 benchmarks/peers.py mlx-lm --random e2b ${1:+--bits $1} --dtype bfloat16 -p 512,2048 -n 128 -r 3 \
    --out "$OUT/results/mlxlm-e2b-${1:-16}.json"
}
# mlxcel's plan before the CUDA work (its kernels and compiled decode steps off); the rest of the
# arguments are the tests.
e2b_before() {
  local bits=$1
  shift
  $B bench --random e2b ${bits:+--bits $bits} "$@" --cuda-kernels off --compiled-decode off --breakdown 16 -o md \
    --json-out "$OUT/results/mlxcel-e2b-${bits:-16}-before.json"
}
# The kernels against MLX's ops and the bf16 decode logits against the split path, TF32 off (the
# float32 references multiply several rows through cuBLAS, where TF32 would round them to ~1e-3);
# the first argument is each one's time limit in seconds.
kernel_checks() {
  MLX_ENABLE_TF32=0 timeout -k 5 "$1" .gpu/bin/cuda_kernels --only routed > "$OUT/kernels-routed.txt" 2>&1 \
    || echo "kernel checks failed"
  echo "kernel checks: $(grep -c ' ok$' "$OUT/kernels-routed.txt") ok, $(grep -c FAIL "$OUT/kernels-routed.txt") failed"
}
# Whether the call's time (DEADLINE seconds since the script started, default 540) leaves $1
# seconds for the step the other arguments name; it says so when it does not.
fits() { [ $((${DEADLINE:-540} - SECONDS)) -ge "$1" ] || { echo "skipped (time): ${*:2}"; return 1; }; }
decode_check() {
  MLX_ENABLE_TF32=0 timeout -k 5 "$1" .gpu/bin/gemma3n_decode_check --shape e2b-mini -n 32 > "$OUT/decode-check.txt" 2>&1 \
    || echo "decode check failed"
}
case "${1:-}" in
  mlxcel)
    # E2B bf16: the plan A/B (decode path x pre-transposition), with the breakdown per variant.
    $B bench --random e2b "${TESTS[@]}" --decode-path fused,split --pretranspose off,on --breakdown 32 \
      -o md --json-out "$OUT/results/mlxcel-e2b-bf16.json"
    $B bench --random e2b --bits 4 "${TESTS[@]}" --decode-path fused,split --breakdown 32 \
      -o md --json-out "$OUT/results/mlxcel-e2b-q4.json"
    $B bench --random e2b --bits 8 "${TESTS[@]}" --breakdown 32 -o md --json-out "$OUT/results/mlxcel-e2b-q8.json"
    # Compute dtype A/B (the bf16 default is in the first file).
    $B bench --random e2b -p 512 -n 128 -r 3 --compute-dtype float16 -o md \
      --json-out "$OUT/results/mlxcel-e2b-f16.json"
    ;;
  mlxcel-e4b)
    for bits in "" 8 4; do
      $B bench --random e4b ${bits:+--bits $bits} -p 512,2048 -n 128 -r 3 --breakdown 16 -o md \
        --json-out "$OUT/results/mlxcel-e4b-${bits:-16}.json"
    done ;;
  mlx-lm)
    for bits in "" 8 4; do
      python3 benchmarks/peers.py mlx-lm --random e2b ${bits:+--bits $bits} --dtype bfloat16 "${TESTS[@]}" \
        --out "$OUT/results/mlxlm-e2b-${bits:-16}.json"
    done ;;
  mlx-lm-e4b)
    for bits in "" 8 4; do
      python3 benchmarks/peers.py mlx-lm --random e4b ${bits:+--bits $bits} --dtype bfloat16 -p 512,2048 -n 128 -r 3 \
        --out "$OUT/results/mlxlm-e4b-${bits:-16}.json"
    done ;;
  interleaved)
    # Same session, engines alternating per precision, current defaults: the headline comparison.
    for bits in "" 4 8; do
      $B bench --random e2b ${bits:+--bits $bits} "${TESTS[@]}" --breakdown 16 -o md \
        --json-out "$OUT/results/mlxcel-e2b-${bits:-16}.json"
      python3 benchmarks/peers.py mlx-lm --random e2b ${bits:+--bits $bits} --dtype bfloat16 "${TESTS[@]}" \
        --out "$OUT/results/mlxlm-e2b-${bits:-16}.json"
    done ;;
  h200)
    # Each plan in a process of its own (the class defaults, then the plan before the CUDA
    # kernels and compiled steps), mlx-lm between them: engines alternate within a precision.
    shift
    for bits in "$@"; do
      e2b_mlxcel "$bits"
      e2b_mlx_lm "$bits"
      e2b_before "$bits" -p 512,2048 -n 128 -r 3
    done ;;
  h200-e2b-page)
    # The page's E2B half and its checks in one device call, most needed first, each step skipped
    # once too little of the call's time is left (DEADLINE seconds, default 540): per precision
    # the defaults and mlx-lm, the bf16 decode check, per precision the plan before the CUDA work,
    # then the kernel checks and fixtures (which h200-sanity also runs), each a process.
    for bits in "" 4; do
      fits 60 mlxcel ${bits:-16} && e2b_mlxcel "$bits" 2>&1 | grep -E "t/s$|breakdown" || true
      fits 60 mlx-lm ${bits:-16} && e2b_mlx_lm "$bits" || true
    done
    if fits 80 decode check; then
      decode_check 150
      tail -3 "$OUT/decode-check.txt"
    fi
    for bits in "" 4; do
      fits 45 before ${bits:-16} && e2b_before "$bits" -p 0 -n 128 -r 3 2>&1 | grep -E "t/s$|breakdown" || true
    done
    if fits 30 kernel checks; then kernel_checks 120; fi
    if fits 100 fixtures; then fixtures > "$OUT/fixtures.txt" 2>&1 || true; cat "$OUT/fixtures.txt"; fi ;;
  h200-e4b)
    # E4B at the given precisions, the class defaults only, engines alternating.
    shift
    for bits in "$@"; do
      $B bench --random e4b ${bits:+--bits $bits} -p 512,2048 -n 128 -r 3 --breakdown 16 -o md \
        --json-out "$OUT/results/mlxcel-e4b-${bits:-16}.json"
      python3 benchmarks/peers.py mlx-lm --random e4b ${bits:+--bits $bits} --dtype bfloat16 -p 512,2048 -n 128 -r 3 \
        --out "$OUT/results/mlxlm-e4b-${bits:-16}.json"
    done ;;
  h200-decode-check)
    # bf16 teacher-forced decode logits, fastest path (every kernel on) against the split path.
    for shape in e2b-mini e2b; do
      MLX_ENABLE_TF32=0 .gpu/bin/gemma3n_decode_check --shape $shape -n 32 2>&1 | tee -a "$OUT/decode-check.txt" || echo "$shape: check failed"
    done ;;
  h200-fixtures)
    fixtures ;;
  h200-exactness)
    # Every check of the kernels' results before a page run: the kernels against MLX's ops, the
    # fixtures against transformers, bf16 decode logits against the split path.
    kernel_checks 150
    cat "$OUT/kernels-routed.txt"
    fixtures 2>&1 | tee "$OUT/fixtures.txt"
    decode_check 200
    cat "$OUT/decode-check.txt" ;;
  h200-host-cost)
    # What one graph node costs MLX's host side and the device, by kind (graphs on, then off), and
    # tg128 under MLX's CUDA graph settings (default 100 ops per graph, 400, graphs off).
    timeout -k 5 120 .gpu/bin/cuda_probe nodes --json "$OUT/results/node-costs.json" | tee "$OUT/node-costs.txt"
    MLX_USE_CUDA_GRAPHS=0 timeout -k 5 120 .gpu/bin/cuda_probe nodes | tee "$OUT/node-costs-no-graphs.txt"
    if [ "${2:-}" = "graph-settings" ]; then
      for bits in "" 4; do
        for setting in "" "MLX_MAX_OPS_PER_BUFFER=400" "MLX_USE_CUDA_GRAPHS=0"; do
          name=$(echo "${setting:-default}" | tr -c 'A-Za-z0-9\n' '-')
          env $setting timeout -k 5 120 $B bench --random e2b ${bits:+--bits $bits} -p 0 -n 128 -r 3 --breakdown 16 \
            -o md --json-out "$OUT/results/tg-${bits:-16}-$name.json" | grep -E "tg128|breakdown"
        done
      done
    fi ;;
  h200-pinning)
    # Is the spread of decode rates between processes the CPU the host thread runs on? E2B 4-bit
    # tg128, each run a process: unpinned, then pinned (taskset) to the GPU's NUMA-local CPUs, then
    # to one hardware thread per core among them, alternating; mlx-lm unpinned and pinned; then a
    # sampling profile of mlxcel's 4-bit decode (.gpu/bin/decode_profile, unstripped).
    lscpu | grep -E "^(Model name|Thread|Core|Socket|NUMA)" | tee "$OUT/cpu.txt"
    bus=$(nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader | head -1 | tr 'A-Z' 'a-z' | sed 's/^0000//')
    local_cpus=$(cat /sys/bus/pci/devices/0000${bus#0000}/local_cpulist 2>/dev/null || echo "0-$(($(nproc) - 1))")
    per_core=$(lscpu -p=CPU,CORE | python3 -c "
import sys
allowed = set()
for part in '$local_cpus'.split(','):
    lo, _, hi = part.partition('-')
    allowed.update(range(int(lo), int(hi or lo) + 1))
first = {}
for line in sys.stdin:
    if not line.startswith('#'):
        cpu, core = map(int, line.split(',')[:2])
        if cpu in allowed:
            first.setdefault(core, cpu)
print(','.join(map(str, sorted(first.values()))))")
    echo "GPU $bus, local CPUs $local_cpus, one thread per core: $per_core" | tee -a "$OUT/cpu.txt"
    # For a CPU list (or "none"): `run`, the command prefix that pins to it, and `name`, a file-name form.
    pinned() {
      name=$(echo "$1" | tr -c 'A-Za-z0-9\n' '_')
      run=()
      [ "$1" = none ] || run=(taskset -c "$1")
    }
    for round in 1 2; do
      for pin in none "$local_cpus" "$per_core"; do
        pinned "$pin"
        fits 40 mlxcel pin $pin && "${run[@]}" $B bench --random e2b --bits 4 -p 0 -n 128 -r 3 --breakdown 8 -o md \
          --json-out "$OUT/results/tg4-pin-$name-$round.json" 2>&1 | grep -E "tg128|breakdown" | sed "s/^/[$round pin=$pin] /" || true
      done
      for pin in none "$local_cpus"; do
        pinned "$pin"
        fits 50 mlx-lm pin $pin && "${run[@]}" python3 benchmarks/peers.py mlx-lm --random e2b --bits 4 --dtype bfloat16 \
          -p 0 -n 128 -r 3 --out "$OUT/results/mlxlm-tg4-pin-$name-$round.json" 2>&1 | tail -1 | sed "s/^/[$round mlx-lm pin=$pin] /" || true
      done
    done
    if fits 40 profile; then
      timeout -k 5 60 .gpu/bin/decode_profile e2b 4 "$OUT/prof-4.folded" 2>&1 | tail -1
    fi ;;
  h200-sanity)
    # Before a page run on new kernels: the kernel checks, the fixtures, and one E2B tg128 per
    # precision at the class defaults with the breakdown (nodes per token), a process each.
    kernel_checks 120
    grep -E "FAIL|failed" "$OUT/kernels-routed.txt" || true
    fixtures > "$OUT/fixtures.txt" 2>&1 || true
    cat "$OUT/fixtures.txt"
    for bits in "" 4; do
      timeout -k 5 120 $B bench --random e2b ${bits:+--bits $bits} -p 0 -n 128 -r 3 --breakdown 8 -o md \
        --json-out "$OUT/results/tg-${bits:-16}.json" 2>&1 | grep -E "tg128|breakdown" || echo "tg ${bits:-16} failed"
    done ;;
  h200-kernels)
    # Every kernel, or (h200-kernels gemv) the one-row products and their variants alone.
    MLX_ENABLE_TF32=0 .gpu/bin/cuda_kernels ${2:+--only "$2"} --json "$OUT/kernels.json" 2>&1 | tee "$OUT/kernels.txt" \
      | grep -vE ' ok$' ;;
  *) echo "usage: $0 mlxcel|mlxcel-e4b|mlx-lm|mlx-lm-e4b|interleaved|h200 BITS...|h200-e2b-page|h200-e4b BITS...|h200-decode-check|h200-fixtures|h200-exactness|h200-host-cost [graph-settings]|h200-pinning|h200-sanity|h200-kernels [gemv]" >&2; exit 2 ;;
esac
