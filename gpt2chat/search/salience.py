"""Which of the foci a message names it is about: a story names many conditions ("I was stressed... my daughter has
Tetralogy of Fallot... her doctors..."), the question one or two of them. A logistic regression over a few features
of each recognised focus (where and how often the message names it, whether a question sentence does, how it was
recognised, how broad a topic it is), learnt from the foci experts annotated on the LiveQA ``train`` messages.

    salience = FocusSalience.build(recogniser, pair_counts, liveqa_messages("train"), synonym_sets(annotations))
    salience.scores(text, recogniser.find(text), pair_counts)   # one score per match: higher, more the topic

Built with the retrieval index and saved beside it (JSON).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

from gpt2chat.corpus.data import name_key
from gpt2chat.corpus.consumer import message_text
from gpt2chat.search.understanding import (FocusMatch, FocusRecogniser, as_word, content_stems, everyday_english,
                                            mentions, raw_words, sentences, split_questions, stems)

HEADING_WORDS = 6
HEADING_NAME_BONUS = 1.0
FEATURES = ("in a heading", "mentions (log)", "first position", "in a question", "confidence", "named",
            "containing", "generic", "answered", "name words (log)", "pairs (log)", "inside a longer focus",
            "everyday English", "medicine")


def heading(text: str) -> str:
    """A subject line ("lymphedema.", "hiatal hernia/exercise."), lower-cased: a short first sentence that asks
    nothing; else ""."""
    said = sentences(text)
    first = said[0].lower() if said else ""
    return first if first and len(raw_words(first)) <= HEADING_WORDS and "?" not in first else ""


def features(text: str, matches: Sequence[FocusMatch], recogniser: FocusRecogniser,
             pair_counts: Mapping[str, int], everyday: frozenset[str]) -> np.ndarray:
    """(len(matches), len(FEATURES)) features of each recognised focus of ``text``; ``everyday``: stems of common
    English words ("stressed", "resources", "suicide" name foci but are said in passing)."""
    lowered = text.lower()
    first = heading(text)
    questions = [q.lower() for q in split_questions(text)]
    rows = []
    for match in matches:
        span = (match.span or match.focus).lower()
        said = as_word(span) if span else None
        starts = mentions(span, lowered)
        own = recogniser.stems_of(match.key)
        # "Hernia" when "Hiatal Hernia" is named too
        inside = any(other.key != match.key and own and own < recogniser.stems_of(other.key)
                     for other in matches if other.kind != "containing")
        span_stems = stems(raw_words(span))
        rows.append([
            float(bool(said and said.search(first))),
            math.log1p(len(starts)),
            starts[0] / max(len(lowered), 1) if starts else 1.0,
            float(bool(said) and any(said.search(q) for q in questions)),
            match.confidence,
            float(match.kind == "named"),
            float(match.kind == "containing"),
            float(match.generic),
            float(match.answered),
            math.log1p(len(raw_words(match.focus))),
            math.log1p(pair_counts.get(match.key, 0)),
            float(inside),
            float(bool(span_stems) and all(s in everyday for s in span_stems)),
            float(match.key in recogniser.medicines),
        ])
    return np.array(rows, dtype=np.float32).reshape(len(matches), len(FEATURES))


def labelled_messages(recogniser: FocusRecogniser, pair_counts: Mapping[str, int], everyday: frozenset[str],
                      messages: Sequence[dict], synonyms: Mapping[str, frozenset[str]]
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, is an annotated focus) of each annotated message (LiveQA rows: subject, message, subquestions)
    with at least one recognised focus among its annotated ones; a focus counts when it or one of its synonyms
    is annotated (names compared as ``name_key``)."""
    rows = []
    for message in messages:
        text = message_text(message)
        matches = recogniser.find(text)
        annotated = {name_key(sub["focus"]) for sub in message["subquestions"]}
        labels = np.array([bool(annotated & synonyms.get(name_key(m.focus), {name_key(m.focus)})) for m in matches])
        if labels.any():
            rows.append((features(text, matches, recogniser, pair_counts, everyday), labels))
    return rows


class FocusSalience:
    def __init__(self, coef: np.ndarray, intercept: float, everyday: Iterable[str]):
        self.coef = np.asarray(coef, dtype=np.float32)
        self.intercept = float(intercept)
        self.everyday = frozenset(everyday)  # stems of everyday English words that are stems of a focus name's words

    @classmethod
    def build(cls, recogniser: FocusRecogniser, pair_counts: Mapping[str, int], messages: Sequence[dict],
              synonyms: Mapping[str, frozenset[str]], regularisation: float = 1.0) -> FocusSalience:
        """Learnt from ``messages`` (LiveQA ``train``); without any, every focus is equally salient."""
        name_stems = {s for name in recogniser.names.values() for s in stems(raw_words(name))}
        everyday = set(stems(everyday_english())) & name_stems
        rows = labelled_messages(recogniser, pair_counts, everyday, messages, synonyms)
        labels = np.concatenate([y for _, y in rows]) if rows else np.zeros(0, dtype=bool)
        if labels.all() or not labels.any():
            return cls(np.zeros(len(FEATURES)), 0.0, everyday)
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=regularisation, max_iter=1000).fit(np.vstack([x for x, _ in rows]), labels)
        return cls(model.coef_[0], model.intercept_[0], everyday)

    def scores(self, text: str, matches: Sequence[FocusMatch], recogniser: FocusRecogniser,
               pair_counts: Mapping[str, int]) -> np.ndarray:
        """Log-odds that each match is what the message asks about."""
        if not matches:
            return np.zeros(0, dtype=np.float32)
        # A subject line that is nothing but a condition's name says what the message is about, whatever the story
        # names with more pages ("pressure sores. My wife is bedbound after a stroke ..."): chosen on the written
        # messages' odd half (bonus 0, 1, 2, 4: 182, 184, 182, 183 of 208); even half 165 -> 166 of 198, LiveQA
        # train first cited 58 -> 59 of 62.
        subject = set(content_stems(heading(text)))
        bonus = np.array([HEADING_NAME_BONUS if subject and match.kind == "named" and not match.generic
                          and subject == recogniser.stems_of(match.key) else 0.0 for match in matches])
        return features(text, matches, recogniser, pair_counts, self.everyday) @ self.coef + self.intercept + bonus

    def to_json(self) -> dict:
        return {"features": list(FEATURES), "coef": [float(c) for c in self.coef], "intercept": self.intercept,
                "everyday": sorted(self.everyday)}

    @classmethod
    def from_json(cls, payload: dict) -> FocusSalience:
        if payload.get("features") != list(FEATURES) or len(payload.get("coef", ())) != len(FEATURES):
            raise ValueError("focus salience weights do not match its features")
        coef = np.asarray(payload["coef"], dtype=np.float32)
        if not np.all(np.isfinite(coef)) or not math.isfinite(payload["intercept"]):
            raise ValueError("focus salience has non-finite weights")
        return cls(coef, payload["intercept"], payload["everyday"])
