"""Checks that the recipes run on their inputs before any training starts or any file is written.

Each check raises ``UserError`` with one line that names the value and the
fix. Dataset checks follow TRL's standard formats, plain text or lists of chat
messages, so the SFT and DPO recipes stay usable with any causal LM. Checks
that only make sense for the tile language (no character outside R, G and B,
exact sequence lengths) apply when the model's tokenizer has exactly the tile
vocabulary.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset
from datasets.exceptions import DatasetsError
from pyarrow.lib import ArrowException
from transformers import AutoConfig, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from rgb_tokenizer.checkpoints import is_complete_checkpoint
from rgb_tokenizer.errors import UserError, one_line
from rgb_tokenizer.grammar import InvalidTileError, validate_tiles
from rgb_tokenizer.tokenizer import VOCAB

SAFE_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
# Pickle formats: loading them can run code, so the recipes reject them.
PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

LANGUAGE_MODELING = "language modeling"
SFT = "SFT"
PREFERENCE = "preference"
_CHECK_BATCH_ROWS = 1_000


# ---- Sizes and trainer settings ----


def require_positive(**values: float) -> None:
    """Raise ``UserError`` for the first value that is not a number above 0."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
            kind = "a whole number of 1 or more" if isinstance(value, int) else "a number above 0"
            raise UserError(f"{name}={value!r} is invalid: use {kind}")


def check_training_arguments(args: Any) -> None:
    """Raise ``UserError`` for trainer settings that would crash deep in training or train nothing.

    Works on ``TrainingArguments`` and its TRL subclasses; settings a class
    lacks (``beta``, ``max_length``) are skipped.
    """
    require_positive(
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        learning_rate=args.learning_rate,
    )
    if args.max_steps == 0 or args.max_steps < -1:
        raise UserError(
            f"max_steps={args.max_steps} is invalid: use a number of steps of 1 or more, "
            "or -1 to train for num_train_epochs"
        )
    if args.max_steps == -1:
        require_positive(num_train_epochs=args.num_train_epochs)
    if str(getattr(args.save_strategy, "value", args.save_strategy)) == "steps":
        require_positive(save_steps=args.save_steps)
    if str(getattr(args.logging_strategy, "value", args.logging_strategy)) == "steps":
        require_positive(logging_steps=args.logging_steps)
    if getattr(args, "max_length", None) is not None:
        require_positive(max_length=args.max_length)
    if hasattr(args, "beta"):
        require_positive(beta=args.beta)
    checkpoint = args.resume_from_checkpoint
    if checkpoint and not is_complete_checkpoint(Path(checkpoint)):
        raise UserError(
            f"resume_from_checkpoint {checkpoint} is not a complete checkpoint (it needs model.safetensors and a "
            "readable trainer_state.json): pass a complete checkpoint-N folder, or leave the setting out to resume "
            "from the last complete checkpoint in output_dir"
        )


def check_gpt2_settings(n_layer: int, n_head: int, n_embd: int, n_positions: int, dropout: float) -> None:
    """Raise ``UserError`` unless the sizes of a GPT-2 built from scratch are usable."""
    require_positive(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions)
    if n_embd % n_head:
        raise UserError(f"n_embd={n_embd} is not divisible by n_head={n_head}: use an n_embd that is a multiple of n_head")
    if not 0 <= dropout < 1:
        raise UserError(f"dropout={dropout} is invalid: use a probability from 0 up to, but not including, 1")


def check_attn_implementation(attn_implementation: str | None) -> None:
    """Raise ``UserError`` unless transformers supports the attention implementation, or it is None (the default).

    A name with a slash is a kernel repository on the Hub, which transformers checks when it fetches it.
    """
    known = ["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()]
    if attn_implementation is None or attn_implementation in known or "/" in attn_implementation:
        return
    # Names with "|", such as "paged|eager", are accepted above but are meant for generation with a paged
    # KV cache, so the message does not suggest them.
    suggested = ["eager", "sdpa", *sorted(name for name in known if name not in ("eager", "sdpa") and "|" not in name)]
    raise UserError(f"attn_implementation={attn_implementation!r} is unknown: use one of {', '.join(suggested)}")


# ---- Models and tokenizers ----


@dataclass(frozen=True)
class CheckedModel:
    """A model that passed ``check_causal_lm`` (or one about to be built), with what the dataset checks need."""

    path: str
    """Folder or Hub id of the model, or a description of a model built from scratch."""
    tokenizer: PreTrainedTokenizerBase
    max_positions: int | None
    """Maximum sequence length the model accepts, in tokens, from its config; None when the config sets no limit."""

    @property
    def uses_tile_tokenizer(self) -> bool:
        return is_tile_tokenizer(self.tokenizer)


def is_tile_tokenizer(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Return True when the tokenizer's vocabulary is exactly the tile vocabulary (pad, bos, eos, R, G, B)."""
    return tokenizer.get_vocab() == VOCAB


def check_causal_lm(
    path: str,
    revision: str | None = None,
    trust_remote_code: bool = False,
    setting: str = "model_name_or_path",
) -> CheckedModel:
    """Load the config and tokenizer at ``path`` and raise ``UserError`` unless they make a usable causal LM.

    A local folder must contain ``config.json`` and safetensors weights; pickle
    weights are refused. The tokenizer's BOS, EOS and pad ids must match the
    model's config (EOS may also match the generation config), and the
    tokenizer may not have more tokens than the model's embedding.
    """
    folder = Path(path)
    if folder.exists():
        _check_model_folder(folder, setting)
    elif _looks_like_local_path(path):
        raise UserError(
            f"{setting} {path} not found: run the stage that writes it first (see recipes/reproduce.sh) or fix the path"
        )

    try:
        config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        if "trust_remote_code" in str(error):
            raise UserError(
                f"{setting} {path} needs its own Python code to load (auto_map in config.json), and the recipes run "
                "no code from a model unless told to: read that code, then pass --trust_remote_code true, "
                "or pick a model that transformers supports"
            ) from error
        raise UserError(
            f"{setting} {path} could not be loaded as a model ({one_line(error)}): pass a model folder or a Hub model id"
        ) from error
    auto_map = getattr(config, "auto_map", None) or {}
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and "AutoModelForCausalLM" not in auto_map:
        raise UserError(
            f"{setting} {path} is a {config.model_type} model, which transformers cannot load as a causal LM: "
            "pass a decoder-only model such as GPT-2, Llama or Qwen"
        )

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise UserError(
            f"{setting} {path} has no usable tokenizer ({one_line(error)}): "
            "save the tokenizer next to the model with tokenizer.save_pretrained"
        ) from error

    text_config = config.get_text_config()
    _check_special_tokens(path, tokenizer, text_config, revision, setting)
    max_positions = getattr(text_config, "n_positions", None) or getattr(text_config, "max_position_embeddings", None)
    return CheckedModel(path=path, tokenizer=tokenizer, max_positions=max_positions)


def check_tile_model(path: str, setting: str, sequence_length: int) -> CheckedModel:
    """Raise ``UserError`` unless ``path`` is a causal LM with the tile tokenizer that fits BOS + ``sequence_length`` tiles."""
    model = check_causal_lm(path, setting=setting)
    if not model.uses_tile_tokenizer:
        raise UserError(
            f"{setting} {path} does not use the tile tokenizer (pad, bos, eos, R, G, B), so its samples cannot be "
            "scored as tiles: pass a model trained by recipes/pretrain.py, sft.py or dpo.py"
        )
    if model.max_positions is not None and sequence_length + 1 > model.max_positions:
        raise UserError(
            f"sequence_length={sequence_length} needs {sequence_length + 1} positions with BOS, but {setting} {path} "
            f"has {model.max_positions}: use sequence_length <= {model.max_positions - 1}"
        )
    return model


def _looks_like_local_path(name: str) -> bool:
    """Return True when ``name`` cannot be a Hub id (``name`` or ``owner/name``), so it must be a local path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def _check_model_folder(folder: Path, setting: str) -> None:
    if not folder.is_dir():
        raise UserError(f"{setting} {folder} is a file: pass the folder that contains config.json and the weights")
    if not (folder / "config.json").is_file():
        raise UserError(
            f"{setting} {folder} has no config.json, so it is not a saved model: pass a folder written by "
            "save_pretrained, such as the output_dir of recipes/pretrain.py"
        )
    if any((folder / name).is_file() for name in SAFE_WEIGHT_FILES):
        return
    # training_args.bin is the trainer's pickled settings, not weights, and is never loaded.
    pickles = sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.suffix in PICKLE_WEIGHT_SUFFIXES and entry.name != "training_args.bin"
    )
    if pickles:
        raise UserError(
            f"{setting} {folder} has only pickle weights ({', '.join(pickles)}), which can run code when loaded: "
            "convert them to safetensors in a trusted environment with model.save_pretrained(folder)"
        )
    raise UserError(
        f"{setting} {folder} has no model.safetensors (a save may have been cut off): "
        "save the model again or pass another folder"
    )


def _check_special_tokens(
    path: str, tokenizer: PreTrainedTokenizerBase, config: Any, revision: str | None, setting: str
) -> None:
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise UserError(
            f"the tokenizer of {setting} {path} has {len(tokenizer)} tokens but the model's embedding has only "
            f"{vocab_size} rows: save the tokenizer the model was trained with, or resize the embedding"
        )
    try:
        generation_eos = GenerationConfig.from_pretrained(path, revision=revision).eos_token_id
    except (OSError, ValueError):
        generation_eos = None
    for name in ("bos", "eos", "pad"):
        token_id = getattr(tokenizer, f"{name}_token_id")
        config_ids = _as_id_list(getattr(config, f"{name}_token_id", None))
        if name == "eos":
            config_ids = list(dict.fromkeys(config_ids + _as_id_list(generation_eos)))
        if token_id is None or not config_ids or token_id in config_ids:
            continue
        expected = config_ids[0] if len(config_ids) == 1 else config_ids
        raise UserError(
            f"the tokenizer of {setting} {path} has {name}_token_id={token_id} but the model's config has "
            f"{name}_token_id={expected}: save the tokenizer the model was trained with, or fix {name}_token_id in config.json"
        )


def _as_id_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ---- Datasets ----


def load_checked_dataset(name: str, config: str | None = None, splits: Mapping[str, str] | None = None) -> DatasetDict:
    """Load a local dataset folder or Hub dataset and raise ``UserError`` if it cannot be read.

    ``splits`` maps each split the recipe needs to the setting that names it,
    for example ``{"train": "dataset_train_split"}``; each must exist and contain
    at least one row. Dataset scripts are never run: datasets 5 rejects them,
    and a local folder that contains one is rejected here first.
    """
    folder = Path(name)
    if folder.is_dir():
        scripts = sorted(entry.name for entry in folder.glob("*.py"))
        if scripts:
            raise UserError(
                f"dataset {name} contains the loading script {scripts[0]}, and the recipes never run dataset scripts: "
                "store the data as Parquet, JSON lines or CSV files instead"
            )
    elif not folder.exists() and _looks_like_local_path(name):
        raise UserError(f"dataset {name} not found: build it with python data/build_datasets.py, or fix dataset_name")

    try:
        dataset = load_dataset(name, name=config)
    except (DatasetsError, ArrowException, OSError, ValueError) as error:
        # DatasetGenerationError hides the parser's message in its cause.
        reason = one_line(error.__cause__ or error)
        if "corresponds to no data" in reason:
            # datasets 5.2 rejects a data file with zero rows.
            raise UserError(f"dataset {name} has a split with no rows ({reason}): rebuild it with more rows") from error
        raise UserError(
            f"dataset {name} could not be read ({reason}): fix or rebuild its files, or fix dataset_name"
        ) from error
    except RuntimeError as error:
        if "script" not in str(error):
            raise
        raise UserError(
            f"dataset {name} needs a loading script, and the recipes never run dataset scripts: "
            "use a dataset stored as data files"
        ) from error
    if not isinstance(dataset, DatasetDict):
        raise UserError(
            f"dataset {name} loaded as a {type(dataset).__name__}, not as named splits: "
            "store it as a folder of data files"
        )

    for split, setting in (splits or {}).items():
        if split not in dataset:
            raise UserError(
                f"dataset {name} has no split {split!r} (it has {', '.join(dataset) or 'none'}): "
                f"set {setting} to one of them"
            )
        if len(dataset[split]) == 0:
            raise UserError(f"split {split!r} of dataset {name} has no rows: rebuild the dataset with more rows")
    return dataset


def load_trl_dataset(script_args: Any, training_args: Any, task: str, model: CheckedModel) -> DatasetDict:
    """Load the dataset named by TRL's ``ScriptArguments`` and check the splits the trainer will use.

    The train split is always checked, the test split when the trainer evaluates.
    """
    splits = {script_args.dataset_train_split: "dataset_train_split"}
    if str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no":
        splits.setdefault(script_args.dataset_test_split, "dataset_test_split")
    dataset = load_checked_dataset(script_args.dataset_name, script_args.dataset_config, splits)
    for split in splits:
        check_dataset(
            dataset[split],
            task,
            model,
            max_length=getattr(training_args, "max_length", None),
            where=f"split {split!r} of {script_args.dataset_name}",
            text_column=getattr(training_args, "dataset_text_field", "text"),
        )
    return dataset


# Column sets of TRL's standard dataset formats, in the order the error message lists them.
_FORMATS = {
    LANGUAGE_MODELING: (("text",),),
    SFT: (("messages",), ("prompt", "completion"), ("text",)),
    PREFERENCE: (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
}


def check_dataset(
    dataset: Dataset,
    task: str,
    model: CheckedModel | None = None,
    max_length: int | None = None,
    where: str = "dataset",
    text_column: str = "text",
) -> None:
    """Raise ``UserError`` for the first row that the trainer for ``task`` would fail on or learn the wrong thing from.

    ``task`` is ``LANGUAGE_MODELING`` (a ``text`` column), ``SFT`` (``messages``,
    ``prompt``/``completion`` or ``text``) or ``PREFERENCE`` (``chosen``/``rejected``,
    with or without ``prompt``). Every row needs non-empty values of a type
    TRL reads; a preference row needs a chosen that differs from its rejected.
    With a tile model every value must be tiles, and BOS + sequence + EOS must
    fit both the model's positions and ``max_length``. With another model,
    ``max_length`` must fit the model's positions, because longer rows would
    reach the model uncut.
    """
    formats = [tuple(text_column if column == "text" else column for column in columns) for columns in _FORMATS[task]]
    columns = _matching_format(dataset, formats, task, where)
    if len(dataset) == 0:
        raise UserError(f"{where} has no rows: rebuild the dataset with more rows")

    tiles = model is not None and model.uses_tile_tokenizer
    limit = _token_limit(model, max_length, tiles)
    first = dataset[0]
    if model is not None and _is_chat(first, columns) and model.tokenizer.chat_template is None:
        raise UserError(
            f"{where} contains chat messages, but the tokenizer of {model.path} has no chat template: "
            "use plain-text columns, set chat_template_path, or pick a chat model"
        )

    selected = dataset.select_columns(list(columns))
    for start in range(0, len(dataset), _CHECK_BATCH_ROWS):
        batch = selected[start : start + _CHECK_BATCH_ROWS]
        for offset in range(len(batch[columns[0]])):
            row = {column: batch[column][offset] for column in columns}
            _check_row(row, f"{where}, row {start + offset}", tiles, limit)


def _matching_format(dataset: Dataset, formats: Sequence[tuple[str, ...]], task: str, where: str) -> tuple[str, ...]:
    present = set(dataset.column_names)
    for columns in formats:
        if set(columns) <= present:
            return columns
    expected = " or ".join(" and ".join(repr(column) for column in columns) for columns in formats)
    hints = [
        f"{match[0]!r} looks like {column!r}"
        for column in dict.fromkeys(column for columns in formats for column in columns)
        if column not in present and (match := difflib.get_close_matches(column, sorted(present), n=1))
    ]
    hint = f" ({'; '.join(hints)})" if hints else ""
    raise UserError(
        f"{where} has the columns {sorted(present)}, but {task} training needs {expected}{hint}: "
        "rename the columns (Dataset.rename_column) or rebuild the dataset"
    )


def _is_chat(row: Mapping[str, Any], columns: Sequence[str]) -> bool:
    return any(isinstance(row[column], list) and row[column] and isinstance(row[column][0], dict) for column in columns)


def _token_limit(model: CheckedModel | None, max_length: int | None, tiles: bool) -> int | None:
    positions = model.max_positions if model is not None else None
    if tiles:
        limits = [limit for limit in (positions, max_length) if limit is not None]
        return min(limits) if limits else None
    if positions is not None and max_length is not None and max_length > positions:
        raise UserError(
            f"max_length={max_length} is larger than the {positions} positions of {model.path}, so longer rows "
            f"would reach the model uncut: set max_length to {positions} or less"
        )
    return None


def _check_row(row: Mapping[str, Any], where: str, tiles: bool, limit: int | None) -> None:
    for column, value in row.items():
        if value is None:
            raise UserError(f"{where}: {column} is null: drop the row or fill it in")
        if not isinstance(value, (str, list)):
            raise UserError(
                f"{where}: {column} is a {type(value).__name__}: TRL reads strings or lists of chat messages"
            )
        if isinstance(value, list) and not all(_is_message(item) for item in value):
            raise UserError(
                f"{where}: {column} is a list but not of chat messages: write each message as {{role: ..., content: ...}}"
            )
        if _is_empty(value):
            raise UserError(f"{where}: {column} is empty: drop the row or fill it in")
        if tiles and isinstance(value, str):
            try:
                validate_tiles(value, label=column)
            except InvalidTileError as error:
                raise UserError(f"{where}: {error}") from error
    if "chosen" in row and row["chosen"] == row["rejected"]:
        raise UserError(f"{where}: chosen and rejected are the same, so the pair carries no preference: drop the row")
    if tiles and limit is not None:
        # The model reads the prompt with one completion at a time, the chosen or the rejected one.
        tiles_in_row = sum(len(value) for column, value in row.items() if column not in ("chosen", "rejected"))
        tiles_in_row += max((len(row[column]) for column in ("chosen", "rejected") if column in row), default=0)
        tokens = tiles_in_row + 2
        if tokens > limit:
            raise UserError(
                f"{where}: {tiles_in_row} tiles make {tokens} tokens with BOS and EOS, more than the {limit} the model "
                "and max_length allow, so the trainer would cut the sequence: shorten it, raise max_length, or "
                "pretrain a model with a larger n_positions"
            )


def _is_message(item: Any) -> bool:
    return isinstance(item, dict) and "role" in item and "content" in item


def _is_empty(value: Any) -> bool:
    """Return True for a blank string, or a list whose messages and text parts are all blank.

    An image or any other part without text counts as content.
    """
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list):
        return all(_is_empty(_text_of(item)) for item in value)
    return False


def _text_of(item: Any) -> Any:
    if isinstance(item, dict) and ("content" in item or "text" in item):
        return item.get("content", item.get("text"))
    return item


# ---- Dataset builder settings ----


def check_split_sizes(num_rows: int, test_fraction: float, setting: str) -> None:
    """Raise ``UserError`` unless both the train and the test split of ``num_rows`` rows get at least one row."""
    if not 0 < test_fraction < 1:
        raise UserError(f"test_fraction={test_fraction} is invalid: use a value strictly between 0 and 1")
    num_test = max(1, round(num_rows * test_fraction))
    if num_rows - num_test < 1:
        raise UserError(
            f"{setting}={num_rows} with test_fraction={test_fraction} leaves 0 rows for training: "
            f"raise {setting} or lower test_fraction"
        )
