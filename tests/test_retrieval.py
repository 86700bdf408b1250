"""BM25 retrieval: chat-style paraphrases find the right topic, the on-disk cache is exact, never stale and never
trusted when its files were damaged. (Question understanding and ``retrieve``: tests/test_understanding.py.)"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
from unittest import mock

import numpy as np
import pytest

from gpt2chat import settings
from gpt2chat.search import ranking, retrieval_eval
from gpt2chat.corpus.data import load_records
from gpt2chat.search.entailment import rqe_pairs
from gpt2chat.search.retrieval import IndexSettings, Passage, RetrievalIndex, cache_key
from tests.conftest import early_child, early_result, saved_index

# Written for these tests in everyday wording, unlike MedQuAD's "What are the treatments for X ?" templates.
PARAPHRASES = [
    ("my doctor says I have glaucoma, how is it treated?", "Glaucoma"),
    ("what can I do about gout flare ups in my big toe", "Gout"),
    ("my son keeps wheezing at night, could asthma be the reason and what helps", "Asthma"),
    ("blood clot in the leg veins after a long flight - what are the warning signs", "Deep Vein Thrombosis"),
    ("cloudy lens in the eye, is surgery the only fix", "Cataract"),
    ("can you get sick from home canned food toxin", "Botulism"),
    ("trouble swallowing because the esophagus does not relax", "Achalasia"),
    ("why is my mouth always so dry", "Dry Mouth"),
    ("my thyroid is overactive, which treatment options exist?", "Hyperthyroidism"),
    ("irregular fast heartbeat from the upper chambers of the heart", "Atrial Fibrillation"),
    ("is it ok to eat eggs if my cholesterol is too high", "High Blood Cholesterol"),
    ("sore bleeding gums when I brush my teeth", "Gum (Periodontal) Disease"),
]


RECORD_FILES = 30  # files of every subset: ~1,600 pairs


@pytest.fixture(scope="module")
def records(medquad_dir):
    records, _ = load_records(medquad_dir, limit_files=RECORD_FILES)
    return records


# A sample of the RQE train split keeps each small build at a few seconds; the app's index uses all of it.
RQE_SAMPLE = 400

# The module's index of ``records``, built by an early child (conftest) and saved: in this process the build was
# 8.7 s of the module's setup on the 2-core machine.
early_child("retrieval_index_dir", lambda folder: [sys.executable, "-c", (
    "import sys; from gpt2chat.corpus.data import load_records; from gpt2chat.search.entailment import rqe_pairs; "
    "from gpt2chat.search.retrieval import RetrievalIndex; "
    "RetrievalIndex.build(load_records(sys.argv[1], limit_files=int(sys.argv[2]))[0], "
    "rqe=rqe_pairs('train')[:int(sys.argv[3])]).save(sys.argv[4])"),
    str(settings.medquad_dir()), str(RECORD_FILES), str(RQE_SAMPLE), str(folder / "index")])


@pytest.fixture(scope="module")
def retrieval_index_dir(tmp_path_factory):
    return early_result("retrieval_index_dir", tmp_path_factory).folder / "index"


@pytest.fixture(scope="module")
def index(records, retrieval_index_dir):
    return saved_index(retrieval_index_dir, records)


@pytest.fixture(autouse=True)
def small_rqe_sample(monkeypatch):
    sample = rqe_pairs("train")[:RQE_SAMPLE]
    monkeypatch.setattr(ranking, "rqe_pairs", lambda split: sample)


@pytest.fixture
def small_tree(tmp_path, medquad_dir):
    """A private copy of a few MedQuAD files, to edit without touching the shared tree."""
    root = tmp_path / "medquad"
    for subset in ("7_SeniorHealth_QA", "8_NHLBI_QA_XML"):
        (root / subset).mkdir(parents=True)
        for path in sorted((medquad_dir / subset).glob("*.xml"))[:4]:
            shutil.copy2(path, root / subset / path.name)
    return root


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(settings.CACHE_ENV, str(cache))
    return cache / "retrieval"


@pytest.mark.parametrize("question, focus", PARAPHRASES)
def test_paraphrased_question_finds_its_focus_in_the_top_3(index, question, focus):
    foci = [p.focus.lower() for p in index.search(question, k=3)]
    assert focus.lower() in foci, foci


def test_search_returns_ranked_passages_with_their_fields(index, records):
    passages = index.search("What are the treatments for Glaucoma ?", k=5)
    assert 0 < len(passages) <= 5 and all(isinstance(p, Passage) for p in passages)
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)
    by_id = {r.pair_id: r for r in records}
    top = passages[0]
    assert top.focus == "Glaucoma" and top.answer == by_id[top.pair_id].answer and top.url.startswith("http")
    assert len(index) == len(records)


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "what is the", "?!", "zzqxvw"])
def test_queries_without_indexed_terms_return_nothing(index, query):
    assert index.search(query) == []


def test_k_is_capped_by_the_index_and_zero_gives_nothing(records):
    tiny = RetrievalIndex.build(records[:3], rqe=[])
    assert len(tiny.search(records[0].question, k=50)) <= 3
    assert tiny.search(records[0].question, k=0) == []


def test_an_index_built_without_understanding_searches_the_same_and_refuses_to_retrieve(index, records):
    """Training's references need ``search`` only, so its index skips the learned parts."""
    plain = RetrievalIndex.build(records, understand=False)
    assert plain.understanding is None
    question = records[7].question
    assert [(p.pair_id, p.score) for p in plain.search(question, k=5)] == [
        (p.pair_id, p.score) for p in index.search(question, k=5)]
    with pytest.raises(ValueError, match="without its question understanding"):
        plain.retrieve(question)


def test_save_and_load_give_identical_results(index, tmp_path):
    index.save(tmp_path / "saved")
    loaded = RetrievalIndex.load(tmp_path / "saved")
    assert len(loaded) == len(index)
    for question, _ in PARAPHRASES[:5]:
        assert loaded.search(question, k=5) == index.search(question, k=5)


def test_an_index_is_loaded_only_with_the_sentence_encoder_it_was_built_with(index, other_encoder, tmp_path):
    index.save(tmp_path / "saved")
    loaded = RetrievalIndex.load(tmp_path / "saved")
    question = "is there a test for glaucoma?"
    assert loaded.retrieve(question) == index.retrieve(question)
    with pytest.raises(ValueError, match="another sentence encoder"):
        RetrievalIndex.load(tmp_path / "saved", encoder=other_encoder)


def test_cache_key_follows_the_data_the_settings_and_the_encoder(small_tree, monkeypatch, tmp_path):
    key = cache_key(small_tree)
    assert cache_key(small_tree) == key
    assert cache_key(small_tree, IndexSettings(focus_field_weight=0.0)) != key
    assert cache_key(small_tree, encoder="hf://another/encoder") != key
    monkeypatch.setenv("GPT2CHAT_ENCODER", str(tmp_path))
    assert cache_key(small_tree) != key
    monkeypatch.delenv("GPT2CHAT_ENCODER")
    xml = next(small_tree.glob("7_*/*.xml"))
    xml.write_text(xml.read_text().replace("</Answer>", " Extra sentence.</Answer>", 1))
    assert cache_key(small_tree) != key


def test_load_or_build_rebuilds_when_the_data_changes(small_tree, private_cache):
    first = RetrievalIndex.load_or_build(small_tree)
    assert [d.name for d in private_cache.iterdir()] == [first.key]

    with mock.patch.object(RetrievalIndex, "build", side_effect=AssertionError("rebuilt an up-to-date index")):
        assert RetrievalIndex.load_or_build(small_tree).search("heart") == first.search("heart")

    xml = next(small_tree.glob("7_*/*.xml"))
    xml.write_text(xml.read_text().replace("</Answer>", " Quokkasaurus sentinel.</Answer>", 1))
    second = RetrievalIndex.load_or_build(small_tree)
    assert second.key != first.key and second.search("quokkasaurus")
    assert [d.name for d in private_cache.iterdir()] == [second.key]  # the stale index is gone


def _damage(directory, damage):
    if damage == "manifest":
        (directory / "manifest.json").write_text("{not json")
    elif damage == "passages":
        lines = (directory / "passages.jsonl").read_text().splitlines()
        (directory / "passages.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    elif damage == "array":
        (directory / "document" / "data.csc.index.npy").write_bytes(b"garbage")
    elif damage == "missing":
        shutil.rmtree(directory / "focus")
    elif damage == "out-of-range":  # a valid array whose token ids point past the vocabulary
        path = directory / "document" / "indices.csc.index.npy"
        indices = np.load(path)
        np.save(path, np.full_like(indices, np.iinfo(indices.dtype).max))
    elif damage == "emptied-vocabulary":  # readable, and retrieval would silently find nothing
        (directory / "document" / "vocab.index.json").write_text("{}")
    elif damage == "edited-passage":  # valid JSON lines with someone else's answer
        lines = (directory / "passages.jsonl").read_text().splitlines()
        first = json.loads(lines[0])
        lines[0] = json.dumps({**first, "answer": "Take 40 pills."})
        (directory / "passages.jsonl").write_text("\n".join(lines) + "\n")
    elif damage == "emptied-recogniser":
        (directory / "understanding" / "recogniser.json").write_text(json.dumps({}))


@pytest.fixture(scope="module")
def small_tree_cache(tmp_path_factory, medquad_dir):
    """(key, directory) of the small tree's cached index, built once for the damage tests, which each damage a copy
    (each built its own: 3-13 s apiece on the shared 2 cores, before the rebuild it tests)."""
    tree = tmp_path_factory.mktemp("tree") / "medquad"
    for subset in ("7_SeniorHealth_QA", "8_NHLBI_QA_XML"):  # as small_tree: the same files, so the same cache key
        (tree / subset).mkdir(parents=True)
        for path in sorted((medquad_dir / subset).glob("*.xml"))[:4]:
            shutil.copy2(path, tree / subset / path.name)
    cache = tmp_path_factory.mktemp("tree_cache")
    with pytest.MonkeyPatch.context() as patch:  # what small_rqe_sample does for each test, for this build
        sample = rqe_pairs("train")[:RQE_SAMPLE]
        patch.setattr(ranking, "rqe_pairs", lambda split: sample)
        patch.setenv(settings.CACHE_ENV, str(cache))
        built = RetrievalIndex.load_or_build(tree)
    return built.key, cache / "retrieval" / built.key


# One damage is rebuilt for real. The rebuild after any damage is the same code on the same records, so for the
# others ``build`` returns the pristine index (each real rebuild took 4-8 s on the shared 2 cores): what they check
# is that the damage is detected and load_or_build rebuilds from the tree's records and rewrites the cache.
REAL_REBUILD = "edited-passage"


@pytest.mark.parametrize("damage", ["manifest", "passages", "array", "missing", "out-of-range", "emptied-vocabulary",
                                    "edited-passage", "emptied-recogniser"])
def test_a_damaged_cache_is_rebuilt_with_a_warning(small_tree, private_cache, small_tree_cache, caplog, damage):
    key, pristine = small_tree_cache
    shutil.copytree(pristine, private_cache / key)
    with mock.patch.object(RetrievalIndex, "build", side_effect=AssertionError("the copied cache was not used")):
        built = RetrievalIndex.load_or_build(small_tree)
    directory = private_cache / built.key
    _damage(directory, damage)
    with pytest.raises((ValueError, OSError)):
        RetrievalIndex.load(directory, built.key)
    rebuild = contextlib.nullcontext() if damage == REAL_REBUILD else mock.patch.object(
        RetrievalIndex, "build", side_effect=lambda *args, **kwargs: RetrievalIndex.load(pristine, key))
    with caplog.at_level(logging.WARNING, logger="gpt2chat.search.retrieval"), rebuild as stand_in:
        rebuilt = RetrievalIndex.load_or_build(small_tree)
    assert "rebuilding" in caplog.text
    if stand_in is not None:  # rebuilt from all of the tree's pairs
        assert stand_in.call_count == 1 and len(stand_in.call_args.args[0]) == len(built)
    assert rebuilt.search("heart", k=3) == built.search("heart", k=3)
    reloaded = RetrievalIndex.load(directory, built.key)
    assert reloaded.search("heart", k=3) == built.search("heart", k=3)
    assert reloaded.retrieve("what causes angina?").passages(1) == built.retrieve("what causes angina?").passages(1)


def test_load_refuses_an_index_built_for_another_key(small_tree_cache):
    key, directory = small_tree_cache  # a saved index (building one for this test took 9.7 s on the shared cores)
    assert len(RetrievalIndex.load(directory, key)) > 0
    with pytest.raises(ValueError, match="key"):
        RetrievalIndex.load(directory, "0" * 20)


def test_command_line(small_tree, private_cache, small_tree_cache, capsys):
    key, pristine = small_tree_cache  # the small tree's cached index: --eval below builds one for real, timed
    shutil.copytree(pristine, private_cache / key)
    with pytest.raises(SystemExit) as exit_info:
        retrieval_eval.main(["--help"])
    assert exit_info.value.code == 0 and "--eval" in capsys.readouterr().out
    assert retrieval_eval.main(["how is angina treated", "--data", str(small_tree), "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Q: how is angina treated\n   foci: Angina (") and "\n   types: treatment (" in out
    assert "\n1. Angina" in out and "2. " in out and "http" in out
    assert retrieval_eval.main(["and what causes it?", "--history", "how is angina treated", "--data", str(small_tree)]) == 0
    assert "carried over" in capsys.readouterr().out
    assert retrieval_eval.main(["how much aspirin should I take", "--data", str(small_tree)]) == 0
    assert "No NIH answer found; MedlinePlus search: https://medlineplus.gov/search/?query=" in capsys.readouterr().out
    assert retrieval_eval.main(["--eval", "--data", str(small_tree)]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "p50" in out and "Index build" in out


def test_full_collection_index(medquad_dir, full_index_cache, monkeypatch):
    """The real knowledge base, from the run's cache (on a cold cache conftest's full_index_cache builds it: 41 s)."""
    monkeypatch.undo()  # the full RQE train split, as the app builds it
    index = RetrievalIndex.load_or_build(medquad_dir)  # its build time: gpt2chat eval retrieval medquad
    assert len(index) > 16000  # 16,375 answered pairs at the time of writing
    for question, focus in PARAPHRASES[:6]:
        assert focus.lower() in [p.focus.lower() for p in index.search(question, k=3)], question
