import numpy as np
import pytest

from gpt2chat.chat.copybias import MASKED, CopyBias
from gpt2chat.modeling.generation import SamplingConfig, StreamingGenerator
from gpt2chat.chat.grounding import split_sentences, verify
from gpt2chat.modeling.model import build_causal_lm
from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID

PROMPT = "Question: What causes asthma?\nAnswer:"


@pytest.fixture(scope="module")
def generator():
    import keras

    keras.utils.set_random_seed(7)  # the same random weights whatever ran before
    return StreamingGenerator(build_causal_lm("tiny", 64))


def test_identity_processor_matches_the_compiled_greedy_path(generator):
    ids = generator.encode(PROMPT)
    greedy = SamplingConfig(max_new_tokens=8, temperature=0)
    seen = []

    def identity(logits, generated):
        assert logits.shape == (generator.causal_lm.backbone.vocabulary_size,)
        seen.append(list(generated))
        return logits

    expected = list(generator.stream_ids(ids, greedy))
    assert list(generator.stream_ids(ids, greedy, logits_processor=identity)) == expected
    assert seen == [expected[:i] for i in range(len(expected))]  # the ids generated so far, at every step


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_a_processor_decides_what_greedy_and_sampling_may_pick(generator, temperature):
    target = [464, 3290, 13]  # "The dog."

    def force(logits, generated):
        forced = np.full_like(logits, MASKED)
        forced[target[len(generated)] if len(generated) < len(target) else END_OF_TEXT_ID] = 0.0
        return forced

    config = SamplingConfig(max_new_tokens=10, temperature=temperature, seed=3)
    assert list(generator.stream_ids(generator.encode(PROMPT), config, logits_processor=force)) == target


def test_constrained_copy_bias_only_writes_sentences_of_the_reference(generator):
    reference = ("Asthma is a chronic disease of the airways. Attacks are caused by triggers such as pollen. "
                 "Inhalers reduce the swelling of the airways.")
    processor = CopyBias(generator.encode(" " + reference), constrain=True, max_sentences=2)
    prompt = generator.encode(f"Reference: {reference}\n\n{PROMPT}")
    answer = generator.decode(list(generator.stream_ids(
        prompt, SamplingConfig(max_new_tokens=40, temperature=0), logits_processor=processor)))
    sentences = split_sentences(answer)
    assert 1 <= len(sentences) <= 2
    assert all(s in reference for s in sentences)
    assert verify(answer, [reference]).support_rate == 1.0


def test_sampler_keeps_top_k_and_nucleus_and_repeats_with_a_seed():
    from gpt2chat.modeling.generation import Sampler

    logits = np.array([0.0, 5.0, 4.9, -1e9, 4.8, 1.0], dtype=np.float32)

    def picks(config: SamplingConfig, n: int = 200) -> list[int]:
        sampler = Sampler(config)
        return [sampler(logits) for _ in range(n)]

    assert set(picks(SamplingConfig(temperature=1.0, top_k=1, top_p=1.0, seed=1))) == {1}  # top-1 is greedy
    assert set(picks(SamplingConfig(temperature=1.0, top_k=50, top_p=0.01, seed=1))) == {1}  # nucleus of one
    top3 = picks(SamplingConfig(temperature=1.0, top_k=3, top_p=1.0, seed=1))
    assert set(top3) == {1, 2, 4}  # never a token outside the top 3, and never the masked one
    seeded = SamplingConfig(temperature=1.0, top_k=50, top_p=1.0, seed=5)
    first, second = Sampler(seeded), Sampler(seeded)
    assert [first(logits) for _ in range(20)] == [second(logits) for _ in range(20)]
