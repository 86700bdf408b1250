import dataclasses
import json

import pytest

from gpt2chat.corpus.data import MedQuADNotFound, load_records, parse_document
from gpt2chat.corpus.splits import SPLIT_NAMES, load_split, save_split, split_records


@pytest.fixture(scope="module")
def full(full_medquad):
    return full_medquad


def test_full_collection_counts(full):
    records, report = full
    assert sum(report.pairs_seen.values()) == 47457
    assert len(records) == sum(report.kept.values()) == 16375
    # The three MedlinePlus subsets were published without answers.
    for subset in ("10_MPlus_ADAM_QA", "11_MPlusDrugs_QA", "12_MPlusHerbsSupplements_QA"):
        assert report.kept[subset] == 0 and report.no_answer[subset] == report.pairs_seen[subset]
    assert sum(report.duplicates.values()) == 48
    assert not report.files_skipped


def test_records_have_every_field_clean(full):
    records, _ = full
    assert len({r.pair_id for r in records}) == len(records)
    for record in records[::97]:
        for field in dataclasses.fields(record):
            value = getattr(record, field.name)
            assert value == " ".join(value.split()), field.name  # whitespace normalised
        assert record.question and record.answer and record.url.startswith("http")
    # A few upstream documents have an empty <Focus>; the split falls back to their document id.
    assert sum(bool(r.focus) for r in records) / len(records) > 0.99


def test_both_xml_dialects_are_read(full):
    records, _ = full
    # 6_NINDS_QA/0000007.xml uses the <doc><pair> dialect.
    assert any(r.pair_id.startswith("6_NINDS_QA/0000007-") and r.focus == "Holmes-Adie" for r in records)


def test_corrupt_and_non_utf8_files_are_skipped_with_a_warning(tmp_path, caplog, medquad_dir):
    subset = tmp_path / "2_GARD_QA"
    subset.mkdir()
    good = sorted((medquad_dir / "2_GARD_QA").glob("*.xml"))[0]
    (subset / good.name).write_bytes(good.read_bytes())
    (subset / "broken.xml").write_text("<Document><QAPairs><QAPair>")
    (subset / "latin1.xml").write_bytes("<Document><Focus>caf\xe9</Focus></Document>".encode("latin-1"))
    records, report = load_records(tmp_path)
    assert records and report.files_read == 1
    assert sorted(p.rsplit("/", 1)[1] for p in report.files_skipped) == ["broken.xml", "latin1.xml"]
    assert "broken.xml" in caplog.text and "latin1.xml" in caplog.text


def test_links_folders_pipes_and_huge_files_named_xml_are_skipped_unread(tmp_path, caplog, medquad_dir):
    import os

    from gpt2chat.corpus import data
    from gpt2chat.search.retrieval import cache_key

    subset = tmp_path / "2_GARD_QA"
    subset.mkdir()
    good = sorted((medquad_dir / "2_GARD_QA").glob("*.xml"))[0]
    (subset / good.name).write_bytes(good.read_bytes())
    (subset / "loop.xml").symlink_to(subset / "loop.xml")
    (subset / "broken.xml").symlink_to(tmp_path / "nowhere.xml")
    (subset / "folder.xml").mkdir()
    os.mkfifo(subset / "pipe.xml")  # opening it would block forever
    with open(subset / "huge.xml", "wb") as huge:  # sparse: no disk used, but reading it would fill memory
        huge.truncate(data.MAX_FILE_BYTES + 1)
    (tmp_path / "loop_subset").symlink_to(tmp_path / "loop_subset")
    records, report = load_records(tmp_path)
    assert records and report.files_read == 1
    skipped = sorted(p.rsplit("/", 1)[1] for p in report.files_skipped)
    assert skipped == ["broken.xml", "folder.xml", "huge.xml", "loop.xml", "pipe.xml"]
    assert "huge.xml" in caplog.text and "limit" in caplog.text and "loop.xml" in caplog.text
    # Train and deploy list the files and hash them for the retrieval cache: only the readable one is listed.
    assert [path.name for _, path in data.xml_files(tmp_path)] == [good.name]
    assert cache_key(tmp_path)


def test_largest_medquad_file_is_well_under_the_size_limit(medquad_dir):
    from gpt2chat.corpus import data

    largest = max(path.stat().st_size for _, path in data.xml_files(medquad_dir))
    assert 50_000 < largest < data.MAX_FILE_BYTES / 100  # the margin the limit's comment claims


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(MedQuADNotFound, match="MedQuAD not found"):
        load_records(tmp_path / "nowhere")


def test_split_is_by_focus_deterministic_and_saved(full, tmp_path):
    records, _ = full
    splits = split_records(records)
    foci = {name: {r.focus.lower() for r in splits[name]} for name in SPLIT_NAMES}
    assert not foci["train"] & foci["test"] and not foci["train"] & foci["validation"]
    assert not foci["validation"] & foci["test"]
    assert sum(len(s) for s in splits.values()) == len(records)
    assert 0.03 < len(splits["test"]) / len(records) < 0.08
    assert split_records(records) == splits
    save_split(splits, tmp_path / "split.json")
    assert load_split(tmp_path / "split.json", records) == splits
    assert json.loads((tmp_path / "split.json").read_text())["config"]["salt"]


def test_parse_document_reports_unanswered_pairs(medquad_dir):
    path = sorted((medquad_dir / "10_MPlus_ADAM_QA").glob("*.xml"))[0]
    pairs = parse_document(path, "10_MPlus_ADAM_QA")
    assert pairs and not any(has_answer for _, has_answer in pairs)


def _answer(medquad_dir, file: str, pid: int) -> str:
    subset = file.split("/")[0]
    return next(r.answer for r, _ in parse_document(medquad_dir / file, subset) if r.pair_id.endswith(f"-{pid}"))


def test_navigation_leftovers_and_headings_are_cleaned_from_real_answers(medquad_dir):
    varicose = _answer(medquad_dir, "8_NHLBI_QA_XML/0000135.xml", 1)  # opens with the page's "Espaol" link
    assert varicose.startswith("Varicose (VAR-i-kos) veins are swollen") and "Espaol" not in varicose
    hemophilia = _answer(medquad_dir, "8_NHLBI_QA_XML/0000069.xml", 6)  # a heading alone on its line
    assert hemophilia.startswith("The main treatment for hemophilia is called replacement therapy.")
    assert "Replacement Therapy You can do" not in hemophilia and "Therapy The" not in hemophilia
    breast = _answer(medquad_dir, "7_SeniorHealth_QA/0000008.xml", 1)  # a heading run into its first sentence
    assert breast.startswith("The body is made up of many types of cells.") and "How Tumors Form" not in breast
    assert "Watch the video" not in breast and "Escape (Esc)" not in breast
    prevention = _answer(medquad_dir, "7_SeniorHealth_QA/0000008.xml", 3)  # a question heading
    assert prevention.startswith("Cancer prevention is action taken to lower the chance of getting cancer.")


# (answer, text it keeps, text it no longer has). The crawl kept some headings inline before their section's first
# sentence: dropped where the sentence names them again ("Surgery Laser surgery is ..."), a label where it does not
# ("Group I: Cancer was found only ..."); the last four are sentences whose first words look like a heading.
INLINE_HEADINGS = [
    ("7_SeniorHealth_QA/0000027.xml", 4, ["surgery. Medications for glaucoma may be either",
                                          "glaucoma. Laser surgery is another treatment for glaucoma."],
     ["Surgery Laser"]),
    ("1_CancerGov_QA/0000003_4.xml", 5,
     ["removed by surgery: Group I: Cancer was found only in the place where it started"], []),
    ("5_NIDDK_QA/0000157.xml", 5, ["Talk With a Dietitian: Even though you are on hemodialysis"], []),
    ("2_GARD_QA/0000776.xml", 3, ["isolated case. In the Swedish family, the syndrome was inherited"], []),  # "the"
    ("2_GARD_QA/0001788.xml", 1, ["break easily. Type II and type III: usually occur"], []),  # capitalised "II"
    ("1_CancerGov_QA/0000007_4.xml", 2, ["hepatitis virus. Hepatitis A (HAV), hepatitis B (HBV)"], []),  # names
    ("4_MPlus_Health_Topics_QA/0000207.xml", 1, ["just women. An Institutional Review Board (IRB) reviews"], []),
]


@pytest.mark.parametrize("file, pid, kept, dropped", INLINE_HEADINGS)
def test_inline_headings_are_dropped_or_set_apart_and_names_kept(medquad_dir, file, pid, kept, dropped):
    answer = _answer(medquad_dir, file, pid)
    assert all(text in answer for text in kept)
    assert not any(text in answer for text in dropped)


def test_lists_stay_lists_and_end_before_the_next_paragraph(medquad_dir):
    diabetes = _answer(medquad_dir, "5_NIDDK_QA/0000022.xml", 4)
    assert ("Symptoms include - increased thirst - increased hunger - fatigue" in diabetes
            and "- sores that do not heal. Many people do not find out" in diabetes)


def test_a_sentence_repeated_within_an_answer_is_kept_once(full):
    records, _ = full
    leukemia = next(r for r in records if r.pair_id == "1_CancerGov_QA/0000001_1-7")
    assert leukemia.answer.count("Patients may want to think about taking part in a clinical trial.") == 1
    assert leukemia.answer.count("clinical trial") >= 1
