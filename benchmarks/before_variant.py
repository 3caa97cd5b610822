#!/usr/bin/env python3
"""One variant of an mlxcel-bench/1 result file, as a file of its own: the runs and decode
breakdowns whose settings match, nothing else changed (a page can then show an earlier run's
"before" plan beside a newer run's defaults without that run's other variants).

    python3 benchmarks/before_variant.py IN.json OUT.json cuda_kernels=off compiled_decode=off
"""
import json
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__.strip().splitlines()[-1].strip())
    src, dst, *pairs = sys.argv[1:]
    want = dict(pair.split("=", 1) for pair in pairs)
    data = json.load(open(src))
    if data.get("schema") != "mlxcel-bench/1":
        sys.exit(f"{src}: not an mlxcel-bench/1 file")
    matches = lambda item: all(item["variant"].get(k) == v for k, v in want.items())
    data["runs"] = [r for r in data["runs"] if matches(r)]
    data["decode_breakdowns"] = [b for b in data.get("decode_breakdowns") or [] if matches(b)]
    if not data["runs"]:
        sys.exit(f"{src}: no run with {want}")
    json.dump(data, open(dst, "w"), indent=1)


if __name__ == "__main__":
    main()
