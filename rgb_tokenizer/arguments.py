"""Parse recipe settings from a YAML file and the command line, with one-line errors for bad input.

``TrlParser`` sets each YAML value as an argparse default. argparse converts a
string default with the field's type but passes any other value through
unchanged, so ``learning_rate: [1]`` or ``max_steps: 2.5`` would reach the
trainer as they are. The checks here run before parsing and compare each YAML
value with its dataclass field's type.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from rgb_tokenizer.errors import UserError, one_line

# The config file of each recipe script under recipes/config/, named in the error for a missing config.
_RECIPE_CONFIGS = {"pretrain": "pretrain.yaml", "sft": "sft.yaml", "dpo": "dpo.yaml", "compare": "compare.yaml", "build_datasets": "data.yaml"}

_TRUE_STRINGS = ("yes", "true", "t", "y", "1")
_FALSE_STRINGS = ("no", "false", "f", "n", "0")


def parse_recipe_args(parser: TrlParser, args: Sequence[str] | None = None) -> tuple:
    """Return the dataclasses that ``parser.parse_args_and_config`` builds, or raise ``UserError``.

    A missing or malformed ``--config`` file, an unknown setting, a YAML value
    of the wrong type, a bad command-line flag and a value that a dataclass
    rejects in ``__post_init__`` all become one-line ``UserError``s.
    """
    arguments = list(sys.argv[1:] if args is None else args)
    # A misspelled flag such as --num_sample must fail, not match --num_samples as an abbreviation.
    parser.allow_abbrev = False
    if "--config" in arguments:
        position = arguments.index("--config")
        if position + 1 >= len(arguments):
            raise UserError("--config needs the path of a YAML file, for example --config recipes/config/sft.yaml")
        check_config_file(parser, arguments[position + 1])

    # argparse prints its whole usage (hundreds of lines for TrainingArguments)
    # before the one line that matters; keep the line only.
    def raise_user_error(message: str) -> typing.NoReturn:
        raise UserError(f"{message}: run with --help to list the settings and their types")

    parser.error = raise_user_error
    try:
        return parser.parse_args_and_config(arguments)
    except UserError:
        raise
    except ValueError as error:
        # HfArgumentParser raises ValueError for unknown flags, and the dataclasses
        # raise it in __post_init__ for values they reject.
        unknown = [argument for argument in arguments if argument.startswith("--") and _is_unknown_flag(parser, argument)]
        if unknown:
            name = unknown[0].split("=", 1)[0]
            known = {option.lstrip("-"): None for option in parser._option_string_actions}
            raise UserError(
                f"unknown option {name}{_suggestion(name.lstrip('-'), known)}: run with --help to list the settings"
            ) from error
        raise UserError(f"invalid settings: {one_line(error)}") from error


def _is_unknown_flag(parser: TrlParser, argument: str) -> bool:
    # argparse accepts any unambiguous prefix of an option.
    name = argument.split("=", 1)[0]
    return name != "--config" and not any(option.startswith(name) for option in parser._option_string_actions)


def check_config_file(parser: TrlParser, path: str) -> None:
    """Raise ``UserError`` unless ``path`` is a YAML mapping of known settings with values of the right type."""
    config_path = Path(path)
    if not config_path.is_file():
        reason = "is a folder" if config_path.is_dir() else "not found"
        example = _RECIPE_CONFIGS.get(Path(sys.argv[0]).stem, "sft.yaml")
        raise UserError(f"config file {path} {reason}: pass the path of a YAML file, for example recipes/config/{example}")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as error:
        raise UserError(f"config file {path} is not valid YAML ({one_line(error)}): fix the syntax") from error
    except UnicodeDecodeError as error:
        raise UserError(f"config file {path} is not UTF-8 text: save it as a UTF-8 YAML file") from error
    if not isinstance(config, dict):
        found = "nothing" if config is None else f"a {type(config).__name__}"
        raise UserError(f"config file {path} contains {found}, not a mapping: write one `setting: value` per line")

    environment = config.get("env", {})
    if not isinstance(environment, dict):
        raise UserError(f"`env` in config file {path} is a {type(environment).__name__}: write it as a mapping of NAME: value")

    hints = _field_type_hints(parser)
    choices = {action.dest: action.choices for action in parser._actions if action.choices}
    for key, value in config.items():
        if key == "env":
            continue
        if key not in hints:
            raise UserError(f"unknown setting {key!r} in config file {path}{_suggestion(key, hints)}: remove it or fix its name")
        allowed = choices.get(key)
        if allowed and isinstance(value, str) and value not in [str(choice) for choice in allowed]:
            raise UserError(
                f"{key}: {value!r} in config file {path} is invalid: use one of {', '.join(map(str, allowed))}"
            )
        if not _matches(value, hints[key]):
            raise UserError(
                f"{key}: {value!r} in config file {path} is a {type(value).__name__}, "
                f"but {key} takes {_describe(hints[key])}: fix the value"
            )


def _field_type_hints(parser: TrlParser) -> dict[str, Any]:
    """Return the declared type of every init field of the parser's dataclasses, by field name.

    The hints come from the class annotations because HfArgumentParser rewrites
    ``Field.type`` (it drops ``str`` and ``None`` from unions) while it builds the parser.
    """
    hints: dict[str, Any] = {}
    for dataclass_type in parser.dataclass_types:
        annotations = typing.get_type_hints(dataclass_type)
        for field in dataclasses.fields(dataclass_type):
            if field.init:
                hints[field.name] = annotations[field.name]
    return hints


def _suggestion(key: str, known: Mapping[str, Any]) -> str:
    matches = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _union_members(hint: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return typing.get_args(hint)
    return None


def _matches(value: Any, hint: Any) -> bool:
    """Return True when ``value`` from YAML fits ``hint`` as argparse and the dataclass would read it.

    Strings are accepted wherever argparse converts them (numbers, booleans).
    Types this function does not know are accepted and left to the library.
    """
    members = _union_members(hint)
    if members is not None:
        return any(_matches(value, member) for member in members)
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return True
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return isinstance(value, hint) or value in [member.value for member in hint]
    if hint is bool:
        return isinstance(value, bool) or (isinstance(value, str) and value.lower() in _TRUE_STRINGS + _FALSE_STRINGS)
    if hint is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or _parses(value, int)
    if hint is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or _parses(value, float)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, set, Sequence) or hint in (list, tuple):
        element_types = typing.get_args(hint)
        if not isinstance(value, list):
            return False
        return not element_types or all(_matches(item, element_types[0]) for item in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _parses(value: Any, number_type: type) -> bool:
    if not isinstance(value, str):
        return False
    try:
        number_type(value)
    except ValueError:
        return False
    return True


def _describe(hint: Any) -> str:
    members = _union_members(hint)
    if members is not None:
        return " or ".join(dict.fromkeys(_describe(member) for member in members))
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "one of " + ", ".join(str(member.value) for member in hint)
    descriptions = {
        bool: "true or false",
        int: "a whole number",
        float: "a number such as 1.0e-4",
        str: "a string (quote it if it looks like a number)",
        dict: "a mapping",
    }
    if hint in descriptions:
        return descriptions[hint]
    if origin in (list, tuple, set, Sequence) or hint in (list, tuple):
        element_types = typing.get_args(hint)
        return f"a list of {_describe(element_types[0])}" if element_types else "a list"
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))

