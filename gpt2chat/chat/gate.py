"""The quality gate: a model's text is served only when its answers beat what the engine shows without it.

On held-out validation pairs (their foci never trained on, never in the test split), the engine answers each question
twice through the same pipeline, retrieval included: with the model, and with the question-focused extract. Both are
scored against the pair's NIH answer (ROUGE-2 F, the issue's measure; ROUGE-L beside it). The model passes when its
shown answers score at least as well as the extract's, its own text is shown for most questions, and the support
check kept at least 95% of its sentences. Whatever the outcome, the status says which won and by how much.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from gpt2chat.corpus.data import focus_key, is_link_list
from gpt2chat.corpus.splits import split_of_key

# A model whose text is shown for fewer questions than this mostly serves the extract anyway.
MIN_SHOWN = 0.5
MIN_SUPPORT = 0.95


@dataclasses.dataclass(frozen=True)
class GatePair:
    question: str
    answer: str  # the NIH answer the replies are scored against


@dataclasses.dataclass(frozen=True)
class GateResult:
    questions: int
    model_rouge2: float  # mean ROUGE-2 F (percent) of the model pipeline's shown answers
    extract_rouge2: float  # the same for the extract the engine shows without a model
    model_rougeL: float
    extract_rougeL: float
    model_shown: float  # share of questions whose shown answer is the model's own text
    support: float  # share of the model's sentences the support check kept
    model_words: float  # mean words per shown answer
    extract_words: float

    @property
    def passed(self) -> bool:
        return (self.questions > 0 and self.model_rouge2 >= self.extract_rouge2 and self.model_shown >= MIN_SHOWN
                and self.support >= MIN_SUPPORT)

    @property
    def detail(self) -> str:
        verdict = "model answers shown" if self.passed else "model text withheld"
        why = ""
        if not self.passed:
            why = ("" if self.model_rouge2 < self.extract_rouge2 else  # the two scores say why
                   f"; its own text was shown for only {self.model_shown:.0%}" if self.model_shown < MIN_SHOWN else
                   f"; only {self.support:.0%} of its sentences were supported")
        return (f"{verdict}: on {self.questions} held-out questions its answers score ROUGE-2 "
                f"{self.model_rouge2:.1f} against {self.extract_rouge2:.1f} for the NIH-page summaries "
                f"({self.model_rouge2 - self.extract_rouge2:+.1f}){why}")


def gate_pairs(index, n: int, seed: int = 0) -> list[GatePair]:
    """``n`` seeded validation pairs of the index (no lists of links: they answer nothing)."""
    held_out = [i for i in range(len(index))
                if split_of_key(focus_key(index.passage(i)["focus"])) == "validation"
                and not is_link_list(index.passage(i)["answer"])]
    chosen = np.random.default_rng(seed).permutation(len(held_out))[:n]
    return [GatePair(index.passage(held_out[i])["question"], index.passage(held_out[i])["answer"])
            for i in sorted(chosen)]


def rouge(predictions: Sequence[str], references: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair ROUGE-2 and ROUGE-L F (percent, Porter stemmer); 0 for an empty prediction."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p) if p.strip() else None for p, r in zip(predictions, references)]
    return (np.array([100 * s["rouge2"].fmeasure if s else 0.0 for s in scores]),
            np.array([100 * s["rougeL"].fmeasure if s else 0.0 for s in scores]))


def compare_answers(pairs: Sequence[GatePair], answers: Sequence, extracts: Sequence, *,
                    model_kind: str) -> GateResult:
    """The gate's figures from the finished replies (``ChatReply``) with and without the model."""
    references = [p.answer for p in pairs]
    model2, modelL = rouge([a.answer for a in answers], references)
    extract2, extractL = rouge([e.answer for e in extracts], references)
    shown = [a.answer_kind == model_kind for a in answers]
    rates = [a.support_rate for a in answers if a.support_rate is not None]
    return GateResult(
        questions=len(pairs), model_rouge2=float(model2.mean()) if len(pairs) else 0.0,
        extract_rouge2=float(extract2.mean()) if len(pairs) else 0.0,
        model_rougeL=float(modelL.mean()) if len(pairs) else 0.0,
        extract_rougeL=float(extractL.mean()) if len(pairs) else 0.0,
        model_shown=float(np.mean(shown)) if shown else 0.0,
        support=float(np.mean(rates)) if rates else 0.0,
        model_words=float(np.mean([len(a.answer.split()) for a in answers])) if answers else 0.0,
        extract_words=float(np.mean([len(e.answer.split()) for e in extracts])) if extracts else 0.0)
