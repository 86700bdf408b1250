"""EDA on a small MedQuAD sample: figures are valid PNGs and the summary's numbers match a direct recount."""

from __future__ import annotations

import collections

import pytest
from PIL import Image

from gpt2chat import eda
from gpt2chat.data import load_records
from gpt2chat.prompt import training_example

LIMIT_FILES = 5


@pytest.fixture(scope="module")
def sample(medquad_dir):  # conftest's fixture: fails loudly when MedQuAD is missing
    return load_records(medquad_dir, limit_files=LIMIT_FILES)


@pytest.fixture(scope="module")
def tokenizer():
    from gpt2chat.tokenizer import gpt2_tokenizer

    return gpt2_tokenizer()


@pytest.fixture(scope="module")
def result(sample, tokenizer, tmp_path_factory):
    records, report = sample
    return eda.run_eda(records, report, tmp_path_factory.mktemp("eda"), tokenizer=tokenizer)


def test_figures_are_valid_small_pngs(result):
    expected = {"sources", "question_types", "top_foci", "questions_cloud", "answers_cloud", "type_clouds", "lengths"}
    assert set(result.figures) == expected
    for path in result.figures.values():
        assert path.suffix == ".png" and path.stat().st_size < 300_000, path
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG"


def test_summary_links_every_figure_relatively(result):
    text = result.summary.read_text(encoding="utf-8")
    for path in result.figures.values():
        assert f"]({path.name})" in text


def test_context_table_matches_direct_recount(sample, tokenizer, result):
    records, _ = sample
    answers = [len(tokenizer(r.answer)) for r in records]
    examples = [len(tokenizer(training_example(r.question, r.answer))) for r in records]
    text = result.summary.read_text(encoding="utf-8")
    assert "| context (tokens) | answers longer |" in text
    for context in (256, 512, 1024):
        over = sum(n > context for n in answers)
        fit = sum(n <= context for n in examples)
        row = (f"| {context} | {over} | {100 * over / len(records):.1f}% "
               f"| {fit} | {100 * fit / len(records):.1f}% |")
        assert row in text


def test_counts_match_the_records(sample, result):
    records, report = sample
    stats = result.stats
    assert stats["records"] == len(records) == sum(report.kept.values())
    assert dict(stats["question_types"]) == collections.Counter(r.question_type for r in records)
    dispositions = sum(s["kept"] + s["no_answer"] + s["duplicates"] for s in stats["sources"])
    assert dispositions == sum(report.pairs_seen.values())


def test_boilerplate_and_template_words_are_left_out():
    hpo = ("What are the signs and symptoms of ABCD syndrome? The Human Phenotype Ontology provides the following "
           "list of signs and symptoms for ABCD syndrome. Albinism - Hearing impairment")
    assert "Phenotype" not in eda.strip_boilerplate(hpo)
    questions = eda.word_frequencies(["What are the symptoms of Wilson Disease ?"], eda.stopwords("questions"))
    assert set(questions) == {"wilson", "disease"}
    answers = eda.word_frequencies(["Treatment may also include surgery."], eda.stopwords("answers", "treatment"))
    assert set(answers) == {"surgery"}


def test_cli_without_tokens(medquad_dir, tmp_path):
    assert eda.main(["--data", str(medquad_dir), "--limit-files", "1", "--no-tokens", "--out", str(tmp_path)]) == 0
    assert "Skipped (`--no-tokens`)" in (tmp_path / "README.md").read_text(encoding="utf-8")
    assert not (tmp_path / "lengths.png").exists()


def test_cli_missing_data_is_a_one_line_error(tmp_path, capsys):
    assert eda.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    assert not (tmp_path / "out").exists()


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        eda.main(["--help"])
    assert exit_info.value.code == 0
    assert "--no-tokens" in capsys.readouterr().out
