"""Records → packed token arrays for causal-LM training.

Every example is rendered with the shared prompt format, tokenized with the GPT-2 tokenizer and concatenated
into one stream that is cut into rows of ``sequence_length + 1`` tokens: no padding, so every position trains.
Part of the examples carry their passage as a "Reference:" so the model learns to use the grounded slot.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from gpt2chat.data import QAPair
from gpt2chat.prompt import training_example

# A reference passage is cut to this many characters in training, as retrieved passages are at chat time.
REFERENCE_CHARS = 600


def reference_passage(answer: str, limit: int = REFERENCE_CHARS) -> str:
    """The leading sentences of a passage, within ``limit`` characters (cut at a word if one sentence is longer)."""
    if len(answer) <= limit:
        return answer
    cut = answer[:limit]
    sentence_end = cut.rfind(". ")
    if sentence_end > limit // 3:
        return cut[: sentence_end + 1]
    return cut.rsplit(" ", 1)[0]


def render_examples(records: Sequence[QAPair], *, grounded_fraction: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    grounded = rng.random(len(records)) < grounded_fraction
    return [
        training_example(r.question, r.answer, reference=reference_passage(r.answer) if g else None)
        for r, g in zip(records, grounded)
    ]


def model_inputs(rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Packed rows of ``sequence_length + 1`` tokens → (the GPT-2 inputs, the next-token targets)."""
    token_ids = rows[:, :-1]
    return {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}, rows[:, 1:]


@dataclasses.dataclass
class PackedTokens:
    rows: np.ndarray  # (n, sequence_length + 1) int32

    @property
    def inputs(self) -> dict[str, np.ndarray]:
        return model_inputs(self.rows)[0]

    @property
    def targets(self) -> np.ndarray:
        return model_inputs(self.rows)[1]

    @property
    def num_tokens(self) -> int:
        return int(self.rows.shape[0] * (self.rows.shape[1] - 1))


def pack(texts: Sequence[str], tokenizer, sequence_length: int) -> PackedTokens:
    """Tokenize and pack; the tail that does not fill a whole row is dropped."""
    ids = tokenizer(list(texts))
    stream = np.concatenate([np.asarray(x, dtype=np.int32) for x in ids]) if len(ids) else np.zeros(0, np.int32)
    width = sequence_length + 1
    usable = (len(stream) // width) * width
    if usable == 0:
        raise ValueError(f"not enough text to fill one row of {width} tokens ({len(stream)} tokens in all)")
    return PackedTokens(stream[:usable].reshape(-1, width))
