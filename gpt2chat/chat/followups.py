"""Suggested follow-up questions: other MedQuAD questions about the focus just answered.

    finder = FollowupFinder.from_index(engine.index)     # once per process (~16k passages grouped by focus)
    finder.suggest(passage, asked="how do you treat glaucoma?")
    # ['What is glaucoma?', 'What are the symptoms of glaucoma?', 'Who is at risk for glaucoma?']

Every suggestion is a question MedQuAD itself answers for the same focus (``gpt2chat.corpus.data.focus_key``), of a
question type other than the one just answered, so clicking it retrieves a real NIH passage. ``question_type``
is also what the feedback report groups ratings by.

    python -m gpt2chat.followups "What is glaucoma?"      # suggestions for the best passage of a question
    python -m gpt2chat.followups --eval                   # type-classifier agreement and suggestion latency
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import re
import sys
import time
from typing import Iterable, Mapping, Sequence

from gpt2chat.corpus.data import focus_key
from gpt2chat.search.question_types import cue

OTHER = "other"
# The order suggestions are offered in: what a reader usually wants next after any one answer.
SUGGESTION_ORDER = ("information", "symptoms", "causes", "treatment", "exams and tests", "inheritance",
                    "outlook", "prevention", "susceptibility", "complications", "genetic changes", "frequency",
                    "stages", "considerations", "research", "support groups")


def question_type(question: str, focus: str = "") -> str:
    """The MedQuAD question type a question's words ask for (``gpt2chat.search.question_types.cue``; ``OTHER``
    when none does). The focus name is removed first when known, so "Hereditary angioedema" or "Gene therapy" do
    not decide the type."""
    text = question.lower()
    if focus:
        # str.replace, not re.sub: a pattern per focus meant compiling 16k regexes when grouping the index
        text = text.replace(focus.lower(), " ")
    return cue(text) or OTHER


_TEMPLATE_NOISE = ((re.compile(r"\bis \(are\)", re.IGNORECASE), "is"), (re.compile(r"\s*\?(?:\s*\?)*\s*$"), "?"))


def readable(question: str) -> str:
    """MedQuAD's template wording made readable: "What is (are) Gout ?" → "What is Gout?"."""
    text = " ".join(question.split())
    for pattern, replacement in _TEMPLATE_NOISE:
        text = pattern.sub(replacement, text)
    return text[:1].upper() + text[1:]


@dataclasses.dataclass(frozen=True)
class Candidate:
    pair_id: str
    question_type: str
    question: str  # readable form, what the user sees and sends
    folded: str  # comparison form (_fold), computed once here rather than per suggestion


class FollowupFinder:
    """Questions grouped by focus key, classified once, so each suggestion is a dictionary lookup."""

    def __init__(self, passages: Iterable[Mapping[str, str]]):
        by_focus: dict[str, list[Candidate]] = collections.defaultdict(list)
        for passage in passages:
            focus = passage.get("focus") or ""
            if not focus or not passage.get("question"):
                continue
            question = readable(passage["question"])
            by_focus[focus_key(focus)].append(Candidate(
                pair_id=passage["pair_id"], question_type=_answered_type(passage["question"], passage.get(
                    "question_type", ""), focus), question=question, folded=_fold(question)))
        rank = {name: i for i, name in enumerate(SUGGESTION_ORDER)}
        # Sorted once here (stable: the index's order breaks ties), so suggest() only filters.
        self._by_focus = {key: sorted(candidates, key=lambda c: rank.get(c.question_type, len(rank)))
                          for key, candidates in by_focus.items()}

    @classmethod
    def from_index(cls, index) -> FollowupFinder:
        """From a ``gpt2chat.search.retrieval.RetrievalIndex``: its passages are the questions MedQuAD answers."""
        return cls(index._passages if index is not None else ())  # the index keeps them as dicts; only read here

    def __len__(self) -> int:
        return len(self._by_focus)

    def suggest(self, passage, asked: str = "", k: int = 3, exclude: Sequence[str] = ()) -> list[str]:
        """Up to ``k`` questions on ``passage``'s focus, one per question type, none of the type just answered
        (the passage's, and the one ``asked`` was phrased as) and never the answered or ``exclude``d questions."""
        return self.suggest_for_focus(passage.focus, asked, k, exclude, answered=passage)

    def suggest_for_focus(self, focus: str, asked: str = "", k: int = 3, exclude: Sequence[str] = (),
                          answered=None) -> list[str]:
        """``suggest`` when only the focus is known (a reply's first source): the type ``asked`` is skipped."""
        if k <= 0 or not focus:
            return []
        answered_types = {question_type(asked, focus)} if asked else set()
        seen = {_fold(asked), *map(_fold, exclude)}
        if answered is not None:
            answered_types.add(_answered_type(answered.question, answered.question_type, focus))
            seen.add(_fold(answered.question))
        answered_types.discard(OTHER)
        suggestions, types = [], set()
        for candidate in self._by_focus.get(focus_key(focus), ()):
            if ((answered is not None and candidate.pair_id == answered.pair_id)
                    or candidate.question_type in answered_types or candidate.question_type in types
                    or candidate.folded in seen):
                continue
            suggestions.append(candidate.question)
            types.add(candidate.question_type)
            seen.add(candidate.folded)
            if len(suggestions) == k:
                break
        return suggestions


def _answered_type(question: str, medquad_type: str, focus: str) -> str:
    """A MedQuAD question's type: its own qtype when the index carries it, the rules otherwise (they agree on
    99.99%)."""
    return medquad_type or question_type(question, focus)


def _fold(question: str) -> str:
    """Comparison form: template noise, case and spacing do not make two questions different."""
    return " ".join(readable(question).lower().rstrip("?").split())


def evaluate(records, finder: FollowupFinder, passages) -> str:
    """Classifier agreement with MedQuAD's qtype, and suggestion latency over the given passages."""
    import pandas as pd  # here, not at the top: the UI imports this module at start-up

    from gpt2chat.markdown import markdown_table

    agree = collections.Counter()
    totals = collections.Counter()
    for record in records:
        totals[record.question_type] += 1
        agree[record.question_type] += question_type(record.question, record.focus) == record.question_type
    latencies, counts = [], collections.Counter()
    for passage in passages:
        started = time.perf_counter()
        count = len(finder.suggest(passage))
        latencies.append((time.perf_counter() - started) * 1000)
        counts[count] += 1
    latencies.sort()
    table = pd.DataFrame([{"question type": name, "pairs": total, "agreement": 100 * agree[name] / total}
                          for name, total in totals.most_common()])
    lines = [f"question-type rules agree with MedQuAD's qtype on {sum(agree.values()):,} of "
             f"{sum(totals.values()):,} pairs ({100 * sum(agree.values()) / sum(totals.values()):.2f}%)",
             "", markdown_table(table, {"pairs": "{:,}", "agreement": "{:.1f}%"})]
    lines += ["", f"suggestions per answered passage over {len(passages):,}: "
              + ", ".join(f"{n} → {counts[n]:,}" for n in sorted(counts)),
              f"suggest() latency: median {latencies[len(latencies) // 2]:.3f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99)]:.3f} ms, max {latencies[-1]:.3f} ms"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.followups", description=__doc__.split("\n")[0])
    parser.add_argument("question", nargs="?", help="a question: show its best passage's follow-ups")
    parser.add_argument("--eval", action="store_true", help="classifier agreement and latency over all of MedQuAD")
    parser.add_argument("--data", help="MedQuAD directory (default: settings.medquad_dir())")
    args = parser.parse_args(argv)
    if not args.question and not args.eval:
        parser.error("give a question or --eval")
    from gpt2chat.corpus import data
    from gpt2chat.search.retrieval import Passage, RetrievalIndex

    index = RetrievalIndex.load_or_build(args.data)
    started = time.perf_counter()
    finder = FollowupFinder.from_index(index)
    print(f"grouped {len(index):,} passages into {len(finder):,} foci in "
          f"{(time.perf_counter() - started) * 1000:.0f} ms", file=sys.stderr)
    if args.eval:
        records, _ = data.load_records(args.data)
        passages = [Passage(**p, score=0.0) for p in index._passages]
        print(evaluate(records, finder, passages))
    if args.question:
        best = index.search(args.question, k=1)
        if not best:
            print("no MedQuAD passage matches that question")
            return 1
        print(f"answered from: {best[0].question} ({best[0].focus})")
        for suggestion in finder.suggest(best[0], asked=args.question):
            print(f"  → {suggestion}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
