"""Compare the base, SFT and DPO models on samples of the tile language.

    accelerate launch recipes/compare.py --config recipes/config/compare.yaml
    python recipes/compare.py --base_model outputs/base --policies sft=outputs/sft dpo=outputs/dpo

Each model continues the same random first tiles (R or B) to sequences of
`sequence_length` tiles. The stage prints a Markdown table and writes
results.json, results.md, tiles.png and frontier.png into `output_dir`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import evaluate
import torch
from accelerate import PartialState
from accelerate.logging import get_logger
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import TrlParser

import rgb_tokenizer
from rgb_tokenizer.atomic import atomic_folder
from rgb_tokenizer.frontier import frontier, max_preference_at_kl, reference_chain
from rgb_tokenizer.plots import draw_frontier, draw_tile_grids
from rgb_tokenizer.sampling import sample_sequences, sequence_log_probs

logger = get_logger(__name__)

TABLE_COLUMNS = (
    ("preference_score", "preference", "{:.4f}"),
    ("rule_adherence", "adherence", "{:.2%}"),
    ("empirical_entropy_bits", "empirical entropy (bits)", "{:.2f}"),
    ("sequence_entropy_bits", "sequence entropy (bits)", "{:.2f}"),
    ("distinct_fraction", "distinct", "{:.1%}"),
    ("kl_to_base_nats", "KL to base (nats)", "{:.2f}"),
    ("early_eos_fraction", "early EOS", "{:.1%}"),
    ("frontier_gap", "frontier gap", "{:.4f}"),
)


@dataclass
class CompareArguments:
    base_model: str = field(default="outputs/base", metadata={"help": "Local folder or Hub id of the base model; KL is measured from it."})
    policies: list[str] = field(
        default_factory=lambda: ["sft=outputs/sft", "dpo=outputs/dpo"],
        metadata={"help": "Fine-tuned models as name=path (local folder or Hub id), in table order."},
    )
    output_dir: str = field(default="outputs/results", metadata={"help": "Folder for results.json, results.md and the pictures."})
    num_samples: int = field(default=200, metadata={"help": "Sampled sequences per model."})
    sequence_length: int = field(default=40, metadata={"help": "Tiles per sampled sequence, the prompt tile included."})
    num_pictured: int = field(default=20, metadata={"help": "Samples per model drawn in tiles.png."})
    batch_size: int = field(default=200, metadata={"help": "Sequences per generate() call; samples depend on it through the random stream."})
    seed: int = field(default=42, metadata={"help": "Seed of the prompt tiles and of sampling."})


def parse_policies(entries: list[str]) -> dict[str, str]:
    policies = {}
    for entry in entries:
        name, separator, path = entry.partition("=")
        if not separator or not name or not path or name == "base" or name in policies:
            raise ValueError(
                f"policies entry {entry!r} is invalid: write name=path with a unique name other than 'base', "
                "for example dpo=outputs/dpo"
            )
        policies[name] = path
    return policies


def load_model(path: str, device: torch.device):
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, dtype=torch.float32).to(device).eval()
    logger.info(f"Loaded {path}: {model.num_parameters():,} parameters")
    return model, tokenizer


def markdown_table(results: dict[str, dict]) -> str:
    header = "| model | " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"
    divider = "|---|" + "---:|" * len(TABLE_COLUMNS)
    rows = [
        f"| {name.upper()} | " + " | ".join(fmt.format(values[key]) for key, _, fmt in TABLE_COLUMNS) + " |"
        for name, values in results.items()
    ]
    return "\n".join([header, divider, *rows])


def main(args: CompareArguments) -> None:
    policies = parse_policies(args.policies)
    state = PartialState()
    device = state.device
    logger.info(f"Comparing base={args.base_model} and {policies} on {device}")
    tile_metrics = evaluate.load(rgb_tokenizer.metric_path())
    # The prompt tile is uniform over R and B for every model, which adds log(1/2) to log p(y).
    prompt_log_prob = math.log(0.5)

    base_model, base_tokenizer = load_model(args.base_model, device)
    results: dict[str, dict] = {}
    pictured: dict[str, list[str]] = {}
    for name, path in {"base": args.base_model, **policies}.items():
        started = time.perf_counter()
        model, tokenizer = (base_model, base_tokenizer) if name == "base" else load_model(path, device)

        # Fixed-length samples: EOS is suppressed so that every model is scored on the same length.
        samples = sample_sequences(model, tokenizer, args.num_samples, args.sequence_length, args.seed, args.batch_size)
        # Free-running samples of the same prompts show how often the model would stop early.
        free_samples = sample_sequences(
            model, tokenizer, args.num_samples, args.sequence_length, args.seed, args.batch_size, allow_eos=True
        )
        log_probs = [lp + prompt_log_prob for lp in sequence_log_probs(model, tokenizer, samples, args.batch_size)]
        base_log_probs = [
            lp + prompt_log_prob for lp in sequence_log_probs(base_model, base_tokenizer, samples, args.batch_size)
        ]

        values = tile_metrics.compute(predictions=samples, log_probs=log_probs, reference_log_probs=base_log_probs)
        values["kl_to_base_nats"] = 0.0 if name == "base" else values.pop("kl_to_reference_nats")
        values.pop("kl_to_reference_nats", None)
        values["early_eos_fraction"] = sum(len(s) < args.sequence_length for s in free_samples) / len(free_samples)
        values["free_mean_length"] = sum(len(s) for s in free_samples) / len(free_samples)
        values["frontier_max_preference"] = max_preference_at_kl(args.sequence_length, max(values["kl_to_base_nats"], 0.0))
        values["frontier_gap"] = values["frontier_max_preference"] - values["preference_score"]
        values["model"] = path
        results[name] = values
        pictured[name] = samples[: args.num_pictured]
        logger.info(f"Scored {name} ({path}) in {time.perf_counter() - started:.1f} s")

    table = markdown_table(results)
    ceiling = math.log2(args.num_samples)
    notes = (
        f"{args.num_samples} samples of {args.sequence_length} tiles per model, seed {args.seed}. "
        f"The empirical entropy cannot exceed log2({args.num_samples}) = {ceiling:.2f} bits, its value when every "
        "sample is distinct; the sequence entropy, the mean of -log2 p(y), has no such ceiling. "
        "Early EOS is the share of free-running samples that ended before the full length. "
        "Frontier gap is the best preference any policy reaches at the model's KL, minus the model's preference."
    )
    print(f"\n{table}\n\n{notes}\n")

    if not state.is_main_process:
        return
    chain = reference_chain(args.sequence_length)
    payload = {
        "models": results,
        "settings": asdict(args),
        "reference_chain": {
            "preference_score": chain.expected_preference,
            "sequence_entropy_bits": chain.entropy_bits,
            "kl_nats": 0.0,
        },
        "notes": notes,
        "rgb_alignment_version": rgb_tokenizer.__version__,
    }
    with atomic_folder(args.output_dir) as staging:
        (staging / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
        (staging / "results.md").write_text(f"{table}\n\n{notes}\n")
        draw_tile_grids(pictured, args.sequence_length, staging / "tiles.png")
        draw_frontier(frontier(args.sequence_length), chain, results, staging / "frontier.png")
    logger.info(f"Wrote results.json, results.md, tiles.png and frontier.png to {Path(args.output_dir)}")


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (compare_args,) = TrlParser(CompareArguments).parse_args_and_config()
    main(compare_args)
