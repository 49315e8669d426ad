"""Resuming from checkpoints and saving final models without leaving half-written files."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from transformers import Trainer, TrainerState

logger = logging.getLogger(__name__)

_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def is_complete_checkpoint(folder: Path) -> bool:
    """Return True when ``folder`` contains weights and a readable ``trainer_state.json``.

    The trainer writes ``trainer_state.json`` last, so a checkpoint killed
    while saving lacks it or has it truncated.
    """
    state_file = folder / "trainer_state.json"
    if not state_file.is_file() or not any((folder / name).is_file() for name in _WEIGHT_FILES):
        return False
    try:
        json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return True


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """Return the newest complete ``checkpoint-N`` folder in ``output_dir``, or None.

    Incomplete checkpoints are skipped with a warning, never loaded.
    """
    root = Path(output_dir)
    if not root.is_dir():
        return None
    steps = sorted(
        (int(match.group(1)), entry)
        for entry in root.iterdir()
        if entry.is_dir() and (match := _CHECKPOINT_NAME.match(entry.name))
    )
    for _, folder in reversed(steps):
        if is_complete_checkpoint(folder):
            return str(folder)
        logger.warning("Skipping incomplete checkpoint %s (no weights or no readable trainer_state.json)", folder)
    return None


def save_final_model(trainer: Trainer, output_dir: str | os.PathLike) -> None:
    """Save the trained model and tokenizer into ``output_dir`` through a staging folder.

    The files are written into ``output_dir/.staging`` first and moved into
    place only once all of them exist, so a crash while saving leaves the
    previous final model, if any, untouched.
    """
    output_dir = Path(output_dir)
    staging = output_dir / ".staging"
    if trainer.args.should_save and staging.exists():
        shutil.rmtree(staging)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        # NOTE: each move is atomic but the set of moves is not. A crash between
        # two moves can leave old and new files mixed, in a window of a few syscalls.
        for path in sorted(staging.iterdir()):
            os.replace(path, output_dir / path.name)
        staging.rmdir()
    trainer.accelerator.wait_for_everyone()


def is_finished_checkpoint(checkpoint: str | os.PathLike) -> bool:
    """Return True when ``checkpoint`` is the last step of its run (global_step reached max_steps)."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return state.get("max_steps", 0) > 0 and state["global_step"] >= state["max_steps"]


def train_from_checkpoint(trainer: Trainer, checkpoint: str | None) -> None:
    """Train, resuming from ``checkpoint`` if given; a checkpoint at the run's last step is loaded, not trained on.

    transformers 5.25 trains one more step when resumed from the last step of
    a finished run, so a rerun of a finished stage would change its model.
    """
    if checkpoint and is_finished_checkpoint(checkpoint):
        logger.info("%s is the last step of this run: loading it instead of training", checkpoint)
        # NOTE: _load_from_checkpoint is private to transformers' Trainer (present in 5.25).
        trainer._load_from_checkpoint(checkpoint)
        trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
        return
    trainer.train(resume_from_checkpoint=checkpoint)
