"""Markdown tables of a benchmark record written by `python -m benchmarks.run_all`."""

from __future__ import annotations

from pathlib import Path


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def gflops(value: float) -> str:
    return f"{value / 1e9:,.0f}"


def machine_section(record: dict) -> str:
    machine = record["machine"]
    loads = ", ".join(
        f"{section} {state['load_1min']:.2f}"
        + (f" ({state['busy_cores_10s']:.2f} busy cores over 10 s)" if state.get("busy_cores_10s") is not None else "")
        + ("" if state["quiet"] else " (busy: measured anyway)")
        for section, state in record.get("load_before_section", {}).items()
    )
    after = ", ".join(
        f"{section} " + "/".join(f"{value:.2f}" for value in loads_after)
        for section, loads_after in record.get("load_after_section", {}).items()
    )
    return (
        f"Machine: {machine['cpu']}, {machine['cpu_count']} cores, {machine['memory_gib']} GiB, "
        f"{machine['cuda_devices']} CUDA devices, bf16 instructions: {machine['cpu_has_fast_bf16']}. "
        f"torch {machine['torch']}, transformers {machine['transformers']}, trl {machine['trl']}, "
        f"datasets {machine['datasets']}, accelerate {machine['accelerate']}, Python {machine['python']}. "
        f"Record started {record['started_utc']} UTC. 1-minute load average when each section started: {loads}. "
        f"1-, 5- and 15-minute load averages when each section ended: {after}."
    )


def stages_section(record: dict) -> str:
    full = record["full_run"]
    training = full.get("training", {})
    rows = []
    for stage, timing in full["stages"].items():
        train = training.get(stage)
        rows.append([
            stage,
            f"{timing['wall_s']:.1f}",
            f"{timing['max_rss_mib']:,.0f}",
            f"{train['train_runtime_s']:.1f}" if train else "",
            f"{train['tokens_per_second']:,.0f}" if train else "",
            f"{train['mfu']:.1%}" if train and train["mfu"] is not None else "",
        ])
    whole = full["whole_run"]
    rows.append(["whole run (`bash recipes/reproduce.sh`)", f"{whole['wall_s']:.1f}", f"{whole['max_rss_mib']:,.0f}", "", "", ""])
    return table(["stage", "wall (s)", "peak RSS (MiB)", "train_runtime (s)", "training tokens/s", "MFU"], rows)


def efficiency_section(record: dict) -> str:
    parts = []
    peak = record["throughput"]["peak_matmul_flops"]
    parts.append(table(["dtype", "peak matmul GFLOP/s (2048 x 2048)"], [[dtype, gflops(value)] for dtype, value in peak.items()]))
    if "full_run" in record:
        rows = [
            [stage, f"{t['tokens_per_row']:.1f}", f"{t['tokens_per_second']:,.0f}", f"{t['flops_per_token'] / 1e6:.1f}", gflops(t["achieved_flops"]), f"{t['mfu']:.1%}" if t["mfu"] else ""]
            for stage, t in record["full_run"]["training"].items()
        ]
        parts.append(table(["stage (full run)", "tokens per row", "tokens/s", "MFLOP per token", "achieved GFLOP/s", "MFU"], rows))
    rows = []
    for name, comparison in record["throughput"]["comparisons"].items():
        variants = comparison["variants"]
        first = variants[0]["tokens_per_second"]
        for variant in variants:
            setting = variant[comparison["varied"]]
            rows.append([name, str(setting), f"{variant['seconds_per_step'] * 1000:.0f}", f"{variant['tokens_per_second']:,.0f}", f"{variant['mfu']:.1%}", f"{variant['tokens_per_second'] / first:.2f}"])
    parts.append(table(["comparison", "setting", "ms per step", "tokens/s", "MFU", "tokens/s relative to first row"], rows))
    return "\n\n".join(parts)


def sampling_section(record: dict) -> str:
    sampling = record["sampling"]
    rows = [
        [name, str(result["batch_size"]), str(result["num_samples"]), f"{result['seconds']:.2f}", f"{result['sequences_per_second']:.1f}"]
        for name, result in (("batched", sampling["batched"]), ("one at a time", sampling["one_at_a_time"]))
    ]
    first = sampling["first_call_seconds"]
    return (
        table(["sampling", "sequences per generate()", "sequences", "seconds", "sequences/s"], rows)
        + f"\n\nBatched / one at a time: {sampling['speedup']:.1f}x.\n\n"
        + table(
            ["first batched call in a fresh process", "seconds"],
            [["glibc malloc defaults", f"{first['default_malloc']:.2f}"], ["MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ set", f"{first['tuned_malloc']:.2f}"]],
        )
    )


def growth_section(record: dict) -> str:
    growth = record["growth"]
    rows = [
        [p["stage"], str(p["length"]), f"{p['rows']:,}", f"{p['wall_s']:.1f}", f"{p['train_runtime_s']:.1f}", f"{p['max_rss_mib']:,.0f}"]
        for p in growth["points"]
    ]
    measures = {"wall_s": "wall", "train_runtime_s": "train_runtime"}
    fits = [
        [f["stage"], str(f["length"]), measures[f["measure"]], f"{f['intercept']:.1f}", f"{f['slope'] * 1000:.2f}", f"{f['max_relative_residual']:+.1%}", f"{f['slope_ratio']:.2f}"]
        for f in growth["fits"]
    ]
    return "\n\n".join([
        table(["stage", "tiles per sequence", "rows (sequences or pairs)", "wall (s)", "train_runtime (s)", "peak RSS (MiB)"], rows),
        table(["stage", "tiles", "time", "fixed cost (s)", "seconds per 1,000 rows", "largest residual", "slope ratio (largest / smallest sizes)"], fits),
    ])


def before_section(record: dict) -> str:
    rows = []
    for stage, before in record["before"].items():
        after = record.get("full_run", {}).get("stages", {}).get(stage)
        after_train = record.get("full_run", {}).get("training", {}).get(stage)
        rows.append([
            stage,
            " ".join(before["flags"]),
            f"{before['wall_s']:.1f}",
            f"{after['wall_s']:.1f}" if after else "",
            f"{before['wall_s'] / after['wall_s']:.2f}" if after else "",
            f"{before['train_runtime_s']:.1f}" if before["train_runtime_s"] is not None else "",
            f"{after_train['train_runtime_s']:.1f}" if after_train else "",
            loss_pair(before, after_train, "train_loss") if after_train else "",
            loss_pair(before, after_train, "eval_loss") if after_train else "",
        ])
    header = ["stage", "old settings", "wall before (s)", "wall after (s)", "before / after", "train_runtime before (s)", "train_runtime after (s)", "train_loss before / after", "eval_loss before / after"]
    return table(header, rows)


def loss_pair(before: dict, after: dict | None, key: str) -> str:
    def show(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    return f"{show(before.get(key))} / {show(after.get(key) if after else None)}"


def write_markdown(record: dict, path: Path) -> None:
    sections = [("Machine", machine_section)]
    for key, title, render in (
        ("full_run", "Stage timings", stages_section),
        ("throughput", "Training efficiency", efficiency_section),
        ("sampling", "Sampling", sampling_section),
        ("growth", "Growth", growth_section),
        ("before", "Before and after the speed changes", before_section),
    ):
        if key in record:
            sections.append((title, render))
    text = "\n\n".join(f"## {title}\n\n{render(record)}" for title, render in sections)
    if "full_run" in record:
        text += f"\n\n## Results of the full run\n\n{record['full_run']['results_md']}"
    path.write_text(text + "\n")
