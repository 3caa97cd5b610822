"""Renders the CUDA kernel page from `cuda_kernels --json` output (mlx-bridge/examples/cuda_kernels.rs):
mlxcel's decode kernels against MLX's ops on the same inputs, as bytes streamed per second.

    python3 benchmarks/cuda_kernel_page.py KERNELS.json GPU.txt COMMIT COMMAND > docs/benchmarks/h200-kernels.md
"""
import json
import sys


def main():
    rows = json.load(open(sys.argv[1]))
    gpu = open(sys.argv[2]).read().strip()
    commit, command = sys.argv[3], sys.argv[4]
    copy = next(r["tb_per_s"] for r in rows if r["kernel"] == "copy")
    out = [
        f"# {gpu.split(',')[0]}: mlxcel's CUDA decode kernels against MLX's",
        "",
        f"Device: {gpu}. MLX 0.32.4 (CUDA 13 runtime from shared/cuda), mlxcel commit {commit}. "
        f"Command: `{command}`.",
        f"Each time is the median of 50 evaluations, each of 20 independent calls; the copy "
        f"bandwidth measured in the same run is {copy:.2f} TB/s (read + write). The example first "
        "checks every kernel against MLX's result on the same inputs and exits non-zero on a mismatch.",
        "",
        "## One-row affine matmul (decode's `x W^T` on quantized weights, group 64)",
        "",
        "| N x K | bits | mlxcel µs | MLX µs | mlxcel TB/s | MLX TB/s | mlxcel / MLX speed | mlxcel % of copy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["kernel"] == "affine_gemv":
            out.append(
                f"| {r['N']} x {r['K']} | {r['bits']} | {r['ours_us']:.1f} | {r['mlx_us']:.1f} | "
                f"{r['ours_tb_per_s']:.2f} | {r['mlx_tb_per_s']:.2f} | {r['mlx_us'] / r['ours_us']:.2f}x | "
                f"{100 * r['ours_tb_per_s'] / copy:.0f}% |"
            )
    out += [
        "",
        "## Single-position attention (decode, bf16 KV cache of S positions)",
        "",
        "| head size | query heads | KV heads | S | mlxcel µs | MLX µs | mlxcel / MLX speed | KV TB/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["kernel"] == "attention":
            out.append(
                f"| {r['D']} | {r['Hq']} | {r['Hkv']} | {r['S']} | {r['ours_us']:.1f} | {r['mlx_us']:.1f} | "
                f"{r['mlx_us'] / r['ours_us']:.2f}x | {r['kv_tb_per_s']:.2f} |"
            )
    print("\n".join(out))


main()
