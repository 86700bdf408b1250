"""Write gpt2chat/resources/emergency_medquad_questions.txt: informational questions for the emergency detector.

    .venv/bin/python scripts/emergency_medquad_questions.py [--per-type 25] [--data DIR]

MedQuAD's questions are exactly what the detector must let through: questions about conditions, many of them
rare names it has never seen ("Is neuropathy, ataxia, and retinitis pigmentosa inherited ?" was flagged as a
seizure at 0.73). This samples, with a fixed seed, up to ``--per-type`` questions of each MedQuAD question type
from the TRAIN split only (gpt2chat.corpus.splits), so no validation or test disease is involved. The detector's
hand-written held-out rows are in resources/emergency_set.jsonl and are untouched; the MedQuAD question among
tests/test_safety.py's regression messages is left out of the sample, so the tests check messages the detector
never saw.
"""

from __future__ import annotations

import argparse
import collections
import random
import sys

from gpt2chat.guard.emergency import MEDQUAD_QUESTIONS_PATH

# Kept out of the sample: tests/test_safety.py asks the detector about them.
REGRESSION_MESSAGES = frozenset({"Is neuropathy, ataxia, and retinitis pigmentosa inherited ?"})


def sample_questions(records, per_type: int, seed: int = 0) -> list[str]:
    from gpt2chat.corpus.splits import split_of

    by_type: dict[str, list[str]] = collections.defaultdict(list)
    for record in records:
        question = " ".join(record.question.split())
        if split_of(record) == "train" and question not in REGRESSION_MESSAGES:
            by_type[record.question_type].append(question)
    rng = random.Random(seed)
    chosen = []
    for question_type in sorted(by_type):
        unique = sorted(set(by_type[question_type]))
        chosen += rng.sample(unique, min(per_type, len(unique)))
    return sorted(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/emergency_medquad_questions.py", description=__doc__.split("\n")[0])
    parser.add_argument("--per-type", type=int, default=25, help="questions per MedQuAD question type (default: 25)")
    parser.add_argument("--data", help="MedQuAD directory (default: ../shared/medquad or $GPT2CHAT_MEDQUAD)")
    args = parser.parse_args(argv)
    if args.per_type < 1:
        parser.error("--per-type must be at least 1")
    from gpt2chat.corpus.data import MedQuADNotFound, load_records

    try:
        records, _ = load_records(args.data, progress=True)
    except MedQuADNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    questions = sample_questions(records, args.per_type)
    header = ["# MedQuAD train-split questions: non-emergencies for the emergency detector's training only.",
              f"# Made by: python scripts/emergency_medquad_questions.py --per-type {args.per_type}"]
    MEDQUAD_QUESTIONS_PATH.write_text("\n".join(header + questions) + "\n", encoding="utf-8")
    print(f"{len(questions)} questions written to {MEDQUAD_QUESTIONS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
