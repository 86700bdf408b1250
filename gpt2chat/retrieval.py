"""BM25 retrieval over every answered MedQuAD pair: the chatbot's knowledge base.

Usage:
    python -m gpt2chat.retrieval "how is glaucoma treated?"   # top passages for one question
    python -m gpt2chat.retrieval --eval [--limit N]          # focus accuracy and latency on test-split questions

    from gpt2chat.retrieval import get_index
    for passage in get_index().search("my doctor says I have gout, what helps?", k=3):
        print(passage.focus, passage.score, passage.url)

Each indexed document is the pair's question and focus (both repeated, so the topic outweighs the long answer)
followed by the answer; a second, smaller BM25 over the focus name alone adds a boost for pairs whose topic the
query names. Text is tokenised by bm25s with English stopwords and the Snowball stemmer (PyStemmer). Cached
under ``settings.cache_dir()/retrieval/<key>``; the key hashes the MedQuAD XML contents, the loader's source and
the index settings, so any change to them builds a fresh index instead of serving a stale one.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import bm25s
import numpy as np
import Stemmer

from gpt2chat import data, settings
from gpt2chat.data import QAPair, focus_key

log = logging.getLogger(__name__)
# bm25s sets its own logger to DEBUG on import, which would print index internals in any app that logs.
logging.getLogger("bm25s").setLevel(logging.WARNING)

# Bump when the on-disk layout or the document text changes in a way the settings below do not capture.
CACHE_FORMAT = 1
_MANIFEST = "manifest.json"
_PASSAGES = "passages.jsonl"
_FIELDS = ("document", "focus")
_PASSAGE_FIELDS = ("pair_id", "question", "answer", "focus", "source", "url")


@dataclasses.dataclass(frozen=True)
class Passage:
    pair_id: str
    question: str
    answer: str
    focus: str
    source: str
    url: str
    score: float


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    # Chosen with --eval: repeating question and focus three times lifts top-1 focus accuracy from 89.9% to
    # 93.5% (own pair held out: 74.3% to 76.2%) over plain concatenation, as long answers otherwise dominate
    # the term counts; more repeats or other k1/b values changed it by under a point.
    question_repeats: int = 3
    focus_repeats: int = 3
    # A second BM25 over the focus name alone, added to the document score with this weight: a query naming
    # the disease then prefers that disease's pairs over pairs that only mention it (test-split top-1 93.5% ->
    # 96.8%, own pair held out 76.2% -> 81.3%; one of 20 hand-written chat paraphrases fewer in the top 3,
    # where an incidental word matched a focus name, e.g. "brittle" bones -> "Brittle cornea syndrome").
    focus_field_weight: float = 0.5
    stem: bool = True
    # bm25s's short "en" list keeps "my", "how", "have", which are rare in MedQuAD's third-person answers,
    # so their high IDF drowned the disease name in chat-style questions; see _STOPWORDS.
    stopwords: str = "chat"
    k1: float = 1.2
    b: float = 0.75


# bm25s's longer English list plus chat verbs ("my doctor says..." matched "Barber Say syndrome").
_STOPWORDS = {"chat": (*bm25s.stopwords.STOPWORDS_EN_PLUS, "can", "could", "get", "got", "know", "may", "might",
                       "need", "please", "said", "say", "says", "tell", "told", "want", "would")}


def _stemmer(config: IndexSettings):
    return Stemmer.Stemmer("english") if config.stem else None


def _tokenize(texts: list[str], stopwords: str, stemmer, progress: bool = False) -> list[list[str]]:
    return bm25s.tokenize(texts, stopwords=_STOPWORDS.get(stopwords, stopwords), stemmer=stemmer, return_ids=False,
                          show_progress=progress)


def document_text(record: QAPair, config: IndexSettings) -> str:
    topic = [record.question] * config.question_repeats + [record.focus] * config.focus_repeats
    return " ".join([*topic, record.answer])


def cache_key(data_dir: str | os.PathLike | None = None, config: IndexSettings = IndexSettings()) -> str:
    """Hash of everything the index depends on: XML file names and bytes, the loader's code, the settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": CACHE_FORMAT, "bm25s": bm25s.__version__, **dataclasses.asdict(config)},
                             sort_keys=True).encode())
    # The loader decides which pairs are kept (answered, de-duplicated), so its code is part of the data.
    digest.update(Path(data.__file__).read_bytes())
    root = settings.medquad_dir(data_dir)
    for subset, path in data.xml_files(root):
        content = path.read_bytes()
        digest.update(f"\0{subset}/{path.name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()[:20]


class RetrievalIndex:
    """A BM25 index plus the passages it returns; build from records, or load a saved one."""

    def __init__(self, fields: dict[str, bm25s.BM25], passages: list[dict], config: IndexSettings, key: str = ""):
        self._fields = fields  # _FIELDS name -> BM25 over that text, one document per passage
        self._passages = passages
        self._config = config
        self.key = key  # the cache key it was built for ("" when built from records directly)
        self._stemmer = _stemmer(config)

    @classmethod
    def build(cls, records: Sequence[QAPair], config: IndexSettings = IndexSettings(),
              progress: bool = False) -> RetrievalIndex:
        if not records:
            raise ValueError("cannot build a retrieval index from no records")
        stemmer = _stemmer(config)
        fields = {}
        for name, texts in (("document", [document_text(r, config) for r in records]),
                            ("focus", [r.focus for r in records])):
            fields[name] = bm25s.BM25(k1=config.k1, b=config.b)
            fields[name].index(_tokenize(texts, config.stopwords, stemmer, progress), show_progress=progress)
        passages = [{name: getattr(r, name) for name in _PASSAGE_FIELDS} for r in records]
        return cls(fields, passages, config)

    def __len__(self) -> int:
        return len(self._passages)

    def search(self, query: str, k: int = 5) -> list[Passage]:
        """The ``k`` best passages, best first; only passages sharing at least one term with the query."""
        if not query or not query.strip() or k <= 0:
            return []
        tokens = _tokenize([query], self._config.stopwords, self._stemmer)[0]
        scores = np.zeros(len(self), dtype=np.float32)
        for name, weight in (("document", 1.0), ("focus", self._config.focus_field_weight)):
            token_ids = self._fields[name].get_tokens_ids(tokens)
            if token_ids:
                scores += weight * self._fields[name].get_scores_from_ids(token_ids)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Passage(**self._passages[i], score=float(scores[i])) for i in top if scores[i] > 0]

    def save(self, directory: str | os.PathLike) -> None:
        """Write atomically: a half-written directory never sits at ``directory``."""
        directory = Path(directory)
        staging = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
            for name, bm25 in self._fields.items():
                bm25.save(staging / name, show_progress=False)
            with open(staging / _PASSAGES, "w", encoding="utf-8") as handle:
                for passage in self._passages:
                    handle.write(json.dumps(passage, ensure_ascii=False) + "\n")
            # Written last: a directory without a manifest is incomplete.
            manifest = {"key": self.key, "count": len(self), "settings": dataclasses.asdict(self._config)}
            (staging / _MANIFEST).write_text(json.dumps(manifest, indent=1))
            shutil.rmtree(directory, ignore_errors=True)
            os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # only left over when something above failed

    @classmethod
    def load(cls, directory: str | os.PathLike, key: str | None = None) -> RetrievalIndex:
        """Load a saved index; raises ValueError (or OSError) when it is incomplete, inconsistent or for another key."""
        directory = Path(directory)
        manifest = json.loads((directory / _MANIFEST).read_text())
        if key is not None and manifest.get("key") != key:
            raise ValueError(f"index at {directory} was built for key {manifest.get('key')!r}, not {key!r}")
        config = IndexSettings(**manifest["settings"])
        with open(directory / _PASSAGES, encoding="utf-8") as handle:
            passages = [json.loads(line) for line in handle]
        fields = {name: bm25s.BM25.load(directory / name, show_progress=False, verbosity=0) for name in _FIELDS}
        sizes = {len(passages), manifest["count"], *(bm25.scores["num_docs"] for bm25 in fields.values())}
        if len(sizes) != 1:
            raise ValueError(f"index at {directory} is inconsistent: document counts {sorted(sizes)}")
        if any(set(p) != set(_PASSAGE_FIELDS) for p in passages):
            raise ValueError(f"index at {directory} has malformed passages")
        return cls(fields, passages, config, manifest.get("key", ""))

    @classmethod
    def load_or_build(cls, data_dir: str | os.PathLike | None = None, progress: bool = False,
                      config: IndexSettings = IndexSettings()) -> RetrievalIndex:
        """The cached index for this MedQuAD tree and settings, built (and cached) on first use."""
        key = cache_key(data_dir, config)
        directory = settings.cache_dir() / "retrieval" / key
        if directory.exists():
            try:
                return cls.load(directory, key)
            except Exception as error:  # any damage (truncated JSON, missing array, bad dtype) means rebuild
                log.warning("retrieval cache at %s is unreadable (%s); rebuilding it", directory, error)
        records, _ = data.load_records(data_dir, progress=progress)
        index = cls.build(records, config, progress=progress)
        index.key = key
        try:
            index.save(directory)
            _prune_other_keys(directory)
        except OSError as error:  # a read-only or full disk costs a rebuild next start, not the answer now
            log.warning("could not cache the retrieval index at %s (%s)", directory, error)
        return index


def _prune_other_keys(keep: Path) -> None:
    """Drop indexes built for older data or settings: they can never be served again, and each is ~35 MB."""
    for sibling in keep.parent.iterdir():
        if sibling != keep and sibling.is_dir() and ".tmp-" not in sibling.name:
            shutil.rmtree(sibling, ignore_errors=True)


@functools.lru_cache(maxsize=4)
def get_index(data_dir: str | os.PathLike | None = None) -> RetrievalIndex:
    """One index per process and data directory, for the chat engine."""
    return RetrievalIndex.load_or_build(data_dir)


def _percent(hits: int, total: int) -> str:
    return f"{100 * hits / total:5.1f}%" if total else "  n/a"


def evaluate(index: RetrievalIndex, queries: Sequence[QAPair]) -> dict:
    """Focus accuracy of each query's top results, with its own pair in the index and with it held out."""
    exact = {"top1": 0, "top5": 0}
    held_out = {"top1": 0, "top5": 0}
    latencies = []
    for record in queries:
        started = time.perf_counter()
        results = index.search(record.question, k=6)
        latencies.append((time.perf_counter() - started) * 1000)
        focus = focus_key(record.focus)
        others = [p for p in results if p.pair_id != record.pair_id]
        for counts, ranked in ((exact, results[:5]), (held_out, others[:5])):
            foci = [focus_key(p.focus) for p in ranked]
            counts["top1"] += bool(foci) and foci[0] == focus
            counts["top5"] += focus in foci
    return {"n": len(queries), "exact": exact, "held_out": held_out,
            "p50_ms": float(np.percentile(latencies, 50)) if latencies else 0.0,
            "p95_ms": float(np.percentile(latencies, 95)) if latencies else 0.0}


def _run_eval(data_dir: str | None, limit: int | None) -> int:
    from gpt2chat.splits import split_records

    started = time.perf_counter()
    records, _ = data.load_records(data_dir, progress=True)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    index = RetrievalIndex.build(records, progress=True)
    build_s = time.perf_counter() - started
    queries = split_records(records)["test"][:limit]
    result = evaluate(index, queries)
    n = result["n"]
    # A query whose focus has no other pair cannot be a held-out hit: the ceiling for that row.
    focus_counts = collections.Counter(focus_key(r.focus) for r in records)
    reachable = sum(focus_counts[focus_key(q.focus)] > 1 for q in queries)
    print(f"Knowledge base: all {len(index)} answered MedQuAD pairs (every split). The index IS the knowledge base,")
    print("so each test question's own pair is in it; the second row removes that pair from the results and")
    print("counts a hit only if another pair with the same focus is found.")
    print(f"Queries: {n} MedQuAD test-split questions (focus match, case-insensitive)\n")
    print(f"{'':<26}{'top-1':>8}{'top-5':>8}")
    for label, counts in (("own pair in index", result["exact"]), ("own pair held out", result["held_out"])):
        print(f"{label:<26}{_percent(counts['top1'], n):>8}{_percent(counts['top5'], n):>8}")
    print(f"(held-out ceiling: {_percent(reachable, n).strip()} of test questions have another pair "
          "with their focus)")
    print(f"\nQuery latency: p50 {result['p50_ms']:.2f} ms, p95 {result['p95_ms']:.2f} ms (single queries, CPU)")
    print(f"Index build: {build_s:.1f} s for {len(index)} pairs (plus {read_s:.1f} s reading the XML)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpt2chat.retrieval", description=__doc__.split("\n")[0])
    parser.add_argument("question", nargs="?", help="question to search for")
    parser.add_argument("-k", type=int, default=5, help="passages to show (default 5)")
    parser.add_argument("--eval", action="store_true", help="measure focus accuracy on the test-split questions")
    parser.add_argument("--limit", type=int, help="with --eval: only the first N test questions")
    parser.add_argument("--data", help=f"MedQuAD directory (default: ${settings.MEDQUAD_ENV} or ../shared/medquad)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if not args.eval and not args.question:
        parser.error("give a question, or --eval")
    try:
        if args.eval:
            return _run_eval(args.data, args.limit)
        index = RetrievalIndex.load_or_build(args.data, progress=True)
    except data.MedQuADNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    passages = index.search(args.question, k=args.k)
    if not passages:
        print("no passage shares a term with that question")
    for rank, passage in enumerate(passages, 1):
        print(f"{rank}. {passage.focus}  [{passage.source}]  score {passage.score:.2f}\n"
              f"   {passage.url}\n   Q: {passage.question}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
