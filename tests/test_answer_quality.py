"""The answer-quality report's cases and conclusion (gpt2chat.reports.answer_quality)."""

from gpt2chat.reports.answer_quality import EXTRACT, UNTRAINED, conclusion, liveqa_cases, medquad_cases


def test_held_out_pages_leave_out_the_gold_section(sample_records):
    split = "train"  # the sample's foci: the report itself reads the test split
    cases = medquad_cases(sample_records, 50, split=split)
    assert cases["a"] and len(cases["b"]) <= len(cases["a"])
    for case in cases["a"]:
        assert case.references[0] in [s.answer for s in case.pages[0]]
    for case in cases["b"]:
        assert case.pages[0] and all(s.answer != case.references[0] for s in case.pages[0])


def test_liveqa_dev_messages_carry_their_subject_and_every_reference(tmp_path):
    path = tmp_path / "liveqa.jsonl"
    path.write_text('{"set": "dev", "subject": "cramp", "message": "what causes cramp", "subquestions": '
                    '[{"answers": ["A.", "B."]}, {"answers": ["C."]}]}\n'
                    '{"set": "train", "subject": "", "message": "x", "subquestions": [{"answers": ["D."]}]}\n')
    (case,) = liveqa_cases(path)
    assert case.question == "cramp what causes cramp" and case.references == ("A.", "B.", "C.") and case.pages is None


def _report(trained, untrained, extract):
    systems = {"m": {"rouge2": trained}, UNTRAINED: {"rouge2": untrained}, EXTRACT: {"rouge2": extract}}
    return {"model": "m", "cases": {"a": {"systems": systems}, "c": {"systems": systems}}}


def test_the_conclusion_is_written_from_the_numbers():
    assert "does not beat the extract" in conclusion(_report(7.4, 18.8, 30.0)) and "not served" in conclusion(
        _report(7.4, 18.8, 30.0))
    assert "(a) 7.4 against 30.0 for the extract and 18.8" in conclusion(_report(7.4, 18.8, 30.0))
    assert "beats the extract on every set" in conclusion(_report(33.0, 18.8, 30.0))
