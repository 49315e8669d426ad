"""Tile metrics as an ``evaluate`` metric module.

Load it with ``evaluate.load(path_to_this_folder)``. ``rgb_tokenizer.metric_path()``
returns that folder for an installed package.
"""

import datasets
import evaluate

from rgb_tokenizer import grammar
from rgb_tokenizer import metrics

_DESCRIPTION = """
Scores sampled tile sequences (strings over R, G, B) of the tile language, where R must be
followed by G, G by B, and B by R or G. Returns the mean preference score (share of B→G
transitions), the pooled rule adherence (share of valid transitions, 0..1), the empirical entropy
of the sample set in bits with its ceiling log2(number of samples), the fraction of distinct
samples, and the mean length in tiles. Given the model's log-probabilities of its own samples
(natural log), it also returns the sequence entropy in bits; given a reference model's
log-probabilities of the same samples too, the KL divergence from the reference in nats.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of tile strings, for example ["RGBG", "BGBR"].
    log_probs: optional list of floats, log p(y) of each prediction under the model that sampled it.
    reference_log_probs: optional list of floats, log p(y) of each prediction under the reference model.
Returns:
    preference_score, rule_adherence, empirical_entropy_bits, empirical_entropy_ceiling_bits,
    distinct_fraction, mean_length, num_samples, and sequence_entropy_bits and kl_to_reference_nats
    when the log-probabilities are given.
Example:
    >>> tile_metrics = evaluate.load("rgb_tokenizer/tile_metrics")
    >>> tile_metrics.compute(predictions=["BGBG", "RGBR"])["preference_score"]
    0.3333333333333333
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TileMetrics(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, log_probs=None, reference_log_probs=None):
        for index, prediction in enumerate(predictions):
            grammar.validate_tiles(prediction, label=f"prediction {index}")
        results = {
            "preference_score": metrics.mean_preference_score(predictions),
            "rule_adherence": metrics.pooled_rule_adherence(predictions),
            "empirical_entropy_bits": metrics.empirical_entropy_bits(predictions),
            "empirical_entropy_ceiling_bits": metrics.empirical_entropy_ceiling_bits(len(predictions)),
            "distinct_fraction": metrics.distinct_fraction(predictions),
            "mean_length": metrics.mean_length(predictions),
            "num_samples": len(predictions),
        }
        if log_probs is not None:
            results["sequence_entropy_bits"] = metrics.sequence_entropy_bits(log_probs)
        if log_probs is not None and reference_log_probs is not None:
            results["kl_to_reference_nats"] = metrics.kl_divergence_nats(log_probs, reference_log_probs)
        return results
