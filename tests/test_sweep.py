"""The sweep trains recipe variants and writes the optimisation report from their measured metrics."""

from __future__ import annotations

import json
import re

import pytest

from gpt2chat.cli import run
from gpt2chat.modeling.sweep import parse_variant, run_name, write_report

# Ten steps on 60 pairs: the sweep's mechanics, not the quality of a recipe.
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


def test_report_tabulates_each_variant_and_chooses_within_the_budget(tmp_path):
    def record(variant, loss, wall_minutes):
        history = [{"step": 5, "val_loss": loss + 0.5}, {"step": 10, "val_loss": loss}]
        summary = {"best_val_loss": loss, "best_val_perplexity": 2.718281828 ** loss, "best_step": 10,
                   "median_tokens_per_second": 1234.4, "parameters": 1_234_567, "history": history}
        return {"variant": variant, "config": {"steps": 10, "learning_rate": float(variant[-1])},
                "wall_seconds": 60 * wall_minutes, "cpu_seconds": 120 * wall_minutes, "summary": summary}

    report = tmp_path / "optimisation.md"
    records = [record("tiny+learning_rate=1", 4.0, 2.0), record("tiny+learning_rate=2", 3.5, 30.0),
               record("tiny+learning_rate=3", 3.9, 5.0)]
    assert write_report(records, report, budget_minutes=10) == "tiny+learning_rate=3"  # 3.5 is over budget
    rows = table_rows(report.read_text())
    assert rows["variant"] == ["best val loss", "val perplexity", "at step", "tokens/s", "wall min", "CPU min",
                               "parameters"]
    assert rows["`tiny+learning_rate=2`"] == ["3.500", "33.1", "10", "1,234", "30.0", "60.0", "1,234,567"]
    assert write_report(records, report, budget_minutes=1) is None


def test_sweep_writes_the_report_from_the_runs_metrics(tmp_path, medquad_dir):
    report = tmp_path / "livrables" / "optimisation.md"
    assert run("sweep", ["--recipes", ",".join(VARIANTS), "--runs", str(tmp_path / "runs"), "--report", str(report),
                 "--data", str(medquad_dir), "--budget-minutes", "60"]) == 0
    text = report.read_text()
    metrics = [json.loads((tmp_path / "runs" / run_name(v) / "metrics.json").read_text()) for v in VARIANTS]
    rows = table_rows(text)
    for variant, summary in zip(VARIANTS, metrics):
        assert rows[f"`{variant}`"][:2] == [f"{summary['best_val_loss']:.3f}", f"{summary['best_val_perplexity']:.1f}"]
    best = VARIANTS[min(range(2), key=lambda i: metrics[i]["best_val_loss"])]
    assert re.search(rf"Chosen: `{re.escape(best)}`", text)
    listed = [line.split("`: ", 1)[1] for line in text.split("Settings that differ")[1].splitlines()
              if line.startswith("- `")]
    assert listed == ["learning_rate=0.003", "learning_rate=0.0003"]  # only the settings that differ
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (report.parent / image).stat().st_size > 1000
    record = json.loads((tmp_path / "runs" / run_name(VARIANTS[0]) / "sweep.json").read_text())
    assert record["cpu_seconds"] > 0 and record["wall_seconds"] > 0

    metrics_file = tmp_path / "runs" / run_name(VARIANTS[0]) / "metrics.json"
    written = metrics_file.stat().st_mtime_ns
    assert run("sweep", ["--recipes", VARIANTS[0], "--runs", str(tmp_path / "runs"), "--report", str(report),
                 "--data", str(medquad_dir)]) == 0  # a finished variant is reused, not trained again
    assert metrics_file.stat().st_mtime_ns == written
    assert table_rows(report.read_text())[f"`{VARIANTS[0]}`"][0] == f"{metrics[0]['best_val_loss']:.3f}"


def test_help_answers_without_a_traceback():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "gpt2chat.sweep", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage:") and "--recipes" in result.stdout
