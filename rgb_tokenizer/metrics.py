"""Tile metrics: preference score, rule adherence and measures of variety.

Aggregates over a set of samples are plain means, except rule adherence,
which pools every transition of every sample, so long and short samples
count by their number of transitions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from rgb_tokenizer.grammar import is_valid_transition


def preference_score(sequence: str) -> float:
    """Return the share of transitions that are B→G: ``count("BG") / (len - 1)``.

    A sequence of fewer than 2 tiles has no transitions and scores 0.
    """
    if len(sequence) < 2:
        return 0.0
    return sequence.count("BG") / (len(sequence) - 1)


def count_valid_transitions(sequence: str) -> tuple[int, int]:
    """Return ``(valid, total)`` transition counts of one sequence."""
    valid = sum(is_valid_transition(a, b) for a, b in zip(sequence, sequence[1:]))
    return valid, max(len(sequence) - 1, 0)


def rule_adherence(sequence: str) -> float:
    """Return the share of valid transitions, from 0 to 1; 1 for a sequence with no transitions."""
    valid, total = count_valid_transitions(sequence)
    return valid / total if total else 1.0


def mean_preference_score(samples: Sequence[str]) -> float:
    _require_samples(samples)
    return sum(preference_score(s) for s in samples) / len(samples)


def pooled_rule_adherence(samples: Sequence[str]) -> float:
    """Return the share of valid transitions over all samples together."""
    _require_samples(samples)
    counts = [count_valid_transitions(s) for s in samples]
    total = sum(t for _, t in counts)
    return sum(v for v, _ in counts) / total if total else 1.0


def empirical_entropy_bits(samples: Sequence[str]) -> float:
    """Return the entropy, in bits, of the distribution of distinct strings in ``samples``.

    Its ceiling is ``log2(len(samples))``, reached when every sample is
    distinct, so it cannot tell apart two models whose samples never repeat.
    """
    _require_samples(samples)
    n = len(samples)
    return -sum((c / n) * math.log2(c / n) for c in Counter(samples).values()) + 0.0


def empirical_entropy_ceiling_bits(num_samples: int) -> float:
    return math.log2(num_samples)


def distinct_fraction(samples: Sequence[str]) -> float:
    _require_samples(samples)
    return len(set(samples)) / len(samples)


def mean_length(samples: Sequence[str]) -> float:
    _require_samples(samples)
    return sum(len(s) for s in samples) / len(samples)


def sequence_entropy_bits(log_probs_nats: Sequence[float]) -> float:
    """Estimate the model's sequence entropy in bits as the mean of ``-log2 p(y)``.

    ``log_probs_nats`` are the natural-log probabilities that the model gave
    to its own samples. Unlike the empirical entropy, this estimate has no
    ceiling set by the sample count.
    """
    _require_samples(log_probs_nats)
    return -sum(log_probs_nats) / len(log_probs_nats) / math.log(2)


def kl_divergence_nats(policy_log_probs: Sequence[float], reference_log_probs: Sequence[float]) -> float:
    """Estimate KL(policy ‖ reference) in nats as the mean of ``log π(y) − log π_ref(y)``.

    Both lists score the same samples, which must have been drawn from the
    policy; the estimate is unbiased but a single sample can be negative.
    """
    _require_samples(policy_log_probs)
    if len(policy_log_probs) != len(reference_log_probs):
        raise ValueError(
            f"got {len(policy_log_probs)} policy log-probabilities but {len(reference_log_probs)} "
            "reference log-probabilities: score the same samples under both models"
        )
    return sum(p - r for p, r in zip(policy_log_probs, reference_log_probs)) / len(policy_log_probs)


def _require_samples(samples: Sequence) -> None:
    if len(samples) == 0:
        raise ValueError("no samples given: pass at least one sample")
