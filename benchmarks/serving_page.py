#!/usr/bin/env python3
"""Renders benchmarks/serving.py's JSON (one file per model) as docs/benchmarks/serving-cpu.md,
with `mlxcel bench -b` reports (schema mlxcel-bench/1) among the files as the batched decode
alone, without HTTP or prompts.

    python3 benchmarks/serving_page.py [--notes NOTES.md] benchmarks/results/serving-cpu/*.json \
        > docs/benchmarks/serving-cpu.md

NOTES.md, if given, is appended verbatim.
"""
import json
import sys


def fmt(value, digits=1):
    return "—" if value is None else f"{value:.{digits}f}"


def render_decode(reports):
    """The batched decode step alone: each batch size's aggregate rate against one sequence's."""
    lines = ["", "## Batched decode alone", "",
             "`mlxcel bench -b`: B sequences, each after `depth` tokens of its own random context, decoding "
             "together in one forward pass per step (the server's decode step, without HTTP, sampling "
             "filters or prompts); aggregate generated tokens/s.", ""]
    for report in reports:
        lines.append(f"Command: `{report['command']}` (mlxcel {report['engine'].get('version', '—')}).")
    lines += ["", "| model | test | depth | batch | aggregate tok/s | vs batch 1 |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for report in reports:
        runs = report["runs"]
        for r in runs:
            alone = next((x for x in runs if x["depth"] == r["depth"] and x["batch"] == 1 and x["n_gen"] == r["n_gen"]), None)
            ratio = r["tokens_per_second"]["mean"] / alone["tokens_per_second"]["mean"] if alone else None
            lines.append(f"| {r['model']} | {r['test']} | {r['depth']} | {r['batch']} | "
                         f"{fmt(r['tokens_per_second']['mean'])} | {fmt(ratio, 2)}x |")
    return lines


def render(records, reports):
    lines = ["# Serving on the CPU: mlxcel serve against llama.cpp's server", ""]
    first = records[0]
    lines += [
        f"Machine: {first['machine']['cpu']}, {first['machine']['cores']} cores, {first['machine']['os']} "
        f"(load average {first['machine']['load_average']:.2f} at the start). MLX {first['mlx_version']}, "
        f"mlxcel commit {first['commit']}, llama.cpp {first['engines'].get('llama.cpp') or '—'}.",
        "",
        *[f"Command (mlxcel commit {record['commit']}, {record['date']}): `{record['command']}`." for record in records],
        "",
        "The page: `python3 benchmarks/serving_page.py --notes NOTES.md FILES.json`.",
        "",
        "Each level: C concurrent clients, each sending streaming /v1/completions requests one after another "
        f"({first['settings']['requests']} per client; the workload column: ~N-word prompts / exactly M generated "
        "tokens, EOS biased away), the same GGUF, prompts and client for both servers; each server runs C slots. "
        "Aggregate tokens/s = generated tokens / wall time; TTFT from sending the request to its first streamed text.",
        "",
        "| model | workload | engine | concurrency | requests | aggregate tok/s | vs own c=1 | vs llama.cpp | TTFT p50 ms | TTFT p99 ms |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for record in records:
        results = record["results"]
        workload = f"{record['settings']['prompt_tokens']} / {record['settings']['max_tokens']}"
        for r in results:
            own = next((x for x in results if x["engine"] == r["engine"] and x["concurrency"] == 1), None)
            peer = next((x for x in results if x["engine"] == "llama.cpp" and x["concurrency"] == r["concurrency"]), None)
            vs_own = r["tokens_per_second"] / own["tokens_per_second"] if own else None
            vs_peer = r["tokens_per_second"] / peer["tokens_per_second"] if peer and r["engine"] != "llama.cpp" else None
            lines.append(
                f"| {r['model']} | {workload} | {r['engine']} | {r['concurrency']} | {r['requests']} | {fmt(r['tokens_per_second'])} "
                f"| {fmt(vs_own, 2)}x | {fmt(vs_peer, 2) + 'x' if vs_peer else '—'} | {fmt(r['ttft_p50_ms'], 0)} "
                f"| {fmt(r['ttft_p99_ms'], 0)} |")
    lines += ["", "## Second turn with and without the prefix cache", "",
              f"A ~{first['settings']['history_tokens']}-word history, answered, then re-sent with a new question; "
              "the second request's TTFT.", "",
              "| model | engine | prefix cache | second-turn TTFT ms |", "| --- | --- | --- | ---: |"]
    for record in records:
        for p in record.get("prefix_cache") or []:
            lines.append(f"| {p['model']} | {p['engine']} | {'on' if p['prefix_cache'] else 'off'} "
                         f"| {fmt(p['second_turn_ttft_ms'], 0)} |")
    if reports:
        lines += render_decode(reports)
    return "\n".join(lines) + "\n"


def main():
    args = sys.argv[1:]
    notes = None
    if args[:1] == ["--notes"] and len(args) > 1:
        notes, args = open(args[1]).read(), args[2:]
    files = [json.load(open(path)) for path in args]
    records = [f for f in files if f.get("schema") == "mlxcel-serving/1"]
    reports = [f for f in files if f.get("schema") == "mlxcel-bench/1"]
    if not records:
        raise SystemExit("usage: serving_page.py [--notes NOTES.md] RESULTS.json...")
    sys.stdout.write(render(records, reports))
    if notes:
        sys.stdout.write("\n" + notes)


if __name__ == "__main__":
    main()
