import math

import evaluate
import pytest

import rgb_tokenizer
from rgb_tokenizer import metrics


@pytest.mark.parametrize(
    "sequence, expected",
    [("BGBG", 2 / 3), ("RGBR", 0.0), ("BG", 1.0), ("RGBGBRGB", 1 / 7), ("B", 0.0), ("", 0.0)],
)
def test_preference_score(sequence, expected):
    assert metrics.preference_score(sequence) == pytest.approx(expected)


@pytest.mark.parametrize(
    "sequence, expected",
    [("RGBG", 1.0), ("RRGB", 2 / 3), ("RBRB", 1 / 3), ("GR", 0.0), ("R", 1.0)],
)
def test_rule_adherence(sequence, expected):
    assert metrics.rule_adherence(sequence) == pytest.approx(expected)


def test_pooled_adherence_weights_by_transitions():
    # 3 valid of 3, then 0 valid of 1: pooled 3/4, not the mean of 1.0 and 0.0.
    assert metrics.pooled_rule_adherence(["RGBG", "RR"]) == pytest.approx(0.75)


def test_mean_preference_score():
    assert metrics.mean_preference_score(["BGBG", "RGBR"]) == pytest.approx(1 / 3)


def test_empirical_entropy_values():
    assert metrics.empirical_entropy_bits(["RG"] * 4) == 0.0
    assert metrics.empirical_entropy_bits(["RG", "BG", "RG", "BG"]) == pytest.approx(1.0)
    # Counts 2, 1, 1: -(1/2 log2 1/2 + 2 * 1/4 log2 1/4) = 1.5 bits.
    assert metrics.empirical_entropy_bits(["RG", "RG", "BG", "BR"]) == pytest.approx(1.5)


def test_empirical_entropy_ceiling():
    samples = [f"R{'GB' * i}" for i in range(200)]
    assert metrics.empirical_entropy_bits(samples) == pytest.approx(math.log2(200))
    assert metrics.empirical_entropy_ceiling_bits(200) == pytest.approx(7.643856)


def test_distinct_fraction():
    assert metrics.distinct_fraction(["RG", "RG", "BG", "BR"]) == pytest.approx(0.75)


def test_sequence_entropy_bits():
    # log p = -ln 4 for every sample: 2 bits each.
    assert metrics.sequence_entropy_bits([-math.log(4)] * 3) == pytest.approx(2.0)


def test_kl_divergence_nats():
    assert metrics.kl_divergence_nats([-1.0, -2.0], [-1.5, -3.0]) == pytest.approx(0.75)


def test_kl_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same samples"):
        metrics.kl_divergence_nats([-1.0], [-1.0, -2.0])


def test_empty_samples_rejected():
    with pytest.raises(ValueError, match="no samples"):
        metrics.mean_preference_score([])


def test_evaluate_module_matches_functions():
    tile_metrics = evaluate.load(rgb_tokenizer.metric_path())
    predictions = ["BGBG", "RGBR", "RRGB", "BGBG"]
    result = tile_metrics.compute(predictions=predictions, log_probs=[-1.0] * 4, reference_log_probs=[-2.0] * 4)
    assert result["preference_score"] == pytest.approx(metrics.mean_preference_score(predictions))
    assert result["rule_adherence"] == pytest.approx(metrics.pooled_rule_adherence(predictions))
    assert result["empirical_entropy_bits"] == pytest.approx(1.5)
    assert result["empirical_entropy_ceiling_bits"] == pytest.approx(2.0)
    assert result["distinct_fraction"] == pytest.approx(0.75)
    assert result["sequence_entropy_bits"] == pytest.approx(1 / math.log(2))
    assert result["kl_to_reference_nats"] == pytest.approx(1.0)
    assert result["num_samples"] == 4


def test_evaluate_module_without_log_probs():
    result = evaluate.load(rgb_tokenizer.metric_path()).compute(predictions=["BG"])
    assert "sequence_entropy_bits" not in result
    assert "kl_to_reference_nats" not in result


@pytest.mark.parametrize("bad", ["BGxB", "", "rgb"])
def test_evaluate_module_rejects_non_tiles(bad):
    with pytest.raises(ValueError, match="prediction 1"):
        evaluate.load(rgb_tokenizer.metric_path()).compute(predictions=["BG", bad])
