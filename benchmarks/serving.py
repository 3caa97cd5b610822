#!/usr/bin/env python3
"""Serving throughput and latency: `mlxcel serve` against llama.cpp's server (xllamacpp) on the
same GGUF, prompts and settings, over loopback HTTP with the same streaming client.

    python3 benchmarks/serving.py --gguf FILE --mlxcel target/release/mlxcel \\
        --concurrency 1,4,16 --requests 2 --max-tokens 64 --out results.json
    python3 benchmarks/serving_page.py results.json... > docs/benchmarks/serving-cpu.md

Per concurrency level C: C clients each send `--requests` streaming /v1/completions requests
one after another (prompts differ per request; ~`--prompt-tokens` words each), the EOS tokens
biased away so every answer is exactly `--max-tokens` long. Aggregate tokens/s = generated
tokens / wall time of the level; TTFT = request sent to first streamed text. Each server gets
--parallel C (llama.cpp: n_parallel C, one KV slot per client).

Prefix cache: a `--history-tokens` conversation, then a second turn that re-sends it; the second
turn's TTFT with the prefix cache on and off (mlxcel --cache-ram; llama.cpp cache_prompt).
Only loopback addresses are used; every loop is bounded.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

WORDS = ("the quick brown fox jumps over a lazy dog while seven wise owls watch from an old oak tree "
         "near the river bank where children play and merchants sell bread cheese apples and honey").split()


def prompt_text(index, words):
    """A distinct prompt of about `words` words (index changes its start, so no two share a prefix)."""
    body = " ".join(WORDS[(index * 7 + i) % len(WORDS)] for i in range(words))
    return f"Request {index}: {body}"


def post_stream(base, path, body, timeout=600):
    """Streams a POST; returns (time to first text, text pieces, total seconds)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    first = None
    pieces = []
    with urllib.request.urlopen(request, timeout=timeout) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"])
            text = "".join(c.get("text") or "" for c in chunk.get("choices", []))
            if text and first is None:
                first = time.perf_counter() - started
            pieces.append(text)
    return first, pieces, time.perf_counter() - started


def wait_healthy(base, process=None, limit=600):
    deadline = time.time() + limit
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{base} never became healthy")


def gguf_facts(gguf):
    from gguf import GGUFReader
    reader = GGUFReader(str(gguf))

    def field(name):
        f = reader.fields.get(name)
        return int(f.parts[f.data[0]][0]) if f is not None else None
    eos = {field("tokenizer.ggml.eos_token_id"), field("tokenizer.ggml.eot_token_id")} - {None}
    return sorted(eos)


class MlxcelServer:
    name = "mlxcel"

    def __init__(self, binary, gguf, parallel, ctx, cache_ram):
        self.process = subprocess.Popen(
            [binary, "serve", "-m", str(gguf), "--port", "0", "--parallel", str(parallel), "--ctx-size", str(ctx),
             "--cache-ram", str(cache_ram), "--max-queue", "256"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        self.base = "http://" + line.strip().rsplit("http://", 1)[1]
        wait_healthy(self.base, self.process)
        with urllib.request.urlopen(self.base + "/v1/models") as response:
            self.model = json.load(response)["data"][0]["id"]

    def extra(self, cache):
        return {}

    def close(self):
        self.process.terminate()
        self.process.wait(timeout=60)


class LlamaCppServer:
    name = "llama.cpp"

    def __init__(self, gguf, parallel, ctx, port):
        import xllamacpp as xlc
        params = xlc.CommonParams()
        params.model.path = str(gguf)
        params.n_parallel = parallel
        # llama.cpp splits n_ctx among the slots; each slot gets the same context as mlxcel's.
        params.n_ctx = ctx * parallel
        params.n_batch = 2048
        params.n_ubatch = 512
        params.cpuparams.n_threads = os.cpu_count()
        params.cpuparams_batch.n_threads = os.cpu_count()
        params.hostnames = ["127.0.0.1"]
        params.port = port
        params.warmup = True
        self.server = xlc.Server(params)
        self.base = f"http://127.0.0.1:{port}"
        wait_healthy(self.base)
        self.model = "model"
        self.version = f"xllamacpp {xlc.__version__}"

    def extra(self, cache):
        return {"cache_prompt": cache}

    def close(self):
        del self.server


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * p / 100
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def run_level(server, concurrency, args, eos, offset):
    ttfts, errors = [], []
    tokens = [0]
    lock = threading.Lock()

    def client(c):
        for r in range(args.requests):
            index = offset + c * args.requests + r
            body = {"model": server.model, "prompt": prompt_text(index, args.prompt_tokens),
                    "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
                    "logit_bias": {str(t): -100 for t in eos}, **server.extra(cache=False)}
            try:
                first, pieces, _ = post_stream(server.base, "/v1/completions", body)
            except Exception as error:  # noqa: BLE001 - a failed request is reported, not hidden
                with lock:
                    errors.append(str(error))
                continue
            with lock:
                ttfts.append(first)
                tokens[0] += args.max_tokens

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise SystemExit(f"{server.name} c={concurrency}: {len(errors)} requests failed: {errors[0]}")
    return {"engine": server.name, "concurrency": concurrency, "requests": concurrency * args.requests,
            "generated_tokens": tokens[0], "wall_s": wall, "tokens_per_second": tokens[0] / wall,
            "ttft_p50_ms": percentile(ttfts, 50) * 1e3, "ttft_p99_ms": percentile(ttfts, 99) * 1e3}


def second_turn(server, args, eos, cache):
    history = prompt_text(999, args.history_tokens)
    body = {"model": server.model, "prompt": history, "max_tokens": 16, "temperature": 0, "stream": True,
            "logit_bias": {str(t): -100 for t in eos}, **server.extra(cache=cache)}
    _, pieces, _ = post_stream(server.base, "/v1/completions", body)
    body["prompt"] = history + "".join(pieces) + "\nAnd then?"
    first, _, _ = post_stream(server.base, "/v1/completions", body)
    return {"engine": server.name, "prefix_cache": cache, "history_words": args.history_tokens,
            "second_turn_ttft_ms": first * 1e3}


def git_commit():
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--mlxcel", default="target/release/mlxcel")
    parser.add_argument("--engines", default="mlxcel,llama.cpp")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--requests", type=int, default=2, help="per client and level")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="words per prompt (about as many tokens)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--history-tokens", type=int, default=2000, help="words of the second-turn history (0: no second-turn test)")
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--port", type=int, default=18081, help="llama.cpp's loopback port")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    gguf = Path(args.gguf).resolve()
    eos = gguf_facts(gguf)
    levels = [int(c) for c in args.concurrency.split(",")]
    results, prefix, versions = [], [], {}
    for engine in args.engines.split(","):
        for concurrency in levels:
            server = (MlxcelServer(args.mlxcel, gguf, concurrency, args.ctx, 0) if engine == "mlxcel"
                      else LlamaCppServer(gguf, concurrency, args.ctx, args.port))
            versions[engine] = getattr(server, "version", None)
            try:
                run_level(server, 1, argparse.Namespace(**{**vars(args), "requests": 1}), eos, 10_000)  # warm-up
                result = run_level(server, concurrency, args, eos, concurrency * 1000)
                results.append({**result, "model": gguf.stem})
                print(f"{engine} c={concurrency}: {result['tokens_per_second']:.1f} tok/s, "
                      f"TTFT p50 {result['ttft_p50_ms']:.0f} ms", file=sys.stderr)
            finally:
                server.close()
        # --history-tokens 0 skips the second-turn test (a second workload of the same page).
        for cache in (True, False) if args.history_tokens > 0 else ():
            server = (MlxcelServer(args.mlxcel, gguf, 1, args.ctx, 2048 if cache else 0) if engine == "mlxcel"
                      else LlamaCppServer(gguf, 1, args.ctx, args.port))
            try:
                prefix.append({**second_turn(server, args, eos, cache), "model": gguf.stem})
            finally:
                server.close()
    record = {
        "schema": "mlxcel-serving/1",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "os": platform.platform(), "load_average": os.getloadavg()[0]},
        "mlx_version": "0.32.4",
        "commit": git_commit(),
        "command": " ".join(sys.argv),
        "engines": versions,
        "settings": {k: getattr(args, k) for k in ("requests", "prompt_tokens", "max_tokens", "history_tokens", "ctx")},
        "results": results,
        "prefix_cache": prefix,
    }
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
