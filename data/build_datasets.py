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

from rgb_tokenizer.atomic import atomic_folder
from rgb_tokenizer.grammar import sample_sequence, validate_tiles
from rgb_tokenizer.preferences import make_preference_pairs

logger = logging.getLogger("build_datasets")
CARD_DIR = Path(__file__).resolve().parent / "cards"


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


def split_rows(rows: list[dict], test_fraction: float) -> dict[str, list[dict]]:
    num_test = max(1, round(len(rows) * test_fraction))
    return {"train": rows[:-num_test], "test": rows[-num_test:]}


def write_dataset(target: Path, splits: dict[str, list[dict]], card_name: str, card_values: dict) -> None:
    """Write ``splits`` as Parquet plus a dataset card, replacing ``target`` only once all files exist."""
    for split, rows in splits.items():
        for row in rows:
            for column, value in row.items():
                validate_tiles(value, what=f"{card_name} {split} {column}")

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


def main(args: DataArguments) -> None:
    if args.num_pretrain_sequences < 2 or args.sequence_length < 3:
        raise ValueError(
            f"num_pretrain_sequences={args.num_pretrain_sequences} and sequence_length={args.sequence_length} "
            "are too small: use at least 2 sequences of at least 3 tiles"
        )
    if not 0 < args.test_fraction < 1:
        raise ValueError(f"test_fraction={args.test_fraction} is invalid: use a value strictly between 0 and 1")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    parameters = "\n".join(f"| `{key}` | `{value}` |" for key, value in asdict(args).items() if key != "output_dir")
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


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    disable_progress_bars()
    (data_args,) = TrlParser(DataArguments).parse_args_and_config()
    logger.info("Building datasets with %s", data_args)
    main(data_args)
    sys.exit(0)
