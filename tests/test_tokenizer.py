import pytest
from transformers import AutoTokenizer

from rgb_tokenizer import InvalidTileError, validate_tiles
from rgb_tokenizer.tokenizer import build_tokenizer, tile_token_ids


@pytest.fixture(scope="module")
def saved_tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer().save_pretrained(path)
    return path


def test_vocabulary_layout():
    tokenizer = build_tokenizer()
    assert len(tokenizer) == 6
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tile_token_ids(tokenizer) == [3, 4, 5]


def test_encoding_prepends_bos():
    tokenizer = build_tokenizer()
    assert tokenizer("RGBBG")["input_ids"] == [1, 3, 4, 5, 5, 4]


@pytest.mark.parametrize("tiles", ["R", "RGB", "BGBGBGBG", "RGBRGBBGBR"])
def test_round_trip_after_reload(saved_tokenizer, tiles):
    tokenizer = AutoTokenizer.from_pretrained(saved_tokenizer)
    ids = tokenizer(tiles)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == tiles
    assert len(ids) == len(tiles) + 1


def test_reload_keeps_special_tokens(saved_tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(saved_tokenizer)
    assert tokenizer.bos_token == "<bos>"
    assert tokenizer.eos_token == "<eos>"
    assert tokenizer.pad_token == "<pad>"
    assert tokenizer("RG" + tokenizer.eos_token)["input_ids"] == [1, 3, 4, 2]


def test_saved_files_need_no_custom_code(saved_tokenizer):
    assert (saved_tokenizer / "tokenizer.json").is_file()
    assert not list(saved_tokenizer.glob("*.py"))


def test_batch_pads_on_the_left():
    tokenizer = build_tokenizer()
    batch = tokenizer(["RG", "RGBG"], padding=True)["input_ids"]
    assert batch[0] == [0, 0, 1, 3, 4]


@pytest.mark.parametrize("bad", ["RXG", "rgb", "R G", "RG\n", "RG🟥", ""])
def test_validate_rejects_non_tiles(bad):
    with pytest.raises(InvalidTileError) as error:
        validate_tiles(bad, label="prompt")
    assert "prompt" in str(error.value)
    assert "\n" not in str(error.value)


def test_validate_names_character_and_position():
    with pytest.raises(InvalidTileError, match=r"'X' at position 1"):
        validate_tiles("RXG")


def test_tokenizer_never_maps_to_unknown():
    # With no unknown token the backend fails instead of encoding "X" silently.
    with pytest.raises(Exception, match="UNK|unk"):
        build_tokenizer()("RXG")
