"""Batched sampling of tile sequences from a causal LM, and their log-probabilities.

Both functions work on the tiles alone: special tokens are suppressed while
sampling, and log-probabilities are taken over the tile logits only, which is
the distribution the sampler draws from.
"""

from __future__ import annotations

import random

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rgb_tokenizer.grammar import START_TILES, TILES


@torch.no_grad()
def sample_sequences(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    num_samples: int,
    length: int,
    seed: int,
    batch_size: int = 200,
    allow_eos: bool = False,
) -> list[str]:
    """Sample ``num_samples`` tile sequences of ``length`` tiles, each prompted with one random tile.

    The first tile is R or B with probability 1/2 each, as in the reference
    chain. With ``allow_eos=False`` the EOS token is suppressed, so every
    sample has exactly ``length`` tiles; with ``allow_eos=True`` a sample
    ends where the model emits EOS. Sampling is plain ancestral sampling at
    temperature 1 (no top-k, no top-p).
    """
    if num_samples < 1 or length < 1 or batch_size < 1:
        raise ValueError(
            f"num_samples, length and batch_size must be at least 1, got {num_samples}, {length}, {batch_size}"
        )
    prompt_rng = random.Random(seed)
    first_tiles = [prompt_rng.choice(START_TILES) for _ in range(num_samples)]
    if length == 1:
        return first_tiles

    special_ids = [tokenizer.bos_token_id, tokenizer.pad_token_id]
    if not allow_eos:
        special_ids.append(tokenizer.eos_token_id)
    device = model.device
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    samples: list[str] = []
    try:
        for start in range(0, num_samples, batch_size):
            prompts = first_tiles[start : start + batch_size]
            # Every prompt is BOS + one tile, so the batch needs no padding.
            input_ids = tokenizer(prompts, return_tensors="pt")["input_ids"].to(device)
            output_ids = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=length - 1,
                min_new_tokens=0 if allow_eos else length - 1,
                suppress_tokens=[i for i in special_ids if i is not None],
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
            samples.extend(tokenizer.batch_decode(output_ids, skip_special_tokens=True))
    finally:
        torch.random.set_rng_state(generator_state)
    return samples


@torch.no_grad()
def sequence_log_probs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    samples: list[str],
    batch_size: int = 200,
) -> list[float]:
    """Return ``log p(y[1:] | BOS, y[0])`` in nats for each tile string ``y``, over tile logits only.

    The first tile is the prompt, so it does not count. Samples of different
    lengths are padded on the right and masked.
    """
    tile_ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(TILES)), device=model.device)
    # Map each vocabulary id to its index among the tiles (-1 for special tokens).
    tile_index = torch.full((len(tokenizer),), -1, dtype=torch.long, device=model.device)
    tile_index[tile_ids] = torch.arange(len(TILES), device=model.device)

    results: list[float] = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        encoded = tokenizer(batch, return_tensors="pt", padding=True, padding_side="right").to(model.device)
        logits = model(**encoded).logits.float()
        tile_log_probs = torch.log_softmax(logits[:, :, tile_ids], dim=-1)

        # Position t predicts token t+1. Tokens 0 and 1 are BOS and the prompt tile.
        targets = tile_index[encoded["input_ids"][:, 2:]]
        predicted = tile_log_probs[:, 1:-1, :]
        mask = encoded["attention_mask"][:, 2:].bool() & (targets >= 0)
        picked = predicted.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        results.extend((picked * mask).sum(dim=1).tolist())
    return results
