#!/usr/bin/env python3
"""Outside check of the Gemma 3n implementation against transformers on random configurations.

For each seed it draws a random Gemma 3n text config (AltUp stream count and active stream,
heads, head size, window, kv sharing, sparsity, per-layer sizes, soft-capping, RoPE bases),
builds the model with random weights, writes transformers' raw `save_pretrained` output, runs
`mlxcel score` for chunk sizes {whole prompt, 5, 1} and both decode paths on the CPU, and
reports the max abs logit difference against transformers' float32 eager forward.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers safetensors numpy
    cargo build --release
    /tmp/ref/bin/python tests/external/check_gemma3n_random.py --mlxcel target/release/mlxcel --seeds 12
Exits non-zero if any difference exceeds --tolerance (1e-3).
"""
import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import Gemma3nForCausalLM, Gemma3nTextConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from gemma3n_weights import randomize  # noqa: E402


def random_config(rng):
    layers = rng.randint(3, 8)
    kinds = [rng.choice(["sliding_attention", "full_attention"]) for _ in range(layers)]
    shared = rng.randint(0, layers - 2)
    concrete = set(kinds[: layers - shared])
    if not {"sliding_attention", "full_attention"} <= concrete:  # transformers wants both producing a cache
        kinds[0], kinds[1] = "sliding_attention", "full_attention"
    heads_kv = rng.choice([1, 2])
    heads = heads_kv * rng.choice([1, 2, 4])
    hidden = rng.choice([32, 64, 96])
    streams = rng.randint(2, 5)
    vocab = rng.randint(200, 700)
    return dict(
        vocab_size=vocab,
        vocab_size_per_layer_input=rng.randint(50, vocab - 1),
        hidden_size=hidden,
        hidden_size_per_layer_input=rng.choice([8, 16, 32]),
        intermediate_size=[rng.choice([32, 64, 96, 160]) for _ in range(layers)],
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads_kv,
        head_dim=rng.choice([8, 16, 32]),
        sliding_window=rng.randint(2, 6),
        layer_types=kinds,
        num_kv_shared_layers=shared,
        activation_sparsity_pattern=[rng.choice([0.0, 0.0, 0.9, 0.95, 0.99]) for _ in range(layers)],
        laurel_rank=rng.choice([4, 8]),
        altup_num_inputs=streams,
        altup_active_idx=rng.randrange(streams),
        altup_correct_scale=rng.random() < 0.8,
        final_logit_softcapping=rng.choice([30.0, 10.0, 50.0]),
        rms_norm_eps=rng.choice([1e-6, 1e-5]),
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": rng.choice([1e6, 5e4])},
            "sliding_attention": {"rope_type": "default", "rope_theta": rng.choice([1e4, 500.0])},
        },
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlxcel", default="target/release/mlxcel")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    args = ap.parse_args()
    worst = 0.0
    for seed in range(args.seeds):
        rng = random.Random(seed)
        fields = random_config(rng)
        model = Gemma3nForCausalLM(Gemma3nTextConfig(**fields, attn_implementation="eager")).eval()
        # Half the seeds keep transformers' own init (correct_output_scale = 0, norms = 1).
        if seed % 2 == 0:
            randomize(model, seed)
        length = rng.randint(8, 20)
        prompt = [rng.randrange(fields["vocab_size"]) for _ in range(length)]
        with torch.no_grad():
            expected = model(torch.tensor([prompt])).logits[0].float().numpy()
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            line = []
            for chunk in (length, 5, 1):
                for path in ("fused", "split"):
                    out = Path(tmp) / f"{chunk}-{path}.npy"
                    cmd = [args.mlxcel, "score", "-m", tmp, "--ids", ",".join(map(str, prompt)),
                           "--prefill-chunk", str(chunk), "--decode-path", path, "--logits-out", str(out)]
                    result = subprocess.run(cmd, capture_output=True, text=True)
                    if result.returncode != 0:
                        print(f"seed {seed}: {' '.join(cmd)} failed:\n{result.stderr}")
                        sys.exit(1)
                    diff = float(np.abs(np.load(out) - expected).max())
                    worst = max(worst, diff)
                    line.append(f"{chunk}/{path} {diff:.1e}")
        summary = {k: fields[k] for k in ("num_hidden_layers", "altup_num_inputs", "altup_active_idx", "num_kv_shared_layers", "sliding_window", "head_dim")}
        print(f"seed {seed} L={length} {json.dumps(summary)}: " + ", ".join(line), flush=True)
    print(f"worst max abs logit difference over {args.seeds} configs: {worst:.2e} (tolerance {args.tolerance})")
    sys.exit(0 if worst <= args.tolerance else 1)


if __name__ == "__main__":
    main()
