"""Scores shared by training, evaluation and the reports.

Pure functions of numbers or of (predictions, references), so a report's figures can be recomputed from its JSON.
Heavy libraries (rouge_score, sacrebleu, numpy) are imported inside the functions that need them.
``perplexity`` belongs to training (``gpt2chat.modeling.rundir``).
"""

from __future__ import annotations

import collections
import re
import statistics
from typing import Sequence

TEXT_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "token_f1")
METRIC_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "bleu": "BLEU", "token_f1": "token F1"}


_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style F1 of the bags of lowercase word tokens."""
    predicted, gold = words(prediction), words(reference)
    if not predicted or not gold:
        return float(predicted == gold)
    overlap = sum((collections.Counter(predicted) & collections.Counter(gold)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (rouge_score with the Porter stemmer), in percent."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = collections.Counter()
    for prediction, reference in zip(predictions, references, strict=True):
        for name, score in scorer.score(reference, prediction).items():
            totals[name] += score.fmeasure
    return {name: 100 * totals[name] / len(predictions) for name in ("rouge1", "rouge2", "rougeL")}


def bleu_score(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU with its default 13a tokenisation (0-100)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def text_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Every score in ``TEXT_METRICS`` (percent) and the mean answer length in words."""
    import numpy as np

    if not predictions or len(predictions) != len(references):
        raise ValueError("need as many predictions as references, and at least one")
    return {
        **rouge_scores(predictions, references),
        "bleu": bleu_score(predictions, references),
        "token_f1": 100 * float(np.mean([token_f1(p, r) for p, r in zip(predictions, references)])),
        "answer_words": float(np.mean([len(p.split()) for p in predictions])),
    }


def latency_metrics(stats: Sequence[dict]) -> dict[str, float]:
    """Medians, so the few answers that pay for compiling a new prompt-length bucket do not dominate.

    ``stats`` holds one dict per answer with ``seconds_total``, ``tokens_per_second`` and ``new_tokens``."""
    seconds = [s["seconds_total"] for s in stats if s["new_tokens"]]
    rates = [s["tokens_per_second"] for s in stats if s["tokens_per_second"] > 0]
    return {
        "seconds_per_answer": float(statistics.median(seconds)) if seconds else 0.0,
        "tokens_per_second": float(statistics.median(rates)) if rates else 0.0,
        "new_tokens": float(statistics.fmean([s["new_tokens"] for s in stats])) if stats else 0.0,
    }


def support_rate(answers: Sequence[str], passages: Sequence[Sequence[str]]) -> float | None:
    """Share of all the answers' sentences that their passages support (``gpt2chat.chat.grounding.verify``: K-Precision
    and extractive coverage/density); None when the answers hold no sentence at all."""
    from gpt2chat.chat.grounding import verify

    checks = [verify(answer, texts) for answer, texts in zip(answers, passages, strict=True)]
    sentences = sum(len(check.sentences) for check in checks)
    return sum(len(check.kept) for check in checks) / sentences if sentences else None


def degenerate_rate(answers: Sequence[str], vocabulary=None) -> float:
    """Share of answers ``gpt2chat.chat.grounding.is_degenerate`` flags (empty, under 5 words, repeated 4-grams
    and, with a ``grounding.Vocabulary``, out-of-vocabulary word salad)."""
    from gpt2chat.chat.grounding import is_degenerate

    return sum(bool(is_degenerate(answer, vocabulary)) for answer in answers) / len(answers) if answers else 0.0
