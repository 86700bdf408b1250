"""The README's first command: with no model, the app serves extracts while a model trains, then swaps it in."""

from __future__ import annotations

import app
from gpt2chat.chat.engine import ChatEngine, EngineConfig
from gpt2chat.chat.kinds import AnswerKind
from gpt2chat.chat.grounding import split_sentences
from gpt2chat.modeling.generation import SamplingConfig


def test_background_training_swaps_the_model_in_without_a_restart(tiny_engine, small_medquad, tmp_path, monkeypatch,
                                                                  sample_records):
    """The README's first command: the model trained in the background goes through the gate, and a model that beats
    the extract is then served (a stand-in selector that knows the NIH answers, since no tiny model can)."""
    from gpt2chat.chat import engine as engine_module
    from gpt2chat.chat.gate import GatePair
    from tests.test_engine import OracleScorer

    pairs = [GatePair(r.question, r.answer) for r in sample_records[:6]]
    monkeypatch.setattr(engine_module, "gate_pairs", lambda index, n: pairs)
    monkeypatch.setattr(engine_module.AnswerModel, "of", classmethod(
        lambda cls, causal_lm, config, generator=None: cls(scorer=OracleScorer(pairs))))
    engine = ChatEngine.build(EngineConfig(model=None), index=tiny_engine.index, masker=tiny_engine.masker,
                              safety=tiny_engine.safety)
    # The sample is enough (the gate's pairs and selector are stand-ins): the whole collection's read and larger
    # validation split cost the trainer ~8 s more (a 4.7 s read, a 3.6 s longer index build; shared 2 cores).
    training = app.BackgroundTraining(engine, tmp_path / "model", recipe="tiny", data=str(small_medquad))
    assert "Training the quick-start model in the background: step 0 of 20" in training.progress()
    question = sample_records[0].question
    before = engine.reply(question, sampling=SamplingConfig(max_new_tokens=8))
    assert before.answer_kind == AnswerKind.EXTRACT and before.answer and before.stats is None  # served at once
    assert training.swapped.wait(timeout=600), (tmp_path / "model" / "train.log").read_text()[-2000:]
    assert training.failed is None and engine.status.trusted and engine.status.gate.questions == len(pairs)
    assert engine.status.detail in training.progress() and "model answers shown" in engine.status.detail
    after = engine.reply(question, sampling=SamplingConfig(max_new_tokens=8))
    assert after.answer_kind == AnswerKind.MODEL and after.stats is None  # the selector's answer: nothing generated
    assert set(split_sentences(after.answer)) <= set(split_sentences(sample_records[0].answer))


def test_a_failed_background_training_is_reported_on_the_page(tiny_engine, tmp_path):
    engine = ChatEngine.build(EngineConfig(model=None), index=tiny_engine.index, masker=tiny_engine.masker,
                              safety=tiny_engine.safety)
    training = app.BackgroundTraining(engine, tmp_path / "model", recipe="tiny", data=str(tmp_path / "missing"))
    assert training.swapped.wait(timeout=300)
    assert "Model training failed" in training.progress() and not engine.status.loaded


def test_stopping_the_app_stops_its_background_training(tiny_engine, medquad_dir, tmp_path):
    engine = ChatEngine.build(EngineConfig(model=None), index=tiny_engine.index, masker=tiny_engine.masker,
                              safety=tiny_engine.safety)
    training = app.BackgroundTraining(engine, tmp_path / "model", recipe="tiny", data=str(medquad_dir))
    assert training.process.poll() is None
    training.stop(timeout_s=60)
    assert training.process.poll() is not None  # no orphan left to race the next start's trainer
    assert training.swapped.wait(timeout=30) and not engine.status.loaded
    training.stop()  # stopping twice is harmless
