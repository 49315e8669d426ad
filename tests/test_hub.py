"""Pushing models and datasets to the Hub, model cards, and loading checkpoints without this package.

No test reaches the network: the huggingface_hub client calls (create_repo,
upload_folder, create_commit) are patched, and Hub ids resolve offline from a
Hub cache folder that the tests fill themselves.
"""

import importlib.util
import logging
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import httpx2
import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import HfApi, ModelCard, RepoUrl, constants
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import filter_repo_objects
from transformers import AutoModelForCausalLM, GenerationConfig, GPT2Config, GPT2LMHeadModel, TrainingArguments

from rgb_tokenizer import hub
from rgb_tokenizer.tokenizer import build_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_testTokenThatMustNeverBeWritten"
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"
SMALL_DATA = {"num_pretrain_sequences": 120, "num_pairs": 48, "sequence_length": 12, "max_prompt_length": 5}
TINY_TRAINING = [
    "--max_steps", "2", "--per_device_train_batch_size", "8", "--save_steps", "2", "--logging_steps", "1",
    "--eval_strategy", "no", "--mixed_precision", "no",
]


def load_script(path: Path):
    """Import a script by path; dataclasses need the module registered in sys.modules."""
    name = f"script_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def run_recipe(stage: str, *flags: str) -> None:
    """Run recipes/<stage>.py in this process, as `python recipes/<stage>.py` would, so the patches apply."""
    script = ROOT / "recipes" / f"{stage}.py"
    config = ROOT / "recipes" / "config" / f"{stage}.yaml"
    with mock.patch.object(sys, "argv", [str(script), "--config", str(config), *TINY_TRAINING, *flags]):
        runpy.run_path(str(script), run_name="__main__")


def cache_as_hub_repo(folder: Path, repo_id: str) -> None:
    """Copy ``folder`` into the Hub cache layout, so that ``repo_id`` loads from it offline."""
    repo = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / SNAPSHOT, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(SNAPSHOT)


def uploaded_files(folder_path, allow_patterns=None, ignore_patterns=None, **_) -> set[str]:
    """Return the files an upload_folder call would send, filtered the way upload_folder filters them."""
    folder = Path(folder_path)
    files = [str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()]
    return set(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))


def card_header(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith("---\n"), "the card has no YAML header"
    return yaml.safe_load(text.split("---\n")[1])


def files_containing(folder: Path, needle: str) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and needle.encode() in path.read_bytes()]


class LogCollector(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


class FakeHub:
    """Patches of the huggingface_hub client calls, recording what they were given."""

    def __init__(self, upload_error: Exception | None = None):
        self.upload_error = upload_error
        self.create_repo = mock.MagicMock(side_effect=self._create_repo)
        self.upload_folder = mock.MagicMock(side_effect=self._upload_folder)
        self.create_commit = mock.MagicMock()
        self.uploads: dict[str, set[str]] = {}
        self.cards: dict[str, str] = {}

    def _create_repo(self, repo_id, **kwargs):
        # Like the Hub, put a bare repo name in the token owner's namespace, here "me".
        full_id = repo_id if "/" in repo_id else f"me/{repo_id}"
        return RepoUrl(f"https://huggingface.co/{'datasets/' if kwargs.get('repo_type') == 'dataset' else ''}{full_id}")

    def _upload_folder(self, **kwargs):
        if self.upload_error is not None:
            raise self.upload_error
        self.uploads[kwargs["repo_id"]] = uploaded_files(**kwargs)
        self.cards[kwargs["repo_id"]] = (Path(kwargs["folder_path"]) / "README.md").read_text()

    def __enter__(self):
        self.patches = [
            mock.patch.object(HfApi, "create_repo", self.create_repo),
            mock.patch.object(HfApi, "upload_folder", self.upload_folder),
            mock.patch.object(HfApi, "create_commit", self.create_commit),
        ]
        for patch in self.patches:
            patch.start()
        return self

    def __exit__(self, *exc):
        for patch in self.patches:
            patch.stop()


@pytest.fixture(scope="module")
def empty_login(tmp_path_factory):
    return tmp_path_factory.mktemp("login") / "token"


@pytest.fixture(autouse=True)
def no_login(monkeypatch, empty_login):
    """Hide any token of the person running the tests, so that each test decides which token exists."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(empty_login))


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hub-cache")
    with mock.patch.object(constants, "HF_HUB_CACHE", str(cache)):
        yield cache


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, hub_cache):
    """A tiny tile base model (also cached as the Hub model me/rgb-base) and the tile datasets."""
    root = tmp_path_factory.mktemp("hub")
    tokenizer = build_tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=2, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    (root / "base" / "README.md").write_text("---\nlicense: mit\ntags:\n- rgb-alignment\n---\n\n# base\n")
    cache_as_hub_repo(root / "base", "me/rgb-base")

    builder = load_script(ROOT / "data" / "build_datasets.py")
    builder.main(builder.DataArguments(output_dir=str(root / "data"), **SMALL_DATA))
    return root


@pytest.fixture(scope="module")
def pushed_runs(workspace):
    """Run each recipe with push_to_hub against the patched client.

    Returns, by stage, the output folder, the fake Hub and every log message.
    """
    inputs = {
        "pretrain": ["--dataset_name", str(workspace / "data" / "pretrain"), "--n_layer", "2", "--n_head", "2", "--n_embd", "16"],
        "sft": ["--model_name_or_path", "me/rgb-base", "--dataset_name", str(workspace / "data" / "sft")],
        "dpo": ["--model_name_or_path", "me/rgb-base", "--dataset_name", str(workspace / "data" / "preference")],
    }
    runs = {}
    for stage, flags in inputs.items():
        output_dir = workspace / f"pushed-{stage}"
        messages = LogCollector()
        root = logging.getLogger()
        # pytest's own handler makes the recipe's logging.basicConfig a no-op, so set the level here.
        previous_level = root.level
        root.setLevel(logging.INFO)
        root.addHandler(messages)
        try:
            with FakeHub() as fake:
                run_recipe(
                    stage, *flags, "--output_dir", str(output_dir), "--push_to_hub", "true",
                    "--hub_model_id", f"me/rgb-{stage}", "--hub_private_repo", "true", "--hub_token", TOKEN,
                )
        finally:
            root.removeHandler(messages)
            root.setLevel(previous_level)
        runs[stage] = (output_dir, fake, messages.lines)
    return runs


@pytest.fixture(params=["pretrain", "sft", "dpo"])
def pushed(request, pushed_runs):
    return (request.param, *pushed_runs[request.param])


def test_push_creates_private_repo(pushed):
    stage, _, fake, _ = pushed
    assert fake.create_repo.call_count == 1
    call = fake.create_repo.call_args
    assert call.args == (f"me/rgb-{stage}",)
    assert call.kwargs["private"] is True
    assert call.kwargs["exist_ok"] is True
    assert call.kwargs["token"] == TOKEN


def test_push_uploads_model_files(pushed):
    stage, output_dir, fake, _ = pushed
    files = fake.uploads[f"me/rgb-{stage}"]
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "README.md"):
        assert name in files, f"{name} is not uploaded"
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))], "a pickle is uploaded"
    assert not [name for name in files if name.startswith("checkpoint-")], "a checkpoint is uploaded"
    assert (output_dir / "checkpoint-2" / "model.safetensors").is_file(), "the checkpoint was not kept locally"


def test_pushed_card_metadata(pushed):
    stage, output_dir, _, _ = pushed
    header = card_header(output_dir / "README.md")
    assert header["license"] == "mit"
    assert header["pipeline_tag"] == "text-generation"
    assert {"rgb-alignment", stage, "tile-language"} <= set(header["tags"])
    assert header.get("base_model") == (None if stage == "pretrain" else "me/rgb-base")
    assert "datasets" not in header, "local dataset folders are not Hub datasets"


def test_pushed_card_body(pushed):
    stage, output_dir, fake, _ = pushed
    card = (output_dir / "README.md").read_text()
    assert fake.cards[f"me/rgb-{stage}"] == card, "the uploaded card differs from the local one"
    assert f'pipeline("text-generation", model="me/rgb-{stage}")' in card
    assert "| learning_rate |" in card
    assert "| optimizer steps | 2 |" in card
    if stage != "pretrain":
        assert "[me/rgb-base](https://huggingface.co/me/rgb-base)" in card
    assert "generated_from_trainer" not in card, "TRL's draft card was not replaced"


def test_token_never_written(pushed):
    _, output_dir, _, log_lines = pushed
    assert files_containing(output_dir, TOKEN) == []
    assert any("hub_token=" in line for line in log_lines), "the training arguments were not logged"
    assert [line for line in log_lines if TOKEN in line] == []


def run_failing_push(workspace, stage_dir: str, fake: FakeHub, capsys) -> tuple[int, str]:
    with fake, pytest.raises(SystemExit) as exit_info:
        run_recipe(
            "sft", "--model_name_or_path", str(workspace / "base"), "--dataset_name", str(workspace / "data" / "sft"),
            "--output_dir", str(workspace / stage_dir), "--push_to_hub", "true", "--hub_model_id", "me/rgb-sft",
        )
    return exit_info.value.code, capsys.readouterr().err


def assert_saved_model_intact(folder: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.n_layer == 2
    assert (folder / "README.md").is_file()
    assert (folder / "checkpoint-2" / "trainer_state.json").is_file()


def test_push_without_token_fails(workspace, capsys):
    fake = FakeHub()
    code, stderr = run_failing_push(workspace, "no-token", fake, capsys)
    assert code == 1
    message = stderr.strip().splitlines()[-1]
    assert "no Hugging Face token was found" in message
    assert "hf auth login" in message
    assert f"hf upload me/rgb-sft {workspace / 'no-token'}" in message
    assert fake.create_repo.call_count == 0
    assert_saved_model_intact(workspace / "no-token")


def test_push_rejected_token_fails(workspace, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    response = httpx2.Response(401, request=httpx2.Request("POST", "https://hub.invalid/api/commit"))
    fake = FakeHub(upload_error=HfHubHTTPError("401 Client Error: Unauthorized", response=response))
    code, stderr = run_failing_push(workspace, "rejected", fake, capsys)
    assert code == 1
    message = stderr.strip().splitlines()[-1]
    assert "rejected the token (401 Unauthorized)" in message
    assert TOKEN not in stderr
    assert_saved_model_intact(workspace / "rejected")


def test_default_repo_gets_namespace(workspace, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with FakeHub() as fake:
        run_recipe(
            "sft", "--model_name_or_path", str(workspace / "base"), "--dataset_name", str(workspace / "data" / "sft"),
            "--output_dir", str(workspace / "rgb-unnamed"), "--push_to_hub", "true",
        )
    assert fake.create_repo.call_args.args == ("rgb-unnamed",)
    assert fake.upload_folder.call_args.kwargs["repo_id"] == "me/rgb-unnamed"
    assert 'model="me/rgb-unnamed"' in fake.cards["me/rgb-unnamed"]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OfflineModeIsEnabled("offline"), "HF_HUB_OFFLINE is set"),
        (httpx2.ConnectError("connection refused"), "could not be reached (ConnectError)"),
        (TimeoutError("timed out"), "could not be reached (TimeoutError)"),
        (HfHubHTTPError("403", response=httpx2.Response(403, request=httpx2.Request("POST", "https://hub.invalid"))), "403 Forbidden"),
    ],
)
def test_push_failure_messages(tmp_path, monkeypatch, error, expected):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    with FakeHub(upload_error=error), pytest.raises(hub.HubError) as raised:
        hub.push_folder(tmp_path, hub.HubTarget("me/rgb-sft"))
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    assert (tmp_path / "model.safetensors").read_bytes() == b"weights"


@pytest.mark.parametrize("repo_id", ["me/rgb/sft", "me/rgb sft", "me/" + "x" * 97])
def test_invalid_hub_model_id(tmp_path, repo_id):
    args = TrainingArguments(output_dir=str(tmp_path), push_to_hub=True, hub_model_id=repo_id, use_cpu=True)
    with pytest.raises(ValueError, match="hub_model_id=.* does not give a valid Hub repo id"):
        hub.hub_target(args)


def test_trainer_hub_settings_cleared(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), push_to_hub=True, hub_model_id="me/x", hub_token=TOKEN, use_cpu=True)
    target = hub.hub_target(args)
    cleared = hub.without_hub_settings(args)
    assert target.token == TOKEN
    assert TOKEN not in repr(target)
    assert cleared.push_to_hub is False
    assert cleared.hub_token is None


def build_data(output_dir: Path, **hub_settings) -> None:
    builder = load_script(ROOT / "data" / "build_datasets.py")
    builder.main(builder.DataArguments(output_dir=str(output_dir), **SMALL_DATA, **hub_settings))


def test_dataset_push_three_repos(tmp_path):
    with FakeHub() as fake:
        build_data(tmp_path / "pushed", push_to_hub=True, hub_dataset_prefix="me/rgb-tiles", hub_private_repo=True, hub_token=TOKEN)
    names = ("pretrain", "preference", "sft")
    assert [call.args[0] for call in fake.create_repo.call_args_list] == [f"me/rgb-tiles-{name}" for name in names]
    for call in fake.create_repo.call_args_list:
        assert call.kwargs["repo_type"] == "dataset"
        assert call.kwargs["private"] is True
    for name in names:
        files = fake.uploads[f"me/rgb-tiles-{name}"]
        assert files == {"README.md", "data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet"}
        assert "configs" not in card_header(tmp_path / "pushed" / name / "README.md")
        assert "| `seed` | `42` |" in fake.cards[f"me/rgb-tiles-{name}"], "the card lost its generation parameters"
    assert files_containing(tmp_path / "pushed", TOKEN) == []


def test_dataset_push_keeps_files_identical(tmp_path):
    build_data(tmp_path / "local")
    with FakeHub():
        build_data(tmp_path / "pushed", push_to_hub=True, hub_dataset_prefix="me/rgb-tiles", hub_token=TOKEN)
    for path in sorted((tmp_path / "local").rglob("*")):
        if path.is_file():
            twin = tmp_path / "pushed" / path.relative_to(tmp_path / "local")
            assert twin.read_bytes() == path.read_bytes(), f"{path.name} depends on the push settings"


def test_dataset_push_without_token(tmp_path, capsys):
    with FakeHub() as fake, pytest.raises(SystemExit) as exit_info:
        build_data(tmp_path, push_to_hub=True, hub_dataset_prefix="me/rgb-tiles")
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 1
    assert "no Hugging Face token was found" in stderr
    assert "rerun this command to push them" in stderr
    assert fake.upload_folder.call_count == 0
    assert len(load_dataset(str(tmp_path / "sft"))["train"]) > 0


def test_dataset_push_needs_prefix(tmp_path):
    with pytest.raises(ValueError, match="hub_dataset_prefix is not"):
        build_data(tmp_path / "data", push_to_hub=True)
    assert not (tmp_path / "data").exists()


def test_compare_refreshes_cards(workspace, pushed_runs, tmp_path, monkeypatch):
    output_dir = tmp_path / "sft"
    shutil.copytree(pushed_runs["sft"][0], output_dir)
    compare = load_script(ROOT / "recipes" / "compare.py")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    args = compare.CompareArguments(
        base_model="me/rgb-base", policies=[f"sft={output_dir}"], output_dir=str(tmp_path / "results"),
        num_samples=8, sequence_length=8, num_pictured=4, batch_size=8, update_model_cards=True, push_to_hub=True,
    )
    with FakeHub() as fake:
        compare.main(args)
        compare.main(args)

    card = (output_dir / "README.md").read_text()
    assert card.count("| model | preference | adherence |") == 1, "refreshing twice duplicated the table"
    assert "This model is the **SFT** row." in card
    assert "![The first samples of each model" in card
    assert (output_dir / "tiles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert card_header(output_dir / "README.md")["license"] == "mit"

    # The base model was given as a Hub id, so its card went to the Hub in one commit.
    call = fake.create_commit.call_args
    assert call.kwargs["repo_id"] == "me/rgb-base"
    assert sorted(op.path_in_repo for op in call.kwargs["operations"]) == ["README.md", "tiles.png"]
    readme = next(op for op in call.kwargs["operations"] if op.path_in_repo == "README.md")
    pushed_card = ModelCard(readme.path_or_fileobj.decode())
    assert "| BASE |" in pushed_card.text
    assert pushed_card.data.license == "mit"


LOADER = """
import sys
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
for source in sys.argv[1:]:
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    generator = pipeline("text-generation", model=source)
    print(f"{source} classes:", type(tokenizer).__name__, type(model).__name__)
    print(f"{source} sample:", generator("B", max_new_tokens=6, do_sample=True)[0]["generated_text"])
print("imported:", "rgb_tokenizer" in sys.modules)
"""


def test_loads_without_this_package(pushed_runs, hub_cache, tmp_path):
    output_dir = pushed_runs["dpo"][0]
    cache_as_hub_repo(output_dir, "me/rgb-dpo")
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(output_dir), "me/rgb-dpo"],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert lines["imported"] == "False"
    for source in (str(output_dir), "me/rgb-dpo"):
        assert lines[f"{source} classes"] == "TokenizersBackend GPT2LMHeadModel"
        assert lines[f"{source} sample"].startswith("B")
        assert set(lines[f"{source} sample"]) <= set("RGB"), source


def test_weights_are_safetensors(pushed):
    _, output_dir, _, _ = pushed
    assert (output_dir / "model.safetensors").is_file()
    assert [path.name for path in output_dir.glob("*.bin")] == ["training_args.bin"]
