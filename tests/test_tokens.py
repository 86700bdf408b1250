"""Grounded training examples and answer-only weights: references come from the index, targets are bounded,
packed rows weight exactly the answer tokens, and the token cache is exact."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest

from gpt2chat import settings
from gpt2chat.corpus.data import focus_key
from gpt2chat.modeling.prompt import REFERENCE_PREFIX, reference_passage, training_example
from gpt2chat.search.retrieval import Passage
from gpt2chat.modeling.tokenizer import END_OF_TEXT_ID
from gpt2chat.modeling.tokens import (
    Grounding, Example, answer_sentences, choose_passage, grounded_examples, model_inputs, pack_examples,
    reference_kind, tokenize_examples,
)


# The quick-start recipe's grounding.
GROUNDING = Grounding(grounded_fraction=1.0, sibling_fraction=0.2, answer_sentences=3, answer_tokens=96)


class CharTokenizer:
    """One id per character (ids 1..255): enough to check packing and caching without building GPT-2's BPE."""

    vocabulary = {chr(i): i for i in range(1, 256)}
    merges = ()

    def __init__(self):
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        return [[min(ord(c), 255) for c in text] for text in texts]


@pytest.fixture(scope="module")
def index(sample_index):
    return sample_index


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "tokens"


def _passage(pair_id: str, focus: str, question: str = "q") -> Passage:
    return Passage(pair_id=pair_id, question=question, answer="a", focus=focus, source="s", url="u", score=1.0)


def test_answer_sentences_drop_headings_that_restate_the_question():
    assert answer_sentences("What causes Down syndrome? There are 3 causes. Trisomy 21 is one.") == [
        "There are 3 causes.", "Trisomy 21 is one."]
    assert answer_sentences("Key Points - Adult ALL is a cancer. It is treated.")[0] == "Adult ALL is a cancer."
    assert answer_sentences("Summary : A1C is a blood test. It measures sugar.")[0] == "A1C is a blood test."
    assert answer_sentences("Is it inherited?") == ["Is it inherited?"]  # a lone question is still the answer


def test_the_gold_passage_is_chosen_even_when_outranked_and_left_out_for_a_sibling():
    class Record:
        pair_id, focus, question = "gold", "Glaucoma", "How is glaucoma treated ?"

    ranked = [_passage("other", "Cataract"), _passage("sibling", "glaucoma "), _passage("gold", "Glaucoma")]
    assert choose_passage(Record, ranked, leave_out_gold=False).pair_id == "gold"
    assert choose_passage(Record, ranked, leave_out_gold=True).pair_id == "sibling"
    assert choose_passage(Record, ranked[:1], leave_out_gold=True).pair_id == "other"
    assert choose_passage(Record, [], leave_out_gold=False) is None
    kinds = [reference_kind(Record, p) for p in (*ranked, _passage("nei", "Glaucoma", "How is  Glaucoma treated?"))]
    assert kinds == ["off-focus", "sibling", "gold", "same question"]
    assert reference_kind(Record, None) == "none"


def test_every_example_quotes_a_retrieved_passage_cut_as_chat_cuts_it(sample_records, index):
    records = sample_records[:400]
    grounding = GROUNDING
    examples = grounded_examples(records, index, grounding, seed=7)
    assert examples == grounded_examples(records, index, grounding, seed=7)  # seeded
    kinds = collections.Counter(e.reference for e in examples)
    assert kinds["none"] == 0 and kinds["gold"] > 0.6 * len(records)
    assert 0.1 * len(records) < kinds["sibling"] + kinds["off-focus"] + kinds["same question"] < 0.3 * len(records)
    passages = {reference_passage(r.answer) for r in records}
    for record, example in zip(records, examples):
        assert example.prompt.startswith(REFERENCE_PREFIX) and example.prompt.endswith("Answer:")
        quoted = example.prompt[len(REFERENCE_PREFIX):].split("\n\nQuestion: ")[0]
        assert quoted in passages
        if example.reference == "gold":
            assert example.passage_id == record.pair_id
            assert quoted == reference_passage(record.answer)
            assert list(example.sentences) == answer_sentences(record.answer)[:3]
        elif example.reference in ("sibling", "off-focus"):
            assert len(example.sentences) == 1  # short when the passage does not hold the answer
    assert all(e.reference != "none" for e in grounded_examples(records[:50], index, GROUNDING, seed=1))
    ungrounded = grounded_examples(records[:50], index, dataclasses.replace(GROUNDING, grounded_fraction=0.0), seed=1)
    assert all(e.reference == "none" and e.prompt.startswith("Question: ") for e in ungrounded)


def test_examples_only_quote_pairs_of_their_own_records(sample_records, index):
    by_focus = collections.defaultdict(list)
    for record in sample_records:
        by_focus[focus_key(record.focus)].append(record)
    foci = sorted(by_focus)
    first = [r for f in foci[: len(foci) // 2] for r in by_focus[f]]
    examples = grounded_examples(first, index, dataclasses.replace(GROUNDING, sibling_fraction=1.0), seed=3)
    assert {e.passage_id for e in examples} - {None} <= {r.pair_id for r in first}
    assert sum(e.reference == "off-focus" for e in examples) > 0  # ... even when only another focus matches


def test_prompt_and_answer_tokens_concatenate_to_the_rendered_example(sample_records, index, private_cache):
    from gpt2chat.modeling.tokenizer import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    records = sample_records[:60]
    examples = grounded_examples(records, index, GROUNDING, seed=5)
    tokenized = tokenize_examples(examples, tokenizer, answer_tokens=10_000)  # a budget every answer fits
    assert len(tokenized) == len(examples)
    for record, example, (prompt_ids, answer_ids) in zip(records, examples, tokenized):
        reference = example.prompt[len(REFERENCE_PREFIX):].split("\n\nQuestion: ")[0]
        rendered = training_example(record.question, " ".join(example.sentences), reference=reference)
        assert answer_ids[-1] == END_OF_TEXT_ID
        np.testing.assert_array_equal(np.concatenate([prompt_ids, answer_ids]), tokenizer([rendered])[0])


def test_token_budget_keeps_whole_sentences_and_drops_what_cannot_fit(private_cache):
    examples = [Example("P:", ("One two.", "Three four five.", "Six."), "gold"), Example("P:", ("x" * 50,), "gold")]
    (prompt, answer), = tokenize_examples(examples, CharTokenizer(), answer_tokens=27)
    assert prompt.tolist() == [ord("P"), ord(":")]
    assert bytes(answer[:-1].tolist()).decode() == " One two. Three four five."  # 26 + <|endoftext|>
    assert answer[-1] == END_OF_TEXT_ID


def test_tokens_are_cached_by_content(private_cache):
    tokenizer = CharTokenizer()
    examples = [Example(f"Q{i}: Answer:", ("A b.", "C d."), "gold") for i in range(5)]
    first = tokenize_examples(examples, tokenizer, answer_tokens=20)
    calls = tokenizer.calls
    again = tokenize_examples(examples, tokenizer, answer_tokens=20)
    assert tokenizer.calls == calls and len(list(private_cache.glob("*.npz"))) == 1
    for (p1, a1), (p2, a2) in zip(first, again):
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(a1, a2)
    tokenize_examples([*examples[:4], Example("Q9: Answer:", ("A b.",), "gold")], tokenizer, answer_tokens=20)
    assert tokenizer.calls > calls  # other content, other key
    next(private_cache.glob("*.npz")).write_bytes(b"damaged")
    assert len(tokenize_examples(examples, tokenizer, answer_tokens=20)) == 5


def test_rows_start_at_examples_and_weight_exactly_the_answer_tokens():
    rng = np.random.default_rng(0)
    tokenized = [(rng.integers(1000, 2000, size=int(rng.integers(5, 20))).astype(np.int32),
                  np.append(rng.integers(3000, 4000, size=int(rng.integers(1, 10))), END_OF_TEXT_ID).astype(np.int32))
                 for _ in range(200)]
    long_prompt = np.arange(100, 140, dtype=np.int32)  # 40 prompt tokens + 2 answer tokens: longer than a row
    tokenized.insert(100, (long_prompt, np.array([3500, END_OF_TEXT_ID], np.int32)))
    packed = pack_examples(tokenized, sequence_length=31)
    assert packed.rows.shape[1] == 32 and packed.weights.shape == packed.rows.shape
    starts = {int(p[0]) for p, _ in tokenized}
    for row, weight in zip(packed.rows, packed.weights):
        answer = row >= 3000
        np.testing.assert_array_equal(weight, answer.astype(np.float32))
        if int(row[0]) < 1000:
            continue  # the long example's row
        assert int(row[0]) in starts and not answer[0]  # each row begins at an example's prompt
    (long_row,) = [r for r in packed.rows if r[0] < 1000]
    assert long_row.tolist() == [*range(110, 140), 3500, END_OF_TEXT_ID]  # its answer, and the prompt's end
    inputs, targets, target_weights = model_inputs(packed.rows, packed.weights)
    np.testing.assert_array_equal(targets, packed.rows[:, 1:])
    np.testing.assert_array_equal(target_weights, packed.weights[:, 1:])
    assert inputs["token_ids"].shape == targets.shape == target_weights.shape
    assert packed.num_answer_tokens == int(packed.weights[:, 1:].sum())
    assert 0 < packed.num_answer_tokens < packed.num_tokens
    with pytest.raises(ValueError, match="one row of 32 tokens"):
        pack_examples(tokenized[:1], sequence_length=31)


@pytest.mark.parametrize("change", [{"sibling_fraction": 1.5}, {"grounded_fraction": -0.1}, {"answer_tokens": 1},
                                    {"answer_sentences": 0}])
def test_out_of_range_grounding_is_a_clear_error(change):
    with pytest.raises(ValueError, match="must be"):
        dataclasses.replace(GROUNDING, **change)
