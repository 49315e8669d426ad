"""Every stage under two CPU processes (gloo) against one process with the same global batch.

DPO under two processes precomputes the reference log-probs, and a one-process run with them precomputed
shows that precomputing alone changes nothing.

Tolerances, and why the runs are not bit-identical:
- Final training loss: relative 1e-4. Each process averages the gradient
  of half the batch and gloo sums the halves, so the float sums run in
  another order. The losses measured here differ by about 1e-5.
- Evaluation metrics: relative 1e-3 plus absolute 5e-4. The trainer
  averages the evaluation loss per batch, so two half batches with
  different token counts weigh tokens a little differently (SFT differs by
  2e-4 here). AdamW's first updates are close to lr * sign(gradient), so
  gradient entries within float noise of zero can step either way. That
  moves DPO's rewards, which are small differences of log-probabilities, by
  about 1e-4 in absolute terms.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tiny_runs import (
    ACCELERATE_CONFIGS,
    Job,
    environment,
    eval_metrics,
    file_hashes,
    last_train_loss,
    shared_pipelines,
    stage_command,
    trainer_state,
)

TRAIN_LOSS_RTOL = 1e-4
EVAL_RTOL = 1e-3
EVAL_ATOL = 5e-4
TWO_PROCESSES = ["accelerate", "launch", "--config_file", str(ACCELERATE_CONFIGS / "multi_cpu.yaml")]
# Output folder of each stage in the one-process pipeline.
ONE_PROCESS = {"pretrain": "base", "sft": "sft", "dpo": "dpo"}


def job(root: Path, name: str, command: list[str]) -> Job:
    # Each run gets its own datasets cache, so no run reuses another's precomputed reference log-probs.
    return Job(command, root / f"{name}.log", environment(HF_DATASETS_CACHE=str(root / f"cache-{name}")))


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """Outputs of the one-process pipeline, shared with the determinism tests."""
    return shared_pipelines(tmp_path_factory).outputs("seed42", 42)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single) -> dict[str, tuple[Path, str]]:
    """Run every stage under two processes, and DPO with precomputed reference log-probs in one process too.

    SFT and DPO start from the one-process base model, so that they can be compared with the one-process runs.
    DPO under two processes precomputes the reference log-probs while the one-process pipeline computes them
    on the fly, and the one-process precomputed run separates the two effects.
    Returns each run's output folder and log.
    """
    root = tmp_path_factory.mktemp("two-processes")
    configs = shared_pipelines(tmp_path_factory).configs("seed42")
    data = single / "data"
    base = single / "base"

    # Copies of the one-process models, so that the comparison stage writes no model card into shared folders.
    models = root / "models"
    for stage in ("base", "sft", "dpo"):
        (models / stage).mkdir(parents=True)
        for path in (single / stage).iterdir():
            if path.is_file():
                shutil.copy2(path, models / stage / path.name)

    commands = {
        "data": [*TWO_PROCESSES, "data/build_datasets.py", "--config", str(configs / "data.yaml"), "--output_dir", str(root / "data")],
        "pretrain": stage_command("pretrain", configs, data, root / "pretrain", processes=2),
        "sft": stage_command("sft", configs, data, root / "sft", processes=2, base=base),
        "dpo": [
            *stage_command("dpo", configs, data, root / "dpo", processes=2, base=base),
            "--precompute_ref_log_probs", "true",
        ],
        "dpo-one-process": [
            *stage_command("dpo", configs, data, root / "dpo-one-process", processes=1, base=base),
            "--precompute_ref_log_probs", "true",
        ],
        "compare": [
            *TWO_PROCESSES, "recipes/compare.py", "--config", str(configs / "compare.yaml"),
            "--base_model", str(models / "base"), "--policies", f"sft={models / 'sft'}", f"dpo={models / 'dpo'}",
            "--output_dir", str(root / "results"),
        ],
    }
    # All at once: the processes wait on each other and on disk often enough that two cores stay busy.
    jobs = {name: job(root, name, command) for name, command in commands.items()}
    logs = {name: running.wait() for name, running in jobs.items()}
    folders = {name: root / name for name in commands}
    folders["compare"] = root / "results"
    return {name: (folders[name], logs[name]) for name in commands}


def test_processes_joined(runs):
    # Each rank saves its own random state; two lone processes would both write rng_state.pth.
    folder, _ = runs["pretrain"]
    names = {path.name for path in (folder / "checkpoint-8").glob("rng_state*.pth")}
    assert names == {"rng_state_0.pth", "rng_state_1.pth"}


def test_datasets_written_once(runs, single):
    folder, log = runs["data"]
    assert file_hashes(folder) == file_hashes(single / "data")
    assert log.count("Wrote ") == 3


@pytest.mark.parametrize("stage", ["pretrain", "sft", "dpo"])
def test_train_loss_matches(runs, single, stage):
    folder, _ = runs[stage]
    one_process = last_train_loss(trainer_state(single / ONE_PROCESS[stage]))
    two_processes = last_train_loss(trainer_state(folder))
    assert two_processes == pytest.approx(one_process, rel=TRAIN_LOSS_RTOL)


def test_same_final_step(runs, single):
    for stage, folder in ONE_PROCESS.items():
        one_process = trainer_state(single / folder)["global_step"]
        assert trainer_state(runs[stage][0])["global_step"] == one_process, stage


def test_pretrain_eval_matches(runs, single):
    folder, _ = runs["pretrain"]
    one_process = json.loads((single / "base" / "eval_results.json").read_text())["eval_loss"]
    two_processes = json.loads((folder / "eval_results.json").read_text())["eval_loss"]
    assert two_processes == pytest.approx(one_process, rel=EVAL_RTOL, abs=EVAL_ATOL)


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_eval_metrics_match(runs, single, stage):
    one_process = eval_metrics(trainer_state(single / stage))
    two_processes = eval_metrics(trainer_state(runs[stage][0]))
    assert two_processes.keys() == one_process.keys()
    for key, value in one_process.items():
        assert two_processes[key] == pytest.approx(value, rel=EVAL_RTOL, abs=EVAL_ATOL), key


def test_precomputed_matches_on_the_fly(runs, single):
    # One process each, so only the source of the reference log-probs differs.
    on_the_fly = trainer_state(single / "dpo")
    precomputed = trainer_state(runs["dpo-one-process"][0])
    assert last_train_loss(precomputed) == pytest.approx(last_train_loss(on_the_fly), rel=TRAIN_LOSS_RTOL)
    for key, value in eval_metrics(on_the_fly).items():
        assert eval_metrics(precomputed)[key] == pytest.approx(value, rel=EVAL_RTOL, abs=EVAL_ATOL), key


@pytest.mark.parametrize("name", ["dpo-one-process", "dpo"])
def test_precompute_frees_reference(runs, name):
    _, log = runs[name]
    assert "Reference model: none kept in memory" in log


def test_on_the_fly_keeps_reference(single):
    log = (single.parent / "pipeline.log").read_text()
    assert "Reference model: kept in memory" in log


def test_compare_writes_once(runs, single):
    folder, log = runs["compare"]
    one_process = json.loads((single / "results" / "results.json").read_text())["models"]
    two_processes = json.loads((folder / "results.json").read_text())["models"]
    assert log.count("Wrote results.json") == 1
    for name, values in one_process.items():
        for key, value in values.items():
            if key != "model":
                assert two_processes[name][key] == pytest.approx(value, rel=EVAL_RTOL, abs=EVAL_ATOL), f"{name} {key}"


def test_no_staging_left(runs):
    # Staging folders are hidden: beside the output folder for datasets and results, inside it for models.
    for name, (folder, _) in runs.items():
        beside = [path.name for path in folder.parent.glob(f".{folder.name}.*")]
        inside = [path.name for path in folder.glob(".*") if path.is_dir()]
        assert beside == [], name
        assert inside == [], name
