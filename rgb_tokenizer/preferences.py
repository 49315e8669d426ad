"""Preference pairs over the tile language, in TRL's prompt/chosen/rejected format."""

from __future__ import annotations

import random

from rgb_tokenizer.errors import UserError
from rgb_tokenizer.grammar import sample_continuation, sample_sequence
from rgb_tokenizer.metrics import preference_score

# Ties and identical completions are dropped, so some draws are wasted: with
# seed 0, 85% of draws were usable for 40 tiles (prompts of 1-20 tiles) and 47%
# for 4 tiles (prompts of 1-2). This bound only stops a loop that cannot finish.
MAX_DRAWS_PER_PAIR = 1000


def make_preference_pair(rng: random.Random, sequence_length: int, prompt_length: int) -> dict[str, str] | None:
    """Draw one pair, or None when it carries no preference (equal scores or identical completions).

    The prompt and both completions are grammatical, and prompt plus
    completion has exactly ``sequence_length`` tiles. ``chosen`` is the
    completion whose full sequence has the higher preference score.
    """
    prompt = sample_sequence(rng, prompt_length)
    completion_length = sequence_length - prompt_length
    first = sample_continuation(rng, prompt[-1], completion_length)
    second = sample_continuation(rng, prompt[-1], completion_length)
    if first == second:
        return None
    first_score = preference_score(prompt + first)
    second_score = preference_score(prompt + second)
    if first_score == second_score:
        return None
    chosen, rejected = (first, second) if first_score > second_score else (second, first)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def make_preference_pairs(
    seed: int, num_pairs: int, sequence_length: int, min_prompt_length: int, max_prompt_length: int
) -> list[dict[str, str]]:
    """Draw ``num_pairs`` pairs with prompt lengths uniform in ``[min_prompt_length, max_prompt_length]``."""
    if num_pairs < 1:
        raise ValueError(f"num_pairs={num_pairs} is invalid: ask for at least 1 pair")
    check_prompt_lengths(min_prompt_length, max_prompt_length, sequence_length)
    rng = random.Random(seed)
    pairs: list[dict[str, str]] = []
    draws = 0
    while len(pairs) < num_pairs:
        draws += 1
        if draws > MAX_DRAWS_PER_PAIR * num_pairs:
            raise RuntimeError(f"only {len(pairs)} of {num_pairs} usable pairs after {draws - 1} draws")
        prompt_length = rng.randint(min_prompt_length, max_prompt_length)
        pair = make_preference_pair(rng, sequence_length, prompt_length)
        if pair is not None:
            pairs.append(pair)
    return pairs


def check_prompt_lengths(min_prompt_length: int, max_prompt_length: int, sequence_length: int) -> None:
    """Raise ``UserError`` unless 1 <= min_prompt_length <= max_prompt_length <= sequence_length - 2.

    Each completion needs at least 2 tiles, so that chosen and rejected can differ in a B->G transition.
    """
    if not 1 <= min_prompt_length <= max_prompt_length:
        raise UserError(
            f"prompt lengths min_prompt_length={min_prompt_length} and max_prompt_length={max_prompt_length} "
            "cannot be met: use 1 <= min_prompt_length <= max_prompt_length"
        )
    if max_prompt_length > sequence_length - 2:
        raise UserError(
            f"max_prompt_length={max_prompt_length} leaves completions under 2 tiles in sequences of "
            f"{sequence_length}: use max_prompt_length <= {sequence_length - 2} or a longer sequence_length"
        )
