"""The GPT-2 as a trained sentence selector: which sentences of a page answer the question.

    Which sentences answer: <question>

     <sentence 1 of section 1>
     <sentence 2 of section 1>

     <sentence 1 of section 2>
    ...

Each candidate sentence stands on its own line, and a blank line opens each section of the page. At the newline that ends a sentence the model predicts " yes" or
" no" (that label replaces the next-token target there in training), so one forward pass over a page scores every
sentence: its log-odds are the last hidden state at the newline dotted with the difference of the " yes" and " no"
rows of the tied embedding. No head is added: the preset stays a plain ``GPT2CausalLM``, and it keeps its language
modelling (training mixes these rows with the question-answer rows, ``selection_fraction``).

Why selection has to be trained: read off the quick-start model as it was, the likelihood of a sentence given the
question (or its gain over no question) picked sentences no better than a page's first three. MedQuAD teaches it
directly: a page holds several sections about one focus, one per question type; for a question, the sentences of its
own section are "yes" and every other section's are "no".

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
LABEL_WORDS = (" no", " yes")
# Candidate sentences per page section: a section's answer opens with what it says; past its eighth sentence
# come lists and details (MedQuAD's median section has 6 sentences).
SECTION_SENTENCES = 8
CACHE_FORMAT = 1


def selection_prompt(question: str) -> str:
    return f"{SELECT_PREFIX}{' '.join(question.split())}\n"


@dataclasses.dataclass(frozen=True)
class SelectionTokens:
    """The token ids the format is made of, read from the tokenizer (each must be one token)."""

    newline: int
    no: int
    yes: int
    section: int  # the blank line before a section

    @classmethod
    def of(cls, tokenizer) -> "SelectionTokens":
        ids = [np.asarray(tokenizer(text)).reshape(-1) for text in ("\n", *LABEL_WORDS, "\n\n")]
        if any(len(i) != 1 for i in ids):
            raise ValueError("the tokenizer spells the selection markers in several tokens")
        return cls(*(int(i[0]) for i in ids))


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
    sentences: tuple[str, ...]  # the page's candidate sentences, in page order
    labels: tuple[bool, ...]  # whether each is in the question's own section
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
        starts = section_starts(candidates)
        for gold, record in enumerate(sections):
            labels = tuple(c[0] == gold for c in candidates)
            if any(labels):
                examples.append(SelectionExample(record.question, texts, labels, starts))
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
    """Rows of ``sequence_length + 1`` tokens, one chunk each, weighted on the label positions only. Every chunk
    holding a sentence of the question's own section is kept, and one chunk without (when the page has one), so
    "no" is learned on whole other sections as well as beside the answer."""
    marks = SelectionTokens.of(tokenizer)
    texts = sorted({" " + s for e in examples for s in e.sentences} | {selection_prompt(e.question) for e in examples})
    ids = _token_cache(texts, tokenizer)
    rng = np.random.default_rng(seed)
    width = sequence_length + 1
    rows, weights, targets = [], [], []
    for example in examples:
        sentence_ids = [ids[" " + s] for s in example.sentences]
        parts = chunks(ids[selection_prompt(example.question)], sentence_ids, sequence_length, marks.newline,
                       example.section_starts, marks.section)
        positive = [i for i, (_, _, numbers) in enumerate(parts) if any(example.labels[n] for n in numbers)]
        negative = [i for i in range(len(parts)) if i not in positive]
        keep = positive + ([int(rng.choice(negative))] if negative else [])
        for i in keep:
            tokens, positions, numbers = parts[i]
            row = np.full(width, END_OF_TEXT_ID, np.int32)
            row[: len(tokens)] = tokens
            target = row.copy()
            weight = np.zeros(width, np.float32)
            for position, number in zip(positions, numbers):
                # Row index p + 1 holds the target of position p (targets are the row shifted by one).
                target[position + 1] = marks.yes if example.labels[number] else marks.no
                weight[position + 1] = 1.0
            rows.append(row)
            targets.append(target)
            weights.append(weight)
    if not rows:
        raise ValueError("no page with two sections to learn sentence selection from")
    return PackedTokens(np.stack(rows), np.stack(weights), np.stack(targets))


# ------------------------------------------------------------------------------------------ scoring
class SentenceScorer:
    """Log-odds that each sentence answers the question, from one batched forward pass of the backbone."""

    BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)

    def __init__(self, causal_lm, width: int = 256):
        from keras import ops

        from gpt2chat.modeling.generation import _compile

        backbone = causal_lm.backbone
        self.tokenizer = causal_lm.preprocessor.tokenizer
        self.marks = SelectionTokens.of(self.tokenizer)
        self.width = min(width, backbone.max_sequence_length)
        embeddings = ops.convert_to_numpy(backbone.token_embedding.embeddings).astype(np.float32)
        self._direction = embeddings[self.marks.yes] - embeddings[self.marks.no]

        def hidden(token_ids):
            return backbone({"token_ids": token_ids, "padding_mask": ops.ones_like(token_ids, dtype="bool")})

        self._hidden = _compile(hidden, backbone.hidden_dim <= 512)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return [[int(i) for i in np.asarray(ids).reshape(-1)] for ids in self.tokenizer(texts)] if texts else []

    def warm_up(self) -> None:
        for batch in self.BATCH_BUCKETS[:3]:
            self._hidden(np.zeros((batch, self.width), np.int32))

    def scores(self, question: str, sentences: Sequence[str], starts: Sequence[bool] = ()) -> np.ndarray:
        """One log-odds per sentence (``sentences`` in page order: earlier sentences are context for later ones;
        ``starts`` marks those that open a page section)."""
        from keras import ops

        if not sentences:
            return np.zeros(0, np.float32)
        prompt, *sentence_ids = self._encode([selection_prompt(question), *(" " + s for s in sentences)])
        if len(prompt) > self.width // 2:  # a long message: its end, where the question usually is, and the prefix
            prefix, = self._encode([SELECT_PREFIX.rstrip()])
            prompt = prefix + prompt[len(prompt) - (self.width // 2 - len(prefix)):]
        parts = chunks(prompt, sentence_ids, self.width, self.marks.newline, starts, self.marks.section)
        out = np.zeros(len(sentences), np.float32)
        for start in range(0, len(parts), self.BATCH_BUCKETS[-1]):
            group = parts[start: start + self.BATCH_BUCKETS[-1]]
            batch = np.full((next(b for b in self.BATCH_BUCKETS if b >= len(group)), self.width), END_OF_TEXT_ID,
                            np.int32)
            for row, (tokens, _, _) in enumerate(group):
                batch[row, : len(tokens)] = tokens
            hidden = np.asarray(ops.convert_to_numpy(self._hidden(batch)), np.float32)
            for row, (_, positions, numbers) in enumerate(group):
                out[numbers] = hidden[row, positions] @ self._direction
        return out
