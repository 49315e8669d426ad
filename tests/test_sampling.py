import math

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rgb_tokenizer.sampling import sample_sequences, sequence_log_probs
from rgb_tokenizer.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=6, n_layer=2, n_head=2, n_embd=32, n_positions=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return GPT2LMHeadModel(config).eval(), build_tokenizer()


def test_fixed_length_samples(tiny_model):
    model, tokenizer = tiny_model
    samples = sample_sequences(model, tokenizer, num_samples=30, length=12, seed=0)
    assert len(samples) == 30
    assert all(len(sample) == 12 and set(sample) <= set("RGB") for sample in samples)
    assert {sample[0] for sample in samples} <= {"R", "B"}


def test_sampling_is_seeded(tiny_model):
    model, tokenizer = tiny_model
    first = sample_sequences(model, tokenizer, num_samples=10, length=12, seed=3)
    assert first == sample_sequences(model, tokenizer, num_samples=10, length=12, seed=3)
    assert first != sample_sequences(model, tokenizer, num_samples=10, length=12, seed=4)


def test_free_samples_stop_at_eos(tiny_model):
    model, tokenizer = tiny_model
    # An untrained model emits EOS about one step in six, so most samples end early.
    samples = sample_sequences(model, tokenizer, num_samples=40, length=30, seed=0, allow_eos=True)
    assert any(len(sample) < 30 for sample in samples)
    assert all(1 <= len(sample) <= 30 for sample in samples)


def test_log_probs_match_manual_sum(tiny_model):
    model, tokenizer = tiny_model
    samples = ["RGBGBR", "BG"]
    computed = sequence_log_probs(model, tokenizer, samples)
    tile_ids = [3, 4, 5]
    for sample, value in zip(samples, computed):
        ids = tokenizer(sample, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(ids).logits[0]
        expected = 0.0
        for position in range(2, ids.shape[1]):
            log_probs = torch.log_softmax(logits[position - 1, tile_ids], dim=-1)
            expected += log_probs[tile_ids.index(ids[0, position].item())].item()
        assert value == pytest.approx(expected, abs=1e-5)


def test_log_probs_normalise_over_tiles(tiny_model):
    model, tokenizer = tiny_model
    # Summed over every continuation of "R" by two tiles, the probabilities make 1.
    continuations = [f"R{a}{b}" for a in "RGB" for b in "RGB"]
    total = sum(math.exp(lp) for lp in sequence_log_probs(model, tokenizer, continuations))
    assert total == pytest.approx(1.0, abs=1e-5)
