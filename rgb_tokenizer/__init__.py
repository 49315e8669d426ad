"""The tile language: grammar, tokenizer and metrics for the rgb-alignment recipes."""

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

__all__ = [
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
