"""Exact KL-regularised optimum of the BG preference score on the tile grammar.

The preference score of a sequence y of L tiles is the count of ``B -> G``
transitions divided by L - 1. The distribution that maximises
E_pi[score(y)] - beta * KL(pi || ref) is pi*(y) ∝ ref(y) * exp(score(y) / beta).
Because the score is a sum of per-transition rewards
r(s, s') = [s = B and s' = G] / (L - 1), pi* is a Markov chain whose transitions
depend on the step t. With W_t = V_t / beta, the backward soft-Bellman recursion

    W_L(s) = 0
    W_t(s) = log sum_{s'} ref(s' | s) * exp(r(s, s') / beta + W_{t+1}(s'))

gives pi_t(s' | s) = ref(s' | s) * exp(r(s, s') / beta + W_{t+1}(s') - W_t(s)).
Everything is computed as log-ratios log(pi_t / ref) with a shifted logsumexp,
so beta far below 1e-3 does not overflow and beta far above 1e2 keeps the KL
precise. Expected preference, KL (nats) and entropy (bits) are
exact sums over the tile distribution pushed forward through these transitions.

By default the first tile keeps the reference distribution, because the
evaluation prompts every model with a random first tile. With
``optimize_first_tile=True`` the first tile is drawn from
pi*(s_1) ∝ ref(s_1) * exp(W_1(s_1)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rgb_tokenizer.grammar import ALLOWED_NEXT, START_TILES, TILES

DEFAULT_BETAS: tuple[float, ...] = tuple(float(beta) for beta in np.logspace(-3.0, 2.0, 51))
"""Log-spaced grid of beta used by ``frontier`` when no grid is given."""

# A suboptimal choice loses at least 1 / (L - 1) of reward and gains at most
# (L - 1) * log(2) nats of future entropy. At beta = this factor / (L - 1)**2 its
# weight is below exp(-(L - 1) * (1e4 - log 2)), which is 0.0 in float64, so the
# policy there is the beta -> 0 limit to machine precision. The bound is a worst
# case, and far larger factors give the same limit for the lengths tested.
_MIN_BETA_TIMES_SQUARED_STEPS = 1e-4
_BISECTION_STEPS = 200


def _index(tile: str) -> int:
    return TILES.index(tile)


def _reference_transition_matrix() -> np.ndarray:
    matrix = np.zeros((len(TILES), len(TILES)))
    for tile, following in ALLOWED_NEXT.items():
        for next_tile in following:
            matrix[_index(tile), _index(next_tile)] = 1.0 / len(following)
    matrix.setflags(write=False)
    return matrix


def _reference_initial() -> np.ndarray:
    initial = np.zeros(len(TILES))
    for tile in START_TILES:
        initial[_index(tile)] = 1.0 / len(START_TILES)
    initial.setflags(write=False)
    return initial


def _reward_indicator() -> np.ndarray:
    indicator = np.zeros((len(TILES), len(TILES)))
    indicator[_index("B"), _index("G")] = 1.0
    indicator.setflags(write=False)
    return indicator


REFERENCE_TRANSITIONS: np.ndarray = _reference_transition_matrix()
"""Reference next-tile probabilities: row = current tile, column = next tile, in ``TILES`` order."""

REFERENCE_INITIAL: np.ndarray = _reference_initial()
"""Reference probabilities of the first tile, in ``TILES`` order."""

_REWARD_INDICATOR = _reward_indicator()


@dataclass(frozen=True, eq=False)
class OptimalPolicy:
    """Time-dependent Markov chain over tiles with its exact expected preference, KL and entropy.

    Arrays are read-only and indexed in ``TILES`` order.
    """

    length: int
    beta: float
    optimize_first_tile: bool
    initial: np.ndarray
    """Probabilities of the first tile, shape (3,)."""
    transitions: np.ndarray
    """Next-tile probabilities at each step, shape (length - 1, 3, 3): [step, current tile, next tile]."""
    expected_preference: float
    kl_nats: float
    """KL(policy || reference chain) over whole sequences, in nats."""
    entropy_bits: float
    """Entropy of whole sequences in bits, first tile included."""


def _validate_length(length: int) -> None:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise ValueError(f"length must be an integer number of tiles, got {length!r}: pass an int of at least 2")
    if length < 2:
        raise ValueError(
            f"length must be at least 2 because the preference score divides by length - 1, got {length}: "
            "pass a sequence length of 2 or more"
        )


def _validate_beta(beta: float) -> None:
    if not isinstance(beta, (int, float, np.floating, np.integer)) or isinstance(beta, bool):
        raise ValueError(f"beta must be a positive number, got {beta!r}: pass a float > 0 or math.inf")
    if math.isnan(beta) or beta <= 0:
        raise ValueError(
            f"beta must be > 0, got {beta}: pass a positive KL weight, "
            "or math.inf for the reference chain"
        )


def _log_expectation(log_weights: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Return log sum_j p[..., j] * exp(x[..., j]) along the last axis, skipping entries with p = 0.

    This is logsumexp shifted by the row maximum, written with expm1 and log1p
    because the rows of p sum to 1. Tilts x far below the float64 resolution
    of log p (huge beta) then keep their relative precision, instead of turning
    into rounding noise that can make the KL negative.
    """
    allowed = probabilities > 0.0
    shift = np.max(np.where(allowed, log_weights, -np.inf), axis=-1)
    deviations = np.zeros(np.broadcast_shapes(log_weights.shape, probabilities.shape))
    np.expm1(log_weights - shift[..., None], out=deviations, where=allowed)
    return shift + np.log1p((probabilities * deviations).sum(axis=-1))


def _backward_log_ratios(length: int, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Run the soft-Bellman recursion and return (log(pi_t / ref) for every step, W_1 - max W_1).

    Entries for transitions the grammar forbids are -inf.
    """
    steps = length - 1
    # beta = inf gives a zero tilt, so every ratio below is exactly 0.
    scaled_reward = _REWARD_INDICATOR / (steps * beta)
    forbidden = REFERENCE_TRANSITIONS == 0.0
    log_ratios = np.empty((steps, len(TILES), len(TILES)))
    value_next = np.zeros(len(TILES))
    for step in reversed(range(steps)):
        log_weights = scaled_reward + value_next[None, :]
        value = _log_expectation(log_weights, REFERENCE_TRANSITIONS)
        step_log_ratios = log_weights - value[:, None]
        # At tiny beta, x and W are of order 1 / ((L - 1) * beta), so x - W
        # carries the rounding error of numbers that large. A second
        # normalisation of the O(1) ratios brings each row sum back to 1.
        step_log_ratios -= _log_expectation(step_log_ratios, REFERENCE_TRANSITIONS)[:, None]
        log_ratios[step] = np.where(forbidden, -np.inf, step_log_ratios)
        # Ratios depend only on differences of W between tiles, so subtracting
        # the max keeps W small without changing the policy.
        value_next = value - value.max()
    return log_ratios, value_next


def _first_tile_log_ratios(first_value: np.ndarray, optimize_first_tile: bool) -> np.ndarray:
    forbidden = REFERENCE_INITIAL == 0.0
    if not optimize_first_tile:
        return np.where(forbidden, -np.inf, 0.0)
    normalizer = _log_expectation(first_value, REFERENCE_INITIAL)
    return np.where(forbidden, -np.inf, first_value - normalizer)


# Taylor coefficients (n - 1) / n! of x * exp(x) - expm1(x) for n = 2..12. At
# |x| < 0.1 the first omitted term is below 1e-19 of the sum.
_KL_SERIES_COEFFICIENTS = tuple((n - 1) / math.factorial(n) for n in range(12, 1, -1))
_KL_SERIES_RADIUS = 0.1


def _kl_integrand(log_ratios: np.ndarray) -> np.ndarray:
    """Return f(x) = x * exp(x) - expm1(x) >= 0 for finite x.

    Where sum_j ref_j * exp(x_j) = 1, sum_j ref_j * f(x_j) equals the KL
    sum_j ref_j * exp(x_j) * x_j, but with no cancellation between terms, so
    KL of order 1e-30 at huge beta keeps its relative precision.
    """
    series = np.zeros_like(log_ratios)
    for coefficient in _KL_SERIES_COEFFICIENTS:
        series = (series + coefficient) * log_ratios
    series *= log_ratios
    direct = log_ratios * np.exp(log_ratios) - np.expm1(log_ratios)
    return np.where(np.abs(log_ratios) < _KL_SERIES_RADIUS, series, direct)


def _entropy_and_kl_terms(
    reference: np.ndarray, log_ratios: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return elementwise p, -p log p and the KL terms for p = ref * exp(log_ratios).

    The KL terms are ref * f(log_ratios) and sum to KL(p || ref) row by row.
    Every term is 0 where ref is 0, and the entropy term is 0 where p underflows to 0.
    """
    with np.errstate(divide="ignore"):
        log_reference = np.log(reference)
    probabilities = reference * np.exp(log_ratios)
    entropy_terms = np.zeros_like(probabilities)
    np.multiply(probabilities, -(log_reference + log_ratios), out=entropy_terms, where=probabilities > 0.0)

    allowed = reference > 0.0
    kl_terms = np.zeros_like(probabilities)
    finite_log_ratios = np.where(allowed, log_ratios, 0.0)
    np.multiply(reference, _kl_integrand(finite_log_ratios), out=kl_terms, where=allowed)
    return probabilities, entropy_terms, kl_terms


def _policy_from_log_ratios(
    length: int,
    beta: float,
    optimize_first_tile: bool,
    initial_log_ratios: np.ndarray,
    transition_log_ratios: np.ndarray,
) -> OptimalPolicy:
    steps = length - 1
    initial, initial_entropy_terms, initial_kl_terms = _entropy_and_kl_terms(REFERENCE_INITIAL, initial_log_ratios)
    transitions, entropy_terms, kl_terms = _entropy_and_kl_terms(REFERENCE_TRANSITIONS, transition_log_ratios)

    # Per step and current tile: the entropy, KL and expected BG count of the next-tile choice.
    entropy_by_tile = entropy_terms.sum(axis=2)
    kl_by_tile = kl_terms.sum(axis=2)
    bg_by_tile = (transitions * _REWARD_INDICATOR).sum(axis=2)

    marginals = np.empty((steps, len(TILES)))
    marginal = initial
    for step in range(steps):
        marginals[step] = marginal
        marginal = marginal @ transitions[step]

    entropy_nats = float(initial_entropy_terms.sum() + np.sum(marginals * entropy_by_tile))
    kl_nats = float(initial_kl_terms.sum() + np.sum(marginals * kl_by_tile))
    bg_count = float(np.sum(marginals * bg_by_tile))

    initial.setflags(write=False)
    transitions.setflags(write=False)
    return OptimalPolicy(
        length=int(length),
        beta=float(beta),
        optimize_first_tile=optimize_first_tile,
        initial=initial,
        transitions=transitions,
        expected_preference=bg_count / steps,
        kl_nats=kl_nats,
        entropy_bits=entropy_nats / math.log(2.0),
    )


def optimal_policy(length: int, beta: float, optimize_first_tile: bool = False) -> OptimalPolicy:
    """Compute the exact maximiser of E[score] - beta * KL(pi || ref) for sequences of ``length`` tiles.

    ``beta=math.inf`` returns the reference chain. With ``optimize_first_tile=False``
    the first tile keeps the reference distribution (R or B, 1/2 each) and adds
    nothing to the KL. Raises ``ValueError`` for length < 2 or beta <= 0.
    """
    _validate_length(length)
    _validate_beta(beta)
    transition_log_ratios, first_value = _backward_log_ratios(length, beta)
    initial_log_ratios = _first_tile_log_ratios(first_value, optimize_first_tile)
    return _policy_from_log_ratios(length, beta, optimize_first_tile, initial_log_ratios, transition_log_ratios)


def reference_chain(length: int) -> OptimalPolicy:
    """Return the reference chain as an ``OptimalPolicy`` with beta = inf and KL 0."""
    return optimal_policy(length, math.inf)


def frontier(
    length: int,
    betas: Sequence[float] | None = None,
    optimize_first_tile: bool = False,
) -> list[OptimalPolicy]:
    """Compute the optimal policy for each beta, sorted by increasing KL.

    Without ``betas`` the grid is ``DEFAULT_BETAS`` (51 values from 1e-3 to 1e2),
    which does not include the reference chain; add ``math.inf`` to get it.
    """
    _validate_length(length)
    grid = DEFAULT_BETAS if betas is None else tuple(betas)
    if not grid:
        raise ValueError("betas is empty: pass at least one beta > 0, or None for the default grid")
    policies = [optimal_policy(length, beta, optimize_first_tile) for beta in grid]
    return sorted(policies, key=lambda policy: policy.kl_nats)


def max_preference_at_kl(length: int, kl_nats: float, optimize_first_tile: bool = False) -> float:
    """Return the highest expected preference any policy reaches with KL(policy || ref) <= ``kl_nats``.

    KL of the optimal policy decreases as beta grows, so bisection on log(beta)
    finds the beta whose KL meets the budget and returns that policy's expected
    preference (about 50 calls of ``optimal_policy``). Budgets beyond the KL of
    the beta -> 0 limit return that limit's preference, the maximum over all
    policies. Raises ``ValueError`` for length < 2 or a negative or NaN budget.
    """
    _validate_length(length)
    if isinstance(kl_nats, bool) or not isinstance(kl_nats, (int, float, np.floating, np.integer)):
        raise ValueError(f"kl_nats must be a number of nats, got {kl_nats!r}: pass a float >= 0")
    if math.isnan(kl_nats) or kl_nats < 0:
        raise ValueError(f"kl_nats must be >= 0, got {kl_nats}: pass a non-negative KL budget in nats")

    if kl_nats == 0:
        return reference_chain(length).expected_preference

    def policy_at(log_beta: float) -> OptimalPolicy:
        return optimal_policy(length, math.exp(log_beta), optimize_first_tile)

    low = math.log(_MIN_BETA_TIMES_SQUARED_STEPS / (length - 1) ** 2)
    greedy = policy_at(low)
    if greedy.kl_nats <= kl_nats:
        return greedy.expected_preference

    # Grow beta until its KL fits the budget. The KL falls as 1 / beta**2 and
    # underflows to 0 near beta = 1e160 for length 40, so the reference
    # fallback past 1e300 only guarantees that the loop ends.
    high = math.log(100.0)
    feasible = policy_at(high)
    while feasible.kl_nats > kl_nats:
        low = high
        high += math.log(1e4)
        if high > math.log(1e300):
            return reference_chain(length).expected_preference
        feasible = policy_at(high)

    for _ in range(_BISECTION_STEPS):
        if high - low <= 1e-13 * max(1.0, abs(high)):
            break
        middle = 0.5 * (low + high)
        candidate = policy_at(middle)
        if candidate.kl_nats <= kl_nats:
            high, feasible = middle, candidate
        else:
            low = middle
    return feasible.expected_preference
