import random

import numpy as np
import pytest

from gpt2chat.chat import grounding
from gpt2chat.reports import grounding_eval
from gpt2chat.chat.copybias import MASKED, CopyBias, gpt2_piece_kinds
from gpt2chat.chat.grounding import (
    ExtractConfig, SupportThresholds, Vocabulary, extractive_answer, fragments, is_degenerate, k_precision, lead_k,
    answer_openers, refers_back, split_sentences, verify, words,
)

PASSAGE = (
    "Glaucoma is a group of diseases that can damage the eye's optic nerve. It is a leading cause of blindness "
    "in the U.S. and usually has no early symptoms. Treatment includes medicines such as eye drops (e.g. "
    "timolol), laser trabeculoplasty and conventional surgery. Dr. Smith reported that 2.5 million people have it."
)


def test_sentences_split_at_ends_but_not_at_abbreviations_initials_or_decimals():
    assert split_sentences(PASSAGE) == [
        "Glaucoma is a group of diseases that can damage the eye's optic nerve.",
        "It is a leading cause of blindness in the U.S. and usually has no early symptoms.",
        "Treatment includes medicines such as eye drops (e.g. timolol), laser trabeculoplasty and conventional surgery.",
        "Dr. Smith reported that 2.5 million people have it.",
    ]
    assert split_sentences("Is it rare? Yes! See J. Doe et al. 2001.\nNext line") == [
        "Is it rare?", "Yes!", "See J. Doe et al. 2001.", "Next line"]
    assert split_sentences("   ") == [] and split_sentences("no end punctuation") == ["no end punctuation"]


def test_newsroom_fragments_coverage_and_density():
    article = "the cat sat on the mat and the dog ran".split()
    summary = "the dog sat on the mat quickly".split()
    assert fragments(summary, article) == [2, 4]  # "the dog", "sat on the mat"; "quickly" is novel
    assert fragments([], article) == [] and fragments(summary, []) == []


def test_k_precision_counts_content_words_and_negations():
    passage = words("Aspirin does not prevent glaucoma.")
    assert k_precision(words("Aspirin does not prevent glaucoma."), passage) == 1.0
    assert k_precision(words("The of and is."), passage) == 0.0  # no content word at all
    assert k_precision(words("Aspirin prevents cancer"), passage) == pytest.approx(1 / 3)
    assert k_precision(words("never glaucoma"), passage) == 0.5  # a negation is content, and not in the passage


def test_verify_keeps_supported_sentences_and_drops_salad_and_unsupported_claims():
    other = "Asthma is a chronic disease of the airways. Inhaled steroids reduce swelling in the airways."
    answer = (
        "Treatment includes medicines such as eye drops. "  # a compressed copy
        "Glaucoma is caused by eating carrots every day. "  # an unsupported claim
        "Nerve the glaucoma of damage diseases group optic can. "  # the passage's words, shuffled
        "Inhaled steroids reduce swelling in the airways."  # supported by the second passage
    )
    result = verify(answer, [PASSAGE, other])
    assert [s.supported for s in result.sentences] == [True, False, False, True]
    assert [s.passage for s in result.kept] == [0, 1] and result.supporting_passages == [0, 1]
    shuffled = result.sentences[2]
    assert shuffled.k_precision == 1.0 and shuffled.density < 2  # why density is part of the check
    assert result.support_rate == 0.5
    assert result.text == (
        "Treatment includes medicines such as eye drops. Inhaled steroids reduce swelling in the airways.")
    assert not verify("It is common.", ["It is common."]).kept  # too short to be a claim: density under 4.5
    assert not result.needs_fallback()
    assert verify("", [PASSAGE]).support_rate == 0.0 and verify("", [PASSAGE]).needs_fallback()
    assert verify("Glaucoma is a group of diseases.", []).kept == []


def test_thresholds_are_configurable():
    sentence = "Glaucoma is a group of diseases that can damage hearing."
    assert not verify(sentence, [PASSAGE]).kept
    assert verify(sentence, [PASSAGE], SupportThresholds(k_precision=0.5, coverage=0.5, density=1.0)).kept

# The NIH passage cited for "How is glaucoma treated?": its third sentence means what it says only after the second.
GLAUCOMA_TREATMENT = (
    "Immediate treatment for early stage, open-angle glaucoma can delay progression of the disease. Glaucoma "
    "treatments include medicines, laser surgery, conventional surgery, or a combination of any of these. While "
    "these treatments may save remaining vision, they do not improve sight already lost from glaucoma."
)


def test_sentences_that_refer_back_are_recognised():
    first, second, third = split_sentences(GLAUCOMA_TREATMENT)
    assert refers_back(third) and not refers_back(first) and not refers_back(second)
    assert refers_back("However, treatment is different for pregnant women.")
    assert refers_back("These cells are also called leukemia cells.")
    assert refers_back("That's why early diagnosis is very important.")
    assert refers_back("As a result, the signs and symptoms vary from person to person.")
    assert refers_back("In addition, some people have seizures.") and not refers_back("In adults the disease is mild.")
    assert not refers_back("This condition is inherited in an autosomal recessive pattern.")  # the page's topic
    # ... but "these conditions" are ones listed before (it opened an asthma answer)
    assert refers_back("These conditions include runny nose, sinus infections, reflux disease and sleep apnea.")
    assert not refers_back("Tests such as tonometry measure the pressure in the eye.")
    # A list continued ("Other ...") and a quantifier standing alone as the subject refer back; as a determiner
    # it does not.
    assert refers_back("Other signs and symptoms of anemia include: - Shortness of breath - Dizziness.")
    assert refers_back("Many are medicines and other treatments your doctor will have to prescribe.")
    assert not refers_back("Most people with gout have too much uric acid in their blood.")
    assert not refers_back("Some treatments for psoriasis are applied directly to the skin.")


def test_a_sentence_that_refers_back_is_supported_only_where_it_stands_in_its_passage():
    first, second, third = split_sentences(GLAUCOMA_TREATMENT)
    assert verify(third, [GLAUCOMA_TREATMENT]).kept == []  # alone, "these treatments" are no treatment at all
    assert [s.text for s in verify(f"{second} {third}", [GLAUCOMA_TREATMENT]).kept] == [second, third]
    assert [s.text for s in verify(f"{first} {third}", [GLAUCOMA_TREATMENT]).kept] == [first]
    topic = "Usher syndrome affects hearing and vision. This condition is inherited in an autosomal recessive pattern."
    assert len(verify(split_sentences(topic)[1], [topic]).kept) == 1
    only = extractive_answer("Can treatments improve sight already lost from glaucoma?", [GLAUCOMA_TREATMENT], 1)
    assert only.text and only.text != third  # never the dependent sentence without the one before it
    pair = extractive_answer("Can treatments improve sight already lost from glaucoma?", [GLAUCOMA_TREATMENT], 2)
    assert third not in pair.text or f"{second} {third}" in pair.text



def test_a_model_answer_opens_on_the_sentence_the_question_picks():
    from gpt2chat.chat.copybias import gpt2_opens_with, gpt2_text
    from gpt2chat.modeling.tokenizer import gpt2_tokenizer

    sentences = split_sentences(PASSAGE)
    assert answer_openers("How is glaucoma treated?", PASSAGE) == {tuple(words(sentences[2]))}
    assert answer_openers("What is glaucoma?", PASSAGE) == {tuple(words(sentences[0]))}
    openers = answer_openers("How is glaucoma treated?", PASSAGE)
    ids = [int(i) for i in gpt2_tokenizer()(" " + PASSAGE)]
    bias = CopyBias(ids, constrain=True, opens_answer=gpt2_opens_with(openers))
    assert [words(gpt2_text(ids[q:]))[:3] for q in bias.copyable_starts] == [["treatment", "includes", "medicines"]]
    # "What is X?" asks for the definition NIH pages open with, not the shortest sentence naming X
    page = ("Glaucoma is a group of diseases that slowly damage the optic nerve at the back of the eye over many "
            "years. An eye exam can find glaucoma.")
    assert extractive_answer("What is glaucoma?", [page], 1).text.startswith("Glaucoma is a group")
    no_prior = ExtractConfig(lead_weight=0)
    assert extractive_answer("What is glaucoma?", [page], 1, config=no_prior).text.startswith("An eye")
    longer = page + " Treatment with eye drops or surgery lowers the pressure in the eye."
    strong = ExtractConfig(lead_weight=5)
    assert extractive_answer("How is glaucoma found?", [longer], 1, config=strong).text.startswith("Glaucoma is")
    assert extractive_answer("How is glaucoma treated?", [longer], 1, config=strong).text.startswith("Treatment")
    flu = ("Flu is a respiratory infection caused by a number of viruses. People with mild cases of the flu should "
           "stay home and avoid contact with others. The main way to keep from getting the flu is to get a yearly "
           "flu vaccine.")
    assert extractive_answer("How can I prevent the flu?", [flu], 1).text.endswith("yearly flu vaccine.")
    # never a sentence that cannot be shown alone: nothing to open on rather than "Yes." or a dangling "It ..."
    assert answer_openers("How is glaucoma treated?", "Yes. It is treatable.") == frozenset()
    assert answer_openers("glaucoma", "Glaucoma (see below") == frozenset()
    assert not grounding.is_answer_sentence("(Watch the video to learn more about glaucoma.")  # half a parenthesis
    # the credit line that ends MedlinePlus summaries
    assert not grounding.is_answer_sentence("NIH: National Institute of Diabetes and Digestive and Kidney Diseases")

def test_extract_follows_the_question_keeps_passage_order_and_never_cuts_a_sentence():
    siblings = [
        "What are the signs and symptoms of glaucoma? Most people have no symptoms at first. Later, side vision "
        "is slowly lost.",
        PASSAGE,
    ]
    extract = extractive_answer("How is glaucoma treated?", siblings, max_sentences=1)
    assert extract.text.startswith("Treatment includes medicines") and extract.passages == [1]
    both = extractive_answer("How is glaucoma treated?", siblings, max_sentences=2, max_chars=400)
    assert both.sentences == tuple(sorted(both.sentences))  # reading order
    assert all(s.endswith((".", "!")) for s in split_sentences(both.text))
    assert "?" not in both.text  # question-like headings are never picked
    short = extractive_answer("What is glaucoma?", [PASSAGE], max_chars=80)
    assert short.text == "Glaucoma is a group of diseases that can damage the eye's optic nerve."
    assert extractive_answer("What is glaucoma?", [PASSAGE], max_chars=10).text == ""
    no_cues = extractive_answer("How is glaucoma treated?", siblings, 1, config=ExtractConfig(cue_weight=0))
    assert no_cues.sentences != extract.sentences  # the cue words are what finds the treatment sentence
    assert extractive_answer("What is glaucoma?", []).text == ""


def test_a_typed_question_prefers_the_sentences_of_its_type_over_short_ones_naming_the_focus():
    # MedlinePlus's flu page in one section: before the uncued factor, "How can I prevent the flu?" opened on the
    # stomach sentence (short, and it names the flu).
    page = ("Flu is a respiratory infection caused by a number of viruses. The viruses pass through the air and enter "
            "your body through your nose or mouth. Between 5% and 20% of people in the U.S. get the flu each year. "
            "Symptoms of the flu come on suddenly and are worse than those of the common cold. Colds rarely cause a "
            "fever or headaches. Flu almost never causes an upset stomach. Most people with the flu recover on their "
            "own without medical care. People with mild cases of the flu should stay home and avoid contact with "
            "others, except to get medical care. The main way to keep from getting the flu is to get a yearly flu "
            "vaccine. Good hygiene, including hand washing, can also help.")
    # The page's one section answers "What is (are) Flu ?": of it, only the sentences of the asked type are taken,
    # and the one that adds to the vaccine sentence ("... can also help"), right after it. Advice for the sick
    # ("... stay home and avoid contact with others") is not how to keep from getting it: "avoid" is no cue word.
    extract = extractive_answer("How can I prevent the flu?", [page], passage_questions=["What is (are) Flu ?"])
    assert extract.text == ("The main way to keep from getting the flu is to get a yearly flu vaccine. "
                            "Good hygiene, including hand washing, can also help.")
    without = extractive_answer("How can I prevent the flu?", [page], passage_questions=["What is (are) Flu ?"],
                                config=ExtractConfig(continuations=False))
    assert without.sentences == extract.sentences[:1]
    # An additive sentence whose predecessor is not of the asked type stays out: "also" alone does not make it
    # an answer.
    shuffled = page.replace("Good hygiene, including hand washing, can also help.", "").replace(
        "Colds rarely cause a fever or headaches.", "Colds rarely cause a fever. Good hygiene can also help.")
    assert "hygiene" not in extractive_answer("How can I prevent the flu?", [shuffled],
                                              passage_questions=["What is (are) Flu ?"]).text
    # A section written for the asked type keeps its other sentences; without the section's question, as before.
    on_type = extractive_answer("How can I prevent the flu?", [page], passage_questions=["How to prevent flu?"])
    plain = extractive_answer("How can I prevent the flu?", [page])
    assert on_type == plain and len(plain.sentences) == 3
    assert "upset stomach" in plain.text
    # What relieves a condition answers what to do about it: MedlinePlus's muscle cramps summary, asked "what can i do
    # about it?", had been answered with its three opening sentences, none saying what helps.
    cramps = ("Muscle cramps are sudden, involuntary contractions or spasms in one or more of your muscles. They often "
              "occur after exercise or at night, lasting a few seconds to several minutes. It is a very common muscle "
              "problem. Cramps can be very painful. Stretching or gently massaging the muscle can relieve this pain.")
    asked = extractive_answer("i keep getting muscle cramps in my calf at night, what can i do to treat it?", [cramps],
                              passage_questions=["What is (are) Muscle Cramps ?"])
    assert asked.text == "Stretching or gently massaging the muscle can relieve this pain."


def test_a_continuation_is_taken_only_right_after_its_predecessor():
    candidates = [(0, 0, "Vaccines prevent the flu."), (0, 1, "Hand washing can also help."),
                  (0, 2, "Flu spreads in winter.")]
    assert grounding.adds_to_previous("Hand washing can also help.")
    assert grounding.adds_to_previous("Masks help as well.") and not grounding.adds_to_previous("Masks help.")
    # Scored first, the continuation waits for its predecessor, which is not taken here (scored below the third).
    chosen = grounding.choose_sentences(candidates, [0.1, 1.0, 0.5], max_sentences=1, max_chars=600,
                                        follows=[False, True, False])
    assert chosen.sentences == ((0, 2),)
    chosen = grounding.choose_sentences(candidates, [0.6, 1.0, 0.5], max_sentences=2, max_chars=600,
                                        follows=[False, True, False])
    assert chosen.sentences == ((0, 0), (0, 1))


def test_lead_k():
    assert lead_k(PASSAGE, 2) == " ".join(split_sentences(PASSAGE)[:2])
    assert lead_k("", 3) == ""


def test_degenerate_answers_have_a_reason():
    assert is_degenerate("").reason == "empty"
    assert is_degenerate(" ... ").reason == "empty"
    assert is_degenerate("The condition.").reason == "under 5 words"
    assert is_degenerate("of the doctor of the doctor of the doctor of the doctor").reason == "repeated n-grams"
    assert not is_degenerate(PASSAGE)
    corpus = [PASSAGE, "Asthma is a chronic disease of the airways that makes breathing hard."]
    vocabulary = Vocabulary.from_texts(corpus)
    assert not is_degenerate(PASSAGE, vocabulary)
    assert is_degenerate("Zorbly quandix flemtor wibble snark plonk glaucoma.", vocabulary).reason == (
        "out-of-vocabulary words")
    salad = "diseases the of glaucoma nerve is optic group a damage can that"
    assert is_degenerate(salad, vocabulary).reason == "word salad"
    assert vocabulary.unseen_bigram_rate(words(PASSAGE)) == 0.0


# ------------------------------------------------------------------------------------------ copy-biased decoding
END = 99
# A synthetic vocabulary: 0 is ".", ids >= 10 start words. Reference: "10 11 12 . 13 14 . 15 11 16 ."
REFERENCE = [10, 11, 12, 0, 13, 14, 0, 15, 11, 16, 0]


def copy_bias(**options) -> CopyBias:
    options.setdefault("answer_sentence", lambda ids: True)  # synthetic ids: every sentence may be copied
    options.setdefault("opens_answer", lambda ids, position: True)  # ... and started
    return CopyBias(REFERENCE, end_id=END, sentence_end_ids=frozenset({0}),
                    sentence_start_ids=frozenset(range(10, 20)), **options)


def test_copy_bias_boosts_the_tokens_that_continue_the_reference():
    bias = copy_bias(strength=5.0, no_repeat_ngram=0)
    logits = np.zeros(100, dtype=np.float32)
    assert bias.match([99, 10, 11]) == (2, [1])
    boosted = bias(logits, [10, 11])
    assert boosted[12] == 5.0 and np.count_nonzero(boosted) == 1
    ambiguous = bias(logits, [11])  # "11" occurs twice: both continuations are candidates
    assert set(np.flatnonzero(ambiguous)) == {12, 16}
    start = bias(logits, [])  # the answer's first token: a sentence start
    assert set(np.flatnonzero(start)) == {10, 13, 15}
    assert logits.sum() == 0  # the input is not modified


def test_constrained_copying_allows_only_reference_continuations_sentence_starts_and_the_end():
    bias = copy_bias(constrain=True, no_repeat_ngram=0)
    logits = np.random.default_rng(0).normal(size=100).astype(np.float32)
    assert set(np.flatnonzero(bias(logits, [10]) > MASKED / 2)) == {11}
    at_boundary = set(np.flatnonzero(bias(logits, [10, 11, 12, 0]) > MASKED / 2))
    assert at_boundary == {10, 13, 15, END}  # a new sentence, or the end; never mid-sentence text
    assert bias(logits, [10, 11, 12, 0])[END] == logits[END]  # the model still decides whether to end
    assert set(np.flatnonzero(bias(logits, []) > MASKED / 2)) == {10, 13, 15}  # no empty answer
    assert set(np.flatnonzero(bias(logits, [50]) > MASKED / 2)) == {10, 13, 15}  # off the reference: restart
    limited = copy_bias(constrain=True, max_sentences=1)
    assert set(np.flatnonzero(limited(logits, [10, 11, 12, 0]) > MASKED / 2)) == {END}


def test_copying_never_starts_or_runs_into_a_sentence_that_cannot_be_an_answer():
    short = copy_bias(constrain=True, no_repeat_ngram=0, answer_sentence=lambda ids: len(ids) > 3)  # not "13 14 ."
    logits = np.zeros(100, dtype=np.float32)
    assert short.copyable_starts == [0, 7]
    assert set(np.flatnonzero(short(logits, []) > MASKED / 2)) == {10, 15}
    assert set(np.flatnonzero(short(logits, [10, 11, 12, 0]) > MASKED / 2)) == {10, 15, END}  # not "13 14 ."
    soft = copy_bias(strength=5.0, no_repeat_ngram=0, answer_sentence=lambda ids: len(ids) > 3)
    assert set(np.flatnonzero(soft(logits, [10, 11, 12, 0]))) == {10, 15}
    nothing = copy_bias(constrain=True, answer_sentence=lambda ids: False)
    assert set(np.flatnonzero(nothing(logits, []) > MASKED / 2)) == {END}  # an empty answer: the extract is shown


def test_gpt2_copy_decoding_skips_sentences_grounding_would_not_show():
    from gpt2chat.chat.copybias import gpt2_text
    from gpt2chat.chat.grounding import is_answer_sentence
    from gpt2chat.modeling.tokenizer import gpt2_tokenizer

    assert not is_answer_sentence("Yes.") and not is_answer_sentence("What is glaucoma and who gets it?")
    assert is_answer_sentence("Glaucoma is treated with eye drops or surgery.")
    text = " Yes. Glaucoma is treated with eye drops or surgery. What is glaucoma and who gets it? Nutrition."
    ids = [int(i) for i in gpt2_tokenizer()(text)]
    assert gpt2_text(ids) == text
    bias = CopyBias(ids, constrain=True)
    assert len(bias.sentence_starts) == 4
    assert [gpt2_text(ids[q:]).split(".")[0] for q in bias.copyable_starts] == [
        " Glaucoma is treated with eye drops or surgery"]


def test_copying_continues_into_a_sentence_that_refers_back_but_never_starts_it():
    follows = copy_bias(constrain=True, no_repeat_ngram=0, opens_answer=lambda ids, position: position != 1)
    logits = np.zeros(100, dtype=np.float32)
    assert follows.copyable_starts == [0, 7]  # "13 14 ." refers back to "10 11 12 ."
    assert set(np.flatnonzero(follows(logits, []) > MASKED / 2)) == {10, 15}
    assert set(np.flatnonzero(follows(logits, [10, 11, 12, 0]) > MASKED / 2)) == {10, 13, 15, END}
    assert set(np.flatnonzero(follows(logits, [15, 11, 16, 0]) > MASKED / 2)) == {10, 15, END}


def test_gpt2_copy_decoding_never_opens_on_a_sentence_that_refers_back():
    from gpt2chat.chat.copybias import gpt2_text
    from gpt2chat.modeling.tokenizer import gpt2_tokenizer

    ids = [int(i) for i in gpt2_tokenizer()(" " + GLAUCOMA_TREATMENT)]
    bias = CopyBias(ids, constrain=True)
    assert [gpt2_text(ids[q:]).split(".")[0] for q in bias.copyable_starts] == [
        " Immediate treatment for early stage, open-angle glaucoma can delay progression of the disease",
        " Glaucoma treatments include medicines, laser surgery, conventional surgery, or a combination of any of these"]
    second, third = bias.copyable_starts[1], bias.sentence_starts[2]
    copied_second = ids[second:third]
    allowed = set(np.flatnonzero(bias(np.zeros(60000, dtype=np.float32), copied_second) > MASKED / 2))
    assert ids[third] in allowed  # the third sentence is still copied on from the second


def test_a_constrained_copy_never_jumps_between_sentences_that_share_words():
    # "Mutations in the PYGL gene cause GSDVI." then "PYGL gene mutations prevent ...": having started the second,
    # the copy may not go on with the first's "cause"
    reference = [10, 20, 21, 30, 0, 20, 21, 40, 0]
    bias = CopyBias(reference, constrain=True, no_repeat_ngram=0, end_id=END, sentence_end_ids=frozenset({0}),
                    sentence_start_ids=frozenset({10, 20}), answer_sentence=lambda ids: True,
                    opens_answer=lambda ids, position: position == 1)
    logits = np.zeros(100, dtype=np.float32)
    assert set(np.flatnonzero(bias(logits, []) > MASKED / 2)) == {20}
    assert set(np.flatnonzero(bias(logits, [20, 21]) > MASKED / 2)) == {40}
    assert bias.copied_positions([20, 21]) == (2, [6])


def test_no_repeat_ngram_bans_a_repeated_ngram():
    bias = copy_bias(strength=0.0, no_repeat_ngram=2)
    logits = np.zeros(100, dtype=np.float32)
    assert bias(logits, [10, 11, 13, 10])[11] == MASKED  # "10 11" again
    assert bias(logits, [10, 11, 13, 10])[12] == 0.0
    stuck = copy_bias(constrain=True, no_repeat_ngram=2)
    assert set(np.flatnonzero(stuck(logits, [10, 11, 12, 0, 10]) > MASKED / 2)) == {END}  # nothing left to copy
    fresh = set(np.flatnonzero(stuck(logits, [10, 11, 12, 0]) > MASKED / 2))
    assert fresh == {13, 15, END}  # the first sentence is not started again
    shared = CopyBias([10, 20, 21, 22, 0, 13, 20, 21, 22, 0], constrain=True, no_repeat_ngram=3, end_id=END,
                      sentence_end_ids=frozenset({0}), sentence_start_ids=frozenset({10, 13}),
                      answer_sentence=lambda ids: True, opens_answer=lambda ids, position: True)
    copying = set(np.flatnonzero(shared(logits, [10, 20, 21, 22, 0, 13, 20, 21]) > MASKED / 2))
    assert copying == {22}  # a phrase the reference itself repeats may be copied again
    with pytest.raises(ValueError):
        copy_bias(strength=-1)


def test_gpt2_sentence_ends_and_starts():
    from gpt2chat.modeling.tokenizer import gpt2_vocabulary_and_merges

    vocabulary, _ = gpt2_vocabulary_and_merges()
    ends, starts = gpt2_piece_kinds()
    assert vocabulary["."] in ends and vocabulary["?"] in ends and vocabulary["Ġdog"] not in ends
    assert vocabulary["ĠThe"] in starts and vocabulary["Ġ2"] in starts and vocabulary["Ġ("] in starts
    assert vocabulary["Ġpopulation"] not in starts and vocabulary["The"] not in starts
    the, dog, cat, period = vocabulary["ĠThe"], vocabulary["Ġdog"], vocabulary["Ġcat"], vocabulary["."]
    bias = CopyBias([the, dog, period, the, cat, period, vocabulary["Ġcat"], period])  # " The dog. The cat. cat."
    assert bias.sentence_starts == [0, 3]  # "cat." after "cat." is no new sentence: lower case


def test_calibration_chooses_thresholds_that_separate_copies_from_salad(sample_records):
    from gpt2chat.reports.grounding_eval import build_examples, choose_thresholds, features, support_report

    examples = build_examples(sample_records[:60], random.Random(0))
    kinds, x = np.asarray([k for k, _, _ in examples]), features(examples)
    assert {"copy", "compressed", "shuffled", "salad", "other focus"} <= set(kinds)
    thresholds = choose_thresholds(kinds, x, 0.95)
    report = support_report(kinds, x, thresholds)
    assert report["precision"] >= 0.95 and report["accepted"]["copy"][0] == 1.0
    assert report["accepted"]["shuffled"][0] < 0.1


def test_cli_requires_calibrate(capsys):
    with pytest.raises(SystemExit):
        grounding_eval.main([])
    assert "--calibrate" in capsys.readouterr().err


def test_words_match_by_their_stem():
    section = ("The most common symptom of anemia is fatigue (feeling tired or weak). If you have anemia, you may find "
               "it hard to find the energy to do normal activities. Arrhythmias are problems with the rate or rhythm "
               "of the heartbeat. Anemia can weaken people who have cancer or HIV/AIDS.")
    best = extractive_answer("What are the symptoms of anemia?", [section], max_sentences=1)
    assert best.text == "The most common symptom of anemia is fatigue (feeling tired or weak)."
    unstemmed = extractive_answer("What are the symptoms of anemia?", [section], max_sentences=1,
                                  config=ExtractConfig(stem=False))
    assert unstemmed.text != best.text


def test_the_extract_reads_the_asked_type_with_retrievals_cues():
    # one set of question-type words: consumer wordings retrieval understands rank the extract's sentences too
    assert grounding.type_cues("will my eyelid droop go away?") == frozenset(grounding.ANSWER_WORDS["outlook"])
    assert "treatment" in grounding.type_cues("how do I get rid of it?")
    assert not grounding.has_type_cue("what is lupus?") and grounding.has_type_cue("is lupus inherited?")


def test_the_extract_reads_a_british_spelling_as_the_pages_american_one():
    """"anaemia" is no word of the NHLBI page: without it the extract chose by the cue words alone ("Chelation
    (ke-LAY-shun) therapy for lead poisoning.") over the sentences about anemia."""
    page = ("Chelation therapy is a treatment for lead poisoning. "
            "Iron therapy is a treatment for most people with anemia.")
    for question in ("what is the treatment for my anaemia?", "what is the treatment for my anemia?"):
        assert extractive_answer(question, [page], max_sentences=1).text == (
            "Iron therapy is a treatment for most people with anemia.")
