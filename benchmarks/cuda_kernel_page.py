"""Renders the CUDA kernel page from `cuda_kernels --json` output (mlx-bridge/examples/cuda_kernels.rs):
mlxcel's decode kernels against MLX's ops on the same inputs, as bytes streamed per second.

    python3 benchmarks/cuda_kernel_page.py KERNELS.json GPU.txt COMMIT COMMAND > docs/benchmarks/h200-kernels.md
"""
import json
import sys


def variant_name(r):
    rows = f"{r['rows']} row" + ("s" if r["rows"] > 1 else "")
    if r["kernel"] == "affine_gemv_prefetch":
        return f"prefetch, {rows}" + (f", L2 {r['l2']} on" if r.get("l2") else "")
    if r["rows"] == 16:
        # 828d345's encoding: "16 rows" ran its tensor-core kernel (4-bit; 8-bit ran 4 rows).
        return "tensor cores (8-bit: 4 rows)"
    return rows + (", folded" if r.get("folded") else "")


def variants_table(rows, copy):
    """The A/B of the one-row product's variants timed in the same run (TB/s of weight bytes), with
    the default kernel and MLX's for reference; the best of each shape in bold with its % of copy."""
    variants = [r for r in rows if r["kernel"] in ("affine_gemv_rows", "affine_gemv_prefetch")]
    if not variants:
        return []
    names = list(dict.fromkeys(variant_name(r) for r in variants))
    out = [
        "",
        "### Variants of the one-row product (TB/s of weight bytes, the same run)",
        "",
        "*default* is the kernel the run's build dispatched to; the variants are what "
        "`cuda_kernels` switched to for the A/B (`mlx-bridge/src/cpp/cuda_gemv.cc`).",
        "",
        "| N x K | bits | MLX | default | " + " | ".join(names) + " | best % of copy |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in names) + " | --- |",
    ]
    for base in (r for r in rows if r["kernel"] == "affine_gemv"):
        shape = (base["N"], base["K"], base["bits"], base["group"])
        rates = {variant_name(r): r["tb_per_s"] for r in variants if (r["N"], r["K"], r["bits"], r["group"]) == shape}
        if not rates:
            continue
        cells = {"default": base["ours_tb_per_s"], **rates}
        best = max(cells.values())
        fmt = lambda v: f"**{v:.2f}**" if v == best else f"{v:.2f}"
        out.append(
            f"| {base['N']} x {base['K']} | {base['bits']} | {base['mlx_tb_per_s']:.2f} | {fmt(cells['default'])} | "
            + " | ".join(fmt(rates[n]) if n in rates else "" for n in names)
            + f" | {100 * best / copy:.0f}% |"
        )
    return out


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
        f"Each time is the median of 15 evaluations (after 3 warm-ups), each of 20 independent calls; the copy "
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
    out += variants_table(rows, copy)
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
