"""The tile language: grammar, tokenizer and metrics for the rgb-alignment recipes."""

from pathlib import Path

from rgb_tokenizer.grammar import (
    ALLOWED_NEXT,
    START_TILES,
    TILES,
    InvalidTileError,
    is_grammatical,
    is_valid_transition,
    sample_continuation,
    sample_sequence,
    validate_tiles,
)

__version__ = "0.1.0"


def metric_path() -> str:
    """Return the folder of the tile metrics module, for ``evaluate.load(metric_path())``."""
    return str(Path(__file__).resolve().parent / "tile_metrics")


__all__ = [
    "metric_path",
    "ALLOWED_NEXT",
    "START_TILES",
    "TILES",
    "InvalidTileError",
    "is_grammatical",
    "is_valid_transition",
    "sample_continuation",
    "sample_sequence",
    "validate_tiles",
]
