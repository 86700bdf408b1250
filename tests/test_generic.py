"""The generic baseline: the general-English corpus (WordNet, read in place), the generic and from-generic recipes,
and how the comparison concludes from its numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpt2chat import settings
from gpt2chat.cli import run
from gpt2chat.corpus import generic
from gpt2chat.modeling.rundir import RunDirectory
from gpt2chat.modeling.training_config import TrainConfig
from gpt2chat.reports.report import comparison_conclusion

# wndb(5WN) lines: offset, lexicographer file, type, word count (hex), words with lex ids, pointers, | gloss
VERB = ("00002573 29 v 01 respire 2 003 $ 00001740 v 0000 @ 00001740 v 0000 + 03110323 a 0101 01 + 02 00 | "
        "breathe easily again, as after exertion or anxiety  \n")
ADJECTIVE = ('01382086 00 a 03 big(a) 0 large 0 big 1 001 ! 01384212 a 0101 | above average in size; '
             '"a big house"; "large crowds"  \n')


def test_a_synset_line_becomes_one_line_of_text():
    assert generic.synset_text(VERB, "verb") == "Respire (verb): breathe easily again, as after exertion or anxiety."
    assert generic.synset_text(ADJECTIVE, "adjective") == (
        'Big, large (adjective): above average in size. "A big house." "Large crowds."')
    assert generic.synset_text("  1 This software and database is being provided\n", "noun") is None


@pytest.fixture()
def small_wordnet(tmp_path):
    """A WordNet directory of 400 synthetic synsets per part of speech, in the real files' format."""
    for name in generic.DATA_FILES.values():
        lines = ["  1 licence header line\n"] + [
            f"{i:08d} 03 n 01 thing{i} 0 000 | definition number {i} of {name}; \"example {i}\"  \n"
            for i in range(400)]
        (tmp_path / name).write_text("".join(lines), encoding="utf-8")
    return tmp_path


def test_splits_are_disjoint_complete_and_stable(small_wordnet):
    splits = {name: generic.read_texts(name, small_wordnet) for name in generic.SPLITS}
    every = [t for texts in splits.values() for t in texts]
    assert len(every) == len(set(every)) == 1600
    assert 16 <= len(splits["test"]) <= 80 and 16 <= len(splits["validation"]) <= 80  # 3% each: 48 expected
    assert generic.read_texts("test", small_wordnet) == splits["test"]
    assert generic.read_texts("train", small_wordnet, limit=5) == splits["train"][:5]
    with pytest.raises(ValueError, match="unknown split"):
        generic.read_texts("dev", small_wordnet)


def test_the_installed_corpus_is_read_in_place():
    if not (settings.wordnet_dir() / "data.noun").is_file():
        pytest.skip("wordnet-base is not installed (bash scripts/setup.sh installs it)")
    test = generic.read_texts("test")
    assert 3000 < len(test) < 4200  # 3% of WordNet 3.0's 117,659 synsets
    assert test[0] == ("Group, grouping (noun): any number of entities (members) considered as a unit.")


def test_a_missing_corpus_is_a_one_line_error_naming_the_package(tmp_path, capsys):
    output = tmp_path / "run"
    assert run("train", ["--recipe", "generic", "--data", str(tmp_path / "none"), "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "apt-get install wordnet-base" in error
    assert not (output / "training_config.json").exists()


def test_generic_recipe_has_the_quick_start_budget_and_from_generic_starts_from_it():
    quickstart, generic_config = TrainConfig.from_recipe("quickstart"), TrainConfig.from_recipe("generic")
    assert generic_config.corpus == "generic" and quickstart.corpus == "medquad"
    for name in ("size", "sequence_length", "batch_size", "steps", "learning_rate", "preset"):
        assert getattr(generic_config, name) == getattr(quickstart, name), name
    assert generic_config.output == str(settings.HOME / "models" / "generic")
    from_generic = TrainConfig.from_recipe("from-generic")
    assert from_generic.preset == generic_config.output and from_generic.corpus == "medquad"
    assert TrainConfig.from_recipe("from-generic", preset="/elsewhere").preset == "/elsewhere"


def test_a_run_written_before_the_corpus_setting_still_resumes_but_not_as_generic(tmp_path):
    run_dir = RunDirectory(tmp_path / "old")
    old = {"steps": 400, "size": "small"}  # a quick-start run's settings, recorded before "corpus" existed
    run_dir.prepare(old)
    run_dir.prepare({**old, "corpus": "medquad"})
    with pytest.raises(ValueError, match="corpus"):
        RunDirectory(tmp_path / "old").prepare({**old, "corpus": "generic"})


def test_generic_run_trains_on_general_text_and_is_a_preset(tiny_generic_run):
    output, summary = tiny_generic_run
    saved = json.loads((output / "training_config.json").read_text())
    assert saved["corpus"] == "generic" and saved["size"] == "tiny"
    assert not (output / "split.json").exists()  # no MedQuAD split: the corpus splits itself
    history = summary["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"] - 0.5
    assert summary["training_answer_tokens_available"] == summary["training_tokens_available"]  # every token


def test_from_generic_starts_from_the_generic_weights(tiny_generic_run, tmp_path):
    from gpt2chat.modeling.model import load_preset
    from gpt2chat.modeling.training_model import build_training_model

    output, _ = tiny_generic_run
    config = TrainConfig.from_recipe("from-generic", preset=str(output), output=str(tmp_path / "from"),
                                     sequence_length=32)
    causal_lm, _ = build_training_model(config)
    expected = load_preset(output).backbone.token_embedding.embeddings.numpy()
    assert np.array_equal(causal_lm.backbone.token_embedding.embeddings.numpy(), expected)


def _result(g_gen, s_gen, g_med, s_med, b_med):
    def measured(general, medquad, rouge2=None):
        entry = {"domain_perplexity": {"general": {"perplexity": general}, "medquad": {"perplexity": medquad}}}
        if rouge2 is not None:
            entry["shown"] = {"b": {"rouge2": rouge2}}
        return entry

    return {"models": [{"label": "models/generic", "family": "generic"},
                       {"label": "models/from-generic", "family": "generic→specialised"},
                       {"label": "models/default", "family": "specialised"}],
            "shown_sets": {"b": "MedQuAD test, gold section held out (3)"},
            "results": {"models/generic": measured(g_gen, g_med, 1.5), "models/from-generic": measured(90.0, b_med, 4.25),
                        "models/default": measured(s_gen, s_med, 3.0), "baseline: extract": {"shown": {"b": {"rouge2": 5.0}}}}}


def test_the_conclusion_is_written_from_the_numbers():
    text = comparison_conclusion(_result(g_gen=40.0, s_gen=300.0, g_med=500.0, s_med=150.0, b_med=120.0))
    assert ("held-out general English text: 40.0 for the generic model (`models/generic`) against 300.0 for the "
            "specialised model trained from scratch (`models/default`); on MedQuAD test answers: 500.0 against "
            "150.0. Each model is better on its own domain") in text
    assert "gives 120.0 on MedQuAD answers, better than training from scratch (150.0), and keeps 90.0" in text
    assert ("`baseline: extract` scores 5.00, `models/from-generic` scores 4.25, `models/default` scores 3.00, "
            "`models/generic` scores 1.50: `baseline: extract` leads.") in text
    reversed_ = comparison_conclusion(_result(g_gen=400.0, s_gen=300.0, g_med=500.0, s_med=150.0, b_med=170.0))
    assert "does not hold here: the generic model is not better on general text" in reversed_
    assert "no better than training from scratch (150.0)" in reversed_
    both = comparison_conclusion(_result(g_gen=40.0, s_gen=300.0, g_med=100.0, s_med=150.0, b_med=120.0))
    assert "does not hold here: the generic model is better on general text and better on MedQuAD answers." in both
