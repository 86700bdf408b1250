"""Retrieval evaluations, run through ``python -m gpt2chat.retrieval --eval WHAT`` (this module's ``main`` is the
retrieval command):

* ``medquad``   build the index from scratch (timed) and measure top-1/top-5 focus accuracy on the MedQuAD test
                split's questions, by plain BM25 (``search``) and by the full pipeline (``retrieve``), with each
                question's own pair in the index and held out.
* ``consumer``  headline first: the LiveQA 2017 ``dev`` messages (``liveqa2017_train.jsonl``, evaluation only):
                focus found (the first cited page's focus, or one of its MedQuAD ``<Synonym>``s, is an annotated
                focus) on the messages whose annotated focus is an answered MedQuAD focus or synonym (64 of 138),
                type found on every annotated sub-question, no-answer rate; and the MEDIQA 2019 questions with a
                judged-correct MedQuAD page once pages are resolved across site moves (94): cited page on a
                judged-correct focus. Then the details on the MEDIQA 2019 consumer questions: page-level hit@1,
                hit@5 and MRR against judged-correct answers (score >= 3) for the 76 questions with such an answer
                on a MedQuAD page, per subset, and focus@1 (the first passage is about the focus of a judged-correct
                page, whichever site); how often a cited page was judged incorrect (score 1). Once more with pages
                resolved across site moves (``resolved_page``): 94 questions then have a judged-correct MedQuAD page.
* ``types``     question types on consumer messages: LiveQA ``train`` 4-fold cross-validated (the type classifier
                learns from ``train``, so each fold is measured with a classifier built without it), ``dev``, and
                the written check messages (never learnt from) per type.
* ``foci``      which recognised focus a consumer message is about: LiveQA ``train`` 4-fold cross-validated (the
                focus salience learns from ``train``): the most salient focus, and the first cited page's focus.
* ``rqe``       accuracy of the question-entailment model on the RQE validation and test splits.
* ``followups`` our own two- and three-turn conversations (gpt2chat/resources/followup_conversations.jsonl): follow-ups
                that must keep the focus, new topics and off-topic requests that must not inherit it; the cited
                page's focus and type.
* ``lay``       our own lay messages (gpt2chat/resources/lay_questions.jsonl): symptoms in everyday words, everyday
                names, descriptions; first cited page about an expected focus, no-answer count, asked type.
* ``written``   the consumer messages written for the project (gpt2chat/resources/written_consumer_messages.jsonl,
                docs/written_messages.md): first cited page on the writer's focus, odd and even halves apart, and
                on the written check messages (written_check_messages.jsonl), which no change was tried on.
* ``latency``   ``retrieve`` p50/p95 over every question above, one at a time.

Pages are compared after normalising URLs (lower case, no scheme, no trailing slash); hit@5 and MRR count the
first five (ten) distinct pages of the ranked passages.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from gpt2chat import settings
from gpt2chat.corpus import data
from gpt2chat.corpus.data import QAPair, focus_key, name_key, synonym_sets
from gpt2chat.search import entailment
from gpt2chat.search.entailment import rqe_pairs
from gpt2chat.search.question_types import TypeClassifier, consumer_type_rows, medquad_type, written_messages
from gpt2chat.search.retrieval import RetrievalIndex
from gpt2chat.search.salience import FocusSalience, labelled_messages
from gpt2chat.corpus.consumer import WRITTEN_CHECK_MESSAGES, message_text

QA_FILE = "mediqa2019_qa.jsonl"
CONVERSATIONS = settings.PACKAGE_DIR / "resources" / "followup_conversations.jsonl"
# Our own lay messages with the foci that answer them, written by a helper who did not see the system's answers.
LAY_QUESTIONS = settings.PACKAGE_DIR / "resources" / "lay_questions.jsonl"


def _percent(hits: int, total: int) -> str:
    return f"{100 * hits / total:5.1f}%" if total else "  n/a"


def normalise_url(url: str) -> str:
    return re.sub(r"^https?://", "", url.strip().lower()).rstrip("/")


# Sites reorganised since MedQuAD was crawled; the MEDIQA judges saw the new addresses of some of the same pages.
# GARD keeps its numeric ids (/gard/8173/achondroplasia -> /diseases/8173/achondroplasia); NINDS renamed its pages
# (/disorders/multiple_sclerosis/multiple_sclerosis.htm -> /disorders/all-disorders/multiple-sclerosis-information-page).
_MOVED_PAGES = (
    (re.compile(r"rarediseases\.info\.nih\.gov/(?:gard|diseases)/(\d+)"), "gard:"),
    (re.compile(r"www\.ninds\.nih\.gov/disorders/all-disorders/(.+)-information-page$"), "ninds:"),
    (re.compile(r"www\.ninds\.nih\.gov/disorders/([^/]+)/[^/]+\.htm$"), "ninds:"),
)


def resolved_page(url: str) -> str:
    """The page behind ``url`` across the site moves above (the README's normalised URL otherwise)."""
    page = normalise_url(url)
    for pattern, prefix in _MOVED_PAGES:
        match = pattern.match(page)
        if match:
            return prefix + re.sub(r"[^a-z0-9]", "", match.group(1))
    return page


def _pages(passages, page_of=normalise_url) -> list[str]:
    pages = []
    for passage in passages:
        page = page_of(passage.url)
        if page not in pages:
            pages.append(page)
    return pages


def evaluate_medquad(index: RetrievalIndex, queries: Sequence[QAPair], full_pipeline: bool) -> dict:
    """Focus accuracy of each query's top results, with its own pair in the index and with it held out."""
    exact = {"top1": 0, "top5": 0}
    held_out = {"top1": 0, "top5": 0}
    latencies = []
    for record in queries:
        started = time.perf_counter()
        # retrieve's own ranking, not one passage per page: a page holds the other pairs of the same focus
        results = ([p for q in index.retrieve(record.question, k=6).questions for p in q.passages] if full_pipeline
                   else index.search(record.question, k=6))
        latencies.append((time.perf_counter() - started) * 1000)
        focus = focus_key(record.focus)
        others = [p for p in results if p.pair_id != record.pair_id]
        for counts, ranked in ((exact, results[:5]), (held_out, others[:5])):
            foci = [focus_key(p.focus) for p in ranked]
            counts["top1"] += bool(foci) and foci[0] == focus
            counts["top5"] += focus in foci
    return {"n": len(queries), "exact": exact, "held_out": held_out, **_latency(latencies)}


def _latency(milliseconds: list[float]) -> dict:
    return {"p50_ms": float(np.percentile(milliseconds, 50)) if milliseconds else 0.0,
            "p95_ms": float(np.percentile(milliseconds, 95)) if milliseconds else 0.0}


def run_medquad(data_dir: str | None, limit: int | None) -> int:
    from gpt2chat.corpus.splits import split_records

    started = time.perf_counter()
    records, _ = data.load_records(data_dir, progress=True)
    annotations = data.load_annotations(data_dir)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    index = RetrievalIndex.build(records, progress=True, annotations=annotations)
    build_s = time.perf_counter() - started
    queries = split_records(records)["test"][:limit]
    # A query whose focus has no other pair cannot be a held-out hit: the ceiling for that row.
    focus_counts = collections.Counter(focus_key(r.focus) for r in records)
    reachable = sum(focus_counts[focus_key(q.focus)] > 1 for q in queries)
    print(f"Knowledge base: all {len(index)} answered MedQuAD pairs (every split). The index IS the knowledge base,")
    print("so each test question's own pair is in it; the 'held out' rows remove that pair from the results and")
    print("count a hit only if another pair with the same focus is found.")
    print(f"Queries: {len(queries)} MedQuAD test-split questions (focus match, case-insensitive)\n")
    print(f"{'':<38}{'top-1':>8}{'top-5':>8}{'p50 ms':>9}{'p95 ms':>9}")
    for name, full in (("search (BM25)", False), ("retrieve (understanding+rerank)", True)):
        result = evaluate_medquad(index, queries, full)
        n = result["n"]
        for label, counts in (("own pair in index", result["exact"]), ("own pair held out", result["held_out"])):
            print(f"{name + ', ' + label:<38}{_percent(counts['top1'], n):>8}{_percent(counts['top5'], n):>8}"
                  f"{result['p50_ms']:>9.2f}{result['p95_ms']:>9.2f}")
    print(f"(held-out ceiling: {_percent(reachable, len(queries)).strip()} of test questions have another pair "
          "with their focus)")
    print(f"\nQuery latency p50/p95 above: single queries, CPU")
    print(f"Index build: {build_s:.1f} s for {len(index)} pairs, learned parts included "
          f"(plus {read_s:.1f} s reading the XML)")
    return 0


def liveqa_messages(split: str = "dev") -> list[dict]:
    """LiveQA messages of one split, each with ``text``: the subject line and the message as a user would send
    them (``message_text``)."""
    return _as_sent(entailment.liveqa_messages(split))


def _as_sent(rows: list[dict]) -> list[dict]:
    """Annotated consumer messages, each with ``text`` as its user sent it (``message_text``)."""
    for row in rows:
        row["text"] = message_text(row)
    return rows


def evaluate_liveqa(index: RetrievalIndex, messages: list[dict], synonyms: dict[str, frozenset[str]],
                    key=name_key) -> dict:
    """Focus found on the messages with an answered annotated focus, type found on every sub-question; names
    compared as ``key`` (the one ``synonyms`` was built with)."""
    answered = {key(index.passage(i)["focus"]) for i in range(len(index))}
    # every name (a focus or a synonym) -> the answered foci it names
    answered_names = {name for focus in answered for name in synonyms.get(focus, {focus})}
    counts = collections.Counter()
    misses = []
    for message in messages:
        result = index.retrieve(message["text"], k=3)
        passages = result.passages(1)
        annotated = {key(s["focus"]) for s in message["subquestions"]}
        counts["messages"] += 1
        counts["no answer"] += not result.answerable
        if annotated & answered_names:
            counts["focus n"] += 1
            counts["focus no answer"] += not result.answerable
            cited = key(passages[0].focus) if passages else ""
            hit = bool(annotated & synonyms.get(cited, {cited}))
            counts["focus found"] += hit
            recognised = {key(m.focus) for q in result.questions for m in q.foci}
            counts["focus recognised"] += any(synonyms.get(k, {k}) & annotated for k in recognised)
            if not hit:
                misses.append((message["id"], sorted(annotated), cited))
        system_types = {q.types[0][0] for q in result.questions if q.types}
        for sub in message["subquestions"]:
            want = medquad_type(sub["type"])
            counts["types n"] += 1
            counts["types mapped"] += want is not None
            counts["type found"] += want in system_types
            counts[f"types n: {want}"] += 1
            counts[f"type found: {want}"] += want in system_types
    return {"counts": counts, "misses": misses}


def run_headline(index: RetrievalIndex, data_dir: str | None) -> None:
    """The issue's headline figures: LiveQA dev focus/type/no-answer, MEDIQA cited page on a judged-correct focus."""
    annotations = data.load_annotations(data_dir)
    synonyms = synonym_sets(annotations)
    messages = liveqa_messages("dev")
    result = evaluate_liveqa(index, messages, synonyms)
    exact = evaluate_liveqa(index, messages, synonym_sets(annotations, focus_key), focus_key)["counts"]
    c = result["counts"]
    print(f"LiveQA 2017 dev ({c['messages']} real messages, subject line + message; evaluation only):")
    print(f"  focus found (first cited page's focus or a synonym = an annotated focus), of the {c['focus n']} messages "
          f"whose annotated focus is an answered MedQuAD focus or synonym: {c['focus found']}/{c['focus n']} "
          f"{_percent(c['focus found'], c['focus n']).strip()}  (annotated focus among the recognised foci: "
          f"{c['focus recognised']}/{c['focus n']}; no NIH answer on {c['focus no answer']} of them; names compared "
          f"without possessives and bracketed abbreviations, as written: {exact['focus found']}/{exact['focus n']})")
    print(f"  type found (an understood sub-question's first type = the annotated type, in MedQuAD's names), all "
          f"{c['types n']} annotated sub-questions: {c['type found']}/{c['types n']} "
          f"{_percent(c['type found'], c['types n']).strip()}  ({c['types mapped']} have a MedQuAD type)")
    print(f"  no NIH answer: {c['no answer']}/{c['messages']} {_percent(c['no answer'], c['messages']).strip()} "
          "of all dev messages")
    consumer = evaluate_consumer(index, consumer_questions(), True, resolved_page, synonyms)
    total = collections.Counter()
    for counts in consumer["per_set"].values():
        total.update(counts)
    print(f"MEDIQA 2019 consumer questions with a judged-correct MedQuAD page (pages resolved across site moves): "
          f"first cited page on a judged-correct focus (or a synonym) {total['focus@1']}/{total['n']} "
          f"{_percent(total['focus@1'], total['n']).strip()}; same page {total['hit@1']}/{total['n']}; "
          f"no NIH answer on {total['no answer']}\n")


def consumer_questions(path: Path | None = None) -> list[dict]:
    with open(path or settings.consumer_qa_dir() / QA_FILE, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def evaluate_consumer(index: RetrievalIndex, questions: list[dict], full_pipeline: bool,
                      page_of=normalise_url, synonyms: dict[str, frozenset[str]] | None = None) -> dict:
    """``page_of`` maps a URL to its page: ``normalise_url`` as the data's README defines it, or ``resolved_page``;
    with ``synonyms`` (``synonym_sets``) focus@1 also counts a cited focus that is a synonym of a judged one."""
    focus_of_page: dict[str, set[str]] = collections.defaultdict(set)
    for passage in (index.passage(i) for i in range(len(index))):
        focus_of_page[page_of(passage["url"])].add(focus_key(passage["focus"]))
    indexed_pages = set(focus_of_page)
    per_set: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    cited = collections.Counter()
    latencies = []
    for question in questions:
        started = time.perf_counter()
        if full_pipeline:
            result = index.retrieve(question["question"], k=10)
            passages, answerable = result.passages(10), result.answerable
        else:
            passages = index.search(question["question"], k=10)
            answerable = bool(passages)
        latencies.append((time.perf_counter() - started) * 1000)
        pages = _pages(passages, page_of)
        judged = {}
        for answer in question["answers"]:
            page = page_of(answer["url"])
            judged[page] = max(judged.get(page, 0), answer["score"])
        cited["questions"] += 1
        cited["no answer"] += not answerable
        if pages:
            cited["cited"] += 1
            cited["judged"] += pages[0] in judged
            cited["judged incorrect"] += judged.get(pages[0]) == 1
            cited["judged correct"] += judged.get(pages[0], 0) >= 3
        good = {page for page, score in judged.items() if score >= 3} & indexed_pages
        if not good:
            continue
        counts = per_set[question["set"]]
        counts["n"] += 1
        counts["hit@1"] += bool(pages) and pages[0] in good
        # the topic is right even when another NIH site's page on it was judged (or none was)
        good_foci = {name_key(f) for page in good for f in focus_of_page[page]}
        cited_focus = name_key(passages[0].focus) if passages else ""
        names = (synonyms or {}).get
        counts["focus@1"] += bool(passages) and any(
            cited_focus == f or cited_focus in names(f, ()) or f in names(cited_focus, ()) for f in good_foci)
        counts["no answer"] += not answerable
        counts["hit@5"] += bool(set(pages[:5]) & good)
        rank = next((r for r, page in enumerate(pages[:10], 1) if page in good), None)
        counts["mrr"] += 1 / rank if rank else 0.0
    return {"per_set": per_set, "cited": cited, **_latency(latencies)}


def run_consumer(data_dir: str | None, limit: int | None) -> int:
    index = RetrievalIndex.load_or_build(data_dir, progress=True)
    run_headline(index, data_dir)
    questions = consumer_questions()[:limit]
    print(f"MEDIQA 2019 consumer questions: {len(questions)}; page-level hits against judged-correct answers "
          "(score >= 3) on MedQuAD pages\n")
    print(f"{'':<12}{'subset':<12}{'n':>4}{'hit@1':>12}{'hit@5':>12}{'MRR':>7}{'focus@1':>13}")
    for name, full, page_of in (("search", False, normalise_url), ("retrieve", True, normalise_url),
                                ("retrieve", True, resolved_page)):
        if page_of is resolved_page:
            print("The same retrieval with pages resolved across site moves (GARD ids, renamed NINDS pages), so more "
                  "judged pages are MedQuAD pages:")
        result = evaluate_consumer(index, questions, full, page_of)
        total = collections.Counter()
        for subset in (*sorted(result["per_set"]), "all"):
            counts = result["per_set"][subset] if subset != "all" else total
            if subset != "all":
                total.update(counts)
            n = counts["n"]
            print(f"{name:<12}{subset:<12}{n:>4}{counts['hit@1']:>5} {_percent(counts['hit@1'], n)}"
                  f"{counts['hit@5']:>5} {_percent(counts['hit@5'], n)}{counts['mrr'] / max(n, 1):>7.3f}"
                  f"{counts['focus@1']:>6} {_percent(counts['focus@1'], n)}")
        cited = result["cited"]
        print(f"{name:<12}first cited page over all {cited['questions']} questions: cited {cited['cited']}, "
              f"no NIH answer {cited['no answer']}; of the cited pages {cited['judged']} were judged: "
              f"{cited['judged incorrect']} incorrect ({_percent(cited['judged incorrect'], cited['judged']).strip()}"
              f" of judged), {cited['judged correct']} correct; latency p50 {result['p50_ms']:.1f} ms, "
              f"p95 {result['p95_ms']:.1f} ms\n")
    return 0


def cross_validated_types(index: RetrievalIndex, annotations, messages: list[dict], folds: int = 4,
                          seed: int = 0) -> collections.Counter:
    """Type found on LiveQA ``train`` messages as if each were unseen: the type classifier rebuilt without the
    messages of one fold at a time (seeded split), then measured on that fold through the full ``retrieve``."""
    shuffled = sorted(messages, key=lambda m: m["id"])
    random.Random(seed).shuffle(shuffled)
    # The passages' own type probabilities (computed at build) stay the built classifier's: only the messages' types
    # are measured.
    built = index.understanding.types
    written = consumer_type_rows(written_messages())
    counts: collections.Counter = collections.Counter()
    try:
        for fold in range(folds):
            held_out = shuffled[fold::folds]
            kept = [m for m in shuffled if m not in held_out]
            fold = TypeClassifier.build(annotations, consumer_rows=consumer_type_rows(kept) + written,
                                        encoder=built.encoder)
            index.understanding.types = fold.with_classes(built.classes)
            counts.update(evaluate_liveqa(index, held_out, {})["counts"])
    finally:
        index.understanding.types = built
    return counts


def run_types(data_dir: str | None, limit: int | None) -> int:
    """Question types on consumer messages: LiveQA train cross-validated (the classifier learns from train), dev."""
    index = RetrievalIndex.load_or_build(data_dir, progress=True)
    train = liveqa_messages("train")[:limit]
    annotations = data.load_annotations(data_dir)
    counts = cross_validated_types(index, annotations, train)
    print(f"LiveQA 2017 train, 4-fold cross-validated: type found {counts['type found']}/{counts['types n']} "
          f"{_percent(counts['type found'], counts['types n']).strip()}")
    built = index.understanding.types
    try:
        for name, rows in (("MedQuAD and the seed phrases", []),
                           ("those and the written messages", consumer_type_rows(written_messages()))):
            index.understanding.types = TypeClassifier.build(annotations, consumer_rows=rows,
                                                             encoder=built.encoder).with_classes(built.classes)
            unseen = evaluate_liveqa(index, train, {})["counts"]
            found, n = unseen["type found"], unseen["types n"]
            print(f"LiveQA 2017 train, all unseen (learnt from {name} only): type found {found}/{n} "
                  f"{_percent(found, n).strip()}")
    finally:
        index.understanding.types = built
    dev = evaluate_liveqa(index, liveqa_messages("dev")[:limit], {})["counts"]
    print(f"LiveQA 2017 dev (evaluation only): type found {dev['type found']}/{dev['types n']} "
          f"{_percent(dev['type found'], dev['types n']).strip()}")
    check = evaluate_liveqa(index, _as_sent(written_messages(WRITTEN_CHECK_MESSAGES)[:limit]), {})["counts"]
    print(f"Written check messages (never learnt from; a message with two foci counts each): type found "
          f"{check['type found']}/{check['types n']} {_percent(check['type found'], check['types n']).strip()}")
    asked = sorted((key.split(": ", 1)[1] for key in check if key.startswith("types n: ")),
                   key=lambda name: -check[f"types n: {name}"])
    for name in asked:
        found, n = check[f"type found: {name}"], check[f"types n: {name}"]
        print(f"  {name:<32}{found:>4}/{n:<4}{_percent(found, n)}")
    return 0


def cross_validated_foci(index: RetrievalIndex, synonyms, messages: list[dict], folds: int = 4,
                         seed: int = 0) -> collections.Counter:
    """The message's focus on LiveQA ``train`` messages as if each were unseen: the focus salience rebuilt without
    one fold at a time (seeded split), then on that fold the most salient recognised focus and the recogniser's
    first compared with the annotated foci, and the first cited page's focus through the full ``retrieve``."""
    understanding = index.understanding
    shuffled = sorted(messages, key=lambda m: m["id"])
    random.Random(seed).shuffle(shuffled)
    built = understanding.salience
    counts: collections.Counter = collections.Counter()
    try:
        for fold in range(folds):
            held_out = shuffled[fold::folds]
            kept = [m for m in shuffled if m not in held_out]
            understanding.salience = FocusSalience.build(understanding.recogniser, index.pair_counts, kept, synonyms)
            for features, labels in labelled_messages(understanding.recogniser, index.pair_counts, built.everyday,
                                                      held_out, synonyms):
                counts["salience n"] += 1
                counts["salience right"] += bool(labels[int(np.argmax(features @ understanding.salience.coef))])
                counts["first right"] += bool(labels[0])
            counts.update(evaluate_liveqa(index, held_out, synonyms)["counts"])
    finally:
        understanding.salience = built
    return counts


def run_foci(data_dir: str | None, limit: int | None) -> int:
    """Which focus a consumer message is about: LiveQA train cross-validated (the salience learns from train)."""
    index = RetrievalIndex.load_or_build(data_dir, progress=True)
    synonyms = synonym_sets(data.load_annotations(data_dir))
    counts = cross_validated_foci(index, synonyms, liveqa_messages("train")[:limit])
    n = counts["salience n"]
    print(f"LiveQA 2017 train, 4-fold cross-validated, {n} messages with an annotated focus recognised: the most "
          f"salient focus is annotated {counts['salience right']}/{n} {_percent(counts['salience right'], n).strip()}"
          f" (the recogniser's first: {counts['first right']}/{n}); first cited page on the annotated focus "
          f"{counts['focus found']}/{counts['focus n']} {_percent(counts['focus found'], counts['focus n']).strip()}")
    return 0


def run_rqe(data_dir: str | None, limit: int | None) -> int:
    index = RetrievalIndex.load_or_build(data_dir, progress=True)
    model = index.understanding.entailment
    print("Question entailment (trained on the RQE train split + MedQuAD type contrasts):")
    for split in ("train", "validation", "test"):
        pairs = rqe_pairs(split)[:limit]
        majority = max(sum(e for *_, e in pairs), sum(not e for *_, e in pairs)) / max(len(pairs), 1)
        correct = round(model.accuracy(pairs) * len(pairs))
        print(f"  {split:<11} {len(pairs):>5} pairs  accuracy {_percent(correct, len(pairs))}"
              f"  (majority class {_percent(round(majority * len(pairs)), len(pairs)).strip()})")
    return 0


def conversations(path: Path = CONVERSATIONS) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _names(focus) -> set[str]:
    return {focus_key(f) for f in ([focus] if isinstance(focus, str) else focus or [])}


def evaluate_followups(index: RetrievalIndex, talks: list[dict]) -> dict:
    """Per conversation, the last turn retrieved with the earlier turns as history. A follow-up must carry the
    expected focus over; a new topic must not carry any focus over; an off-topic request must not carry one over
    nor be answered. Where the conversation gives one, the first cited passage's focus and type are checked."""
    counts = collections.Counter()
    for talk in talks:
        *history, last = talk["turns"]
        result = index.retrieve(last, history=history, k=3)
        kind, want = talk["kind"], _names(talk["focus"])
        carried = any(q.carried_over for q in result.questions)
        if kind == "follow-up":
            first = result.questions[0] if result.questions else None
            right = bool(first and first.carried_over and want & {m.key for m in first.foci})
        else:
            right = not carried and (kind != "off topic" or not result.answerable)
        counts[f"{kind} n"] += 1
        counts[f"{kind} right"] += right
        passages = result.passages(1)
        if want:
            counts["focus n"] += 1
            counts["focus cited"] += bool(passages) and focus_key(passages[0].focus) in want
        if talk["type"]:
            counts["type n"] += 1
            counts["type understood"] += any(q.types and q.types[0][0] == talk["type"] for q in result.questions)
            counts["type cited"] += bool(passages) and passages[0].question_type == talk["type"]
    return counts


def run_followups(data_dir: str | None, limit: int | None) -> int:
    index = RetrievalIndex.load_or_build(data_dir, progress=True)
    talks = conversations()[:limit]
    counts = evaluate_followups(index, talks)
    turns = collections.Counter(len(t["turns"]) for t in talks)
    print(f"Our own conversations ({len(talks)}: {turns[2]} of two turns, {turns[3]} of three), the last turn "
          "retrieved with the earlier ones as history:")
    right = sum(counts[f"{kind} right"] for kind in ("follow-up", "new topic", "off topic"))
    print(f"  focus carried or dropped correctly     {right:>3}/{len(talks)} {_percent(right, len(talks))}")
    for kind, what in (("follow-up", "follow-ups carrying the expected focus"),
                       ("new topic", "new topics carrying no focus over"),
                       ("off topic", "off-topic requests: no focus, no answer")):
        n = counts[f"{kind} n"]
        print(f"    {what:<38}{counts[f'{kind} right']:>3}/{n} {_percent(counts[f'{kind} right'], n)}")
    for key, what, n in (("focus cited", "first passage about the expected focus", counts["focus n"]),
                         ("type cited", "first passage of the asked type", counts["type n"]),
                         ("type understood", "asked type understood", counts["type n"])):
        print(f"  {what:<40}{counts[key]:>3}/{n} {_percent(counts[key], n)}")
    return 0


def evaluate_lay(index: RetrievalIndex, rows: list[dict]) -> dict:
    """Lay messages (symptoms in everyday words, everyday names, descriptions): the first cited passage is about
    one of the expected foci; where the message asks a type, the first passage is of it."""
    counts = collections.Counter()
    for row in rows:
        result = index.retrieve(row["message"], k=3)
        passages = result.passages(1)
        hit = bool(passages) and focus_key(passages[0].focus) in _names(row["foci"])
        for group in ("all", row["kind"]):
            counts[f"{group} n"] += 1
            counts[f"{group} focus"] += hit
            counts[f"{group} no answer"] += not passages
        if row["type"]:
            counts["type n"] += 1
            counts["type cited"] += bool(passages) and passages[0].question_type == row["type"]
    return counts


def run_lay(data_dir: str | None, limit: int | None) -> int:
    index = RetrievalIndex.load_or_build(data_dir, progress=True)
    rows = conversations(LAY_QUESTIONS)[:limit]
    counts = evaluate_lay(index, rows)
    print(f"Lay messages ({len(rows)}, gpt2chat/resources/lay_questions.jsonl, written without looking at the "
          "system's answers): first cited page about an expected focus")
    for group, what in (("all", "all"), ("symptom", "symptoms in everyday words"),
                        ("everyday-name", "everyday names"), ("description", "descriptions")):
        n = counts[f"{group} n"]
        print(f"  {what:<30}{counts[f'{group} focus']:>3}/{n} {_percent(counts[f'{group} focus'], n)}  "
              f"(no answer {counts[f'{group} no answer']})")
    print(f"  first passage of the asked type {counts['type cited']:>3}/{counts['type n']} "
          f"{_percent(counts['type cited'], counts['type n'])}")
    return 0


def run_written(data_dir: str | None, limit: int | None) -> int:
    """Focus found on the consumer messages written for the project (``written_messages``), the halves apart: the
    odd-numbered ones are where retrieval changes were tried, the even-numbered ones check them; and on the
    written check messages, which no change was tried on."""
    index = RetrievalIndex.load_or_build(data_dir, progress=True)
    synonyms = synonym_sets(data.load_annotations(data_dir))
    rows = _as_sent(written_messages()[:limit])
    print(f"Consumer messages written for the project ({len(rows)}, docs/written_messages.md): first cited page's "
          "focus (or a synonym) = the writer's focus, of the messages whose focus is an answered MedQuAD focus")
    check = _as_sent(written_messages(WRITTEN_CHECK_MESSAGES)[:limit])
    for name, half in (("odd (tried on)", rows[1::2]), ("even (checks)", rows[0::2]), ("all", rows),
                       ("check messages", check)):
        c = evaluate_liveqa(index, half, synonyms)["counts"]
        print(f"  {name:<16}{c['focus found']:>4}/{c['focus n']} {_percent(c['focus found'], c['focus n'])}  "
              f"(no NIH answer on {c['no answer']} of {c['messages']} messages)")
    return 0


def run_latency(data_dir: str | None, limit: int | None) -> int:
    from gpt2chat.corpus.splits import split_records

    index = RetrievalIndex.load_or_build(data_dir, progress=True)
    records, _ = data.load_records(data_dir)
    texts = [q["question"] for q in consumer_questions()] + [r.question for r in split_records(records)["test"]]
    talks = [(t["turns"][-1], t["turns"][:-1]) for t in conversations()]
    queries = [(text, []) for text in texts[:limit]] + talks
    index.retrieve("What is glaucoma?", k=3)  # as the app's ChatEngine.warm_up: traces the encoder's graph
    latencies = []
    for text, history in queries:
        started = time.perf_counter()
        index.retrieve(text, history, k=3)
        latencies.append((time.perf_counter() - started) * 1000)
    result = _latency(latencies)
    print(f"retrieve latency over {len(queries)} questions (consumer, MedQuAD test split, follow-ups), one at a "
          f"time: p50 {result['p50_ms']:.1f} ms, p95 {result['p95_ms']:.1f} ms, max {max(latencies):.1f} ms")
    return 0


RUNNERS = {"medquad": run_medquad, "consumer": run_consumer, "types": run_types, "foci": run_foci, "rqe": run_rqe,
           "followups": run_followups, "lay": run_lay, "written": run_written, "latency": run_latency}


def main(argv: list[str] | None = None) -> int:
    """The retrieval command: a question's understood sub-questions and passages, or --eval WHAT."""
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.retrieval", description="Retrieval over every answered MedQuAD pair: the passages for a question, or (--eval) a measurement.")
    parser.add_argument("question", nargs="?", help="question to search for")
    parser.add_argument("-k", type=int, default=5, help="passages to show (default 5)")
    parser.add_argument("--history", action="append", default=[], metavar="MESSAGE",
                        help="an earlier user message, oldest first (repeatable), for a follow-up question")
    parser.add_argument("--eval", nargs="?", const="medquad", choices=list(RUNNERS), metavar="WHAT",
                        help=f"measure instead: {', '.join(RUNNERS)} "
                             "(default medquad; see this module, gpt2chat.search.retrieval_eval)")
    parser.add_argument("--limit", type=int, help="with --eval: only the first N questions")
    parser.add_argument("--data", help=f"MedQuAD directory (default: ${settings.MEDQUAD_ENV} or ../shared/medquad)")
    args = parser.parse_args(argv)
    if not args.eval and not args.question:
        parser.error("give a question, or --eval")
    if args.k < 1 or (args.limit is not None and args.limit < 1):
        parser.error("-k and --limit must be at least 1")
    if args.eval:
        return RUNNERS[args.eval](args.data, args.limit)
    index = RetrievalIndex.load_or_build(args.data, progress=True)
    result = index.retrieve(args.question, args.history, k=args.k)
    for question in result.questions:
        foci = ", ".join(f"{m.focus} ({m.confidence:.2f}{', carried over' if question.carried_over else ''})"
                         for m in question.foci) or "none"
        types = ", ".join(f"{t} ({p:.2f})" for t, p in question.types) or "none"
        print(f"Q: {question.text}\n   foci: {foci}\n   types: {types}")
        if not question.answerable:
            print("   no NIH answer found")
        for rank, passage in enumerate(question.passages, 1):
            print(f"{rank}. {passage.focus}  [{passage.source}]  score {passage.score:.2f}\n"
                  f"   {passage.url}\n   Q: {passage.question}")
    if not result.answerable:
        print(f"No NIH answer found; MedlinePlus search: {result.medlineplus_url}")
    return 0

