"""Wall time and peak memory of pretraining and DPO at several dataset sizes and sequence lengths.

    python -m benchmarks.growth --work_dir /tmp/rgb-benchmarks/bench/growth

Each point is one run of the real recipe (`accelerate launch ... recipes/<stage>.py`
with its YAML config) under `/usr/bin/time -v`, for one epoch, on datasets built by
`data/build_datasets.py`. Only the dataset size, the sequence length and the
settings that the length forces (n_positions, max_length) change.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from benchmarks.timing import launch_command, run_timed, trainer_metrics


def fit_line(xs: list[float], ys: list[float]) -> dict:
    """Least-squares line ``y = intercept + slope * x``, with the largest residual relative to the fitted value.

    ``slope_ratio`` is the slope between the two largest sizes divided by the slope
    between the two smallest. It is 1 when the cost of one more row does not change.
    """
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    intercept = mean_y - slope * mean_x
    residuals = [(y - (intercept + slope * x)) / (intercept + slope * x) for x, y in zip(xs, ys)]
    order = sorted(range(n), key=lambda i: xs[i])
    first, last = order[:2], order[-2:]
    slope_first = (ys[first[1]] - ys[first[0]]) / (xs[first[1]] - xs[first[0]])
    slope_last = (ys[last[1]] - ys[last[0]]) / (xs[last[1]] - xs[last[0]])
    return {
        "intercept": intercept,
        "slope": slope,
        "max_relative_residual": max(residuals, key=abs),
        "slope_ratio": slope_last / slope_first,
    }


def build_data(target: Path, length: int, num_sequences: int, num_pairs: int) -> None:
    """Build the datasets with the recipe's config, changing only the sizes and the length."""
    shutil.rmtree(target, ignore_errors=True)
    run_timed(
        [
            sys.executable, "data/build_datasets.py", "--config", "recipes/config/data.yaml",
            "--output_dir", str(target),
            "--sequence_length", str(length),
            "--num_pretrain_sequences", str(num_sequences),
            "--num_pairs", str(num_pairs),
        ],
        target.with_suffix(".log"),
    )


def training_time(log: Path) -> dict:
    """Read the time inside ``trainer.train()`` from a training log: wall time without imports, launching and loading."""
    return {"train_runtime_s": trainer_metrics(log.read_text())["train_runtime_s"]}


def measure_growth(work_dir: Path, lengths: dict[int, list[int]], pairs_per_sequence: float) -> list[dict]:
    """Time pretraining and DPO for every (length, size) pair; DPO gets ``size * pairs_per_sequence`` pairs.

    DPO at each length starts from the base model pretrained on that length's smallest dataset.
    """
    points = []
    for length, sizes in lengths.items():
        # BOS and EOS take two positions; the recipe's default of 64 covers 40 tiles.
        n_positions = max(64, length + 2)
        max_length = max(64, length + 4)
        base_model = None
        for size in sorted(sizes):
            num_pairs = max(10, round(size * pairs_per_sequence))
            point_dir = work_dir / f"length{length}-n{size}"
            build_data(point_dir / "data", length, size, num_pairs)

            base = point_dir / "base"
            shutil.rmtree(base, ignore_errors=True)
            pretrain = run_timed(
                launch_command(
                    "recipes/pretrain.py", "--config", "recipes/config/pretrain.yaml",
                    "--dataset_name", str(point_dir / "data" / "pretrain"), "--output_dir", str(base),
                    "--n_positions", str(n_positions),
                    # One epoch whatever the pretraining config caps it at, so cost follows the dataset size.
                    "--max_steps", "-1", "--num_train_epochs", "1",
                ),
                point_dir / "pretrain.log",
            )
            points.append({"stage": "pretraining", "length": length, "rows": size, **pretrain, **training_time(point_dir / "pretrain.log")})
            base_model = base_model or base

            dpo_dir = point_dir / "dpo"
            shutil.rmtree(dpo_dir, ignore_errors=True)
            dpo = run_timed(
                launch_command(
                    "recipes/dpo.py", "--config", "recipes/config/dpo.yaml",
                    "--model_name_or_path", str(base_model),
                    "--dataset_name", str(point_dir / "data" / "preference"), "--output_dir", str(dpo_dir),
                    "--max_length", str(max_length), "--num_train_epochs", "1",
                ),
                point_dir / "dpo.log",
            )
            points.append({"stage": "DPO", "length": length, "rows": num_pairs, **dpo, **training_time(point_dir / "dpo.log")})
            # Only the timings are kept; the base model that DPO starts from stays until the length is done.
            if base != base_model:
                shutil.rmtree(base)
            shutil.rmtree(dpo_dir)
    return points


def summarise(points: list[dict]) -> list[dict]:
    """Fit wall time, and the time inside ``trainer.train()``, against rows for each stage and length."""
    fits = []
    for stage in ("pretraining", "DPO"):
        for length in sorted({p["length"] for p in points}):
            subset = [p for p in points if p["stage"] == stage and p["length"] == length]
            if len(subset) < 3:
                continue
            for measure in ("wall_s", "train_runtime_s"):
                fit = fit_line([p["rows"] for p in subset], [p[measure] for p in subset])
                fits.append({"stage": stage, "length": length, "measure": measure, **fit})
    return fits


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default="/tmp/rgb-benchmarks/bench/growth", help="Folder for the datasets, models and logs.")
    parser.add_argument("--sizes_40", type=int, nargs="+", default=[1000, 3000, 9000], help="Pretraining sequences at 40 tiles.")
    parser.add_argument("--sizes_160", type=int, nargs="+", default=[250, 750, 2250], help="Pretraining sequences at 160 tiles.")
    parser.add_argument("--pairs_per_sequence", type=float, default=0.125, help="Preference pairs per pretraining sequence.")
    args = parser.parse_args()
    points = measure_growth(Path(args.work_dir), {40: args.sizes_40, 160: args.sizes_160}, args.pairs_per_sequence)
    print(json.dumps({"points": points, "fits": summarise(points)}, indent=2))
