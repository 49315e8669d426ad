"""A one-token-per-tile tokenizer built with the ``tokenizers`` library.

The result is a plain ``PreTrainedTokenizerFast``: once saved, it reloads with
``AutoTokenizer.from_pretrained(path)`` with no custom class and no
``trust_remote_code``.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from rgb_tokenizer.grammar import TILES

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<bos>"
EOS_TOKEN = "<eos>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)
VOCAB: dict[str, int] = {token: index for index, token in enumerate(SPECIAL_TOKENS + TILES)}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Build the tile tokenizer: ids 0-2 are pad, bos and eos, ids 3-5 are R, G and B.

    Encoding prepends BOS. EOS is left to the trainers, which append it to
    completions, so that a prompt encodes as an unfinished sequence.
    """
    # No unknown token: a non-tile character fails to encode instead of being
    # mapped silently to a placeholder. Datasets validate tiles before this point.
    backend = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A $B",
        special_tokens=[(BOS_TOKEN, VOCAB[BOS_TOKEN])],
    )
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    # Fuse joins decoded tiles without spaces, so decode(encode(s)) == s.
    backend.decoder = decoders.Fuse()

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=64,
    )
    return tokenizer


def tile_token_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Return the ids of R, G and B, in ``TILES`` order."""
    return tokenizer.convert_tokens_to_ids(list(TILES))
