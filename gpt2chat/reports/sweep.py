"""Train recipe variants one after another and write the optimisation report from what they measured.

    python -m gpt2chat.sweep --recipes quickstart,quickstart+learning_rate=0.002,quickstart+precision=mixed_bfloat16
    python -m gpt2chat.sweep --recipes tiny,tiny+learning_rate=0.001 --runs /tmp/sweep --report /tmp/opt.md

A variant is a recipe name (``gpt2chat/modeling/recipes/<name>.json``) optionally followed by ``+setting=value``
changes.
Each variant trains into ``<runs>/<variant>`` (a killed sweep resumes: finished runs are not trained again) and
the report (default ``livrables/optimisation.md``, plots beside it) tabulates, per variant, the best validation
loss per answer token and its perplexity, training throughput, wall time and CPU time, and what the model adds to
answers: as a sentence selector on validation pages (AUC, and how often its top sentence is in the asked section,
beside the extract's BM25 ranking and an untrained model of the same layout), and its quality gate (its shown
answers' ROUGE-2 against the extract's on held-out validation questions). It names the variant whose answers do best
against the extract among those within ``--budget-minutes`` of wall time (then the lowest validation loss). Every
number in it comes from the runs' ``metrics.json``, these measurements and the sweep's own clock.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from gpt2chat import settings
from gpt2chat.modeling.rundir import RunDirectory, perplexity

DEFAULT_REPORT = settings.LIVRABLES_DIR / "optimisation.md"
DEFAULT_RUNS = settings.RUNS_DIR / "sweep"
SWEEP_RECORD = "sweep.json"  # per variant: the sweep's clock, CPU time, the run's summary and its answer figures
# Raised whenever the answer pipeline the probe measures changes (2: the model reads the best section's page).
MEASUREMENT_VERSION = 2
SELECTION_PAGES = 150  # validation pages the selector is scored on (AUC's standard error about 0.01 at this size)
UNTRAINED = "untrained (same layout)"
BM25 = "BM25 with question-type cues (the extract's ranking)"


def parse_variant(spec: str):
    """``recipe+setting=value+...`` → a ``TrainConfig`` (output not set yet); a clear error for a bad spec."""
    from gpt2chat.modeling.training_config import TrainConfig, read_recipe

    name, *changes = spec.strip().split("+")
    values = read_recipe(name)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    overrides = {}
    for change in changes:
        key, sep, raw = change.partition("=")
        if not sep or key not in fields or key in ("output", "recipe"):
            raise ValueError(f"variant {spec!r}: {change!r} is not setting=value for a training setting")
        current = values.get(key, fields[key].default)
        kind = type(current) if current is not None else (int if key == "max_records" else str)
        try:
            overrides[key] = None if raw.lower() == "none" else kind(raw)
        except ValueError:
            raise ValueError(f"variant {spec!r}: {key} must be a {kind.__name__}") from None
    config = TrainConfig.from_recipe(name, **overrides)
    config.validate()
    return config


def run_name(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", spec.strip())


def run_variant(spec: str, runs: Path, data: str | None, probe: "AnswerProbe") -> dict:
    """Train (or resume) one variant, or reuse its finished run, then measure its answers (once: kept in the
    record); its record for the report. The wall and CPU time are those of the whole run only when one sweep
    trained it from start to end: a resumed run counts the session that finished it."""
    from gpt2chat.modeling.train import train

    config = parse_variant(spec)
    config.output, config.data = str(runs / run_name(spec)), data
    record_path = Path(config.output) / SWEEP_RECORD
    record = None
    if record_path.is_file():
        previous = json.loads(record_path.read_text())
        if _same_config(previous.get("config", {}), config):
            print(f"{spec}: finished in an earlier sweep ({config.output})", flush=True)
            record = {**previous, "config": dataclasses.asdict(config)}  # settings added since, at their defaults
    if record is None:
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        summary = train(config)
        wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
        record = {"variant": spec, "run": config.output, "config": dataclasses.asdict(config), "wall_seconds": wall,
                  "cpu_seconds": cpu, "summary": summary}
        RunDirectory.atomic_write_json(record, record_path)
    if record.get("answers", {}).get("probe") != probe.key:
        from gpt2chat.modeling.model import load_preset

        record["answers"] = probe.measure(load_preset(config.output))
        RunDirectory.atomic_write_json(record, record_path)
    return record


def _same_config(saved: dict, config) -> bool:
    """Whether a recorded run's settings are ``config``'s; a setting added since it was recorded counts as its
    default."""
    defaults = {f.name: f.default for f in dataclasses.fields(config)}
    return {**defaults, **saved} == dataclasses.asdict(config)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    above = (positive[:, None] > negative[None, :]).mean()
    return float(above + 0.5 * (positive[:, None] == negative[None, :]).mean())


def selection_quality(score, examples) -> dict:
    """Mean per-page AUC of ``score(example)`` (one score per sentence) for the asked section's sentences against
    the page's others, and the share of pages whose top-scored sentence is in the asked section."""
    aucs, hits = [], []
    for example in examples:
        scores, labels = np.asarray(score(example), np.float64), np.asarray(example.labels)
        aucs.append(auc(scores[labels], scores[~labels]))
        hits.append(bool(labels[int(np.argmax(scores))]))
    return {"auc": float(np.mean(aucs)), "top1": float(np.mean(hits)), "pages": len(examples)}


@dataclasses.dataclass
class AnswerProbe:
    """What every variant's answers are measured on, built once per sweep: an extract-only engine (retrieval,
    masking, the extract) with its gate questions, and validation pages for the selector."""

    engine: object
    pairs: list
    examples: list

    @classmethod
    def build(cls, data: str | None, gate_questions: int, selection_pages: int) -> "AnswerProbe":
        from gpt2chat.chat.engine import ChatEngine, EngineConfig
        from gpt2chat.chat.gate import gate_pairs
        from gpt2chat.corpus.data import load_records
        from gpt2chat.corpus.splits import split_records
        from gpt2chat.modeling.selection import selection_examples

        engine = ChatEngine.build(EngineConfig(model=None, data=data))
        examples = selection_examples(split_records(load_records(data)[0])["validation"])
        chosen = np.random.default_rng(0).permutation(len(examples))[:selection_pages]
        return cls(engine, gate_pairs(engine.index, gate_questions), [examples[i] for i in sorted(chosen)])

    @property
    def key(self) -> list:
        """What the measurements depend on: a record measured on other questions or pages, or by an earlier version
        of the measurement, is measured again."""
        return [MEASUREMENT_VERSION, len(self.pairs), len(self.examples), self.pairs[0].question if self.pairs else ""]

    def measure(self, causal_lm) -> dict:
        """``causal_lm`` as the engine's selector: its selection quality and its gate against the extract."""
        from gpt2chat.chat.engine import AnswerModel
        from gpt2chat.modeling.selection import SentenceScorer

        scorer = SentenceScorer(causal_lm)
        selection = selection_quality(lambda e: scorer.scores(e.question, e.sentences, e.section_starts),
                                      self.examples)
        gate = self.engine.measure(AnswerModel(scorer=scorer), self.pairs)
        return {"probe": self.key, "selection": selection, "gate": dataclasses.asdict(gate), "passed": gate.passed}

    def references(self, causal_lm) -> dict[str, dict]:
        """The rows every variant is read against: an untrained model of the same layout, and the extract's own
        BM25 ranking of the same sentences."""
        from gpt2chat.chat.grounding import ExtractConfig, bm25_scores, question_terms, words
        from gpt2chat.reports.answer_quality import untrained_like

        weight = ExtractConfig().cue_weight
        bm25 = selection_quality(lambda e: bm25_scores(question_terms(e.question, weight),
                                                       [words(s) for s in e.sentences]), self.examples)
        return {UNTRAINED: self.measure(untrained_like(causal_lm)), BM25: {"selection": bm25}}


def _plots(records: list[dict], directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(7, 4))
    for record in records:
        history = record["summary"]["history"]
        axis.plot([e["step"] for e in history], [e["val_loss"] for e in history], marker="o", label=record["variant"])
    axis.set(xlabel="optimizer step", ylabel="validation loss per answer token (nats)",
             title="Validation loss during training")
    axis.legend(fontsize=8)
    figure.tight_layout()
    curves = directory / "validation_loss.png"
    figure.savefig(curves, dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(7, 4))
    for record in records:
        axis.scatter(record["cpu_seconds"] / 60, record["summary"]["best_val_loss"], s=40)
        axis.annotate(record["variant"], (record["cpu_seconds"] / 60, record["summary"]["best_val_loss"]),
                      fontsize=8, xytext=(4, 4), textcoords="offset points")
    axis.set(xlabel="CPU minutes (whole run)", ylabel="best validation loss per answer token",
             title="Quality per CPU-minute")
    figure.tight_layout()
    cost = directory / "loss_per_cpu_minute.png"
    figure.savefig(cost, dpi=110)
    plt.close(figure)
    return [curves, cost]


def reference_rows(probe: AnswerProbe, runs: Path, first: dict) -> dict[str, dict]:
    """``probe.references`` for the first variant's layout, measured once per probe and layout (kept in ``runs``)."""
    from gpt2chat.modeling.model import load_preset

    path = runs / "references.json"
    layout = json.loads((Path(first["run"]) / "config.json").read_text())
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("probe") == probe.key and saved.get("layout") == layout:
            return saved["rows"]
    rows = probe.references(load_preset(first["run"]))
    RunDirectory.atomic_write_json({"probe": probe.key, "layout": layout, "rows": rows}, path)
    return rows


def answer_margin(record: dict) -> float:
    """How far the variant's shown answers are above (+) or below the extract's, ROUGE-2 points on the gate."""
    gate = record["answers"]["gate"]
    return gate["model_rouge2"] - gate["extract_rouge2"]


def choose(records: list[dict], budget_minutes: float) -> dict | None:
    """The variant within the budget whose answers the gate serves, then the one closest to (or furthest above) the
    extract, then the lowest validation loss."""
    within = [r for r in records if r["wall_seconds"] <= budget_minutes * 60]
    return max(within, key=lambda r: (r["answers"]["passed"], round(answer_margin(r), 1),
                                      -r["summary"]["best_val_loss"])) if within else None


def conclusion(records: list[dict], chosen: dict | None, references: dict[str, dict]) -> str:
    """The report's opening paragraph, filled from the measured numbers."""
    if chosen is None:
        return "No variant finished within the wall-time budget, so none is chosen."
    gate, selection = chosen["answers"]["gate"], chosen["answers"]["selection"]
    untrained, bm25 = references[UNTRAINED]["selection"], references[BM25]["selection"]
    served = [r["variant"] for r in records if r["answers"]["passed"]]
    verdict = (f"{len(served)} of {len(records)} variants beat the extract on the quality gate, so the app serves "
               f"the chosen one's answers" if served else
               f"no variant's answers beat the extract on the quality gate, so the app keeps showing the extract and "
               f"withholds the model (the best comes within {-answer_margin(chosen):.1f} ROUGE-2 points)")
    return (f"Conclusion: as a sentence selector on {selection['pages']} validation pages, the chosen "
            f"`{chosen['variant']}` ranks the asked section's sentences with AUC {selection['auc']:.2f} (top sentence in the asked section "
            f"{selection['top1']:.0%}), against {untrained['auc']:.2f} ({untrained['top1']:.0%}) for an untrained "
            f"model of the same layout and {bm25['auc']:.2f} ({bm25['top1']:.0%}) for the extract's BM25 ranking; "
            f"on {gate['questions']} held-out questions its shown answers score ROUGE-2 {gate['model_rouge2']:.1f} "
            f"against {gate['extract_rouge2']:.1f} for the extract. Over the sweep, {verdict}.")


def write_report(records: list[dict], report: Path, budget_minutes: float, references: dict[str, dict]) -> str | None:
    """The Markdown report and its plots; returns the chosen variant (None when no run fits the budget)."""
    import pandas as pd

    from gpt2chat.markdown import markdown_table

    chosen = choose(records, budget_minutes)
    plots = _plots(records, report.parent / report.stem)
    table = pd.DataFrame([{"variant": r["variant"], "best val loss": r["summary"]["best_val_loss"],
                           "val perplexity": r["summary"]["best_val_perplexity"], "at step": r["summary"]["best_step"],
                           "tokens/s": r["summary"]["median_tokens_per_second"], "wall min": r["wall_seconds"] / 60,
                           "CPU min": r["cpu_seconds"] / 60, "parameters": r["summary"]["parameters"]}
                          for r in records])
    rows = [(f"`{r['variant']}`", r["answers"]) for r in records] + [(name, row) for name, row in references.items()]
    answers = pd.DataFrame([{
        "variant": name, "selector AUC": row["selection"]["auc"], "top sentence in asked section":
            100 * row["selection"]["top1"],
        "gate ROUGE-2": row["gate"]["model_rouge2"] if "gate" in row else None,
        "extract ROUGE-2": row["gate"]["extract_rouge2"] if "gate" in row else None,
        "model text shown %": 100 * row["gate"]["model_shown"] if "gate" in row else None,
        "supported %": 100 * row["gate"]["support"] if "gate" in row else None,
        "served": ("yes" if row["passed"] else "no") if "gate" in row else None} for name, row in rows])
    lines = [
        "# Optimisation: training recipe variants",
        "",
        f"- {conclusion(records, chosen, references)}",
        f"- Variants: {len(records)}; losses are cross-entropy per answer token on the validation split "
        "(prompt, reference and question carry no weight).",
        (f"- Chosen: `{chosen['variant']}` (among runs within {budget_minutes:g} minutes of wall time: served by the "
         f"gate first, then ROUGE-2 against the extract {answer_margin(chosen):+.1f}, then validation loss "
         f"{chosen['summary']['best_val_loss']:.3f}, perplexity {perplexity(chosen['summary']['best_val_loss']):.1f})."
         if chosen else f"- Chosen: none (no run finished within {budget_minutes:g} minutes of wall time)."),
        "",
        f"Written by `python -m gpt2chat.sweep` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end: a shared machine slows "
        "every run, so compare variants of one sweep with each other).",
        "",
        "## Training",
        "",
        markdown_table(table, {"variant": "`{}`", "best val loss": "{:.3f}", "val perplexity": "{:.1f}",
                               "tokens/s": "{:,.0f}", "wall min": "{:.1f}", "CPU min": "{:.1f}",
                               "parameters": "{:,}"}),
        "",
        "## What the model adds to answers",
        "",
        "Selector: the model scores every candidate sentence of a validation page for one of the page's questions "
        "(`gpt2chat.modeling.selection`); AUC of the asked section's sentences against the page's others, and how "
        "often its top sentence is in the asked section. Gate: the app's quality gate (`gpt2chat.chat.gate`), the "
        "model's shown answers against the extract's on held-out validation questions, ROUGE-2 against the NIH "
        "answer; a model is served only when it is at least as good, shows its own text for at least half the "
        "questions and 95% of its sentences are supported. "
        f"The untrained row has the layout of `{records[0]['variant']}`.",
        "",
        markdown_table(answers, {"selector AUC": "{:.2f}", "top sentence in asked section": "{:.0f}%",
                                 "gate ROUGE-2": "{:.1f}", "extract ROUGE-2": "{:.1f}",
                                 "model text shown %": "{:.0f}", "supported %": "{:.0f}"}),
    ]
    lines += ["", "Settings that differ between variants:", ""]
    keys = sorted({k for r in records for k in r["config"]} - {"output", "data", "recipe"})
    differing = [k for k in keys if len({json.dumps(r["config"].get(k)) for r in records}) > 1]
    for record in records:
        changes = ", ".join(f"{k}={record['config'].get(k)}" for k in differing) or "(all alike)"
        lines.append(f"- `{record['variant']}`: {changes}")
    lines.append("")
    lines += [f"![{plot.stem.replace('_', ' ')}]({report.stem}/{plot.name})" for plot in plots]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return chosen["variant"] if chosen else None


def main(argv: list[str] | None = None) -> int:
    from gpt2chat.chat.engine import EngineConfig

    parser = argparse.ArgumentParser(prog="python -m gpt2chat.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", required=True,
                        help="comma-separated variants: recipe[+setting=value...], "
                             "e.g. quickstart,quickstart+steps=200")
    parser.add_argument("--runs", default=str(DEFAULT_RUNS),
                        help="directory of the variants' runs (default: %(default)s)")
    parser.add_argument("--report", default=str(DEFAULT_REPORT), help="Markdown report to write (default: %(default)s)")
    parser.add_argument("--budget-minutes", type=float, default=15.0,
                        help="wall-time budget a chosen variant must meet (default: %(default)s)")
    parser.add_argument("--data", help=f"MedQuAD directory (default: ${settings.MEDQUAD_ENV} or ../shared/medquad)")
    parser.add_argument("--gate-questions", type=int, default=EngineConfig.gate_questions,
                        help="held-out questions each variant's quality gate is measured on (default: the app's, "
                             "%(default)s)")
    parser.add_argument("--selection-pages", type=int, default=SELECTION_PAGES,
                        help="validation pages each variant's sentence selection is scored on (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.gate_questions < 1 or args.selection_pages < 1:
        parser.error("--gate-questions and --selection-pages must be at least 1")
    specs = [s.strip() for s in args.recipes.split(",") if s.strip()]
    if not specs:
        parser.error("--recipes names no variant")
    if len(set(map(run_name, specs))) != len(specs):
        parser.error("--recipes names the same variant twice")
    for spec in specs:
        parse_variant(spec)  # every spec is checked before hours of training start
    probe = AnswerProbe.build(args.data, args.gate_questions, args.selection_pages)
    records = []
    for number, spec in enumerate(specs, 1):
        print(f"[{number}/{len(specs)}] {spec}", flush=True)
        records.append(run_variant(spec, Path(args.runs), args.data, probe))
    references = reference_rows(probe, Path(args.runs), records[0])
    chosen = write_report(records, Path(args.report), args.budget_minutes, references)
    print(f"wrote {args.report}; chosen: {chosen or 'none within the budget'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
