"""Check the exact KL-regularised frontier against brute-force enumeration of sequences."""

from __future__ import annotations

import functools
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from rgb_tokenizer.frontier import (
    DEFAULT_BETAS,
    OptimalPolicy,
    frontier,
    max_preference_at_kl,
    optimal_policy,
    reference_chain,
)
from rgb_tokenizer.grammar import ALLOWED_NEXT, START_TILES, TILES

TOLERANCE = 1e-9
BETAS = (0.01, 0.1, 1.0, 10.0)


@functools.cache
def enumerate_sequences(length: int) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Return every string of ``length`` tiles with its reference log-probability and preference score.

    The reference probability is built from the grammar tables directly, not
    from the module under test, so the two computations share no code.
    """
    sequences = tuple("".join(tiles) for tiles in itertools.product(TILES, repeat=length))
    log_reference = np.full(len(sequences), -math.inf)
    scores = np.zeros(len(sequences))
    for position, sequence in enumerate(sequences):
        scores[position] = sum(a + b == "BG" for a, b in zip(sequence, sequence[1:])) / (length - 1)
        if sequence[0] not in START_TILES:
            continue
        log_probability = math.log(1.0 / len(START_TILES))
        for current, following in zip(sequence, sequence[1:]):
            if following not in ALLOWED_NEXT[current]:
                break
            log_probability += math.log(1.0 / len(ALLOWED_NEXT[current]))
        else:
            log_reference[position] = log_probability
    return sequences, log_reference, scores


def logsumexp(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    peak = finite.max()
    return float(peak + np.log(np.exp(finite - peak).sum()))


def brute_force_log_policy(length: int, beta: float, optimize_first_tile: bool) -> np.ndarray:
    """Return log pi*(y) for every enumerated sequence, with pi* ∝ ref * exp(score / beta)."""
    sequences, log_reference, scores = enumerate_sequences(length)
    tilted = log_reference + scores / beta
    if optimize_first_tile:
        return tilted - logsumexp(tilted)

    # With the first tile fixed to the reference, pi* is normalised separately
    # for each first tile and then weighted by that tile's reference probability.
    log_policy = np.full(len(sequences), -math.inf)
    first_tiles = np.array([sequence[0] for sequence in sequences])
    for tile in START_TILES:
        group = first_tiles == tile
        log_policy[group] = tilted[group] - logsumexp(tilted[group]) + math.log(1.0 / len(START_TILES))
    return log_policy


def brute_force_metrics(length: int, beta: float, optimize_first_tile: bool) -> tuple[float, float, float]:
    """Return (expected preference, KL in nats, entropy in bits) of pi* by summing over all sequences."""
    _, log_reference, scores = enumerate_sequences(length)
    log_policy = brute_force_log_policy(length, beta, optimize_first_tile)
    supported = np.isfinite(log_policy)
    probabilities = np.exp(log_policy[supported])
    preference = float(probabilities @ scores[supported])
    kl_nats = float(probabilities @ (log_policy[supported] - log_reference[supported]))
    entropy_bits = float(-(probabilities @ log_policy[supported]) / math.log(2.0))
    return preference, kl_nats, entropy_bits


def sequence_log_probability(policy: OptimalPolicy, sequence: str) -> float:
    indices = [TILES.index(tile) for tile in sequence]
    probability = policy.initial[indices[0]]
    for step, (current, following) in enumerate(zip(indices, indices[1:])):
        probability *= policy.transitions[step, current, following]
    return math.log(probability) if probability > 0 else -math.inf


def exact_reference_numbers(length: int) -> tuple[Fraction, Fraction]:
    """Return the reference chain's (expected preference, entropy in bits) as exact fractions.

    Only a B tile has two allowed successors, each with probability 1/2, so a
    step from B adds one bit of entropy and a BG transition with probability 1/2.
    """
    probability_r, probability_g, probability_b = Fraction(1, 2), Fraction(0), Fraction(1, 2)
    expected_bg = Fraction(0)
    expected_b_steps = Fraction(0)
    for _ in range(length - 1):
        expected_bg += probability_b / 2
        expected_b_steps += probability_b
        probability_r, probability_g, probability_b = (
            probability_b / 2,
            probability_r + probability_b / 2,
            probability_g,
        )
    return expected_bg / (length - 1), 1 + expected_b_steps


@pytest.mark.parametrize("optimize_first_tile", [False, True])
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("length", [8, 10])
def test_metrics_match_enumeration(length: int, beta: float, optimize_first_tile: bool) -> None:
    policy = optimal_policy(length, beta, optimize_first_tile)
    preference, kl_nats, entropy_bits = brute_force_metrics(length, beta, optimize_first_tile)

    assert policy.expected_preference == pytest.approx(preference, abs=TOLERANCE)
    assert policy.kl_nats == pytest.approx(kl_nats, abs=TOLERANCE)
    assert policy.entropy_bits == pytest.approx(entropy_bits, abs=TOLERANCE)


@pytest.mark.parametrize("optimize_first_tile", [False, True])
@pytest.mark.parametrize("beta", BETAS)
def test_sequence_probabilities_match_enumeration(beta: float, optimize_first_tile: bool) -> None:
    length = 8
    sequences, _, _ = enumerate_sequences(length)
    policy = optimal_policy(length, beta, optimize_first_tile)
    expected = np.exp(brute_force_log_policy(length, beta, optimize_first_tile))
    actual = np.exp([sequence_log_probability(policy, sequence) for sequence in sequences])

    assert np.max(np.abs(actual - expected)) < TOLERANCE
    assert actual.sum() == pytest.approx(1.0, abs=TOLERANCE)


def test_transitions_are_stochastic_and_grammatical() -> None:
    policy = optimal_policy(12, 0.05, optimize_first_tile=True)
    forbidden = np.array([[following not in ALLOWED_NEXT[tile] for following in TILES] for tile in TILES])

    assert policy.transitions.shape == (11, 3, 3)
    assert np.allclose(policy.transitions.sum(axis=2), 1.0)
    assert np.all(policy.transitions[:, forbidden] == 0.0)
    assert policy.initial[TILES.index("G")] == 0.0
    assert policy.initial.sum() == pytest.approx(1.0)


def test_first_tile_fixed_by_default() -> None:
    policy = optimal_policy(10, 0.01)

    assert list(policy.initial) == [0.5, 0.0, 0.5]
    assert policy.optimize_first_tile is False


def test_reference_chain_at_length_40() -> None:
    reference = reference_chain(40)
    exact_preference, exact_entropy = exact_reference_numbers(40)

    assert exact_preference == Fraction(5424633, 27262976)
    assert reference.expected_preference == pytest.approx(float(exact_preference), abs=1e-12)
    assert reference.expected_preference == pytest.approx(0.2, abs=2e-3)
    assert reference.kl_nats == 0.0
    assert reference.entropy_bits == pytest.approx(float(exact_entropy), abs=1e-12)


@pytest.mark.parametrize("length", [8, 10])
def test_reference_chain_matches_enumeration(length: int) -> None:
    reference = reference_chain(length)
    _, log_reference, scores = enumerate_sequences(length)
    supported = np.isfinite(log_reference)
    probabilities = np.exp(log_reference[supported])
    entropy_bits = float(-(probabilities @ log_reference[supported]) / math.log(2.0))

    assert reference.expected_preference == pytest.approx(float(probabilities @ scores[supported]), abs=TOLERANCE)
    assert reference.entropy_bits == pytest.approx(entropy_bits, abs=TOLERANCE)
    assert reference.kl_nats == 0.0


def test_huge_beta_approaches_reference() -> None:
    reference = reference_chain(40)
    nearly_reference = optimal_policy(40, 1e9)

    assert nearly_reference.kl_nats < 1e-15
    assert nearly_reference.expected_preference == pytest.approx(reference.expected_preference, abs=1e-9)
    assert nearly_reference.entropy_bits == pytest.approx(reference.entropy_bits, abs=1e-9)


def test_huge_beta_keeps_kl_precise() -> None:
    # For large beta the KL falls as 1 / beta**2, so KL * beta**2 must stay
    # constant long after the tilt drops below the rounding of log(1/2).
    scaled_kls = [optimal_policy(40, beta).kl_nats * beta**2 for beta in (1e8, 1e12, 1e100)]

    assert scaled_kls[0] == pytest.approx(1.8251154589e-3, rel=1e-9)
    assert scaled_kls[1] == pytest.approx(scaled_kls[0], rel=1e-9)
    assert scaled_kls[2] == pytest.approx(scaled_kls[0], rel=1e-9)


def test_small_beta_stays_finite() -> None:
    policy = optimal_policy(40, 1e-3)
    tiny = optimal_policy(40, 1e-8)

    assert np.all(np.isfinite(policy.transitions))
    assert math.isfinite(policy.kl_nats)
    assert np.all(np.isfinite(tiny.transitions))
    assert math.isfinite(tiny.entropy_bits)
    assert np.max(np.abs(tiny.transitions.sum(axis=2) - 1.0)) < 1e-15
    assert tiny.expected_preference <= 0.5


@pytest.mark.parametrize("optimize_first_tile", [False, True])
def test_frontier_rises_with_kl(optimize_first_tile: bool) -> None:
    policies = frontier(40, optimize_first_tile=optimize_first_tile)
    kls = np.array([policy.kl_nats for policy in policies])
    preferences = np.array([policy.expected_preference for policy in policies])
    betas = np.array([policy.beta for policy in policies])

    assert len(policies) == len(DEFAULT_BETAS)
    assert np.all(np.diff(kls) > 0)
    assert np.all(np.diff(preferences) > 0)
    assert np.all(np.diff(betas) < 0)


def test_frontier_limit_with_fixed_first_tile() -> None:
    # From B the best sequence BGBG... has 20 BG transitions in 39 steps and
    # makes 20 choices at B, each costing log 2 nats of KL. From R, RGBG... has
    # 19 of each. With the first tile R or B at 1/2 each the limit preference
    # is (20 + 19) / 78 and the KL is 19.5 * log 2.
    greedy = frontier(40)[-1]

    assert greedy.beta == pytest.approx(1e-3)
    assert greedy.expected_preference == pytest.approx(0.5, abs=1e-9)
    assert greedy.expected_preference <= 0.5
    assert greedy.kl_nats == pytest.approx(19.5 * math.log(2.0), abs=1e-9)
    assert greedy.entropy_bits == pytest.approx(1.0, abs=1e-6)
    assert max_preference_at_kl(40, 50.0) == pytest.approx(0.5, abs=1e-12)


def test_frontier_limit_with_optimized_first_tile() -> None:
    # Starting on B (log 2 nats of KL) and alternating BGBG... is the single
    # best sequence, so the limit KL is (1 + 20) * log 2 and the entropy is 0.
    greedy = frontier(40, optimize_first_tile=True)[-1]

    assert greedy.expected_preference == pytest.approx(20 / 39, abs=1e-9)
    assert greedy.kl_nats == pytest.approx(21 * math.log(2.0), abs=1e-9)
    assert greedy.initial[TILES.index("B")] == pytest.approx(1.0, abs=1e-9)
    assert greedy.entropy_bits == pytest.approx(0.0, abs=1e-6)
    assert max_preference_at_kl(40, 50.0, optimize_first_tile=True) == pytest.approx(20 / 39, abs=1e-12)


@pytest.mark.parametrize(
    ("length", "fixed_limit", "optimized_limit"),
    [
        # Odd length 41: from B 20 of 40 steps are BG, from R 19 of 40.
        (41, 39 / 80, 20 / 40),
        # Long even length: from B 1000 of 1999 steps are BG, from R 999.
        (2000, 1999 / 3998, 1000 / 1999),
    ],
)
def test_max_preference_reaches_greedy_limit(length: int, fixed_limit: float, optimized_limit: float) -> None:
    assert max_preference_at_kl(length, 1e6) == pytest.approx(fixed_limit, abs=1e-12)
    assert max_preference_at_kl(length, 1e6, optimize_first_tile=True) == pytest.approx(optimized_limit, abs=1e-12)


def test_frontier_sorts_given_betas() -> None:
    policies = frontier(10, betas=[1.0, math.inf, 0.01])

    assert [policy.beta for policy in policies] == [math.inf, 1.0, 0.01]
    assert policies[0].kl_nats == 0.0


def test_max_preference_at_zero_kl() -> None:
    assert max_preference_at_kl(40, 0.0) == reference_chain(40).expected_preference
    assert max_preference_at_kl(40, 0.0, optimize_first_tile=True) == reference_chain(40).expected_preference


@pytest.mark.parametrize("optimize_first_tile", [False, True])
@pytest.mark.parametrize("beta", [0.003, 0.05, 0.3])
def test_max_preference_recovers_policy(beta: float, optimize_first_tile: bool) -> None:
    policy = optimal_policy(40, beta, optimize_first_tile)
    bound = max_preference_at_kl(40, policy.kl_nats, optimize_first_tile)

    assert bound == pytest.approx(policy.expected_preference, abs=1e-9)


def test_max_preference_bounds_reference_mixture() -> None:
    # Mixing the reference with the greedy policy is a feasible policy that is
    # not on the frontier, so its preference must lie strictly below the bound.
    length = 8
    _, log_reference, scores = enumerate_sequences(length)
    greedy = np.exp(brute_force_log_policy(length, 1e-3, optimize_first_tile=False))
    mixture = 0.5 * np.exp(log_reference) + 0.5 * greedy
    supported = mixture > 0
    kl_nats = float(mixture[supported] @ (np.log(mixture[supported]) - log_reference[supported]))
    preference = float(mixture @ scores)

    assert max_preference_at_kl(length, kl_nats) > preference + 1e-3


def test_max_preference_increases_with_kl() -> None:
    bounds = [max_preference_at_kl(40, kl_nats) for kl_nats in (0.0, 1e-20, 1e-10, 1.0, 5.0, 10.0, 13.0)]

    assert np.all(np.diff(bounds) > 0)


@pytest.mark.parametrize("length", [1, 0, -3])
def test_short_length_rejected(length: int) -> None:
    with pytest.raises(ValueError, match=f"length must be at least 2.*got {length}"):
        optimal_policy(length, 1.0)


@pytest.mark.parametrize("length", [2.5, "40", True])
def test_non_integer_length_rejected(length: object) -> None:
    with pytest.raises(ValueError, match="length must be an integer"):
        optimal_policy(length, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, -math.inf])
def test_bad_beta_rejected(beta: float) -> None:
    with pytest.raises(ValueError, match="beta must be > 0"):
        optimal_policy(10, beta)


def test_bad_beta_in_grid_rejected() -> None:
    with pytest.raises(ValueError, match="beta must be > 0, got 0.0"):
        frontier(10, betas=[1.0, 0.0])


def test_empty_beta_grid_rejected() -> None:
    with pytest.raises(ValueError, match="betas is empty"):
        frontier(10, betas=[])


@pytest.mark.parametrize("kl_nats", [-0.1, math.nan])
def test_bad_kl_budget_rejected(kl_nats: float) -> None:
    with pytest.raises(ValueError, match="kl_nats must be >= 0"):
        max_preference_at_kl(40, kl_nats)


def test_short_length_budget_rejected() -> None:
    with pytest.raises(ValueError, match="length must be at least 2.*got 1"):
        max_preference_at_kl(1, 1.0)
