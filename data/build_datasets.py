"""Build the tile-language datasets: a pretraining corpus, preference pairs and an SFT set.

    python data/build_datasets.py --config recipes/config/data.yaml
    python data/build_datasets.py --output_dir outputs/data --seed 7 --num_pairs 2000

Each dataset is written as Parquet in the Hub's folder layout
(``<name>/data/<split>-00000-of-00001.parquet`` plus a README.md dataset
card), so ``datasets.load_dataset(<folder>)`` reads it and a Hub upload
needs no conversion. The same seed and parameters give byte-identical files.
"""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets import Dataset, disable_progress_bars
from huggingface_hub import DatasetCard, DatasetCardData
from trl import TrlParser

from rgb_tokenizer import hub
from rgb_tokenizer.arguments import parse_recipe_args
from rgb_tokenizer.atomic import atomic_folder
from rgb_tokenizer.devices import distributed_state
from rgb_tokenizer.errors import UserError, exit_on_user_error
from rgb_tokenizer.grammar import sample_sequence, validate_tiles
from rgb_tokenizer.preferences import check_prompt_lengths, make_preference_pairs
from rgb_tokenizer.runs import RUN_FILE, RunArguments, check_output_dir, run_record, write_run_record
from rgb_tokenizer.validation import check_split_sizes, require_positive

logger = logging.getLogger("build_datasets")
CARD_DIR = Path(__file__).resolve().parent / "cards"
DATASET_NAMES = ("pretrain", "preference", "sft")
# Settings that choose where the datasets go, not what they contain, so the cards' parameter tables leave them out.
HUB_FIELDS = ("push_to_hub", "hub_dataset_prefix", "hub_private_repo", "hub_token")


@dataclass
class DataArguments:
    output_dir: str = field(default="outputs/data", metadata={"help": "Folder that receives pretrain/, preference/ and sft/."})
    seed: int = field(default=42, metadata={"help": "Seed of every random draw; the same seed gives identical files."})
    sequence_length: int = field(default=40, metadata={"help": "Tiles per sequence, prompt plus completion."})
    num_pretrain_sequences: int = field(default=20_000, metadata={"help": "Grammatical sequences in the pretraining corpus."})
    num_pairs: int = field(default=1_000, metadata={"help": "Preference pairs, after ties are dropped."})
    min_prompt_length: int = field(default=1, metadata={"help": "Shortest prompt of a preference pair, in tiles."})
    max_prompt_length: int = field(default=20, metadata={"help": "Longest prompt of a preference pair, in tiles."})
    test_fraction: float = field(default=0.1, metadata={"help": "Share of each dataset held out as the test split."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push the three datasets to the Hub, one dataset repo each, after writing them locally."})
    hub_dataset_prefix: str | None = field(
        default=None,
        metadata={"help": "Repo id prefix: with me/rgb-tiles the datasets go to me/rgb-tiles-pretrain, me/rgb-tiles-preference and me/rgb-tiles-sft."},
    )
    hub_private_repo: bool | None = field(default=None, metadata={"help": "Create the repos as private; unset, they are public unless the namespace defaults to private."})
    hub_token: str | None = field(default=None, repr=False, metadata={"help": "Token with write access; unset, the token of `hf auth login` or HF_TOKEN is used."})


def split_rows(rows: list[dict], test_fraction: float) -> dict[str, list[dict]]:
    num_test = max(1, round(len(rows) * test_fraction))
    return {"train": rows[:-num_test], "test": rows[-num_test:]}


def write_dataset(target: Path, splits: dict[str, list[dict]], card_name: str, card_values: dict) -> None:
    """Write ``splits`` as Parquet plus a dataset card, replacing ``target`` only once all files exist."""
    for split, rows in splits.items():
        for row in rows:
            for column, value in row.items():
                validate_tiles(value, label=f"{card_name} {split} {column}")

    card_data = DatasetCardData(
        license="mit",
        language=["en"],
        pretty_name=card_values["pretty_name"],
        size_categories=["1K<n<10K" if sum(map(len, splits.values())) < 10_000 else "10K<n<100K"],
        task_categories=["text-generation"],
        tags=["synthetic", "rgb-alignment", "tile-language"],
        # NOTE: no `configs` block. The Hub finds data/<split>-*.parquet by
        # itself, and with that block datasets 5.2 caches a local folder by
        # its name alone, so a rebuilt folder would load its stale copy.
    )
    sizes = ", ".join(f"{split}: {len(rows):,} rows" for split, rows in splits.items())
    body = (CARD_DIR / f"{card_name}.md").read_text().format(sizes=sizes, **card_values)

    with atomic_folder(target) as staging:
        (staging / "data").mkdir()
        for split, rows in splits.items():
            Dataset.from_list(rows).to_parquet(staging / "data" / f"{split}-00000-of-00001.parquet")
        DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}").save(staging / "README.md")
    logger.info("Wrote %s (%s)", target, sizes)


def main(args: DataArguments, run_args: RunArguments | None = None) -> None:
    # Check every setting and the output folder before anything is written
    run_args = run_args or RunArguments()
    require_positive(num_pretrain_sequences=args.num_pretrain_sequences, num_pairs=args.num_pairs)
    if args.sequence_length < 3:
        raise UserError(f"sequence_length={args.sequence_length} is too small: use at least 3 tiles")
    check_prompt_lengths(args.min_prompt_length, args.max_prompt_length, args.sequence_length)
    check_split_sizes(args.num_pretrain_sequences, args.test_fraction, "num_pretrain_sequences")
    check_split_sizes(args.num_pairs, args.test_fraction, "num_pairs")
    if args.push_to_hub and not args.hub_dataset_prefix:
        raise UserError("push_to_hub is set but hub_dataset_prefix is not: pass a repo id prefix, for example --hub_dataset_prefix me/rgb-tiles")
    if args.push_to_hub:
        hub.check_repo_id(f"{args.hub_dataset_prefix}-preference", "hub_dataset_prefix", args.hub_dataset_prefix)
    output_dir = Path(args.output_dir)
    record = run_record("datasets", args)
    replace = check_output_dir(output_dir, record, run_args.overwrite_output_dir)
    # Under accelerate launch with several processes, every process checks and only the main process writes.
    if not distributed_state().is_main_process:
        return
    if replace:
        # Until the new record is written, a rebuild that fails midway leaves a folder that claims no run.
        (output_dir / RUN_FILE).unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    parameters = "\n".join(
        f"| `{key}` | `{value}` |" for key, value in asdict(args).items() if key != "output_dir" and key not in HUB_FIELDS
    )
    common = {"seed": args.seed, "parameters": parameters, "sequence_length": args.sequence_length}

    # Pretraining corpus: independent draws from the reference chain.
    rng = random.Random(args.seed)
    texts = [{"text": sample_sequence(rng, args.sequence_length)} for _ in range(args.num_pretrain_sequences)]
    write_dataset(
        output_dir / "pretrain",
        split_rows(texts, args.test_fraction),
        "pretrain",
        {"pretty_name": "Tile language pretraining corpus", **common},
    )

    # Preference pairs, and the SFT set made of their chosen completions. A
    # different seed stream keeps the pairs independent of the corpus.
    pairs = make_preference_pairs(
        seed=args.seed + 1,
        num_pairs=args.num_pairs,
        sequence_length=args.sequence_length,
        min_prompt_length=args.min_prompt_length,
        max_prompt_length=args.max_prompt_length,
    )
    pair_splits = split_rows(pairs, args.test_fraction)
    write_dataset(
        output_dir / "preference",
        pair_splits,
        "preference",
        {"pretty_name": "Tile language preference pairs", **common},
    )
    sft_splits = {
        split: [{"prompt": row["prompt"], "completion": row["chosen"]} for row in rows]
        for split, rows in pair_splits.items()
    }
    write_dataset(
        output_dir / "sft",
        sft_splits,
        "sft",
        {"pretty_name": "Tile language SFT set (chosen completions)", **common},
    )
    write_run_record(output_dir, record)

    # One dataset repo per dataset, each with its card, so that each loads with
    # load_dataset(<repo id>) like a local folder. A failed push exits with one
    # line, and the local folders are complete by then.
    if args.push_to_hub:
        retry = f"The datasets in {output_dir} are complete: rerun this command to push them, since the same settings rebuild identical files."
        with hub.exit_on_hub_error():
            for name in DATASET_NAMES:
                target = hub.HubTarget(f"{args.hub_dataset_prefix}-{name}", args.hub_private_repo, args.hub_token)
                hub.push_folder(output_dir / name, target, repo_type="dataset", retry=retry)


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    disable_progress_bars()
    with exit_on_user_error():
        data_args, run_args = parse_recipe_args(TrlParser((DataArguments, RunArguments)))
        logger.info("Building datasets with %s", data_args)
        main(data_args, run_args)
    sys.exit(0)
