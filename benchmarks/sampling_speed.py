"""Batched sampling against a one-sequence-at-a-time loop, with the same model and settings.

    python -m benchmarks.sampling_speed --model /tmp/rgb-benchmarks/full-run/base

Both sides call ``rgb_tokenizer.sampling.sample_sequences`` as the comparison stage
does (200 sequences of 40 tiles, EOS suppressed, fp32 weights); only ``batch_size``
differs: 200 sequences per ``generate()`` call against 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rgb_tokenizer.sampling import sample_sequences


def time_sampling(model, tokenizer, num_samples: int, length: int, batch_size: int, seed: int = 42) -> dict:
    started = time.perf_counter()
    samples = sample_sequences(model, tokenizer, num_samples, length, seed, batch_size)
    elapsed = time.perf_counter() - started
    return {
        "batch_size": batch_size,
        "num_samples": len(samples),
        "seconds": elapsed,
        "sequences_per_second": len(samples) / elapsed,
    }


# The allocator settings that recipes/reproduce.sh exports.
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "17179869184"}


def first_call_seconds(model_path: str, tuned_malloc: bool, num_samples: int = 200, length: int = 40) -> float:
    """Time the first batched call in a fresh process, with glibc's default or the tuned allocator settings."""
    env = {key: value for key, value in os.environ.items() if key not in TUNED_MALLOC}
    if tuned_malloc:
        env.update(TUNED_MALLOC)
    command = [sys.executable, "-m", "benchmarks.sampling_speed", "--model", model_path, "--first_call_only",
               "--num_samples", str(num_samples), "--length", str(length)]
    completed = subprocess.run(command, env=env, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])["seconds"]


def compare_sampling(model_path: str, num_samples: int = 200, length: int = 40, num_single: int = 200) -> dict:
    """Time one batched call for ``num_samples`` sequences and a loop over ``num_single`` single-sequence calls."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, use_safetensors=True, dtype=torch.float32).eval()
    # One untimed call of each kind, so that neither side pays first-call costs (first_call_seconds measures them).
    sample_sequences(model, tokenizer, num_samples, length, 0, num_samples)
    sample_sequences(model, tokenizer, 2, length, 0, 1)
    batched = time_sampling(model, tokenizer, num_samples, length, batch_size=num_samples)
    single = time_sampling(model, tokenizer, num_single, length, batch_size=1)
    first_default = first_call_seconds(model_path, tuned_malloc=False, num_samples=num_samples, length=length)
    first_tuned = first_call_seconds(model_path, tuned_malloc=True, num_samples=num_samples, length=length)
    return {
        "model": model_path,
        "length": length,
        "batched": batched,
        "one_at_a_time": single,
        "speedup": batched["sequences_per_second"] / single["sequences_per_second"],
        "first_call_seconds": {"default_malloc": first_default, "tuned_malloc": first_tuned},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Folder of a saved tile model, for example a base model.")
    parser.add_argument("--num_samples", type=int, default=200, help="Sequences sampled in one batch.")
    parser.add_argument("--num_single", type=int, default=200, help="Sequences sampled one at a time.")
    parser.add_argument("--length", type=int, default=40, help="Tiles per sequence.")
    parser.add_argument("--first_call_only", action="store_true", help="Time only the first batched call in this process.")
    args = parser.parse_args()
    if args.first_call_only:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model, use_safetensors=True, dtype=torch.float32).eval()
        print(json.dumps(time_sampling(model, tokenizer, args.num_samples, args.length, batch_size=args.num_samples)))
    else:
        print(json.dumps(compare_sampling(args.model, args.num_samples, args.length, args.num_single), indent=2))
