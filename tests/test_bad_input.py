"""Bad settings, files, models and datasets: each stops the recipe with one line, exit status 2, and no write.

Most cases run the recipe's real entry point in this process (runpy), which
gives the exit status without paying for a new interpreter. A few run as
subprocesses, where the process's own exit status and stderr are the point.
"""

import hashlib
import io
import json
import logging
import os
import runpy
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from datasets import Dataset, Features, Value
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    DistilBertConfig,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    TrainingArguments,
)

from rgb_tokenizer import runs
from rgb_tokenizer.runs import RUN_FILE
from rgb_tokenizer.tokenizer import build_tokenizer
from rgb_tokenizer.validation import PREFERENCE, SFT, check_causal_lm, check_dataset

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "data": ROOT / "data" / "build_datasets.py",
    "pretrain": ROOT / "recipes" / "pretrain.py",
    "sft": ROOT / "recipes" / "sft.py",
    "dpo": ROOT / "recipes" / "dpo.py",
    "compare": ROOT / "recipes" / "compare.py",
}
SECRET = "hf_testsecret0123456789"
# Without evaluation, so that the datasets with one flaw need no test split.
TRAIN = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--save_steps", "1", "--logging_steps", "1", "--eval_strategy", "no"]
DATA = ["--num_pretrain_sequences", "60", "--num_pairs", "20", "--sequence_length", "12", "--max_prompt_length", "6"]


# ---- Files the cases need, all built here ----


def save_tile_model(folder: Path, n_positions: int = 32) -> None:
    tokenizer = build_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=16, n_layer=1, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def save_chat_model(folder: Path) -> None:
    """Save a character-level GPT-2 with a chat template: a stand-in for any causal LM that is not a tile model."""
    characters = [chr(code) for code in range(32, 127)] + ["\n"]
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3, **{c: i + 4 for i, c in enumerate(characters)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = (
        "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    config = GPT2Config(vocab_size=len(vocab), n_positions=128, n_embd=16, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write_dataset(folder: Path, train: list[dict] | Dataset, test: list[dict] | None = None) -> Path:
    """Write rows as Parquet in the Hub layout that the dataset builder uses."""
    (folder / "data").mkdir(parents=True)
    train = train if isinstance(train, Dataset) else Dataset.from_list(train)
    train.to_parquet(folder / "data" / "train-00000-of-00001.parquet")
    if test is not None:
        Dataset.from_list(test).to_parquet(folder / "data" / "test-00000-of-00001.parquet")
    return folder


def copy_model(source: Path, target: Path, drop: tuple[str, ...] = (), changes: dict | None = None, files: tuple[str, ...] = ("config.json",)) -> Path:
    """Copy a model folder without the ``drop`` files, with ``changes`` merged into the JSON ``files``."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*drop))
    for name in files if changes else ():
        path = target / name
        path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return target


def fill(args: list[str], paths: dict[str, str]) -> list[str]:
    """Replace each ``{name}`` in the arguments with the path of that file or folder."""
    return [argument.format(**paths) for argument in args]


def folder_hash(folder: Path) -> str | None:
    """Return a SHA-256 over the names and bytes of every file under ``folder``, or None when it is missing."""
    if not folder.exists():
        return None
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_recipe(name: str, args: list[str]) -> tuple[int, str]:
    """Run a recipe's entry point in this process; return its exit status and what it wrote to stderr."""
    stderr = io.StringIO()
    argv = sys.argv
    sys.argv = [str(RECIPES[name]), *args]
    try:
        with redirect_stderr(stderr), redirect_stdout(io.StringIO()):
            runpy.run_path(str(RECIPES[name]), run_name="__main__")
        status = 0
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = argv
    return status, stderr.getvalue()


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_input")
    tile_model = root / "model"
    save_tile_model(tile_model)
    save_chat_model(root / "chat-model")

    sft_rows = [{"prompt": "RGB", "completion": "RGBG"}, {"prompt": "B", "completion": "GBRG"}] * 4
    pair_rows = [{"prompt": "RGB", "chosen": "GBG", "rejected": "RGB"}] * 8
    write_dataset(root / "sft-data", sft_rows, sft_rows[:2])
    write_dataset(root / "pref-data", pair_rows, pair_rows[:2])
    write_dataset(root / "pretrain-data", [{"text": "RGBGBRGB"}] * 8, [{"text": "BGBG"}] * 2)
    write_dataset(root / "pretrain-x", [{"text": "RGBGBRGB"}, {"text": "RGXB"}])

    # Datasets with one flaw each; every other row is valid.
    def sft_with(row: dict) -> list[dict]:
        return sft_rows[:3] + [row] + sft_rows[3:]

    write_dataset(root / "misnamed", [{"prompts": "RGB", "answer": "GB"}] * 4)
    write_dataset(root / "x-tile", sft_with({"prompt": "RGB", "completion": "GXB"}))
    write_dataset(root / "lowercase", sft_with({"prompt": "rgb", "completion": "GB"}))
    write_dataset(root / "space", sft_with({"prompt": "RGB", "completion": "G B"}))
    write_dataset(root / "emoji", sft_with({"prompt": "RGB", "completion": "GB\N{LARGE RED SQUARE}"}))
    write_dataset(root / "empty-prompt", sft_with({"prompt": "", "completion": "GB"}))
    write_dataset(root / "empty-completion", sft_with({"prompt": "RGB", "completion": "   "}))
    write_dataset(root / "too-long", sft_with({"prompt": "RGB", "completion": "GB" * 20}))
    write_dataset(root / "same-pair", pair_rows + [{"prompt": "R", "chosen": "GBG", "rejected": "GBG"}])
    columns = Features({"prompt": Value("string"), "completion": Value("string")})
    write_dataset(root / "no-rows", Dataset.from_dict({"prompt": [], "completion": []}, features=columns))
    write_dataset(root / "train-only", sft_rows)
    write_dataset(root / "chat", [{"messages": [{"role": "user", "content": "RGB"}, {"role": "assistant", "content": "GB"}]}] * 4)

    # Files that no reader can parse: a cut-off Parquet file and a JSON-lines file with a broken line.
    (root / "bad-parquet" / "data").mkdir(parents=True)
    good_parquet = (root / "sft-data" / "data" / "train-00000-of-00001.parquet").read_bytes()
    (root / "bad-parquet" / "data" / "train-00000-of-00001.parquet").write_bytes(good_parquet[: len(good_parquet) // 2])
    (root / "bad-jsonl").mkdir()
    (root / "bad-jsonl" / "train.jsonl").write_text('{"prompt": "RGB", "completion": "GB"}\n{"prompt": "B", "completion": \n')
    # A dataset script that would leave a marker file if anything ran it.
    (root / "script-data").mkdir()
    (root / "script-data" / "script-data.py").write_text(f"open({str(root / 'SCRIPT_RAN')!r}, 'w').close()\n")

    # Model folders with one flaw each.
    copy_model(tile_model, root / "no-weights", drop=("model.safetensors",))
    pickled = copy_model(tile_model, root / "pickled", drop=("model.safetensors",))
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    copy_model(tile_model, root / "eos-mismatch", changes={"eos_token_id": 5}, files=("config.json", "generation_config.json"))
    encoder = copy_model(tile_model, root / "encoder", drop=("config.json",))
    DistilBertConfig(vocab_size=6, dim=16, n_layers=1, n_heads=2, hidden_dim=32).save_pretrained(encoder)
    custom_config = {"model_type": "rgb-custom", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}}
    custom = copy_model(tile_model, root / "custom-code", changes=custom_config)
    (custom / "configuration_custom.py").write_text(f"open({str(root / 'CUSTOM_RAN')!r}, 'w').close()\n")
    (root / "broken-checkpoint").mkdir()
    shutil.copy(tile_model / "model.safetensors", root / "broken-checkpoint")
    (root / "broken-checkpoint" / "trainer_state.json").write_text('{"global_step": 2, "log_hist')

    # Config files.
    config = yaml.safe_load((ROOT / "recipes" / "config" / "sft.yaml").read_text())
    configs = {
        "list.yaml": "- learning_rate: 1.0e-4\n",
        "syntax.yaml": "learning_rate: [1.0e-4\n",
        "empty.yaml": "",
        "typo.yaml": yaml.safe_dump({**config, "learning_rat": 1.0e-4}),
        "lr-abc.yaml": yaml.safe_dump({**config, "learning_rate": "abc"}),
        "steps-float.yaml": yaml.safe_dump({**config, "max_steps": 2.5}),
        "batch-list.yaml": yaml.safe_dump({**config, "per_device_train_batch_size": [8]}),
        "scheduler.yaml": yaml.safe_dump({**config, "lr_scheduler_type": "sometimes"}),
    }
    for name, text in configs.items():
        (root / name).write_text(text)

    # A folder that another tool wrote, and the dataset builder's output.
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("keep me\n")
    status, stderr = run_recipe("data", ["--output_dir", str(root / "data"), *DATA])
    assert status == 0, stderr
    # Keys are the names without .yaml, because a dot in a format field means attribute access.
    return {name.removesuffix(".yaml"): str(root / name) for name in os.listdir(root)} | {"root": str(root), "repo": str(ROOT)}


@pytest.fixture(scope="module")
def sft_run(paths) -> tuple[Path, str]:
    """Run SFT once for real; its output folder is the one each failing case must leave unchanged."""
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    os.environ["HF_TOKEN"] = SECRET
    try:
        status, stderr = run_recipe("sft", fill([*SFT_ARGS, "--hub_token", SECRET], paths))
    finally:
        del os.environ["HF_TOKEN"]
        root_logger.removeHandler(handler)
        root_logger.setLevel(level)
    assert status == 0, stderr[-3000:]
    return Path(paths["root"]) / "run", stderr + logs.getvalue()


# ---- The table: recipe, arguments, expected exit status, message fragment ----

# "{name}" is replaced by the path of that file or folder; {root}/run is the folder of the SFT run.
SFT_ARGS = ["--config", "{repo}/recipes/config/sft.yaml", "--model_name_or_path", "{model}", "--dataset_name", "{sft-data}",
       "--output_dir", "{root}/run", "--max_length", "32", *TRAIN]
DPO_ARGS = ["--config", "{repo}/recipes/config/dpo.yaml", "--model_name_or_path", "{model}", "--dataset_name", "{pref-data}",
       "--output_dir", "{root}/run", "--max_length", "32", *TRAIN]
PRETRAIN_ARGS = ["--config", "{repo}/recipes/config/pretrain.yaml", "--dataset_name", "{pretrain-data}", "--output_dir", "{root}/run",
            "--n_layer", "1", "--n_head", "2", "--n_embd", "16", *TRAIN]
COMPARE_ARGS = ["--config", "{repo}/recipes/config/compare.yaml", "--base_model", "{model}", "--policies", "sft={model}",
           "--output_dir", "{root}/run", "--num_samples", "4", "--sequence_length", "8", "--batch_size", "4", "--num_pictured", "2"]
BUILD_ARGS = ["--output_dir", "{data}", *DATA]

CASES = [
    # Config files and flags
    ("config-missing", "sft", ["--config", "{root}/nope.yaml"], "config file {root}/nope.yaml not found"),
    ("config-missing-dpo", "dpo", ["--config", "{root}/nope.yaml"], "for example recipes/config/dpo.yaml"),
    ("config-not-mapping", "sft", ["--config", "{list}"], "contains a list, not a mapping"),
    ("config-empty", "sft", ["--config", "{empty}"], "contains nothing, not a mapping"),
    ("config-bad-yaml", "sft", ["--config", "{syntax}"], "is not valid YAML"),
    ("config-unknown-key", "sft", ["--config", "{typo}"], "unknown setting 'learning_rat' in config file"),
    ("config-key-hint", "sft", ["--config", "{typo}"], "did you mean 'learning_rate'?"),
    ("config-lr-text", "sft", ["--config", "{lr-abc}"], "learning_rate: 'abc' in config file"),
    ("config-int-float", "sft", ["--config", "{steps-float}"], "max_steps takes a whole number"),
    ("config-int-list", "sft", ["--config", "{batch-list}"], "per_device_train_batch_size: [8]"),
    ("config-bad-choice", "sft", ["--config", "{scheduler}"], "lr_scheduler_type: 'sometimes' in config file"),
    ("flag-unknown", "sft", [*SFT_ARGS, "--learnin_rate", "1"], "unknown option --learnin_rate (did you mean 'learning_rate'?)"),
    ("flag-bad-int", "sft", [*SFT_ARGS, "--max_steps", "abc"], "argument --max_steps/--max-steps: invalid int value: 'abc'"),
    # Sizes
    ("batch-zero", "sft", [*SFT_ARGS, "--per_device_train_batch_size", "0"], "per_device_train_batch_size=0 is invalid"),
    ("lr-negative", "dpo", [*DPO_ARGS, "--learning_rate", "-1"], "learning_rate=-1.0 is invalid"),
    ("precision-unknown", "dpo", [*DPO_ARGS, "--mixed_precision", "fp16"], "mixed_precision='fp16' is invalid: use one of auto, bf16, no"),
    ("steps-zero", "sft", [*SFT_ARGS, "--max_steps", "0"], "max_steps=0 is invalid"),
    ("beta-zero", "dpo", [*DPO_ARGS, "--beta", "0"], "beta=0.0 is invalid"),
    ("heads-indivisible", "pretrain", [*PRETRAIN_ARGS, "--n_embd", "30", "--n_head", "4"], "n_embd=30 is not divisible by n_head=4"),
    ("layers-zero", "pretrain", [*PRETRAIN_ARGS, "--n_layer", "0"], "n_layer=0 is invalid"),
    ("attention-unknown", "pretrain", [*PRETRAIN_ARGS, "--attn_implementation", "fast"], "attn_implementation='fast' is unknown: use one of eager, sdpa, flash_attention_2,"),
    ("attention-unknown-dpo", "dpo", [*DPO_ARGS, "--attn_implementation", "flash"], "attn_implementation='flash' is unknown"),
    ("pairs-negative", "data", [*BUILD_ARGS, "--num_pairs", "-3"], "num_pairs=-3 is invalid"),
    ("split-leaves-zero", "data", [*BUILD_ARGS, "--num_pairs", "1"], "num_pairs=1 with test_fraction=0.1 leaves 0 rows for training"),
    ("prompt-bounds", "data", [*BUILD_ARGS, "--min_prompt_length", "5", "--max_prompt_length", "4"], "cannot be met"),
    ("prompt-too-long", "data", [*BUILD_ARGS, "--max_prompt_length", "11"], "max_prompt_length=11 leaves completions under 2 tiles"),
    ("samples-zero", "compare", [*COMPARE_ARGS, "--num_samples", "0"], "num_samples=0 is invalid"),
    ("policy-no-path", "compare", [*COMPARE_ARGS, "--policies", "sft"], "policies entry 'sft' is invalid"),
    # Models
    ("model-missing", "sft", [*SFT_ARGS, "--model_name_or_path", "{root}/nope"], "model_name_or_path {root}/nope not found"),
    ("model-is-dataset", "sft", [*SFT_ARGS, "--model_name_or_path", "{sft-data}"], "has no config.json"),
    ("model-not-causal", "dpo", [*DPO_ARGS, "--model_name_or_path", "{encoder}"], "is a distilbert model, which transformers cannot load as a causal LM"),
    ("model-no-weights", "sft", [*SFT_ARGS, "--model_name_or_path", "{no-weights}"], "has no model.safetensors"),
    ("model-pickle-only", "sft", [*SFT_ARGS, "--model_name_or_path", "{pickled}"], "has only pickle weights (pytorch_model.bin)"),
    ("model-custom-code", "sft", [*SFT_ARGS, "--model_name_or_path", "{custom-code}"], "needs its own Python code to load"),
    ("tokenizer-eos-mismatch", "dpo", [*DPO_ARGS, "--model_name_or_path", "{eos-mismatch}"], "has eos_token_id=2 but the model's config has eos_token_id=5"),
    ("compare-not-tile", "compare", [*COMPARE_ARGS, "--policies", "chat={chat-model}"], "does not use the tile tokenizer"),
    ("compare-too-long", "compare", [*COMPARE_ARGS, "--sequence_length", "40"], "needs 41 positions with BOS"),
    # Datasets
    ("dataset-missing", "sft", [*SFT_ARGS, "--dataset_name", "{root}/nope"], "dataset {root}/nope not found"),
    ("columns-misnamed", "sft", [*SFT_ARGS, "--dataset_name", "{misnamed}"], "'prompts' looks like 'prompt'"),
    ("columns-for-dpo", "dpo", [*DPO_ARGS, "--dataset_name", "{sft-data}"], "preference training needs 'prompt' and 'chosen' and 'rejected'"),
    ("tile-x", "sft", [*SFT_ARGS, "--dataset_name", "{x-tile}"], "row 3: completion 'GXB' has the invalid character 'X' at position 1"),
    ("tile-lowercase", "sft", [*SFT_ARGS, "--dataset_name", "{lowercase}"], "has the invalid character 'r' at position 0"),
    ("tile-space", "sft", [*SFT_ARGS, "--dataset_name", "{space}"], "has the invalid character ' ' at position 1"),
    ("tile-emoji", "sft", [*SFT_ARGS, "--dataset_name", "{emoji}"], "has the invalid character '\N{LARGE RED SQUARE}' at position 2"),
    ("tile-pretrain", "pretrain", [*PRETRAIN_ARGS, "--dataset_name", "{pretrain-x}"], "row 1: text 'RGXB' has the invalid character 'X'"),
    ("prompt-empty", "sft", [*SFT_ARGS, "--dataset_name", "{empty-prompt}"], "row 3: prompt is empty"),
    ("completion-blank", "sft", [*SFT_ARGS, "--dataset_name", "{empty-completion}"], "row 3: completion is empty"),
    ("row-too-long", "sft", [*SFT_ARGS, "--dataset_name", "{too-long}"], "43 tiles make 45 tokens with BOS and EOS, more than the 32"),
    ("max-length-over-positions", "sft", [*SFT_ARGS, "--model_name_or_path", "{chat-model}", "--max_length", "256"], "max_length=256 is larger than the 128 positions"),
    ("pair-identical", "dpo", [*DPO_ARGS, "--dataset_name", "{same-pair}"], "row 8: chosen and rejected are the same"),
    ("split-no-rows", "sft", [*SFT_ARGS, "--dataset_name", "{no-rows}"], "dataset {no-rows} has a split with no rows"),
    ("split-missing", "sft", [*SFT_ARGS, "--dataset_name", "{train-only}", "--eval_strategy", "epoch"], "has no split 'test' (it has train): set dataset_test_split"),
    ("parquet-truncated", "sft", [*SFT_ARGS, "--dataset_name", "{bad-parquet}"], "Parquet magic bytes not found"),
    ("jsonl-malformed", "dpo", [*DPO_ARGS, "--dataset_name", "{bad-jsonl}"], "JSON parse error"),
    ("dataset-script", "sft", [*SFT_ARGS, "--dataset_name", "{script-data}"], "never run dataset scripts"),
    ("chat-without-template", "sft", [*SFT_ARGS, "--dataset_name", "{chat}"], "has no chat template"),
    # Output folders and checkpoints
    ("run-other-settings", "sft", [*SFT_ARGS, "--learning_rate", "3e-4"], "contains a run with other settings (learning_rate 0.0001 -> 0.0003)"),
    ("run-other-stage", "dpo", DPO_ARGS, "contains the output of the 'sft' stage, not of 'dpo'"),
    ("compare-into-run", "compare", COMPARE_ARGS, "contains the output of the 'sft' stage, not of 'compare'"),
    ("folder-of-another-tool", "sft", [*SFT_ARGS, "--output_dir", "{foreign}"], "contains files but no readable run_settings.json"),
    ("data-other-settings", "data", [*BUILD_ARGS, "--seed", "7"], "contains a run with other settings (seed 42 -> 7)"),
    ("resume-truncated", "sft", [*SFT_ARGS, "--resume_from_checkpoint", "{broken-checkpoint}"], "is not a complete checkpoint"),
]


@pytest.mark.parametrize(("recipe", "args", "fragment"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input(recipe, args, fragment, paths, sft_run):
    arguments = fill(args, paths)
    output_dir = Path(arguments[arguments.index("--output_dir") + 1]) if "--output_dir" in arguments else sft_run[0]
    before = folder_hash(output_dir)
    status, stderr = run_recipe(recipe, arguments)
    error_lines = [line for line in stderr.splitlines() if ": error: " in line]
    assert status == 2, stderr[-3000:]
    assert len(error_lines) == 1, stderr[-3000:]
    assert fragment.format(**paths) in error_lines[0]
    assert "Traceback" not in stderr
    assert folder_hash(output_dir) == before


def test_scripts_never_run(paths, sft_run):
    run_recipe("sft", fill([*SFT_ARGS, "--dataset_name", "{script-data}"], paths))
    run_recipe("sft", fill([*SFT_ARGS, "--model_name_or_path", "{custom-code}"], paths))
    assert not (Path(paths["root"]) / "SCRIPT_RAN").exists()
    assert not (Path(paths["root"]) / "CUSTOM_RAN").exists()


# ---- Runs that must go on: resume, rebuild, general models ----


def test_truncated_checkpoint_skipped(paths, sft_run, caplog):
    output_dir, _ = sft_run
    state_file = output_dir / "checkpoint-2" / "trainer_state.json"
    state_file.write_text(state_file.read_text()[:40])
    with caplog.at_level(logging.INFO):
        status, stderr = run_recipe("sft", fill(SFT_ARGS, paths))
    assert status == 0, stderr[-3000:]
    assert f"Skipping incomplete checkpoint {output_dir / 'checkpoint-2'}" in caplog.text
    assert f"Resuming from {output_dir / 'checkpoint-1'}" in caplog.text
    assert json.loads(state_file.read_text())["global_step"] == 2


def test_token_never_written(sft_run):
    output_dir, logs = sft_run
    assert SECRET not in logs
    for path in output_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_run_file_names_settings(sft_run):
    record = json.loads((sft_run[0] / RUN_FILE).read_text())
    assert record["stage"] == "sft"
    assert record["settings"]["learning_rate"] == 1.0e-4
    assert "hub_token" not in record["settings"]


def test_run_identity_ignores_layout(tmp_path, monkeypatch):
    def fingerprint(processes: int, **settings) -> str:
        monkeypatch.setattr(runs, "distributed_state", lambda: SimpleNamespace(num_processes=processes))
        args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **settings)
        return runs.run_record("sft", args)["fingerprint"]

    one_process = fingerprint(1, per_device_train_batch_size=8, logging_steps=5)
    assert fingerprint(2, per_device_train_batch_size=4, logging_steps=50) == one_process
    assert fingerprint(1, per_device_train_batch_size=4, gradient_accumulation_steps=2) == one_process
    assert fingerprint(2, per_device_train_batch_size=8) != one_process
    assert fingerprint(1, per_device_train_batch_size=8, learning_rate=1e-3) != one_process


def test_data_same_settings_rebuild(paths):
    before = folder_hash(Path(paths["data"]))
    status, stderr = run_recipe("data", ["--output_dir", paths["data"], *DATA])
    assert status == 0, stderr
    assert folder_hash(Path(paths["data"])) == before


def test_overwrite_flag_replaces(paths, tmp_path):
    target = tmp_path / "data"
    shutil.copytree(paths["data"], target)
    status, stderr = run_recipe("data", ["--output_dir", str(target), *DATA, "--seed", "9", "--overwrite_output_dir"])
    assert status == 0, stderr
    assert json.loads((target / RUN_FILE).read_text())["settings"]["seed"] == 9


def test_sft_chat_model_trains(paths, tmp_path):
    # Any causal LM with a chat template, on TRL's conversational format, with characters that are not tiles.
    chat = write_dataset(tmp_path / "chat", [{"messages": [{"role": "user", "content": "Hi X"}, {"role": "assistant", "content": "Yo!"}]}] * 8)
    args = ["--config", f"{paths['repo']}/recipes/config/sft.yaml", "--model_name_or_path", paths["chat-model"],
            "--dataset_name", str(chat), "--output_dir", str(tmp_path / "out"), "--max_length", "64", *TRAIN]
    status, stderr = run_recipe("sft", args)
    assert status == 0, stderr[-3000:]
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_preference_chat_rows_pass(paths):
    model = check_causal_lm(paths["chat-model"])
    prompt = [{"role": "user", "content": "Pick one"}]
    rows = {
        "prompt": [prompt],
        "chosen": [[{"role": "assistant", "content": "X"}]],
        "rejected": [[{"role": "assistant", "content": "y"}]],
    }
    check_dataset(Dataset.from_dict(rows), PREFERENCE, model, max_length=64)
    check_dataset(Dataset.from_dict({"prompt": ["Hello "], "completion": ["world X"]}), SFT, model, max_length=64)


# ---- Subprocesses: the exit status and stderr that a shell gets ----


def run_subprocess(*args: str, **environment: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **environment}, timeout=120
    )


def test_cli_one_line_exit_2(paths):
    result = run_subprocess(str(RECIPES["dpo"]), "--config", paths["typo"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("dpo.py: error: unknown setting 'learning_rat'")
    assert "Traceback" not in result.stderr


def test_debug_switch_traceback(paths):
    result = run_subprocess(str(RECIPES["sft"]), "--config", paths["typo"], RGB_DEBUG="1")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "rgb_tokenizer.errors.UserError: unknown setting 'learning_rat'" in result.stderr
