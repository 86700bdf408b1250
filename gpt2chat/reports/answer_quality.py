"""Does the GPT-2 earn its place? The answers users would be shown, with the trained model, with an untrained model of
the same layout in the same pipeline, and with no model (the question-focused extract), side by side on:

  (a) MedQuAD test questions answered from their focus's whole page, the gold section in it;
  (b) the same page with the gold section (and any section with the same text) held out;
  (c) LiveQA 2017 ``dev`` messages (real messages to NLM; evaluation only) through the full pipeline, retrieval
      included, against their reference answers (the best-matching one per message).

Each answer is scored against the reference by ROUGE-2 and ROUGE-L F (percent, Porter stemmer), with its length in
words beside it, the share of questions whose shown text is the model's own, the share of the model's sentences the
support check kept, and the degenerate answers shown. MedQuAD cases are pages of at least two sections (so that (b)
has a page), test split only, seeded.

    python -m gpt2chat.answer_quality --model models/default [--limit 200] [--calibrate]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from gpt2chat import settings

LIVEQA_FILE = "liveqa2017_train.jsonl"
UNTRAINED, EXTRACT = "untrained model", "extract (no model)"


@dataclasses.dataclass(frozen=True)
class Case:
    question: str
    references: tuple[str, ...]
    pages: list | None = None  # lists of passages; None: retrieve (the full pipeline)


def _passage(record):
    from gpt2chat.search.retrieval import Passage

    return Passage(record.pair_id, record.question, record.answer, record.focus, record.source, record.url, 0.0,
                   record.question_type)


def medquad_cases(records, limit: int, seed: int = 0, split: str = "test") -> dict[str, list[Case]]:
    """(a) and (b) for ``limit`` seeded questions of ``split`` whose page has another section."""
    from gpt2chat.corpus.splits import split_records
    from gpt2chat.modeling.selection import page_sections

    test = split_records(records)[split]
    pages = page_sections(test)
    usable = [r for r in test if len(pages[r.pair_id.rsplit("-", 1)[0]]) > 1]
    chosen = [usable[i] for i in sorted(np.random.default_rng(seed).permutation(len(usable))[:limit])]
    with_gold, held_out = [], []
    for record in chosen:
        sections = pages[record.pair_id.rsplit("-", 1)[0]]
        others = [s for s in sections if s.pair_id != record.pair_id and s.answer != record.answer]
        with_gold.append(Case(record.question, (record.answer,), [[_passage(s) for s in sections]]))
        if others:
            held_out.append(Case(record.question, (record.answer,), [[_passage(s) for s in others]]))
    return {"a": with_gold, "b": held_out}


def liveqa_cases(path: Path, split: str = "dev") -> list[Case]:
    """(c): each message of ``split`` as it was sent (subject line first), against its reference answers."""
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["set"] != split:
            continue
        references = tuple(a for q in row["subquestions"] for a in q["answers"] if a.strip())
        message = " ".join(part for part in (row.get("subject", ""), row["message"]) if part.strip())
        if references:
            cases.append(Case(message, references))
    return cases


def _best_rouge(prediction: str, references) -> tuple[float, float]:
    from gpt2chat.chat.gate import rouge

    r2, rl = rouge([prediction] * len(references), list(references))
    best = int(np.argmax(r2))
    return float(r2[best]), float(rl[best])


def answer(engine, case: Case, model):
    """The finished reply ``model`` (None: the extract) gives ``case`` in the engine's pipeline."""
    if case.pages is not None:
        return engine.answer_from_pages(case.question, case.pages, model)
    with engine.serving(model):
        return engine.reply(case.question)


def score(engine, cases: list[Case], model, vocabulary=None, label: str = "") -> dict:
    from tqdm import tqdm

    from gpt2chat.chat.grounding import is_degenerate
    from gpt2chat.chat.kinds import AnswerKind, Category

    rows, seconds = [], []
    for case in tqdm(cases, desc=label, leave=False):
        started = time.perf_counter()
        reply = answer(engine, case, model)
        seconds.append(time.perf_counter() - started)
        answered = reply.answer_kind != AnswerKind.NONE and reply.category in (Category.ANSWER, Category.BOUNDARY)
        r2, rl = _best_rouge(reply.answer, case.references) if answered else (0.0, 0.0)
        rows.append({"answered": answered, "rouge2": r2, "rougeL": rl, "words": len(reply.answer.split()),
                     "model_shown": reply.answer_kind == AnswerKind.MODEL, "support": reply.support_rate,
                     "degenerate": answered and bool(is_degenerate(reply.answer, vocabulary)),
                     "answer": reply.answer})
    answered = [r for r in rows if r["answered"]]
    supports = [r["support"] for r in answered if r["support"] is not None]
    return {
        "questions": len(rows), "answered": len(answered),
        "rouge2": float(np.mean([r["rouge2"] for r in rows])) if rows else 0.0,
        "rougeL": float(np.mean([r["rougeL"] for r in rows])) if rows else 0.0,
        "words": float(np.mean([r["words"] for r in answered])) if answered else 0.0,
        "model_shown": float(np.mean([r["model_shown"] for r in answered])) if answered else 0.0,
        "support": float(np.mean(supports)) if supports else None,
        "degenerate_shown": int(sum(r["degenerate"] for r in answered)),
        "seconds_p95": float(np.percentile(seconds, 95)) if seconds else 0.0,
        "answers": [r["answer"] for r in rows],
    }


def untrained_like(causal_lm, seed: int = 0):
    """A GPT-2 of the same layout and tokenizer with fresh random weights."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.GPT2Backbone.from_config(causal_lm.backbone.get_config())
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=causal_lm.preprocessor)


CASE_LABELS = {
    "a": "MedQuAD test, whole page with the gold section",
    "b": "MedQuAD test, gold section held out",
    "c": "LiveQA dev messages, full pipeline",
}


def run(model_dir: str, limit: int, data: str | None = None, consumer: str | None = None,
        config_overrides: dict | None = None) -> dict:
    from gpt2chat.chat.engine import AnswerModel, ChatEngine, EngineConfig
    from gpt2chat.corpus.data import load_records
    from gpt2chat.modeling.model import load_preset

    records, _ = load_records(data)
    config = EngineConfig(model=None, data=data, **(config_overrides or {}))
    engine = ChatEngine.build(config)
    causal_lm = load_preset(model_dir)
    models = {model_dir: AnswerModel.of(causal_lm, config), UNTRAINED: AnswerModel.of(untrained_like(causal_lm), config),
              EXTRACT: None}
    for model in models.values():
        if model is not None:
            model.warm_up()
    cases = medquad_cases(records, limit)
    consumer_dir = Path(consumer) if consumer else settings.medquad_dir(data).parent / "consumer_qa"
    cases["c"] = liveqa_cases(consumer_dir / LIVEQA_FILE)
    results = {name: {label: score(engine, cases[name], model, label=f"{name}: {label}")
                      for label, model in models.items()} for name in cases}
    return {"model": model_dir, "limit": limit, "config": dataclasses.asdict(config), "cases": {
        name: {"label": CASE_LABELS[name], "questions": len(cases[name]), "systems": systems}
        for name, systems in results.items()}}


def conclusion(report: dict) -> str:
    """One paragraph from the measured numbers: does the trained model beat the extract and the untrained model?"""
    model = report["model"]
    parts, wins = [], 0
    for name, case in report["cases"].items():
        systems = case["systems"]
        trained, untrained, extract = (systems[model]["rouge2"], systems[UNTRAINED]["rouge2"],
                                       systems[EXTRACT]["rouge2"])
        wins += trained >= extract
        parts.append(f"({name}) {trained:.1f} against {extract:.1f} for the extract and {untrained:.1f} for the "
                     f"untrained model")
    verdict = ("beats the extract on every set" if wins == len(parts) else
               "does not beat the extract" + ("" if not wins else f" on {len(parts) - wins} of {len(parts)} sets"))
    return (f"**The trained model {verdict}** (ROUGE-2 of the shown answers: {'; '.join(parts)}). "
            "The quality gate serves a model's answers only when they score at least as well as the extract on "
            "held-out validation questions" + ("." if wins == len(parts) else ", so this model is not served: users "
                                                "get the extract."))


def markdown(report: dict) -> str:
    lines = [f"# Answer quality: {report['model']} against an untrained model and the extract", "",
             conclusion(report), "",
             "Shown answers scored against the reference answers (ROUGE F, percent). "
             "`python -m gpt2chat.answer_quality` regenerates this.", ""]
    for name, case in report["cases"].items():
        lines += [f"## ({name}) {case['label']}: {case['questions']} questions", "",
                  "| system | ROUGE-2 | ROUGE-L | words | answered | model text shown | support | degenerate shown | "
                  "p95 s/answer |", "|---|---|---|---|---|---|---|---|---|"]
        for label, m in case["systems"].items():
            support = "" if m["support"] is None else f"{m['support']:.0%}"
            shown = "" if label == EXTRACT else f"{m['model_shown']:.0%}"
            lines.append(f"| {label} | {m['rouge2']:.2f} | {m['rougeL']:.2f} | {m['words']:.0f} | {m['answered']} | "
                         f"{shown} | {support} | {m['degenerate_shown']} | {m['seconds_p95']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def calibrate_extract(limit: int, data: str | None = None) -> str:
    """What the extract should be drawn from, on held-out validation questions through the full pipeline (the
    gate's questions, another seed): ROUGE-2/L against the NIH answer for the cited sections cut to the prompt's
    600-character reference (before whole pages), the whole cited sections, and their whole pages with the cited
    sections preferred by ``ExtractConfig.cited_weight``."""
    from gpt2chat.chat.engine import ChatEngine, EngineConfig
    from gpt2chat.chat.kinds import AnswerKind
    from gpt2chat.chat.gate import gate_pairs, rouge
    from gpt2chat.chat.grounding import ExtractConfig
    from gpt2chat.modeling.prompt import reference_passage

    engine = ChatEngine.build(EngineConfig(model=None, data=data))
    pairs = gate_pairs(engine.index, limit, seed=1)
    def cut(passages):
        return [[dataclasses.replace(p, answer=reference_passage(p.answer))] for p in passages]

    def whole(passages):
        return [[p] for p in passages]

    variants = {"every cited section cut to 600 characters (the extract before)": (cut, "cited"),
                "every cited section, whole": (whole, "cited"),
                "each question's best section cut to 600 characters": (cut, "best"),
                "each question's best section, whole": (whole, "best")}
    for weight in (0.0, 0.5, 1.0):
        variants[f"whole pages, cited_weight {weight}"] = (None, weight)
    lines = [f"{len(pairs)} validation questions (seed 1), full pipeline; extract ROUGE-2 / ROUGE-L / words:"]
    base = engine.config
    for label, variant in variants.items():
        answers = []
        for pair in pairs:
            passages, _ = engine._passages(pair.question)
            if not passages:
                answers.append("")
            elif variant[0] is not None:
                pages = variant[0](passages)
                engine.config = dataclasses.replace(base, extract_scope=variant[1])
                answers.append(engine.answer_from_pages(pair.question, pages, None, [p[0] for p in pages]).answer)
            else:
                engine.config = dataclasses.replace(base, extract=ExtractConfig(cited_weight=variant[1]),
                                                    extract_scope="page")
                answers.append(engine.answer_from_pages(pair.question, engine._pages(passages), None,
                                                        cited=passages).answer)
            engine.config = base
        r2, rl = rouge(answers, [p.answer for p in pairs])
        lines.append(f"  {label}: {r2.mean():.2f} / {rl.mean():.2f} / {np.mean([len(a.split()) for a in answers]):.0f}")
    # The uncued-sentence factor, on the same validation questions and on LiveQA's train messages (real messages,
    # trainable; dev stays for the report), through the full pipeline.
    consumer = liveqa_cases(settings.consumer_qa_dir() / LIVEQA_FILE, split="train")
    lines.append(f"\nUncued sentences of sections written for another question type (ExtractConfig.uncued_factor; "
                 f"0: left out), ROUGE-2 / words: "
                 f"{len(pairs)} validation questions | {len(consumer)} LiveQA train messages")
    variants = {f"{factor:g}": {"uncued_factor": factor} for factor in (1.0, 0.5, 0.0)}
    variants["default, words unstemmed"] = {"stem": False}
    variants["default, no continuations"] = {"continuations": False}
    for label, change in variants.items():
        engine.config = dataclasses.replace(base, extract=dataclasses.replace(base.extract, **change))
        figures = []
        for questions, references in (([p.question for p in pairs], [(p.answer,) for p in pairs]),
                                      ([c.question for c in consumer], [c.references for c in consumer])):
            replies = [engine.reply(q) for q in questions]
            scores = [_best_rouge(r.answer, refs)[0] if r.answer_kind != AnswerKind.NONE else 0.0
                      for r, refs in zip(replies, references)]
            figures.append(f"{np.mean(scores):.2f} / {np.mean([len(r.answer.split()) for r in replies]):.0f}")
        lines.append(f"  {label}: {' | '.join(figures)}")
    engine.config = base
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.answer_quality",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(settings.DEFAULT_MODEL_DIR), help="the trained model's directory")
    parser.add_argument("--limit", type=int, default=200, help="MedQuAD test questions (default: 200)")
    parser.add_argument("--data", help="MedQuAD directory")
    parser.add_argument("--consumer", help="consumer_qa directory (default: beside MedQuAD)")
    parser.add_argument("--threshold", type=float, help="selection threshold (EngineConfig.select_threshold)")
    parser.add_argument("--max-sentences", type=int, help="EngineConfig.answer_max_sentences")
    parser.add_argument("--output", default="livrables/answer_quality", help="report path without extension")
    parser.add_argument("--calibrate-extract", action="store_true",
                        help="only sweep the whole-page extract's cited-section prior on validation questions")
    args = parser.parse_args(argv)
    from gpt2chat.corpus.data import MedQuADNotFound
    from gpt2chat.modeling.model import ModelUnavailable

    if args.limit < 1:
        parser.error("--limit must be at least 1")
    overrides = {k: v for k, v in (("select_threshold", args.threshold),
                                   ("answer_max_sentences", args.max_sentences)) if v is not None}
    try:
        if args.calibrate_extract:
            print(calibrate_extract(args.limit, args.data))
            return 0
        report = run(args.model, args.limit, args.data, args.consumer, overrides)
    except (MedQuADNotFound, ModelUnavailable, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    output.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    output.with_suffix(".json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
