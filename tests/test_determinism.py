"""The one-command run, twice with one seed and once with another: same seed, same files and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiny_runs import file_hashes, last_train_loss, shared_pipelines, trainer_state

RUNS = {"seed42": 42, "seed42-again": 42, "seed7": 7}
TIMINGS = ("_runtime", "_samples_per_second", "_steps_per_second")


def without_timings(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if not key.endswith(TIMINGS)}


def trained_metrics(outputs: Path) -> dict:
    """Return what training and the comparison measured, without timings and paths."""
    metrics = {
        stage: [without_timings(entry) for entry in trainer_state(outputs / stage)["log_history"]]
        for stage in ("base", "sft", "dpo")
    }
    metrics["base_eval"] = without_timings(json.loads((outputs / "base" / "eval_results.json").read_text()))
    results = json.loads((outputs / "results" / "results.json").read_text())["models"]
    metrics["results"] = {name: {k: v for k, v in values.items() if k != "model"} for name, values in results.items()}
    return metrics


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Path]:
    pipelines = shared_pipelines(tmp_path_factory)
    # Started together so that they share the two cores; each one is a single process.
    for name, seed in RUNS.items():
        pipelines.start(name, seed)
    return {name: pipelines.outputs(name, seed) for name, seed in RUNS.items()}


def test_same_seed_same_datasets(outputs):
    # Parquet files, dataset cards and the run record alike.
    first = file_hashes(outputs["seed42"] / "data", "*")
    assert len(first) == 10
    assert file_hashes(outputs["seed42-again"] / "data", "*") == first


def test_same_seed_same_metrics(outputs):
    first = trained_metrics(outputs["seed42"])
    again = trained_metrics(outputs["seed42-again"])
    for key in first:
        assert again[key] == first[key], key


def test_other_seed_other_datasets(outputs):
    first = file_hashes(outputs["seed42"] / "data", "*.parquet")
    other = file_hashes(outputs["seed7"] / "data", "*.parquet")
    assert other.keys() == first.keys()
    for name, digest in first.items():
        assert other[name] != digest, name


def test_other_seed_other_metrics(outputs):
    for stage in ("base", "sft", "dpo"):
        first = last_train_loss(trainer_state(outputs["seed42"] / stage))
        other = last_train_loss(trainer_state(outputs["seed7"] / stage))
        assert other != first, stage
    first_results = trained_metrics(outputs["seed42"])["results"]
    other_results = trained_metrics(outputs["seed7"])["results"]
    for name in ("base", "sft", "dpo"):
        assert other_results[name] != first_results[name], name
