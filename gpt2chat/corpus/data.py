"""MedQuAD XML tree → clean question-answer records.

Usage: python -m gpt2chat.data [--data DIR]   (prints what was kept and dropped per source)

The upstream tree has two XML dialects (``<Document><QAPair>`` and, in a few files, ``<doc><pair>``);
both are read. Three MedlinePlus subsets were published without answers, so their pairs are dropped.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import re
import stat
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable, Iterator

from gpt2chat import settings

log = logging.getLogger(__name__)

# MedQuAD's largest file is 59,956 bytes (7_SeniorHealth_QA/0000008.xml). Parsing needs 3.6x a file's size in
# memory for MedQuAD-like XML and 12x for many tiny elements (measured on 52-60 MB files), so a stray file over
# 8 MiB, 140x the largest real one, is skipped unread instead of costing gigabytes.
MAX_FILE_BYTES = 8 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class QAPair:
    pair_id: str  # "<subset>/<file name>-<pid>", unique across the collection (some files share a document id)
    document_id: str
    subset: str  # upstream folder, e.g. "2_GARD_QA"
    source: str  # e.g. "GARD"
    url: str
    focus: str  # the disease, drug or topic the document is about
    question_type: str  # e.g. "treatment", "symptoms"
    question: str
    answer: str


@dataclasses.dataclass
class LoadReport:
    files_read: int = 0
    files_skipped: list[str] = dataclasses.field(default_factory=list)
    pairs_seen: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    kept: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    no_answer: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    duplicates: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def frame(self):
        """A DataFrame with one row per source folder, in upstream order: subset, pairs, kept, no_answer,
        duplicates."""
        import pandas as pd

        counts = ("pairs", "kept", "no_answer", "duplicates")
        rows = [{"subset": s, "pairs": self.pairs_seen[s], "kept": self.kept[s], "no_answer": self.no_answer[s],
                 "duplicates": self.duplicates[s]} for s in sorted(self.pairs_seen, key=_subset_order)]
        return pd.DataFrame(rows, columns=["subset", *counts]).astype({c: "int64" for c in counts})

    def table(self) -> str:
        import pandas as pd

        from gpt2chat.markdown import markdown_table

        per_source = self.frame()
        total = pd.DataFrame([{"subset": "**total**", **per_source.drop(columns="subset").sum()}])
        table = pd.concat([per_source, total], ignore_index=True).rename(
            columns={"subset": "source", "no_answer": "no answer", "duplicates": "duplicate"})
        summary = f"{self.files_read} XML files read, {len(self.files_skipped)} skipped"
        if self.files_skipped:
            summary += ": " + ", ".join(self.files_skipped[:10])
        return summary + "\n\n" + markdown_table(table)


class MedQuADNotFound(FileNotFoundError):
    pass


_WHITESPACE = re.compile(r"\s+")


def normalise(text: str | None) -> str:
    """Collapse all runs of whitespace (the XML indents answers heavily) and strip."""
    return _WHITESPACE.sub(" ", text or "").strip()


# ------------------------------------------------------------------------------------------ answer clean-up
# What the crawl kept of the pages' navigation, alone on a line: NHLBI pages open with their language switch
# ("Español" with its ñ lost, 18 answers).
NAVIGATION_LEFTOVERS = frozenset({"Espaol", "Español", "En español"})
# NIHSeniorHealth's notes on its page videos (46 answers): "(Watch the video to learn more about … To enlarge the
# video, click the brackets … press the Escape (Esc) button on your keyboard.)".
_VIDEO_NOTE = re.compile(r"\(Watch the videos?\b.*?(?:on your keyboard\.\)|\.\))")
_TERMINAL = (".", "!", "?", ":", ";")
# Words that may stay lower case in a heading ("Treatment With Replacement Therapy", "Living With a Pacemaker").
_HEADING_SMALL_WORDS = frozenset("a an and as at by for from in of on or the to vs with without your".split())
_HEADING_WORD = re.compile(r"[A-Z0-9][\w'’()/&-]*$")
# Sentence openers after which an inline run of capitalised words can only be a heading glued to its section's
# first sentence: "How Tumors Form The body is made up…", "Acute Porphyrias A health care provider treats…".
_OPENERS = ("The|A|An|This|These|Those|It|Its|There|Some|Many|Most|Your|You|If|When|People|Each|Both|Several|"
            "Researchers|Scientists|Doctors")
_GLUED_HEADING = re.compile(
    rf"(?:(?<=^)|(?<=[.!?] ))((?:(?:[A-Z0-9][\w'’/&-]*|{'|'.join(sorted(_HEADING_SMALL_WORDS))}) ){{1,10}}?)"
    rf"(?=(?:{_OPENERS}) [a-z]|- [A-Z])")  # or its list: CancerGov's "Key Points - There are different types…"
# A heading asked as a question ("What Is Cancer Prevention?"): every word capitalised, as a sentence of its own.
_QUESTION_HEADING = re.compile(r"(?:(?<=^)|(?<=[.!?] ))(?:[A-Z][\w'’-]* ){2,}?(?:[A-Z][\w'’-]*)\? (?=[A-Z])")
# A heading the crawl left inline before its section's first sentence, followed by two spaces or named again in the
# sentence's first three words: "... surgery. Medications  Medications for glaucoma may be ...", "... with glaucoma.
# Surgery Laser surgery is another treatment ..." (NIHSeniorHealth, NIDDK, CancerGov). The next words open a
# sentence: "Hepatitis A (HAV)" or "An Institutional Review Board (IRB) reviews" are names.
_INLINE_HEADING = re.compile(
    rf"(?:(?<=^)|(?<=[a-z0-9)][.!?] ))\s*([A-Z][\w'’()/&-]*(?: (?:[A-Z0-9][\w'’()/&-]*|"
    rf"{'|'.join(sorted(_HEADING_SMALL_WORDS))}))*)( +)(?=[A-Z](?:[a-z][\w'’-]*)? (?:[a-z]|\([a-z]))")
# Sentence and list-item boundaries, for finding repeats only (the chat stage has the full sentence splitter).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“(]?[A-Z0-9])|\s+(?=- [\"“(]?[A-Z0-9])")


def _is_heading(line: str) -> bool:
    words = line.split()
    return (0 < len(words) <= 10 and not line.endswith(_TERMINAL) and words[0][0].isupper()
            and all(_HEADING_WORD.match(w) or w in _HEADING_SMALL_WORDS for w in words))


def _starts_sentence(line: str) -> bool:
    """A paragraph of prose: capitalised, with lower-case words, ending like a sentence."""
    words = line.split()
    return (len(words) >= 3 and words[0][0].isupper() and any(w[0].islower() for w in words[1:4])
            and line.endswith((".", "!", "?", ":")))


def _without_inline_headings(line: str) -> str:
    """A section's sentence that names its heading again loses the heading; one that does not keeps it as a label
    ("Group I: Cancer was found only ...", "Location: Dialysis center."), which is all that says which group or which
    row the sentence is about."""
    def unglued(match: re.Match) -> str:
        words = match.group(1).split()
        if not _is_heading(match.group(1)) or words[-1].lower() in _HEADING_SMALL_WORDS:  # "As CKD progresses, a"
            return match.group()
        if _singular(words[-1]) in map(_singular, line[match.end():].split()[:3]):
            return ""
        return f"{match.group(1)}: " if len(match.group(2)) >= 2 else match.group()

    return _INLINE_HEADING.sub(unglued, line)


def _singular(word: str) -> str:
    word = word.strip(",.;:()").lower()
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def clean_answer(raw: str) -> str:
    """An answer's XML text as one clean line: navigation leftovers and section headings dropped ("Treatment With
    Replacement Therapy" no longer glued to "The main treatment…", nor "Surgery" to "Laser surgery is…"), lists of
    short lines kept as "- item" lists closed by a period, and a sentence repeated within the answer kept once (284
    answers repeat one, e.g. every CancerGov treatment answer's "Patients may want to think about taking part in a
    clinical trial.")."""
    lines = [line for line in map(normalise, map(_without_inline_headings, (raw or "").splitlines()))
             if line and line not in NAVIGATION_LEFTOVERS]
    kept: list[str] = []
    for position, line in enumerate(lines):
        following = lines[position + 1] if position + 1 < len(lines) else ""
        previous = kept[-1] if kept else ""
        if _is_heading(line) and (not previous or previous.endswith(_TERMINAL)) and _starts_sentence(following):
            continue  # a section heading alone on its line
        if not line.endswith(_TERMINAL) and not line.startswith("- ") and len(line.split()) <= 12 and (
                previous.endswith(":") or previous.startswith("- ")):
            line = f"- {line}"  # an item of a list whose lines the crawl kept apart
        if previous.startswith("- ") and not previous.endswith(_TERMINAL) and not line.startswith("- "):
            kept[-1] = previous + "."  # the list ends here: its last item is not the next paragraph's first words
        kept.append(line)
    text = " ".join(_VIDEO_NOTE.sub("", " ".join(kept)).split())
    text = _QUESTION_HEADING.sub("", text)
    text = _GLUED_HEADING.sub("", text)
    seen: set[str] = set()
    sentences = []
    for sentence in _SENTENCE_END.split(text):
        key = sentence.removeprefix("- ").lower()
        if len(sentence.split()) >= 4 and key in seen:
            continue
        seen.add(key)
        sentences.append(sentence)
    return " ".join(sentences)


# GHR publishes every "treatment" answer (1,085 pairs) as a list of links: "These resources address the diagnosis
# or management of X: - Genetic Testing Registry: X - MedlinePlus Encyclopedia: …". It names no treatment.
LINK_LIST_OPENING = "These resources address the diagnosis or management of"


def is_link_list(answer: str) -> bool:
    return answer.startswith(LINK_LIST_OPENING)


def focus_key(focus: str) -> str:
    """The one normalised form of a focus name, for grouping, splitting and matching: case and spacing folded
    ("Breast cancer" and "Breast  Cancer" are one focus)."""
    return " ".join(focus.lower().split())


def name_key(focus: str) -> str:
    """A focus name as compared with an annotated one: ``focus_key`` without possessives, bracketed abbreviations
    or punctuation ("Whipple's disease" is "Whipple Disease", "Rocky Mountain Spotted Fever (RMSF)" the annotated
    "rocky mountain spotted fever", "Liver (Hepatocellular) Cancer" "liver cancer")."""
    bare = re.sub(r"\([^)]*\)|['’]s\b", " ", focus_key(focus))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", bare).split())


def synonym_sets(annotations, key=name_key) -> dict[str, frozenset[str]]:
    """Answered-or-not focus -> the names of it and of every ``<Synonym>`` its MedQuAD documents list, all as
    ``key`` (``name_key``; ``focus_key`` compares names exactly as written)."""
    names: dict[str, set[str]] = collections.defaultdict(set)
    for note in annotations:
        own = key(note.focus)
        names[own] |= {own, *(key(s) for s in note.synonyms)}
    return {name: frozenset(keys) for name, keys in names.items()}


def page_key(pair_id: str) -> str:
    """The page (MedQuAD document file) a pair belongs to: its pair id without the pair number. A page's pairs are
    its sections, one per question type ("What is X?", "How is X treated?", ...)."""
    return pair_id.rsplit("-", 1)[0]


def _subset_order(subset: str) -> tuple[int, str]:
    number = subset.split("_", 1)[0]
    return (int(number) if number.isdigit() else 999, subset)


def _child(element: ET.Element, *names: str) -> ET.Element | None:
    wanted = {n.lower() for n in names}
    for child in element:
        if isinstance(child.tag, str) and child.tag.lower() in wanted:
            return child
    return None


def _descendants(element: ET.Element, name: str) -> Iterator[ET.Element]:
    for node in element.iter():
        if isinstance(node.tag, str) and node.tag.lower() == name:
            yield node


def unreadable_reason(path: Path) -> str | None:
    """Why ``path`` cannot be a MedQuAD document (a directory or device named .xml, a broken symlink or a symlink
    loop, a file over MAX_FILE_BYTES), or None."""
    try:
        info = path.stat()
    except OSError as error:
        return error.strerror or type(error).__name__
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size > MAX_FILE_BYTES:
        return f"{info.st_size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for one file"
    return None


def read_document(path: Path) -> bytes:
    """The bytes of one XML file, never more than MAX_FILE_BYTES of them. Raises ValueError saying why not."""
    problem = unreadable_reason(path)
    if problem is None:
        try:
            with path.open("rb") as handle:
                content = handle.read(MAX_FILE_BYTES + 1)  # bounded even if the file grew since the check
        except OSError as error:
            problem = error.strerror or type(error).__name__
        else:
            if len(content) <= MAX_FILE_BYTES:
                return content
            problem = f"over the {MAX_FILE_BYTES:,}-byte limit for one file"
    raise ValueError(f"{path}: {problem}")


def parse_document(path: Path, subset: str) -> list[tuple[QAPair, bool]]:
    """All pairs of one XML file as (record, has_answer). Raises ValueError for unreadable files."""
    try:
        text = read_document(path).decode("utf-8")
        root = ET.fromstring(text)
    except (UnicodeDecodeError, ET.ParseError) as error:
        raise ValueError(f"{path}: {error}") from error
    document_id = root.get("id") or root.get("docid") or path.stem
    source = root.get("source") or root.get("corpus") or subset.split("_", 1)[-1]
    url = root.get("url", "")
    focus_node = _child(root, "Focus", "doctitle-focus")
    focus = normalise(focus_node.text if focus_node is not None else "")
    pairs = []
    for pair in [*_descendants(root, "qapair"), *_descendants(root, "pair")]:
        question_node = _child(pair, "Question")
        answer_node = _child(pair, "Answer")
        if question_node is None:
            continue
        answer = clean_answer("".join(answer_node.itertext()) if answer_node is not None else "")
        record = QAPair(
            pair_id=f"{subset}/{path.stem}-{pair.get('pid', len(pairs) + 1)}",
            document_id=document_id,
            subset=subset,
            source=source,
            url=url,
            focus=focus,
            question_type=question_node.get("qtype", "unknown"),
            question=normalise("".join(question_node.itertext())),
            answer=answer,
        )
        pairs.append((record, bool(answer and record.question)))
    return pairs


def xml_files(root: Path) -> list[tuple[str, Path]]:
    """The readable ``<subset>/<name>.xml`` files under ``root``; ``load_records`` reports the others."""
    files = [(subset, path) for subset, path in _listed_xml(root) if unreadable_reason(path) is None]
    if not files:
        raise MedQuADNotFound(f"No readable MedQuAD XML file under {root}.")
    return files


def _listed_xml(root: Path) -> list[tuple[str, Path]]:
    if not root.is_dir():
        raise MedQuADNotFound(
            f"MedQuAD not found at {root}. Clone https://github.com/abachaa/MedQuAD and pass --data PATH "
            f"or set {settings.MEDQUAD_ENV}."
        )
    files = [(p.parent.name, p) for p in sorted(root.glob("*/*.xml"))]
    if not files:
        raise MedQuADNotFound(f"No MedQuAD XML files under {root} (expected <subset>/<id>.xml).")
    return files


def load_records(
    root: str | Path | None = None, *, subsets: Iterable[str] | None = None, limit_files: int | None = None,
    progress: bool = False,
) -> tuple[list[QAPair], LoadReport]:
    """Answered, de-duplicated pairs of the MedQuAD tree, in file order, with a report of what was dropped.

    ``limit_files`` reads only the first N files of each subset (tests and quick looks).
    """
    root = settings.medquad_dir(root)
    files = _listed_xml(root)  # unreadable entries too, so that the report names them
    if subsets is not None:
        wanted = set(subsets)
        files = [(s, p) for s, p in files if s in wanted]
    if limit_files is not None:
        per_subset: collections.Counter = collections.Counter()
        limited = []
        for subset, path in files:
            if per_subset[subset] < limit_files:
                limited.append((subset, path))
                per_subset[subset] += 1
        files = limited
    report = LoadReport()
    seen: set[tuple[str, str]] = set()
    records: list[QAPair] = []
    iterator: Iterable = files
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(files, desc="reading MedQuAD", unit="file")
    for subset, path in iterator:
        try:
            pairs = parse_document(path, subset)
        except ValueError as error:
            log.warning("skipping unreadable MedQuAD file %s", error)
            report.files_skipped.append(str(path))
            continue
        report.files_read += 1
        for record, has_answer in pairs:
            report.pairs_seen[subset] += 1
            if not has_answer:
                report.no_answer[subset] += 1
                continue
            key = (record.question.lower(), record.answer)
            if key in seen:
                report.duplicates[subset] += 1
                continue
            seen.add(key)
            report.kept[subset] += 1
            records.append(record)
    return records, report


@dataclasses.dataclass(frozen=True)
class FocusAnnotation:
    """What one MedQuAD document says about its topic, answered or not: the retriever's focus and type lexicon."""

    subset: str
    url: str
    focus: str
    synonyms: tuple[str, ...] = ()  # <Synonyms><Synonym>
    cuis: tuple[str, ...] = ()  # UMLS concept ids, <CUI>
    typed_questions: tuple[tuple[str, str], ...] = ()  # (qtype, question) of every pair, with or without answer


def parse_annotation(path: Path, subset: str) -> FocusAnnotation:
    """The focus, synonyms, CUIs and typed questions of one XML file. Raises ValueError for unreadable files."""
    try:
        root = ET.fromstring(read_document(path).decode("utf-8"))
    except (UnicodeDecodeError, ET.ParseError) as error:
        raise ValueError(f"{path}: {error}") from error
    focus_node = _child(root, "Focus", "doctitle-focus")
    questions = [_child(pair, "Question") for pair in [*_descendants(root, "qapair"), *_descendants(root, "pair")]]
    return FocusAnnotation(
        subset=subset, url=root.get("url", ""), focus=normalise(focus_node.text if focus_node is not None else ""),
        synonyms=tuple(normalise(n.text) for n in _descendants(root, "synonym") if normalise(n.text)),
        cuis=tuple(normalise(n.text) for n in _descendants(root, "cui") if normalise(n.text)),
        typed_questions=tuple((q.get("qtype", "unknown"), normalise("".join(q.itertext())))
                              for q in questions if q is not None and normalise("".join(q.itertext()))),
    )


def load_annotations(root: str | Path | None = None, progress: bool = False) -> list[FocusAnnotation]:
    """One annotation per readable XML file of every subset, including the three published without answers."""
    annotations = []
    files = xml_files(settings.medquad_dir(root))
    if progress:
        from tqdm.auto import tqdm

        files = tqdm(files, desc="reading MedQuAD foci", unit="file")
    for subset, path in files:
        try:
            annotations.append(parse_annotation(path, subset))
        except (ValueError, OSError) as error:
            log.warning("skipping unreadable MedQuAD file %s", error)
    return annotations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.data", description=__doc__.split("\n")[0])
    parser.add_argument("--data", help=f"MedQuAD directory (default: ${settings.MEDQUAD_ENV} or ../shared/medquad)")
    args = parser.parse_args(argv)
    records, report = load_records(args.data, progress=True)
    print(report.table())
    print(f"\n{len(records)} answered pairs, {len({focus_key(r.focus) for r in records if r.focus})} distinct foci")
    return 0


if __name__ == "__main__":
    sys.exit(main())
