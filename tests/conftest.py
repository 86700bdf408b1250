"""Shared fixtures: a small real sample of MedQuAD and a tiny GPT-2 trained on it for a few steps."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from gpt2chat import settings


@pytest.fixture(scope="session")
def medquad_dir():
    path = settings.medquad_dir()
    if not path.is_dir():
        pytest.fail(f"MedQuAD is expected at {path} (set {settings.MEDQUAD_ENV})")
    return path


@pytest.fixture(scope="session")
def sample_records(medquad_dir):
    from gpt2chat.corpus.data import load_records

    records, _ = load_records(medquad_dir, limit_files=20)
    return records


@pytest.fixture(scope="session")
def masker():
    """One PII masker for the whole run (building one loads spaCy: about a second), as the app builds one."""
    from gpt2chat.guard.masking import PIIMasker

    return PIIMasker()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, medquad_dir):
    """A tiny model trained for 20 steps: its directory is a Keras-Hub preset plus the run's files."""
    from gpt2chat.modeling.train import TrainConfig, train

    output = tmp_path_factory.mktemp("tiny_run")
    summary = train(TrainConfig.from_recipe("tiny", output=str(output), data=str(medquad_dir)))
    return output, summary


@pytest.fixture(scope="session")
def tiny_engine(tiny_run, sample_records):
    """A chat engine over the tiny model and a retrieval index of the sample."""
    from gpt2chat.chat.engine import ChatEngine, EngineConfig
    from gpt2chat.modeling.model import load_preset
    from gpt2chat.search.retrieval import RetrievalIndex

    output, _ = tiny_run
    engine = ChatEngine.build(EngineConfig(model=str(output), answer_mode="generate"), causal_lm=load_preset(output),
                              index=RetrievalIndex.build(sample_records))
    engine.serve_ungated()  # the generating path under test; the gate has tests of its own
    return engine
