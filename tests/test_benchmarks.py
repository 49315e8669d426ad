"""The arithmetic behind docs/benchmarks.md: FLOP counts, line fits and the parsers of timing output.

The benchmarks themselves time things and assert nothing. These tests check the numbers they divide by.
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM, GPT2Config

from benchmarks.growth import fit_line
from benchmarks.timing import gpt2_training_flops_per_token, parse_gnu_time, trainer_metrics


@pytest.mark.parametrize(("n_layer", "n_embd", "context"), [(6, 256, 42), (2, 64, 162)])
def test_flops_per_token_match_torch_counter(n_layer, n_embd, context):
    # torch's counter counts every matmul of a real forward and backward pass. With eager attention the
    # scores and the weighted sum are plain matmuls over the whole context, as the formula counts them.
    config = GPT2Config(vocab_size=6, n_positions=context, n_embd=n_embd, n_layer=n_layer, n_head=4)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    batch = 3
    input_ids = torch.randint(3, 6, (batch, context))
    with FlopCounterMode(display=False) as counter:
        model(input_ids=input_ids, labels=input_ids).loss.backward()
    counted = counter.get_total_flops() / (batch * context)
    assert counted == gpt2_training_flops_per_token(n_layer, n_embd, context, 6)


def test_recipe_model_flops_per_token():
    # The 29.1 MFLOP per token that docs/benchmarks.md uses for the default GPT-2 at 42 positions.
    assert gpt2_training_flops_per_token(6, 256, 42, 6) == 29_094_912
    assert gpt2_training_flops_per_token(6, 256, 42, 6, forward_only=True) * 3 == 29_094_912


def test_fit_line_exact_line():
    fit = fit_line([1000, 3000, 9000], [8.0 + 0.006 * x for x in (1000, 3000, 9000)])
    assert fit["intercept"] == pytest.approx(8.0)
    assert fit["slope"] == pytest.approx(0.006)
    assert fit["max_relative_residual"] == pytest.approx(0.0, abs=1e-12)
    assert fit["slope_ratio"] == pytest.approx(1.0)


def test_fit_line_flattening_cost():
    # The extra cost per row halves between the smaller and the larger sizes.
    fit = fit_line([1, 2, 3], [0.0, 2.0, 3.0])
    assert fit["slope_ratio"] == pytest.approx(0.5)
    assert fit["slope"] == pytest.approx(1.5)
    # Fitted values 1/6, 5/3 and 19/6: the first point misses its fitted value by 100%.
    assert fit["max_relative_residual"] == pytest.approx(-1.0)


GNU_TIME_OUTPUT = """\
\tCommand being timed: "accelerate launch recipes/pretrain.py"
\tUser time (seconds): 140.12
\tElapsed (wall clock) time (h:mm:ss or m:ss): 1:19.31
\tMaximum resident set size (kbytes): 1355776
\tExit status: 0
"""


def test_parse_gnu_time():
    assert parse_gnu_time(GNU_TIME_OUTPUT) == {"wall_s": pytest.approx(79.31), "max_rss_mib": 1324.0}
    hours = GNU_TIME_OUTPUT.replace("1:19.31", "1:02:03")
    assert parse_gnu_time(hours)["wall_s"] == pytest.approx(3723.0)


def test_parse_gnu_time_rejects_other_output():
    with pytest.raises(ValueError, match="no wall time or peak memory"):
        parse_gnu_time("Command exited with non-zero status 1\n")


def test_trainer_metrics_takes_last_values():
    log = (
        "{'loss': '1.2', 'learning_rate': '0.001', 'epoch': '0.5'}\n"
        "{'train_runtime': '67.31', 'train_samples_per_second': '152.1', 'train_loss': '0.6'}\n"
        "***** eval metrics *****\n"
        "  eval_loss               =     0.2744\n"
    )
    assert trainer_metrics(log) == {
        "train_runtime_s": 67.31, "train_samples_per_second": 152.1, "train_loss": 0.6, "eval_loss": 0.2744,
    }


def test_trainer_metrics_needs_a_runtime():
    with pytest.raises(ValueError, match="no train_runtime"):
        trainer_metrics("{'loss': '1.2'}\n")
