"""Train recipe variants one after another and write the optimisation report from what they measured.

    python -m gpt2chat.sweep --recipes quickstart,quickstart+learning_rate=0.002,quickstart+precision=mixed_bfloat16
    python -m gpt2chat.sweep --recipes tiny,tiny+learning_rate=0.001 --runs /tmp/sweep --report /tmp/opt.md

A variant is a recipe name (``gpt2chat/modeling/recipes/<name>.json``) optionally followed by ``+setting=value``
changes.
Each variant trains into ``<runs>/<variant>`` (a killed sweep resumes: finished runs are not trained again) and
the report (default ``livrables/optimisation.md``, plots beside it) tabulates, per variant, the best validation
loss per answer token and its perplexity, training throughput, wall time and CPU time, and names the variant
with the lowest validation loss among those within ``--budget-minutes`` of wall time. Every number in it comes
from the runs' ``metrics.json`` and the sweep's own clock; nothing is typed in by hand.
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

from gpt2chat import settings
from gpt2chat.modeling.rundir import RunDirectory, perplexity

DEFAULT_REPORT = settings.LIVRABLES_DIR / "optimisation.md"
DEFAULT_RUNS = settings.RUNS_DIR / "sweep"
SWEEP_RECORD = "sweep.json"  # per variant: the sweep's clock, CPU time and the run's summary


def parse_variant(spec: str):
    """``recipe+setting=value+...`` → a ``TrainConfig`` (output not set yet); a clear error for a bad spec."""
    from gpt2chat.modeling.train import TrainConfig, read_recipe

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


def run_variant(spec: str, runs: Path, data: str | None) -> dict:
    """Train (or resume) one variant, or reuse its finished run; its record for the report. The wall and CPU time
    are those of the whole run only when one sweep trained it from start to end: a resumed run counts the
    session that finished it."""
    from gpt2chat.modeling.train import train

    config = parse_variant(spec)
    config.output, config.data = str(runs / run_name(spec)), data
    record_path = Path(config.output) / SWEEP_RECORD
    if record_path.is_file():
        previous = json.loads(record_path.read_text())
        if previous.get("config") == dataclasses.asdict(config):
            print(f"{spec}: finished in an earlier sweep ({config.output})", flush=True)
            return previous
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    summary = train(config)
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    record = {"variant": spec, "run": config.output, "config": dataclasses.asdict(config), "wall_seconds": wall,
              "cpu_seconds": cpu, "summary": summary}
    RunDirectory.atomic_write_json(record, record_path)
    return record


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


def write_report(records: list[dict], report: Path, budget_minutes: float) -> str | None:
    """The Markdown report and its plots; returns the chosen variant (None when no run fits the budget)."""
    import pandas as pd

    from gpt2chat.markdown import markdown_table

    within = [r for r in records if r["wall_seconds"] <= budget_minutes * 60]
    chosen = min(within, key=lambda r: r["summary"]["best_val_loss"]) if within else None
    plots = _plots(records, report.parent / report.stem)
    table = pd.DataFrame([{"variant": r["variant"], "best val loss": r["summary"]["best_val_loss"],
                           "val perplexity": r["summary"]["best_val_perplexity"], "at step": r["summary"]["best_step"],
                           "tokens/s": r["summary"]["median_tokens_per_second"], "wall min": r["wall_seconds"] / 60,
                           "CPU min": r["cpu_seconds"] / 60, "parameters": r["summary"]["parameters"]}
                          for r in records])
    lines = [
        "# Optimisation: training recipe variants",
        "",
        f"Written by `python -m gpt2chat.sweep` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} at the end: a shared machine slows "
        "every run, so compare variants of one sweep with each other).",
        "",
        f"- Variants: {len(records)}; losses are cross-entropy per answer token on the validation split "
        "(prompt, reference and question carry no weight).",
        (f"- Chosen: `{chosen['variant']}` (lowest validation loss among runs within {budget_minutes:g} minutes of "
         f"wall time: {chosen['summary']['best_val_loss']:.3f}, perplexity "
         f"{perplexity(chosen['summary']['best_val_loss']):.1f})." if chosen else
         f"- Chosen: none (no run finished within {budget_minutes:g} minutes of wall time)."),
        "",
        markdown_table(table, {"variant": "`{}`", "best val loss": "{:.3f}", "val perplexity": "{:.1f}",
                               "tokens/s": "{:,.0f}", "wall min": "{:.1f}", "CPU min": "{:.1f}",
                               "parameters": "{:,}"}),
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
    args = parser.parse_args(argv)
    specs = [s.strip() for s in args.recipes.split(",") if s.strip()]
    if not specs:
        parser.error("--recipes names no variant")
    if len(set(map(run_name, specs))) != len(specs):
        parser.error("--recipes names the same variant twice")
    for spec in specs:
        parse_variant(spec)  # every spec is checked before hours of training start
    records = []
    for number, spec in enumerate(specs, 1):
        print(f"[{number}/{len(specs)}] {spec}", flush=True)
        records.append(run_variant(spec, Path(args.runs), args.data))
    chosen = write_report(records, Path(args.report), args.budget_minutes)
    print(f"wrote {args.report}; chosen: {chosen or 'none within the budget'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
