"""Compare GPT-2 models on held-out MedQuAD questions: generic models, specialised ones, untrained baselines.

    python -m gpt2chat.compare          # every model built here (below) + gpt2_base_en when it can be downloaded
    python -m gpt2chat.compare --model models/default --model scratch:small --limit 30
    python -m gpt2chat.compare ... --judge-url http://localhost:8000 --judge-model NAME   (optional LLM judge)

``--model`` takes a Keras-Hub preset name, a preset directory (a training run of ``gpt2chat.modeling.train``), or
``scratch:SIZE``: a randomly initialised (seeded) GPT-2 of that size, the "same size, untrained" baseline.
A preset that cannot be downloaded is reported as unavailable and the comparison goes on without it, with an
untrained baseline of the specialised model's size added so that there is still something to compare against.

Without ``--model`` it compares, side by side: ``gpt2_base_en`` and its MedQuAD fine-tune (models/gpt2-medquad)
when they can be had, the generic model trained offline on general English (models/generic, ``python -m
gpt2chat.train --recipe generic``), that model fine-tuned on MedQuAD (models/from-generic, ``--recipe
from-generic``), the quick-start model trained on MedQuAD from scratch (models/default), an untrained model of its
size and the extract. A default model directory that has not been built is left out with a note naming its command.

Every model is measured on the held-out TEST split (the specialised run's split.json when there is one):

* perplexity, teacher-forced, on a fixed seeded sample of packed test rows in the shared prompt format, and the
  loss per answer token of grounded test examples (the passage in the prompt, as the model was trained);
* perplexity on two kinds of plain text, every token counted: MedQuAD test answers, and held-out general English
  (the test split of ``gpt2chat.corpus.generic``, which no model here trained on);
* the answers users are shown (``gpt2chat.reports.answer_quality``: whole test pages with and without the gold
  section, LiveQA messages through the full pipeline), each model in the served pipeline against the extract;
* greedy answers through the chat engine to ``--limit`` test questions, without grounding, grounded, grounded
  with the gold pair removed from retrieval, and grounded without the copy constraint: ROUGE-1/2/L (F-measure),
  BLEU, token F1, answer length, seconds per answer and tokens per second, of the answer shown and of the model's
  own text; the cited passage's lead cut to each shown answer's length, scored the same way; which passage
  sentences the model copied (its lead, or others);
* grounding (``gpt2chat.chat.grounding``): support rate (share of the model's sentences the cited passage supports),
  fallback rate (share of replies where the engine replaced the model's text by an extract of the passage) and
  degenerate rate (empty, under 5 words, repeated 4-grams, word salad), for the model's text and what is shown;
* the same scores for two answers without a model: lead-3 (the top passage's first sentences) and the
  question-focused extract of the top passage;
* side-by-side answers to a few general medical questions, with and without grounding, as a reader sees them;
* optionally scores 1-5 from an LLM judge behind any OpenAI-compatible ``/v1/chat/completions`` endpoint
  (``--judge-url`` or $GPT2CHAT_JUDGE_URL, key in $GPT2CHAT_JUDGE_KEY).

It writes ``comparison.md``, ``comparison.json`` (with every prediction and reference, so each number can be
recomputed), a self-contained ``comparison.html`` and PNG bar charts to ``--out``.

This module loads the models and runs the comparison; answering and scoring one model or baseline is
``gpt2chat.reports.evaluation``, the scores ``gpt2chat.reports.metrics``, the judge ``gpt2chat.reports.judge``
and the report files ``gpt2chat.reports.report``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from gpt2chat import settings
from gpt2chat.modeling import rundir
from gpt2chat.reports.evaluation import (BASELINES, EXTRACT_BASELINE, GROUNDING_MODES, HeldOutIndex,
                                         answer_questions, as_read, baseline_answers, greedy_reply, model_perplexity)
from gpt2chat.reports import answer_quality
from gpt2chat.reports.judge import JudgeConfig, run_judge
from gpt2chat.modeling.model import SIZES
from gpt2chat.reports.report import percent, write_comparison

SCRATCH_PREFIX = "scratch:"

# General questions answered side by side; none is in MedQuAD verbatim, all are everyday consumer questions.
GENERAL_QUESTIONS = (
    "What are the symptoms of type 2 diabetes?",
    "How is high blood pressure treated?",
    "What causes asthma?",
    "Who is at risk for osteoporosis?",
    "How can I prevent the flu?",
    "What is glaucoma?",
)


# The models compared when none is named, and the command that builds each local one.
DEFAULT_RUNS = {
    "models/gpt2-medquad": f"python -m gpt2chat.train --recipe finetune-base --output models/gpt2-medquad "
                           f"(needs network for {settings.ONLINE_PRESET})",
    "models/generic": "python -m gpt2chat.train --recipe generic",
    "models/from-generic": "python -m gpt2chat.train --recipe from-generic",
    "models/default": "python -m gpt2chat.train",
}


@dataclasses.dataclass
class CompareConfig:
    models: list[str] | None = None  # None: the defaults (``default_models``)
    data: str | None = None  # MedQuAD directory; None = settings.medquad_dir()
    out: str = str(settings.LIVRABLES_DIR)
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

    def judge(self) -> JudgeConfig:
        return JudgeConfig(url=self.judge_url, model=self.judge_model, key=self.judge_key, progress=self.progress)


# ---------------------------------------------------------------------------------------------------- models


class BadModel(ValueError):
    """A --model argument that can never load (missing directory, unknown size): the command stops."""


@dataclasses.dataclass
class ModelSpec:
    spec: str
    kind: str  # preset (a name to download) | run (a directory from gpt2chat.modeling.train) | directory | scratch
    size: str | None = None  # for scratch

    @property
    def label(self) -> str:
        path = Path(self.spec)
        if self.kind in ("run", "directory") and path.resolve().is_relative_to(settings.HOME):
            return str(path.resolve().relative_to(settings.HOME))
        return self.spec

    @property
    def training(self) -> dict:
        """The run's training settings ({} for anything but a run)."""
        return (rundir.RunDirectory(self.spec).training_config() or {}) if self.kind == "run" else {}

    @property
    def is_generic(self) -> bool:
        """Trained on general English only (``--recipe generic``), or a pretrained preset."""
        return self.kind == "preset" or self.training.get("corpus") == "generic"

    @property
    def family(self) -> str:
        """generic, generic→specialised, specialised (from scratch), untrained or other (``report.FAMILIES``)."""
        if self.kind == "scratch":
            return "untrained"
        if self.is_generic:
            return "generic"
        if self.kind != "run":
            return "other"
        return "generic→specialised" if self.training.get("preset") else "specialised"

    @property
    def role(self) -> str:
        if self.kind == "run":
            if self.is_generic:
                return "generic (general English, no MedQuAD)"
            start = self.training.get("preset")
            if not start:
                return "specialised from scratch (MedQuAD only)"
            name = Path(start).name if Path(start).exists() else start  # a local run, or a preset's name
            return f"generic → specialised ({name} fine-tuned on MedQuAD)"
        return {
            "preset": "generic pretrained preset",
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
        if not rundir.is_preset_dir(path):
            raise BadModel(f"{spec} is not a Keras-Hub preset directory")
        return ModelSpec(spec, "run" if rundir.is_run_dir(path) else "directory")
    if "://" not in spec and (os.sep in spec or spec.startswith((".", "~"))):
        raise BadModel(f"{spec}: no such model directory")
    return ModelSpec(spec, "preset")  # a preset name or handle: only loading it tells whether it is available


def default_models() -> tuple[list[str], list[str]]:
    """(the models compared when none is named, notes on the default ones that are not built yet)."""
    models, notes = [settings.ONLINE_PRESET], []
    for relative, command in DEFAULT_RUNS.items():
        path = settings.HOME / relative
        if rundir.is_run_dir(path):
            models.append(str(path))
        elif relative != "models/gpt2-medquad":  # the online fine-tune is optional offline
            notes.append(f"`{relative}` is not part of this comparison: it is not built yet (`{command}`).")
    specialised = next((m for m in models[1:] if not ModelSpec(m, "run").is_generic), None)
    size = rundir.RunDirectory(specialised).model_size() if specialised else None
    if size:
        models.append(f"{SCRATCH_PREFIX}{size}")
    return models, notes


def load_model(spec: ModelSpec, seed: int):
    from gpt2chat.modeling.model import build_causal_lm, load_preset

    if spec.kind == "scratch":
        import keras

        keras.utils.set_random_seed(seed)  # the same untrained weights on every run
        return build_causal_lm(spec.size, SIZES[spec.size].max_sequence_length)
    return load_preset(spec.spec)


# ---------------------------------------------------------------------------------------------------- evaluation


def held_out_split(records, specialised: ModelSpec | None):
    """The train/validation/test split, from the specialised run's saved split when it has one, and where it came
    from."""
    from gpt2chat.corpus.splits import split_records

    run = rundir.RunDirectory(specialised.spec) if specialised else None
    if run is not None and run.split.is_file():
        return run.splits(records), f"{specialised.label}/{run.split.name}"
    return split_records(records), "gpt2chat.corpus.splits.split_records (no split.json)"


def text_rows(texts, tokenizer, config: CompareConfig) -> np.ndarray:
    """A fixed seeded sample of plain ``texts`` packed end to end (every token counts), the same for every model."""
    from gpt2chat.modeling.tokens import pack

    return _seeded_sample(pack(list(texts), tokenizer, config.sequence_length), config).rows


def domain_rows(test_records, tokenizer, config: CompareConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    """The two plain-text perplexity sets, MedQuAD test answers and held-out general English (``corpus.generic``'s
    test split), and a note when the general text is not installed."""
    from gpt2chat.corpus.generic import GenericCorpusNotFound, read_texts

    rows = {"medquad": text_rows([r.answer + "\n" for r in test_records], tokenizer, config)}
    try:
        rows["general"] = text_rows([t + "\n" for t in read_texts("test")], tokenizer, config)
    except GenericCorpusNotFound as error:
        return rows, [f"No perplexity on general text: {error}."]
    return rows, []


def perplexity_rows(test_records, tokenizer, config: CompareConfig) -> np.ndarray:
    """A fixed seeded sample of packed test rows (ungrounded prompt format), the same for every model."""
    from gpt2chat.modeling.prompt import training_example
    from gpt2chat.modeling.tokens import pack

    packed = pack([training_example(r.question, r.answer) for r in test_records], tokenizer,
                  config.sequence_length)
    return _seeded_sample(packed, config).rows


def _seeded_sample(packed, config: CompareConfig):
    """``config.perplexity_rows`` rows of ``packed`` (a ``tokens.PackedTokens``) drawn with ``config.seed``, in
    order: the same rows for every model."""
    chosen = np.random.default_rng(config.seed).permutation(len(packed.rows))[: config.perplexity_rows]
    return packed.select(np.sort(chosen))


def answer_rows(test_records, index, specialised: ModelSpec | None, tokenizer, config: CompareConfig):
    """A fixed seeded sample of packed grounded test examples (``tokens.PackedTokens``, weights on the answer
    tokens): each question with its gold passage as the reference when retrieval finds it, the target cut as the
    specialised run's recipe cuts it (the quick-start recipe's 3 sentences / 96 tokens without a run)."""
    from gpt2chat.modeling.tokens import Grounding, grounded_examples, pack_examples, tokenize_examples

    training = (rundir.RunDirectory(specialised.spec).training_config() if specialised else None) or {}
    grounding = Grounding(grounded_fraction=1.0, sibling_fraction=0.0,
                          answer_sentences=training.get("answer_sentences") or 3,
                          answer_tokens=training.get("answer_tokens") or 96)
    examples = grounded_examples(test_records, index, grounding, seed=config.seed)
    packed = pack_examples(tokenize_examples(examples, tokenizer, grounding.answer_tokens),
                           config.sequence_length)
    return _seeded_sample(packed, config)


def evaluate_model(spec: ModelSpec, causal_lm, rows, grounded_rows, questions, index, vocabulary,
                   config: CompareConfig, domains: dict | None = None, shown=None) -> dict:
    """Perplexity, answer-token loss with the passage (``grounded_rows``), answers to the test questions in every
    grounding mode, and the side-by-side answers: the model writes (``answer_mode="generate"``) and is not gated
    (``ChatEngine.serve_ungated``), so every model's supported sentences are shown. How the served answers compare
    is ``gpt2chat.reports.answer_quality``'s report, whose measures of the shown answers are taken here too when
    ``shown`` is a ``ShownAnswers``; ``domains`` are the plain-text perplexity rows of ``domain_rows``."""
    from tqdm import tqdm

    from gpt2chat.chat.engine import ChatEngine, EngineConfig

    label = spec.label
    if causal_lm.backbone.max_sequence_length < config.sequence_length:
        raise BadModel(f"{label}: context of {causal_lm.backbone.max_sequence_length} tokens is shorter than "
                       f"the perplexity rows ({config.sequence_length})")
    held_out_index = HeldOutIndex(index)
    engine = ChatEngine.build(EngineConfig(model=spec.spec, data=config.data, answer_mode="generate"),
                              causal_lm=causal_lm, index=held_out_index)
    engine.serve_ungated()
    engine.warm_up()
    result = {
        "perplexity": model_perplexity(causal_lm, rows, progress=config.progress, label=label),
        "answer_loss": model_perplexity(causal_lm, grounded_rows.rows, grounded_rows.weights,
                                        progress=config.progress, label=f"{label} answer tokens"),
        "modes": answer_questions(engine, held_out_index, questions, vocabulary=vocabulary,
                                  max_new_tokens=config.max_new_tokens, progress=config.progress, label=label),
        "side_by_side": {},
        "domain_perplexity": {name: model_perplexity(causal_lm, domain, progress=config.progress,
                                                     label=f"{label} {name} text")
                              for name, domain in (domains or {}).items()},
    }
    if shown is not None:
        result["shown"] = shown.score(causal_lm, label)
    for question in tqdm(config.questions, desc=f"{label}: general questions", disable=not config.progress):
        result["side_by_side"][question] = {
            mode: as_read(greedy_reply(engine, question, grounded=mode == "grounded",
                                       max_new_tokens=config.max_new_tokens))
            for mode in ("ungrounded", "grounded")
        }
    return result


def _model_info(spec: ModelSpec, causal_lm, config: CompareConfig) -> dict:
    info = {"label": spec.label, "spec": spec.spec, "kind": spec.kind, "role": spec.role, "available": True,
            "parameters": int(causal_lm.backbone.count_params()),
            "context": int(causal_lm.backbone.max_sequence_length)}
    info["family"] = spec.family
    if spec.kind == "scratch":
        info["note"] = f"size {spec.size}, seed {config.seed}"
    if spec.kind == "run":
        run = rundir.RunDirectory(spec.spec)
        training = run.training_config() or {}
        info["training"] = {k: training.get(k) for k in ("corpus", "preset", "size", "steps", "batch_size", "sequence_length",
                                                         "lora_rank", "max_records")}
        metrics = run.read_metrics()
        if metrics:
            info["training"].update({k: metrics.get(k) for k in ("best_step", "best_val_perplexity", "tokens_seen")})
    return info


@dataclasses.dataclass
class ShownAnswers:
    """What users are shown, measured as ``gpt2chat.reports.answer_quality`` measures it (its cases, its scores),
    for each model in the served pipeline and for the extract, on ``limit`` cases of each set."""

    engine: object  # a ChatEngine without a model: each model is passed to answer_quality.score
    cases: dict

    @classmethod
    def build(cls, records, index, config: CompareConfig) -> "ShownAnswers":
        from gpt2chat.chat.engine import ChatEngine, EngineConfig

        cases = answer_quality.medquad_cases(records, config.limit, seed=config.seed)
        liveqa = settings.medquad_dir(config.data).parent / "consumer_qa" / answer_quality.LIVEQA_FILE
        if liveqa.is_file():
            cases["c"] = answer_quality.liveqa_cases(liveqa)[: config.limit]
        return cls(ChatEngine.build(EngineConfig(model=None, data=config.data), index=index), cases)

    def score(self, causal_lm, label: str) -> dict:
        from gpt2chat.chat.engine import AnswerModel

        model = None
        if causal_lm is not None:
            model = AnswerModel.of(causal_lm, self.engine.config)
            model.warm_up()
        return {name: answer_quality.score(self.engine, cases, model, label=f"{label}: {name}")
                for name, cases in self.cases.items()}

    def labels(self) -> dict[str, str]:
        return {name: f"{answer_quality.CASE_LABELS[name]} ({len(cases)})" for name, cases in self.cases.items()}


# ---------------------------------------------------------------------------------------------------- run


def _environment() -> str:
    import keras

    return f"{os.cpu_count()} CPU cores, Keras {keras.__version__} ({keras.config.backend()} backend)"


def run(config: CompareConfig) -> dict:
    """Evaluate every model, write the report files to ``config.out`` and return the JSON payload."""
    from gpt2chat.corpus.data import load_records
    from gpt2chat.chat.grounding import Vocabulary
    from gpt2chat.modeling.model import ModelUnavailable
    from gpt2chat.modeling.tokenizer import gpt2_tokenizer
    from gpt2chat.search.retrieval import RetrievalIndex

    notes = []
    if config.models is None:
        names, notes = default_models()
        specs = [parse_model(m) for m in names]
    else:
        specs = [parse_model(m) for m in config.models]  # BadModel before any slow work
    if not specs:
        raise BadModel("give at least one --model")
    specialised = next((s for s in specs if s.kind == "run" and not s.is_generic), None)
    records, _ = load_records(config.data, progress=config.progress)
    splits, split_source = held_out_split(records, specialised)
    test_records = splits["test"]
    if not test_records:
        raise ValueError("the test split is empty")
    rng = np.random.default_rng(config.seed)
    questions = [test_records[i] for i in np.sort(rng.permutation(len(test_records))[: config.limit])]
    # OpenAI's GPT-2 tokenizer, built once here for every row set below: the rows are the same for every model.
    tokenizer = gpt2_tokenizer()
    rows = perplexity_rows(test_records, tokenizer, config)
    index = RetrievalIndex.load_or_build(config.data)
    grounded_rows = answer_rows(test_records, index, specialised, tokenizer, config)
    # The word-salad test compares answers with the words and word pairs of every NIH answer the chatbot can
    # quote: with the training answers only, correct copies naming a rare test-split gene ("MAN2B1") were
    # flagged as degenerate (4 of the quick-start model's 90 grounded model texts in the comparison of c423107).
    vocabulary = Vocabulary.from_texts(r.answer for r in records)
    domains, domain_notes = domain_rows(test_records, tokenizer, config)
    notes += domain_notes
    shown = ShownAnswers.build(records, index, config)

    models, results = [], {}
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
            baseline_size = rundir.RunDirectory(specialised.spec).model_size() if specialised else None
            if baseline_size and not any(s.kind == "scratch" for s in specs + pending):
                baseline = parse_model(f"{SCRATCH_PREFIX}{baseline_size}")
                pending.append(baseline)
                notes.append(f"`{baseline.spec}` (an untrained model of the specialised model's size) was added "
                             "as the baseline instead.")
            continue
        models.append(_model_info(spec, causal_lm, config))
        results[spec.label] = evaluate_model(spec, causal_lm, rows, grounded_rows, questions, index, vocabulary,
                                             config, domains, shown)
        del causal_lm
        gc.collect()
    if not results:
        raise BadModel("none of the models could be loaded: " + "; ".join(m["error"] for m in models))
    grounded_tops = [r["modes"]["grounded"]["gold_passage_on_top"] for r in results.values()]
    results.update(baseline_answers(HeldOutIndex(index), questions, vocabulary=vocabulary, progress=config.progress))
    results[EXTRACT_BASELINE]["shown"] = shown.score(None, EXTRACT_BASELINE)
    models += [{"label": label, "spec": label, "kind": "baseline", "role": "baseline without a model",
                "available": True, "note": description} for label, description in BASELINES.items()]

    result = {
        "created": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": config.command,
        "environment": _environment(),
        "notes": notes,
        "grounding_modes": GROUNDING_MODES,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in ("judge_key", "command")},
        "models": models,
        "test_set": {
            "split_source": split_source, "test_pairs": len(test_records), "questions": len(questions),
            "perplexity_rows": int(len(rows)), "sequence_length": config.sequence_length,
            "perplexity_tokens": int(rows.shape[0] * (rows.shape[1] - 1)), "max_new_tokens": config.max_new_tokens,
            "answer_rows": int(len(grounded_rows.rows)), "answer_tokens": grounded_rows.num_answer_tokens,
            "reference_words": float(np.mean([len(r.answer.split()) for r in questions])),
        },
        "gold_passage_on_top": float(np.mean(grounded_tops)),
        "pair_ids": [r.pair_id for r in questions],
        "questions": [r.question for r in questions],
        "references": [r.answer for r in questions],
        "general_questions": list(config.questions),
        "shown_sets": shown.labels(),
        "domain_rows": {name: int(len(domain)) for name, domain in domains.items()},
        "results": results,
        "judge": run_judge(results, questions, config.judge()),
        "pdf_note": "No PDF was written: no maintained HTML-to-PDF library is installed (print the HTML to PDF "
                    "from a browser if one is needed).",
    }
    write_comparison(result, Path(config.out))
    return result


def read_questions(path: str) -> list[str]:
    """One question a line; blank lines and lines starting with # are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the questions file {path}: {error}") from error
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
                             f"(default: {settings.ONLINE_PRESET} and every built run of "
                             f"{', '.join(DEFAULT_RUNS)}, plus an untrained model of the quick-start size)")
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
    judge = settings.judge_settings()
    parser.add_argument("--judge-url", default=judge.url, help="OpenAI-compatible endpoint for LLM-as-judge scores "
                                                               f"(default: ${settings.JUDGE_URL_ENV})")
    parser.add_argument("--judge-model", default=judge.model or defaults.judge_model,
                        help=f"model name sent to the judge (default: ${settings.JUDGE_MODEL_ENV} or %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for name in ("limit", "perplexity_rows", "max_new_tokens"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return CompareConfig(
        models=args.models, data=args.data, out=args.out, limit=args.limit,
        questions=read_questions(args.questions) if args.questions else defaults.questions,
        perplexity_rows=args.perplexity_rows, max_new_tokens=args.max_new_tokens, seed=args.seed,
        judge_url=args.judge_url, judge_model=args.judge_model, judge_key=judge.key,
        progress=not args.no_progress,
        command=shlex.join(["python", "-m", "gpt2chat.compare", *(sys.argv[1:] if argv is None else argv)]),
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    for spec in config.models or ():
        parse_model(spec)  # a bad path fails here, before TensorFlow is imported
    started = time.perf_counter()
    result = run(config)
    out = Path(config.out)
    print(f"wrote {out / 'comparison.md'}, .json, .html and charts in {time.perf_counter() - started:.0f} s")
    for label, r in result["results"].items():
        grounded = r["modes"]["grounded_heldout"]
        perplexity = f"perplexity {r['perplexity']['perplexity']:.1f}, " if r.get("perplexity") else ""
        print(f"{label}: {perplexity}gold pair excluded: ROUGE-L {grounded['metrics']['rougeL']:.1f}, "
              f"token F1 {grounded['metrics']['token_f1']:.1f}, "
              f"support {percent(grounded['grounding']['support_rate'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
