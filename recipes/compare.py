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
from dataclasses import dataclass, field
from pathlib import Path

import evaluate
import torch
from accelerate.logging import get_logger
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import TrlParser

import rgb_tokenizer
from rgb_tokenizer import hub
from rgb_tokenizer.arguments import parse_recipe_args
from rgb_tokenizer.atomic import atomic_folder
from rgb_tokenizer.devices import distributed_state
from rgb_tokenizer.errors import UserError, exit_on_user_error
from rgb_tokenizer.frontier import frontier, max_preference_at_kl, reference_chain
from rgb_tokenizer.plots import draw_frontier, draw_tile_grids
from rgb_tokenizer.runs import RunArguments, check_output_dir, public_settings, run_record, write_run_record
from rgb_tokenizer.sampling import sample_sequences, sequence_log_probs
from rgb_tokenizer.validation import check_tile_model, require_positive

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
    update_model_cards: bool = field(
        default=False,
        metadata={"help": "Write the results table and tiles.png into the README.md model card of each model given as a local folder."},
    )
    push_to_hub: bool = field(
        default=False,
        metadata={"help": "Commit the results table and tiles.png to the model card of each model given as a Hub id (needs a write token from `hf auth login` or HF_TOKEN)."},
    )


def parse_policies(entries: list[str]) -> dict[str, str]:
    policies = {}
    for entry in entries:
        name, separator, path = entry.partition("=")
        if not separator or not name or not path or name == "base" or name in policies:
            raise UserError(
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


def main(args: CompareArguments, run_args: RunArguments | None = None) -> None:
    # Check the settings, the models and the output folder before any work starts
    policies = parse_policies(args.policies)
    require_positive(num_samples=args.num_samples, num_pictured=args.num_pictured, batch_size=args.batch_size)
    if args.sequence_length < 2:
        raise UserError(f"sequence_length={args.sequence_length} is too small: use at least 2 tiles, the prompt tile and one more")
    models = {"base_model": args.base_model, **{f"policy {name}": path for name, path in policies.items()}}
    for setting, path in models.items():
        check_tile_model(path, setting, args.sequence_length)
    record = run_record("compare", args)
    check_output_dir(args.output_dir, record, (run_args or RunArguments()).overwrite_output_dir)

    state = distributed_state()
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
        "settings": public_settings(args),
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
        write_run_record(staging, record)
    logger.info(f"Wrote results.json, results.md, tiles.png and frontier.png to {Path(args.output_dir)}")

    # Each model's card gets the table and the picture. A failed commit to the Hub ends the run with one line.
    with hub.exit_on_hub_error():
        for name, path in {"base": args.base_model, **policies}.items():
            hub.publish_results(
                path, name, f"{table}\n\n{notes}", Path(args.output_dir) / "tiles.png", args.update_model_cards, args.push_to_hub
            )


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    with exit_on_user_error():
        main(*parse_recipe_args(TrlParser((CompareArguments, RunArguments))))
