"""The sweep trains recipe variants and writes the optimisation report from their measured metrics."""

from __future__ import annotations

import json
import re

import pytest

from gpt2chat.cli import run
from gpt2chat.reports.sweep import parse_variant, run_name, write_report

# Ten steps on 60 pairs of the small MedQuAD sample: the sweep's mechanics, not the quality of a recipe.
_QUICK = "tiny+steps=10+eval_interval=5+warmup_steps=2+max_records=60+eval_rows=4"
VARIANTS = [_QUICK, _QUICK + "+learning_rate=0.0003"]


def test_variants_are_recipes_with_typed_changes():
    config = parse_variant("tiny+learning_rate=0.01+max_records=none+precision=mixed_bfloat16")
    assert (config.size, config.learning_rate, config.max_records, config.precision) == \
        ("tiny", 0.01, None, "mixed_bfloat16")
    assert run_name("quickstart+learning_rate=0.002") == "quickstart+learning_rate=0.002"
    for bad, message in (("nope", "unknown recipe"), ("tiny+steps", "setting=value"), ("tiny+colour=red", "setting"),
                         ("tiny+steps=many", "must be a int"), ("tiny+steps=25", "multiple of --eval-interval")):
        with pytest.raises(ValueError, match=message):
            parse_variant(bad)


def test_bad_variant_fails_before_any_training(tmp_path, capsys):
    assert run("sweep", ["--recipes", "tiny,tiny+sibling_fraction=2", "--runs", str(tmp_path / "runs"),
                 "--report", str(tmp_path / "opt.md")]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def table_rows(markdown: str) -> dict[str, list[str]]:
    """Markdown table rows by their first cell: the other cells, stripped."""
    rows = ([cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith("|"))
    return {cells[0]: cells[1:] for cells in rows}


def answers(auc, model_rouge2, extract_rouge2=30.0, passed=False):
    gate = {"questions": 40, "model_rouge2": model_rouge2, "extract_rouge2": extract_rouge2, "model_rougeL": 0.0,
            "extract_rougeL": 0.0, "model_shown": 0.9, "support": 1.0, "model_words": 40.0, "extract_words": 50.0}
    return {"selection": {"auc": auc, "top1": 0.25, "pages": 150}, "gate": gate, "passed": passed}


REFERENCES = {"untrained (same layout)": answers(0.5, 10.0),
              "BM25 with question-type cues (the extract's ranking)": {"selection": {"auc": 0.67, "top1": 0.62,
                                                                                    "pages": 150}}}


def test_report_tabulates_each_variant_and_chooses_within_the_budget(tmp_path):
    def record(variant, loss, wall_minutes, answered):
        history = [{"step": 5, "val_loss": loss + 0.5}, {"step": 10, "val_loss": loss}]
        summary = {"best_val_loss": loss, "best_val_perplexity": 2.718281828 ** loss, "best_step": 10,
                   "median_tokens_per_second": 1234.4, "parameters": 1_234_567, "history": history}
        return {"variant": variant, "config": {"steps": 10, "learning_rate": float(variant[-1])},
                "wall_seconds": 60 * wall_minutes, "cpu_seconds": 120 * wall_minutes, "summary": summary,
                "answers": answered}

    report = tmp_path / "optimisation.md"
    # The lowest loss (1) loses to the answers closest to the extract (3); 2 is best but over the budget.
    records = [record("tiny+learning_rate=1", 3.6, 2.0, answers(0.55, 20.0)),
               record("tiny+learning_rate=2", 3.5, 30.0, answers(0.9, 35.0, passed=True)),
               record("tiny+learning_rate=3", 3.9, 5.0, answers(0.6, 25.5))]
    assert write_report(records, report, 10, REFERENCES) == "tiny+learning_rate=3"
    text = report.read_text()
    rows = table_rows(text.split("## What the model adds to answers")[0])
    assert rows["variant"] == ["best val loss", "val perplexity", "at step", "tokens/s", "wall min", "CPU min",
                               "parameters"]
    assert rows["`tiny+learning_rate=2`"] == ["3.500", "33.1", "10", "1,234", "30.0", "60.0", "1,234,567"]
    answers_table = text.split("## What the model adds to answers")[1]
    assert table_rows(answers_table)["`tiny+learning_rate=3`"] == ["0.60", "25%", "25.5", "30.0", "90", "100", "no"]
    assert table_rows(answers_table)["BM25 with question-type cues (the extract's ranking)"][:2] == ["0.67", "62%"]
    assert "no variant's answers beat the extract" not in text  # variant 2 passed its gate
    assert "within 4.5 ROUGE-2 points" not in text
    assert write_report(records, report, 60, REFERENCES) == "tiny+learning_rate=2"  # served by its gate
    assert "1 of 3 variants beat the extract" in report.read_text()
    records[1]["answers"]["passed"] = False
    assert write_report(records, report, 60, REFERENCES) == "tiny+learning_rate=2"  # still the best margin
    assert "no variant's answers beat the extract" in report.read_text()
    assert write_report(records, report, 1, REFERENCES) is None


def test_sweep_writes_the_report_from_the_runs_metrics(tmp_path, small_medquad, small_medquad_index_cache,
                                                       monkeypatch):
    from gpt2chat import settings
    from tests.conftest import seed_index_cache

    # The sample's retrieval index in a cache of its own: in the checkout's it would replace the whole collection's.
    # It is the copy of one built once for the run (its build is tested in test_retrieval).
    monkeypatch.setenv(settings.CACHE_ENV, str(tmp_path / "cache"))
    seed_index_cache(small_medquad_index_cache, tmp_path / "cache")
    report = tmp_path / "livrables" / "optimisation.md"
    options = ["--runs", str(tmp_path / "runs"), "--report", str(report), "--data", str(small_medquad),
               "--gate-questions", "4", "--selection-pages", "6"]
    assert run("sweep", ["--recipes", ",".join(VARIANTS), *options, "--budget-minutes", "60"]) == 0
    text = report.read_text()
    training = text.split("## What the model adds to answers")[0]
    metrics = [json.loads((tmp_path / "runs" / run_name(v) / "metrics.json").read_text()) for v in VARIANTS]
    records = [json.loads((tmp_path / "runs" / run_name(v) / "sweep.json").read_text()) for v in VARIANTS]
    rows = table_rows(training)
    for variant, summary, record in zip(VARIANTS, metrics, records):
        assert rows[f"`{variant}`"][:2] == [f"{summary['best_val_loss']:.3f}", f"{summary['best_val_perplexity']:.1f}"]
        measured = record["answers"]
        assert (measured["gate"]["questions"], measured["selection"]["pages"]) == (4, 6)
        answer_row = table_rows(text.split("## What the model adds to answers")[1])[f"`{variant}`"]
        assert answer_row[:3] == [f"{measured['selection']['auc']:.2f}", f"{100 * measured['selection']['top1']:.0f}%",
                                  f"{measured['gate']['model_rouge2']:.1f}"]
    margins = [round(r["answers"]["gate"]["model_rouge2"] - r["answers"]["gate"]["extract_rouge2"], 1) for r in records]
    best = max(range(2), key=lambda i: (records[i]["answers"]["passed"], margins[i], -metrics[i]["best_val_loss"]))
    assert re.search(rf"Chosen: `{re.escape(VARIANTS[best])}`", text)
    listed = [line.split("`: ", 1)[1] for line in text.split("Settings that differ")[1].splitlines()
              if line.startswith("- `")]
    assert listed == ["learning_rate=0.003", "learning_rate=0.0003"]  # only the settings that differ
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (report.parent / image).stat().st_size > 1000
    assert records[0]["cpu_seconds"] > 0 and records[0]["wall_seconds"] > 0

    references = json.loads((tmp_path / "runs" / "references.json").read_text())["rows"]
    untrained = table_rows(text.split("## What the model adds to answers")[1])["untrained (same layout)"]
    assert untrained[:3] == [f"{references['untrained (same layout)']['selection']['auc']:.2f}",
                             f"{100 * references['untrained (same layout)']['selection']['top1']:.0f}%",
                             f"{references['untrained (same layout)']['gate']['model_rouge2']:.1f}"]

    metrics_file = tmp_path / "runs" / run_name(VARIANTS[0]) / "metrics.json"
    written = [p.stat().st_mtime_ns for p in (metrics_file, tmp_path / "runs" / "references.json")]
    assert run("sweep", ["--recipes", VARIANTS[0], *options]) == 0  # a finished variant is reused, not trained again
    assert [p.stat().st_mtime_ns for p in (metrics_file, tmp_path / "runs" / "references.json")] == written
    assert table_rows(report.read_text().split("## What")[0])[f"`{VARIANTS[0]}`"][0] == f"{metrics[0]['best_val_loss']:.3f}"
    assert json.loads((tmp_path / "runs" / run_name(VARIANTS[0]) / "sweep.json").read_text())["answers"] == \
        records[0]["answers"]  # nor measured again


def test_help_names_the_recipes_flag(capsys):
    """In this process: tests/test_cli.py::test_help[sweep] runs ``python -m gpt2chat.sweep --help`` for real."""
    with pytest.raises(SystemExit) as exit_info:
        run("sweep", ["--help"])
    out = capsys.readouterr().out
    usage = out.split("\n\n")[0]  # the flags themselves, not the examples of the description
    assert exit_info.value.code == 0 and usage.startswith("usage:") and "--recipes RECIPES" in usage
