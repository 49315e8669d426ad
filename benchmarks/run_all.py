"""Run every benchmark in one process and write one JSON and one Markdown record.

On a quiet 2-core CPU the five sections took 14 minutes: full run 2.5, throughput 1.7,
sampling 0.3, growth 5.4 and before 3.7.

    python -m benchmarks.run_all                       # the full set
    python -m benchmarks.run_all --tiny --max_load 100 # tiny settings, to check the scripts
    python -m benchmarks.run_all --sections throughput sampling

Sections, in the order they run:
  full_run    `bash recipes/reproduce.sh` with each stage under /usr/bin/time -v, and each training stage's tokens/s
  throughput  peak matmul FLOP/s (bf16, fp32), each training stage's MFU, and training-step variants
              (precision, attention, dropout, batch size)
  sampling    batched against one-at-a-time sampling with the full run's base model
  growth      pretraining and DPO at 3 dataset sizes and 2 sequence lengths
  before      pretraining, SFT, DPO and the comparison with the settings they had before the speed changes,
              on the full run's data

Before each section the script waits until the 1-minute load average is below
--max_load, or until --deadline_utc, and records which happened: timings taken on
a busy machine are wrong. After the first section, fewer than --max_load busy cores
over 10 seconds also count as quiet, because the script's own work keeps the
1-minute average up for a minute or two after it stops.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import yaml

from benchmarks import growth, sampling_speed, stages, throughput
from benchmarks.sampling_speed import TUNED_MALLOC
from benchmarks.report import write_markdown
from benchmarks.timing import REPO_ROOT, describe_machine, launch_command, load_average, run_timed, wait_for_quiet

SECTIONS = ("full_run", "throughput", "sampling", "growth", "before")

# Settings of recipes/config/pretrain.yaml, sft.yaml and dpo.yaml before the speed changes.
BEFORE_FLAGS = {
    "pretraining": ["--max_steps", "-1", "--num_train_epochs", "1", "--dropout", "0.1", "--attn_implementation", "sdpa"],
    "SFT": ["--attn_implementation", "sdpa"],
    "DPO": ["--precompute_ref_log_probs", "false", "--attn_implementation", "sdpa"],
}


def tiny_config_dir(target: Path) -> Path:
    """Copy recipes/config with tiny dataset sizes, so that a check of the scripts takes minutes."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "recipes" / "config", target)
    data = yaml.safe_load((target / "data.yaml").read_text())
    data.update(num_pretrain_sequences=600, num_pairs=40)
    (target / "data.yaml").write_text(yaml.safe_dump(data))
    compare = yaml.safe_load((target / "compare.yaml").read_text())
    compare.update(num_samples=20, batch_size=20, num_pictured=5)
    (target / "compare.yaml").write_text(yaml.safe_dump(compare))
    return target


def run_before(full_run_dir: Path, work_dir: Path, config_dir: Path) -> dict:
    """Run each stage once more with its settings from before the speed changes, on the full run's datasets."""
    results = {}
    commands = {
        "pretraining": (
            "recipes/pretrain.py", config_dir / "pretrain.yaml",
            ["--dataset_name", str(full_run_dir / "data" / "pretrain")],
        ),
        "SFT": (
            "recipes/sft.py", config_dir / "sft.yaml",
            ["--model_name_or_path", str(full_run_dir / "base"), "--dataset_name", str(full_run_dir / "data" / "sft")],
        ),
        "DPO": (
            "recipes/dpo.py", config_dir / "dpo.yaml",
            ["--model_name_or_path", str(full_run_dir / "base"), "--dataset_name", str(full_run_dir / "data" / "preference")],
        ),
    }
    commands["comparison"] = (
        "recipes/compare.py", config_dir / "compare.yaml",
        ["--base_model", str(full_run_dir / "base"), "--policies", f"sft={full_run_dir / 'sft'}", f"dpo={full_run_dir / 'dpo'}"],
    )
    for stage, (script, config, flags) in commands.items():
        output = work_dir / stage
        shutil.rmtree(output, ignore_errors=True)
        log = work_dir / f"{stage}.log"
        command = launch_command(script, "--config", str(config), *flags, "--output_dir", str(output), *BEFORE_FLAGS.get(stage, []))
        if stage == "comparison":
            # The comparison's settings did not change; its process ran with glibc's default allocator settings.
            timing = run_timed(command, log, unset=tuple(TUNED_MALLOC))
            results[stage] = {**timing, "flags": ["(unset) " + " ".join(TUNED_MALLOC)], "train_runtime_s": None}
        else:
            timing = run_timed(command, log)
            results[stage] = {**timing, "flags": BEFORE_FLAGS[stage], **stages.trainer_metrics(log.read_text())}
        shutil.rmtree(output)
    return results


def add_stage_mfu(record: dict) -> None:
    """Divide each training stage's achieved FLOP/s by the peak matmul FLOP/s of the precision it trained in."""
    if "full_run" not in record or "throughput" not in record:
        return
    precision = "bf16" if record["machine"]["cpu_has_fast_bf16"] else "fp32"
    peak = record["throughput"]["peak_matmul_flops"][precision]
    for stage in record["full_run"]["training"].values():
        stage["mfu"] = stage["achieved_flops"] / peak
        stage["mfu_precision"] = precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="Sections to run.")
    parser.add_argument("--work_dir", default="/tmp/rgb-benchmarks/bench", help="Folder for logs, models and the record.")
    parser.add_argument("--full_run_dir", default="/tmp/rgb-benchmarks/full-run", help="OUTPUT_DIR of the one-command run; removed first.")
    parser.add_argument("--max_load", type=float, default=0.6, help="1-minute load average under which a section may start.")
    parser.add_argument("--deadline_utc", default=None, help="HH:MM (UTC) after which sections start whatever the load.")
    parser.add_argument("--growth_sizes_40", type=int, nargs=3, default=[1000, 3000, 9000], help="Pretraining sequences of 40 tiles in the growth section.")
    parser.add_argument("--growth_sizes_160", type=int, nargs=3, default=[250, 750, 2250], help="Pretraining sequences of 160 tiles in the growth section.")
    parser.add_argument("--tiny", action="store_true", help="Tiny settings that check the scripts; the numbers mean nothing.")
    args = parser.parse_args()

    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    full_run_dir = Path(args.full_run_dir)
    config_dir = tiny_config_dir(work_dir / "tiny-config") if args.tiny else REPO_ROOT / "recipes" / "config"
    record: dict = {"machine": describe_machine(), "tiny": args.tiny, "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    record["load_before_section"] = {}
    record_path = work_dir / "record.json"

    def save() -> None:
        add_stage_mfu(record)
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        write_markdown(record, work_dir / "record.md")

    for section in args.sections:
        own_load = section != args.sections[0]
        record["load_before_section"][section] = wait_for_quiet(args.max_load, args.deadline_utc, own_load)
        print(f"{time.strftime('%H:%M:%S', time.gmtime())} UTC: section {section}", flush=True)
        started = time.perf_counter()

        if section == "throughput":
            record["throughput"] = throughput.run_comparisons(steps=2 if args.tiny else 8, matmul_seconds=0.3 if args.tiny else 3.0)

        elif section == "full_run":
            shutil.rmtree(full_run_dir, ignore_errors=True)
            full = stages.run_full_experiment(full_run_dir, work_dir / "stages", None if not args.tiny else config_dir)
            # MFU is filled in by add_stage_mfu() once the throughput section has measured the peak.
            full["training"] = stages.training_throughput(Path(full["log"]).read_text(), full_run_dir, config_dir, None)
            full["results_md"] = (full_run_dir / "results" / "results.md").read_text()
            full["results"] = json.loads((full_run_dir / "results" / "results.json").read_text())["models"]
            record["full_run"] = full

        elif section == "sampling":
            record["sampling"] = sampling_speed.compare_sampling(
                str(full_run_dir / "base"), num_samples=20 if args.tiny else 200, num_single=5 if args.tiny else 50
            )

        elif section == "before":
            record["before"] = run_before(full_run_dir, work_dir / "before", config_dir)

        elif section == "growth":
            sizes = {40: [200, 400, 800], 160: [100, 200, 400]} if args.tiny else {40: args.growth_sizes_40, 160: args.growth_sizes_160}
            points = growth.measure_growth(work_dir / "growth", sizes, pairs_per_sequence=0.125)
            record["growth"] = {"sizes": {str(k): v for k, v in sizes.items()}, "points": points, "fits": growth.summarise(points)}

        record.setdefault("section_seconds", {})[section] = time.perf_counter() - started
        # Other work that started during the section shows here, since the wait above only checks the start.
        record.setdefault("load_after_section", {})[section] = load_average()
        save()
    record["finished_utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    save()
    print(f"Wrote {record_path} and {work_dir / 'record.md'}")


if __name__ == "__main__":
    main()
