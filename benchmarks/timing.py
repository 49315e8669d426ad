"""Helpers shared by the benchmarks: timed subprocesses, FLOP counts and the machine description."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
GNU_TIME = "/usr/bin/time"
CPU_ACCELERATE_CONFIG = "recipes/accelerate_configs/cpu.yaml"


def parse_gnu_time(text: str) -> dict:
    """Read wall time (s) and peak resident memory (MiB) from the output of ``/usr/bin/time -v``.

    GNU time reports the largest resident set of the command and of every
    descendant it waited for, so ``accelerate launch`` reports its training process.
    """
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if not wall or not rss:
        raise ValueError(f"no wall time or peak memory in /usr/bin/time output: {text[-500:]!r}")
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return {"wall_s": seconds, "max_rss_mib": int(rss.group(1)) / 1024}


def run_timed(command: list[str], log_path: Path, env: dict | None = None, unset: tuple[str, ...] = ()) -> dict:
    """Run ``command`` from the repository root under ``/usr/bin/time -v``; its output goes to ``log_path``.

    ``env`` adds to this process's environment and ``unset`` removes variables from it.

    Raises ``RuntimeError`` with the log's path when the command fails.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    time_path = log_path.with_suffix(".time")
    with log_path.open("w") as log:
        completed = subprocess.run(
            [GNU_TIME, "-v", "-o", str(time_path), *command],
            cwd=REPO_ROOT,
            env={key: value for key, value in {**os.environ, **(env or {})}.items() if key not in unset},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit status {completed.returncode}; see {log_path}")
    return parse_gnu_time(time_path.read_text())


def launch_command(script: str, *flags: str) -> list[str]:
    """Return the command that the one-command run uses for a recipe on the CPU."""
    # The accelerate installed beside the running Python, whether or not its environment is activated.
    accelerate = str(Path(sys.executable).parent / "accelerate")
    return [accelerate, "launch", "--config_file", CPU_ACCELERATE_CONFIG, script, *flags]


def trainer_metrics(log_text: str) -> dict:
    """Return the last train_runtime, train_samples_per_second, train_loss and eval_loss that a Trainer printed."""
    runtime = re.findall(r"'train_runtime': '?([\d.]+)", log_text)
    samples = re.findall(r"'train_samples_per_second': '?([\d.]+)", log_text)
    if not runtime or not samples:
        raise ValueError("no train_runtime or train_samples_per_second in the training log")
    metrics = {"train_runtime_s": float(runtime[-1]), "train_samples_per_second": float(samples[-1])}
    # The mean training loss, and the last test-split loss, show that a faster setting learned as much.
    for key in ("train_loss", "eval_loss"):
        # The Trainer prints a dict per log step; log_metrics() prints "  eval_loss = 0.5483".
        values = re.findall(rf"'{key}': '?([\d.]+)|^\s+{key}\s+=\s+([\d.]+)", log_text, re.MULTILINE)
        values = [logged or printed for logged, printed in values]
        metrics[key] = float(values[-1]) if values else None
    return metrics


def gpt2_training_flops_per_token(n_layer: int, n_embd: int, context: int, vocab_size: int, forward_only: bool = False) -> float:
    """Matmul FLOPs per token of a GPT-2 forward and backward pass (forward only with ``forward_only``).

    Forward: 2 FLOPs per weight of the matmuls (12 * n_layer * n_embd**2 in the
    blocks, vocab_size * n_embd in the LM head), plus 4 * n_layer * context * n_embd
    for the attention scores and the weighted sum of values. Attention is counted
    over the whole context, as in appendix B of the PaLM paper,
    although the causal mask would halve it.
    The backward pass costs twice the forward pass. Embedding lookups, layer norms,
    softmax and the optimizer are left out.
    """
    matmul_weights = 12 * n_layer * n_embd**2 + vocab_size * n_embd
    forward = 2 * matmul_weights + 4 * n_layer * context * n_embd
    return forward if forward_only else 3 * forward


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def busy_cores(seconds: float = 10.0) -> float:
    """Return how many cores were busy on average over the next ``seconds``, from /proc/stat."""

    def read() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = values[3] + values[4]  # idle and iowait
        return sum(values) - idle, sum(values)

    busy_before, total_before = read()
    time.sleep(seconds)
    busy_after, total_after = read()
    return (busy_after - busy_before) / (total_after - total_before) * (os.cpu_count() or 1)


def wait_for_quiet(threshold: float, deadline_utc: str | None, own_load: bool = False, poll_s: float = 60.0) -> dict:
    """Wait until the machine is quiet or the UTC time passes ``deadline_utc`` (HH:MM); return what was seen.

    Quiet means a 1-minute load average under ``threshold``. With ``own_load``
    (this process has just been computing, which keeps the 1-minute average up
    for a minute or two) a 10-second sample with fewer than ``threshold`` busy
    cores also counts as quiet.
    """
    waited = 0.0
    while True:
        one_minute = load_average()[0]
        cores = busy_cores() if own_load and one_minute >= threshold else None
        now = time.strftime("%H:%M", time.gmtime())
        state = {"load_1min": one_minute, "busy_cores_10s": cores, "waited_s": waited, "started_utc": now}
        if one_minute < threshold or (cores is not None and cores < threshold):
            return {"quiet": True, **state}
        if deadline_utc is not None and now >= deadline_utc:
            return {"quiet": False, **state}
        print(f"{now} UTC: 1-minute load {one_minute:.2f} is at least {threshold}; checking again in {poll_s:.0f} s", flush=True)
        time.sleep(poll_s)
        waited += poll_s


def describe_machine() -> dict:
    cpu_model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu_model = names[0] if names else cpu_model
    meminfo = Path("/proc/meminfo")
    memory_gib = None
    if meminfo.exists():
        match = re.search(r"MemTotal:\s*(\d+) kB", meminfo.read_text())
        memory_gib = round(int(match.group(1)) / 2**20, 1) if match else None

    import accelerate
    import datasets
    import transformers
    import trl

    from rgb_tokenizer.devices import cpu_has_fast_bf16

    return {
        "cpu": cpu_model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": memory_gib,
        "cpu_has_fast_bf16": cpu_has_fast_bf16(),
        "cuda_devices": torch.cuda.device_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "datasets": datasets.__version__,
        "accelerate": accelerate.__version__,
        "load_average_at_start": load_average(),
    }
