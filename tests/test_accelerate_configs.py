"""Every accelerate config parses with accelerate's own loader and gives the launch it is named for.

Only cpu.yaml and multi_cpu.yaml can run on a machine without GPUs. The
others are checked up to the environment that `accelerate launch` would
hand to each process.
"""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env, prepare_simple_launcher_cmd_env

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "recipes" / "accelerate_configs"
DOC = ROOT / "docs" / "distributed.md"

# name: (distributed type, processes, use_cpu)
EXPECTED = {
    "cpu.yaml": (DistributedType.NO, 1, True),
    "single_gpu.yaml": (DistributedType.NO, 1, False),
    "multi_cpu.yaml": (DistributedType.MULTI_GPU, 2, True),
    "ddp.yaml": (DistributedType.MULTI_GPU, 8, False),
    "fsdp.yaml": (DistributedType.FSDP, 8, False),
    "zero2.yaml": (DistributedType.DEEPSPEED, 8, False),
    "zero3.yaml": (DistributedType.DEEPSPEED, 8, False),
}


def launch_environment(name: str, monkeypatch) -> tuple[object, dict[str, str]]:
    """Return the parsed launch arguments and the environment each process would get, without starting any."""
    # accelerate derives the thread count from OMP_NUM_THREADS when it is set; measure its own choice.
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    args = launch_command_parser().parse_args(["--config_file", str(CONFIG_DIR / name), "train.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        # launch_command sets this before it starts DeepSpeed's launcher.
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
    elif args.multi_gpu or args.use_fsdp:
        env = prepare_multi_gpu_env(args)
    else:
        _, env = prepare_simple_launcher_cmd_env(args)
    return args, env


def test_every_config_listed():
    assert sorted(path.name for path in CONFIG_DIR.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses(name):
    distributed_type, processes, use_cpu = EXPECTED[name]
    config = load_config_from_file(str(CONFIG_DIR / name))
    assert config.distributed_type == distributed_type
    assert config.num_processes == processes
    assert config.use_cpu == use_cpu
    # TrainingArguments reads ACCELERATE_MIXED_PRECISION, so anything but "no" would override --mixed_precision.
    assert config.mixed_precision == "no"


@pytest.mark.parametrize("name", ["fsdp.yaml", "zero2.yaml", "zero3.yaml"])
def test_nested_keys_known(name):
    # accelerate copies these keys onto its launch options without checking them, so a typo is silently ignored.
    config = load_config_from_file(str(CONFIG_DIR / name))
    options = {action.dest for action in launch_command_parser()._actions}
    for key in {**config.fsdp_config, **config.deepspeed_config}:
        assert key in options, key


def test_cpu_uses_every_core(monkeypatch):
    _, env = launch_environment("cpu.yaml", monkeypatch)
    cores = psutil.cpu_count(logical=False)
    assert env["ACCELERATE_USE_CPU"] == "True"
    assert env["OMP_NUM_THREADS"] == str(cores if cores > 1 else 1)


def test_single_gpu_is_one_process(monkeypatch):
    args, env = launch_environment("single_gpu.yaml", monkeypatch)
    assert not args.multi_gpu
    assert args.gpu_ids == "0"
    # Without use_cpu accelerate gives the process one thread, which is why cpu.yaml exists.
    assert env["OMP_NUM_THREADS"] == "1"


def test_multi_cpu_starts_two_processes(monkeypatch):
    # A MULTI_CPU config would take accelerate's one-process launcher unless an MPI hostfile is given.
    args, env = launch_environment("multi_cpu.yaml", monkeypatch)
    assert args.multi_gpu
    assert args.nproc_per_node == "2"
    assert int(args.main_process_port) > 0


def test_ddp_on_all_gpus(monkeypatch):
    args, _ = launch_environment("ddp.yaml", monkeypatch)
    assert args.multi_gpu
    assert args.nproc_per_node == "8"


def test_fsdp_environment(monkeypatch):
    _, env = launch_environment("fsdp.yaml", monkeypatch)
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert env["FSDP_VERSION"] == "2"
    # Full state dicts give checkpoints with model.safetensors, which resuming looks for.
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"


def test_fsdp_plugin_wraps_blocks(monkeypatch):
    from accelerate import FullyShardedDataParallelPlugin
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    _, env = launch_environment("fsdp.yaml", monkeypatch)
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    plugin.set_auto_wrap_policy(GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8)))
    assert plugin.fsdp_version == 2
    assert plugin.auto_wrap_policy.keywords["transformer_layer_cls"] == {GPT2Block}


@pytest.mark.parametrize(("name", "stage"), [("zero2.yaml", "2"), ("zero3.yaml", "3")])
def test_deepspeed_environment(monkeypatch, name, stage):
    _, env = launch_environment(name, monkeypatch)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == stage


def test_zero3_saves_full_weights(monkeypatch):
    # Without it a ZeRO-3 checkpoint has no model.safetensors, so no checkpoint would count as complete.
    _, env = launch_environment("zero3.yaml", monkeypatch)
    assert env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_documented_with_command(name):
    commands = re.findall(r"accelerate launch --config_file recipes/accelerate_configs/(\S+)", DOC.read_text())
    assert name in commands
