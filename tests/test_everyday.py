"""Everyday words rewritten into MedQuAD's medical words (``gpt2chat.search.everyday``)."""

from __future__ import annotations

import re

import pytest

from gpt2chat.search.everyday import EverydayWords


@pytest.fixture(scope="module")
def everyday():
    return EverydayWords.load()


@pytest.mark.parametrize("message, medical", [
    ("it burns when I pee", "it painful urination"),  # the phrase before the word in it
    ("I pee a lot", "I frequent urination"),
    ("blood in my pee", "blood in the urine"),
    ("my tummy hurts after eating", "my abdominal pain after eating"),
    ("I keep throwing up", "I keep nausea and vomiting"),  # MedQuAD's name for it
    ("vomiting blood", "vomiting blood"),  # the emergency's words stay as written
    ("Speech therapy", "Speech therapy"),  # "pee" inside a word is not the word
    ("my son still wets the bed", "my son still bedwetting"),
    ("can you get an STD from kissing", "can you get an sexually transmitted diseases from kissing"),
    ("is hep b contagious", "is hepatitis b contagious"),
    ("my bp is high", "my bp is high"),  # only "high bp" is the name
])
def test_everyday_phrases_become_the_medical_words(everyday, message, medical):
    assert everyday.medical(message)[0] == medical


def test_the_words_put_in_are_reported(everyday):
    assert everyday.medical("I can't sleep and my belly aches")[1] == {"insomnia", "abdominal pain"}
    assert everyday.medical("what is gout?") == ("what is gout?", frozenset())


@pytest.mark.parametrize("line, error", [("pee urinate", "expected 'expression<TAB>medical words'"),
                                         ("(pee\turinate", "missing ), unterminated subpattern")])
def test_a_malformed_rule_names_its_line(tmp_path, line, error):
    path = tmp_path / "rules.tsv"
    path.write_text("# comment\n\n" + line + "\n")
    with pytest.raises(ValueError, match=re.escape(f"rules.tsv:3: {error}")):
        EverydayWords.load(path)


def test_the_helper_written_rules_fire_after_the_word_rules_and_not_in_another_sense():
    """The rules run in order, and "pee", "poop", "tummy" are rewritten first: later rules are written in the words
    those leave. A rule must not fire on an everyday sentence that only shares its words."""
    everyday = EverydayWords.load()
    for text, medical in (("i pee when i sneeze", "i stress urinary incontinence"),
                          ("protein in his pee", "proteinuria"),
                          ("what does a tummy tuck cost", "what does a plastic and cosmetic surgery cost"),
                          ("i keep getting a charley horse", "i keep getting a muscle cramps")):
        assert everyday.medical(text)[0] == medical
    for text in ("i don't want to die, what is the survival rate?", "how do i lose the baby weight",
                 "the hot flashes come too fast", "im an old timer with arthritis"):
        assert everyday.medical(text)[0] == text
