"""Scores the PII masker on the labelled evaluation set, beside Presidio's defaults.

Usage::

    python -m gpt2chat.masking --eval              # P/R/F1 per type, medical false positives, latency
    python -m gpt2chat.masking_eval                # the same report
    python -m gpt2chat.masking "My email is jane@example.com"   # one message's masked text (this module's main)

The set (``resources/pii_eval.jsonl``) holds one sentence a line with its gold spans,
``{"text": ..., "entities": [{"type", "start", "end"}]}``; sentences without entities are medical negatives
(eponyms, drug names, doses, gene and staging codes) that must come back unmasked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Callable

from presidio_analyzer import AnalyzerEngine

from gpt2chat import settings
from gpt2chat.guard.masking import (
    ENTITY_TYPES,
    PRESIDIO_TO_OURS,
    Finding,
    MaskerConfig,
    OfflineEmailRecognizer,
    PIIMasker,
    nlp_engine,
    resolve_overlaps,
)

EVAL_SET = settings.PACKAGE_DIR / "resources" / "pii_eval.jsonl"

# Presidio's stock types credited to ours in the baseline comparison: a DATE_TIME over a birth date or a
# LOCATION over an address counts as a hit; everything else it masks under another name is a false positive.
_BASELINE_TO_OURS = {
    **PRESIDIO_TO_OURS, "DATE_TIME": "DATE_OF_BIRTH", "LOCATION": "ADDRESS",
    "US_DRIVER_LICENSE": "DRIVERS_LICENSE", "US_PASSPORT": "PASSPORT",
}


@dataclasses.dataclass
class EvalReport:
    counts: dict[str, list[int]]  # type -> [true positives, false positives, false negatives]
    any_type_hits: int  # gold spans covered by some finding, whatever its type
    gold_total: int
    negative_sentences: int
    negative_findings: int  # findings on sentences with no PII: medical terms wrongly masked
    latencies_ms: list[float]

    def prf(self, entity_type: str | None = None) -> tuple[float, float, float]:
        rows = [self.counts[entity_type]] if entity_type else list(self.counts.values())
        tp, fp, fn = (sum(r[i] for r in rows) for i in range(3))
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1


def load_eval_set(path: Path = EVAL_SET) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def evaluate(analyze: Callable[[str], list[Finding]], rows: list[dict]) -> EvalReport:
    """Span-level scoring: a finding matches a gold entity of the same type whose span overlaps it by at least
    one character; each gold entity and each finding is matched at most once."""
    counts: dict[str, list[int]] = {}
    any_hits = gold_total = negatives = negative_findings = 0
    latencies = []
    for row in rows:
        began = time.perf_counter()
        found = analyze(row["text"])
        latencies.append((time.perf_counter() - began) * 1000)
        gold = row["entities"]
        gold_total += len(gold)
        if not gold:
            negatives += 1
            negative_findings += len(found)
        matched: set[int] = set()
        for f in found:
            hit = next((i for i, g in enumerate(gold) if i not in matched and g["type"] == f.entity_type
                        and f.start < g["end"] and g["start"] < f.end), None)
            row_counts = counts.setdefault(f.entity_type, [0, 0, 0])
            if hit is None:
                row_counts[1] += 1
            else:
                matched.add(hit)
                row_counts[0] += 1
        for i, g in enumerate(gold):
            if i not in matched:
                counts.setdefault(g["type"], [0, 0, 0])[2] += 1
            if any(f.start < g["end"] and g["start"] < f.end for f in found):
                any_hits += 1
    return EvalReport(counts, any_hits, gold_total, negatives, negative_findings, latencies)


def presidio_defaults_analyzer(config: MaskerConfig = MaskerConfig()) -> Callable[[str], list[Finding]]:
    """Presidio out of the box for comparison: every default recognizer, en_core_web_sm, default thresholds.

    Only the e-mail validator is swapped for the offline one, which returns the same answers without a network.
    """
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)  # "entity CARDINAL is not mapped" per call
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine(config, person_only=False), supported_languages=["en"])
    analyzer.registry.remove_recognizer("EmailRecognizer")
    analyzer.registry.add_recognizer(OfflineEmailRecognizer())

    def analyze(text: str) -> list[Finding]:
        results = resolve_overlaps(analyzer.analyze(text, language="en"))
        return [Finding(_BASELINE_TO_OURS.get(r.entity_type, r.entity_type), r.start, r.end, r.score)
                for r in results]

    return analyze


def format_report(title: str, report: EvalReport) -> str:
    lines = [title, f"{'type':<16}{'P':>7}{'R':>7}{'F1':>7}{'TP':>5}{'FP':>5}{'FN':>5}"]
    ordered = [t for t in ENTITY_TYPES if t in report.counts] + sorted(set(report.counts) - set(ENTITY_TYPES))
    for entity_type in ordered:
        p, r, f = report.prf(entity_type)
        tp, fp, fn = report.counts[entity_type]
        if tp + fn:
            lines.append(f"{entity_type:<16}{p:>7.3f}{r:>7.3f}{f:>7.3f}{tp:>5}{fp:>5}{fn:>5}")
        else:  # a type the set has no examples of: only false positives
            lines.append(f"{entity_type:<16}{'-':>7}{'-':>7}{'-':>7}{tp:>5}{fp:>5}{fn:>5}")
    p, r, f = report.prf()
    lines.append(f"{'micro (all)':<16}{p:>7.3f}{r:>7.3f}{f:>7.3f}")
    lines.append(f"gold spans masked under any type: {report.any_type_hits}/{report.gold_total} "
                 f"({report.any_type_hits / max(report.gold_total, 1):.3f})")
    lines.append(f"medical terms wrongly masked on {report.negative_sentences} negative sentences: "
                 f"{report.negative_findings}")
    lat = sorted(report.latencies_ms)
    p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
    lines.append(f"latency per message: p50 {statistics.median(lat):.1f} ms, p95 {p95:.1f} ms")
    return "\n".join(lines)


def run_eval(path: Path = EVAL_SET) -> str:
    rows = load_eval_set(path)
    masker = PIIMasker()
    baseline = presidio_defaults_analyzer()
    for analyze in (masker.analyze, baseline):
        analyze(rows[0]["text"])  # warm-up: first-call lazy loading is not per-message latency
    header = (f"{len(rows)} sentences, {sum(len(r['entities']) for r in rows)} gold entities ({path.name}); "
              "match = same type and overlapping span")
    return "\n\n".join([
        header,
        format_report("gpt2chat.guard.masking", evaluate(masker.analyze, rows)),
        format_report("Presidio defaults (all default recognizers + en_core_web_sm, types mapped to ours)",
                      evaluate(baseline, rows)),
    ])


def main(argv: list[str] | None = None) -> int:
    """The masking command: mask one message, or (--eval) score the masker."""
    parser = argparse.ArgumentParser(
        prog="python -m gpt2chat.masking", description="Mask the PII of a message, or score the masker (--eval).",
        epilog="Example: python -m gpt2chat.masking \"I'm Jane Doe, born on 04/02/1961, with Crohn's disease\"",
    )
    parser.add_argument("text", nargs="?", help="a message to mask")
    parser.add_argument("--eval", action="store_true",
                        help="score the masker and Presidio's defaults on resources/pii_eval.jsonl "
                             "(the same as python -m gpt2chat.masking_eval)")
    parser.add_argument("--eval-file", type=Path, help="JSONL evaluation set (with --eval; default: %s)" % EVAL_SET.name)
    args = parser.parse_args(argv)
    if not args.eval:
        if args.text is None or args.eval_file is not None:
            parser.error("give a text to mask, or --eval [--eval-file FILE]")
        result = PIIMasker().mask(args.text)
        print(result.text)
        print(result.summary() + (" (truncated)" if result.truncated else ""))
        return 0
    eval_file = args.eval_file or EVAL_SET
    try:
        rows_text = run_eval(eval_file)
    except (OSError, ValueError, KeyError, TypeError) as error:
        # JSON errors name a line and column, never the sentence itself.
        parser.exit(2, f"{parser.prog}: error: cannot read {eval_file}: {type(error).__name__}: {error}\n")
    print(rows_text)
    return 0
