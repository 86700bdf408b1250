"""The GPT-2 as a sentence selector: the format, its training rows and the scorer (gpt2chat.modeling.selection)."""

from __future__ import annotations

import numpy as np
import pytest

from gpt2chat.modeling.selection import (QUESTION_TYPES, SentenceScorer, SelectionTokens, chunks, page_sections,
                                         selection_examples, selection_prompt, selection_rows)


def test_chunks_keep_whole_sentences_and_repeat_the_prompt():
    prompt, newline = [1, 2, 3], 99
    sentences = [[10] * 5, [11] * 5, [12] * 40, [13] * 5]
    parts = chunks(prompt, sentences, 20, newline)
    # Each chunk opens with the prompt; every sentence is followed by the newline its label is read at.
    assert [numbers for _, _, numbers in parts] == [[0, 1], [2], [3]]
    ids, positions, _ = parts[0]
    assert ids == [1, 2, 3, *[10] * 5, 99, *[11] * 5, 99] and [ids[p] for p in positions] == [99, 99]
    long_ids, long_positions, _ = parts[1]
    assert len(long_ids) == 19 and long_ids[-1] == 99 and long_positions == [18]  # cut to fit, label kept
    # A blank line (its own token) opens each section; it fits even before a sentence cut to the chunk.
    sectioned = chunks(prompt, sentences, 20, newline, section_starts=[True, False, True, True], section=77)
    assert sectioned[0][0] == [1, 2, 3, 77, *[10] * 5, 99, *[11] * 5, 99]
    assert len(sectioned[1][0]) == 20 and sectioned[1][0][3] == 77 and sectioned[2][0][3] == 77
    with pytest.raises(ValueError):
        chunks(list(range(15)), sentences, 20, newline)


def test_examples_label_the_sentences_of_the_questions_own_section(sample_records):
    examples = selection_examples(sample_records)
    pages = page_sections(sample_records)
    assert examples and all(len(e.sentences) == len(e.labels) for e in examples)
    example = examples[0]
    record = next(r for sections in pages.values() for r in sections if r.question == example.question)
    # The question's own section is one run of sentences that opens with a section start.
    first = example.labels.index(True)
    assert example.section_starts[0] and example.section_starts[first]
    assert all(example.labels[first: first + sum(example.labels)])
    own = [s for s, label in zip(example.sentences, example.labels) if label]
    others = [s for s, label in zip(example.sentences, example.labels) if not label]
    assert own and others and all(s in record.answer for s in own)
    assert not any(s in record.answer and s not in " ".join(own) for s in others[:3])
    # Each sentence carries its own section's question type; the asked section's is the question's.
    assert example.question_type == record.question_type
    assert [t for t, label in zip(example.types, example.labels) if label] == [record.question_type] * len(own)
    sections = pages[next(k for k, v in pages.items() if record in v)]
    found = [[r.question_type for r in sections if s in r.answer] for s in example.sentences]
    unique = [(types[0], typed) for types, typed in zip(found, example.types) if len(types) == 1]
    assert len(unique) > len(example.sentences) // 2 and all(a == b for a, b in unique)
    assert len(set(example.types)) > 1


def test_rows_label_the_question_and_each_sentence_with_its_question_type(sample_records, tiny_run):
    from gpt2chat.modeling.model import load_preset

    tokenizer = load_preset(tiny_run[0]).preprocessor.tokenizer
    marks = SelectionTokens.of(tokenizer)
    examples = selection_examples(sample_records)[:5]
    packed = selection_rows(examples, tokenizer, 64, seed=0)
    inputs, targets, weights = packed.batch
    labelled = weights > 0
    # A label is predicted where the input is a newline (after the question or a sentence); elsewhere nothing is
    # learned.
    assert np.all(inputs["token_ids"][labelled] == marks.newline)
    assert labelled.sum(axis=1).min() >= 2 and packed.rows.shape[1] == 65
    # Each row is a chunk of an example's page: the question's type after the prompt, then each sentence's section
    # type after it (a page of several types, so the labels differ within a row).
    example = next(e for e in examples if e.types[0] != e.question_type)
    packed_one = selection_rows([example], tokenizer, 64, seed=0)
    one_inputs, one_targets, one_weights = packed_one.batch
    prompt = [*np.asarray(tokenizer(selection_prompt(example.question))).reshape(-1), marks.newline]
    parts = chunks(prompt, [np.asarray(tokenizer(" " + s)).reshape(-1) for s in example.sentences], 64, marks.newline,
                   example.section_starts, marks.section)
    mixed = 0
    for row in range(len(packed_one.rows)):
        tokens, positions, numbers = next(p for p in parts if list(packed_one.rows[row, :len(p[0])]) == list(p[0]))
        labelled_here = np.flatnonzero(one_weights[row] > 0)
        assert list(labelled_here) == [len(prompt) - 1, *positions]
        expected = [marks.type_label(example.question_type), *(marks.type_label(example.types[n]) for n in numbers)]
        assert list(one_targets[row, labelled_here]) == expected
        mixed += len(set(expected)) > 1
    assert mixed >= 1
    # The inputs are the page itself: the labels are only targets, never read by a later position.
    assert not np.isin(inputs["token_ids"][:, 1:][labelled[:, :-1]], marks.types).any()


def test_the_scorer_reads_the_type_labels_at_each_newline(tiny_run):
    from gpt2chat.modeling.model import load_preset

    causal_lm = load_preset(tiny_run[0])
    scorer = SentenceScorer(causal_lm, width=64)
    sentences = ["Glaucoma damages the optic nerve of the eye.", "It is treated with eye drops and surgery.",
                 "Many people have no symptoms at first, and the loss of vision is slow."] * 4
    tokenizer = causal_lm.preprocessor.tokenizer
    marks = SelectionTokens.of(tokenizer)
    prompt = [*[int(i) for i in np.asarray(tokenizer(selection_prompt("How is glaucoma treated?")))], marks.newline]
    starts = [i % 3 == 0 for i in range(len(sentences))]
    asked, typed = scorer.type_probabilities("How is glaucoma treated?", sentences, starts)
    # The language model's own logits over the type labels, at the question's newline and after each sentence
    # (the first chunk), normalised over the types.
    ids, positions, numbers = chunks(prompt, [[int(i) for i in np.asarray(tokenizer(" " + s))] for s in sentences],
                                     64, marks.newline, starts, marks.section)[0]
    logits = np.asarray(causal_lm({"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)), bool)}))[0]
    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    assert asked.shape == (len(QUESTION_TYPES),)
    assert np.allclose(asked, softmax(logits[len(prompt) - 1, list(marks.types)]), atol=1e-4)
    assert np.allclose(typed[numbers], softmax(logits[positions][:, list(marks.types)]), atol=1e-4)
    # A sentence's score: its agreement with the question's type over the page's average agreement.
    scores = scorer.scores("How is glaucoma treated?", sentences, starts)
    assert scores.shape == (12,)
    assert np.allclose(scores, np.log(typed @ asked) - np.log(typed.mean(0) @ asked), atol=1e-5)
    assert scorer.scores("How is glaucoma treated?", []).shape == (0,)
    with pytest.raises(ValueError, match="at least one sentence"):
        scorer.type_probabilities("How is glaucoma treated?", [])
    # A message longer than half a chunk keeps its end (and the prefix): every sentence is still scored.
    assert scorer.scores("my story " * 200 + "How is glaucoma treated?", sentences).shape == (12,)


def test_training_mixes_in_selection_rows_at_the_recipes_fraction(sample_records, tiny_run):
    from gpt2chat.modeling.model import load_preset
    from gpt2chat.modeling.tokens import PackedTokens
    from gpt2chat.modeling.training_config import TrainConfig
    from gpt2chat.modeling.training_data import with_selection_rows

    tokenizer = load_preset(tiny_run[0]).preprocessor.tokenizer
    answers = PackedTokens(np.full((30, 65), 5, np.int32), np.ones((30, 65), np.float32))
    config = TrainConfig.from_recipe("tiny", selection_fraction=0.25, selection_weight=3.0, sequence_length=64)
    mixed = with_selection_rows(answers, sample_records, tokenizer, config, seed=0)
    assert len(mixed.rows) == 40 and np.array_equal(mixed.targets[:30], answers.rows)  # 10 of 40 rows select
    marks = SelectionTokens.of(tokenizer)
    labels = mixed.weights[30:] > 0
    assert set(np.unique(mixed.targets[30:][labels])) <= set(marks.types)
    assert np.all(mixed.weights[30:][labels] == 3.0) and np.all(mixed.weights[:30] == 1.0)  # labels weigh 3
    with pytest.raises(ValueError, match="selection-weight"):
        TrainConfig.from_recipe("tiny", selection_weight=0.0).validate()
