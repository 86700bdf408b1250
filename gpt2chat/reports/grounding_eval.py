"""Calibration of the grounding checks on MedQuAD: ``python -m gpt2chat.grounding --calibrate`` (this module's
``main``).

Support check. Every example is (sentence, passage), the passage being a MedQuAD answer:

* supported: a sentence of the passage (``copy``), a contiguous span of at least 6 words and half of one
  (``compressed``: what an extractive, condensing model writes), or such a span of at least 8 words with one or
  two words other than a negation left out (``edited``);
* unsupported: a sentence of another focus's answer to the same question type that the passage does not contain
  (``other focus``), a sentence of the passage with the focus name swapped for another focus's (``entity swap``,
  one of FactCC's transformations, Kryscinski et al. 2020), and word salad made of the passage's own words: a
  passage sentence shuffled (``shuffled``), words drawn from the passage (``salad``, what the quick-start model
  writes), or two or three spans of 2-4 words from random places of the passage joined (``spliced``, what a
  softly copy-biased model writes: "The signs and symptoms of the liver.").

Thresholds are chosen on the validation split's foci (highest recall on supported sentences with precision at
least ``--precision`` against the unsupported ones, the classes balanced) and reported on the test split's foci.
FactCC's negation insertion is reported too, as a known limit of token-overlap checks (not used for the choice).

Degenerate answers: the repetition, unknown-word and unseen-bigram thresholds are set so that at most
``--false-positive`` of the validation answers (cut like a reference passage) are flagged, against a vocabulary of
the train split's answers; reported on the test split with the share of shuffled answers flagged.

Extract: on questions whose focus has several answers, the passages are all of them in a random order; the
question-focused extract is compared with lead-3 of the first passage (ROUGE-L against the gold answer, and the
share of extract sentences taken from the gold passage): its weights swept on the validation split, the default
reported on the test split.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
import re
from collections import defaultdict

import numpy as np

from gpt2chat.chat import grounding
from gpt2chat.corpus.data import focus_key
from gpt2chat.reports.metrics import rouge_scores

PASSAGE_CHARS = 2000  # long answers are cut at a sentence, as cited passages are
KP_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
COVERAGE_GRID = tuple(np.round(np.arange(0.5, 1.001, 0.05), 2))
DENSITY_GRID = tuple(np.arange(1.0, 10.01, 0.5))
SUPPORTED_KINDS = ("copy", "compressed", "edited")
UNSUPPORTED_KINDS = ("other focus", "entity swap", "shuffled", "salad", "spliced")


def _cut(text: str, limit: int = PASSAGE_CHARS) -> str:
    kept, used = [], 0
    for sentence in grounding.split_sentences(text):
        if used + len(sentence) > limit and kept:
            break
        kept.append(sentence)
        used += len(sentence) + 1
    return " ".join(kept)


def _sentence(words: list[str]) -> str:
    text = " ".join(words)
    return text[:1].upper() + text[1:] + "."


def build_examples(records, rng: random.Random, per_record: int = 1) -> list[tuple[str, str, str]]:
    """(kind, sentence, passage) examples from one split's records (see the module docstring)."""
    by_type = defaultdict(list)
    for record in records:
        by_type[record.question_type].append(record)
    foci = sorted({r.focus for r in records if r.focus})
    examples = []
    for record in records:
        passage = _cut(record.answer)
        sentences = [s for s in grounding.split_sentences(passage) if len(s.split()) >= 6 and not s.endswith("?")]
        if not sentences:
            continue
        lowered = " ".join(grounding.words(passage))
        for _ in range(per_record):
            sentence = rng.choice(sentences)
            tokens = sentence.rstrip(".!?").split()
            examples.append(("copy", sentence, passage))
            width = rng.randint(max(6, (len(tokens) + 1) // 2), len(tokens))
            start = rng.randint(0, len(tokens) - width)
            examples.append(("compressed", _sentence(tokens[start: start + width]), passage))
            if width >= 8:
                span = tokens[start: start + width]
                droppable = [i for i in range(1, width - 1) if span[i].lower() not in grounding.NEGATIONS]
                dropped = set(rng.sample(droppable, min(len(droppable), rng.randint(1, 2))))
                examples.append(("edited", _sentence([w for i, w in enumerate(span) if i not in dropped]), passage))
            shuffled = tokens[:]
            rng.shuffle(shuffled)
            examples.append(("shuffled", _sentence(shuffled), passage))
            pool = grounding.words(passage)
            examples.append(("salad", _sentence(rng.choices(pool, k=len(tokens))), passage))
            spans = []
            for _ in range(rng.randint(2, 3)):
                width = rng.randint(2, 4)
                start = rng.randrange(max(len(pool) - width, 1))
                spans.extend(pool[start: start + width])
            examples.append(("spliced", _sentence(spans), passage))
            others = [r for r in by_type[record.question_type] if focus_key(r.focus) != focus_key(record.focus)]
            if others:
                other = [s for s in grounding.split_sentences(rng.choice(others).answer)
                         if len(s.split()) >= 6 and " ".join(grounding.words(s)) not in lowered]
                if other:
                    examples.append(("other focus", rng.choice(other), passage))
            name = record.focus
            mentions = [s for s in sentences if name and re.search(re.escape(name), s, re.IGNORECASE)]
            if mentions and len(foci) > 1:
                swap = rng.choice([f for f in foci if focus_key(f) != focus_key(name)])
                swapped = re.sub(re.escape(name), swap, rng.choice(mentions), flags=re.IGNORECASE)
                examples.append(("entity swap", swapped, passage))
            verb = re.search(r"\b(is|are|can|may|does|do|will|has|have)\b", sentence)
            if verb and " not " not in sentence:
                negated = sentence[: verb.end()] + " not" + sentence[verb.end():]
                examples.append(("negation", negated, passage))
    return examples


def features(examples, progress: bool = False) -> np.ndarray:
    """(K-Precision, coverage, density, content words) of each example's sentence against its passage."""
    from tqdm.auto import tqdm

    rows = []
    for _, sentence, passage in tqdm(examples, desc="support features", disable=not progress):
        tokens, passage_tokens = grounding.words(sentence), grounding.words(passage)
        lengths = grounding.fragments(tokens, passage_tokens)
        rows.append((
            grounding.k_precision(tokens, passage_tokens),
            sum(lengths) / max(len(tokens), 1),
            sum(n * n for n in lengths) / max(len(tokens), 1),
            len(grounding.content_words(tokens)),
        ))
    return np.asarray(rows, dtype=np.float64)


def accepted(x: np.ndarray, t: grounding.SupportThresholds) -> np.ndarray:
    return (x[:, 0] >= t.k_precision) & (x[:, 1] >= t.coverage) & (x[:, 2] >= t.density) & (
        x[:, 3] >= t.min_content_words)


def choose_thresholds(kinds: np.ndarray, x: np.ndarray, min_precision: float) -> grounding.SupportThresholds:
    """Highest recall with precision >= ``min_precision`` on a class-balanced set; ties go to the higher
    precision, then to the stricter thresholds."""
    positive = np.isin(kinds, SUPPORTED_KINDS)
    negative = np.isin(kinds, UNSUPPORTED_KINDS)
    weight = positive.sum() / max(negative.sum(), 1)  # balance the classes
    best, best_key = None, None
    for kp, cov, dens in itertools.product(KP_GRID, COVERAGE_GRID, DENSITY_GRID):
        t = grounding.SupportThresholds(float(kp), float(cov), float(dens))
        ok = accepted(x, t)
        true, false = (ok & positive).sum(), (ok & negative).sum() * weight
        precision = true / (true + false) if true + false else 0.0
        recall = true / positive.sum()
        key = (precision >= min_precision, recall, precision, kp + cov + dens / 10)
        if best_key is None or key > best_key:
            best, best_key = t, key
    return best


def support_report(kinds: np.ndarray, x: np.ndarray, t: grounding.SupportThresholds) -> dict:
    ok = accepted(x, t)
    positive, negative = np.isin(kinds, SUPPORTED_KINDS), np.isin(kinds, UNSUPPORTED_KINDS)
    weight = positive.sum() / max(negative.sum(), 1)
    true, false = (ok & positive).sum(), (ok & negative).sum() * weight
    return {
        "precision": float(true / (true + false)) if true + false else 0.0,
        "recall": float(true / positive.sum()),
        "accepted": {k: (float(ok[kinds == k].mean()), int((kinds == k).sum())) for k in sorted(set(kinds))},
    }


def degeneracy_scores(texts, vocabulary: grounding.Vocabulary) -> np.ndarray:
    rows = []
    for text in texts:
        tokens = grounding.words(text)
        rows.append((grounding.repetition_rate(tokens), vocabulary.unknown_word_rate(tokens),
                     vocabulary.unseen_bigram_rate(tokens)))
    return np.asarray(rows)


def extract_report(records, rng: random.Random, limit: int, configs: dict,
                   asks=lambda question: True) -> dict[str, tuple[float, float]]:
    """{name: (ROUGE-L against the gold answer, share of sentences from the gold passage)} for lead-3 of the first
    passage and for the extract with each of ``configs``, on questions whose focus has several answers (and that
    ``asks`` accepts), with all of them as passages in a random order."""
    by_focus = defaultdict(list)
    for record in records:
        by_focus[focus_key(record.focus)].append(record)
    cases = [r for r in records if len(by_focus[focus_key(r.focus)]) > 1 and asks(r.question)]
    cases = rng.sample(cases, min(limit, len(cases)))
    orders = []
    for record in cases:
        passages = [r.answer for r in by_focus[focus_key(record.focus)]]
        rng.shuffle(passages)
        orders.append((passages, passages.index(record.answer)))
    golds = [r.answer for r in cases]
    report = {"lead-3": (rouge_scores([grounding.lead_k(p[0], 3) for p, _ in orders], golds)["rougeL"],
                         float(np.mean([g == 0 for _, g in orders])))}
    for name, config in configs.items():
        texts, shares = [], []
        for record, (passages, gold_index) in zip(cases, orders):
            extract = grounding.extractive_answer(record.question, passages, config=config)
            texts.append(extract.text)
            shares.append(np.mean([p == gold_index for p, _ in extract.sentences]) if extract.sentences else 0.0)
        report[name] = (rouge_scores(texts, golds)["rougeL"], float(np.mean(shares)))
    return report


def calibrate(data: str | None, *, limit: int, min_precision: float, false_positive: float, seed: int) -> str:
    """Run every calibration; returns the report as Markdown-ish text."""
    from gpt2chat.corpus.data import load_records
    from gpt2chat.corpus.splits import split_records

    records, _ = load_records(data, progress=True)
    splits = split_records(records)
    rng = random.Random(seed)
    lines = []
    sets = {}
    for split in ("validation", "test"):
        chosen = rng.sample(splits[split], min(limit, len(splits[split])))
        examples = build_examples(chosen, rng)
        sets[split] = (np.asarray([k for k, _, _ in examples]), features(examples, progress=True))
    thresholds = choose_thresholds(*sets["validation"], min_precision)
    lines.append(f"Support check: chosen on {len(sets['validation'][0])} validation examples "
                 f"(precision >= {min_precision:.2f}, classes balanced): {thresholds}")
    for split in ("validation", "test"):
        report = support_report(*sets[split], thresholds)
        lines.append(f"  {split}: precision {report['precision']:.3f}, recall {report['recall']:.3f}")
        for kind, (rate, count) in report["accepted"].items():
            lines.append(f"    accepted as supported: {kind:<12} {100 * rate:5.1f}% of {count}")
    vocabulary = grounding.Vocabulary.from_texts(r.answer for r in splits["train"])
    cut = [_cut(r.answer, 600) for r in splits["validation"]]
    scores = degeneracy_scores(cut, vocabulary)
    quantile = np.quantile(scores, 1 - false_positive, axis=0)
    degenerate = grounding.DegeneracyThresholds(
        repetition=float(np.round(max(quantile[0], 0.05), 3)), unknown_words=float(np.round(quantile[1], 3)),
        unseen_bigrams=float(np.round(quantile[2], 3)))
    lines.append(f"\nDegenerate answers: thresholds at the {100 * (1 - false_positive):.1f}th percentile of "
                 f"{len(cut)} validation answers (vocabulary: {len(vocabulary.words)} words of the train split): "
                 f"{degenerate}")
    test_cut = [_cut(r.answer, 600) for r in splits["test"]]
    shuffled = []
    for text in test_cut:
        tokens = text.split()
        rng.shuffle(tokens)
        shuffled.append(" ".join(tokens))
    for label, texts in (("test answers", test_cut), ("shuffled test answers", shuffled)):
        flagged = [grounding.is_degenerate(t, vocabulary, degenerate) for t in texts]
        reasons = defaultdict(int)
        for f in flagged:
            if f:
                reasons[f.reason] += 1
        lines.append(f"  {label}: {100 * np.mean([bool(f) for f in flagged]):.1f}% of {len(texts)} flagged "
                     f"{dict(reasons)}")
    default = grounding.ExtractConfig()
    sweep = {f"cues {c:g}, rank prior {r:g}": grounding.ExtractConfig(cue_weight=c, rank_weight=r)
             for c in (0.0, 0.5, 1.0, 1.5, 2.0) for r in (0.0, default.rank_weight)}
    for split, configs in (("validation", sweep), ("test", {"extract (default)": default})):
        lines.append(f"\nExtract on {split} questions with all their focus's answers as passages, shuffled "
                     f"(ROUGE-L against the gold answer; share of sentences from the gold passage):")
        for name, (rouge, share) in extract_report(splits[split], rng, limit, configs).items():
            lines.append(f"  {name:<26} ROUGE-L {rouge:5.1f}   gold-passage sentences {100 * share:3.0f}%")
    leads = {f"lead prior {w:g}": dataclasses.replace(default, lead_weight=w) for w in (0.0, 0.2, 0.5, 1.0)}
    for split, configs in (("validation", leads), ("test", {"lead prior 0": leads["lead prior 0"],
                                                            "extract (default)": default})):
        lines.append(f"\nLead prior on {split} questions without a type cue (what a thing is): as above, and the share "
                     "whose best sentence of the gold passage alone is its lead (a model answer's opener):")
        asks_what_it_is = lambda question: not grounding.has_type_cue(question)  # noqa: E731
        cueless = [r for r in splits[split] if asks_what_it_is(r.question)]
        for name, (rouge, share) in extract_report(splits[split], rng, limit, configs, asks_what_it_is).items():
            opens = (f"   opens with the lead {100 * lead_opens(cueless, configs[name]):3.0f}%"
                     if name in configs else "")
            lines.append(f"  {name:<26} ROUGE-L {rouge:5.1f}   gold-passage sentences {100 * share:3.0f}%{opens}")
    return "\n".join(lines)


def lead_opens(records, config) -> float:
    """Share of ``records`` whose question-focused best sentence of their own answer is its first."""
    picks = [grounding.extractive_answer(r.question, [r.answer], max_sentences=1, config=config).sentences
             for r in records]
    return float(np.mean([bool(p) and p[0][1] == 0 for p in picks])) if picks else 0.0


def main(argv: list[str] | None = None) -> int:
    """The grounding command: --calibrate the checks and print the report."""
    parser = argparse.ArgumentParser(
        prog="python -m gpt2chat.grounding",
        description="Calibrate and report the grounding checks on MedQuAD.")
    parser.add_argument("--calibrate", action="store_true", required=True,
                        help="measure the support check, the degenerate-answer test and the extract; print thresholds")
    parser.add_argument("--data", help="MedQuAD directory (default: $GPT2CHAT_MEDQUAD or ../shared/medquad)")
    parser.add_argument("--limit", type=int, default=400, help="answers sampled per split (default: 400)")
    parser.add_argument("--precision", type=float, default=0.99,
                        help="minimum precision of the support check when choosing thresholds (default: 0.99)")
    parser.add_argument("--false-positive", type=float, default=0.005,
                        help="share of real answers the degenerate test may flag (default: 0.005)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.limit < 1 or not 0 < args.precision <= 1 or not 0 <= args.false_positive < 1:
        parser.error("--limit must be >= 1, --precision in (0, 1], --false-positive in [0, 1)")
    print(calibrate(args.data, limit=args.limit, min_precision=args.precision,
                    false_positive=args.false_positive, seed=args.seed))
    return 0

