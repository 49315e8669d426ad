import random
from collections import Counter

import pytest

from rgb_tokenizer import ALLOWED_NEXT, is_grammatical, is_valid_transition, sample_continuation, sample_sequence


def test_transition_rules():
    valid = {("R", "G"), ("G", "B"), ("B", "R"), ("B", "G")}
    for current in "RGB":
        for following in "RGB":
            assert is_valid_transition(current, following) == ((current, following) in valid)


@pytest.mark.parametrize("sequence, expected", [("RGBG", True), ("BRGB", True), ("RR", False), ("GR", False), ("BB", False), ("R", True)])
def test_is_grammatical(sequence, expected):
    assert is_grammatical(sequence) is expected


def test_samples_are_grammatical_and_sized():
    rng = random.Random(0)
    for _ in range(200):
        sequence = sample_sequence(rng, 40)
        assert len(sequence) == 40
        assert is_grammatical(sequence)


def test_first_tile_is_r_or_b():
    rng = random.Random(1)
    first = Counter(sample_sequence(rng, 5)[0] for _ in range(4000))
    assert set(first) == {"R", "B"}
    assert abs(first["R"] / 4000 - 0.5) < 0.03


def test_b_continues_uniformly():
    rng = random.Random(2)
    after_b = Counter(sample_continuation(rng, "B", 1) for _ in range(4000))
    assert set(after_b) == set(ALLOWED_NEXT["B"])
    assert abs(after_b["G"] / 4000 - 0.5) < 0.03


def test_sampler_is_seeded():
    assert sample_sequence(random.Random(5), 30) == sample_sequence(random.Random(5), 30)
    draws = {sample_sequence(random.Random(seed), 30) for seed in range(10)}
    assert len(draws) > 1


def test_sample_rejects_empty_length():
    with pytest.raises(ValueError, match="length"):
        sample_sequence(random.Random(0), 0)
