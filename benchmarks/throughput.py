"""Peak matmul FLOP/s and training-step throughput of the recipe's GPT-2, measured in this process.

    python -m benchmarks.throughput                 # prints JSON: peak FLOP/s and every variant below
    python -m benchmarks.throughput --steps 3       # a quick check of the script
    python -m benchmarks.throughput --each_step 128 162 --steps 16   # the time of each step, the first ones included

The training step is the one that the Trainer runs: forward with labels, backward,
AdamW step, under bf16 autocast or in fp32. The inputs are random tiles, so no data
loading is timed.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from transformers import AutoModelForCausalLM, GPT2Config

from rgb_tokenizer.tokenizer import build_tokenizer

from benchmarks.timing import gpt2_training_flops_per_token

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def peak_matmul_flops(dtype: str, size: int = 2048, seconds: float = 3.0) -> float:
    """Return the FLOP/s of a loop of ``size`` x ``size`` matmuls in ``dtype`` (2 * size**3 FLOPs each)."""
    a = torch.randn(size, size, dtype=DTYPES[dtype])
    b = torch.randn(size, size, dtype=DTYPES[dtype])
    for _ in range(3):
        torch.mm(a, b)
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b)
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - started)


@dataclass
class StepSettings:
    """One training-step variant: the recipe's model, a batch shape, precision, attention and dropout."""

    batch_size: int = 128
    context: int = 42
    precision: str = "bf16"
    attn_implementation: str = "eager"
    dropout: float = 0.0
    n_layer: int = 6
    n_head: int = 4
    n_embd: int = 256


def training_step_throughput(settings: StepSettings, steps: int, warmup: int = 3, seed: int = 0) -> dict:
    """Time ``steps`` training steps after ``warmup`` untimed ones; return tokens/s and achieved FLOP/s.

    ``step_seconds`` has the time of every step, the ``warmup`` ones first.
    """
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=max(64, settings.context),
        n_embd=settings.n_embd,
        n_layer=settings.n_layer,
        n_head=settings.n_head,
        resid_pdrop=settings.dropout,
        embd_pdrop=settings.dropout,
        attn_pdrop=settings.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation=settings.attn_implementation).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tile_ids = torch.tensor(tokenizer.convert_tokens_to_ids(["R", "G", "B"]))
    input_ids = tile_ids[torch.randint(0, 3, (settings.batch_size, settings.context))]
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if settings.precision == "bf16" else nullcontext()
    )

    def step() -> None:
        with autocast:
            loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step_seconds = []
    for _ in range(warmup + steps):
        started = time.perf_counter()
        step()
        step_seconds.append(time.perf_counter() - started)
    elapsed = sum(step_seconds[warmup:])

    tokens_per_second = steps * settings.batch_size * settings.context / elapsed
    flops_per_token = gpt2_training_flops_per_token(settings.n_layer, settings.n_embd, settings.context, len(tokenizer))
    return {
        **asdict(settings),
        "steps": steps,
        "seconds_per_step": elapsed / steps,
        "step_seconds": step_seconds,
        "tokens_per_second": tokens_per_second,
        "flops_per_token": flops_per_token,
        "achieved_flops": tokens_per_second * flops_per_token,
    }


# Each comparison changes one setting of the pretraining step (batch 128 x 42 tokens, bf16, eager
# attention, no dropout), named by the comparison's second item. The attention comparison is repeated
# at DPO's batch of 16 rows and at the 162 tokens of the growth section's long rows.
COMPARISONS = {
    "precision": ("precision", [StepSettings(precision="bf16"), StepSettings(precision="fp32")]),
    "attention": ("attn_implementation", [StepSettings(), StepSettings(attn_implementation="sdpa")]),
    "attention, batch 16": ("attn_implementation", [StepSettings(batch_size=16), StepSettings(batch_size=16, attn_implementation="sdpa")]),
    "attention, 162 tokens": (
        "attn_implementation",
        [StepSettings(batch_size=32, context=162), StepSettings(batch_size=32, context=162, attn_implementation="sdpa")],
    ),
    "dropout": ("dropout", [StepSettings(dropout=0.0), StepSettings(dropout=0.1)]),
    "batch_size": ("batch_size", [StepSettings(batch_size=size) for size in (16, 32, 128, 256)]),
}


def run_comparisons(steps: int, matmul_seconds: float) -> dict:
    """Measure the peak matmul FLOP/s and every variant in ``COMPARISONS``, one after another in this process."""
    peak = {dtype: peak_matmul_flops(dtype, seconds=matmul_seconds) for dtype in DTYPES}
    comparisons = {}
    for name, (varied, variants) in COMPARISONS.items():
        results = [training_step_throughput(settings, steps) for settings in variants]
        for result in results:
            result["mfu"] = result["achieved_flops"] / peak[result["precision"]]
        comparisons[name] = {"varied": varied, "variants": results}
    return {"peak_matmul_flops": peak, "comparisons": comparisons}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="Timed training steps per variant.")
    parser.add_argument("--matmul_seconds", type=float, default=3.0, help="Seconds of matmul loop per dtype.")
    parser.add_argument(
        "--each_step", type=int, nargs=2, metavar=("BATCH_SIZE", "CONTEXT"),
        help="Instead of the comparisons, print the time of each of --steps steps of one shape, the first ones included.",
    )
    args = parser.parse_args()
    if args.each_step:
        batch_size, context = args.each_step
        result = training_step_throughput(StepSettings(batch_size=batch_size, context=context), steps=args.steps, warmup=0)
        print(json.dumps({"batch_size": batch_size, "context": context, "step_seconds": result["step_seconds"]}, indent=2))
    else:
        print(json.dumps(run_comparisons(args.steps, args.matmul_seconds), indent=2))
