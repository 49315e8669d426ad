import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset

from rgb_tokenizer import is_grammatical
from rgb_tokenizer.metrics import preference_score
from rgb_tokenizer.preferences import make_preference_pairs
from tiny_runs import file_hashes

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--num_pretrain_sequences", "300", "--num_pairs", "120", "--sequence_length", "24", "--max_prompt_length", "10"]


def build(output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "data" / "build_datasets.py"), "--output_dir", str(output_dir), *SMALL, *extra],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("data")
    result = build(output_dir)
    assert result.returncode == 0, result.stderr
    return output_dir


def test_layout_matches_hub(built):
    for name in ("pretrain", "preference", "sft"):
        assert (built / name / "README.md").is_file()
        assert (built / name / "data" / "train-00000-of-00001.parquet").is_file()
        assert (built / name / "data" / "test-00000-of-00001.parquet").is_file()


def test_pretrain_schema_and_split(built):
    dataset = load_dataset(str(built / "pretrain"))
    assert dataset["train"].column_names == ["text"]
    assert (len(dataset["train"]), len(dataset["test"])) == (270, 30)
    assert all(len(text) == 24 and is_grammatical(text) for text in dataset["train"]["text"])


def test_preference_pairs_follow_rule(built):
    dataset = load_dataset(str(built / "preference"))
    assert dataset["train"].column_names == ["prompt", "chosen", "rejected"]
    assert len(dataset["train"]) + len(dataset["test"]) == 120
    for row in dataset["train"]:
        assert 1 <= len(row["prompt"]) <= 10
        assert len(row["prompt"] + row["chosen"]) == 24
        assert len(row["prompt"] + row["rejected"]) == 24
        assert is_grammatical(row["prompt"] + row["chosen"])
        assert is_grammatical(row["prompt"] + row["rejected"])
        assert preference_score(row["prompt"] + row["chosen"]) > preference_score(row["prompt"] + row["rejected"])


def test_sft_rows_are_chosen_completions(built):
    sft = load_dataset(str(built / "sft"))["train"]
    preference = load_dataset(str(built / "preference"))["train"]
    assert sft.column_names == ["prompt", "completion"]
    assert sft["prompt"] == preference["prompt"]
    assert sft["completion"] == preference["chosen"]


def test_card_has_hub_metadata(built):
    text = (built / "preference" / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["license"] == "mit"
    assert "rgb-alignment" in header["tags"]
    assert "`seed` | `42`" in text
    assert "train: 108 rows, test: 12 rows" in text


def test_same_seed_identical_files(built, tmp_path):
    assert build(tmp_path).returncode == 0
    assert file_hashes(tmp_path) == file_hashes(built)


def test_other_seed_other_files(built, tmp_path):
    assert build(tmp_path, "--seed", "7").returncode == 0
    other = file_hashes(tmp_path)
    same = file_hashes(built)
    for name in ("pretrain", "preference", "sft"):
        key = f"{name}/data/train-00000-of-00001.parquet"
        assert other[key] != same[key]


def test_rebuilt_folder_loads_fresh(tmp_path):
    # A rebuilt folder at the same path must not load from a stale cache.
    assert build(tmp_path).returncode == 0
    assert len(load_dataset(str(tmp_path / "pretrain"))["train"]) == 270
    assert build(tmp_path, "--num_pretrain_sequences", "500", "--overwrite_output_dir").returncode == 0
    assert len(load_dataset(str(tmp_path / "pretrain"))["train"]) == 450


def test_pairs_drop_ties():
    pairs = make_preference_pairs(seed=3, num_pairs=300, sequence_length=12, min_prompt_length=1, max_prompt_length=6)
    assert len(pairs) == 300
    assert all(row["chosen"] != row["rejected"] for row in pairs)
    assert all(
        preference_score(row["prompt"] + row["chosen"]) != preference_score(row["prompt"] + row["rejected"])
        for row in pairs
    )


def test_unmeetable_prompt_bounds_fail(tmp_path):
    result = build(tmp_path, "--min_prompt_length", "12", "--max_prompt_length", "11")
    assert result.returncode != 0
    assert "min_prompt_length" in result.stderr
    assert not (tmp_path / "preference").exists()
