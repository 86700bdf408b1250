"""The presentation: built from the generated livrables, re-opened with python-pptx, rendered when LibreOffice is
installed."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gpt2chat.reports import slides
from gpt2chat.serving import feedback_report

CHECKOUT = Path(__file__).resolve().parent.parent

LIVRABLES = CHECKOUT / "livrables"


def reopen(path: Path):
    from pptx import Presentation

    return Presentation(str(path))


def slide_texts(presentation) -> list[str]:
    texts = []
    for slide in presentation.slides:
        parts = [shape.text_frame.text for shape in slide.shapes if shape.has_text_frame]
        parts += [cell.text for shape in slide.shapes if shape.has_table for row in shape.table.rows
                  for cell in row.cells]
        texts.append("\n".join(parts))
    return texts


def picture_digests(presentation) -> set[str]:
    return {hashlib.sha1(shape.image.blob).hexdigest() for slide in presentation.slides for shape in slide.shapes
            if shape.shape_type == 13}  # MSO_SHAPE_TYPE.PICTURE


def digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_deck_from_the_repository_livrables_shows_their_figures(tmp_path):
    sources = slides.DeckSources(livrables=LIVRABLES, model_dir=tmp_path / "no-model",
                                 screenshot=CHECKOUT / "docs" / "screenshot.png")
    report = slides.build(sources, tmp_path / "deck.pptx")
    deck = reopen(report.path)
    assert len(deck.slides) == report.slides >= 8
    pictures = picture_digests(deck)
    figures = [*(LIVRABLES / "eda").glob("*.png"), *LIVRABLES.glob("comparison_*.png"), sources.screenshot]
    assert figures and all(digest(f) in pictures for f in figures)  # the files themselves, not redrawn copies
    texts = slide_texts(deck)
    eda_summary = (LIVRABLES / "eda" / "README.md").read_text()
    assert any(slides.paragraphs(eda_summary)[1] in text for text in texts)
    skipped = dict(report.skipped)
    assert "metrics.json not found" in skipped["model"]
    assert "not shown — model" in texts[-1] and "livrables/comparison.json" in texts[-1]
    assert report.path.stat().st_size < 2 * 1024 * 1024


@pytest.fixture
def full_sources(tmp_path):
    """The repository's livrables plus the sources it may lack: a training run, an optimisation report,
    feedback; the comparison's numbers changed, to prove the deck reads them."""
    livrables = tmp_path / "livrables"
    shutil.copytree(LIVRABLES, livrables, ignore=shutil.ignore_patterns("presentation.pptx", "feedback*"))
    comparison = json.loads((livrables / "comparison.json").read_text())
    first = next(iter(comparison["results"].values()))
    first["perplexity"]["perplexity"] = 123456.0
    (livrables / "comparison.json").write_text(json.dumps(comparison))

    run = tmp_path / "run"
    run.mkdir()
    history = [{"step": s, "train_loss": 7.0 - s / 100, "val_loss": 6.5 - s / 200, "val_perplexity": 700.0 - s,
                "tokens_per_second": 1300.0} for s in (100, 200, 300)]
    (run / "metrics.json").write_text(json.dumps({
        "parameters": 16156416, "tokens_seen": 614400, "best_step": 300, "best_val_loss": 5.0,
        "best_val_perplexity": 400.0, "median_tokens_per_second": 1300.0, "backend": "tensorflow",
        "history": history}))
    (run / "training_config.json").write_text(json.dumps({"size": "small", "preset": None, "steps": 300,
                                                          "batch_size": 8, "sequence_length": 256}))
    (livrables / "optimisation.md").write_text("# Making answers faster\n\n- int8 weights: 1.7x tokens/s\n"
                                               "- KV cache reuse\n\n![speed](eda/lengths.png)\n")
    rows = [{"created_at": f"2026-11-2{d}T10:00:00+00:00", "session_id": f"s{d}", "liked": d % 2 == 0,
             "reason": "" if d % 2 == 0 else "wrong", "question": "What causes gout?", "question_type": "causes",
             "answer": "Gout is caused by uric acid.", "sources": ["NIDDK"], "model_id": "models/default",
             "shown": "model"} for d in range(4)]
    feedback_report.write_report(rows, livrables)
    return slides.DeckSources(livrables=livrables, model_dir=run,
                              screenshot=CHECKOUT / "docs" / "screenshot.png")


def test_every_section_appears_when_its_source_exists(full_sources, tmp_path):
    report = slides.build(full_sources, tmp_path / "full.pptx")
    assert report.skipped == []
    texts = slide_texts(reopen(report.path))
    joined = "\n".join(texts)
    assert "16,156,416 parameters" in joined and "best validation perplexity 400.0" in joined
    assert "at step 300" in joined and "1,300 tokens/s" in joined
    assert "123,456" in joined  # the table shows what comparison.json says
    assert "Making answers faster" in joined and "int8 weights: 1.7x tokens/s" in joined
    assert "4 ratings" in joined and "50.0% thumbs up" in joined
    assert "What users said" in joined
    assert len(reopen(report.path).slides) == report.slides


def test_the_comparison_conclusion_and_both_domains_are_on_a_slide(full_sources, tmp_path):
    from gpt2chat.reports.report import comparison_conclusion

    path = full_sources.livrables / "comparison.json"
    comparison = json.loads(path.read_text())
    measured = [m for m in comparison["models"] if m["label"] in comparison["results"]]
    labels = [m["label"] for m in measured]
    for model, family, general, medquad in ((measured[0], "generic", 41.5, 612.0),
                                            (measured[1], "specialised", 333.3, 171.2)):
        model["family"] = family
        comparison["results"][model["label"]]["domain_perplexity"] = {
            "general": {"perplexity": general}, "medquad": {"perplexity": medquad}}
    path.write_text(json.dumps(comparison))
    joined = "\n".join(slide_texts(reopen(slides.build(full_sources, tmp_path / "deck.pptx").path)))
    conclusion = comparison_conclusion(comparison)
    assert "41.5 for the generic model" in conclusion and slides.plain(conclusion) in joined
    assert "612.0" in joined and "333.3" in joined and labels[1] in joined


def test_command_writes_the_deck_and_says_what_it_skipped(tmp_path, capsys):
    out = tmp_path / "deck.pptx"
    assert slides.main(["--out", str(out), "--model-dir", str(tmp_path / "none")]) == 0
    printed = capsys.readouterr().out
    assert "skipped model: " in printed and f"wrote {out}" in printed
    assert slides.main(["--livrables", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "no livrables directory" in capsys.readouterr().err


def test_markdown_helpers_keep_identifiers():
    markdown = "**Bold** `gpt2_base_en` <US_SSN> _it_ [NIH](https://nih.gov)"
    assert slides.plain(markdown) == "Bold gpt2_base_en <US_SSN> it NIH"
    text = "# T\n\nintro\n\n- **One.** first\n  more\n- two\n\n### Sub\n\n- three\n"
    assert slides.bullets(slides.section(text, "T")) == ["One. first more", "two"]


def test_libreoffice_renders_the_deck(tmp_path):
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        pytest.skip("LibreOffice (soffice) is not installed: the deck is only re-opened with python-pptx here")
    report = slides.build(slides.DeckSources(model_dir=tmp_path / "none"), tmp_path / "deck.pptx")
    subprocess.run([soffice, "--headless", "--convert-to", "pdf", "--outdir", str(tmp_path), str(report.path)],
                   check=True, timeout=180, capture_output=True)
    pdf = tmp_path / "deck.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.read_bytes().count(b"/Type /Page") >= report.slides
