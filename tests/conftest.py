"""Shared fixtures: a small real sample of MedQuAD and a tiny GPT-2 trained on it for a few steps."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from gpt2chat import settings

# The whole collection's retrieval index in the run's cache (settings.cache_dir()), which the served app, the
# comparison, deploy and test_retrieval read: built by a child process started as soon as the tests are collected,
# when one of them needs it (``full_index_cache``). On a cold cache the build took 41 s on the 2-core machine and
# the first test needing it (test_browser's app) waited for all of it; the child builds it on the second core while
# the first modules run in this process. On a warm cache the child only loads it (3 s).
_BUILD_FULL_INDEX = "import sys; from gpt2chat.search.retrieval import RetrievalIndex; RetrievalIndex.load_or_build(sys.argv[1])"
_full_index_build: dict = {}


def pytest_collection_finish(session):
    if not any("full_index_cache" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    medquad = settings.medquad_dir()
    if not medquad.is_dir():
        return  # the medquad_dir fixture fails the tests that need it, naming the path
    log = tempfile.TemporaryFile()
    _full_index_build.update(log=log, process=subprocess.Popen(
        [sys.executable, "-c", _BUILD_FULL_INDEX, str(medquad)], stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, settings.CACHE_ENV: str(settings.cache_dir())}))


def pytest_sessionfinish(session):
    process = _full_index_build.get("process")
    if process is not None and process.poll() is None:  # the run stopped before a test needed the index
        process.terminate()
        process.wait()


@pytest.fixture(scope="session")
def full_index_cache(medquad_dir):
    """The cache folder holding the whole collection's retrieval index, once the child process started at collection
    has built (or loaded) it; built here when no child was started."""
    process = _full_index_build.get("process")
    if process is None:
        from gpt2chat.search.retrieval import RetrievalIndex

        RetrievalIndex.load_or_build(medquad_dir)
    elif process.wait() != 0:
        log = _full_index_build["log"]
        log.seek(0)
        pytest.fail(f"building the retrieval index of {medquad_dir} failed:\n"
                    + log.read().decode(errors="replace")[-3000:])
    return settings.cache_dir()


@pytest.fixture(scope="session")
def medquad_dir():
    path = settings.medquad_dir()
    if not path.is_dir():
        pytest.fail(f"MedQuAD is expected at {path} (set {settings.MEDQUAD_ENV})")
    return path


@pytest.fixture(scope="session")
def full_medquad(medquad_dir):
    """(records, report) of the whole collection, read once for the run (5-7 s a read on the shared 2 cores; three
    modules read it). The records are frozen dataclasses in a list that no test changes."""
    from gpt2chat.corpus.data import load_records

    return load_records(medquad_dir)


@pytest.fixture(scope="session")
def sample_records(medquad_dir):
    from gpt2chat.corpus.data import load_records

    records, _ = load_records(medquad_dir, limit_files=20)
    return records


@pytest.fixture(scope="session")
def small_medquad(tmp_path_factory, medquad_dir):
    """The first 40 files of every MedQuAD subset (2,082 answered pairs): reading it takes under a second, where the
    whole collection takes several (and a training run builds its retrieval index and validation rows from it), so
    a test whose assertion does not need the whole collection trains or answers on this copy."""
    import shutil

    root = tmp_path_factory.mktemp("medquad")
    for subset in sorted(p for p in medquad_dir.iterdir() if p.is_dir()):
        (root / subset.name).mkdir()
        for path in sorted(subset.glob("*.xml"))[:40]:
            shutil.copy(path, root / subset.name / path.name)
    return root


@pytest.fixture(scope="session")
def small_medquad_index_cache(tmp_path_factory, small_medquad):
    """A ``retrieval`` cache folder holding the index of ``small_medquad``, built once for the run: the notebooks and
    the sweep each built the same one into their own cache (12 s apiece on the shared 2 cores). Each copies it into
    its own cache (``seed_index_cache``), which load_or_build then reads instead of building."""
    from gpt2chat.search.retrieval import RetrievalIndex

    cache = tmp_path_factory.mktemp("small_medquad_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(settings.CACHE_ENV, str(cache))
        RetrievalIndex.load_or_build(small_medquad)
    return cache / "retrieval"


def seed_index_cache(index_cache, cache_dir) -> None:
    """Copy a ``retrieval`` cache folder (``small_medquad_index_cache``) into the cache folder ``cache_dir``."""
    import shutil

    shutil.copytree(index_cache, Path(cache_dir) / "retrieval")


@pytest.fixture(scope="session")
def masker():
    """One PII masker for the whole run (building one loads spaCy: about a second), as the app builds one."""
    from gpt2chat.guard.masking import PIIMasker

    return PIIMasker()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, medquad_dir):
    """A tiny model trained for 20 steps: its directory is a Keras-Hub preset plus the run's files."""
    from gpt2chat.modeling.train import train
    from gpt2chat.modeling.training_config import TrainConfig

    output = tmp_path_factory.mktemp("tiny_run")
    summary = train(TrainConfig.from_recipe("tiny", output=str(output), data=str(medquad_dir)))
    return output, summary


@pytest.fixture(scope="session")
def tiny_generic_run(tmp_path_factory):
    """The generic recipe at the tiny size on 300 synthetic WordNet lines, 10 steps."""
    from gpt2chat.corpus import generic
    from gpt2chat.modeling.train import train
    from gpt2chat.modeling.training_config import TrainConfig

    root = tmp_path_factory.mktemp("generic")
    wordnet = root / "wordnet"
    wordnet.mkdir()
    for name in generic.DATA_FILES.values():
        (wordnet / name).write_text("".join(
            f"{i:08d} 03 n 01 thing{i} 0 000 | the {i}th thing that is {name}; \"a thing {i}\"  \n"
            for i in range(300)), encoding="utf-8")
    output = root / "run"
    summary = train(TrainConfig.from_recipe("generic", output=str(output), data=str(wordnet), size="tiny",
                                            sequence_length=32, batch_size=4, steps=10, eval_interval=5,
                                            warmup_steps=2, eval_rows=8, learning_rate=0.003))
    return output, summary


@pytest.fixture(scope="session")
def sample_index(sample_records):
    """The retrieval index of the sample, built once for the run (about 10 s on the shared 2 cores, measured as the
    setup of each of three modules that built their own); no test changes it."""
    from gpt2chat.search.retrieval import RetrievalIndex

    return RetrievalIndex.build(sample_records)


@pytest.fixture(scope="session")
def tiny_engine(tiny_run, sample_index):
    """A chat engine over the tiny model and the retrieval index of the sample."""
    from gpt2chat.chat.engine import ChatEngine, EngineConfig
    from gpt2chat.modeling.model import load_preset

    output, _ = tiny_run
    engine = ChatEngine.build(EngineConfig(model=str(output), answer_mode="generate"), causal_lm=load_preset(output),
                              index=sample_index)
    engine.serve_ungated()  # the generating path under test; the gate has tests of its own
    return engine


@pytest.fixture(scope="session")
def live_app(tiny_run, medquad_dir, full_index_cache, tmp_path_factory):
    """The repository's app.py serving the tiny model, started once for test_browser and test_ui (a start took
    18-66 s on the shared 2 cores, and each module started its own)."""
    from tests.test_ui import REPO_ROOT, serve_app

    preset, _ = tiny_run
    log_path = tmp_path_factory.mktemp("live_app") / "app.log"
    with serve_app(REPO_ROOT, log_path, GPT2CHAT_MODEL=str(preset), GPT2CHAT_MEDQUAD=str(medquad_dir)) as url:
        yield url
