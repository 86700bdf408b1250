"""Emergency detection measured on the held-out rows of the labelled set: ``python -m gpt2chat.safety --eval``;
this module's ``main`` is the safety command (assess one message, or ``--eval``).

For the rules alone, the classifier alone, both (what the app runs) and both without the rules' veto: recall per
kind of emergency, the false-positive rate on non-emergencies (English messages; then Spanish, French,
conversations read with their earlier turns, and messages longer than the input limit), and whether the reply carries the right extra line
(988 for suicide, Poison Control for poisoning). Also the cross-validated choice of threshold on the training
rows, the latency of ``SafetyPolicy.assess`` per message, and how many real consumer health questions (MEDIQA
2019, evaluation only: messages sent to the NLM asking for information) are flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tabulate import tabulate

from gpt2chat import settings
from gpt2chat.guard.emergency import (
    SET_PATH,
    LabelledMessage,
    build_detector,
    choose_threshold,
    load_labelled_set,
    normalise,
    training_rows,
    written_ordinary_messages,
)
from gpt2chat.guard.emergency_rules import KINDS, rule_kinds
from gpt2chat.guard.safety import SafetyPolicy, check_input

_SHOWN_FLAGS = 10


def consumer_questions(folder: Path) -> list[str]:
    """MEDIQA 2019 consumer questions (QA task, and the RQE validation/test consumer side); [] when absent."""
    qa, rqe = folder / "mediqa2019_qa.jsonl", folder / "mediqa2019_rqe.jsonl"
    questions: dict[str, None] = {}
    if qa.is_file():
        rows = (json.loads(line) for line in qa.open(encoding="utf-8") if line.strip())
        questions.update((" ".join(row["question"].split()), None) for row in rows)
    if rqe.is_file():
        rows = (json.loads(line) for line in rqe.open(encoding="utf-8") if line.strip())
        questions.update((" ".join(row["chq"].split()), None) for row in rows if row["set"] != "train")  # train = clinicians' questions
    return list(questions)


def _percent(flags: list[bool]) -> str:
    return f"{100 * np.mean(flags):.1f}%" if flags else "-"


def detection_table(methods: dict[str, Callable[[LabelledMessage], bool]], held_out: list[LabelledMessage]) -> str:
    """Recall per kind (and overall) on emergencies, false-positive rate on the rest, one column per method."""
    flags = {name: [flagged(m) for m in held_out] for name, flagged in methods.items()}

    def row(label: str, chosen: list[int]) -> list[str]:
        return [label, len(chosen)] + [_percent([flags[name][i] for i in chosen]) for name in methods]

    rows = [row(f"recall: {kind}", [i for i, m in enumerate(held_out) if m.kind == kind]) for kind in KINDS]
    rows.append(row("recall: all emergencies", [i for i, m in enumerate(held_out) if m.is_emergency]))
    rows.append(row("false-positive rate", [i for i, m in enumerate(held_out) if not m.is_emergency]))
    return tabulate(rows, headers=["held-out", "n", *methods], tablefmt="github")


def group_table(policy, held_out: list[LabelledMessage]) -> str:
    """Recall and false-positive rate per group of held-out rows; for conversations also the last message alone
    (what the app judged before it read the earlier turns); whether Spanish and French replies carry the call-now
    line in that language."""
    from gpt2chat.guard.safety import _LOCAL_NUMBER

    groups = {
        "Spanish": [m for m in held_out if m.lang == "es" and not m.history],
        "French": [m for m in held_out if m.lang == "fr" and not m.history],
        "conversations": [m for m in held_out if m.history],
        f"longer than {LONG_CHARS:,} characters": [m for m in held_out if len(m.text) > LONG_CHARS],
    }
    rows = []
    for name, messages in groups.items():
        verdicts = [policy.emergency(m.text, m.history) for m in messages]
        alone = [policy.emergency(m.text) is not None for m in messages]
        urgent = [i for i, m in enumerate(messages) if m.is_emergency]
        calm = [i for i, m in enumerate(messages) if not m.is_emergency]
        local = [m.lang in _LOCAL_NUMBER and verdicts[i] is not None and _LOCAL_NUMBER[m.lang] in verdicts[i].reply
                 for i, m in enumerate(messages) if m.is_emergency and m.lang in _LOCAL_NUMBER]
        rows.append([name, len(urgent), _percent([verdicts[i] is not None for i in urgent]),
                     _percent([alone[i] for i in urgent]), len(calm),
                     _percent([verdicts[i] is not None for i in calm]), _percent([alone[i] for i in calm]),
                     f"{sum(local)}/{len(local)}" if local else "-"])
    return tabulate(rows, headers=["held-out", "emergencies", "recall", "recall, last message alone", "others",
                                   "false-positive rate", "FPR, last message alone", "call-now line in language"],
                    tablefmt="github")


LONG_CHARS = 2000


def latency_ms(assess: Callable[[str], object], texts: list[str], repeats: int) -> dict[str, tuple[float, float]]:
    """p50 and p95 milliseconds per call, wall clock and this thread's CPU time, after one warm-up call.

    CPU time is reported beside wall time because this project's shared 2-core machines often run at a load of 8+,
    which stretches wall time without any change in the work done."""
    assess("warm-up")
    wall, cpu = [], []
    for _ in range(repeats):
        for text in texts:
            start, start_cpu = time.perf_counter(), time.thread_time()
            assess(text)
            wall.append(1000 * (time.perf_counter() - start))
            cpu.append(1000 * (time.thread_time() - start_cpu))
    return {name: (float(np.percentile(t, 50)), float(np.percentile(t, 95))) for name, t in (("wall", wall), ("cpu", cpu))}


def run_evaluation(set_path: Path, *, consumer_qa: Path, repeats: int) -> str:
    """The whole report as text."""
    training = training_rows(set_path)
    held_out = [m for m in load_labelled_set(set_path) if m.split == "test"]
    if not training or not any(m.is_emergency for m in held_out) or all(m.is_emergency for m in held_out):
        raise ValueError(f"{set_path}: needs training rows and held-out rows of both classes")
    start = time.perf_counter()
    detector = build_detector(set_path)
    training_seconds = time.perf_counter() - start
    without_veto = build_detector(set_path, veto=False)
    choices = {veto: choose_threshold(training, veto=veto) for veto in (True, False)}

    lines = [
        f"Labelled set {set_path.name}: {len(training)} training rows (MedQuAD questions included), "
        f"{len(held_out)} held out "
        f"({sum(m.is_emergency for m in held_out)} emergencies, {sum(not m.is_emergency for m in held_out)} not). "
        f"Training the detector (its 5-fold cross-validated threshold included): {training_seconds:.1f} s.",
        "",
        "Threshold chosen on the training rows (5-fold out-of-fold probabilities, cost = 5 x missed + false alarms):",
    ]
    for veto, choice in choices.items():
        lines.append(f"  {'with' if veto else 'without'} the rules' veto: threshold {choice.threshold:.3f}, "
                     f"cost {choice.cost}, recall {100 * choice.recall:.1f}%, "
                     f"false-positive rate {100 * choice.false_positive_rate:.1f}%")
    policy = SafetyPolicy(detector)
    methods = {
        "rules": lambda m: bool(rule_kinds(normalise(m.text))),
        "classifier": lambda m: detector.classifier_kind(m.text) is not None,
        "rules + classifier (app)": lambda m: policy.emergency(m.text, m.history) is not None,
        "… without veto": lambda m: SafetyPolicy(without_veto).emergency(m.text, m.history) is not None,
    }
    english = [m for m in held_out if m.lang == "en" and not m.history]
    lines += ["", "English messages, one at a time:", "", detection_table(methods, english), "",
              "Spanish, French, conversations and long messages (what the app runs: SafetyPolicy.emergency on the "
              "message and the earlier turns):", "", group_table(policy, held_out), ""]

    needs_line = [m for m in held_out if m.kind in ("suicide", "poison")]
    right_line = [m.kind in detector.kinds(m.text) for m in needs_line]
    kind_right = [detector.classifier.kind(normalise(m.text)) == m.kind for m in held_out if m.is_emergency]
    lines.append(f"Right extra line (988 for suicide, Poison Control for poisoning): {sum(right_line)} of "
                 f"{len(needs_line)} held-out suicide/poisoning messages. Classifier's kind right on "
                 f"{sum(kind_right)} of {len(kind_right)} held-out emergencies.")

    timings = latency_ms(policy.assess, [m.text for m in held_out], repeats)
    lines.append("Latency of SafetyPolicy.assess per message, after the first call ("
                 + ", ".join(f"{name} p50 {p50:.2f} ms, p95 {p95:.2f} ms" for name, (p50, p95) in timings.items())
                 + f"; {repeats} passes over the held-out messages; load average {os.getloadavg()[0]:.1f}).")

    ordinary = written_ordinary_messages("test")
    blocked = [t for t in ordinary if policy.assess(t).blocks_answer]
    lines.append(f"Consumer messages written for the project, the half not trained on (ordinary questions, long "
                 f"stories) flagged as emergencies: {len(blocked)} of {len(ordinary)} "
                 f"({100 * len(blocked) / len(ordinary):.1f}%).")
    questions = consumer_questions(consumer_qa)
    if not questions:
        lines.append(f"Consumer questions: none found in {consumer_qa} (skipped).")
        return "\n".join(lines)
    flagged = [q for q in questions if policy.assess(q).blocks_answer]
    lines.append(f"Real consumer questions (MEDIQA 2019, {consumer_qa}) flagged as emergencies: {len(flagged)} of "
                 f"{len(questions)} ({100 * len(flagged) / len(questions):.1f}%); read them, as a flag there "
                 "is a false alarm unless the message describes an emergency:")
    lines += [f"  - {q[:150]}" for q in flagged[:_SHOWN_FLAGS]]
    if len(flagged) > _SHOWN_FLAGS:
        lines.append(f"  … and {len(flagged) - _SHOWN_FLAGS} more")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The safety command: assess one message, or (--eval) measure emergency detection."""
    parser = argparse.ArgumentParser(
        prog="python -m gpt2chat.safety",
        description="Assess one message, or (--eval) measure emergency detection on the held-out labelled messages.",
    )
    parser.add_argument("message", nargs="?", help="a message to assess: prints the category and reply")
    parser.add_argument("--eval", action="store_true",
                        help="recall per kind and false-positive rate on the held-out split, for the rules alone, "
                             "the classifier alone and both; the reply's extra lines; latency per message")
    parser.add_argument("--set", type=Path, default=SET_PATH, help="labelled set for --eval (jsonl: text, kind, split)")
    parser.add_argument("--consumer-qa", type=Path, default=settings.consumer_qa_dir(),
                        help="MEDIQA 2019 folder whose real consumer questions (not emergencies) give a flag rate; "
                             "skipped when missing")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the held-out messages when timing")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.eval:
        print(run_evaluation(args.set, consumer_qa=args.consumer_qa, repeats=args.repeats))
        return 0
    if not args.message:
        parser.print_help()
        return 0
    text, problem = check_input(args.message)
    if problem:
        print(f"input problem ({problem.code}): {problem.reply}")
        return 1
    verdict = SafetyPolicy(build_detector()).assess(text)
    print(f"category: {verdict.category or 'none (answered)'}")
    if verdict.reply:
        print(verdict.reply)
    return 0

