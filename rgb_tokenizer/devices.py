"""Device and precision choices shared by the training recipes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from accelerate import PartialState
from transformers import TrainingArguments

from rgb_tokenizer.errors import UserError

MIXED_PRECISION_CHOICES = ("auto", "bf16", "no")

ArgsT = TypeVar("ArgsT", bound=TrainingArguments)


def cpu_has_fast_bf16() -> bool:
    """Return True when the CPU has bf16 matrix instructions (AVX512-BF16 or AMX).

    Without them PyTorch emulates bf16 and runs slower than fp32.
    """
    # These probes are private to torch.cpu (present in torch 2.13); treat a
    # missing probe as "no support" rather than failing.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def bf16_is_fast() -> bool:
    """Return True when the device that training will use runs bf16 natively."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_fast_bf16()


def apply_device_settings(training_args: ArgsT, mixed_precision: str) -> ArgsT:
    """Return ``training_args`` with bf16 and CPU use set for this machine.

    ``mixed_precision`` is ``"auto"`` (bf16 where it is fast, fp32 elsewhere),
    ``"bf16"`` or ``"no"``. On a machine without CUDA the trainer is set to
    use the CPU, which also lets ``accelerate launch --num_processes N`` run
    N CPU processes over gloo instead of N copies that each think they are alone.
    """
    if mixed_precision not in MIXED_PRECISION_CHOICES:
        raise UserError(
            f"mixed_precision={mixed_precision!r} is invalid: use one of {', '.join(MIXED_PRECISION_CHOICES)}"
        )
    use_bf16 = bf16_is_fast() if mixed_precision == "auto" else mixed_precision == "bf16"
    use_cpu = training_args.use_cpu or not torch.cuda.is_available()
    # replace() reruns __post_init__, which is where TrainingArguments turns
    # bf16 and use_cpu into accelerate settings.
    return dataclasses.replace(training_args, bf16=use_bf16, fp16=False, use_cpu=use_cpu)


def distributed_state() -> PartialState:
    """Return accelerate's state of this process, joined to the other launched processes.

    On a machine without CUDA, ``PartialState()`` under ``accelerate launch
    --num_processes N`` leaves every process on its own, and each one is its
    own main process (accelerate 1.16). With ``cpu=True`` the processes join
    over gloo, as the trainers do after ``apply_device_settings``.
    """
    return PartialState(cpu=not torch.cuda.is_available())


@dataclass
class DeviceArguments:
    """Recipe settings that pick precision for the machine at hand."""

    mixed_precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 where the device runs it natively, fp32 elsewhere), bf16, or no (fp32)."},
    )
