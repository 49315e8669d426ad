"""A pretraining run killed with SIGKILL, then rerun with the same command, ends where an uninterrupted run ends.

The rerun restores the weights, optimizer, scheduler, random state and data
position of the last complete checkpoint, so on one machine it repeats the
uninterrupted run's arithmetic, and here the runs agree exactly. The
tolerances (relative 1e-6 on logged values, absolute 1e-6 on weights) only
allow for another machine whose kernels round differently.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from rgb_tokenizer.checkpoints import is_complete_checkpoint, last_complete_checkpoint
from tiny_runs import ACCELERATE_CONFIGS, Job, environment, write_tiny_configs

MAX_STEPS = 24
SAVE_STEPS = 4
LOG_RTOL = 1e-6
WEIGHT_ATOL = 1e-6
TIMINGS = ("_runtime", "_samples_per_second", "_steps_per_second")


def pretrain_command(configs: Path, data: Path, output: Path) -> list[str]:
    # Dropout at GPT-2's default, so that the rerun must also restore the random state to match.
    return [
        "accelerate", "launch", "--config_file", str(ACCELERATE_CONFIGS / "cpu.yaml"),
        "recipes/pretrain.py", "--config", str(configs / "pretrain.yaml"), "--dataset_name", str(data / "pretrain"),
        "--output_dir", str(output), "--max_steps", str(MAX_STEPS), "--save_steps", str(SAVE_STEPS), "--dropout", "0.1",
        # The trainer reports the step it resumes from at info level.
        "--log_level", "info",
    ]


def wait_for_checkpoint(folder: Path, job: Job, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not is_complete_checkpoint(folder):
        assert job.process.poll() is None, f"the run ended before {folder} was saved:\n{job.log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{folder} was not saved within {timeout} s"
        time.sleep(0.02)


def checkpoint_steps(folder: Path) -> list[int]:
    return sorted(int(path.name.split("-")[1]) for path in folder.glob("checkpoint-*"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run pretraining uninterrupted and, beside it, killed after its first checkpoint and rerun."""
    root = tmp_path_factory.mktemp("resume")
    configs = write_tiny_configs(root / "configs")
    env = environment(HF_DATASETS_CACHE=str(root / "cache"))
    data = root / "data"
    Job([sys.executable, "data/build_datasets.py", "--config", str(configs / "data.yaml"), "--output_dir", str(data)], root / "data.log", env).wait()

    full = Job(pretrain_command(configs, data, root / "full"), root / "full.log", env)
    killed = Job(pretrain_command(configs, data, root / "killed"), root / "killed.log", env)
    # The trainer writes trainer_state.json last, so the kill comes after a whole checkpoint and mid-training.
    wait_for_checkpoint(root / "killed" / f"checkpoint-{SAVE_STEPS}", killed)
    killed.kill()
    steps_at_kill = checkpoint_steps(root / "killed")
    finished_before_kill = (root / "killed" / "model.safetensors").exists()

    # What a kill during the next save leaves behind: the weights, and a trainer_state.json cut short.
    last = last_complete_checkpoint(root / "killed")
    partial = root / "killed" / f"checkpoint-{int(last.rsplit('-', 1)[1]) + SAVE_STEPS}"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(last, partial)
    state_text = (partial / "trainer_state.json").read_text()
    (partial / "trainer_state.json").write_text(state_text[: len(state_text) // 2])

    rerun_log = Job(pretrain_command(configs, data, root / "killed"), root / "rerun.log", env).wait()
    full.wait()
    return {
        "full": root / "full", "resumed": root / "killed", "rerun_log": rerun_log, "last": last, "partial": partial,
        "steps_at_kill": steps_at_kill, "finished_before_kill": finished_before_kill,
    }


def final_state(folder: Path) -> dict:
    return json.loads((folder / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())


def without_timings(entry: dict) -> dict:
    return {key: value for key, value in entry.items() if not key.endswith(TIMINGS)}


def test_killed_mid_training(runs):
    assert not runs["finished_before_kill"]
    assert max(runs["steps_at_kill"]) < MAX_STEPS


def test_rerun_resumes_last_complete(runs):
    assert f"Resuming from {runs['last']}" in runs["rerun_log"]


def test_rerun_continues_step_count(runs):
    step = int(runs["last"].rsplit("-", 1)[1])
    assert re.search(rf"Resuming training from checkpoint with epoch \d+ and global step {step}(?!\d)", runs["rerun_log"])


def test_rerun_skips_partial(runs):
    assert f"Skipping incomplete checkpoint {runs['partial']}" in runs["rerun_log"]


def test_same_final_step(runs):
    assert final_state(runs["resumed"])["global_step"] == MAX_STEPS
    assert final_state(runs["full"])["global_step"] == MAX_STEPS


def test_same_trainer_state(runs):
    full = final_state(runs["full"])
    resumed = final_state(runs["resumed"])
    assert [entry["step"] for entry in resumed["log_history"]] == [entry["step"] for entry in full["log_history"]]
    for expected, actual in zip(full["log_history"], resumed["log_history"]):
        expected, actual = without_timings(expected), without_timings(actual)
        assert actual.keys() == expected.keys()
        for key, value in expected.items():
            assert actual[key] == pytest.approx(value, rel=LOG_RTOL), f"step {expected['step']} {key}"
    for key in ("global_step", "max_steps", "num_train_epochs", "epoch", "total_flos", "train_batch_size"):
        assert resumed[key] == full[key], key


def test_same_weights(runs):
    full = load_file(runs["full"] / "model.safetensors")
    resumed = load_file(runs["resumed"] / "model.safetensors")
    assert resumed.keys() == full.keys()
    for name, weights in full.items():
        assert abs(resumed[name] - weights).max() <= WEIGHT_ATOL, name


@pytest.mark.parametrize("damage", ["no_state", "truncated_state", "no_weights"])
def test_incomplete_checkpoint_skipped(tmp_path, caplog, damage):
    for step in (2, 4):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    newest = tmp_path / "checkpoint-4"
    if damage == "no_state":
        (newest / "trainer_state.json").unlink()
    elif damage == "truncated_state":
        (newest / "trainer_state.json").write_text('{"global_step": ')
    else:
        (newest / "model.safetensors").unlink()

    with caplog.at_level(logging.WARNING, logger="rgb_tokenizer.checkpoints"):
        found = last_complete_checkpoint(tmp_path)

    assert found == str(tmp_path / "checkpoint-2")
    assert f"Skipping incomplete checkpoint {newest}" in caplog.text


def test_no_checkpoint_found(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-x").mkdir()
    assert last_complete_checkpoint(tmp_path) is None
    assert last_complete_checkpoint(tmp_path / "missing") is None
