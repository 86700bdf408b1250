"""Copy-biased decoding: a logits processor that makes the model continue spans of the reference passage.

A decode-time pointer (in the spirit of See et al. 2017's pointer-generator, without training a copy gate): find
the longest suffix of the generated tokens that also occurs in the reference; the tokens that follow its
occurrences are the "copy" candidates. With no match (the answer's start), or when the match ends a reference
sentence, the first tokens of the reference's sentences are candidates too.

* soft mode (``constrain=False``): the candidates' logits get ``+strength``; the model may still write freely;
* hard mode (``constrain=True``): only the candidates, and the end marker at a sentence boundary, are allowed, so
  the answer is a sequence of whole-sentence-aligned spans of the reference;
* both: no word-piece n-gram of size ``no_repeat_ngram`` is generated twice (as ``no_repeat_ngram_size`` in
  Hugging Face's generate), which stops the "of the doctor of the doctor" loops, except to extend a verbatim
  reference span at least that long (the reference may say "of the airways" twice), and a reference sentence
  already copied is not started again;
* both: only reference sentences that ``gpt2chat.chat.grounding.is_answer_sentence`` accepts are started or continued
  into: a "Yes." or a question heading copied first can only be dropped by the support check (for "How is
  glaucoma treated?" the quick-start model copied "Yes." and ended, and the reply fell back to the extract).

Used as ``StreamingGenerator.stream_ids(..., logits_processor=CopyBias(ids))``; a processor is any callable
``(logits (vocab,) float32, generated_ids) -> logits``.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Sequence

import numpy as np

from gpt2chat.chat.grounding import is_answer_sentence, stands_in_answer, words
from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID

MASKED = -1e9  # a finite "never": a sampler's temperature division of -inf is fine, but softmax of all -inf is NaN
_SENTENCE_END = re.compile(r"^[^\w\s]*[.!?][\"'”’)\]]*$")  # BPE pieces such as ".", ".)", "?\"", "..."
# Pieces that can open a sentence after a space: a capital, a digit, a quote or a bracket ("ĠThe", "Ġ(", "Ġ2").
_SENTENCE_START = re.compile(r"^Ġ[\"'“‘(\[]?[A-Z0-9]|^Ġ[\"'“‘(\[]$")


@functools.lru_cache(maxsize=1)
def gpt2_piece_kinds() -> tuple[frozenset[int], frozenset[int]]:
    """(ids of pieces that end a sentence, ids of pieces that can start one after it) in GPT-2's byte-level
    vocabulary, where "Ġ" stands for a leading space."""
    from gpt2chat.modeling.tokenizer import gpt2_vocabulary_and_merges

    vocabulary, _ = gpt2_vocabulary_and_merges()
    ends = frozenset(i for piece, i in vocabulary.items() if _SENTENCE_END.match(piece))
    starts = frozenset(i for piece, i in vocabulary.items() if _SENTENCE_START.match(piece))
    return ends, starts


@functools.lru_cache(maxsize=1)
def _gpt2_pieces_and_bytes() -> tuple[dict[int, str], dict[str, int]]:
    """(id → byte-level piece, piece character → byte): GPT-2's byte-to-unicode table, inverted."""
    from gpt2chat.modeling.tokenizer import gpt2_vocabulary_and_merges

    vocabulary, _ = gpt2_vocabulary_and_merges()
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in printable]
    characters = {chr(b): b for b in printable} | {chr(256 + i): b for i, b in enumerate(shifted)}
    return {i: piece for piece, i in vocabulary.items()}, characters


def gpt2_text(token_ids: Sequence[int]) -> str:
    """GPT-2 token ids → text, in pure Python (no TensorFlow call per reference sentence)."""
    pieces, byte_of = _gpt2_pieces_and_bytes()
    text = "".join(pieces.get(int(i), "") for i in token_ids)
    return bytes(byte_of[c] for c in text if c in byte_of).decode("utf-8", errors="replace")


def gpt2_answer_sentence(sentence_ids: Sequence[int]) -> bool:
    return is_answer_sentence(gpt2_text(sentence_ids))


def gpt2_opens_answer(sentence_ids: Sequence[int], position: int) -> bool:
    """Copying may start any reference sentence that stands alone (when the question is not known)."""
    return stands_in_answer(gpt2_text(sentence_ids), position, None)


def gpt2_opens_with(openers: frozenset[tuple[str, ...]]) -> Callable[[Sequence[int], int], bool]:
    """``opens_answer`` for one question: copying may start only the reference sentences whose words are among
    ``openers`` (``gpt2chat.chat.grounding.answer_openers``)."""
    return lambda sentence_ids, position: tuple(words(gpt2_text(sentence_ids))) in openers


class CopyBias:
    def __init__(
        self,
        reference_ids: Sequence[int],
        *,
        strength: float = 5.0,
        constrain: bool = False,
        no_repeat_ngram: int = 4,
        max_match: int = 32,
        max_sentences: int | None = None,
        end_id: int = END_OF_TEXT_ID,
        sentence_end_ids: frozenset[int] | None = None,
        sentence_start_ids: frozenset[int] | None = None,
        answer_sentence: Callable[[Sequence[int]], bool] = gpt2_answer_sentence,
        opens_answer: Callable[[Sequence[int], int], bool] = gpt2_opens_answer,
    ):
        """``reference_ids``: the passage's token ids as the answer would spell it (encode it with a leading space:
        the answer starts after "Answer:" with a space). ``max_sentences``: end the answer after that many sentence ends
        (hard mode). ``sentence_end_ids``/``sentence_start_ids`` default to GPT-2's. ``answer_sentence`` tells
        from a reference sentence's ids whether it may be copied, ``opens_answer`` from its ids and its number in the
        reference whether copying may start it rather than only continue into it from the sentence before (defaults:
        grounding's rules, GPT-2 decoding)."""
        if strength < 0 or no_repeat_ngram < 0 or max_match < 1:
            raise ValueError("strength and no_repeat_ngram must be >= 0 and max_match >= 1")
        if sentence_end_ids is None or sentence_start_ids is None:
            default_ends, default_starts = gpt2_piece_kinds()
            sentence_end_ids = default_ends if sentence_end_ids is None else sentence_end_ids
            sentence_start_ids = default_starts if sentence_start_ids is None else sentence_start_ids
        self.reference = [int(i) for i in reference_ids]
        self.strength, self.constrain = float(strength), constrain
        self.no_repeat_ngram, self.max_match, self.end_id = no_repeat_ngram, max_match, end_id
        self.max_sentences, self._sentence_end_ids = max_sentences, sentence_end_ids
        n = len(self.reference)
        # A reference sentence ends at a sentence-final piece followed by a sentence start: not at "2.5",
        # "e.g. aspirin" or "the U.S. population" (a constrained answer once ended at "The U.S.").
        self.sentence_ends = {
            p for p in range(n)
            if self.reference[p] in sentence_end_ids and (p + 1 == n or self.reference[p + 1] in sentence_start_ids)
        }
        self.sentence_starts = sorted({0} | {p + 1 for p in self.sentence_ends if p + 1 < n})
        bounds = [*self.sentence_starts, n]
        copyable = [(number, q, end) for number, (q, end) in enumerate(zip(bounds, bounds[1:]))
                    if answer_sentence(self.reference[q:end])]
        # "These treatments ..." is copied only on from the sentence it refers back to, never started on its own.
        self.copyable_starts = [q for number, q, end in copyable if opens_answer(self.reference[q:end], number)]
        # Reference positions inside the copyable sentences: the only tokens copying may continue into.
        self._copyable = {p for _, q, end in copyable for p in range(q, end)}
        self._positions: dict[int, list[int]] = {}
        for p, token in enumerate(self.reference):
            self._positions.setdefault(token, []).append(p)

    def match(self, generated: Sequence[int]) -> tuple[int, list[int]]:
        """(length, reference end positions) of the longest suffix of ``generated`` found in the reference."""
        if not generated:
            return 0, []
        ends = self._positions.get(int(generated[-1]), [])
        length = 1 if ends else 0
        while ends and length < min(self.max_match, len(generated)):
            longer = [p for p in ends if p - length >= 0 and self.reference[p - length] == generated[-1 - length]]
            if not longer:
                break
            ends, length = longer, length + 1
        return length, ends

    def copied_positions(self, generated: Sequence[int]) -> tuple[int, list[int]]:
        """(length, reference end positions) of ``generated`` read as reference sentences copied in turn, each
        followed from its first token: the constrained answer's place in the passage, and how many tokens it has
        copied in one run there. Following the longest matching suffix instead let a copy jump between sentences
        sharing words: "PYGL gene mutations prevent ..." became "PYGL gene cause GSDVI." at the "PYGL gene" of
        "Mutations in the PYGL gene cause GSDVI." (1 of 100 test answers, caught only for being under five words)."""
        runs: dict[int, int] = {}  # reference position -> tokens copied in one run up to it
        for step, token in enumerate(generated):
            following = {p + 1: run + 1 for p, run in runs.items()
                         if p + 1 < len(self.reference) and self.reference[p + 1] == token}
            if step == 0 or any(p in self.sentence_ends for p in runs):
                for q in self._positions.get(token, ()):  # the reference sentences this token starts
                    if q == 0 or q - 1 in self.sentence_ends:
                        following.setdefault(q, 1)
            runs = following
            if not runs:
                return 0, []
        return max(runs.values(), default=0), sorted(runs)

    def _fresh_sentence_starts(self, generated: Sequence[int]) -> set[int]:
        """First tokens of the copyable reference sentences not copied yet: one whose opening n-gram was already
        generated would be cut off by the repetition ban after a few tokens."""
        n = self.no_repeat_ngram
        seen = {tuple(generated[i: i + n]) for i in range(len(generated) - n + 1)} if n else set()
        return {self.reference[q] for q in self.copyable_starts if tuple(self.reference[q: q + n]) not in seen}

    def banned(self, generated: Sequence[int]) -> set[int]:
        """Tokens that would repeat an n-gram of size ``no_repeat_ngram`` already generated."""
        n = self.no_repeat_ngram
        if n == 0 or len(generated) < n:
            return set()
        prefix = tuple(generated[len(generated) - n + 1:]) if n > 1 else ()
        return {
            int(generated[i + n - 1]) for i in range(len(generated) - n + 1)
            if tuple(generated[i: i + n - 1]) == prefix
        }

    def __call__(self, logits: np.ndarray, generated_ids: Sequence[int]) -> np.ndarray:
        raw = np.asarray(logits, dtype=np.float32).reshape(-1)
        generated = [int(t) for t in generated_ids]
        if self.constrain:  # every token so far was copied, so follow the copy itself
            length, ends = self.copied_positions(generated)
        else:  # free tokens may come between copies: follow whatever reference span the text ends with
            length, ends = self.match(generated)
        at_boundary = not generated or (length > 0 and any(p in self.sentence_ends for p in ends))
        continuations = {self.reference[p + 1] for p in ends if p + 1 in self._copyable}
        starts = self._fresh_sentence_starts(generated) if at_boundary or length == 0 else set()
        banned = self.banned(generated)
        if length >= self.no_repeat_ngram:  # extending a verbatim reference span ("of the airways" twice) is no loop
            banned -= continuations
        allowed = sorted((continuations | starts) - banned)
        if self.constrain:
            may_end = at_boundary and len(generated) > 0  # a whole sentence was copied: the answer may end here
            sentences = sum(t in self._sentence_end_ids for t in generated)
            if not allowed or (may_end and self.max_sentences is not None and sentences >= self.max_sentences):
                out = np.full_like(raw, MASKED)  # nothing left to copy, or long enough: end
                out[self.end_id] = 0.0
                return out
            out = np.full_like(raw, MASKED)
            out[allowed] = raw[allowed]
            if may_end:
                out[self.end_id] = raw[self.end_id]
            return out
        out = raw.copy()
        out[allowed] += self.strength
        if banned:
            out[sorted(banned)] = MASKED
        return out
