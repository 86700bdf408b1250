"""Compare GPT-2 models on held-out MedQuAD questions: a generic preset, the specialised model, untrained baselines.

    python -m gpt2chat.compare                                   # gpt2_base_en vs models/default
    python -m gpt2chat.compare --model models/default --model scratch:small --limit 30
    python -m gpt2chat.compare ... --judge-url http://localhost:8000 --judge-model NAME   (optional LLM judge)

``--model`` takes a Keras-Hub preset name, a preset directory (a training run of ``gpt2chat.train``), or
``scratch:SIZE``: a randomly initialised (seeded) GPT-2 of that size, the "same size, untrained" baseline.
A preset that cannot be downloaded is reported as unavailable and the comparison goes on without it, with an
untrained baseline of the specialised model's size added so that there is still something to compare against.

Every model is measured on the held-out TEST split (the specialised run's split.json when there is one):

* perplexity, teacher-forced, on a fixed seeded sample of packed test rows in the shared prompt format;
* greedy answers through the chat engine to ``--limit`` test questions, without grounding, grounded, and
  grounded with the gold pair removed from retrieval: ROUGE-1/2/L (F-measure), BLEU, token F1, answer length,
  seconds per answer and tokens per second;
* side-by-side answers to a few general medical questions, with and without grounding;
* optionally scores 1-5 from an LLM judge behind any OpenAI-compatible ``/v1/chat/completions`` endpoint
  (``--judge-url`` or $GPT2CHAT_JUDGE_URL, key in $GPT2CHAT_JUDGE_KEY).

It writes ``comparison.md``, ``comparison.json`` (with every prediction and reference, so each number can be
recomputed), a self-contained ``comparison.html`` and PNG bar charts to ``--out``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import datetime
import gc
import html
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from gpt2chat import settings
from gpt2chat.metrics import perplexity as perplexity_of
from gpt2chat.model import SIZES
from gpt2chat.tokens import model_inputs

SCRATCH_PREFIX = "scratch:"
JUDGE_URL_ENV = "GPT2CHAT_JUDGE_URL"
JUDGE_KEY_ENV = "GPT2CHAT_JUDGE_KEY"
JUDGE_MODEL_ENV = "GPT2CHAT_JUDGE_MODEL"

# General questions answered side by side; none is in MedQuAD verbatim, all are everyday consumer questions.
GENERAL_QUESTIONS = (
    "What are the symptoms of type 2 diabetes?",
    "How is high blood pressure treated?",
    "What causes asthma?",
    "Who is at risk for osteoporosis?",
    "How can I prevent the flu?",
    "What is glaucoma?",
)

MODES = ("ungrounded", "grounded", "grounded_heldout")
MODE_LABELS = {
    "ungrounded": "no grounding",
    "grounded": "grounded",
    "grounded_heldout": "grounded, gold pair excluded",
}
SIDE_BY_SIDE_CHARS = 400  # untrained models ramble: keep the side-by-side tables readable
TEXT_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "token_f1")
METRIC_LABELS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "bleu": "BLEU", "token_f1": "token F1"}


@dataclasses.dataclass
class CompareConfig:
    models: list[str] = dataclasses.field(
        default_factory=lambda: [settings.ONLINE_PRESET, str(settings.DEFAULT_MODEL_DIR)]
    )
    data: str | None = None  # MedQuAD directory; None = settings.medquad_dir()
    out: str = str(settings.REPO_ROOT / "livrables")
    limit: int = 30  # test questions answered per model and grounding mode (CPU generation is slow)
    questions: Sequence[str] = GENERAL_QUESTIONS  # side-by-side questions
    perplexity_rows: int = 64
    sequence_length: int = 256  # tokens per perplexity row; every size in model.SIZES has at least this context
    max_new_tokens: int = 160  # the engine's default answer budget
    seed: int = 1337  # test-question sample, perplexity rows and the untrained models' weights
    judge_url: str | None = None
    judge_model: str = "gpt-4o-mini"
    judge_key: str | None = None
    progress: bool = True
    command: str | None = None  # the command line, shown in the report


# ---------------------------------------------------------------------------------------------------- metrics
# Pure functions of (predictions, references): the tests recompute them from the JSON report.

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
    if not predictions or len(predictions) != len(references):
        raise ValueError("need as many predictions as references, and at least one")
    return {
        **rouge_scores(predictions, references),
        "bleu": bleu_score(predictions, references),
        "token_f1": 100 * float(np.mean([token_f1(p, r) for p, r in zip(predictions, references)])),
        "answer_words": float(np.mean([len(p.split()) for p in predictions])),
    }


def latency_metrics(stats: Sequence[dict]) -> dict[str, float]:
    """Medians, so the few answers that pay for compiling a new prompt-length bucket do not dominate."""
    seconds = [s["seconds_total"] for s in stats if s["new_tokens"]]
    rates = [s["tokens_per_second"] for s in stats if s["tokens_per_second"] > 0]
    return {
        "seconds_per_answer": float(np.median(seconds)) if seconds else 0.0,
        "tokens_per_second": float(np.median(rates)) if rates else 0.0,
        "new_tokens": float(np.mean([s["new_tokens"] for s in stats])) if stats else 0.0,
    }


def perplexity(causal_lm, rows: np.ndarray, *, batch_size: int = 4, progress: bool = False,
               label: str = "") -> dict[str, float]:
    """Teacher-forced mean cross-entropy (nats per token) over every position of the packed rows, and its exp."""
    import keras
    from keras import ops
    from tqdm import tqdm

    total, count = 0.0, 0
    for start in tqdm(range(0, len(rows), batch_size), desc=f"perplexity {label}", disable=not progress):
        inputs, targets = model_inputs(rows[start : start + batch_size])
        logits = causal_lm(inputs, training=False)
        losses = keras.losses.sparse_categorical_crossentropy(targets, ops.cast(logits, "float32"), from_logits=True)
        total += float(ops.sum(losses))
        count += targets.size
    loss = total / count
    return {"loss": loss, "perplexity": perplexity_of(loss), "tokens": count}


# ---------------------------------------------------------------------------------------------------- models


class BadModel(ValueError):
    """A --model argument that can never load (missing directory, unknown size): the command stops."""


@dataclasses.dataclass
class ModelSpec:
    spec: str
    kind: str  # preset (a name to download) | run (a directory from gpt2chat.train) | directory | scratch
    size: str | None = None  # for scratch

    @property
    def label(self) -> str:
        path = Path(self.spec)
        if self.kind in ("run", "directory") and path.resolve().is_relative_to(settings.REPO_ROOT):
            return str(path.resolve().relative_to(settings.REPO_ROOT))
        return self.spec

    @property
    def role(self) -> str:
        return {
            "preset": "generic pretrained preset",
            "run": "specialised (trained on MedQuAD)",
            "directory": "local preset",
            "scratch": "untrained baseline (random weights)",
        }[self.kind]


def parse_model(spec: str) -> ModelSpec:
    if spec.startswith(SCRATCH_PREFIX):
        size = spec[len(SCRATCH_PREFIX):]
        if size not in SIZES:
            raise BadModel(f"{spec}: unknown size {size!r}; choose one of {', '.join(SIZES)}")
        return ModelSpec(spec, "scratch", size)
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BadModel(f"{spec} is not a Keras-Hub preset directory (no config.json)")
        return ModelSpec(spec, "run" if (path / "training_config.json").is_file() else "directory")
    if "://" not in spec and (os.sep in spec or spec.startswith((".", "~"))):
        raise BadModel(f"{spec}: no such model directory")
    return ModelSpec(spec, "preset")  # a preset name or handle: only loading it tells whether it is available


def run_size(run_dir: str | Path) -> str | None:
    """The SIZES layout of a training run: its --size when trained from scratch, else matched on config.json."""
    run_dir = Path(run_dir)
    training = json.loads((run_dir / "training_config.json").read_text())
    if not training.get("preset"):
        return training["size"]
    backbone = json.loads((run_dir / "config.json").read_text())["config"]
    for name, layout in SIZES.items():
        if all(backbone.get(k) == v for k, v in dataclasses.asdict(layout).items()):
            return name
    return None


def load_model(spec: ModelSpec, seed: int):
    from gpt2chat.model import build_causal_lm, load_preset

    if spec.kind == "scratch":
        import keras

        keras.utils.set_random_seed(seed)  # the same untrained weights on every run
        return build_causal_lm(spec.size, SIZES[spec.size].max_sequence_length)
    return load_preset(spec.spec)


class HeldOutIndex:
    """A retrieval index whose searches can leave out one test pair: its own passage and any passage with the
    identical answer text (MedQuAD repeats some answers under other ids). Remembers the top passage returned."""

    def __init__(self, index):
        self.index = index
        self.held_out = None  # the QAPair to leave out, or None to search normally
        self.last_top_pair_id: str | None = None

    def search(self, query: str, k: int = 5):
        passages = self.index.search(query, k + 3 if self.held_out else k)
        if self.held_out:
            passages = [p for p in passages
                        if p.pair_id != self.held_out.pair_id and p.answer != self.held_out.answer][:k]
        self.last_top_pair_id = passages[0].pair_id if passages else None
        return passages


# ---------------------------------------------------------------------------------------------------- evaluation


def held_out_test_pairs(records, specialised: ModelSpec | None):
    """The test pairs, from the specialised run's split.json when it has one, and where they came from."""
    from gpt2chat.splits import load_split, split_records

    if specialised and (Path(specialised.spec) / "split.json").is_file():
        return load_split(Path(specialised.spec) / "split.json", records)["test"], f"{specialised.label}/split.json"
    return split_records(records)["test"], "gpt2chat.splits.split_records (no split.json)"


def perplexity_rows(test_records, config: CompareConfig) -> np.ndarray:
    """A fixed seeded sample of packed test rows (ungrounded prompt format), the same for every model."""
    from gpt2chat.prompt import training_example
    from gpt2chat.tokenizer import gpt2_tokenizer
    from gpt2chat.tokens import pack

    packed = pack([training_example(r.question, r.answer) for r in test_records], gpt2_tokenizer(),
                  config.sequence_length)
    chosen = np.random.default_rng(config.seed).permutation(len(packed.rows))[: config.perplexity_rows]
    return packed.rows[np.sort(chosen)]


def _reply(engine, question: str, *, grounded: bool, max_new_tokens: int):
    from gpt2chat.generation import SamplingConfig

    return engine.reply(question, grounded=grounded,
                        sampling=SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens))


def _stats(reply) -> dict:
    stats = reply.stats
    if stats is None:  # a message the engine refused (safety or input check): nothing was generated
        return {"new_tokens": 0, "seconds_total": 0.0, "seconds_to_first_token": 0.0, "tokens_per_second": 0.0}
    return {"new_tokens": stats.new_tokens, "seconds_total": stats.seconds_total,
            "seconds_to_first_token": stats.seconds_to_first_token, "tokens_per_second": stats.tokens_per_second}


def answer_questions(engine, index: HeldOutIndex, questions, config: CompareConfig, label: str) -> dict:
    """Greedy answers to the test questions in each grounding mode, with metrics and per-answer stats."""
    from tqdm import tqdm

    references = [r.answer for r in questions]
    results = {}
    for mode in MODES:
        predictions, stats, categories, gold_on_top = [], [], [], 0
        for record in tqdm(questions, desc=f"{label}: {MODE_LABELS[mode]}", disable=not config.progress):
            index.held_out = record if mode == "grounded_heldout" else None
            reply = _reply(engine, record.question, grounded=mode != "ungrounded",
                           max_new_tokens=config.max_new_tokens)
            predictions.append(reply.answer)
            stats.append(_stats(reply))
            categories.append(reply.category)
            gold_on_top += mode == "grounded" and index.last_top_pair_id == record.pair_id
        index.held_out = None
        results[mode] = {
            "metrics": text_metrics(predictions, references),
            "latency": latency_metrics(stats),
            "gold_passage_on_top": gold_on_top / len(questions) if mode == "grounded" else None,
            "predictions": predictions,
            "categories": categories,
            "stats": stats,
        }
    return results


def evaluate_model(spec: ModelSpec, causal_lm, rows, questions, index, config: CompareConfig) -> dict:
    from gpt2chat.engine import ChatEngine, EngineConfig
    from tqdm import tqdm

    label = spec.label
    if causal_lm.backbone.max_sequence_length < config.sequence_length:
        raise BadModel(f"{label}: context of {causal_lm.backbone.max_sequence_length} tokens is shorter than "
                       f"the perplexity rows ({config.sequence_length})")
    held_out_index = HeldOutIndex(index)
    engine = ChatEngine(causal_lm, held_out_index, EngineConfig(model=spec.spec, data=config.data))
    engine.warm_up()
    result = {
        "perplexity": perplexity(causal_lm, rows, progress=config.progress, label=label),
        "modes": answer_questions(engine, held_out_index, questions, config, label),
        "side_by_side": {},
    }
    for question in tqdm(config.questions, desc=f"{label}: general questions", disable=not config.progress):
        result["side_by_side"][question] = {
            mode: _reply(engine, question, grounded=mode == "grounded", max_new_tokens=config.max_new_tokens).answer
            for mode in ("ungrounded", "grounded")
        }
    return result


def _model_info(spec: ModelSpec, causal_lm, config: CompareConfig) -> dict:
    info = {"label": spec.label, "spec": spec.spec, "kind": spec.kind, "role": spec.role, "available": True,
            "parameters": int(causal_lm.backbone.count_params()),
            "context": int(causal_lm.backbone.max_sequence_length)}
    if spec.kind == "scratch":
        info["note"] = f"size {spec.size}, seed {config.seed}"
    if spec.kind == "run":
        run = Path(spec.spec)
        training = json.loads((run / "training_config.json").read_text())
        info["training"] = {k: training.get(k) for k in ("preset", "size", "steps", "batch_size", "sequence_length",
                                                         "lora_rank", "max_records")}
        if (run / "metrics.json").is_file():
            metrics = json.loads((run / "metrics.json").read_text())
            info["training"].update({k: metrics.get(k) for k in ("best_step", "best_val_perplexity", "tokens_seen")})
    return info


# ---------------------------------------------------------------------------------------------------- LLM judge

JUDGE_PROMPT = (
    "You grade answers of a small medical question-answering model against a reference answer from NIH. "
    "Score the model answer from 1 to 5: 5 = correct and covers the key facts of the reference; "
    "4 = correct but misses some key facts; 3 = partly correct or only loosely relevant; "
    "2 = mostly wrong or off-topic; 1 = wrong, unreadable or empty. Reply with the digit only."
)


def judge_endpoint(url: str) -> str:
    """Accept a base URL (``http://host:8000`` or ``…/v1``) or the full chat-completions endpoint."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def judge_score(question: str, reference: str, answer: str, config: CompareConfig, session) -> int | None:
    """One 1-5 score, or None when the reply holds no digit 1-5. Network and HTTP errors propagate."""
    content = (f"Question: {question}\n\nReference answer: {reference[:1500]}\n\n"
               f"Model answer: {answer or '(empty)'}\n\nScore (1-5):")
    response = session.post(
        judge_endpoint(config.judge_url),
        json={"model": config.judge_model, "temperature": 0, "max_tokens": 5,
              "messages": [{"role": "system", "content": JUDGE_PROMPT}, {"role": "user", "content": content}]},
        headers={"Authorization": f"Bearer {config.judge_key}"} if config.judge_key else {},
        timeout=60,
    )
    response.raise_for_status()
    match = re.search(r"[1-5]", response.json()["choices"][0]["message"]["content"])
    return int(match.group()) if match else None


def run_judge(results: dict, questions, config: CompareConfig) -> dict:
    """Scores for every model and mode; ``status`` is skipped (no URL), failed (with the error) or ok."""
    if not config.judge_url:
        return {"status": "skipped",
                "note": f"No judge configured (--judge-url or ${JUDGE_URL_ENV}); the LLM-as-judge section was skipped."}
    import requests
    from tqdm import tqdm

    scores: dict = {}
    with requests.Session() as session:
        try:
            for label, result in results.items():
                for mode in MODES:
                    predictions = result["modes"][mode]["predictions"]
                    scores.setdefault(label, {})[mode] = [
                        judge_score(r.question, r.answer, p, config, session)
                        for r, p in tqdm(list(zip(questions, predictions)), desc=f"judge {label}: {mode}",
                                         disable=not config.progress)
                    ]
        except (requests.RequestException, KeyError, IndexError, ValueError) as error:
            return {"status": "failed", "url": config.judge_url, "model": config.judge_model,
                    "note": f"The judge at {config.judge_url} could not be used ({type(error).__name__}: {error}); "
                            "no scores were recorded."}
    means = {label: {mode: _mean([s for s in values if s is not None]) for mode, values in modes.items()}
             for label, modes in scores.items()}
    unparsed = sum(s is None for modes in scores.values() for values in modes.values() for s in values)
    return {"status": "ok", "url": config.judge_url, "model": config.judge_model, "scores": scores,
            "means": means, "unparsed": unparsed}


def _mean(values) -> float | None:
    return float(np.mean(values)) if values else None


# ---------------------------------------------------------------------------------------------------- report


class Report:
    """A few block types rendered both to Markdown and to HTML (no Markdown library is installed)."""

    def __init__(self):
        self.blocks: list[tuple[str, tuple]] = []

    def heading(self, level: int, text: str):
        self.blocks.append(("heading", (level, text)))

    def paragraph(self, text: str):
        self.blocks.append(("paragraph", (text,)))

    def bullets(self, items: Sequence[str]):
        self.blocks.append(("bullets", (list(items),)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence]):
        self.blocks.append(("table", (list(headers), [[str(c) for c in row] for row in rows])))

    def image(self, path: Path, alt: str):
        self.blocks.append(("image", (path, alt)))

    def markdown(self) -> str:
        parts = []
        for kind, args in self.blocks:
            if kind == "heading":
                parts.append("#" * args[0] + " " + args[1])
            elif kind == "paragraph":
                parts.append(args[0])
            elif kind == "bullets":
                parts.append("\n".join(f"- {item}" for item in args[0]))
            elif kind == "table":
                headers, rows = args
                lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                parts.append("\n".join(lines))
            elif kind == "image":
                parts.append(f"![{args[1]}]({args[0].name})")
        return "\n\n".join(parts) + "\n"

    def html(self, title: str) -> str:
        parts = []
        for kind, args in self.blocks:
            if kind == "heading":
                parts.append(f"<h{args[0]}>{_inline(args[1])}</h{args[0]}>")
            elif kind == "paragraph":
                parts.append(f"<p>{_inline(args[0])}</p>")
            elif kind == "bullets":
                parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in args[0]) + "</ul>")
            elif kind == "table":
                headers, rows = args
                head = "".join(f"<th>{_inline(h)}</th>" for h in headers)
                body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif kind == "image":
                data = base64.b64encode(args[0].read_bytes()).decode()
                parts.append(f'<p><img alt="{html.escape(args[1])}" src="data:image/png;base64,{data}"></p>')
        style = ("body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;"
                 "line-height:1.45}table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;"
                 "padding:.3rem .5rem;vertical-align:top;text-align:left}th{background:#f3f3f3}"
                 "img{max-width:100%}code{background:#f3f3f3;padding:0 .2rem}")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
                f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _md_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _inline(text: str) -> str:
    """The inline Markdown this report writes (`code`, **bold**, _italics_) as HTML."""
    text = html.escape(" ".join(text.split()).replace("\\|", "|"))
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<!\w)_([^_]+)_(?!\w)", r"<em>\1</em>", text)


def plot(result: dict, out: Path) -> list[tuple[Path, str]]:
    """Bar charts of the answer metrics, perplexity and latency; returns (path, caption) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(result["results"])
    width = 0.8 / max(len(labels), 1)
    x = np.arange(len(MODES))
    figures = []

    figure, axes = plt.subplots(1, len(TEXT_METRICS), figsize=(3.2 * len(TEXT_METRICS), 3.6))
    for axis, metric in zip(axes, TEXT_METRICS):
        for i, label in enumerate(labels):
            values = [result["results"][label]["modes"][m]["metrics"][metric] for m in MODES]
            axis.bar(x + i * width, values, width, label=label)
        axis.set_title(METRIC_LABELS[metric])
        axis.set_xticks(x + width * (len(labels) - 1) / 2, ["none", "grounded", "gold out"], fontsize=8)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(labels), fontsize=8)
    figure.suptitle(f"Answer quality on {result['test_set']['questions']} test questions (higher is better)")
    figures.append((figure, out / "comparison_quality.png", "Answer quality by grounding mode"))

    figure, axis = plt.subplots(figsize=(5, 3.4))
    values = [result["results"][label]["perplexity"]["perplexity"] for label in labels]
    axis.bar(labels, values, color=[f"C{i}" for i in range(len(labels))])
    axis.set_yscale("log")
    axis.set_title("Test perplexity (log scale, lower is better)")
    axis.tick_params(axis="x", labelsize=7)
    figures.append((figure, out / "comparison_perplexity.png", "Test perplexity"))

    figure, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for axis, key, title in ((axes[0], "seconds_per_answer", "Seconds per answer (median)"),
                             (axes[1], "tokens_per_second", "Tokens per second (median)")):
        for i, label in enumerate(labels):
            values = [result["results"][label]["modes"][m]["latency"][key] for m in MODES]
            axis.bar(x + i * width, values, width, label=label)
        axis.set_title(title)
        axis.set_xticks(x + width * (len(labels) - 1) / 2, ["none", "grounded", "gold out"], fontsize=8)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(labels), fontsize=8)
    figures.append((figure, out / "comparison_latency.png", "Generation latency (CPU, greedy)"))

    written = []
    for figure, path, caption in figures:
        figure.tight_layout(rect=(0, 0.07, 1, 1))  # room for the legend below the axes
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written.append((path, caption))
    return written


def summary_rows(result: dict) -> list[dict]:
    """One row per model and grounding mode: the numbers of the report's main table (a DataFrame in notebooks)."""
    rows = []
    for label, r in result["results"].items():
        for mode in MODES:
            metrics, latency = r["modes"][mode]["metrics"], r["modes"][mode]["latency"]
            rows.append({"model": label, "grounding": MODE_LABELS[mode],
                         **{METRIC_LABELS[m]: metrics[m] for m in TEXT_METRICS}, "words": metrics["answer_words"],
                         "s/answer": latency["seconds_per_answer"], "tokens/s": latency["tokens_per_second"]})
    return rows


def _format(column: str, value) -> str:
    if isinstance(value, str):
        return value
    if column == "s/answer":
        return f"{value:.2f}"
    return f"{value:.0f}" if column in ("words", "tokens/s") else f"{value:.1f}"


def build_report(result: dict, images: list[tuple[Path, str]]) -> Report:
    report = Report()
    test = result["test_set"]
    report.heading(1, "Model comparison: generic vs specialised GPT-2 on MedQuAD")
    report.paragraph(f"Generated {result['created']}" + (f" by `{result['command']}`" if result["command"] else "")
                     + f" on {result['environment']}.")
    for note in result["notes"]:
        report.paragraph(f"**Note:** {note}")

    report.heading(2, "Models")
    report.table(["model", "role", "parameters", "details"], [
        [m["label"], m["role"], f"{m['parameters']:,}" if m.get("parameters") else "–", _model_details(m)]
        for m in result["models"]
    ])

    report.heading(2, "Test set")
    report.bullets([
        f"Held-out TEST split ({test['split_source']}): {test['test_pairs']} question-answer pairs about foci "
        "(diseases, drugs, topics) that no training example mentions.",
        f"Perplexity: {test['perplexity_rows']} seeded rows of {test['sequence_length']} tokens "
        f"({test['perplexity_tokens']:,} predicted tokens), packed test pairs in the training prompt format "
        "without a reference passage, teacher-forced.",
        f"Answers: greedy decoding, at most {test['max_new_tokens']} new tokens, through the chat engine "
        f"(masking, safety, post-processing), for {test['questions']} seeded test questions; scored against the "
        "full NIH answer: ROUGE-1/2/L F-measure (rouge_score, Porter stemmer), corpus BLEU (sacrebleu, 13a), "
        "SQuAD-style token F1 over lowercase words, all in percent.",
    ])
    report.paragraph(
        "**Grounding caveat:** the retrieval knowledge base holds every answered MedQuAD pair, test pairs "
        "included, so with grounding the reference passage given to the model is often the gold answer itself "
        f"(top passage = gold pair for {_percent(result['gold_passage_on_top'])} of the test questions). "
        "The _grounded_ rows therefore measure how well a model copies a relevant passage, not what it knows. "
        "The _gold pair excluded_ rows search again without the test pair (and without any pair with the same "
        "answer text), which is the fairer reading of grounded quality; other pairs about the same focus remain."
    )

    report.heading(2, "Results")
    report.heading(3, "Perplexity on the test split")
    report.table(["model", "perplexity", "loss (nats/token)"], [
        [label, f"{r['perplexity']['perplexity']:,.1f}", f"{r['perplexity']['loss']:.3f}"]
        for label, r in result["results"].items()
    ])
    report.heading(3, "Answers to test questions")
    rows = summary_rows(result)
    report.table(list(rows[0]), [[_format(column, value) for column, value in row.items()] for row in rows])
    report.paragraph(f"Reference answers average {test['reference_words']:.0f} words; answers are capped at "
                     f"{test['max_new_tokens']} tokens, which bounds recall-heavy scores, and BLEU's brevity "
                     "penalty brings answers much shorter than the reference close to 0 whatever they say. "
                     "Latency is the median over answers on this machine's CPU; it includes the first compilation "
                     "of each prompt-length bucket only in the few answers that hit it.")
    blocked = {label: sum(c == "emergency" or c == "invalid" for mode in MODES for c in r["modes"][mode]["categories"])
               for label, r in result["results"].items()}
    if any(blocked.values()):
        report.paragraph(f"Answers refused by the engine's safety or input checks (scored as empty): {blocked}.")
    for path, caption in images:
        report.image(path, caption)

    report.heading(2, "LLM-as-judge")
    judge = result["judge"]
    if judge["status"] == "ok":
        report.paragraph(f"`{judge['model']}` at {judge['url']} scored each answer 1–5 against the NIH reference "
                         f"(mean shown; {judge['unparsed']} replies without a score were left out).")
        report.table(["model", *(MODE_LABELS[m] for m in MODES)], [
            [label, *(f"{v:.2f}" if v is not None else "–" for v in (means[m] for m in MODES))]
            for label, means in judge["means"].items()
        ])
    else:
        report.paragraph(judge["note"])

    report.heading(2, "Side by side: general medical questions")
    report.paragraph("Greedy answers through the chat engine; _grounded_ adds the top retrieved NIH passage. "
                     f"Answers longer than {SIDE_BY_SIDE_CHARS} characters are cut here (in full in the JSON).")
    labels = list(result["results"])
    for question in result["general_questions"]:
        report.heading(3, question)
        report.table(["model", "without grounding", "with grounding"], [
            [label, *(_shorten(result["results"][label]["side_by_side"][question][mode]) for mode in
                      ("ungrounded", "grounded"))]
            for label in labels
        ])

    report.heading(2, "Files")
    report.paragraph("`comparison.json` holds every prediction, reference and per-answer timing behind these "
                     "tables; `comparison.html` is this report with the charts inlined. "
                     + result["pdf_note"])
    return report


def _shorten(answer: str) -> str:
    if not answer:
        return "–"
    return answer if len(answer) <= SIDE_BY_SIDE_CHARS else answer[:SIDE_BY_SIDE_CHARS].rsplit(" ", 1)[0] + " …"


def _model_details(model: dict) -> str:
    if not model["available"]:
        return f"**unavailable**: {model['error']}"
    details = [f"context {model['context']}"]
    if model.get("note"):
        details.append(model["note"])
    training = model.get("training")
    if training:
        source = (f"fine-tuned from {training['preset']}" if training["preset"]
                  else f"from scratch, size {training['size']}")
        details.append(f"{source}, {training['steps']} steps of {training['batch_size']}x{training['sequence_length']}")
        if training.get("best_val_perplexity"):
            details.append(f"best validation perplexity {training['best_val_perplexity']:.1f} "
                           f"at step {training['best_step']}")
    return "; ".join(details)


def _percent(value) -> str:
    return f"{100 * value:.0f}%" if value is not None else "n/a"


def write_outputs(result: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    images = plot(result, out)
    report = build_report(result, images)
    paths = {"markdown": out / "comparison.md", "json": out / "comparison.json", "html": out / "comparison.html"}
    paths["markdown"].write_text(report.markdown(), encoding="utf-8")
    paths["html"].write_text(report.html("GPT-2 model comparison on MedQuAD"), encoding="utf-8")
    paths["json"].write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    for path, _ in images:
        paths[path.stem] = path
    return paths


# ---------------------------------------------------------------------------------------------------- run


def _environment() -> str:
    import keras

    return f"{os.cpu_count()} CPU cores, Keras {keras.__version__} ({keras.config.backend()} backend)"


def run(config: CompareConfig) -> dict:
    """Evaluate every model, write the report files to ``config.out`` and return the JSON payload."""
    from gpt2chat.data import load_records
    from gpt2chat.model import ModelUnavailable
    from gpt2chat.retrieval import get_index

    specs = [parse_model(m) for m in config.models]  # BadModel before any slow work
    if not specs:
        raise BadModel("give at least one --model")
    specialised = next((s for s in specs if s.kind == "run"), None)
    records, _ = load_records(config.data, progress=config.progress)
    test_records, split_source = held_out_test_pairs(records, specialised)
    if not test_records:
        raise ValueError("the test split is empty")
    rng = np.random.default_rng(config.seed)
    questions = [test_records[i] for i in np.sort(rng.permutation(len(test_records))[: config.limit])]
    rows = perplexity_rows(test_records, config)
    index = get_index(config.data)

    models, results, notes = [], {}, []
    pending = list(specs)
    while pending:
        spec = pending.pop(0)
        try:
            causal_lm = load_model(spec, config.seed)
        except ModelUnavailable as error:
            if spec.kind != "preset":
                raise BadModel(str(error)) from error
            models.append({"label": spec.label, "spec": spec.spec, "kind": spec.kind, "role": spec.role,
                           "available": False, "error": str(error)})
            notes.append(f"`{spec.spec}` is not part of this comparison: {error}. Run the command again with "
                         "network access to include it.")
            baseline_size = run_size(specialised.spec) if specialised else None
            if baseline_size and not any(s.kind == "scratch" for s in specs + pending):
                baseline = parse_model(f"{SCRATCH_PREFIX}{baseline_size}")
                pending.append(baseline)
                notes.append(f"`{baseline.spec}` (an untrained model of the specialised model's size) was added "
                             "as the baseline instead.")
            continue
        models.append(_model_info(spec, causal_lm, config))
        results[spec.label] = evaluate_model(spec, causal_lm, rows, questions, index, config)
        del causal_lm
        gc.collect()
    if not results:
        raise BadModel("none of the models could be loaded: " + "; ".join(m["error"] for m in models))

    grounded_tops = [r["modes"]["grounded"]["gold_passage_on_top"] for r in results.values()]
    result = {
        "created": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": config.command,
        "environment": _environment(),
        "notes": notes,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("judge_key", "command")},
        "models": models,
        "test_set": {
            "split_source": split_source, "test_pairs": len(test_records), "questions": len(questions),
            "perplexity_rows": int(len(rows)), "sequence_length": config.sequence_length,
            "perplexity_tokens": int(rows.shape[0] * (rows.shape[1] - 1)), "max_new_tokens": config.max_new_tokens,
            "reference_words": float(np.mean([len(r.answer.split()) for r in questions])),
        },
        "gold_passage_on_top": float(np.mean(grounded_tops)),
        "pair_ids": [r.pair_id for r in questions],
        "questions": [r.question for r in questions],
        "references": [r.answer for r in questions],
        "general_questions": list(config.questions),
        "results": results,
        "judge": run_judge(results, questions, config),
        "pdf_note": "No PDF was written: no maintained HTML-to-PDF library is installed (print the HTML to PDF "
                    "from a browser if one is needed).",
    }
    write_outputs(result, Path(config.out))
    return result


def read_questions(path: str) -> list[str]:
    """One question a line; blank lines and lines starting with # are skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    questions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not questions:
        raise ValueError(f"{path} holds no question")
    return questions


def parse_args(argv: list[str] | None) -> CompareConfig:
    defaults = CompareConfig()
    parser = argparse.ArgumentParser(
        prog="python -m gpt2chat.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", dest="models", metavar="NAME_OR_DIR",
                        help="preset name, preset directory or scratch:SIZE; repeat to compare several "
                             f"(default: {settings.ONLINE_PRESET} and {settings.DEFAULT_MODEL_DIR.name} run)")
    parser.add_argument("--data", help=f"MedQuAD directory (default: ${settings.MEDQUAD_ENV} or ../shared/medquad)")
    parser.add_argument("--out", default=defaults.out, help="output directory (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=defaults.limit,
                        help="test questions answered per model and grounding mode (default: %(default)s)")
    parser.add_argument("--questions", help="file of general questions for the side-by-side section, one a line")
    parser.add_argument("--perplexity-rows", type=int, default=defaults.perplexity_rows,
                        help="packed test rows for perplexity (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                        help="answer budget in tokens (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="(default: %(default)s)")
    parser.add_argument("--judge-url", default=os.environ.get(JUDGE_URL_ENV),
                        help=f"OpenAI-compatible endpoint for LLM-as-judge scores (default: ${JUDGE_URL_ENV})")
    parser.add_argument("--judge-model", default=os.environ.get(JUDGE_MODEL_ENV, defaults.judge_model),
                        help=f"model name sent to the judge (default: ${JUDGE_MODEL_ENV} or %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for name in ("limit", "perplexity_rows", "max_new_tokens"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return CompareConfig(
        models=args.models or defaults.models, data=args.data, out=args.out, limit=args.limit,
        questions=read_questions(args.questions) if args.questions else defaults.questions,
        perplexity_rows=args.perplexity_rows, max_new_tokens=args.max_new_tokens, seed=args.seed,
        judge_url=args.judge_url, judge_model=args.judge_model, judge_key=os.environ.get(JUDGE_KEY_ENV),
        progress=not args.no_progress,
        command=shlex.join(["python", "-m", "gpt2chat.compare", *(sys.argv[1:] if argv is None else argv)]),
    )


def main(argv: list[str] | None = None) -> int:
    from gpt2chat.data import MedQuADNotFound

    try:
        config = parse_args(argv)
        for spec in config.models:
            parse_model(spec)  # a bad path fails here, before TensorFlow is imported
        started = time.perf_counter()
        result = run(config)
    except (BadModel, MedQuADNotFound, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(config.out)
    print(f"wrote {out / 'comparison.md'}, .json, .html and charts in {time.perf_counter() - started:.0f} s")
    for label, r in result["results"].items():
        metrics = r["modes"]["ungrounded"]["metrics"]
        print(f"{label}: perplexity {r['perplexity']['perplexity']:.1f}, ungrounded ROUGE-L {metrics['rougeL']:.1f}, "
              f"BLEU {metrics['bleu']:.1f}, token F1 {metrics['token_f1']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
