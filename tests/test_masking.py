"""PII masking: every type masked, medical language kept, no values retained, bad input survived, eval thresholds."""

from __future__ import annotations

import collections
import dataclasses
import logging
import socket

import pytest

from gpt2chat.cli import run
from gpt2chat.guard import masking, masking_eval
from gpt2chat.guard.masking import Finding, MaskerConfig, MaskResult, PIIMasker
from gpt2chat.guard.masking_eval import evaluate, load_eval_set


@pytest.fixture(scope="module")
def small_masker():
    """Tiny chunks and cap, so chunking and truncation are exercised on short, fast texts."""
    return PIIMasker(MaskerConfig(chunk_chars=400, chunk_overlap=100, max_chars=3_000))


@pytest.fixture(scope="module")
def eval_rows():
    return load_eval_set()


PII_CASES = [
    ("PERSON", "My name is Joanna Kowalczyk and I have asthma.", "Joanna Kowalczyk"),
    ("PERSON", "My son Oliver has a fever of 39.", "Oliver"),
    ("PERSON", "Dr. Samuel Okoye prescribed metformin.", "Samuel Okoye"),
    ("EMAIL", "Send the results to lena.fischer@gmail.com please.", "lena.fischer@gmail.com"),
    ("PHONE", "Call me on (312) 555-0176 about my MRI.", "(312) 555-0176"),
    ("PHONE", "My mobile is +44 7911 123456.", "+44 7911 123456"),
    ("IBAN", "Refund to DE89 3704 0044 0532 0130 00 for the scan.", "DE89 3704 0044 0532 0130 00"),
    ("BANK_ACCOUNT", "My bank account number is 004455667788 for the refund.", "004455667788"),
    ("CREDIT_CARD", "Charge 4111 1111 1111 1111 for the consultation.", "4111 1111 1111 1111"),
    ("US_SSN", "My SSN is 536-22-1847 for the Medicaid form.", "536-22-1847"),
    ("ADDRESS", "Send the kit to 1423 Maple Avenue, Springfield, IL 62704.", "1423 Maple Avenue"),
    ("DATE_OF_BIRTH", "I was born on 03/14/1962 and have high cholesterol.", "03/14/1962"),
    ("DATE_OF_BIRTH", "DOB: July 4, 1979. Is my PSA normal?", "July 4, 1979"),
    ("MEDICAL_RECORD", "My MRN is 4478123, can you check my HbA1c?", "4478123"),
    ("MEDICAL_RECORD", "Patient ID PT-558201 needs a refill.", "PT-558201"),
    ("IP_ADDRESS", "The portal blocked 203.0.113.45 again.", "203.0.113.45"),
    ("URL", "My profile is https://www.facebook.com/joanna.k.1983 if you need it.",
     "https://www.facebook.com/joanna.k.1983"),
    ("PASSPORT", "My passport number is 533380006; do I need a letter for my insulin?", "533380006"),
    ("PASSPORT", "passport no. K1234567, which vaccines for India?", "K1234567"),
    ("DRIVERS_LICENSE", "My driver's license number is D1234567 and I had a seizure.", "D1234567"),
    ("DRIVERS_LICENSE", "driving licence: MORGA753116SM9IJ, the DVLA asks about epilepsy", "MORGA753116SM9IJ"),
    ("ADDRESS", "I live at 10 Downing Street, London SW1A 2AA and cough.", "10 Downing Street, London SW1A 2AA"),
    ("ADDRESS", "My address is Hauptstraße 5, 10115 Berlin; which hospital?", "Hauptstraße 5, 10115 Berlin"),
    ("ADDRESS", "Send it to 12 rue de la Paix, 75002 Paris.", "12 rue de la Paix, 75002 Paris"),
    ("ADDRESS", "The nurse can visit 55 Queen St E, Toronto, ON M5C 1R6 on Monday.",
     "55 Queen St E, Toronto, ON M5C 1R6"),
    ("ADDRESS", "We are at Unit 4, 17 George Street, Sydney NSW 2000.", "Unit 4, 17 George Street, Sydney NSW 2000"),
    ("ADDRESS", "Flat 302, Shanti Apartments, MG Road, Bengaluru 560001 is my address.",
     "Flat 302, Shanti Apartments, MG Road, Bengaluru 560001"),
    ("ADDRESS", "my postcode is M14 5GH, where is a walk-in centre?", "M14 5GH"),
    # Issue 23: what reached the feedback database unmasked.
    ("PERSON", "im quincy abernathy and i have asthma", "quincy abernathy"),
    ("PERSON", "Abernathy, Quincy - what causes gout?", "Abernathy, Quincy"),
    ("PERSON", "Patient: okafor, chidi. is psoriasis contagious?", "okafor, chidi"),
    ("US_SSN", "my ssn is 078051120 do you need it", "078051120"),
    ("INSURANCE_ID", "my insurance member id is XJH123456789, does it cover insulin?", "XJH123456789"),
    ("INSURANCE_ID", "medicare number 1EG4-TE5-MK73, am i covered?", "1EG4-TE5-MK73"),
    ("EMAIL", "email me the results at jane.doe@gmial.con", "jane.doe@gmial.con"),
    ("ADDRESS", "I live at 1423 Maple Avenue. Springfield, IL 62704", "1423 Maple Avenue. Springfield, IL 62704"),
    ("ADDRESS", "1423 Maple Avenue\nSpringfield, Illinois 62704", "1423 Maple Avenue\nSpringfield, Illinois 62704"),
    ("ADDRESS", "we moved to Austin, TX 78701 and need a pediatrician", "Austin, TX 78701"),
    ("ADDRESS", "123 main st springfield il 62704 is where i live", "123 main st springfield il 62704"),
    # Issue 23, round 2: a name then "here", a mistyped "my name is", a state and ZIP after a place cue.
    ("PERSON", "quincy abernathy here, what causes gout?", "quincy abernathy"),
    ("PERSON", "hi, sarah here. my son has a fever", "sarah"),
    ("PERSON", "my nmae is quincy abernathy and i have asthma", "quincy abernathy"),
    ("PERSON", "mi name is jhon and my ear hurts", "jhon"),
    ("ADDRESS", "born in NY 10001, do i need a measles booster?", "NY 10001"),
    ("ADDRESS", "i live in brooklyn ny 11201 and have asthma", "brooklyn ny 11201"),
]


@pytest.mark.parametrize(("entity_type", "text", "value"), PII_CASES)
def test_each_pii_type_is_masked(masker, entity_type, text, value):
    result = masker.mask(text)
    assert value not in result.text and all(part not in result.text for part in value.split(", "))
    assert f"<{entity_type}>" in result.text
    assert entity_type in {f.entity_type for f in result.findings}
    finding = next(f for f in result.findings if f.entity_type == entity_type)
    assert text[finding.start:finding.end] in value or value in text[finding.start:finding.end]
    assert result.changed


MEDICAL_PHRASES = [
    "What are the treatments for Parkinson's disease?",
    "Is Crohn's disease hereditary?",
    "What is the survival rate of Hodgkin lymphoma?",
    "Does Down syndrome affect the heart?",
    "My father has Alzheimer's and forgets names.",
    "What causes Tourette syndrome?",
    "Can Graves' disease cause bulging eyes?",
    "How is Cushing's syndrome diagnosed?",
    "Is Huntington's disease inherited?",
    "Is Hashimoto's thyroiditis treated with levothyroxine?",
    "What are the signs of Asperger syndrome in adults?",
    "Is Addison's disease an emergency?",
    "Will Bell's palsy go away on its own?",
    "Is Kaposi sarcoma linked to HIV?",
    "What is Wilms tumor?",
    "Where does Ewing sarcoma start?",
    "How long does Guillain-Barré syndrome last?",
    "Does Marfan syndrome affect the aorta?",
    "Can Sjögren's syndrome cause dry eyes?",
    "What triggers Raynaud's phenomenon in the fingers?",
    "Can I take Tylenol with ibuprofen?",
    "Is warfarin safe with aspirin?",
    "Does metformin cause stomach upset?",
    "Is Ozempic or Lipitor better for my heart?",
    "Why does my Achilles tendon hurt when I run?",
    "I take 500 mg of metformin twice a day; my blood pressure was 150/95 on March 3.",
    "See https://www.cdc.gov or medlineplus.gov for more about Lyme disease.",
    # identifier-shaped medical language next to the postcode, passport and licence patterns
    "My biopsy says T2N1M0 and Gleason 3+4=7; is stage 4 or type 2 worse?",
    "Is HbA1c 7.5 high, and should I test for BRCA1 or a deletion on chromosome 15q11?",
    "Does CYP2D6 matter with 40 mg atorvastatin and vitamin D3 5000 IU?",
    "Can I drive with a driver's license after a seizure, and do I need my passport for insulin?",
    "I need a passport letter for 20 units of insulin.",
    "I live in London and my asthma is worse in Spring 2024.",
    # lower-case personal cues followed by no name
    "im pregnant and have a headache, can i take tylenol?",
    "this is my third migraine this week",
    "i am type 2 diabetic and my hba1c is 7.5",
    "my son has a fever and my daughter is stage 4",
    "my name is on the waiting list for a kidney transplant",
    "im not sure if this is crohns or ibs, it's been 3 days",
    "im worried, im feeling dizzy and im bedbound. thanks, doctor",
    "i take 2 pills or 10000 units of vitamin d, is that too much?",
    "what is medicare part d and does it cover insulin?",
    "my group number is 2 and my plan has a deductible",
    "Lupus, fatigue and joint pain: how are they related?",
    "Stage 4, grade 2 breast cancer: what is the survival rate?",
    # words before "here", a mistyped cue with no name, a birth year or a state without a ZIP
    "asthma here, what should i take for wheezing?",
    "new here, what is a normal blood pressure?",
    "pain here and there in my joints, is it arthritis?",
    "Is anyone here a nurse? so here is my question",
    "my nmae is on the transplant list, how long is the wait?",
    "born in 1985, is a colonoscopy due at 40?",
    "i was born in NY, is lyme disease common there?",
]


@pytest.mark.parametrize("text", MEDICAL_PHRASES)
def test_medical_language_is_kept(masker, text):
    result = masker.mask(text)
    assert result.text == text, result.summary()
    assert not result.findings and not result.changed


LOWERCASE_NAMES = [
    ("my name is john smith and i have had a cough", "john smith"),
    ("im mary jones, is it normal to bleed after a smear test?", "mary jones"),
    ("this is bob, my blood sugar is 300", "bob"),
    ("hey its priya again, the antibiotics are not working", "priya"),
    ("my son jacob has a fever of 39", "jacob"),
    ("call me liz, i think i have shingles", "liz"),
    ("the itching is worse at night. thanks, mike", "mike"),
]


@pytest.mark.parametrize(("text", "name"), LOWERCASE_NAMES)
def test_lowercase_names_after_a_personal_cue(masker, text, name):
    result = masker.mask(text)
    assert [f.entity_type for f in result.findings] == ["PERSON"]
    assert text[result.findings[0].start:result.findings[0].end] == name
    assert name not in result.text


def test_lowercase_name_stops_before_a_verb_or_adverb(masker):
    assert masker.mask("my mum joan fell and hit her head").text == "my mum <PERSON> fell and hit her head"
    assert masker.mask("hi its tom again, the rash is spreading").text == "hi its <PERSON> again, the rash is spreading"


def test_eponym_surname_with_personal_cue_is_still_a_person(masker):
    result = masker.mask("Please ask Dr. Bell whether my Bell's palsy will go away.")
    assert result.text == "Please ask Dr. <PERSON> whether my Bell's palsy will go away."


def test_findings_hold_no_original_values(masker):
    text = "I'm Zebulon Quixotefield, email zq@example.co.uk, SSN 536-22-1847, MRN 4478123."
    result = masker.mask(text)
    assert [f.name for f in dataclasses.fields(Finding)] == ["entity_type", "start", "end", "score"]
    assert {f.entity_type for f in result.findings} == {"PERSON", "EMAIL", "US_SSN", "MEDICAL_RECORD"}
    dump = repr(result.findings) + result.summary()
    for value in ("Zebulon", "Quixotefield", "zq@example", "536-22-1847", "4478123"):
        assert value not in dump and value not in result.text
    # offsets point into the original text
    assert [text[f.start:f.end] for f in result.findings][0] == "Zebulon Quixotefield"


def test_raw_text_is_not_logged(masker, caplog):
    caplog.set_level(logging.DEBUG)
    masker.mask("Hello, my name is Zebulon Quixotefield; social security 612 45 9873.")
    assert "Quixotefield" not in caplog.text and "9873" not in caplog.text


def test_no_network_needed(masker, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert masker.mask("Write to lena.fischer@example.co.uk").text == "Write to <EMAIL>"


@pytest.mark.parametrize("text, expected", [
    ("", ""),
    ("   \n\t  ", "   \n\t  "),
    ("My name is John\x00 Smith\x07, DOB: 01/02/1990\x1b[31m\x7f",
     "My name is <PERSON>\x07, DOB: <DATE_OF_BIRTH>\x1b[31m\x7f"),
    ("Call 212-555-0198 \ud800 now", "Call <PHONE> \ud800 now"),
    ("Je m'appelle Jean Dupont et j'ai la maladie de Crohn.", "Je m'appelle <PERSON> et j'ai la maladie de Crohn."),
    # Known limits, kept visible: the recognisers are English. A Chinese mobile number with a Chinese cue and an
    # Arabic name pass unmasked (safety.check_input then answers them with a request to write in English).
    ("我叫王伟，我有帕金森病，我的电话是 13812345678。", "我叫王伟，我有帕金森病，我的电话是 13812345678。"),
    ("اسمي أحمد وعندي مرض السكري", "اسمي أحمد وعندي مرض السكري"),
    ("😀" * 300, "😀" * 300),
    ("1" * 20_000, "1" * 20_000),
])
def test_bad_input_does_not_crash(masker, text, expected):
    result = masker.mask(text)
    assert result.text == expected
    assert not result.truncated
    for f in result.findings:
        assert 0 <= f.start < f.end <= len(text)


def test_control_characters_keep_offsets(masker):
    text = "My name is John\x00 Smith, email j.smith@example.com\x07"
    result = masker.mask(text)
    assert result.text == "My name is <PERSON>, email <EMAIL>\x07"


def test_huge_input_is_chunked_and_fully_masked(masker):
    filler = "I have had knee pain for three weeks and take ibuprofen. " * 2000
    text = (filler[:50_000] + " My SSN is 536-22-1847. " + filler)[:masker.config.max_chars - 40]
    text += " email me at last.line@example.com"
    assert len(text) > 90_000
    result = masker.mask(text)
    assert not result.truncated
    assert {f.entity_type for f in result.findings} == {"US_SSN", "EMAIL"}
    assert "536-22-1847" not in result.text and result.text.endswith("<EMAIL>")


def test_over_long_input_is_truncated_not_leaked(small_masker):
    text = "I take ibuprofen. " * 200 + "my SSN is 536-22-1847"
    result = small_masker.mask(text)
    assert result.truncated and result.changed
    assert len(result.text) == small_masker.config.max_chars
    assert "536-22-1847" not in result.text


@pytest.mark.parametrize("offset", [370, 390, 399, 300, 600, 1_190])
def test_value_across_chunk_boundary_is_masked(small_masker, offset):
    filler = "My knee hurts when I walk. " * 60
    text = filler[:offset] + " contact jane.doe@example.com or 212-555-0198 today. " + filler
    result = small_masker.mask(text[:small_masker.config.max_chars])
    assert "jane.doe@example.com" not in result.text and "212-555-0198" not in result.text
    assert [f.entity_type for f in result.findings] == ["EMAIL", "PHONE"]


def test_summary_and_changed():
    assert MaskResult("hello").summary() == "no PII found"
    assert not MaskResult("hello").changed
    findings = (Finding("PERSON", 0, 4, 0.85), Finding("EMAIL", 5, 9, 1.0), Finding("PERSON", 10, 12, 0.85))
    assert MaskResult("x", findings).summary() == "masked: PERSON, EMAIL"


def test_eval_set_is_well_formed(eval_rows):
    counts = collections.Counter(e["type"] for row in eval_rows for e in row["entities"])
    assert len(eval_rows) >= 120
    assert set(counts) == set(masking.ENTITY_TYPES)
    assert min(counts.values()) >= 5
    assert sum(1 for row in eval_rows if not row["entities"]) >= 40
    for row in eval_rows:
        for e in row["entities"]:
            value = row["text"][e["start"]:e["end"]]
            assert value and value == value.strip(), (row["text"], e)


def test_eval_recall_and_no_medical_false_positives(masker, eval_rows):
    report = evaluate(masker.analyze, eval_rows)
    precision, recall, _ = report.prf()
    assert recall >= 0.9
    assert precision >= 0.9
    assert report.negative_findings == 0


def test_beats_presidio_defaults_on_medical_sentences(eval_rows):
    negatives = [row for row in eval_rows if not row["entities"]]
    baseline = evaluate(masking_eval.presidio_defaults_analyzer(), negatives)
    assert baseline.negative_findings > 10  # the problem this module exists for


def test_eval_cli_alias_and_bad_file(capsys, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "My passport number is 533380006.", "entities": [{"type": "PASSPORT", "start": 22, '
                    '"end": 31}]}\n{"text": "Is stage 4 colon cancer curable?", "entities": []}\n', encoding="utf-8")
    assert masking_eval.main(["--eval", "--eval-file", str(rows)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 sentences, 1 gold entities (rows.jsonl)")
    assert ["PASSPORT", "1.000", "1.000", "1.000", "1", "0", "0"] in [line.split() for line in out.splitlines()]
    assert "medical terms wrongly masked on 1 negative sentences: 0" in out
    broken = tmp_path / "broken.jsonl"
    broken.write_text("My SSN is 536-22-1847\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        run("masking_eval", ["--eval-file", str(broken)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "536-22-1847" not in err


def test_cli(capsys):
    assert run("masking", ["My email is jane@example.com and I have Crohn's disease"]) == 0
    out = capsys.readouterr().out
    assert "My email is <EMAIL> and I have Crohn's disease" in out and "masked: EMAIL" in out
    with pytest.raises(SystemExit) as exit_info:
        run("masking", ["--help"])
    assert exit_info.value.code == 0


@pytest.mark.parametrize("question", [
    "What is (are) Personality Disorders ?", "What to do for Ectopic Kidney ?",
    "Is neuropathy, ataxia, and retinitis pigmentosa inherited ?", "What are the complications of Urine Blockage in Newborns ?",
])
def test_capitalised_condition_names_are_not_people(masker, question):
    assert masker.mask(question).text == question  # 81 of 812 MedQuAD test questions lost their topic before


def test_a_name_with_a_given_name_is_still_masked_beside_condition_words(masker):
    assert masker.mask("I'm Tom Wilson, what is Wilson disease?").text == "I'm <PERSON>, what is Wilson disease?"
