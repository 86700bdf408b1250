"""The GPT-2 as a trained sentence selector: which sentences of a page answer the question.

    Which sentences answer: <question>
     <sentence 1 of section 1>
     <sentence 2 of section 1>

     <sentence 1 of section 2>
    ...

Each candidate sentence stands on its own line, and a blank line opens each section of the page. At every newline the
model predicts a question type (one token each: " symptoms", " treatment", " causes", ...): after the question, the
type it asks; after a sentence, the type of question its section answers. Those labels replace the next-token
targets there in training. So one forward pass over a page gives the question's type distribution and each
sentence's, and a sentence's score is how much more its type agrees with the question's than the page's average
sentence does (``SentenceScorer``). No head is added: the preset stays a plain ``GPT2CausalLM``, the labels are
read through its tied embedding, and it keeps its language modelling (training mixes these rows with the
question-answer rows, ``selection_fraction``).

Why types rather than "does this sentence answer this question" (yes/no at each newline, the first format): at the
quick-start budget the yes/no selector ranked the asked section's sentences no better than chance (AUC 0.51 on 150
validation pages, against 0.67 for BM25 with question-type cues), since it must learn to match a sentence to the
question across the row; a sentence's type is read off the sentence itself, and the question's off the question.
MedQuAD teaches both: a page holds several sections about one focus, each the answer to a question of one type.
And read off the quick-start model before any of this, the likelihood of a sentence given the question (or its
gain over no question) picked sentences no better than a page's first three: selection has to be trained.

A page longer than a row is scored in chunks, each starting with the question again.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
from typing import Sequence

import numpy as np

from gpt2chat import settings
from gpt2chat.corpus.data import QAPair, page_key
from gpt2chat.corpus.sentences import answer_candidates
from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID
from gpt2chat.modeling.tokens import PackedTokens

log = logging.getLogger(__name__)

SELECT_PREFIX = "Which sentences answer: "
# MedQuAD's question types; each is spelt by its first token (distinct in GPT-2's vocabulary).
QUESTION_TYPES = ("information", "symptoms", "treatment", "inheritance", "frequency", "genetic changes", "causes",
                  "exams and tests", "research", "outlook", "susceptibility", "considerations", "prevention", "stages",
                  "complications", "support groups")
# Candidate sentences per page section: a section's answer opens with what it says; past its eighth sentence
# come lists and details (MedQuAD's median section has 6 sentences).
SECTION_SENTENCES = 8
CACHE_FORMAT = 2


def selection_prompt(question: str) -> str:
    """The prompt line without its newline (the newline is added as its own token: the question's label position)."""
    return f"{SELECT_PREFIX}{' '.join(question.split())}"


@dataclasses.dataclass(frozen=True)
class SelectionTokens:
    """The token ids the format is made of, read from the tokenizer."""

    newline: int
    section: int  # the blank line before a section
    types: tuple[int, ...]  # the label of each of ``QUESTION_TYPES``

    @classmethod
    def of(cls, tokenizer) -> "SelectionTokens":
        newline, section = (np.asarray(tokenizer(text)).reshape(-1) for text in ("\n", "\n\n"))
        types = tuple(int(np.asarray(tokenizer(" " + name)).reshape(-1)[0]) for name in QUESTION_TYPES)
        if len(newline) != 1 or len(section) != 1 or len(set(types)) != len(types):
            raise ValueError("the tokenizer cannot spell the selection format's markers")
        return cls(int(newline[0]), int(section[0]), types)

    def type_label(self, question_type: str) -> int:
        return self.types[QUESTION_TYPES.index(question_type)]


def chunks(prompt_ids: Sequence[int], sentence_ids: Sequence[Sequence[int]], width: int, newline: int,
           section_starts: Sequence[bool] = (), section: int | None = None) -> list[tuple[list[int], list[int], list[int]]]:
    """(token ids, label positions, sentence numbers) per chunk of at most ``width`` tokens: the prompt, then whole
    sentences each followed by ``newline`` (the label position), with ``section`` before each sentence that
    ``section_starts`` marks. A sentence too long for a chunk of its own is cut to fit; its label still follows
    it."""
    room = width - len(prompt_ids) - 2
    if room < 8:
        raise ValueError(f"a selection prompt of {len(prompt_ids)} tokens leaves no room in {width}")
    out, ids, positions, numbers = [], list(prompt_ids), [], []
    for number, sentence in enumerate(sentence_ids):
        opens = number < len(section_starts) and section_starts[number] and section is not None
        sentence = ([section] if opens else []) + list(sentence)[:room]
        if len(ids) + len(sentence) + 1 > width:
            out.append((ids, positions, numbers))
            ids, positions, numbers = list(prompt_ids), [], []
        ids.extend(sentence)
        positions.append(len(ids))
        ids.append(newline)
        numbers.append(number)
    if numbers:
        out.append((ids, positions, numbers))
    return out


# ------------------------------------------------------------------------------------------ training rows
@dataclasses.dataclass(frozen=True)
class SelectionExample:
    question: str
    question_type: str
    sentences: tuple[str, ...]  # the page's candidate sentences, in page order
    types: tuple[str, ...]  # the question type each sentence's section answers
    labels: tuple[bool, ...]  # whether each is in the question's own section (what the selector should pick)
    section_starts: tuple[bool, ...]  # whether each opens a section


def page_sections(records: Sequence[QAPair]) -> dict[str, list[QAPair]]:
    """The records grouped by page, each page's sections in file order."""
    pages: dict[str, list[QAPair]] = collections.defaultdict(list)
    for record in records:
        pages[page_key(record.pair_id)].append(record)
    for sections in pages.values():
        sections.sort(key=lambda r: int(r.pair_id.rsplit("-", 1)[1]) if r.pair_id.rsplit("-", 1)[1].isdigit() else 0)
    return pages


def page_candidates(section_texts: Sequence[str]) -> list[tuple[int, int, str]]:
    """(section, sentence number, text) of a page's candidate sentences, as chat offers them
    (``gpt2chat.corpus.sentences.answer_candidates``, the first ``SECTION_SENTENCES`` of each section)."""
    return answer_candidates(section_texts, per_passage=SECTION_SENTENCES)


def section_starts(candidates: Sequence[tuple[int, int, str]]) -> tuple[bool, ...]:
    """Whether each (section, sentence, text) candidate is its section's first."""
    return tuple(i == 0 or candidates[i - 1][0] != c[0] for i, c in enumerate(candidates))


def selection_examples(records: Sequence[QAPair]) -> list[SelectionExample]:
    """One example per record of a page with at least two sections: its question over its whole page."""
    examples = []
    for sections in page_sections(records).values():
        if len(sections) < 2:
            continue
        candidates = page_candidates([r.answer for r in sections])
        texts = tuple(c[2] for c in candidates)
        types = tuple(sections[c[0]].question_type for c in candidates)
        starts = section_starts(candidates)
        if not set(types) <= set(QUESTION_TYPES):
            continue
        for gold, record in enumerate(sections):
            labels = tuple(c[0] == gold for c in candidates)
            if any(labels):
                examples.append(SelectionExample(record.question, record.question_type, texts, types, labels, starts))
    return examples


def _token_cache(texts: list[str], tokenizer) -> dict[str, np.ndarray]:
    """Token ids of each distinct text, cached under ``settings.cache_dir()/tokens`` by content."""
    digest = hashlib.sha256(f"selection{CACHE_FORMAT}".encode())
    digest.update(json.dumps([sorted(tokenizer.vocabulary.items()), list(tokenizer.merges)]).encode())
    digest.update(json.dumps(texts).encode())
    path = settings.cache_dir() / "tokens" / f"selection-{digest.hexdigest()[:24]}.npz"
    if path.is_file():
        try:
            with np.load(path) as saved:
                pieces = np.split(saved["ids"], saved["ends"][:-1])
            if len(pieces) == len(texts):
                return dict(zip(texts, pieces))
        except (OSError, ValueError, KeyError) as error:
            log.warning("token cache %s is unreadable (%s); tokenizing again", path, error)
    pieces = [np.asarray(ids, dtype=np.int32) for ids in tokenizer(texts)] if texts else []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(".tmp.npz")
        np.savez(staging, ids=np.concatenate(pieces) if pieces else np.zeros(0, np.int32),
                 ends=np.cumsum([len(p) for p in pieces]))
        staging.replace(path)
    except OSError as error:
        log.warning("could not cache tokens at %s (%s)", path, error)
    return dict(zip(texts, pieces))


def selection_rows(examples: Sequence[SelectionExample], tokenizer, sequence_length: int, *,
                   seed: int) -> PackedTokens:
    """Rows of ``sequence_length + 1`` tokens, one chunk each, weighted on the label positions only (the question's
    newline and each sentence's). Every chunk holding a sentence of the question's own section is kept, and one
    chunk without (when the page has one), so that a question is seen with its own section and with others."""
    marks = SelectionTokens.of(tokenizer)
    texts = sorted({" " + s for e in examples for s in e.sentences} | {selection_prompt(e.question) for e in examples})
    ids = _token_cache(texts, tokenizer)
    rng = np.random.default_rng(seed)
    width = sequence_length + 1
    rows, weights, targets = [], [], []
    for example in examples:
        sentence_ids = [ids[" " + s] for s in example.sentences]
        prompt = [*ids[selection_prompt(example.question)], marks.newline]
        parts = chunks(prompt, sentence_ids, sequence_length, marks.newline, example.section_starts, marks.section)
        positive = [i for i, (_, _, numbers) in enumerate(parts) if any(example.labels[n] for n in numbers)]
        negative = [i for i in range(len(parts)) if i not in positive]
        keep = positive + ([int(rng.choice(negative))] if negative else [])
        for i in keep:
            tokens, positions, numbers = parts[i]
            row = np.full(width, END_OF_TEXT_ID, np.int32)
            row[: len(tokens)] = tokens
            target = row.copy()
            weight = np.zeros(width, np.float32)
            # Row index p + 1 holds the target of position p (targets are the row shifted by one).
            target[len(prompt)] = marks.type_label(example.question_type)
            weight[len(prompt)] = 1.0
            for position, number in zip(positions, numbers):
                target[position + 1] = marks.type_label(example.types[number])
                weight[position + 1] = 1.0
            rows.append(row)
            targets.append(target)
            weights.append(weight)
    if not rows:
        raise ValueError("no page with two sections to learn sentence selection from")
    return PackedTokens(np.stack(rows), np.stack(weights), np.stack(targets))


# ------------------------------------------------------------------------------------------ scoring
class SentenceScorer:
    """How much more each sentence's question type agrees with the question's than the page's average sentence's,
    from one batched forward pass of the backbone per up to 32 chunks."""

    BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)

    def __init__(self, causal_lm, width: int = 256):
        from keras import ops

        from gpt2chat.modeling.generation import _compile

        backbone = causal_lm.backbone
        self.tokenizer = causal_lm.preprocessor.tokenizer
        self.marks = SelectionTokens.of(self.tokenizer)
        self.width = min(width, backbone.max_sequence_length)
        embeddings = ops.convert_to_numpy(backbone.token_embedding.embeddings).astype(np.float32)
        self._labels = embeddings[list(self.marks.types)].T  # hidden state -> the type labels' logits

        def hidden(token_ids):
            return backbone({"token_ids": token_ids, "padding_mask": ops.ones_like(token_ids, dtype="bool")})

        self._hidden = _compile(hidden, backbone.hidden_dim <= 512)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [[int(i) for i in np.asarray(ids).reshape(-1)] for ids in self.tokenizer(texts)] if texts else []

    def warm_up(self) -> None:
        for batch in self.BATCH_BUCKETS[:3]:
            self._hidden(np.zeros((batch, self.width), np.int32))

    def type_probabilities(self, question: str, sentences: Sequence[str],
                           starts: Sequence[bool] = ()) -> tuple[np.ndarray, np.ndarray]:
        """The question's distribution over ``QUESTION_TYPES`` and each sentence's (rows), read at their newlines
        (``sentences`` in page order: earlier sentences are context for later ones; ``starts`` marks those that
        open a page section). The question is read with the sentences, so at least one is needed."""
        from keras import ops

        if not sentences:
            raise ValueError("type_probabilities needs at least one sentence (the question is read in its chunk)")
        prompt, *sentence_ids = self._encode([selection_prompt(question), *(" " + s for s in sentences)])
        if len(prompt) + 1 > self.width // 2:  # a long message: its end, where the question usually is, and the prefix
            prefix, = self._encode([SELECT_PREFIX.rstrip()])
            prompt = prefix + prompt[len(prompt) - (self.width // 2 - 1 - len(prefix)):]
        prompt = [*prompt, self.marks.newline]
        parts = chunks(prompt, sentence_ids, self.width, self.marks.newline, starts, self.marks.section)
        asked, typed = None, np.full((len(sentences), len(QUESTION_TYPES)), 1 / len(QUESTION_TYPES), np.float32)
        for start in range(0, len(parts), self.BATCH_BUCKETS[-1]):
            group = parts[start: start + self.BATCH_BUCKETS[-1]]
            batch = np.full((next(b for b in self.BATCH_BUCKETS if b >= len(group)), self.width), END_OF_TEXT_ID,
                            np.int32)
            for row, (tokens, _, _) in enumerate(group):
                batch[row, : len(tokens)] = tokens
            hidden = np.asarray(ops.convert_to_numpy(self._hidden(batch)), np.float32)
            if asked is None:
                asked = _softmax(hidden[0, len(prompt) - 1] @ self._labels)
            for row, (_, positions, numbers) in enumerate(group):
                typed[numbers] = _softmax(hidden[row, positions] @ self._labels)
        return asked, typed

    def scores(self, question: str, sentences: Sequence[str], starts: Sequence[bool] = ()) -> np.ndarray:
        """One score per sentence: log of (the chance its type and the question's agree) over (the same for the
        page's average sentence). Above 0: more on the asked type than the page as a whole."""
        if not sentences:
            return np.zeros(0, np.float32)
        asked, typed = self.type_probabilities(question, sentences, starts)
        agreement = typed @ asked
        return np.log(agreement) - np.log(typed.mean(axis=0) @ asked)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
