"""The recipes as a template: other architectures, chat data, and TRL's own command line.

A tiny Qwen2 model with a word-level tokenizer and a Jinja chat template is
built locally, with conversational datasets in TRL's formats, and the
unchanged SFT and DPO recipes train it. TRL's `trl sft` and `trl dpo` then
train on the datasets and the base checkpoint that this project writes.
"""

import importlib.util
import os
import random
import runpy
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    pipeline,
)

from rgb_tokenizer.tokenizer import VOCAB

ROOT = Path(__file__).resolve().parents[1]
WORDS = "hello hi how are you fine thanks what is your name my tiles red green blue yes no good bad ok".split()
SPECIAL = ["<|pad|>", "<|im_start|>", "<|im_end|>", "<|unk|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} {{ message['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant{% endif %}"
)
TINY_TRAINING = [
    "--max_steps", "2", "--per_device_train_batch_size", "4", "--save_steps", "2", "--logging_steps", "1",
    "--eval_strategy", "no", "--mixed_precision", "no",
]


def write_splits(folder: Path, rows: list[dict], num_test: int) -> None:
    """Write rows as Parquet in the Hub's folder layout, the way a Hub dataset repo stores them."""
    (folder / "data").mkdir(parents=True)
    Dataset.from_list(rows[:-num_test]).to_parquet(folder / "data" / "train-00000-of-00001.parquet")
    Dataset.from_list(rows[-num_test:]).to_parquet(folder / "data" / "test-00000-of-00001.parquet")


def run_recipe(stage: str, *flags: str) -> None:
    """Run recipes/<stage>.py in this process, with its real config and these overrides."""
    script = ROOT / "recipes" / f"{stage}.py"
    config = ROOT / "recipes" / "config" / f"{stage}.yaml"
    with mock.patch.object(sys, "argv", [str(script), "--config", str(config), *TINY_TRAINING, *flags]):
        runpy.run_path(str(script), run_name="__main__")


def card_header(path: Path) -> dict:
    return yaml.safe_load(path.read_text().split("---\n")[1])


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    """A 2-layer Qwen2 model with a chat template, and conversational SFT and preference datasets."""
    root = tmp_path_factory.mktemp("chat")
    vocab = {token: index for index, token in enumerate(SPECIAL + ["system", "user", "assistant"] + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.add_special_tokens(SPECIAL)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<|pad|>", eos_token="<|im_end|>", unk_token="<|unk|>", chat_template=CHAT_TEMPLATE
    )
    config = Qwen2Config(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")

    rng = random.Random(0)

    def sentence(length: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(length))

    conversations = [
        {"messages": [{"role": "user", "content": sentence(4)}, {"role": "assistant", "content": sentence(3)}]}
        for _ in range(40)
    ]
    pairs = [
        {
            "prompt": [{"role": "user", "content": sentence(4)}],
            "chosen": [{"role": "assistant", "content": "good " + sentence(2)}],
            "rejected": [{"role": "assistant", "content": "bad " + sentence(2)}],
        }
        for _ in range(40)
    ]
    write_splits(root / "sft", conversations, num_test=8)
    write_splits(root / "preference", pairs, num_test=8)
    return root


@pytest.fixture(scope="module", params=["sft", "dpo"])
def trained(request, chat):
    stage = request.param
    dataset = chat / ("sft" if stage == "sft" else "preference")
    output_dir = chat / f"{stage}-out"
    run_recipe(stage, "--model_name_or_path", str(chat / "model"), "--dataset_name", str(dataset), "--output_dir", str(output_dir))
    return stage, output_dir


def test_template_trains_chat_model(chat, trained):
    _, output_dir = trained
    base = AutoModelForCausalLM.from_pretrained(chat / "model")
    model = AutoModelForCausalLM.from_pretrained(output_dir)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    changed = [
        name for name, parameter in model.state_dict().items() if not torch.equal(parameter, base.state_dict()[name])
    ]
    assert changed, "two optimizer steps left every weight unchanged"


def test_template_keeps_chat_template(trained):
    _, output_dir = trained
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.eos_token == "<|im_end|>"


def test_template_card_has_no_tiles(trained):
    stage, output_dir = trained
    card = (output_dir / "README.md").read_text()
    header = card_header(output_dir / "README.md")
    assert "tile-language" not in header["tags"]
    assert stage in header["tags"]
    assert "license" not in header, "a local base model without a card has no known license"
    assert '[{"role": "user", "content": "Hello!"}]' in card
    assert "## Results" not in card
    assert "R` must be followed" not in card


def test_template_sample_is_chat(trained):
    _, output_dir = trained
    generator = pipeline("text-generation", model=str(output_dir))
    conversation = generator([{"role": "user", "content": "hello"}], max_new_tokens=4)[0]["generated_text"]
    assert [message["role"] for message in conversation] == ["user", "assistant"]
    assert conversation[-1]["content"].split(), "the reply is empty"


@pytest.fixture(scope="module")
def tile_run(tmp_path_factory):
    """Tile datasets from the dataset builder and a base checkpoint from the pretraining recipe."""
    root = tmp_path_factory.mktemp("tiles")
    spec = importlib.util.spec_from_file_location("template_build_datasets", ROOT / "data" / "build_datasets.py")
    builder = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = builder
    spec.loader.exec_module(builder)
    builder.main(
        builder.DataArguments(
            output_dir=str(root / "data"), num_pretrain_sequences=120, num_pairs=48, sequence_length=12, max_prompt_length=5
        )
    )
    run_recipe(
        "pretrain", "--dataset_name", str(root / "data" / "pretrain"), "--output_dir", str(root / "base"),
        "--n_layer", "2", "--n_head", "2", "--n_embd", "16",
    )
    return root


def trl_config(root: Path, stage: str) -> Path:
    config = {
        "model_name_or_path": str(root / "base"),
        "dataset_name": str(root / "data" / ("sft" if stage == "sft" else "preference")),
        "output_dir": str(root / f"trl-{stage}"),
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "max_length": 32,
        "use_cpu": True,
        "bf16": False,
        "activation_checkpointing": False,
        "save_strategy": "no",
        "report_to": "none",
        "accelerate_config": str(ROOT / "recipes" / "accelerate_configs" / "cpu.yaml"),
    }
    path = root / f"trl-{stage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_trl_cli_trains_on_our_folders(tile_run):
    trl = Path(sys.executable).parent / "trl"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{trl.parent}{os.pathsep}{os.environ['PATH']}"}
    # Both commands at once: most of each run is importing, which one core does alone.
    runs = {
        stage: subprocess.Popen(
            [str(trl), stage, "--config", str(trl_config(tile_run, stage))],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
        )
        for stage in ("sft", "dpo")
    }
    for stage, process in runs.items():
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"trl {stage} failed:\n{output[-3000:]}"

    for stage in runs:
        folder = tile_run / f"trl-{stage}"
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert (folder / "model.safetensors").is_file()
        assert tokenizer.get_vocab() == VOCAB, f"trl {stage} changed the tile tokenizer"
        assert model.config.n_layer == 2
