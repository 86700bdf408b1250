"""Records → grounded training examples → packed token rows with answer-token weights.

Every example is rendered with the shared prompt format and carries a reference found the way chat finds one:
the question is searched in the retrieval index and the top passage is cut with ``reference_passage``. Most
examples keep that passage (the gold pair's own answer, when retrieval finds it); ``sibling_fraction`` of them
leave the gold pair out and take the best passage of another pair, preferring one of the same focus, as chat
does for a question whose own page is not in the index. The target is the gold answer's first sentences within
a token budget, and a single sentence when the passage is not the gold one, so the model learns to copy what
the passage says and to stay short when the passage is off-target.

Rows are ``sequence_length + 1`` tokens, each starting at an example (no padding: a row's tail holds the start of
the next example, which begins the next row again), with a weight per token: 1 on the answer and its
``<|endoftext|>``, 0 on the prompt, reference and question. Every weighted token therefore sees its whole prompt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from typing import Sequence

import numpy as np

from gpt2chat import settings
from gpt2chat.corpus.data import QAPair, focus_key
from gpt2chat.corpus.sentences import split_sentences
from gpt2chat.modeling.prompt import build_prompt, reference_passage
from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID

log = logging.getLogger(__name__)

# The target when the reference is another pair's passage: short, since the passage does not hold the answer.
OFF_TARGET_SENTENCES = 1
# Bump when the cached token layout changes.
CACHE_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Grounding:
    """How references and targets are chosen (the values live in the training recipes)."""

    grounded_fraction: float  # share of examples that get a retrieved reference at all
    sibling_fraction: float  # share of grounded examples whose gold pair is left out of the search
    answer_sentences: int  # target sentences when the reference is the gold pair's passage
    answer_tokens: int  # token budget of a target, <|endoftext|> included
    retrieval_k: int = 10  # passages searched; enough that a same-focus sibling is usually among them

    def __post_init__(self):
        for name in ("grounded_fraction", "sibling_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be between 0 and 1")
        if self.answer_sentences < 1 or self.answer_tokens < 2:
            raise ValueError("--answer-sentences must be at least 1 and --answer-tokens at least 2")


@dataclasses.dataclass(frozen=True)
class Example:
    prompt: str  # up to and including "Answer:"
    sentences: tuple[str, ...]  # the target's candidate sentences; the token budget keeps a prefix of them
    reference: str  # see reference_kind
    passage_id: str | None = None  # the quoted pair


_HEADING_LABEL = re.compile(r"^(Key Points\s*-|Summary\s*:)\s*")


def answer_sentences(answer: str) -> list[str]:
    """The answer's sentences without its leading headings: GARD answers open by restating the question
    ("What causes Down syndrome? There are ..."), NCI's with "Key Points -", MedlinePlus's with "Summary :"."""
    sentences = split_sentences(_HEADING_LABEL.sub("", answer.strip()))
    while len(sentences) > 1 and sentences[0].endswith("?"):
        sentences.pop(0)
    return sentences


def choose_passage(record: QAPair, passages: Sequence, *, leave_out_gold: bool):
    """The passage an example quotes, from the search results for its question: the gold pair's own passage when
    the search found it (it ranks first for only ~56% of training questions, a sibling of the same focus
    outranking it otherwise, but it is the passage the model must learn to copy from), else the top one; with the
    gold pair left out, the best passage of the same focus, else the best other one. ``None`` when nothing fits."""
    if leave_out_gold:
        passages = [p for p in passages if p.pair_id != record.pair_id]
        same_focus = [p for p in passages if focus_key(p.focus) == focus_key(record.focus)]
        return (same_focus or passages or [None])[0]
    gold = [p for p in passages if p.pair_id == record.pair_id]
    return (gold or passages or [None])[0]


def _same_question(a: str, b: str) -> bool:
    return re.findall(r"\w+", a.lower()) == re.findall(r"\w+", b.lower())


def reference_kind(record: QAPair, passage) -> str:
    """"gold", "same question" (another source's answer to the same question, e.g. NIHSeniorHealth and NEI on
    glaucoma), "sibling" (same focus), "off-focus", or "none"."""
    if passage is None:
        return "none"
    if passage.pair_id == record.pair_id:
        return "gold"
    if _same_question(passage.question, record.question):
        return "same question"
    return "sibling" if focus_key(passage.focus) == focus_key(record.focus) else "off-focus"


def grounded_examples(records: Sequence[QAPair], index, grounding: Grounding, *, seed: int) -> list[Example]:
    """One example per record. ``index`` is a ``RetrievalIndex`` that holds (at least) ``records``; passages of
    pairs outside ``records`` are skipped, so validation examples never quote training pairs and vice versa."""
    rng = np.random.default_rng(seed)
    draws = rng.random((len(records), 2))
    allowed = {r.pair_id for r in records}
    examples = []
    for record, (ground_draw, sibling_draw) in zip(records, draws):
        passage = None
        if ground_draw < grounding.grounded_fraction:
            found = [p for p in index.search(record.question, k=grounding.retrieval_k) if p.pair_id in allowed]
            passage = choose_passage(record, found, leave_out_gold=sibling_draw < grounding.sibling_fraction)
        kind = reference_kind(record, passage)
        limit = OFF_TARGET_SENTENCES if kind in ("sibling", "off-focus") else grounding.answer_sentences
        reference = reference_passage(passage.answer) if passage else None
        examples.append(Example(build_prompt(record.question, reference=reference),
                                tuple(answer_sentences(record.answer)[:limit]), kind,
                                passage.pair_id if passage else None))
    return examples


def _tokenize(tokenizer, texts: list[str]) -> list[np.ndarray]:
    return [np.asarray(ids, dtype=np.int32) for ids in tokenizer(texts)] if texts else []


def _cache_key(examples: Sequence[Example], tokenizer) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}".encode())
    # The tokenizer's vocabulary and merges are part of the key: a local preset may bring its own.
    digest.update(json.dumps([sorted(tokenizer.vocabulary.items()), list(tokenizer.merges)]).encode())
    for example in examples:
        digest.update(json.dumps([example.prompt, example.sentences]).encode())
    return digest.hexdigest()[:24]


def _tokenized_pieces(examples: Sequence[Example], tokenizer) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Prompt ids and per-sentence ids (each sentence with its leading space, so their concatenation is exactly
    the tokenization of the joined answer: GPT-2's pre-tokenizer always splits before " <word>").

    Cached under ``settings.cache_dir()/tokens`` by content: tokenizing the 14,832 training examples takes ~40 s
    on a busy 2-core machine, paid again by every run of a sweep otherwise."""
    path = settings.cache_dir() / "tokens" / f"{_cache_key(examples, tokenizer)}.npz"
    counts = [len(e.sentences) for e in examples]
    if path.is_file():
        try:
            with np.load(path) as saved:
                prompts = np.split(saved["prompt_ids"], saved["prompt_ends"][:-1])
                sentences = np.split(saved["sentence_ids"], saved["sentence_ends"][:-1])
            if len(prompts) == len(examples) and len(sentences) == sum(counts):
                return prompts, _regroup(sentences, counts)
        except (OSError, ValueError, KeyError) as error:  # a damaged cache costs a re-tokenization, nothing else
            log.warning("token cache %s is unreadable (%s); tokenizing again", path, error)
    prompts = _tokenize(tokenizer, [e.prompt for e in examples])
    sentences = _tokenize(tokenizer, [" " + s for e in examples for s in e.sentences])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(".tmp.npz")
        np.savez(staging, prompt_ids=_flat(prompts), prompt_ends=np.cumsum([len(p) for p in prompts]),
                 sentence_ids=_flat(sentences), sentence_ends=np.cumsum([len(s) for s in sentences]))
        staging.replace(path)
    except OSError as error:
        log.warning("could not cache tokens at %s (%s)", path, error)
    return prompts, _regroup(sentences, counts)


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, np.int32)


def _regroup(items: list, counts: list[int]) -> list[list]:
    ends = np.cumsum(counts)
    return [items[end - count : end] for end, count in zip(ends, counts)]


def tokenize_examples(examples: Sequence[Example], tokenizer,
                      answer_tokens: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(prompt ids, answer ids ending in <|endoftext|>) per example; the answer keeps its leading sentences that
    fit ``answer_tokens``. An example whose first sentence alone does not fit is dropped rather than cut mid-way."""
    prompts, sentences = _tokenized_pieces(examples, tokenizer)
    tokenized = []
    for prompt, pieces in zip(prompts, sentences):
        kept, used = [], 1  # the <|endoftext|> always fits
        for piece in pieces:
            if used + len(piece) > answer_tokens:
                break
            kept.append(piece)
            used += len(piece)
        if kept:
            tokenized.append((prompt, np.concatenate([*kept, [END_OF_TEXT_ID]]).astype(np.int32)))
    return tokenized


def model_inputs(rows: np.ndarray, weights: np.ndarray | None = None, targets: np.ndarray | None = None):
    """Packed rows of ``sequence_length + 1`` tokens → (the GPT-2 inputs, the next-token targets), plus the
    targets' weights when per-token ``weights`` (aligned with ``rows``) are given. ``targets`` (aligned with
    ``rows`` too) replaces what each position must predict; by default the next token of the row."""
    token_ids = rows[:, :-1]
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}
    shifted = (rows if targets is None else targets)[:, 1:]
    if weights is None:
        return inputs, shifted
    return inputs, shifted, weights[:, 1:]


@dataclasses.dataclass
class PackedTokens:
    rows: np.ndarray  # (n, sequence_length + 1) int32
    weights: np.ndarray | None = None  # same shape, float32: 1 on answer tokens; None = every token counts
    # Same shape, int32: what each position's next token must be predicted as, where that is not the row's own next
    # token (the question-type labels of sentence selection, gpt2chat.modeling.selection); None = the row itself.
    targets: np.ndarray | None = None

    def select(self, indices: np.ndarray) -> PackedTokens:
        return PackedTokens(self.rows[indices], None if self.weights is None else self.weights[indices],
                            None if self.targets is None else self.targets[indices])

    @classmethod
    def concatenate(cls, parts: Sequence[PackedTokens]) -> PackedTokens:
        """Rows of several packings in one (weights and targets filled in where a part has none)."""
        weights = [p.weights if p.weights is not None else np.ones(p.rows.shape, np.float32) for p in parts]
        targets = [p.targets if p.targets is not None else p.rows for p in parts]
        return cls(np.concatenate([p.rows for p in parts]), np.concatenate(weights), np.concatenate(targets))

    @property
    def batch(self):
        """(inputs, targets) or (inputs, targets, target weights), as ``fit`` and ``evaluate`` take them."""
        return model_inputs(self.rows, self.weights, self.targets)

    @property
    def num_tokens(self) -> int:
        return int(self.rows.shape[0] * (self.rows.shape[1] - 1))

    @property
    def num_answer_tokens(self) -> int:
        """Weighted target positions: the tokens the loss is computed on."""
        return self.num_tokens if self.weights is None else int(self.weights[:, 1:].sum())


def pack_examples(tokenized: Sequence[tuple[np.ndarray, np.ndarray]], sequence_length: int) -> PackedTokens:
    """Rows that each start at an example: whole examples while they fit, then the start of the next one (its
    answer tokens that fit still count, since their prompt is in the row); that example begins the next row.
    An example longer than a row keeps its last ``sequence_length + 1`` tokens: the answer, and as much of the
    prompt before it as fits."""
    width = sequence_length + 1
    pieces = [np.concatenate([p, a]) for p, a in tokenized]
    marks = [np.concatenate([np.zeros(len(p), np.float32), np.ones(len(a), np.float32)]) for p, a in tokenized]
    rows, weights = [], []
    start = 0
    while start < len(pieces):
        end, used = start, 0
        while end < len(pieces) and used + len(pieces[end]) <= width:
            used += len(pieces[end])
            end += 1
        if end == len(pieces) and used < width:
            break  # the last examples do not fill a row
        if end == start:
            rows.append(pieces[start][-width:])
            weights.append(marks[start][-width:])
            start += 1
            continue
        taken = range(start, min(end + 1, len(pieces)))
        rows.append(np.concatenate([pieces[i] for i in taken])[:width])
        weights.append(np.concatenate([marks[i] for i in taken])[:width])
        start = end
    if not rows:
        total = sum(len(p) for p in pieces)
        raise ValueError(f"not enough text to fill one row of {width} tokens ({total} tokens in all)")
    return PackedTokens(np.stack(rows).astype(np.int32), np.stack(weights))


def pack(texts: Sequence[str], tokenizer, sequence_length: int) -> PackedTokens:
    """Tokenize plain texts and pack them end to end (every token counts); the tail that does not fill a row is
    dropped."""
    ids = _tokenize(tokenizer, list(texts))
    stream = _flat(ids)
    width = sequence_length + 1
    usable = (len(stream) // width) * width
    if usable == 0:
        raise ValueError(f"not enough text to fill one row of {width} tokens ({len(stream)} tokens in all)")
    return PackedTokens(stream[:usable].reshape(-1, width))
