#!/usr/bin/env python3
"""Renders mlx-bridge's block_gemv_bench JSON as docs/benchmarks/cpu-kernels.md: the CPU block
kernels' GEMV throughput per format (weight bytes as the format stores them, per second) against
this machine's measured memory bandwidth, and their M=512 GEMM against fp32 OpenBLAS sgemm.

    cargo run --release -p mlx-bridge --example block_gemv_bench -- --json OUT.json
    python3 benchmarks/kernel_page.py OUT.json "COMMAND" > docs/benchmarks/cpu-kernels.md
"""
import json
import sys


def render(data, command):
    machine = data["machine"]
    bandwidth = data["copy_bandwidth_gb_per_s"]
    lines = [
        "# CPU block kernels: GEMV against memory bandwidth",
        "",
        f"Machine: {machine['cpu_model']}, {machine['logical_cpus']} logical CPUs (load average "
        f"{machine['load_average']} when measured). MLX {data['mlx_version']}, BLAS {data['blas']}, "
        f"commit {data.get('commit', '—')}. Kernel paths measured: {', '.join(data['isas'])}.",
        "",
        f"Command: `{command}`; the page: `python3 benchmarks/kernel_page.py OUT.json COMMAND`.",
        "",
        "Memory bandwidth, STREAM-style over 1 GiB (best of several): "
        + "; ".join(
            f"{threads} thread{'s' if threads != '1' else ''}: copy {v['copy']:.1f} GB/s (read + written bytes), "
            f"streaming read {v['read']:.1f} GB/s"
            for threads, v in sorted(bandwidth.items())
        )
        + ".",
        "",
        "GEMV (one activation row, as in decode): the weight bytes as the format stores them, read per second, "
        "median of the timed steps, and that rate as a percentage of the copy bandwidth with the same thread "
        "count. Matrices small enough for the caches (the 576- and 640-row ones) read faster than memory allows.",
        "",
    ]
    gemv = data["gemv"]
    isas = sorted({r["isa"] for r in gemv}, key=data["isas"].index)
    shapes = []
    for r in gemv:
        shape = (r["rows"], r["cols"])
        if shape not in shapes:
            shapes.append(shape)
    formats = []
    for r in gemv:
        if r["format"] not in formats:
            formats.append(r["format"])
    for isa in isas:
        for threads in sorted({r["threads"] for r in gemv}):
            lines += [f"### {isa}, {threads} thread{'s' if threads != 1 else ''}", ""]
            header = "| format | " + " | ".join(f"{rows}x{cols}" for rows, cols in shapes) + " |"
            lines += [header, "| --- |" + " ---: |" * len(shapes)]
            for fmt in formats:
                cells = []
                for rows, cols in shapes:
                    hit = next(
                        (r for r in gemv if r["isa"] == isa and r["threads"] == threads and r["format"] == fmt
                         and r["rows"] == rows and r["cols"] == cols),
                        None,
                    )
                    # The median's rate: the rate the JSON gives is the best run's.
                    cells.append(
                        "—" if hit is None
                        else f"{hit['gb_per_s'] * hit['best_us'] / hit['median_us']:.1f} GB/s "
                        f"({hit['pct_of_copy_bandwidth'] * hit['best_us'] / hit['median_us']:.0f}%)"
                    )
                lines.append(f"| {fmt} | " + " | ".join(cells) + " |")
            lines.append("")
    gemm = data.get("gemm") or []
    if gemm:
        lines += [
            "## GEMM (512 activation rows, as in prefill)",
            "",
            "GFLOP/s of `x W^T` on the kernels against float32 `x W^T` through OpenBLAS sgemm on the same shape.",
            "",
            "| format | shape | kernel path | threads | GFLOP/s | sgemm GFLOP/s | ratio |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in gemm:
            lines.append(
                f"| {r['format']} | {r['rows']}x{r['cols']} | {r['isa']} | {r['threads']} | {r['gflops']:.0f} | "
                f"{r['sgemm_gflops']:.0f} | {r['gflops'] / r['sgemm_gflops']:.2f}x |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        print(render(json.load(f), sys.argv[2]))
