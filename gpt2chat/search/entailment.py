"""Recognising question entailment (RQE): does a consumer question entail a MedQuAD (FAQ) question, i.e. would
every answer to the FAQ at least partly answer it? Used to re-rank retrieved passages.

A logistic regression over overlap features, the classic RQE baseline (Ben Abacha & Demner-Fushman 2016):
IDF-weighted cosine and coverage in both directions, word and word-pair Jaccard, fuzzy token-set similarity,
lengths, and agreement of the two questions' predicted types. Trained on the RQE train split only
(8,588 clinical question pairs); ``python -m gpt2chat.retrieval --eval rqe`` reports validation and test accuracy.

    model = EntailmentModel.build(rqe_pairs("train"), type_classifier, idf_texts)
    model.probabilities("is there a test for lupus?", ["How to diagnose Lupus ?", "What is (are) Lupus ?"])
"""

from __future__ import annotations

import collections
import json
import math
import random
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from rapidfuzz import fuzz
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from gpt2chat import settings
from gpt2chat.corpus.data import QAPair
from gpt2chat.search.question_types import SEED_PHRASES, TypeClassifier
from gpt2chat.search.understanding import raw_words, stems

RQE_FILE = "mediqa2019_rqe.jsonl"
LIVEQA_FILE = "liveqa2017_train.jsonl"
_STOP_STEMS = frozenset(stems(ENGLISH_STOP_WORDS))
FEATURES = ("cosine", "faq_covered", "chq_covered", "jaccard", "pair_jaccard", "token_set", "chq_length",
            "faq_length", "length_gap", "type_agreement", "same_type", "faq_all_covered")


def rqe_path() -> Path:
    return settings.consumer_qa_dir() / RQE_FILE


def liveqa_path() -> Path:
    return settings.consumer_qa_dir() / LIVEQA_FILE


def liveqa_messages(split: str, path: Path | None = None) -> list[dict]:
    """LiveQA 2017 messages of one split ("train" may be learned from, "dev" is for evaluation only)."""
    with open(path or liveqa_path(), encoding="utf-8") as handle:
        return [row for row in map(json.loads, handle) if row["set"] == split]


def rqe_pairs(split: str, path: Path | None = None) -> list[tuple[str, str, bool]]:
    """(consumer question, FAQ, entails) of one RQE split: "train", "validation" or "test"."""
    pairs = []
    with open(path or rqe_path(), encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["set"] == split:
                pairs.append((row["chq"], row["faq"], bool(row["entails"])))
    return pairs


def type_contrast_pairs(records: Sequence[QAPair], per_type: int = 150, seed: int = 0
                        ) -> list[tuple[str, str, bool]]:
    """Pairs the RQE train split lacks: an everyday question about a focus (a ``SEED_PHRASES`` wording with the
    focus put in) entails that focus's MedQuAD question of the same type and not its questions of other types.
    The train split's negatives are unrelated questions, so a model fitted on it alone ignores the question type
    and scored 48.7% on the RQE test split, where negatives share the focus."""
    rng = random.Random(seed)
    by_document: dict[str, dict[str, str]] = collections.defaultdict(dict)
    focus_of: dict[str, str] = {}
    for record in records:
        by_document[record.pair_id.rsplit("-", 1)[0]].setdefault(record.question_type, record.question)
        focus_of[record.pair_id.rsplit("-", 1)[0]] = record.focus
    documents = [(d, questions) for d, questions in sorted(by_document.items()) if len(questions) >= 2]
    pairs = []
    for qtype, phrases in SEED_PHRASES.items():
        having = [(d, questions) for d, questions in documents if qtype in questions]
        for document, questions in rng.sample(having, min(per_type, len(having))):
            focus = focus_of[document]
            phrase = rng.choice(phrases)
            chq = re.sub(r"\bit\b", focus, phrase) if re.search(r"\bit\b", phrase) else f"{phrase} {focus}"
            other = rng.choice(sorted(t for t in questions if t != qtype))
            pairs += [(chq, questions[qtype], True), (chq, questions[other], False)]
    return pairs


def _content(text: str) -> list[str]:
    return [s for s in stems(raw_words(text)) if s not in _STOP_STEMS]


class EntailmentModel:
    def __init__(self, idf: dict[str, float], mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: float, types: TypeClassifier):
        self.idf, self.mean, self.scale, self.coef, self.intercept = idf, mean, scale, coef, intercept
        self.types = types  # collaborator: the question-type classifier built with the same index
        self._unseen_idf = max(idf.values(), default=1.0)

    @classmethod
    def build(cls, pairs: Sequence[tuple[str, str, bool]], types: TypeClassifier,
              idf_texts: Sequence[str]) -> EntailmentModel:
        """Fit on labelled pairs; IDF comes from ``idf_texts`` (MedQuAD questions) plus the pairs' own questions."""
        from sklearn.linear_model import LogisticRegression

        texts = [*idf_texts, *(q for chq, faq, _ in pairs for q in (chq, faq))]
        document_frequency = collections.Counter(s for text in texts for s in set(_content(text)))
        idf = {s: round(math.log((1 + len(texts)) / (1 + n)) + 1, 4) for s, n in document_frequency.items()}
        model = cls(idf, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), np.zeros(len(FEATURES)), 0.0, types)
        chq_types = types.probabilities([chq for chq, _, _ in pairs])
        faq_types = types.probabilities([faq for _, faq, _ in pairs])
        features = np.vstack([model.features(chq, [faq], chq_types[i], faq_types[i:i + 1])
                              for i, (chq, faq, _) in enumerate(pairs)])
        mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        fitted = LogisticRegression(C=1.0, max_iter=1000).fit((features - mean) / scale, [e for _, _, e in pairs])
        return cls(idf, mean, scale, fitted.coef_[0], float(fitted.intercept_[0]), types)

    def features(self, question: str, candidates: Sequence[str], question_types: np.ndarray | None = None,
                 candidate_types: np.ndarray | None = None) -> np.ndarray:
        """(len(candidates), len(FEATURES)) overlap features of ``question`` against each candidate question;
        type probabilities are computed here unless given (a batch computes them once)."""
        words = _content(question)
        weights = {w: self.idf.get(w, self._unseen_idf) for w in words}
        pairs = set(zip(words, words[1:]))
        norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
        own_types = self.types.probabilities([question])[0] if question_types is None else question_types
        other_types = self.types.probabilities(candidates) if candidate_types is None else candidate_types
        rows = np.zeros((len(candidates), len(FEATURES)), dtype=np.float32)
        for i, candidate in enumerate(candidates):
            other = _content(candidate)
            other_weights = {w: self.idf.get(w, self._unseen_idf) for w in other}
            shared = weights.keys() & other_weights.keys()
            other_norm = math.sqrt(sum(v * v for v in other_weights.values())) or 1.0
            shared_weight = sum(weights[w] * other_weights[w] for w in shared)
            faq_covered = sum(other_weights[w] for w in shared) / (sum(other_weights.values()) or 1.0)
            other_pairs = set(zip(other, other[1:]))
            union = weights.keys() | other_weights.keys()
            rows[i] = (
                shared_weight / (norm * other_norm),
                faq_covered,
                sum(weights[w] for w in shared) / (sum(weights.values()) or 1.0),
                len(shared) / (len(union) or 1),
                len(pairs & other_pairs) / (len(pairs | other_pairs) or 1),
                fuzz.token_set_ratio(question, candidate) / 100,
                math.log1p(len(words)),
                math.log1p(len(other)),
                abs(math.log1p(len(words)) - math.log1p(len(other))),
                float(own_types @ other_types[i]),
                float(np.argmax(own_types) == np.argmax(other_types[i])),
                float(faq_covered > 0.999),
            )
        return rows

    def probabilities(self, question: str, candidates: Sequence[str], question_types: np.ndarray | None = None,
                      candidate_types: np.ndarray | None = None) -> np.ndarray:
        """P(question entails candidate) for each candidate question."""
        if not candidates:
            return np.zeros(0, dtype=np.float32)
        features = self.features(question, candidates, question_types, candidate_types)
        logits = ((features - self.mean) / self.scale) @ self.coef
        return 1 / (1 + np.exp(-(logits + self.intercept)))

    def accuracy(self, pairs: Sequence[tuple[str, str, bool]]) -> float:
        correct = sum(bool(self.probabilities(chq, [faq])[0] >= 0.5) == entails for chq, faq, entails in pairs)
        return correct / len(pairs) if pairs else 0.0

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "entailment.json").write_text(json.dumps({"idf": self.idf, "intercept": self.intercept,
                                                                "features": FEATURES}))
        np.savez(directory / "entailment.npz", mean=self.mean, scale=self.scale, coef=self.coef)

    @classmethod
    def load(cls, directory: Path, types: TypeClassifier) -> EntailmentModel:
        payload = json.loads((directory / "entailment.json").read_text())
        with np.load(directory / "entailment.npz", allow_pickle=False) as arrays:
            mean, scale, coef = arrays["mean"], arrays["scale"], arrays["coef"]
        if tuple(payload["features"]) != FEATURES or not all(a.shape == (len(FEATURES),) for a in (mean, scale, coef)):
            raise ValueError("entailment model was saved with other features")
        if not all(np.all(np.isfinite(a)) for a in (mean, scale, coef)) or not np.all(scale > 0):
            raise ValueError("entailment model has invalid weights")
        return cls(payload["idf"], mean, scale, coef, float(payload["intercept"]), types)
