"""Issue 22's lexicon rules on a synthetic MedQuAD-like collection, where the shares that decide them are exact:
one-word synonyms of 1-3% of the pairs, lower-case abbreviations, names mined from "also called", ambiguous
surfaces and unanswered medicines; and the type cues of consumer sentences."""

from __future__ import annotations

import pytest

from gpt2chat.corpus.data import FocusAnnotation, QAPair
from gpt2chat.search.question_types import cue
from gpt2chat.search.ranking import STRONG_CONFIDENCE, _without_foci
from gpt2chat.corpus.data import name_key
from gpt2chat.search.understanding import FocusMatch, FocusRecogniser

FILLERS = 3000  # "hypertension" in 60 answers is 2% of them, "attack" in 150 is 5%


def _pair(i: int, focus: str, answer: str, subset: str = "1_CancerGov_QA") -> QAPair:
    return QAPair(f"{subset}/{i}-1", str(i), subset, "NIH", f"https://example.org/{i}", focus, "information",
                  f"What is {focus} ?", answer)


@pytest.fixture(scope="module")
def recogniser():
    records = [_pair(i, f"Filler topic {i}", "Everyday words about health and the body are written here to read.")
               for i in range(FILLERS)]
    for i in range(60):
        records[i] = _pair(i, f"Filler topic {i}", "Some people also have hypertension.")
    for i in range(60, 210):
        records[i] = _pair(i, f"Filler topic {i}", "A heart attack can happen.")
    for i in range(210, 240):  # "all" is an everyday word in lower case; "als" appears in lower case 3 times
        records[i] = _pair(i, f"Filler topic {i}", "all of them" + (" als" if i < 213 else ""))
    records += [
        _pair(9001, "High Blood Pressure", "Blood pressure is the force of blood."),
        _pair(9002, "Stroke", "A stroke happens when blood flow to the brain stops."),
        _pair(9003, "Gastroesophageal reflux disease", "Gastroesophageal reflux (GER), also called acid reflux or "
              "acid regurgitation, happens when stomach contents come back up."),
        _pair(9004, "Amyotrophic lateral sclerosis", "Amyotrophic lateral sclerosis (ALS) is a nerve disease."),
        _pair(9005, "Amyotrophic lateral sclerosis", "People with amyotrophic lateral sclerosis (ALS) get weaker."),
        _pair(9006, "Acute lymphoblastic leukemia", "Acute lymphoblastic leukemia (ALL) is a blood cancer."),
        _pair(9007, "Acute lymphoblastic leukemia", "In acute lymphoblastic leukemia (ALL) the marrow makes blasts."),
        _pair(9008, "Diabetes Type 2", "Type 2 diabetes is the most common form of diabetes."),
        _pair(9009, "I Can Lower My Risk for Type 2 Diabetes: A Guide for American Indians", "Walk every day."),
        _pair(9010, "Supravalvular aortic stenosis", "A narrowing of the aorta above the valve."),
        _pair(9011, "Cant syndrome", "Cant syndrome is a rare condition of the heart and hair."),
        _pair(9012, "CARASIL", "CARASIL affects the blood vessels of the brain."),
        _pair(9013, "Heart Diseases", "Heart disease is the leading cause of death."),
        _pair(9014, "Thyroid Diseases", "Your thyroid is a gland in your neck."),
        _pair(9015, "Papillary thyroid carcinoma", "A cancer of the thyroid gland."),
        _pair(9016, "Wolff-Parkinson-White syndrome", "An extra pathway makes the heart beat fast."),
        _pair(9017, "Primary lateral sclerosis", "Primary lateral sclerosis (PLS) weakens the legs."),
        _pair(9018, "Primary lateral sclerosis", "In primary lateral sclerosis (PLS) the nerves die slowly."),
        _pair(9019, "Spinocerebellar ataxia 3", "An ataxia that begins in adulthood.", subset="2_GARD_QA"),
        _pair(9020, "spinocerebellar ataxia type 3", "People with SCA3 lose coordination.", subset="3_GHR_QA"),
        _pair(9021, "Trichohepatoenteric syndrome", "Babies with it have diarrhea.", subset="3_GHR_QA"),
        _pair(9022, "Opitz G/BBB syndrome", "A condition of the body's midline.", subset="2_GARD_QA"),
        _pair(9023, "Ataxia telangiectasia", "A condition of the nerves and the immune system.", subset="2_GARD_QA"),
        _pair(9024, "ataxia-telangiectasia", "People with it have trouble walking.", subset="3_GHR_QA"),
        _pair(9025, "Tracheobronchopathia osteoplastica", "Tracheobronchopathia osteoplastica (TO) is rare.",
              subset="2_GARD_QA"),
        _pair(9026, "Tracheobronchopathia osteoplastica", "In tracheobronchopathia osteoplastica (TO) nodules grow.",
              subset="2_GARD_QA"),
        _pair(9027, "Lung Cancer", "Lung cancer starts in the lungs."),
        _pair(9028, "Dementia", "Dementia is a loss of thinking and memory."),
        _pair(9029, "Dementia With Lewy Bodies", "Protein deposits build up in nerve cells.", subset="9_CDC_QA"),
    ]
    annotations = [
        FocusAnnotation("4_MPlus_Health_Topics_QA", "", "High Blood Pressure", ("Hypertension",)),
        FocusAnnotation("4_MPlus_Health_Topics_QA", "", "Stroke", ("Attack",)),
        FocusAnnotation("4_MPlus_Health_Topics_QA", "", "Diabetes Type 2", ("Type 2 diabetes",)),
        FocusAnnotation("5_NIDDK_QA", "", "I Can Lower My Risk for Type 2 Diabetes: A Guide for American Indians",
                        ("Type 2 diabetes",)),
        FocusAnnotation("11_MPlusDrugs_QA", "", "Metformin"),
        FocusAnnotation("10_MPlus_ADAM_QA", "", "Aortic stenosis"),
        FocusAnnotation("2_GARD_QA", "", "CARASIL", ("Maeda syndrome",)),
        FocusAnnotation("2_GARD_QA", "", "Spinocerebellar ataxia 3", ("SCA3",)),
        FocusAnnotation("3_GHR_QA", "", "spinocerebellar ataxia type 3", ("SCA3", "Machado-Joseph disease")),
        FocusAnnotation("3_GHR_QA", "", "Trichohepatoenteric syndrome", ("THE syndrome",)),
        FocusAnnotation("2_GARD_QA", "", "Opitz G/BBB syndrome", ("G syndrome",)),
        FocusAnnotation("2_GARD_QA", "", "Ataxia telangiectasia", ("Louis-Bar syndrome",)),
        FocusAnnotation("3_GHR_QA", "", "ataxia-telangiectasia", ("Louis-Bar syndrome",)),
        FocusAnnotation("4_MPlus_Health_Topics_QA", "", "Dementia", ("Lewy body dementia", "Senility")),
    ]
    return FocusRecogniser.build(records, annotations)


def _keys(recogniser, text):
    return [m.key for m in recogniser.find(text)]


def test_a_one_word_synonym_in_1_to_3_percent_of_answers_names_its_focus(recogniser):
    assert _keys(recogniser, "how to reduce hypertension")[:1] == ["high blood pressure"]
    assert "stroke" not in _keys(recogniser, "what to do after an attack")  # in 5% of the answers: an everyday word


def test_an_everyday_english_word_is_neither_corrected_nor_a_name_without_its_qualifier(recogniser):
    # "madam" is one letter from "maeda" and "cant" is "Cant syndrome" without "syndrome": neither names a focus
    assert _keys(recogniser, "Dear madam, she cant afford the treatment") == []
    assert _keys(recogniser, "is maeda syndrome inherited")[:1] == ["carasil"]
    assert _keys(recogniser, "what is cant syndrome")[:1] == ["cant syndrome"]
    assert _keys(recogniser, "is maedda syndrome inherited")[:1] == ["carasil"]  # a misspelling is still corrected


def test_lay_words_for_a_group_of_conditions_name_the_general_page(recogniser):
    assert _keys(recogniser, "what causes heart problems")[:1] == ["heart diseases"]
    assert _keys(recogniser, "symptoms of a thyroid issue")[:1] == ["thyroid diseases"]
    assert _keys(recogniser, "my mom has heart trouble")[:1] == ["heart diseases"]
    assert _keys(recogniser, "what is papillary thyroid carcinoma")[:1] == ["papillary thyroid carcinoma"]


def test_a_lay_group_name_gives_way_to_the_condition_the_message_names(recogniser):
    matches = recogniser.find("my son has a heart condition called wolff-parkinson-white syndrome")
    assert [m.key for m in matches][:2] == ["wolff-parkinson-white syndrome", "heart diseases"]
    assert matches[1].confidence < STRONG_CONFIDENCE  # never the message's main condition
    assert FocusRecogniser.from_json(recogniser.to_json()).find("heart condition")[0].confidence == \
        matches[1].confidence


def test_an_abbreviation_two_foci_list_names_the_closest(recogniser):
    matches = recogniser.find("I have been diagnosed with SCA3")
    assert matches[0].key == "spinocerebellar ataxia 3" and matches[0].confidence == 0.9
    assert FocusRecogniser.from_json(recogniser.to_json()).find("SCA3")[0].key == "spinocerebellar ataxia 3"


def test_texting_shorthand_is_no_abbreviation(recogniser):
    assert "primary lateral sclerosis" not in _keys(recogniser, "is there any treatment sir pls help me")
    assert _keys(recogniser, "my father has PLS")[:1] == ["primary lateral sclerosis"]


def test_a_focus_named_by_question_words_keeps_them_for_the_type():
    reactions = FocusMatch("Drug Reactions", "drug reactions", 1.0, "side effects", True)
    angioedema = FocusMatch("Hereditary angioedema", "hereditary angioedema", 1.0, "hereditary angioedema", True)
    assert cue(_without_foci("what side effects should I expect", [reactions])) == "side effects"
    assert cue(_without_foci("how is hereditary angioedema treated", [angioedema])) == "treatment"


def test_a_name_mined_from_also_called_reaches_the_focus(recogniser):
    assert _keys(recogniser, "what causes acid reflux")[:1] == ["gastroesophageal reflux disease"]


def test_a_lower_case_abbreviation_counts_unless_medquad_often_writes_the_word(recogniser):
    assert _keys(recogniser, "what is the outlook for als")[:1] == ["amyotrophic lateral sclerosis"]
    assert "acute lymphoblastic leukemia" not in _keys(recogniser, "all of my family has it")
    assert _keys(recogniser, "my son has ALL")[:1] == ["acute lymphoblastic leukemia"]


def test_an_ambiguous_surface_goes_to_the_closest_name(recogniser):
    matches = recogniser.find("how is type 2 diabetes treated")
    assert matches[0].key == "diabetes type 2" and matches[0].confidence == 1.0
    guide = next(m for m in matches if m.key.startswith("i can lower my risk"))
    assert guide.confidence < 0.5


def test_a_misspelt_unanswered_topic_brings_the_answered_foci_containing_its_name(recogniser):
    matches = {m.key: m for m in recogniser.find("aeortic stenosis")}
    assert not matches["aortic stenosis"].answered and 0.9 < matches["aortic stenosis"].confidence < 1
    assert matches["supravalvular aortic stenosis"].kind == "containing"


def test_unanswered_medicines_are_told_from_encyclopedia_topics(recogniser):
    assert recogniser.medicines == {"metformin"}
    assert FocusRecogniser.from_json(recogniser.to_json()).medicines == {"metformin"}


@pytest.mark.parametrize("sentence, qtype", [
    ("My son had a stroke at 4 weeks, and the doctors never said why it happened to him", "causes"),
    ("What possible side effects should I be aware of when taking all of these daily?", "side effects"),
    ("WANT TO KNOW IF EYELID DROOP WILL GO AWAY", "outlook"),
    ("Do you offer any written pamphlets on these.", "information"),
    ("I was diagnosed with it last year, what can be done for it", "treatment"),
    ("What are the genetic changes related to it?", "genetic changes"),
    ("What if you do not have surgery to remove it?", "outlook"),
    ("non-pharmacological ways to relieve symptoms of it", "treatment"),
    ("What are some illnesses caused by smoking?", "complications"),
    ("Do high ammonia levels affect breathing?", "causes"),
    ("If you have it is there any way to reverse it?", "treatment"),
    ("Is there any new research on it?", "research"),
    ("how can I avoid getting it", "prevention"),
    # consumer wordings of the second round (LiveQA train 115 -> 123 of 170 cross-validated)
    ("DO I USE PYRIDOXINE TABLETS EVEN IF IM PREGNANT?", "contraindication"),
    ("Is there any information regarding adults having any benefits from taking it for ADHD?", "indication"),
    ("Why am I prescribed a drug that is also prescribed for young women trying to conceive.", "indication"),
    ("or if I should have been given the medication in slowly-decreasing doses", "usage"),
    ("Is there a test that can show gene mutation?", "exams and tests"),
    ("how are you 100% sure if you have asthma?", "exams and tests"),
    ("Also how can we determine whether it is muscle waste that is the issue?", "exams and tests"),
    ("we went to doctors gave us medicine but its all the same what could this be", "causes"),
    ("what is done for people who get air in but cant get it out", "treatment"),
    # read in LiveQA dev misses (disclosed in the README)
    ("Does this have anything to do with me not getting enough B 12 ?", "causes"),
    ("I am looking for research on it and the link to PTSD.", "causes"),
    ("Please find a way to research it and how to cure it with gene therapy.", "treatment"),
    ("When is the best time of day to take it, AM or PM", "usage"),
    ("I'm looking for books about it. Can you suggest any?", "information"),
])
def test_a_sentence_names_its_question_type(sentence, qtype):
    assert cue(sentence) == qtype


@pytest.mark.parametrize("sentence", [
    "I am composing a research report on it for school",  # research mentioned, not asked for
    "Could a skin graft help with a stage 4 pressure sore",  # a stage named, not the stages asked
    "which foods should I avoid with it",  # avoiding with the condition: not preventing it
    "Can you send me a link to information on its treatment?",  # a link to a page, no link between conditions
    "how much time to take off work after it",  # time off, no time of day to take a drug
    "are there any gene-therapy trials for it",  # gene therapy is no genetic change
])
def test_a_word_a_question_type_uses_is_no_cue_in_another_sense(sentence):
    assert cue(sentence) not in {"research", "stages", "prevention", "causes", "usage", "genetic changes"}


def test_annotated_names_are_compared_without_possessives_and_bracketed_abbreviations():
    assert name_key("Whipple's disease") == name_key("Whipple Disease") == "whipple disease"
    assert name_key("Rocky Mountain Spotted Fever (RMSF)") == "rocky mountain spotted fever"
    assert name_key("Liver (Hepatocellular) Cancer") == "liver cancer"


def test_a_name_of_function_words_or_one_letter_names_nothing(recogniser):
    """"THE syndrome" and "G syndrome" are names, but "the syndrome" or a lone "G" in a message name nothing."""
    assert _keys(recogniser, "could my other children have the syndrome symptoms?") == []
    assert _keys(recogniser, "i live in raigadh (c g) india") == []
    assert _keys(recogniser, "is the G syndrome inherited?") == ["opitz g/bbb syndrome"]


def test_one_name_written_two_ways_is_named_fully(recogniser):
    """Two foci for one name (GARD's "Ataxia telangiectasia", GHR's "ataxia-telangiectasia") share a synonym without
    halving its confidence, so the name stays a strong one."""
    found = {m.key: m.confidence for m in recogniser.find("my brother died young from Louis-Bar syndrome")}
    assert found == {"ataxia telangiectasia": 1.0, "ataxia-telangiectasia": 1.0}


def test_a_message_in_capitals_has_no_abbreviations_in_its_everyday_words(recogniser):
    """In a message written in capitals "TO" is the word, not tracheobronchopathia osteoplastica."""
    assert _keys(recogniser, "WANT TO KNOW LATEST DEVELOPMENT IN LUNG CANCER TREATMENT") == ["lung cancer"]
    assert "tracheobronchopathia osteoplastica" in _keys(recogniser, "my mother has TO, what is the treatment?")


def test_a_synonym_that_is_another_focus_name_reordered_names_that_focus(recogniser):
    """MedlinePlus lists "Lewy body dementia" under Dementia; it is the name "Dementia With Lewy Bodies" reordered."""
    assert _keys(recogniser, "my father has lewy body dementia") == ["dementia with lewy bodies"]
    assert _keys(recogniser, "my father has senility")[0] == "dementia"  # other synonyms stay Dementia's
