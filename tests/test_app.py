"""The README's first command: with no model, the app serves extracts while a model trains, then swaps it in."""

from __future__ import annotations

import app
from gpt2chat.chat.engine import EXTRACT_ANSWER, ChatEngine, EngineConfig
from gpt2chat.modeling.generation import SamplingConfig


def test_background_training_swaps_the_model_in_without_a_restart(tiny_engine, medquad_dir, tmp_path):
    engine = ChatEngine.build(EngineConfig(model=None), index=tiny_engine.index, masker=tiny_engine.masker,
                              safety=tiny_engine.safety)
    training = app.BackgroundTraining(engine, tmp_path / "model", recipe="tiny", data=str(medquad_dir))
    assert "Training the quick-start model in the background: step 0 of 20" in training.progress()
    before = engine.reply("How is glaucoma treated?", sampling=SamplingConfig(max_new_tokens=8))
    assert before.answer_kind == EXTRACT_ANSWER and before.answer and before.stats is None  # served at once
    assert training.swapped.wait(timeout=600), (tmp_path / "model" / "train.log").read_text()[-2000:]
    assert training.failed is None and engine.status.loaded and engine.status.gate_pass_rate is not None
    assert engine.status.detail in training.progress()
    after = engine.reply("How is glaucoma treated?", sampling=SamplingConfig(max_new_tokens=8))
    if engine.status.trusted:  # the gate let the model's own (checked) text through: it now generates
        assert after.stats is not None
    else:  # withheld: no generation time spent, the page summary as before
        assert engine.generator is None and after.answer_kind == EXTRACT_ANSWER and after.stats is None


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
