"""Run records in output folders, so that a rerun resumes its run and a different run does not overwrite it.

Each stage stores the settings that change its result, and their SHA-256
fingerprint, in ``run_settings.json`` in its output folder. A rerun with the
same fingerprint resumes (or rebuilds the same files). Any other run into a
folder that is not empty needs ``--overwrite_output_dir``. Fields that hold
tokens are never stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from rgb_tokenizer.atomic import write_json_atomically
from rgb_tokenizer.devices import distributed_state
from rgb_tokenizer.errors import UserError

logger = logging.getLogger(__name__)

RUN_FILE = "run_settings.json"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-\d+$")

SECRET_FIELDS = frozenset({"hub_token", "token", "use_auth_token", "push_to_hub_token"})
"""Fields that can hold an access token, left out of run records and of results.json."""

# Settings that change where and how often a run logs, evaluates, saves and
# pushes, or how processes and data loaders are laid out, but not the model
# it trains. A rerun may change them and still resume. bf16, fp16 and use_cpu
# are set from mixed_precision and the machine, so only mixed_precision counts.
_IGNORED_FIELDS = frozenset({
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "local_rank",
    "log_level", "log_level_replica", "log_on_each_node", "disable_tqdm", "report_to", "run_name", "project",
    "per_device_eval_batch_size", "prediction_loss_only", "include_for_metrics", "batch_eval_metrics",
    "enable_jit_checkpoint", "push_to_hub", "skip_memory_metrics", "include_num_input_tokens_seen",
    "do_train", "do_eval", "do_predict", "debug", "dataset_num_proc", "torch_empty_cache_steps",
    "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
    "dataloader_prefetch_factor", "dataloader_multiprocessing_context",
    "use_cpu", "bf16", "fp16", "bf16_full_eval", "fp16_full_eval", "update_model_cards",
})
_IGNORED_PREFIXES = ("logging_", "eval_", "save_", "hub_", "trackio_", "ddp_")


@dataclass
class RunArguments:
    """Recipe settings about the output folder."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Replace a run with other settings in output_dir. A training stage deletes that run's checkpoints "
            "before it trains and keeps its final model until it saves its own. Not needed to resume a run with the "
            "same settings."
        },
    )


def public_settings(*arguments: Any) -> dict[str, Any]:
    """Return the init fields of the given dataclasses as JSON values, without fields that hold tokens."""
    settings: dict[str, Any] = {}
    for instance in arguments:
        for item in dataclasses.fields(instance):
            if item.init and item.name not in SECRET_FIELDS:
                settings[item.name] = getattr(instance, item.name)
    return json.loads(json.dumps(settings, default=_json_value))


def run_settings(*arguments: Any) -> dict[str, Any]:
    """Return the settings that change what a run computes, as JSON values.

    For a trainer, the global batch (per process, times accumulation steps,
    times processes) replaces its parts, so that a run can resume on another
    number of processes with the same global batch.
    """
    settings = {
        name: value
        for name, value in public_settings(*arguments).items()
        if name not in _IGNORED_FIELDS and not name.startswith(_IGNORED_PREFIXES)
    }
    if "per_device_train_batch_size" in settings:
        per_device = settings.pop("per_device_train_batch_size")
        accumulation = settings.pop("gradient_accumulation_steps", 1)
        settings["total_train_batch_size"] = per_device * accumulation * distributed_state().num_processes
    return settings


def run_record(stage: str, *arguments: Any) -> dict[str, Any]:
    """Return the contents of ``run_settings.json`` for this stage and these settings."""
    settings = run_settings(*arguments)
    encoded = json.dumps({"stage": stage, "settings": settings}, sort_keys=True).encode()
    return {"stage": stage, "fingerprint": hashlib.sha256(encoded).hexdigest(), "settings": settings}


def check_output_dir(output_dir: str | os.PathLike, record: dict[str, Any], overwrite: bool) -> bool:
    """Raise ``UserError`` when ``output_dir`` contains another run and ``overwrite`` is False.

    Returns True when the folder contains another run that ``overwrite`` allows
    to replace, and False when it is missing, empty (hidden staging folders
    aside) or contains this same run. Every launched process checks, and all of
    them wait for each other before returning, so that no process looks at
    the folder after another one has started to write into it.
    """
    replace = _check_output_dir(Path(output_dir), record, overwrite)
    distributed_state().wait_for_everyone()
    return replace


def _check_output_dir(folder: Path, record: dict[str, Any], overwrite: bool) -> bool:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output_dir {folder} is a file: pass a folder path")
    if not folder.exists() or not any(not entry.name.startswith(".") for entry in folder.iterdir()):
        return False

    previous = read_run_record(folder)
    if previous is not None and previous.get("fingerprint") == record["fingerprint"]:
        return False
    if overwrite:
        return True
    if previous is None:
        raise UserError(
            f"output_dir {folder} contains files but no readable {RUN_FILE}, so it may belong to another tool or an "
            "older version: choose another --output_dir, or pass --overwrite_output_dir to write into it anyway"
        )
    if previous.get("stage") != record["stage"]:
        found = f"the output of the {previous.get('stage')!r} stage, not of {record['stage']!r}"
    else:
        found = f"a run with other settings ({_differences(previous.get('settings', {}), record['settings'])})"
    raise UserError(
        f"output_dir {folder} contains {found}: rerun with the same settings to resume it, "
        "choose another --output_dir, or pass --overwrite_output_dir to replace it"
    )


def claim_output_dir(output_dir: str | os.PathLike, record: dict[str, Any], overwrite: bool) -> None:
    """Check ``output_dir`` on every process, then record this run in it on the main process.

    When ``overwrite`` replaces another run, its ``checkpoint-N`` folders are
    deleted first, so that this run cannot resume from them. Every process
    waits until the main process is done, so no process resumes from a
    checkpoint that is being deleted.
    """
    replace = check_output_dir(output_dir, record, overwrite)
    state = distributed_state()
    if state.is_main_process:
        folder = Path(output_dir)
        if replace:
            for entry in sorted(folder.iterdir()):
                if entry.is_dir() and _CHECKPOINT_NAME.match(entry.name):
                    logger.warning("Deleting %s of the run that --overwrite_output_dir replaces", entry)
                    shutil.rmtree(entry)
        write_run_record(folder, record)
    state.wait_for_everyone()


def read_run_record(folder: str | os.PathLike) -> dict[str, Any] | None:
    """Return the run record stored in ``folder``, or None when it is missing or unreadable."""
    try:
        record = json.loads((Path(folder) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_run_record(folder: str | os.PathLike, record: dict[str, Any]) -> None:
    """Write ``run_settings.json`` into ``folder`` through a temporary file, so it is never half-written."""
    write_json_atomically(Path(folder) / RUN_FILE, record)


def _differences(previous: dict[str, Any], current: dict[str, Any], limit: int = 3) -> str:
    changed = [
        f"{name} {previous.get(name, 'unset')!r} -> {current.get(name, 'unset')!r}"
        for name in sorted(set(previous) | set(current))
        if previous.get(name, "unset") != current.get(name, "unset")
    ]
    summary = ", ".join(changed[:limit])
    return summary + (f" and {len(changed) - limit} more" if len(changed) > limit else "")


def _json_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)
