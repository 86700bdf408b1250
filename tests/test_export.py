"""The OpenVINO export: the same tokens as Keras, the engine's use of it and its fallback, and clear errors."""

import shutil

import numpy as np
import pytest

from gpt2chat.modeling import rundir
from gpt2chat.chat.copybias import CopyBias
from gpt2chat.cli import run
from gpt2chat.modeling.export import ExportError, build_generator, export_model, load_exported_generator
from gpt2chat.modeling.export_check import agreement, export_answer_nats, keras_answer_nats
from gpt2chat.modeling.generation import SamplingConfig, StreamingGenerator
from gpt2chat.modeling.openvino_gpt2 import OpenVINOGenerator
from gpt2chat.modeling.prompt import build_prompt
from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID

QUESTIONS = ["What is glaucoma?", "How is asthma treated?", "What are the symptoms of diabetes?",
             "Is high blood pressure inherited?"]
REFERENCE = ("Glaucoma is a group of diseases that can damage the eye's optic nerve and result in vision loss and "
             "blindness. Open-angle glaucoma is the most common form.")
GREEDY = SamplingConfig(max_new_tokens=24, temperature=0.0)


@pytest.fixture(scope="module")
def model_dir(tiny_run, tmp_path_factory):
    """A copy of the tiny run's preset, so that its export never changes what other tests' engines load."""
    source, _ = tiny_run
    target = tmp_path_factory.mktemp("export") / "model"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(rundir.CHECKPOINTS, rundir.EXPORT_DIR + "*"))
    return target


@pytest.fixture(scope="module")
def keras_generator(model_dir):
    from gpt2chat.modeling.model import load_preset

    generator = StreamingGenerator(load_preset(model_dir))
    generator.end_token_id = None  # compare full-length streams
    return generator


@pytest.fixture(scope="module")
def prompts(keras_generator):
    return [keras_generator.encode(build_prompt(q, reference=REFERENCE)) for q in QUESTIONS]


@pytest.fixture(scope="module")
def float_export(model_dir, keras_generator):
    export_model(model_dir, "f32", causal_lm=keras_generator.causal_lm)
    generator = load_exported_generator(model_dir)
    generator.end_token_id = None
    return generator


def test_float_export_generates_the_keras_greedy_ids(float_export, keras_generator, prompts):
    assert isinstance(float_export, OpenVINOGenerator)
    for prompt in prompts:
        assert list(float_export.stream_ids(prompt, GREEDY)) == list(keras_generator.stream_ids(prompt, GREEDY))
    assert float_export.encode("What is glaucoma?") == keras_generator.encode("What is glaucoma?")


def test_float_export_keeps_the_logits_processor_and_stops_at_the_end_marker(float_export, keras_generator,
                                                                             prompts):
    reference_ids = keras_generator.encode(" " + REFERENCE)
    config = SamplingConfig(max_new_tokens=40, temperature=0.0)
    for generator in (float_export, keras_generator):
        generator.end_token_id = END_OF_TEXT_ID
    try:
        copied = [list(g.stream_ids(prompts[0], config, logits_processor=CopyBias(reference_ids, constrain=True,
                                                                                 max_sentences=1)))
                  for g in (float_export, keras_generator)]
    finally:
        float_export.end_token_id = keras_generator.end_token_id = None
    assert copied[0] == copied[1]
    assert copied[0] and set(copied[0]) <= set(reference_ids)  # constrained: only the passage's ids
    assert len(copied[0]) < 40  # one sentence, then <|endoftext|> ended the stream


def test_concurrent_streams_keep_their_own_cache(float_export, prompts):
    expected = [list(float_export.stream_ids(p, GREEDY)) for p in prompts[:2]]
    interleaved = list(zip(*(float_export.stream_ids(p, GREEDY) for p in prompts[:2])))
    assert [list(stream) for stream in zip(*interleaved)] == expected


def test_sampling_through_the_export_is_seeded_and_bounded(float_export, prompts):
    config = SamplingConfig(max_new_tokens=12, temperature=0.8, top_p=0.9, top_k=20, seed=3)
    first, second = (list(float_export.stream_ids(prompts[1], config)) for _ in range(2))
    assert first == second and len(first) == 12
    assert all(0 <= i < 50257 for i in first)


def test_int8_export_agreement_and_perplexity_change(keras_generator, prompts):
    """int8 weights change the logits slightly: report how many greedy tokens and how much perplexity move."""
    int8 = build_generator(keras_generator.causal_lm, "int8")
    int8.end_token_id = None
    reproduced = compared = 0
    for prompt in prompts:
        expected = list(keras_generator.stream_ids(prompt, GREEDY))
        reproduced += agreement(expected, list(int8.stream_ids(prompt, GREEDY)))
        compared += len(expected)
    answer = keras_generator.encode(" " + REFERENCE)
    keras_nats = sum(keras_answer_nats(keras_generator.causal_lm, p, answer) for p in prompts)
    int8_nats = sum(export_answer_nats(int8, p, answer) for p in prompts)
    change = np.exp((int8_nats - keras_nats) / (len(answer) * len(prompts))) - 1
    print(f"int8: {reproduced}/{compared} greedy tokens reproduced; answer perplexity change {change:+.3%}")
    assert reproduced / compared >= 0.5
    assert abs(change) < 0.02


def test_the_engine_serves_the_export_when_current_and_keras_otherwise(model_dir, float_export):
    from gpt2chat.chat.engine import ChatEngine, EngineConfig

    def engine(**config):  # the export serves a model that writes its answers (a selecting one needs Keras)
        return ChatEngine.build(EngineConfig(model=str(model_dir), answer_mode="generate", **config), index=[],
                                masker=object(), safety=object())

    assert rundir.exported_model(model_dir) == model_dir / rundir.EXPORT_DIR
    assert isinstance(engine().generator, OpenVINOGenerator)
    assert isinstance(engine(use_export=False).generator, StreamingGenerator)
    manifest = model_dir / rundir.EXPORT_DIR / rundir.EXPORT_MANIFEST
    saved = manifest.read_text()
    try:
        manifest.write_text(saved.replace('"weights_fingerprint": "', '"weights_fingerprint": "stale'))
        assert rundir.exported_model(model_dir) is None  # made from other weights: never served
        assert isinstance(engine().generator, StreamingGenerator)
        with pytest.raises(ExportError, match="other weights"):
            load_exported_generator(model_dir)
    finally:
        manifest.write_text(saved)


def test_bad_input_gives_clear_errors(model_dir, tmp_path, capsys):
    with pytest.raises(ExportError, match="does not exist"):
        load_exported_generator(tmp_path / "missing")
    with pytest.raises(ExportError, match="no OpenVINO export"):
        load_exported_generator(tmp_path)
    with pytest.raises(ExportError, match="not a Keras-Hub preset"):
        export_model(tmp_path)
    assert run("export", [str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err

    corrupt = tmp_path / "corrupt"
    shutil.copytree(model_dir, corrupt)
    (corrupt / rundir.EXPORT_DIR / rundir.EXPORT_MODEL).write_text("<net><layers>")  # truncated
    with pytest.raises(ExportError, match="cannot be read"):
        load_exported_generator(corrupt)
    truncated = tmp_path / "truncated"
    shutil.copytree(model_dir, truncated)
    weights = truncated / rundir.EXPORT_DIR / "model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ExportError, match="cannot be read"):
        load_exported_generator(truncated)
    from gpt2chat.chat.engine import exported_generator

    assert exported_generator(str(corrupt), None) is None  # the engine falls back to Keras
