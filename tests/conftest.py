"""Shared fixtures: a small real sample of MedQuAD and a tiny GPT-2 trained on it for a few steps."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from gpt2chat import settings

# Child processes started once the tests are collected, for the fixtures (``early_child``) that the selected tests
# use: work that is mostly one core's, which the first test needing it used to wait for, done on the second core while
# the tests before it run in this process (the README's test command kept one of the 2 cores 92% busy: 900 s of CPU
# in 974 s). One child at a time, in the order the tests need them, so that they take the second core only; a
# fixture whose child has not started yet starts it at once.
_EARLY: dict[str, tuple] = {}  # fixture name -> (command, environment, cwd)
_CHILDREN: dict[str, "EarlyChild"] = {}


def early_child(fixture: str, command, environment=dict, cwd: Path | None = None) -> None:
    """Register the child of ``fixture``: ``command(folder)`` is its argv, given a new folder that it may write to,
    run with ``environment()`` added to this process's environment (in ``cwd``, else this process's working
    directory); the fixture waits for it with ``early_result``."""
    assert fixture not in _EARLY, f"two early children for {fixture}: fixture names are one namespace here"
    _EARLY[fixture] = (command, environment, cwd)


class EarlyChild:
    def __init__(self, fixture: str, folder: Path, command, environment, cwd):
        self.fixture, self.folder = fixture, folder
        self.command, self.environment, self.cwd = command, environment, cwd
        self.process: subprocess.Popen | None = None
        self.closed = False
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.lock:
            if self.process is None and not self.closed:
                with open(self.folder / "output.txt", "wb") as output:
                    self.process = subprocess.Popen(
                        self.command(self.folder), stdout=output, stderr=subprocess.STDOUT,
                        env={**os.environ, **self.environment()}, cwd=self.cwd)

    def result(self) -> str:
        """Its output once it has ended; the calling test fails, with the end of that output, if it failed."""
        self.start()
        code = self.process.wait()
        output = (self.folder / "output.txt").read_text(errors="replace")
        if code != 0:
            pytest.fail(f"the child process of {self.fixture} exited with {code}:\n{output[-3000:]}")
        return output

    def close(self) -> None:
        with self.lock:
            self.closed = True
            if self.process is not None and self.process.poll() is None:  # the run stopped before a test needed it
                self.process.kill()
                self.process.wait()


def _child(fixture: str, tmp_path_factory) -> EarlyChild:
    """The child of ``fixture``, made on first asking (at collection, or when only its tests were named)."""
    if fixture not in _CHILDREN:
        _CHILDREN[fixture] = EarlyChild(fixture, tmp_path_factory.mktemp(fixture), *_EARLY[fixture])
    return _CHILDREN[fixture]


def early_result(fixture: str, tmp_path_factory) -> EarlyChild:
    """The child of ``fixture``, ended."""
    child = _child(fixture, tmp_path_factory)
    child.result()
    return child


def saved_index(folder, records):
    """The retrieval index an early child saved in ``folder``, checked to hold ``records`` (its module's)."""
    from gpt2chat.search.retrieval import RetrievalIndex

    index = RetrievalIndex.load(folder)
    assert len(index) == len(records)
    return index


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    needed = []  # in the order of the first test that uses each
    for item in session.items:
        needed += [name for name in getattr(item, "fixturenames", ()) if name in _EARLY and name not in needed]
    children = [_child(fixture, session.config._tmp_path_factory) for fixture in needed]

    def one_at_a_time(children):
        for child in children:
            child.start()
            if child.process is not None:
                child.process.wait()

    threading.Thread(target=one_at_a_time, args=(children,), daemon=True).start()


def pytest_sessionfinish(session):
    for child in _CHILDREN.values():
        child.close()
    _stop_live_app()  # booted for a test that the run stopped before


# The whole collection's retrieval index in the run's cache (settings.cache_dir()), which the served app, the
# comparison, deploy and test_retrieval read. On a cold cache the build took 41 s on the 2-core machine, and the first
# test needing it (test_browser's app) waited for all of it. On a warm cache the child only loads it (3 s).
early_child("full_index_cache", lambda folder: [
    sys.executable, "-c", "import sys; from gpt2chat.search.retrieval import RetrievalIndex; "
                          "RetrievalIndex.load_or_build(sys.argv[1])", str(settings.medquad_dir())],
    lambda: {settings.CACHE_ENV: str(settings.cache_dir())})


@pytest.fixture(scope="session")
def full_index_cache(medquad_dir, tmp_path_factory):
    """The cache folder holding the whole collection's retrieval index, once its child has built (or loaded) it."""
    early_result("full_index_cache", tmp_path_factory)
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


SAMPLE_FILES = 20  # files read from each MedQuAD subset for sample_records and sample_index


@pytest.fixture(scope="session")
def sample_records(medquad_dir):
    from gpt2chat.corpus.data import load_records

    records, _ = load_records(medquad_dir, limit_files=SAMPLE_FILES)
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
def tiny_run(request, tmp_path_factory, medquad_dir):
    """A tiny model trained for 20 steps: its directory is a Keras-Hub preset plus the run's files. When a selected
    test uses ``live_app``, the app serving this model starts booting as soon as the model is saved."""
    from gpt2chat.modeling.train import train
    from gpt2chat.modeling.training_config import TrainConfig

    output = tmp_path_factory.mktemp("tiny_run")
    summary = train(TrainConfig.from_recipe("tiny", output=str(output), data=str(medquad_dir)))
    if any("live_app" in getattr(item, "fixturenames", ()) for item in request.session.items):
        _boot_live_app(output, medquad_dir, tmp_path_factory)
    return output, summary


# The generic recipe at the tiny size on 300 synthetic WordNet lines, 10 steps (12 s of test_compare's setup on the
# 2-core machine, trained in this process), trained by an early child into its folder's run/.
_TINY_GENERIC_RUN = r"""
import sys
from pathlib import Path
from gpt2chat.corpus import generic
from gpt2chat.modeling.train import train
from gpt2chat.modeling.training_config import TrainConfig

root = Path(sys.argv[1])
wordnet = root / "wordnet"
wordnet.mkdir()
for name in generic.DATA_FILES.values():
    (wordnet / name).write_text("".join(
        f"{i:08d} 03 n 01 thing{i} 0 000 | the {i}th thing that is {name}; \"a thing {i}\"  \n"
        for i in range(300)), encoding="utf-8")
train(TrainConfig.from_recipe("generic", output=str(root / "run"), data=str(wordnet), size="tiny",
                              sequence_length=32, batch_size=4, steps=10, eval_interval=5, warmup_steps=2,
                              eval_rows=8, learning_rate=0.003))
"""
early_child("tiny_generic_run", lambda folder: [sys.executable, "-c", _TINY_GENERIC_RUN, str(folder)])


@pytest.fixture(scope="session")
def tiny_generic_run(tmp_path_factory):
    """(run directory, the summary its training returned, as saved in metrics.json)."""
    import json

    output = early_result("tiny_generic_run", tmp_path_factory).folder / "run"
    return output, json.loads((output / "metrics.json").read_text())


# The retrieval index of the sample (``sample_records``), built by an early child and saved in its folder's index/:
# in this process the build was 7-14 s of test_app's setup, after tiny_run's training. The saved index answers as the
# built one: the same search and retrieve results for 160 questions (156 of the sample's and 4 others).
early_child("sample_index", lambda folder: [sys.executable, "-c", (
    "import sys; from gpt2chat.corpus.data import load_records; from gpt2chat.search.retrieval import RetrievalIndex; "
    "RetrievalIndex.build(load_records(sys.argv[1], limit_files=int(sys.argv[2]))[0]).save(sys.argv[3])"),
    str(settings.medquad_dir()), str(SAMPLE_FILES), str(folder / "index")])


@pytest.fixture(scope="session")
def sample_index(medquad_dir, tmp_path_factory):
    """The retrieval index of the sample, built once for the run; no test changes it."""
    from gpt2chat.search.retrieval import RetrievalIndex

    return RetrievalIndex.load(early_result("sample_index", tmp_path_factory).folder / "index")


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


# The live app boots on a thread, as soon as tiny_run has saved the model it serves: its boot (the TensorFlow import,
# the model, the masker, the index and the warm-up in a child process: 18-66 s on the shared 2 cores) then overlaps
# the modules before test_browser, the first to use it, instead of being that module's setup.
_LIVE_APP: dict = {}


def _boot_live_app(preset, medquad_dir, tmp_path_factory) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.test_ui import REPO_ROOT, serve_app

    stack = contextlib.ExitStack()
    log_path = tmp_path_factory.mktemp("live_app") / "app.log"

    def boot() -> str:
        early_result("full_index_cache", tmp_path_factory)  # the app reads it from the cache
        return stack.enter_context(serve_app(REPO_ROOT, log_path, GPT2CHAT_MODEL=str(preset),
                                             GPT2CHAT_MEDQUAD=str(medquad_dir)))

    pool = ThreadPoolExecutor(max_workers=1)
    _LIVE_APP.update(url=pool.submit(boot), stack=stack)
    pool.shutdown(wait=False)


def _stop_live_app() -> None:
    if _LIVE_APP:
        with contextlib.suppress(BaseException):
            _LIVE_APP["url"].result()  # the boot's own thread must be done with the app before it is stopped
        _LIVE_APP.pop("stack").close()
        _LIVE_APP.clear()


@pytest.fixture(scope="session")
def live_app(tiny_run, medquad_dir, full_index_cache, tmp_path_factory):
    """The repository's app.py serving the tiny model, started once for test_browser and test_ui (each module
    started its own); its URL once it answers."""
    if not _LIVE_APP:
        _boot_live_app(tiny_run[0], medquad_dir, tmp_path_factory)
    try:
        yield _LIVE_APP["url"].result()  # fails the test, with the app's log, if it did not start
    finally:
        _stop_live_app()


class OtherEncoder:
    """A stand-in sentence encoder that reads every sentence differently from the real one."""

    dim = 384

    def encode(self, texts):
        return np.ones((len(texts), self.dim), dtype=np.float32) / np.sqrt(self.dim)


@pytest.fixture
def other_encoder():
    return OtherEncoder()
