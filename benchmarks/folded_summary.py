#!/usr/bin/env python3
"""Summarises folded stacks (examples/decode_profile's output): the share of samples per thread,
the functions with the most samples inside them (inclusive) and on top of the stack (self), and
the share in the C allocator. Markdown on stdout.

    python3 benchmarks/folded_summary.py PROFILE.folded [TOP]
"""
import collections
import sys

ALLOCATOR = {"malloc", "free", "cfree", "calloc", "realloc", "operator new(unsigned long)", "operator delete(void*)"}


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    total = 0
    threads, inclusive, self_time = collections.Counter(), collections.Counter(), collections.Counter()
    allocator = 0
    for line in open(path):
        stack, count = line.rstrip("\n").rsplit(" ", 1)
        count = int(count)
        frames = stack.split(";")
        total += count
        threads[frames[0]] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
        self_time[frames[-1]] += count
        if frames[-1] in ALLOCATOR:
            allocator += count
    if total == 0:
        sys.exit(f"{path}: no samples")

    def share(n):
        return f"{100 * n / total:.1f}%"

    def short(name):
        return name if len(name) <= 110 else name[:107] + "..."

    print(f"{total} samples from `{path}`; {share(allocator)} on top of the stack in the C allocator "
          f"({', '.join(sorted(ALLOCATOR))}).\n")
    print("| thread | samples | share |\n| --- | ---: | ---: |")
    for name, n in threads.most_common():
        print(f"| {name} | {n} | {share(n)} |")
    for title, counter in (("inclusive", inclusive), ("self", self_time)):
        print(f"\n| function ({title}) | samples | share |\n| --- | ---: | ---: |")
        for name, n in counter.most_common(top):
            print(f"| `{short(name)}` | {n} | {share(n)} |")


if __name__ == "__main__":
    main()
