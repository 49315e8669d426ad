"""Wall time, peak memory and training throughput of each stage of one `bash recipes/reproduce.sh` run.

    python -m benchmarks.stages --output_dir /tmp/rgb-benchmarks/full-run

The run is the user's one command with its default configs. Every `python` and
`accelerate` that reproduce.sh starts is found on PATH, so the script puts a
wrapper for each first on PATH: the wrapper runs the real program under
`/usr/bin/time -v`, which gives each stage's numbers without changing reproduce.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
from pathlib import Path

import yaml
from datasets import load_dataset

from rgb_tokenizer.tokenizer import build_tokenizer

from benchmarks.timing import REPO_ROOT, gpt2_training_flops_per_token, parse_gnu_time, run_timed, trainer_metrics

# reproduce.sh prints "== <stage> (HH:MM:SS)" before each stage.
STAGE_MARKER = re.compile(r"^== (datasets|pretraining|SFT|DPO|comparison|done) \(", re.MULTILINE)
# The script each stage runs, as it appears on the wrapped command line.
STAGE_SCRIPTS = {
    "data/build_datasets.py": "datasets",
    "recipes/pretrain.py": "pretraining",
    "recipes/sft.py": "SFT",
    "recipes/dpo.py": "DPO",
    "recipes/compare.py": "comparison",
}
WRAPPER = """#!/bin/sh
# Runs {program} under /usr/bin/time -v and keeps its command line next to the report.
stamp=$(date +%s%N)
printf '%s\\n' "$*" > "{time_dir}/$stamp.cmd"
exec /usr/bin/time -v -o "{time_dir}/$stamp.time" "{program}" "$@"
"""


def write_wrappers(wrapper_dir: Path, time_dir: Path) -> None:
    wrapper_dir.mkdir(parents=True, exist_ok=True)
    time_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    for name in ("python", "accelerate"):
        wrapper = wrapper_dir / name
        wrapper.write_text(WRAPPER.format(program=bin_dir / name, time_dir=time_dir))
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)


def read_stage_times(time_dir: Path) -> dict[str, dict]:
    stages = {}
    for command_file in sorted(time_dir.glob("*.cmd")):
        command = command_file.read_text()
        stage = next((name for script, name in STAGE_SCRIPTS.items() if script in command), None)
        if stage is None:  # the one-line GPU probe at the top of reproduce.sh
            stage = "GPU probe"
        stages[stage] = parse_gnu_time(command_file.with_suffix(".time").read_text())
    return stages


def split_log_by_stage(log_text: str) -> dict[str, str]:
    markers = list(STAGE_MARKER.finditer(log_text))
    return {
        marker.group(1): log_text[marker.end() : markers[i + 1].start() if i + 1 < len(markers) else len(log_text)]
        for i, marker in enumerate(markers)
    }


def tokens_per_row(output_dir: Path) -> dict[str, float]:
    """Mean tokens per training row of each stage: BOS + tiles + EOS, and both completions for DPO."""
    tokenizer = build_tokenizer()

    def count(texts: list[str]) -> float:
        # The tokenizer adds BOS; the recipes and TRL append EOS.
        return sum(len(ids) + 1 for ids in tokenizer(texts)["input_ids"]) / len(texts)

    pretrain = load_dataset(str(output_dir / "data" / "pretrain"), split="train")
    sft = load_dataset(str(output_dir / "data" / "sft"), split="train")
    preference = load_dataset(str(output_dir / "data" / "preference"), split="train")
    return {
        "pretraining": count(list(pretrain["text"])),
        "SFT": count([row["prompt"] + row["completion"] for row in sft]),
        "DPO": count([row["prompt"] + row["chosen"] for row in preference])
        + count([row["prompt"] + row["rejected"] for row in preference]),
    }


def training_throughput(log_text: str, output_dir: Path, config_dir: Path, peak_flops: float | None) -> dict[str, dict]:
    """Tokens/s and model FLOP utilisation of each training stage, from the Trainer's own train_runtime.

    DPO counts the policy's forward and backward on chosen and rejected, plus the
    reference model's forward unless its log-probs are computed before training
    (then that pass is outside train_runtime).
    """
    logs = split_log_by_stage(log_text)
    rows = tokens_per_row(output_dir)
    pretrain_config = yaml.safe_load((config_dir / "pretrain.yaml").read_text())
    dpo_config = yaml.safe_load((config_dir / "dpo.yaml").read_text())
    vocab_size = len(build_tokenizer())
    results = {}
    for stage in ("pretraining", "SFT", "DPO"):
        metrics = trainer_metrics(logs[stage])
        context = rows[stage] / (2 if stage == "DPO" else 1)
        flops_per_token = gpt2_training_flops_per_token(pretrain_config["n_layer"], pretrain_config["n_embd"], context, vocab_size)
        if stage == "DPO" and not dpo_config.get("precompute_ref_log_probs", False):
            flops_per_token += gpt2_training_flops_per_token(
                pretrain_config["n_layer"], pretrain_config["n_embd"], context, vocab_size, forward_only=True
            )
        tokens_per_second = metrics["train_samples_per_second"] * rows[stage]
        achieved = tokens_per_second * flops_per_token
        results[stage] = {
            **metrics,
            "tokens_per_row": rows[stage],
            "tokens_per_second": tokens_per_second,
            "flops_per_token": flops_per_token,
            "achieved_flops": achieved,
            "mfu": achieved / peak_flops if peak_flops else None,
        }
    return results


def run_full_experiment(output_dir: Path, work_dir: Path, config_dir: Path | None = None) -> dict:
    """Run `bash recipes/reproduce.sh` into ``output_dir``; return the whole run's and each stage's numbers."""
    if output_dir.exists() and any(output_dir.iterdir()):
        # A rerun into the same folder would resume from its checkpoints and time only the rest.
        raise FileExistsError(f"{output_dir} is not empty: remove it or choose another --output_dir")
    wrapper_dir = work_dir / "wrappers"
    time_dir = work_dir / "stage-times"
    for old in [*time_dir.glob("*.cmd"), *time_dir.glob("*.time")]:
        old.unlink()
    write_wrappers(wrapper_dir, time_dir)
    env = {"OUTPUT_DIR": str(output_dir), "PATH": f"{wrapper_dir}{os.pathsep}{os.environ['PATH']}"}
    if config_dir is not None:
        env["CONFIG_DIR"] = str(config_dir)
    log_path = work_dir / "reproduce.log"
    whole = run_timed(["bash", "recipes/reproduce.sh"], log_path, env=env)
    return {"whole_run": whole, "stages": read_stage_times(time_dir), "log": str(log_path)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="/tmp/rgb-benchmarks/full-run", help="OUTPUT_DIR of the run.")
    parser.add_argument("--work_dir", default="/tmp/rgb-benchmarks/bench/stages", help="Folder for the wrappers, the log and the timings.")
    parser.add_argument("--config_dir", default=None, help="CONFIG_DIR of the run; unset, recipes/config.")
    args = parser.parse_args()
    record = run_full_experiment(Path(args.output_dir), Path(args.work_dir), Path(args.config_dir) if args.config_dir else None)
    config_dir = Path(args.config_dir) if args.config_dir else REPO_ROOT / "recipes" / "config"
    record["training"] = training_throughput(Path(record["log"]).read_text(), Path(args.output_dir), config_dir, None)
    print(json.dumps(record, indent=2))
