"""Tiny runs of the recipes as subprocesses, shared by the distributed, resume and determinism tests.

The sizes let one process with batch 2B and two processes with batch B see
the same examples in the same steps. Every training run stays inside its
first epoch and every test split divides evenly between two processes, so
accelerate never pads a batch with repeated examples. The base model has no
dropout, because each process draws its own dropout masks.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = ROOT / "recipes" / "accelerate_configs"

# 360 training and 40 test sequences; 72 training and 8 test pairs. SFT and DPO evaluate at their
# last step, so that the metrics land in the last checkpoint's trainer_state.json.
TINY = {
    "data.yaml": {"num_pretrain_sequences": 400, "num_pairs": 80, "sequence_length": 16, "max_prompt_length": 8},
    "pretrain.yaml": {
        "n_layer": 2, "n_head": 2, "n_embd": 32, "dropout": 0.0, "max_steps": 8,
        "per_device_train_batch_size": 32, "per_device_eval_batch_size": 20, "save_steps": 4, "logging_steps": 2,
    },
    "sft.yaml": {
        "max_steps": 4, "per_device_train_batch_size": 16, "per_device_eval_batch_size": 8, "save_steps": 2,
        "logging_steps": 2, "eval_strategy": "steps", "eval_steps": 4,
    },
    # At the recipe's learning rate four steps barely move the policy, so the rewards would be float noise.
    # The reference log-probs are computed on the fly; the distributed tests turn precomputing on.
    "dpo.yaml": {
        "max_steps": 4, "per_device_train_batch_size": 16, "per_device_eval_batch_size": 8, "save_steps": 2,
        "logging_steps": 2, "eval_strategy": "steps", "eval_steps": 4, "learning_rate": 1.0e-3,
        "precompute_ref_log_probs": False,
    },
    "compare.yaml": {"num_samples": 24, "sequence_length": 16, "batch_size": 12, "num_pictured": 5},
}
STAGE_SCRIPTS = {"pretrain": "recipes/pretrain.py", "sft": "recipes/sft.py", "dpo": "recipes/dpo.py"}
# Batch flags that two processes take at half their one-process value, to keep the global batch.
BATCH_FLAGS = ("per_device_train_batch_size", "per_device_eval_batch_size")


def environment(**extra: str) -> dict[str, str]:
    """Return this process's environment with the test interpreter's bin folder first on PATH."""
    return {
        **os.environ,
        # Scripts call python and accelerate from PATH: use this interpreter's environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # The tests run several jobs side by side on two cores. With one thread each, no OpenMP thread
        # spins while it waits for a core, which halved the CPU time of the determinism tests.
        "OMP_NUM_THREADS": "1",
        **extra,
    }


def write_tiny_configs(folder: Path, seed: int = 42) -> Path:
    """Copy the real recipe configs with tiny sizes and ``seed`` everywhere, so the real keys are parsed too."""
    folder.mkdir(parents=True)
    for name, overrides in TINY.items():
        config = yaml.safe_load((ROOT / "recipes" / "config" / name).read_text())
        config.update(overrides, seed=seed)
        (folder / name).write_text(yaml.safe_dump(config))
    return folder


def stage_command(stage: str, configs: Path, data: Path, output: Path, *, processes: int, base: Path | None = None) -> list[str]:
    """Return the launch command of one training stage, with the global batch of the one-process run."""
    if processes == 1:
        command = [sys.executable]
    else:
        command = ["accelerate", "launch", "--config_file", str(ACCELERATE_CONFIGS / "multi_cpu.yaml"), "--num_processes", str(processes)]
    command += [STAGE_SCRIPTS[stage], "--config", str(configs / f"{stage}.yaml"), "--output_dir", str(output)]
    dataset = {"pretrain": "pretrain", "sft": "sft", "dpo": "preference"}[stage]
    command += ["--dataset_name", str(data / dataset)]
    if base is not None:
        command += ["--model_name_or_path", str(base)]
    if processes > 1:
        config = yaml.safe_load((configs / f"{stage}.yaml").read_text())
        for flag in BATCH_FLAGS:
            command += [f"--{flag}", str(config[flag] // processes)]
    return command


class Job:
    """A command running in its own process group, with its output in a log file."""

    def __init__(self, command: list[str], log: Path, env: dict[str, str] | None = None):
        self.command = command
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as handle:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env or environment(), stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _RUNNING.append(self)

    def wait(self, timeout: float = 600) -> str:
        """Wait for the command, fail with the end of its log if it failed, and return the log."""
        returncode = self.process.wait(timeout=timeout)
        output = self.log.read_text()
        assert returncode == 0, f"{' '.join(self.command)} failed ({returncode}):\n{output[-4000:]}"
        return output

    def kill(self) -> None:
        """Send SIGKILL to the whole process group, as a crash or an out-of-memory kill would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


_RUNNING: list[Job] = []


@atexit.register
def _kill_leftovers() -> None:
    # A test that fails while a job runs must not leave the job behind.
    for job in _RUNNING:
        if job.process.poll() is None:
            os.killpg(job.process.pid, signal.SIGKILL)


def start_pipeline(root: Path, seed: int = 42) -> Job:
    """Start the one-command run (recipes/reproduce.sh) with tiny configs, writing under ``root/outputs``."""
    configs = write_tiny_configs(root / "configs", seed)
    env = environment(CONFIG_DIR=str(configs), OUTPUT_DIR=str(root / "outputs"), HF_DATASETS_CACHE=str(root / "cache"))
    return Job(["bash", str(ROOT / "recipes" / "reproduce.sh")], root / "pipeline.log", env)


class SharedPipelines:
    """Tiny pipelines started at most once per test session, by the first test module that needs each."""

    def __init__(self, root: Path):
        self.root = root
        self.jobs: dict[str, Job] = {}

    def start(self, name: str, seed: int) -> None:
        if name not in self.jobs:
            self.jobs[name] = start_pipeline(self.root / name, seed)

    def outputs(self, name: str, seed: int) -> Path:
        """Return the output folder of pipeline ``name``, starting it if needed and waiting for it."""
        self.start(name, seed)
        self.jobs[name].wait()
        return self.root / name / "outputs"

    def configs(self, name: str) -> Path:
        return self.root / name / "configs"


_SHARED: SharedPipelines | None = None


def shared_pipelines(tmp_path_factory) -> SharedPipelines:
    """Return the session's pipelines, so that test modules reuse each other's runs."""
    global _SHARED
    if _SHARED is None:
        _SHARED = SharedPipelines(tmp_path_factory.mktemp("pipelines"))
    return _SHARED


def trainer_state(folder: Path) -> dict:
    """Return ``trainer_state.json`` of the last checkpoint in ``folder``."""
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    return json.loads((checkpoints[-1] / "trainer_state.json").read_text())


def last_train_loss(state: dict) -> float:
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry][-1]


def eval_metrics(state: dict) -> dict[str, float]:
    """Return the last evaluation's metrics, without its timings."""
    entries = [entry for entry in state["log_history"] if "eval_loss" in entry]
    timings = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
    return {key: value for key, value in entries[-1].items() if key.startswith("eval_") and key not in timings}


def file_hashes(folder: Path, pattern: str = "*") -> dict[str, str]:
    """Return the SHA-256 of every file under ``folder`` that matches ``pattern``, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob(pattern))
        if path.is_file()
    }
