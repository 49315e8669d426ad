"""The tile grammar and the reference Markov chain that samples from it.

Tiles are ``R``, ``G`` and ``B``. ``R`` must be followed by ``G``, ``G`` by
``B``, and ``B`` by ``R`` or ``G``. The reference chain starts with ``R`` or
``B`` (probability 1/2 each) and then picks uniformly among the allowed next
tiles. Every sequence this chain produces is grammatical.
"""

from __future__ import annotations

import random

TILES: tuple[str, ...] = ("R", "G", "B")

ALLOWED_NEXT: dict[str, tuple[str, ...]] = {
    "R": ("G",),
    "G": ("B",),
    "B": ("R", "G"),
}

START_TILES: tuple[str, ...] = ("R", "B")


class InvalidTileError(ValueError):
    """A string contains a character that is not one of the tiles R, G, B."""


def validate_tiles(sequence: str, label: str = "sequence") -> str:
    """Return ``sequence`` unchanged, or raise ``InvalidTileError`` naming the first bad character.

    ``label`` names the value in the error message, for example "prompt of row 3".
    """
    if not isinstance(sequence, str):
        raise InvalidTileError(f"{label} must be a string of tiles R, G, B, got {type(sequence).__name__}: {sequence!r}")
    if not sequence:
        raise InvalidTileError(f"{label} is empty: it needs at least one tile (R, G or B)")
    for position, character in enumerate(sequence):
        if character not in ALLOWED_NEXT:
            raise InvalidTileError(
                f"{label} {sequence!r} has the invalid character {character!r} at position {position}: "
                "use only the uppercase tiles R, G and B, with no spaces"
            )
    return sequence


def is_valid_transition(current: str, following: str) -> bool:
    return following in ALLOWED_NEXT.get(current, ())


def is_grammatical(sequence: str) -> bool:
    return all(is_valid_transition(a, b) for a, b in zip(sequence, sequence[1:]))


def sample_continuation(rng: random.Random, last_tile: str, length: int) -> str:
    """Sample ``length`` tiles that grammatically follow ``last_tile``."""
    tiles = []
    current = last_tile
    for _ in range(length):
        current = rng.choice(ALLOWED_NEXT[current])
        tiles.append(current)
    return "".join(tiles)


def sample_sequence(rng: random.Random, length: int) -> str:
    """Sample one grammatical sequence of ``length`` tiles from the reference chain."""
    if length < 1:
        raise ValueError(f"length must be at least 1, got {length}")
    first = rng.choice(START_TILES)
    return first + sample_continuation(rng, first, length - 1)
