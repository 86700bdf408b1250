"""Answer the held-out test questions and score the answers: a model through the chat engine, or a baseline
without a model, in each grounding mode. ``gpt2chat.reports.compare`` runs this for every model and writes the report.

Every answer is scored against the gold NIH answer (``gpt2chat.reports.metrics``: ROUGE, BLEU, token F1) and for
grounding (``gpt2chat.chat.grounding``): the share of sentences the cited passage supports, how often the engine
replaced the model's text by an extract of the passage (fallback), and how often an answer is degenerate. Each
shown answer is also set against the cited passage's lead at the same length (its first as many words, and its
first as many sentences), and a model's copied sentences against the passage's order (does it just copy the lead?).
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np

from gpt2chat.modeling.rundir import perplexity
from gpt2chat.reports.metrics import degenerate_rate, latency_metrics, support_rate, text_metrics
from gpt2chat.modeling.tokens import model_inputs

# How each test question is answered; the labels (and the short ones under the charts) travel in the JSON report.
GROUNDING_MODES = {
    "ungrounded": {"label": "no grounding", "short": "none"},
    "grounded": {"label": "grounded", "short": "grounded"},
    "grounded_heldout": {"label": "grounded, gold pair excluded", "short": "gold out"},
    # The passage in the prompt but no copy constraint (EngineConfig.copy_mode "off"): what the model writes alone.
    "grounded_free": {"label": "grounded, free decoding", "short": "free", "copy_mode": "off"},
}
MODES = tuple(GROUNDING_MODES)
LEAD_SENTENCES = 3  # lead-k baseline: the classic summarisation baseline's k
LEAD_BASELINE, EXTRACT_BASELINE = f"baseline: lead-{LEAD_SENTENCES}", "baseline: extract"
BASELINES = {
    LEAD_BASELINE: f"no model: the top retrieved passage's first {LEAD_SENTENCES} sentences",
    EXTRACT_BASELINE: "no model: the question-focused extract (grounding.extractive_answer) of the top retrieved "
                      "passage",
}


class HeldOutIndex:
    """A retrieval index whose results can leave out one test pair: its own passage and any passage with the
    identical answer text (MedQuAD repeats some answers under other ids). Remembers the top passage returned."""

    HEADROOM = 3  # extra passages asked for, so that k remain once the held-out ones are dropped

    def __init__(self, index):
        self.index = index
        self.held_out = None  # the QAPair to leave out, or None to search normally
        self.last_top_pair_id: str | None = None

    def _kept(self, passages) -> list:
        held_out = self.held_out
        return [p for p in passages if not held_out or (p.pair_id != held_out.pair_id and p.answer != held_out.answer)]

    def search(self, query: str, k: int = 5):
        """BM25 alone (``RetrievalIndex.search``)."""
        passages = self._kept(self.index.search(query, k + self.HEADROOM if self.held_out else k))[:k]
        self.last_top_pair_id = passages[0].pair_id if passages else None
        return passages

    def page_sections(self, pair_id: str):
        """The sections of a page (``RetrievalIndex.page_sections``) without the held-out pair."""
        return self._kept(self.index.page_sections(pair_id))

    def retrieve(self, message: str, history=(), k: int = 3):
        """Question understanding and ranking, as the engine retrieves (``RetrievalIndex.retrieve``)."""
        result = self.index.retrieve(message, history, k + self.HEADROOM if self.held_out else k)
        result = dataclasses.replace(result, questions=tuple(
            dataclasses.replace(question, passages=tuple(self._kept(question.passages))[:k])
            for question in result.questions))
        top = result.passages(1)
        self.last_top_pair_id = top[0].pair_id if top else None
        return result


def model_perplexity(causal_lm, rows: np.ndarray, weights: np.ndarray | None = None, *, batch_size: int = 4,
                     progress: bool = False, label: str = "") -> dict[str, float]:
    """Teacher-forced mean cross-entropy (nats per token) over the packed rows, and its exp: every position, or
    with per-token ``weights`` (``tokens.PackedTokens``) only the weighted ones (the answer tokens)."""
    import keras
    from keras import ops
    from tqdm import tqdm

    total, count = 0.0, 0.0
    for start in tqdm(range(0, len(rows), batch_size), desc=f"perplexity {label}", disable=not progress):
        batch = slice(start, start + batch_size)
        inputs, targets, *target_weights = model_inputs(rows[batch], None if weights is None else weights[batch])
        logits = causal_lm(inputs, training=False)
        losses = keras.losses.sparse_categorical_crossentropy(targets, ops.cast(logits, "float32"), from_logits=True)
        losses = ops.convert_to_numpy(losses)
        mask = target_weights[0] if target_weights else np.ones_like(losses)
        total += float(np.sum(losses * mask))
        count += float(np.sum(mask))
    loss = total / count
    return {"loss": loss, "perplexity": perplexity(loss), "tokens": int(count)}


def greedy_reply(engine, question: str, *, grounded: bool, max_new_tokens: int):
    from gpt2chat.modeling.generation import SamplingConfig

    return engine.reply(question, grounded=grounded,
                        sampling=SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens))


def same_length_lead(answers, passages, references) -> dict:
    """Text metrics of the cited passage's lead cut to each answer's length: its first as many words
    (``grounding.lead_words``) and its first as many sentences (``grounding.lead_k``); no passage, no lead."""
    from gpt2chat.chat.grounding import lead_k, lead_words, split_sentences

    by_words = [lead_words(p or "", len(a.split())) for a, p in zip(answers, passages, strict=True)]
    by_sentences = [lead_k(p or "", len(split_sentences(a))) if a else "" for a, p in zip(answers, passages)]
    return {"words": text_metrics(by_words, references), "sentences": text_metrics(by_sentences, references),
            "texts": {"words": by_words, "sentences": by_sentences}}


def copy_order(model_texts, passages) -> dict | None:
    """Which passage sentences the model copied: per answer, the position in the passage of each of its sentences
    (None when not a verbatim passage sentence). Summaries over the answers that copied at least one sentence:
    the share opening with the passage's first sentence, the share that are exactly its lead (sentences 0..k-1),
    and the mean position of the first copied sentence. None when nothing was copied."""
    from gpt2chat.chat.grounding import split_sentences

    positions = []
    for text, passage in zip(model_texts, passages, strict=True):
        order = {sentence: i for i, sentence in reversed(list(enumerate(split_sentences(passage or ""))))}
        positions.append([order.get(sentence) for sentence in split_sentences(text or "")])
    copied = [p for p in positions if p and p[0] is not None]
    if not copied:
        return None
    return {
        "answers": len(copied),
        "starts_at_first_sentence": sum(p[0] == 0 for p in copied) / len(copied),
        "is_the_lead": sum(p == list(range(len(p))) for p in copied) / len(copied),
        "first_position_mean": statistics.fmean(p[0] for p in copied),
        "positions": positions,
    }


def as_read(reply) -> str:
    """The answer as a reader sees it in the app (notice, then the answer, an extract labelled as such), without
    the sources and disclaimer that follow it."""
    from gpt2chat.serving.ui import answer_of, render_reply

    return answer_of(render_reply(reply))


def _stats(reply) -> dict:
    stats = reply.stats
    if stats is None:  # nothing was generated: a refused message, or an answer without the model
        return {"new_tokens": 0, "seconds_total": 0.0, "seconds_to_first_token": 0.0, "tokens_per_second": 0.0}
    return {"new_tokens": stats.new_tokens, "seconds_total": stats.seconds_total,
            "seconds_to_first_token": stats.seconds_to_first_token, "tokens_per_second": stats.tokens_per_second}


def answer_questions(engine, index: HeldOutIndex, questions, *, vocabulary=None, max_new_tokens: int = 160,
                     progress: bool = False, label: str = "") -> dict:
    """Greedy answers through ``engine`` (built over ``index``) to the test questions in each grounding mode.

    ``predictions`` are what the reader is shown (supported model sentences, or the extract); ``model_texts`` what
    the model wrote. Text metrics are computed for both; grounding scores use ``vocabulary``
    (a ``grounding.Vocabulary``) for the word-salad test. A mode may set its own ``copy_mode`` (the engine's
    config is switched for that mode and restored)."""
    from tqdm import tqdm

    from gpt2chat.chat.kinds import AnswerKind

    references = [r.answer for r in questions]
    engine_config = engine.config
    results = {}
    for mode in MODES:
        replies, gold_on_top = [], 0
        engine.config = dataclasses.replace(
            engine_config, copy_mode=GROUNDING_MODES[mode].get("copy_mode", engine_config.copy_mode))
        try:  # an interrupted comparison leaves the engine (and the index) as it found them
            for record in tqdm(questions, desc=f"{label}: {GROUNDING_MODES[mode]['label']}", disable=not progress):
                index.held_out = record if mode == "grounded_heldout" else None
                replies.append(greedy_reply(engine, record.question, grounded=mode != "ungrounded",
                                            max_new_tokens=max_new_tokens))
                gold_on_top += mode == "grounded" and index.last_top_pair_id == record.pair_id
        finally:
            index.held_out = None
            engine.config = engine_config
        generated = [r for r in replies if r.model_text is not None]
        model_texts = [r.model_text or "" for r in replies]
        shown, evidence = [r.answer for r in replies], [r.evidence for r in replies]
        stats = [_stats(r) for r in replies]
        results[mode] = {
            "metrics": text_metrics(shown, references),
            "model_text_metrics": text_metrics(model_texts, references),
            "grounding": {
                "support_rate": support_rate([r.model_text for r in generated], [[r.evidence] for r in generated]),
                "fallback_rate": (sum(r.answer_kind != AnswerKind.MODEL for r in generated) / len(generated)
                                  if generated else None),
                "degenerate_model_text": degenerate_rate([r.model_text for r in generated], vocabulary),
                # Only answers count: the fixed emergency and "no NIH answer" replies are not answers to score.
                "degenerate_shown": degenerate_rate([r.answer for r in replies if r.answer_kind != AnswerKind.NONE],
                                                    vocabulary),
            },
            "lead_same_length": same_length_lead(shown, evidence, references),
            "copy_order": copy_order(model_texts, evidence),
            "latency": latency_metrics(stats),
            "gold_passage_on_top": gold_on_top / len(questions) if mode == "grounded" else None,
            "predictions": shown,
            "model_texts": [r.model_text for r in replies],
            "answer_kinds": [r.answer_kind for r in replies],
            "categories": [r.category for r in replies],
            "stats": stats,
        }
    return results


def baseline_answers(index: HeldOutIndex, questions, *, vocabulary=None, progress: bool = False) -> dict[str, dict]:
    """The two answers without a model (``BASELINES``), in the grounded modes (they need a retrieved passage),
    scored like a model's shown answers."""
    from tqdm import tqdm

    from gpt2chat.chat.grounding import extractive_answer, lead_k
    from gpt2chat.modeling.prompt import reference_passage

    answerers = {
        LEAD_BASELINE: lambda question, passage: lead_k(passage, LEAD_SENTENCES),
        # the passage as the prompt quotes it; the engine's own fallback may also draw on the other cited passages
        EXTRACT_BASELINE: lambda question, passage: extractive_answer(question, [reference_passage(passage)]).text,
    }
    references = [r.answer for r in questions]
    results = {label: {"modes": {}} for label in BASELINES}
    for mode in ("grounded", "grounded_heldout"):
        texts = {label: [] for label in answerers}
        seconds = {label: [] for label in answerers}
        passages = []
        for record in tqdm(questions, desc=f"baselines: {GROUNDING_MODES[mode]['label']}", disable=not progress):
            index.held_out = record if mode == "grounded_heldout" else None
            started = time.perf_counter()
            top = index.retrieve(record.question).passages(1)  # the passage the engine would cite first
            retrieved = time.perf_counter() - started  # retrieved once; each baseline's time includes it
            passages.append([top[0].answer] if top else [])
            for label, answer in answerers.items():
                started = time.perf_counter()
                texts[label].append(answer(record.question, top[0].answer) if top else "")
                seconds[label].append(retrieved + time.perf_counter() - started)
        index.held_out = None
        for label in answerers:
            results[label]["modes"][mode] = {
                "metrics": text_metrics(texts[label], references),
                "model_text_metrics": None,
                "grounding": {"support_rate": support_rate(texts[label], passages), "fallback_rate": None,
                              "degenerate_model_text": None,
                              "degenerate_shown": degenerate_rate(texts[label], vocabulary)},
                "latency": {"seconds_per_answer": float(np.median(seconds[label])), "tokens_per_second": 0.0,
                            "new_tokens": 0.0},
                "gold_passage_on_top": None,
                "predictions": texts[label],
                "categories": ["answer"] * len(texts[label]),
            }
    return results
