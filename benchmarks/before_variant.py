#!/usr/bin/env python3
"""One variant's decode breakdowns from an mlxcel-bench/1 result file, as a file of its own: the
breakdowns whose settings match, nothing else changed, and no runs (a page can then show an
earlier run's "before" breakdown beside a newer run's, without rates from another machine and day
beside the newer run's in its tables).

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
    data["runs"] = []
    data["decode_breakdowns"] = [b for b in data.get("decode_breakdowns") or [] if matches(b)]
    if not data["decode_breakdowns"]:
        sys.exit(f"{src}: no decode breakdown with {want}")
    json.dump(data, open(dst, "w"), indent=1)


if __name__ == "__main__":
    main()
