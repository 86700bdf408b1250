"""Question understanding and ``RetrievalIndex.retrieve`` on a small real index: misspelt and abbreviated foci,
question types, long messages, follow-ups, lay descriptions, and messages MedQuAD has no answer for."""

from __future__ import annotations

import dataclasses
import random
import string
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt2chat import settings
from gpt2chat.corpus.consumer import WRITTEN_CHECK_MESSAGES, message_text
from gpt2chat.corpus.data import focus_key, is_link_list, load_annotations, synonym_sets
from gpt2chat.search.entailment import rqe_pairs
from gpt2chat.search.ranking import SubQuestion
from gpt2chat.search.retrieval import RetrievalIndex
from gpt2chat.search.question_types import consumer_type_rows, medquad_type, without_focus, written_messages
from gpt2chat.search import ranking, retrieval_eval
from gpt2chat.search.retrieval_eval import (cross_validated_types, evaluate_consumer, evaluate_followups,
                                            evaluate_liveqa, normalise_url, resolved_page)
from gpt2chat.search import salience as salience_module
from gpt2chat.search.salience import FEATURES, FocusSalience
from gpt2chat.search.understanding import (FocusMatch, _compound_parts, _stem_of_another_word, _words_by_stem,
                                            american_spelling, everyday_english, raw_words, sentences,
                                            split_questions)
from tests.conftest import early_child, early_result, saved_index

CHECKOUT = Path(__file__).resolve().parent.parent  # the child imports tests.test_understanding from here

# Answered foci the tests ask about, plus their neighbours that compete for the same words.
FOCI = {"gout", "glaucoma", "diabetes", "type 1 diabetes", "diabetes insipidus", "deep vein thrombosis",
        "antiphospholipid syndrome",
        "familial mediterranean fever", "common variable immunodeficiency", "lyme disease", "tick bites",
        "osteoporosis", "menopause", "croup", "chronic lymphocytic leukemia", "acute lymphoblastic leukemia",
        "adult acute lymphoblastic leukemia", "lupus", "asthma", "klinefelter syndrome", "q fever", "fever", "hemophilia",
        "supravalvular aortic stenosis", "sickle cell disease", "sickle cell anemia"}
# Every MedlinePlus health topic as well, so that lay descriptions compete with ~900 foci as in the real index.
HEALTH_TOPICS = "4_MPlus_Health_Topics_QA"
# Topics MedQuAD publishes without answers (drugs, encyclopedia articles): recognised, never answered.
UNANSWERED = {"acetaminophen", "ibuprofen", "metformin", "acetaminophen dosing for children", "aortic stenosis",
              "foot, leg, and ankle swelling", "latanoprost ophthalmic", "insulin glargine (rdna origin) injection"}


@pytest.fixture(scope="module")
def records(full_medquad):
    return [r for r in full_medquad[0] if focus_key(r.focus) in FOCI or r.subset == HEALTH_TOPICS]


@pytest.fixture(scope="module")
def annotations(medquad_dir):
    return [a for a in load_annotations(medquad_dir)
            if focus_key(a.focus) in FOCI | UNANSWERED or a.subset == HEALTH_TOPICS]


# The module's index of ``records`` and ``annotations``, built by an early child (conftest) and saved: in this process
# the build was 9.5 s of the module's setup on the 2-core machine. A sample of the RQE train split keeps the build at
# a few seconds; the full split is used by the app.
INDEX_BUILD = """
import sys
from gpt2chat import settings
from gpt2chat.corpus.data import focus_key, load_annotations, load_records
from gpt2chat.search.entailment import rqe_pairs
from gpt2chat.search.retrieval import RetrievalIndex
from tests.test_understanding import FOCI, HEALTH_TOPICS, UNANSWERED

records = [r for r in load_records(sys.argv[1])[0] if focus_key(r.focus) in FOCI or r.subset == HEALTH_TOPICS]
annotations = [a for a in load_annotations(sys.argv[1])
               if focus_key(a.focus) in FOCI | UNANSWERED or a.subset == HEALTH_TOPICS]
RetrievalIndex.build(records, annotations=annotations, rqe=rqe_pairs("train")[:800]).save(sys.argv[2])
"""
early_child("understanding_index_dir", lambda folder: [
    sys.executable, "-c", INDEX_BUILD, str(settings.medquad_dir()), str(folder / "index")], cwd=CHECKOUT)


@pytest.fixture(scope="module")
def understanding_index_dir(tmp_path_factory):
    return early_result("understanding_index_dir", tmp_path_factory).folder / "index"


@pytest.fixture(scope="module")
def index(records, understanding_index_dir):
    return saved_index(understanding_index_dir, records)


def _foci(index, text):
    return [m.key for m in index.understanding.recogniser.find(text)]


@pytest.mark.parametrize("message, focus", [
    ("whats diabete", "diabetes"),
    ("Antiphosoholipid syndrome", "antiphospholipid syndrome"),
    ("Hello i would like more info about Familial Mediterean Fever please", "familial mediterranean fever"),
    ("How can I get Information on Cronic Lymphocytice Leukemia", "chronic lymphocytic leukemia"),
    ("what are some of the treatments available to males with klinefelter's", "klinefelter syndrome"),
    ("GOUT!!! in my big toe", "gout"),
    ("my husband snores", "snoring"),  # a form of a known word ("snore"), not a misspelling of "sores"
])
def test_misspelt_cased_and_possessive_foci_are_recognised(index, message, focus):
    assert _foci(index, message)[0] == focus


@pytest.mark.parametrize("message, focus", [
    ("what is DVT", "deep vein thrombosis"), ("dvt after a flight", "deep vein thrombosis"),
    ("is CVID inherited", "common variable immunodeficiency"),
])
def test_abbreviations_are_recognised(index, message, focus):
    assert focus in _foci(index, message)


def test_an_abbreviation_that_is_an_everyday_word_needs_capitals(index):
    assert not any("lymphoblastic" in key for key in _foci(index, "all of my family has it"))
    assert any("lymphoblastic" in key for key in _foci(index, "my son has ALL"))


def test_a_medicine_is_named_without_its_route(index):
    """MedQuAD's "Latanoprost Ophthalmic" is the user's "latanoprost", so "Is this from the drops?" asks about it."""
    recogniser = index.understanding.recogniser
    assert [m.key for m in recogniser.find("I use latanoprost drops at night")] == ["latanoprost ophthalmic"]
    assert [m.key for m in recogniser.find("my insulin glargine pen")] == ["insulin glargine (rdna origin) injection"]
    assert "latanoprost ophthalmic" in recogniser.medicines
    result = index.retrieve("I use latanoprost drops for my glaucoma. My eyelashes grew long. Is this from the drops?")
    assert result.medicine_question == (("Latanoprost Ophthalmic",), "side effects")


def test_unanswered_topics_are_recognised_as_such(index):
    matches = index.understanding.recogniser.find("how much metformin")
    assert matches and matches[0].key == "metformin" and not matches[0].answered


@pytest.mark.parametrize("message, qtype", [
    ("how do doctors find out if you have lupus?", "exams and tests"),
    ("How is glaucoma treated?", "treatment"),
    ("is it hereditary", "inheritance"),
    ("how many people get it", "frequency"),
    ("what are the warning signs", "symptoms"),
    ("How much tylenol can I take?", "dose"),
    ("when should I take it?", "usage"),
    ("what is it used for?", "indication"),
    ("can I take it if I have kidney disease?", "contraindication"),
])
def test_question_type_classifier(index, message, qtype):
    assert index.understanding.types.types(message)[0][0] == qtype


def test_a_message_can_carry_several_types(index):
    result = index.retrieve("Gout. My father has gout. What causes it? How is it treated?")
    assert [q.types[0][0] for q in result.questions] == ["causes", "treatment"]
    assert all([m.key for m in q.foci][0] == "gout" for q in result.questions)
    # each sub-question is answered from its own passage, so the reply can cite both
    assert [q.passages[0].question_type for q in result.questions] == ["causes", "treatment"]
    assert len(result.passages(k=3)) >= 1 and result.answerable


def test_splitting_keeps_the_questions_and_drops_the_subject_line():
    message = "Chronic lymphocytic leukemia. How can I get information on it? Thanks so much."
    assert split_questions(message) == ["How can I get information on it?"]
    assert split_questions("lupus treatment") == ["lupus treatment"]
    assert len(split_questions("What is it? " * 10)) == 3


@pytest.mark.parametrize("text, expected", [
    # a web address, a number and an abbreviation end no sentence
    ("In your article [http://www.nlm.nih.gov/medlineplus/ency/article/000954.htm] it says so. I take 2.5 mg.",
     ["In your article [http://www.nlm.nih.gov/medlineplus/ency/article/000954.htm] it says so.", "I take 2.5 mg."]),
    ("is there a continuum, i.e. a milder form? Dr. Smith said no!!!",
     ["is there a continuum, i.e. a milder form?", "Dr. Smith said no!!!"]),
    # a period with no space after it still ends a sentence in words; punctuation alone is no sentence
    ("I have had a shunt since 2007.How often do they need changing?..",
     ["I have had a shunt since 2007.", "How often do they need changing?.."]),
    # an acronym or "no" before a period ends the sentence; a blood pressure is no address
    ("I have MS. Can it be cured?", ["I have MS.", "Can it be cured?"]),
    ("My doctor said no. What should I do?", ["My doctor said no.", "What should I do?"]),
    ("I take .5 mg of xanax. Is that too much?", ["I take .5 mg of xanax.", "Is that too much?"]),
    ("my bp is 140/90.Is that high?", ["my bp is 140/90.", "Is that high?"]),
])
def test_sentences_end_where_a_writer_ended_them(text, expected):
    assert sentences(text) == expected


def test_thanks_ask_nothing_and_my_question_asks():
    message = ("Turner syndrome. My question is can she have normal children. "
               "Thank you in advance for your help!!!")
    assert split_questions(message) == ["My question is can she have normal children."]
    asked = "Thanks, but what is the dose of metformin?"
    assert split_questions(asked) == [asked]


@pytest.mark.parametrize("first, followup, focus, qtype", [
    ("what is gout?", "What causes it?", "gout", "causes"),
    ("My dad was just diagnosed with gout", "and how is it treated?", "gout", "treatment"),
    ("tell me about glaucoma", "how is it treated", "glaucoma", "treatment"),
])
def test_a_follow_up_inherits_the_focus_of_the_conversation(index, first, followup, focus, qtype):
    result = index.retrieve(followup, history=["hello", first])
    question = result.questions[0]
    assert question.carried_over and question.foci[0].key == focus
    assert focus_key(question.passages[0].focus) == focus and question.passages[0].question_type == qtype


def test_a_follow_up_naming_a_new_focus_does_not_carry_the_old_one(index):
    question = index.retrieve("what about asthma?", history=["what is gout?"]).questions[0]
    assert not question.carried_over and question.foci[0].key == "asthma"


@pytest.mark.parametrize("message, follows", [
    ("and how is it treated?", True), ("what are the symptoms", True), ("is surgery the only treatment?", True),
    ("what helps with a hangover", False), ("write me a poem about cats", False),
    ("unrelated, how is it treated?", False), ("different question: what are the symptoms?", False),
])
def test_a_follow_up_is_told_from_a_new_question(index, message, follows):
    assert index.understanding.recogniser.follows_up(message) is follows


@pytest.mark.parametrize("history, message", [
    (["tell me about glaucoma"], "thanks! unrelated, what helps with a hangover"),
    (["what is lupus"], "what is the condition where your immune system attacks your joints"),
    (["what is asthma"], "write me a poem about cats"),
    (["what is gout?"], "tell me a joke"),
])
def test_a_new_question_or_an_off_topic_request_does_not_inherit_the_topic(index, history, message):
    result = index.retrieve(message, history=history)
    assert not any(q.carried_over for q in result.questions)
    cited = {focus_key(p.focus) for p in result.passages()}
    assert not cited & {"glaucoma", "lupus", "asthma", "gout"}
    if "poem" in message or "joke" in message:
        assert not result.answerable and result.passages() == []


def test_the_topic_follows_the_conversation_turn_by_turn(index):
    described = ["what is gout?", "the sugar disease where your body stops making insulin"]
    question = index.retrieve("how is it treated?", history=described).questions[0]
    assert question.carried_over and question.foci[0].key == "diabetes"
    # an off-topic request in between leaves no topic to carry
    after_poem = index.retrieve("how is it treated?", history=["what is gout?", "write me a poem about cats"])
    assert not any(q.carried_over for q in after_poem.questions)
    # a follow-up in between keeps it
    kept = index.retrieve("how is it diagnosed?", history=["what is gout?", "what causes it?"]).questions[0]
    assert kept.carried_over and kept.foci[0].key == "gout"


@pytest.mark.parametrize("message", [
    "Gout. My father has had gout for years. Is surgery an option for him?",
    "gout gout whats gout. is there a test for him",
])
def test_a_question_naming_no_condition_strongly_is_about_the_subject_line(index, message):
    """The sub-question's own matches are an everyday word ("surgery") or none: the message's main focus leads."""
    result = index.retrieve(message)
    assert [focus_key(q.foci[0].focus) for q in result.questions] == ["gout"]
    assert focus_key(result.passages(1)[0].focus) == "gout"


def test_a_repeated_misspelt_subject_line_is_still_english(index):
    """The misspelt words that name a focus count as known words: three of "diabete whats diabete" are not MedQuAD
    words, and the message used to be taken for another language."""
    result = index.retrieve("diabete whats diabete")
    assert result.answerable and focus_key(result.passages(1)[0].focus) == "diabetes"


def test_a_follow_up_gets_the_focus_page_of_its_own_type(index):
    """After a definition, "what are the symptoms?" cites the focus's symptoms page, not the definition again."""
    question = index.retrieve("what are the symptoms?", history=["what is glaucoma?"]).questions[0]
    assert focus_key(question.passages[0].focus) == "glaucoma" and question.passages[0].question_type == "symptoms"


@pytest.mark.parametrize("message, focus", [
    # the general page, which explains both types, over the subtype the message describes but does not name
    ("the sugar disease where your body stops making insulin", "diabetes"),
    ("my joints hurt and my big toe is red and swollen", "gout"),
])
def test_lay_descriptions_reach_the_condition(index, message, focus):
    result = index.retrieve(message)
    assert result.answerable and focus_key(result.passages(1)[0].focus) == focus


def test_ranking_follows_the_question_type(index):
    passages = index.retrieve("How is glaucoma treated?").passages(1)
    assert passages[0].focus == "Glaucoma" and passages[0].question_type == "treatment"


def test_a_list_of_links_goes_behind_a_page_that_answers_in_sentences(index):
    # GHR's treatment answer for hemophilia is only links; NHLBI's and GARD's name the treatments
    link_lists = [p for p in index.retrieve("how is hemophilia treated", k=10).questions[0].passages
                  if is_link_list(p.answer)]
    passage = index.retrieve("how is hemophilia treated").passages(1)[0]
    assert link_lists and passage.focus.lower() == "hemophilia" and passage.question_type == "treatment"
    assert not is_link_list(passage.answer)


NOISE = "".join(random.Random(0).choice(string.ascii_letters + "  ") for _ in range(2000))


@pytest.mark.parametrize("message", [
    "", "   ", "what is the", "?!", NOISE, "How much tylenol can I take?", "how many mg of metformin should I take",
    "¿Cuáles son los síntomas de la diabetes?", "Was sind die Symptome von Diabetes?", "糖尿病的症状是什么",
    "\x00\x01",
])
def test_no_answer_without_an_exception(index, message):
    result = index.retrieve(message, history=["what is gout?"] if message == "?!" else ())
    assert not result.answerable and result.passages() == []
    assert result.medlineplus_url.startswith("https://medlineplus.gov/search/?query=")


def test_no_answer_offers_a_medlineplus_search_for_what_was_asked(index):
    result = index.retrieve("How much tylenol can I take?")
    assert not result.answerable and "Acetaminophen" in result.medlineplus_url


def test_huge_messages_and_histories_are_cut_not_processed_whole(index, monkeypatch):
    from gpt2chat.search import ranking

    recogniser = index.understanding.recogniser
    seen_words = []

    def find(text):
        seen_words.append(len(text.split()))
        return type(recogniser).find(recogniser, text)

    monkeypatch.setattr(recogniser, "find", find)
    result = index.retrieve("how is gout treated? " * 50_000, history=["what is glaucoma? " * 50_000] * 20)
    assert result.answerable and len(result.questions) <= 3
    assert seen_words and max(seen_words) == ranking.MAX_WORDS  # 200,000 words asked, 400 read


@pytest.fixture(scope="module")
def extract_engine(index, masker):
    """The chat engine over this index without a model: answers are extracts of the passages retrieve picks."""
    from gpt2chat.chat.engine import ChatEngine
    from gpt2chat.guard.emergency import build_detector
    from gpt2chat.guard.safety import SafetyPolicy

    return ChatEngine(None, index, masker=masker, safety=SafetyPolicy(build_detector()))


def test_the_engine_carries_the_focus_of_a_follow_up(extract_engine):
    from gpt2chat.chat.engine import Turn

    earlier = [Turn("what is gout?", "Gout is a kind of arthritis.")]
    reply = extract_engine.reply("and how is it treated?", history=earlier)
    assert reply.sources and reply.sources[0].title == "Gout" and reply.answer


def test_the_engine_cites_one_page_per_core_question(extract_engine):
    reply = extract_engine.reply("What are the symptoms of gout? And how is glaucoma treated?")
    assert {"Gout", "Glaucoma"} <= {source.title for source in reply.sources}


@pytest.mark.parametrize("message, asked, medicines", [
    ("I take metformin for my diabetes. Could the pills be upsetting my stomach?", "side effects", ("Metformin",)),
    ("I take metformin for my diabetes. Is my back pain from the pills?", "side effects", ("Metformin",)),
    # what goes with the medicine the sentence names: the message's other medicines too
    ("I take metformin for my diabetes. Can I take ibuprofen with it?", "interactions with medications",
     ("Ibuprofen", "Metformin")),
    ("what is metformin used for?", "indication", ("Metformin",)),
    # "while breastfeeding" asks it though Breastfeeding is a focus the sentence names
    ("Can I use latanoprost while breastfeeding?", "contraindication", ("Latanoprost Ophthalmic",)),
])
def test_a_medicines_question_is_about_the_medicine_the_message_names(index, message, asked, medicines):
    """Not the condition's page: "Could the pills be upsetting my stomach?" had cited diabetes's treatment."""
    result = index.retrieve(message)
    assert not result.answerable and result.passages() == []
    assert result.medicine_question == (medicines, asked)


@pytest.mark.parametrize("message, focus", [
    ("I take metformin for my diabetes. How do I take care of my feet?", "Diabetes"),  # no "how to take" question
    ("What is the right dose of exercise for osteoporosis?", "Osteoporosis"),  # no medicine named: the condition's
    ("Which drugs can cause osteoporosis?", "Osteoporosis"),
    # a medicine's cue read through a focus name ("while breastfeeding") needs the sentence to name the medicine
    ("I take metformin. Can postpartum depression happen while breastfeeding?", "Postpartum Depression"),
])
def test_a_conditions_question_is_no_medicines_question(index, message, focus):
    result = index.retrieve(message)
    assert result.medicine_question is None and result.passages()[0].focus == focus


def test_the_engine_says_why_a_medicines_question_has_no_nih_answer(extract_engine):
    reply = extract_engine.reply("I take metformin for my diabetes. Could the pills be upsetting my stomach?")
    assert reply.category == "no_answer" and not reply.sources
    assert reply.answer == ("My NIH sources have no answer on the side effects of Metformin: the medicine pages "
                            "they come from are published without answers. MedlinePlus has a page on each medicine: "
                            "https://medlineplus.gov/druginformation.html")
    assert "Metformin" in reply.search_url


def test_the_engine_says_there_is_no_nih_answer_instead_of_citing_a_loose_page(extract_engine):
    reply = extract_engine.reply("how many mg of metformin should I take")
    assert reply.category in ("no_answer", "boundary") and not reply.sources and not reply.evidence
    assert reply.search_url.startswith("https://medlineplus.gov/search/?query=") and "Metformin" in reply.search_url


def test_pages_are_resolved_across_site_moves():
    assert resolved_page("http://rarediseases.info.nih.gov/gard/8173/achondroplasia") == "gard:8173"
    assert resolved_page("https://rarediseases.info.nih.gov/diseases/8173/Achondroplasia/") == "gard:8173"
    assert (resolved_page("https://www.ninds.nih.gov/Disorders/All-Disorders/Multiple-Sclerosis-Information-Page")
            == resolved_page("http://www.ninds.nih.gov/disorders/multiple_sclerosis/multiple_sclerosis.htm"))
    assert resolved_page("https://MedlinePlus.gov/ency/article/000694.htm/") == normalise_url(
        "medlineplus.gov/ency/article/000694.htm")


def test_the_consumer_evaluation_counts_judged_pages(index):
    glaucoma = index.retrieve("How is glaucoma treated?").passages(1)[0].url
    gard = next(index.passage(i)["url"] for i in range(len(index)) if index.passage(i)["source"] == "GARD"
                and focus_key(index.passage(i)["focus"]) == "familial mediterranean fever")
    moved = gard.replace("/gard/", "/diseases/")
    questions = [
        {"set": "test", "question": "How is glaucoma treated?", "answers": [{"url": glaucoma.upper(), "score": 4}]},
        {"set": "test", "question": "familial mediterranean fever", "answers": [{"url": moved, "score": 3}]},
        {"set": "alexa", "question": "what is glaucoma", "answers": [{"url": glaucoma, "score": 2}]},
    ]
    strict = evaluate_consumer(index, questions, True)
    assert strict["per_set"]["test"]["n"] == 1 and strict["per_set"]["test"]["hit@1"] == 1
    assert "alexa" not in strict["per_set"]  # a page judged "related" (2) is no correct answer
    resolved = evaluate_consumer(index, questions, True, resolved_page)
    assert resolved["per_set"]["test"]["n"] == 2 and resolved["per_set"]["test"]["hit@5"] == 2


def test_consumer_type_rows_learn_single_type_messages_without_their_focus():
    messages = [
        {"subject": "Gout", "message": "How can I get rid of gout in my toe?", "subquestions": [
            {"focus": "gout", "type": "treatment"}]},
        {"subject": "", "message": "What causes lupus? How is it treated?", "subquestions": [
            {"focus": "lupus", "type": "cause"}, {"focus": "lupus", "type": "treatment"}]},  # two types: skipped
        {"subject": "", "message": "Where is a lupus clinic near me?", "subquestions": [
            {"focus": "lupus", "type": "organization"}]},  # no MedQuAD type: skipped
        {"subject": "", "message": "Can stress cause high blood pressure?", "subquestions": [
            {"focus": "high blood pressure", "type": "association"}]},
    ]
    assert consumer_type_rows(messages) == [("How can I get rid of  it  in my toe?", "treatment"),
                                            ("Can stress cause  it ?", "causes")]


def test_written_messages_are_liveqa_shaped_rows_with_medquad_types(tmp_path):
    rows = written_messages()
    assert len(rows) == 640 and len({r["id"] for r in rows}) == 640
    check = written_messages(WRITTEN_CHECK_MESSAGES)  # a set apart: none is a training message
    assert len({r["id"] for r in check}) == 599 and not {r["id"] for r in check} & {r["id"] for r in rows}
    assert not {message_text(r) for r in check} & {message_text(r) for r in rows}
    assert all(medquad_type(sub["type"]) == sub["type"] for r in rows for sub in r["subquestions"])
    first = rows[0]
    assert first["subject"] == "macular degeneration" and first["subquestions"] == [
        {"focus": "macular degeneration", "type": "treatment"}]
    assert consumer_type_rows([{"subject": "", "message": "How much metformin is too much?", "subquestions": [
        {"focus": "metformin", "type": "dose"}]}]) == [("How much  it  is too much?", "dose")]
    assert [medquad_type(t) for t in ("dosage", "dose", "cause", "causes", "organization")] == [
        "dose", "dose", "causes", "causes", None]
    damaged = tmp_path / "written.jsonl"
    damaged.write_text('{"id": "a", "subject": "", "message": "hi", "types": ["treatment"], "focus": []}\n'
                       '{"id": "b", "subject": "", "message": "hi", "types": ["organization"], "focus": []}\n')
    with pytest.raises(ValueError, match=r"written.jsonl, line 2: not a written message"):
        written_messages(damaged)


def test_a_drug_type_asked_of_a_condition_gets_the_condition_answered(index, monkeypatch):
    """The types MedQuAD publishes without answers are a drug's: "how do I stop diarrhea" read as stopping a drug
    (usage) had no answer. Asked of a condition, the answered types share the weight; of a medicine, no answer."""
    classes = index.understanding.types.classes
    usage = np.array([{"usage": 0.8, "treatment": 0.15}.get(c, 0.05 / len(classes)) for c in classes])
    monkeypatch.setattr(index.understanding.types, "probabilities",
                        lambda texts, cues=None: np.tile(usage, (len(texts), 1)))
    result = index.retrieve("how do i stop my gout")
    assert result.answerable and result.questions[0].types[0][0] == "treatment"
    assert focus_key(result.passages(1)[0].focus) == "gout"
    medicine = index.retrieve("how do i stop ibuprofen")
    assert not medicine.answerable and medicine.questions[0].types[0][0] == "usage"


def test_the_liveqa_evaluation_counts_focus_found_through_synonyms_and_types(index):
    messages = [
        {"id": "a", "text": "How is gout treated?", "subquestions": [{"focus": "podagra", "type": "treatment"}]},
        {"id": "b", "text": "what causes glaucoma", "subquestions": [{"focus": "glaucoma", "type": "cause"},
                                                                     {"focus": "glaucoma", "type": "organization"}]},
        {"id": "c", "text": "I need help with my landlord", "subquestions": [{"focus": "landlord", "type": "information"}]},
    ]
    synonyms = {"gout": frozenset({"gout", "podagra"}), "glaucoma": frozenset({"glaucoma"})}
    counts = evaluate_liveqa(index, messages, synonyms)["counts"]
    assert counts["focus n"] == 2 and counts["focus found"] == 2  # "podagra" is a synonym of the cited gout
    assert counts["types n"] == 4 and counts["types mapped"] == 3 and counts["type found"] == 2
    assert [(counts[f"type found: {t}"], counts[f"types n: {t}"]) for t in ("treatment", "causes", "information")] \
        == [(1, 1), (1, 1), (0, 1)]
    assert counts["messages"] == 3 and counts["no answer"] == 1


def test_consumer_types_are_cross_validated_with_each_fold_unseen(index, annotations, monkeypatch):
    asked = [("How is gout treated?", "treatment"), ("what causes gout", "cause"), ("is gout inherited?", "inheritance"),
             ("what are the symptoms of gout", "symptom"), ("how do doctors test for gout", "diagnosis"),
             ("can gout be prevented", "prevention"), ("what is the outlook for gout", "prognosis"),
             ("my son has gout, who can I call?", "organization")]
    messages = [{"id": f"m{i}", "subject": "", "message": text, "text": text,
                 "subquestions": [{"focus": "gout", "type": qtype}]} for i, (text, qtype) in enumerate(asked)]
    learnt, measured = [], []
    rows, evaluate = retrieval_eval.consumer_type_rows, retrieval_eval.evaluate_liveqa
    monkeypatch.setattr(retrieval_eval, "consumer_type_rows", lambda kept: learnt.append({m["id"] for m in kept})
                        or rows(kept))
    monkeypatch.setattr(retrieval_eval, "evaluate_liveqa", lambda idx, held_out, synonyms: measured.append(
        {m["id"] for m in held_out}) or evaluate(idx, held_out, synonyms))
    built = index.understanding.types
    counts = cross_validated_types(index, annotations, messages, folds=4)
    assert index.understanding.types is built
    passage = index.passage(0)  # the passages' types stay the built classifier's, read without their focus
    assert np.allclose(index.type_probabilities(np.arange(1))[0],
                       built.probabilities([without_focus(passage["question"], passage["focus"])])[0], atol=1e-4)
    assert [len(ids) for ids in measured] == [2, 2, 2, 2] and set().union(*measured) == {m["id"] for m in messages}
    assert learnt[0] == {m["id"] for m in written_messages()}  # every fold also learns the written messages
    assert all(not (kept & held_out) and len(kept) == 6 for kept, held_out in zip(learnt[1:], measured))
    assert counts["types n"] == 8 and counts["type found"] == 7  # "organization" has no MedQuAD type


def test_the_conversation_evaluation_scores_each_kind(index):
    talks = [
        {"turns": ["what is gout?", "how is it treated?"], "kind": "follow-up", "focus": "Gout", "type": "treatment"},
        {"turns": ["what is gout?", "what is asthma?"], "kind": "new topic", "focus": "Asthma", "type": "information"},
        {"turns": ["what is gout?", "write me a poem about cats"], "kind": "off topic", "focus": None, "type": None},
        {"turns": ["what is gout?", "what is glaucoma?"], "kind": "follow-up", "focus": "Gout", "type": None},
        # names its focus itself: about gout, but nothing was carried over, so no follow-up was recognised
        {"turns": ["what is gout?", "how is gout treated?"], "kind": "follow-up", "focus": "Gout", "type": None},
    ]
    counts = evaluate_followups(index, talks)
    assert counts["follow-up n"] == 3 and counts["follow-up right"] == 1
    assert counts["new topic right"] == 1 and counts["off topic right"] == 1
    assert counts["focus n"] == 4 and counts["focus cited"] == 3 and counts["type cited"] == 2


@pytest.mark.parametrize("message, focus", [
    ("aeortic stenosis", "supravalvular aortic stenosis"),  # A.D.A.M.'s "Aortic stenosis" has no answers
    # nor "Foot, leg, and ankle swelling"; this small index has MedlinePlus's edema page, not NHLBI's heart failure
    ("i get out of breath climbing stairs and my ankles swell", "edema"),
])
def test_an_unanswered_encyclopedia_topic_is_answered_from_a_related_answered_page(index, message, focus):
    result = index.retrieve(message)
    assert not result.questions[0].foci[0].answered
    assert result.answerable and focus_key(result.passages(1)[0].focus) == focus


def test_an_unanswered_medicine_gets_no_loosely_related_page(index, monkeypatch):
    """Even when some condition's description matches strongly (in the full index "what is metformin" matched
    hypoglycemia's), a drug's question gets the MedlinePlus search, where an encyclopedia topic gets that page."""
    scores = np.zeros(len(index.description_keys), dtype=np.float32)
    scores[index.description_keys.index("asthma")] = 20.0
    monkeypatch.setattr(index, "description_scores", lambda text: scores)
    result = index.retrieve("what is metformin")
    assert [m.key for m in result.questions[0].foci] == ["metformin"] and not result.answerable
    assert focus_key(index.retrieve("what is foot, leg, and ankle swelling").passages(1)[0].focus) == "asthma"


def test_a_question_word_that_names_a_topic_still_asks_the_type():
    """The classifier reads the sentence with its foci replaced by "it", except the question words among them
    ("gene" names the "Genes" topic): "what gene is involved?" must still ask for the genetic changes."""
    from gpt2chat.search.ranking import _without_foci

    foci = [FocusMatch("Genes", "genes", 0.5, "gene", True, generic=True),
            FocusMatch("Hereditary angioedema", "hereditary angioedema", 1.0, "Hereditary angioedema", True)]
    assert _without_foci("what gene is involved in Hereditary angioedema?", foci).split() == \
        "what gene is involved in it ?".split()


def test_the_message_is_about_the_condition_asked_about_not_one_said_in_passing(index, monkeypatch):
    """A focus far less salient than the message's main one (the aunt's stress, here by a stand-in salience) does
    not keep the main focus from the sentence that names it: the plea for help cites the son's asthma."""
    message = ("Hello, can you help my aunt, who is very stressed? Her son has had asthma since he was 2 and his "
               "inhalers do not work any more, what else can she try?")

    class StressSaidInPassing:
        def scores(self, text, matches, recogniser, pair_counts):
            return np.array([-3.0 if m.key == "stress" else 0.0 for m in matches])  # exp(-3): 0.05 as salient

    assert [focus_key(q.passages[0].focus) for q in index.retrieve(message).questions] == ["stress", "asthma"]
    monkeypatch.setattr(index.understanding, "salience", StressSaidInPassing())
    assert [focus_key(q.passages[0].focus) for q in index.retrieve(message).questions] == ["asthma", "asthma"]


def test_focus_salience_learns_which_focus_annotators_chose(index):
    """Learnt from annotated messages whose subject line names the focus asked about while the story names
    another, the salience ranks a new message's subject-line focus first."""
    recogniser = index.understanding.recogniser
    messages = [{"subject": subject, "message": f"My son has {other} too. What can we do?",
                 "subquestions": [{"focus": subject, "type": "treatment"}]}
                for subject, other in [("gout", "asthma"), ("glaucoma", "lupus"), ("asthma", "gout"),
                                       ("lupus", "croup"), ("croup", "lupus"), ("osteoporosis", "lupus")]]
    synonyms = synonym_sets([])  # names compared as written
    salience = FocusSalience.build(recogniser, index.pair_counts, messages, synonyms)
    text = "Glaucoma question. My mother has asthma as well. Is there a cure?"  # more than a name: no heading bonus
    matches = [m for m in recogniser.find(text) if m.key in {"glaucoma", "asthma"}]
    scores = salience.scores(text, matches, recogniser, index.pair_counts)
    keys = [m.key for m in matches]
    assert scores[keys.index("glaucoma")] > scores[keys.index("asthma")]
    assert FocusSalience.from_json(salience.to_json()).scores(text, matches, recogniser, index.pair_counts).tolist() \
        == scores.tolist()
    untrained = FocusSalience.build(recogniser, index.pair_counts, [], synonyms)
    assert untrained.scores(text, matches, recogniser, index.pair_counts).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("damage", [{"coef": [1.0]}, {"coef": [float("nan")] * len(FEATURES)}, {"features": ["x"]}])
def test_damaged_focus_salience_weights_are_refused(index, damage):
    payload = {**index.understanding.salience.to_json(), **damage}
    with pytest.raises(ValueError, match="focus salience"):
        FocusSalience.from_json(payload)


def test_a_name_the_rest_of_the_message_makes_precise_is_taken_precisely(index):
    """"hernia" in a question under the subject line "hiatal hernia" is the hiatal hernia; a question that names
    the general condition itself keeps it."""
    result = index.retrieve("hiatal hernia/exercise. i lost 24 lbs. do you have an exercise i can do to correct my "
                            "hernia?")
    assert focus_key(result.passages(1)[0].focus) == "hiatal hernia"
    result = index.retrieve("What is a hernia? What is a hiatal hernia?")
    assert [focus_key(q.passages[0].focus) for q in result.questions] == ["hernia", "hiatal hernia"]


def test_the_focus_evaluation_rebuilds_the_salience_without_each_fold(index, monkeypatch):
    """Each message is measured by a salience learnt without it; the story's condition comes first, the one asked
    about second, so the recogniser's order is wrong on all of them and the learnt salience right."""
    pairs = [("gout", "asthma"), ("glaucoma", "lupus"), ("asthma", "gout"), ("lupus", "croup"), ("croup", "lupus"),
             ("asthma", "lupus"), ("gout", "croup"), ("glaucoma", "asthma")]
    messages = []
    for i, (asked, other) in enumerate(pairs):
        text = f"My son, who is twelve years old now, has {other} as well. What can we do about {asked}?"
        messages.append({"id": f"m{i}", "subject": "", "message": text, "text": text,
                         "subquestions": [{"focus": asked, "type": "treatment"}]})
    learnt = []
    build = retrieval_eval.FocusSalience.build
    monkeypatch.setattr(retrieval_eval.FocusSalience, "build", lambda *args: learnt.append(
        {m["id"] for m in args[2]}) or build(*args))
    built = index.understanding.salience
    counts = retrieval_eval.cross_validated_foci(index, synonym_sets([]), messages, folds=4)
    assert index.understanding.salience is built
    ids = {m["id"] for m in messages}
    assert [len(kept) for kept in learnt] == [6, 6, 6, 6]
    assert sorted(i for kept in learnt for i in ids - kept) == sorted(ids)  # each message held out once
    assert counts["salience n"] == 8 and counts["first right"] == 0 and counts["salience right"] == 8
    assert counts["focus n"] == 8 and counts["focus found"] == 8


def test_a_question_the_focus_pages_cannot_answer_goes_to_the_same_condition_on_another_site(index):
    """MedlinePlus's "Sickle Cell Anemia" page has no section on who is at risk; NHLBI's "Sickle Cell Disease", which
    a synonym of it also names, has one, and answers "who is at risk?" (after it, or naming it) rather than the
    summary again."""
    assert index.understanding.recogniser.same_named("sickle cell anemia") == {"sickle cell disease"}
    # a one-word synonym ("hernia", listed by MedlinePlus's pelvic support problems) names a related condition
    assert "hernia" not in index.understanding.recogniser.same_named("pelvic support problems")
    question = index.retrieve("who is at risk?", history=["what is sickle cell anemia"]).questions[0]
    assert question.carried_over and [m.key for m in question.foci] == ["sickle cell anemia"]
    assert (question.passages[0].focus, question.passages[0].question_type) == ("Sickle Cell Disease",
                                                                                "susceptibility")
    first = index.retrieve("who is at risk for sickle cell anemia?").passages(1)[0]
    assert (first.focus, first.question_type) == ("Sickle Cell Disease", "susceptibility")


def test_a_condition_described_in_other_words_is_a_new_topic_that_is_answered(index):
    """After lupus, a message describing a sleep problem without naming it is about the sleep disorders its words
    describe (7.96 in this index, over the 5.5 needed), and so is the follow-up after it. (With "I snore loudly" it
    would name Snoring, whose page is then cited.)"""
    described = "my breathing stops while I sleep and I wake up tired"
    result = index.retrieve(described, history=["what is lupus"])
    assert [focus_key(q.passages[0].focus) if q.passages else None for q in result.questions] == ["sleep disorders"]
    follow_up = index.retrieve("how is it treated?", history=["what is lupus", described]).questions[0]
    assert follow_up.carried_over and follow_up.foci[0].key == "sleep disorders"


@pytest.mark.parametrize("message, focus", [
    # names only a symptom (cough, in 3% of the descriptions): the condition whose description it matches
    ("my son's cough sounds like a barking seal and it gets worse at night", "croup"),
    ("i'm 52 and get hot flashes, night sweats and irregular periods", "menopause"),
    ("the joint of my big toe went hot, red and so painful overnight", "gout"),
    ("my son has been throwing up since last night", "nausea and vomiting"),  # no NIH answer before the rules
    # the helper-written rules: colloquial names MedQuAD never uses
    ("does lockjaw still happen", "tetanus"),
    ("my toddler has a tummy bug", "gastroenteritis"),
    ("can you die from blood poisoning", "sepsis"),
    ("is hardening of the arteries reversible", "atherosclerosis"),
])
def test_everyday_words_and_named_symptoms_reach_the_condition_described(index, message, focus):
    result = index.retrieve(message)
    assert focus_key(result.passages(1)[0].focus) == focus


def test_a_name_the_rewording_makes_does_not_replace_the_condition_the_user_named(index):
    """"can't sleep" reads as insomnia, but the message is about the scoliosis it names."""
    assert index.understanding.everyday.medical("she can't sleep")[0] == "she insomnia"
    result = index.retrieve("My girlfriend has scoliosis. She cries in pain and can't sleep at night, how should I "
                            "help her")
    assert [focus_key(q.passages[0].focus) for q in result.questions] == ["scoliosis"]


def test_a_follow_up_keeps_its_topic_rather_than_a_condition_its_words_describe(index, monkeypatch):
    scores = np.zeros(len(index.description_keys), dtype=np.float32)
    scores[index.description_keys.index("asthma")] = 20.0  # a description far above MIN_CONDITION
    monkeypatch.setattr(index, "description_scores", lambda text: scores)
    assert index.retrieve("how can I avoid getting a clot on a long flight?").questions[0].foci[0].key == "asthma"
    question = index.retrieve("how can I avoid getting one on a long flight?", history=["What is DVT?"]).questions[0]
    assert question.carried_over and question.foci[0].key == "deep vein thrombosis"


def test_the_lay_evaluation_counts_focus_no_answer_and_type_per_kind(index):
    rows = [{"message": "what is gout?", "foci": ["Gout"], "type": "information", "kind": "everyday-name"},
            {"message": "what is gout?", "foci": ["Lupus", "lupus"], "type": None, "kind": "symptom"},
            {"message": "qwv zzkx plgh", "foci": ["Gout"], "type": "treatment", "kind": "symptom"}]
    counts = retrieval_eval.evaluate_lay(index, rows)
    assert {k: counts[k] for k in ("all n", "all focus", "all no answer", "symptom n", "symptom focus",
                                   "everyday-name focus", "type n", "type cited")} == {
        "all n": 3, "all focus": 1, "all no answer": 1, "symptom n": 2, "symptom focus": 0, "everyday-name focus": 1,
        "type n": 2, "type cited": 1}
    assert len(retrieval_eval.conversations(retrieval_eval.LAY_QUESTIONS)) == 70


def test_the_written_evaluation_reports_each_half(index, monkeypatch, capsys):
    rows = [{"id": f"w{i}", "subject": "", "message": text, "subquestions": [{"focus": focus, "type": "treatment"}]}
            for i, (text, focus) in enumerate([("how is gout treated?", "gout"), ("how is gout treated?", "lupus"),
                                               ("qwv zzkx plgh", "gout"), ("what helps glaucoma?", "glaucoma")])]
    monkeypatch.setattr(retrieval_eval.RetrievalIndex, "load_or_build", lambda *args, **kwargs: index)
    monkeypatch.setattr(retrieval_eval, "written_messages", lambda path=None: rows if path is None else rows[:1])
    assert retrieval_eval.run_written(None, None) == 0
    out = capsys.readouterr().out
    assert "odd (tried on)     1/2  50.0%  (no NIH answer on 0 of 2 messages)" in out  # rows w1 (miss), w3 (hit)
    assert "even (checks)      1/2  50.0%  (no NIH answer on 1 of 2 messages)" in out  # w0 (hit), w2 (no answer)
    assert "all                2/4  50.0%" in out
    assert "check messages     1/1 100.0%  (no NIH answer on 0 of 1 messages)" in out


def test_a_description_means_a_common_condition_before_a_rare_disease(index, monkeypatch):
    """A consumer rarely asks about a focus only GARD or GHR answer: a rare disease's description needs to score
    RARE_PRIOR more than a common condition's to be the one meant."""
    keys = index.description_keys
    rare = next(key for key in keys if key in index.rare_foci)
    scores = np.zeros(len(keys), dtype=np.float32)
    scores[keys.index(rare)], scores[keys.index("asthma")] = 10.0, 8.0
    monkeypatch.setattr(index, "description_scores", lambda text: scores)
    result = index.retrieve("it happens every night when i go to bed and it keeps getting worse")
    assert focus_key(result.passages(1)[0].focus) == "asthma"


@pytest.mark.parametrize("word, parts", [("heartburn", ["heart", "burn"]), ("earache", ["ear", "ache"]),
                                         ("bedwetting", ["bed", "wetting"]),
                                         ("farsightedness", ["far", "sightedness"]),
                                         ("abortion", None), ("pinkeye", None), ("bunions", None), ("gout", None)])
def test_a_one_word_name_is_also_found_written_as_its_two_words(word, parts):
    assert _compound_parts(word, everyday_english()) == parts


@pytest.mark.parametrize("message, key", [("is haemophilia inherited?", "hemophilia"),
                                          ("sickle cell anaemia", "sickle cell anemia"),
                                          ("my son has chronic lymphocytic leukaemia", "chronic lymphocytic leukemia"),
                                          ("what is oedema", "edema"), ("my dad has a brain tumour", "brain tumors")])
def test_british_spellings_name_the_focus_as_american_ones_do(index, monkeypatch, message, key):
    """A word MedQuAD or an English dictionary knows is never corrected, and both know "haemophilia": nothing was
    named. Here every British spelling is made a known word, as in the full index."""
    recogniser = index.understanding.recogniser
    british = {w.lower() for w in raw_words(message) if american_spelling(w.lower()) != w.lower()}
    monkeypatch.setattr(recogniser, "known_words", recogniser.known_words | british)
    assert key in [m.key for m in recogniser.find(message) if m.kind == "named"]
    assert american_spelling("shoe") == "she" and "shoe" not in [m.span for m in recogniser.find("my shoe hurts")]


@pytest.mark.parametrize("name, collides", [("Ribbing", True), ("Lowe", True), ("Paine", True), ("Eyelid", False),
                                            ("Lyme", False), ("Klinefelter", False)])
def test_an_eponym_that_stems_as_an_everyday_word_is_not_its_short_name(name, collides):
    """"Ribbing disease" is not "ribbing" alone: it stems as "ribs" ("sucking in at the ribs" had cited it)."""
    assert _stem_of_another_word(name, _words_by_stem(everyday_english())) == collides


def test_a_compound_name_written_apart_names_its_focus(index):
    assert [m.key for m in index.understanding.recogniser.find("i get heart burn every night")] == ["heartburn"]


def test_salience_features_count_a_name_only_where_it_is_said_as_a_word(index):
    """"diabetes" is not said in "prediabetes": the subject line names prediabetes alone, and diabetes is said once,
    late in the message."""
    text = "prediabetes. my A1C is 6.1, they say prediabetes. How can I keep from getting diabetes?"
    matches = [FocusMatch("Prediabetes", "prediabetes", 1.0, "prediabetes", True),
               FocusMatch("Diabetes", "diabetes", 1.0, "diabetes", True)]
    rows = salience_module.features(text, matches, index.understanding.recogniser, {}, frozenset())
    column = {name: rows[:, i].tolist() for i, name in enumerate(FEATURES)}
    assert column["in a heading"] == [1.0, 0.0]
    assert column["mentions (log)"] == pytest.approx([np.log1p(2), np.log1p(1)])
    assert column["first position"] == pytest.approx([0.0, text.index("diabetes?") / len(text)])
    assert column["in a question"] == [0.0, 1.0]


def test_a_symptom_of_a_named_condition_counts_less_than_the_condition(index):
    """"croup ... the barking cough": croup's description says cough, so the cough is croup's, not the topic."""
    recogniser = index.understanding.recogniser
    message = "help please my 3 yr old has croup again, the barking cough at night scares me. what do i do"
    assert ranking._symptoms_of_named(index, recogniser.find(message)) == {"cough"}
    assert ranking._symptoms_of_named(index, recogniser.find("my 3 yr old has a barking cough, what do i do")) == set()
    assert ranking._symptoms_of_named(index, recogniser.find("I have gout and a cough")) == set()  # not gout's
    assert focus_key(index.retrieve(message).passages(1)[0].focus) == "croup"


def test_a_name_saying_syndrome_or_disease_is_a_condition_not_a_symptom(index):
    """"Down syndrome"'s words are common apart ("down", "syndrome"): "any support groups for parents of kids with
    Down syndrome?" had been read as symptoms describing another condition."""
    find = index.understanding.recogniser.find
    down = next(m for m in find("kids with Down syndrome") if m.key == "down syndrome")
    assert index.described_share(down.focus) >= ranking.SYMPTOM_SHARE  # by its words alone, a symptom
    assert not ranking._is_symptom(index, down)
    assert ranking._is_symptom(index, next(m for m in find("a bad cough") if m.key == "cough"))


def test_a_subject_line_naming_a_condition_makes_it_the_most_salient(index, monkeypatch):
    """The story names conditions with more pages (stroke); the subject line is the pressure sores'."""
    understanding = index.understanding
    text = ("pressure sores. My wife is bedbound after a stroke and I'm taking care of her at home. The nurse "
            "noticed a red area on her tailbone. How do I treat this and stop it from getting worse?")
    matches = understanding.recogniser.find(text)

    def most_salient() -> str:
        scores = understanding.salience.scores(text, matches, understanding.recogniser, index.pair_counts)
        return matches[int(np.argmax(scores))].key

    assert most_salient() == "pressure sores"
    monkeypatch.setattr(salience_module, "HEADING_NAME_BONUS", 0.0)
    assert most_salient() != "pressure sores"  # the learnt weights alone follow the story


def test_foci_named_in_passing_are_not_asked_about_next_to_the_message_condition(index):
    """Acne's only page has no treatment section; the treatment pages of diseases containing "fever" (said in
    passing) had outranked it."""
    message = ("Acne. my son is 14 and his acne is really bad, he even gets a fever with it sometimes. "
               "what are the treatments for teens?")
    question = index.retrieve(message).questions[-1]
    assert [focus_key(m.focus) for m in question.foci] == ["acne"]
    assert focus_key(index.retrieve(message).passages(1)[0].focus) == "acne"


def test_a_further_page_to_cite_is_about_a_focus_of_the_question(index):
    """Acne's only page answers it; pages only the words "treatments" and "teens" matched are no related pages."""
    message = "Acne. my son is 14 and his acne is really bad. what are the treatments for teens, is accutane the only one?"
    question = index.retrieve(message).questions[-1]
    assert any(focus_key(p.focus) != "acne" for p in question.passages)  # ranked, not cited
    assert [focus_key(p.focus) for p in index.retrieve(message).passages(3)] == ["acne"]


def test_a_related_page_is_about_a_focus_asked_not_a_variant_containing_it(index):
    find = index.understanding.recogniser.find
    flu, gout = next(m for m in find("the flu") if m.key == "flu"), next(m for m in find("gout") if m.key == "gout")
    h1n1 = dataclasses.replace(flu, focus="H1N1 Flu (Swine Flu)", key="h1n1 flu (swine flu)", kind="containing")
    question = SubQuestion("How can I prevent the flu?", (flu, h1n1), (), (), True)
    page = {key: index.passage_result(index.pairs_of_focus(key)[0], 1.0) for key in ("flu", "h1n1 flu (swine flu)",
                                                                                     "gout")}
    assert [question.related(page[key]) for key in ("flu", "h1n1 flu (swine flu)", "gout")] == [True, False, False]
    assert SubQuestion("and gout?", (flu, gout), (), (), True).related(page["gout"])


def test_a_variant_the_question_does_not_name_is_no_further_page_to_cite(index):
    """"How can I prevent the flu?" cites the flu page, not H1N1 (swine) flu's pages after it."""
    question = index.retrieve("How can I prevent the flu?").questions[0]
    assert any(focus_key(p.focus) == "h1n1 flu (swine flu)" for p in question.passages)  # ranked, not cited
    cited = index.retrieve("How can I prevent the flu?").passages(3)
    assert focus_key(cited[0].focus) == "flu" and not any("h1n1" in focus_key(p.focus) for p in cited)


def test_a_message_reads_as_its_user_sent_it():
    # the NLM form's rows escape quotes; ";" of "&quot;" would end a sentence
    row = {"subject": "hypothyroidism", "message": "Please send information on &quot;hypothyroidism&quot;."}
    assert message_text(row) == 'hypothyroidism. Please send information on "hypothyroidism".'
    assert message_text({"subject": "", "message": "what is gout?"}) == "what is gout?"


def test_a_cause_the_message_names_is_not_a_symptom_describing_another_condition(index):
    """Many descriptions say "smoking" (3% of them in the whole collection, a symptom's share), but as a cause: in
    the whole collection, lung cancer's description had replaced the Smoking page "how does smoking tobacco affect
    the lungs" names. A name only partly written ("always cold" for the Common Cold) can still be a symptom of what
    the message describes: "im always cold and tired, gaining weight" is about hypothyroidism."""
    find = index.understanding.recogniser.find
    smoking = next(m for m in find("how does smoking tobacco affect the lungs") if m.key == "smoking")
    assert index.described_share(smoking.focus) >= ranking.SYMPTOM_SHARE
    assert not index.said_as_symptom("Smoking") and index.said_as_symptom("Cough")
    assert not ranking._is_symptom(index, smoking)
    assert ranking._is_symptom(index, dataclasses.replace(smoking, span="smoke"))  # only part of its name


def test_a_type_the_focus_pages_lack_is_answered_by_the_page_named_for_it(index):
    """MedlinePlus's Cervical Cancer summary has no exams section; its Cervical Cancer Screening page is about exactly
    that, and is cited first (as Diabetes Complications is for diabetes' complications)."""
    assert not any(index.passage(i)["question_type"] == "exams and tests"
                   for i in index.pairs_of_focus("cervical cancer"))
    question = index.retrieve("is there a test for cervical cancer").questions[0]
    assert question.types[0][0] == "exams and tests"
    assert [focus_key(p.focus) for p in question.passages[:2]] == ["cervical cancer screening", "cervical cancer"]
    # a type the focus's own pages answer stays theirs
    assert focus_key(index.retrieve("how is gout treated").passages(1)[0].focus) == "gout"


@pytest.mark.parametrize("sentence, with_a_medicine, without", [
    ("which drugs can cause it", "side effects", "causes"),
    ("can i drink coffee with it", "interactions with medications", None),
    ("what is it used for", "indication", "information"),
    ("i forgot to take it this morning", "forget a dose", None),
    ("how should i store it", "storage and disposal", None),
])
def test_a_medicines_cue_needs_a_medicine_named(sentence, with_a_medicine, without):
    """Without a medicine in the message, the next cue speaks: "which drugs can cause hair loss" asks for causes."""
    from gpt2chat.search.question_types import cue

    assert (cue(sentence, medicine=True), cue(sentence, medicine=False)) == (with_a_medicine, without)


def test_words_inside_a_name_are_no_cue():
    from gpt2chat.search.question_types import cue

    assert cue("how is hereditary angioedema treated", names=["hereditary angioedema"]) == "treatment"
    assert cue("how is hereditary angioedema treated") == "inheritance"
    assert cue("can i use it while breastfeeding", names=["breastfeeding"]) == "contraindication"
    assert cue("how long after a liver transplant can i drive") is None  # "liver" is not "live"


@pytest.mark.parametrize("medicines, question_type, asked", [
    (("Metformin",), "forget a dose", "what to do after a missed dose of Metformin"),
    (("Lisinopril", "Amlodipine"), "side effects", "the side effects of Lisinopril or Amlodipine"),
    (("Metformin",), "", "questions about Metformin"),  # no type understood
])
def test_the_no_answer_reply_names_what_was_asked_of_which_medicines(medicines, question_type, asked):
    from gpt2chat.chat.engine import no_answer_text
    from gpt2chat.search.ranking import RetrievalResult, SubQuestion

    question = SubQuestion("?", (), ((question_type, 0.9),) if question_type else (), (), False, medicines=medicines)
    assert no_answer_text(RetrievalResult((question,), "https://medlineplus.gov/search/?query=x")) == (
        f"My NIH sources have no answer on {asked}: the medicine pages they come from are published without answers. "
        "MedlinePlus has a page on each medicine: https://medlineplus.gov/druginformation.html")


def test_a_question_about_an_unanswered_medicine_gets_the_medicines_reply(extract_engine):
    reply = extract_engine.reply("what is metformin?")
    assert reply.category == "no_answer" and reply.answer.startswith("My NIH sources have no answer on what Metformin "
                                                                     "is: ")
