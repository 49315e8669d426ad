"""The README's main command, end to end, with tiny settings."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from rgb_tokenizer.frontier import max_preference_at_kl

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "data.yaml": {"num_pretrain_sequences": 400, "num_pairs": 80, "sequence_length": 16, "max_prompt_length": 8},
    "pretrain.yaml": {
        "n_layer": 2, "n_head": 2, "n_embd": 32, "max_steps": 12, "per_device_train_batch_size": 32,
        "save_steps": 6, "logging_steps": 4,
    },
    "sft.yaml": {"max_steps": 4, "per_device_train_batch_size": 8, "save_steps": 2, "logging_steps": 2},
    "dpo.yaml": {"max_steps": 4, "per_device_train_batch_size": 8, "save_steps": 2, "logging_steps": 2},
    "compare.yaml": {"num_samples": 24, "sequence_length": 16, "batch_size": 12, "num_pictured": 5},
}
RESULT_FIELDS = (
    "preference_score", "rule_adherence", "empirical_entropy_bits", "sequence_entropy_bits",
    "distinct_fraction", "kl_to_base_nats", "num_samples", "frontier_gap",
)


def write_tiny_configs(folder: Path) -> None:
    """Copy the real recipe configs with tiny sizes, so the real keys are parsed too."""
    folder.mkdir()
    for name, overrides in TINY.items():
        config = yaml.safe_load((ROOT / "recipes" / "config" / name).read_text())
        config.update(overrides)
        (folder / name).write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    write_tiny_configs(root / "configs")
    environment = {
        **os.environ,
        # The script calls python and accelerate from PATH: use this interpreter's environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "CONFIG_DIR": str(root / "configs"),
        "OUTPUT_DIR": str(root / "outputs"),
    }
    result = subprocess.run(
        ["bash", str(ROOT / "recipes" / "reproduce.sh")], capture_output=True, text=True, env=environment, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "outputs", result.stdout


def test_prints_results_table(run):
    _, stdout = run
    assert "| model | preference | adherence |" in stdout
    for name in ("BASE", "SFT", "DPO"):
        assert f"| {name} |" in stdout


def test_results_json_contract(run):
    outputs, _ = run
    results = json.loads((outputs / "results" / "results.json").read_text())
    assert set(results["models"]) == {"base", "sft", "dpo"}
    for name, values in results["models"].items():
        for field in RESULT_FIELDS:
            assert field in values, f"{name} lacks {field}"
        assert 0.0 <= values["rule_adherence"] <= 1.0
        assert values["num_samples"] == 24
    assert results["models"]["base"]["kl_to_base_nats"] == 0.0


def test_frontier_gap_consistent(run):
    outputs, _ = run
    models = json.loads((outputs / "results" / "results.json").read_text())["models"]
    for name, values in models.items():
        best = max_preference_at_kl(16, max(values["kl_to_base_nats"], 0.0))
        assert values["frontier_gap"] == pytest.approx(best - values["preference_score"]), name


def test_result_files_written(run):
    outputs, _ = run
    for name in ("results.md", "tiles.png", "frontier.png"):
        assert (outputs / "results" / name).stat().st_size > 0
    assert (outputs / "results" / "tiles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("stage", ["base", "sft", "dpo"])
def test_checkpoint_loads_with_auto_classes(run, stage):
    outputs, _ = run
    folder = outputs / stage
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin")) or list(folder.glob("*.bin")) == [folder / "training_args.bin"]
    generation = GenerationConfig.from_pretrained(folder)
    assert generation.eos_token_id in (tokenizer.eos_token_id, [tokenizer.eos_token_id])
    assert generation.pad_token_id == tokenizer.pad_token_id
    output = model.generate(**tokenizer("B", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert set(tokenizer.decode(output[0], skip_special_tokens=True)) <= set("RGB")


def test_rerun_keeps_model_card_results(run):
    outputs, _ = run
    configs = outputs.parent / "configs"
    card = outputs / "sft" / "README.md"
    assert "| SFT |" in card.read_text()
    # The same stage again finds its run finished; the saved model and its results stay valid.
    result = subprocess.run(
        [
            sys.executable, str(ROOT / "recipes" / "sft.py"), "--config", str(configs / "sft.yaml"),
            "--model_name_or_path", str(outputs / "base"), "--dataset_name", str(outputs / "data" / "sft"),
            "--output_dir", str(outputs / "sft"),
        ],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = card.read_text()
    assert "| SFT |" in text
    assert "| last logged training loss | 0.0000 |" not in text
    assert "| optimizer steps | 4 |" in text
    assert not (outputs / "sft" / "checkpoint-5").exists()
    assert (outputs / "sft" / "tiles.png").is_file()


def test_checkpoints_kept_for_resume(run):
    outputs, _ = run
    assert (outputs / "base" / "checkpoint-12" / "trainer_state.json").is_file()


@pytest.mark.parametrize("stage", ["base", "sft", "dpo"])
def test_training_stages_use_eager_attention(run, stage):
    # The configs pick eager attention, the faster one on CPU (docs/benchmarks.md). The run's settings record what it used.
    outputs, _ = run
    settings = json.loads((outputs / stage / "run_settings.json").read_text())["settings"]
    assert settings["attn_implementation"] == "eager"
