"""One sentence splitter: training targets, the model's answer clean-up and the support check cut text alike."""

from gpt2chat.chat import grounding
from gpt2chat.corpus.sentences import split_sentences
from gpt2chat.modeling.prompt import clean_answer
from gpt2chat.modeling.tokens import answer_sentences

TEXT = "Ask Dr. Smith about it, e.g. at a visit. It is rare, e.g. in Japan. It is rare, e.g. in Europe. Doses are 2.5 mg."
SENTENCES = ["Ask Dr. Smith about it, e.g. at a visit.", "It is rare, e.g. in Japan.", "It is rare, e.g. in Europe.",
             "Doses are 2.5 mg."]


def test_the_splitter_keeps_abbreviations_and_decimals():
    assert split_sentences(TEXT) == SENTENCES
    assert grounding.split_sentences is split_sentences  # what verify checks


def test_training_targets_are_the_splitters_sentences():
    # The training split used to cut "Ask Dr." from "Smith about it ..." (a target verify never sees as a sentence).
    assert answer_sentences(TEXT) == SENTENCES
    assert answer_sentences("Summary : X is a disease. It is rare.") == ["X is a disease.", "It is rare."]
    assert answer_sentences("What causes X? Dr. Y found the gene.") == ["Dr. Y found the gene."]


def test_the_clean_up_drops_only_whole_repeated_sentences():
    # Splitting at every period made "It is rare, e.g." a repeat and dropped it: "... in Japan. in Europe."
    assert clean_answer(TEXT, finished=True) == " ".join(SENTENCES)
    assert clean_answer(f"{SENTENCES[1]} {SENTENCES[1]} It often", finished=True) == SENTENCES[1]


def test_a_credit_line_is_a_sentence_of_its_own_that_is_never_shown():
    """MedlinePlus summaries end with "NIH: <institute>", glued to a list item or after an initial."""
    for text, last in (("Keep your glucose in range, if you have diabetes NIH: National Institute of Diabetes",
                        "Keep your glucose in range, if you have diabetes"),
                       ("Get enough calcium and vitamin D. NIH: National Institute on Aging",
                        "Get enough calcium and vitamin D.")):
        assert split_sentences(text) == [last, text[len(last):].strip()]
        assert [c[2] for c in grounding.answer_candidates([text])] == [last]
    # other agencies' credit lines end a summary without a period, every word capitalised
    text = "Get medical attention if necessary. Centers for Disease Control and Prevention"
    assert [c[2] for c in grounding.answer_candidates([text])] == ["Get medical attention if necessary."]
    assert not grounding.is_answer_sentence("Dept. of Health and Human Services Office on Women's Health")
    assert grounding.is_answer_sentence("- Keep your blood glucose in the target range, if you have diabetes")
