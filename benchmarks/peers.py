#!/usr/bin/env python3
"""mlx-lm and llama.cpp on the same models and tests as `mlxcel bench`, in its JSON format.

    python3 benchmarks/peers.py mlx-lm   --gguf FILE [--bits 4|8] [--dtype float32] -p 512 -n 128 -r 5 --out f.json
    python3 benchmarks/peers.py mlx-lm   --random e2b [--bits 4] --dtype bfloat16 -p 512,2048 -n 128 --out f.json
    python3 benchmarks/peers.py llama.cpp --gguf FILE -p 512 -n 128 -r 5 --out f.json

Conventions are llama-bench's, as in `mlxcel bench`: ppN = N random prompt tokens from an empty
cache, t/s = N / time to the first token; tgN = N tokens generated greedily after that, t/s =
N / time after the first token; one unrecorded warm-up, then mean ± std over the repetitions.

mlx-lm runs its own model code and generation loop (`mlx_lm.generate.generate_step`):
  --random SHAPE  Gemma 3n text at a real shape with random weights (mlx-lm's gemma3n model)
  --gguf FILE     the GGUF's weights, dequantized to float32 by transformers and saved as an HF
                  folder (cached beside the file), loaded by `mlx_lm.load`; --bits quantizes them
                  as mlx-lm's converter does (affine, group 64)
llama.cpp runs through the `xllamacpp` package (prebuilt llama.cpp with its server API) on the
GGUF itself; the completion's `timings` give prompt and generation tokens/s.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def spread(samples):
    mean = statistics.fmean(samples)
    return {"mean": mean, "std": statistics.stdev(samples) if len(samples) > 1 else 0.0}


def tests_of(args):
    tests = []
    for depth in args.depth:
        tests += [("pp", n, depth) for n in args.n_prompt if n > 0]
        tests += [("tg", n, depth) for n in args.n_gen if n > 0]
    return tests


def test_name(kind, n, depth):
    return f"{kind}{n}" + (f"@d{depth}" if depth else "")


def machine_info(backend, device):
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = None
    return {"hardware_class": hardware_class(backend),
            "device": device, "backend": backend, "os": platform.system().lower(), "memory_bytes": memory}


def hardware_class(backend):
    """mlxcel's class names: cpu-x86_64, cuda-sm90 (compute capability from nvidia-smi)."""
    if backend == "cpu":
        return f"cpu-{platform.machine()}"
    if backend == "cuda":
        import subprocess
        try:
            cap = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, check=True).stdout.split()[0]
            return "cuda-sm" + cap.replace(".", "")
        except (OSError, subprocess.CalledProcessError, IndexError):
            return "cuda"
    return backend


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def reset_peak_rss():
    """Restarts the process's VmHWM count (Linux), so a later peak_rss() covers only what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss():
    """The process's peak resident memory in bytes (Linux VmHWM), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run_record(args, model, source, params, size, dtype, bits, variant, kind, n, depth, rates, ttfts, peak):
    return {
        "model": model, "source": source, "params": params, "size_bytes": size, "dtype": dtype, "bits": bits,
        "variant": variant, "test": test_name(kind, n, depth), "n_prompt": n if kind == "pp" else 0,
        "n_gen": n if kind == "tg" else 0, "depth": depth, "repetitions": len(rates),
        "tokens_per_second": {**spread(rates), "samples": rates},
        "ttft_ms": spread(ttfts) if ttfts else None, "peak_memory_bytes": peak, "peak_rss_bytes": peak_rss(),
    }


# ---------------------------------------------------------------- mlx-lm


def gemma3n_text_config(shape):
    layers, shared, inter, vocab, per_layer_vocab, sparse = {
        "e2b": (30, 10, 8192, 262_400, 262_144, 10),
        "e4b": (35, 15, 16_384, 262_400, 262_144, 10),
        "e2b-mini": (10, 2, 8192, 32_768, 32_768, 4),
    }[shape]
    return dict(model_type="gemma3n_text", hidden_size=2048, num_hidden_layers=layers, intermediate_size=inter,
                num_attention_heads=8, head_dim=256, rms_norm_eps=1e-6, vocab_size=vocab, num_key_value_heads=2,
                num_kv_shared_layers=shared, vocab_size_per_layer_input=per_layer_vocab, sliding_window=512,
                max_position_embeddings=32768, rope_local_base_freq=10000.0, rope_theta=1000000.0,
                final_logit_softcapping=30.0,
                layer_types=["full_attention" if (i + 1) % 5 == 0 else "sliding_attention" for i in range(layers)],
                activation_sparsity_pattern=[0.95] * sparse + [0.0] * (layers - sparse),
                hidden_size_per_layer_input=256, altup_num_inputs=4, altup_coef_clip=120.0,
                altup_correct_scale=True, altup_active_idx=0, laurel_rank=64)


def hf_folder_from_gguf(gguf):
    """transformers' float32 dequantization of the GGUF, saved once as an HF folder."""
    gguf = Path(gguf).resolve()
    folder = gguf.parent / (gguf.stem + ".hf-f32")
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from safetensors.torch import save_file
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    folder.mkdir(parents=True, exist_ok=True)
    # transformers will not save_pretrained a GGUF-loaded model; its float32 state and config will do.
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(folder)
    return folder


def mlx_lm_bench(args):
    import mlx.core as mx
    import mlx.nn as nn
    import mlx_lm
    from mlx.utils import tree_flatten
    from mlx_lm.generate import generate_step

    dtype = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}[args.dtype]
    if args.random:
        from mlx_lm.models.gemma3n import Model, ModelArgs
        mx.random.seed(args.seed)
        model = Model(ModelArgs(model_type="gemma3n", text_config=gemma3n_text_config(args.random)))
        name, source = f"gemma-3n-{args.random}", f"random {args.random}"
        vocab = gemma3n_text_config(args.random)["vocab_size_per_layer_input"]
    else:
        folder = hf_folder_from_gguf(args.gguf)
        model, _ = mlx_lm.load(str(folder))
        name, source = Path(args.gguf).stem, f"gguf {Path(args.gguf).name} via transformers float32"
        vocab = model.args.vocab_size if hasattr(model, "args") else 32000
    model.set_dtype(dtype)
    if args.bits:
        nn.quantize(model, group_size=64, bits=args.bits,
                    class_predicate=lambda p, m: hasattr(m, "to_quantized") and m.weight.shape[-1] % 64 == 0)
    mx.eval(model.parameters())
    params = sum(v.size * (32 // args.bits if v.dtype == mx.uint32 and args.bits else 1)
                 for k, v in tree_flatten(model.parameters()) if not k.endswith(("scales", "biases")))
    size = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    sampler = lambda logprobs: mx.argmax(logprobs, axis=-1)
    # On the CPU the BLAS decides prefill speed: the wheel's bundled reference BLAS (mlx-lm as pip
    # installs it, the default) or OpenBLAS preloaded (MLXCEL_BENCH_BLAS=openblas names it).
    blas = os.environ.get("MLXCEL_BENCH_BLAS", "bundled")
    variant = {"blas": blas, "default": blas == "bundled"} if mx.default_device() == mx.cpu else {}
    runs = []
    for kind, n, depth in tests_of(args):
        rates, ttfts = [], []
        mx.reset_peak_memory()
        for rep in range(args.warmup + args.repetitions):
            key = mx.random.key(args.seed + rep)
            if kind == "pp":
                prompt = mx.random.randint(0, vocab, (depth + n,), key=key)
                max_tokens = 1
            else:
                prompt = mx.random.randint(0, vocab, (depth + 1,), key=key)
                max_tokens = n + 1
            mx.eval(prompt)
            tic = time.perf_counter()
            count = 0
            for _token, _ in generate_step(prompt, model, max_tokens=max_tokens, sampler=sampler):
                if count == 0:
                    first = time.perf_counter()
                count += 1
            done = time.perf_counter()
            if rep < args.warmup:
                continue
            if kind == "pp":
                # Depth tokens are part of the prompt here: mlx-lm has no separate context fill.
                rates.append((depth + n) / (first - tic))
                ttfts.append((first - tic) * 1e3)
            else:
                rates.append((count - 1) / (done - first))
        runs.append(run_record(args, name, source, params, size, args.dtype, args.bits or None, variant,
                               kind, n, depth, rates, ttfts, mx.get_peak_memory()))
        print(f"mlx-lm {name} {test_name(kind, n, depth)}: {spread(rates)['mean']:.2f} t/s", file=sys.stderr)
    backend = "cuda" if mx.default_device() == mx.gpu and not sys.platform == "darwin" else (
        "metal" if mx.default_device() == mx.gpu else "cpu")
    device = cpu_name() if backend == "cpu" else mx.device_info().get("device_name", "gpu")
    import mlx_lm as lm
    engine = {"name": "mlx-lm", "version": lm.__version__, "mlx_version": mx.__version__, "details": {}}
    return machine_info(backend, device), engine, runs


# ---------------------------------------------------------------- llama.cpp


def llama_cpp_bench(args):
    import random

    import xllamacpp as xlc

    gguf = Path(args.gguf).resolve()
    # The peak RSS then covers the model's load and runs (plus the interpreter, ~30-40 MB).
    reset_peak_rss()
    params = xlc.CommonParams()
    params.model.path = str(gguf)
    params.n_ctx = max(max(args.n_prompt) + max(args.depth), max(args.n_gen) + max(args.depth) + 8) + 64
    params.n_batch = 2048
    params.n_ubatch = 512
    params.n_parallel = 1
    params.cpuparams.n_threads = args.threads or os.cpu_count()
    params.cpuparams_batch.n_threads = args.threads or os.cpu_count()
    params.warmup = True
    server = xlc.Server(params)
    from gguf import GGUFReader
    reader = GGUFReader(str(gguf))
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    types = sorted({t.tensor_type.name for t in reader.tensors})
    rng = random.Random(args.seed)
    runs = []
    for kind, n, depth in tests_of(args):
        rates, ttfts = [], []
        for rep in range(args.warmup + args.repetitions):
            # Ids away from the special tokens at the start of the vocabulary.
            prompt_len = depth + (n if kind == "pp" else 1)
            prompt = [rng.randrange(256, vocab) for _ in range(prompt_len)]
            request = {"prompt": prompt, "n_predict": 1 if kind == "pp" else n, "cache_prompt": False,
                       "temperature": 0.0, "ignore_eos": True, "samplers": ["top_k"], "top_k": 1}
            response = server.handle_completions(request)
            if isinstance(response, str):
                response = json.loads(response)
            if "timings" not in response:
                raise SystemExit(f"llama.cpp returned no timings: {str(response)[:500]}")
            timings = response["timings"]
            if rep < args.warmup:
                continue
            if kind == "pp":
                rates.append(timings["prompt_per_second"])
                ttfts.append(timings["prompt_ms"])
            else:
                rates.append(timings["predicted_per_second"])
        runs.append(run_record(args, gguf.stem, f"gguf {'+'.join(types)}", n_params, gguf.stat().st_size,
                               "gguf", None, {"threads": args.threads or os.cpu_count()}, kind, n, depth,
                               rates, ttfts, None))
        print(f"llama.cpp {gguf.stem} {test_name(kind, n, depth)}: {spread(rates)['mean']:.2f} t/s", file=sys.stderr)
    engine = {"name": "llama.cpp", "version": f"xllamacpp {xlc.__version__}", "mlx_version": None,
              "details": {"system_info": xlc.get_system_info().strip() if hasattr(xlc, "get_system_info") else ""}}
    return machine_info("cpu", cpu_name()), engine, runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine", choices=["mlx-lm", "llama.cpp"])
    ap.add_argument("--gguf")
    ap.add_argument("--random", choices=["e2b", "e4b", "e2b-mini"])
    ap.add_argument("--bits", type=int, choices=[4, 8])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("-p", dest="n_prompt", type=lambda s: [int(x) for x in s.split(",")], default=[512])
    ap.add_argument("-n", dest="n_gen", type=lambda s: [int(x) for x in s.split(",")], default=[128])
    ap.add_argument("-d", dest="depth", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    ap.add_argument("-r", dest="repetitions", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if (args.gguf is None) == (args.random is None) or (args.engine == "llama.cpp" and not args.gguf):
        ap.error("give --gguf FILE, or --random SHAPE (mlx-lm only)")
    machine, engine, runs = (mlx_lm_bench if args.engine == "mlx-lm" else llama_cpp_bench)(args)
    report = {"schema": "mlxcel-bench/1", "machine": machine, "engine": engine,
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "command": "python3 " + " ".join(sys.argv), "runs": runs}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
