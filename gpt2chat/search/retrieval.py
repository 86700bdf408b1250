"""Retrieval over every answered MedQuAD pair: the chatbot's knowledge base.

Usage:
    python -m gpt2chat.retrieval "how is glaucoma treated?"   # understood question(s) and their passages
    python -m gpt2chat.retrieval --eval [medquad|consumer|rqe|followups|latency]   # see gpt2chat.search.retrieval_eval

    from gpt2chat.search.retrieval import RetrievalIndex
    index = RetrievalIndex.load_or_build()      # MedQuAD from settings.medquad_dir(), cached under settings.cache_dir()
    result = index.retrieve("and how is it treated?", history=["what causes gout?"], k=3)
    for question in result.questions:          # one per core sub-question of the message
        print(question.foci, question.types, question.answerable, [p.url for p in question.passages])
    result.passages(k=3)                       # what to cite; result.medlineplus_url when not answerable
    index.search("gout", k=3)                  # plain BM25, no understanding

``retrieve`` (gpt2chat.search.ranking) recognises the foci and question types, splits long messages, carries the
focus of a follow-up over from the history, re-ranks with a question-entailment model and says when MedQuAD has no
answer. Its learned parts (gpt2chat.search.understanding, gpt2chat.search.question_types,
gpt2chat.search.entailment) are built with the index.

Each indexed document is the pair's question and focus (both repeated, so the topic outweighs the long answer)
followed by the answer; a second, smaller BM25 over the focus name alone adds a boost for pairs whose topic the
query names. Text is tokenised by bm25s with English stopwords and the Snowball stemmer (PyStemmer). Cached
under ``settings.cache_dir()/retrieval/<key>``; the key hashes the MedQuAD XML contents, the RQE, LiveQA and
written-message data, the source of the loader and of the learned parts, and the index settings, so any change to
them builds a fresh index instead of serving a stale one. The manifest records a SHA-256 of every file: a cache
whose files were damaged or edited (out-of-range arrays, emptied vocabularies) is rebuilt instead of trusted.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

import bm25s
import numpy as np
import Stemmer

from gpt2chat import settings
from gpt2chat.corpus import data
from gpt2chat.corpus.consumer import WRITTEN_MESSAGES
from gpt2chat.search import ranking
from gpt2chat.corpus.data import QAPair, focus_key
from gpt2chat.search.encoder import SentenceEncoder, load_encoder
from gpt2chat.search.entailment import liveqa_path, rqe_path
from gpt2chat.search.question_types import without_focus
from gpt2chat.search.ranking import Passage, RetrievalResult, Understanding

log = logging.getLogger(__name__)
# bm25s sets its own logger to DEBUG on import, which would print index internals in any app that logs.
logging.getLogger("bm25s").setLevel(logging.WARNING)

# Bump when the on-disk layout or the document text changes in a way the settings below do not capture.
CACHE_FORMAT = 3
_MANIFEST = "manifest.json"
_PASSAGES = "passages.jsonl"
_UNDERSTANDING = "understanding"
_FIELDS = ("document", "focus")
_DESCRIPTION = "description"  # BM25 over each focus's own description, one document per answered focus
_DESCRIPTION_KEYS = "description_foci.json"
_TYPE_PROBABILITIES = "type_probabilities.npy"  # each passage question's types, computed at build
# What a focus "is" in its own answers: a description written the way people describe a condition.
_DESCRIPTION_TYPES = ("information", "symptoms", "causes")
_SYMPTOM_TYPES, _CAUSE_TYPES = ("symptoms",), ("causes", "susceptibility")
RARE_DISEASE_SITES = frozenset({"GARD", "GHR"})
_PASSAGE_FIELDS = ("pair_id", "question", "answer", "focus", "source", "url", "question_type")
# The code that builds the learned parts is part of what the cached index depends on.
_LEARNED_SOURCES = ("understanding.py", "question_types.py", "entailment.py", "ranking.py", "salience.py",
                    "encoder.py")


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
    # The description index (``description_scores``): each focus's information, symptoms and causes answers, up to
    # description_chars of each, with less length normalisation than the pairs: a rare disease's short symptom
    # list otherwise outscores a common condition's full page. Chosen on the odd half of --eval lay (b 0.75 -> 0.5,
    # 1,500 -> 3,000 characters: 15 -> 19 of 35), the even half measured once: 17 -> 22 of 35; LiveQA train
    # first cited focus 57/62 before and after.
    description_b: float = 0.5
    description_chars: int = 3000


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


def cache_key(data_dir: str | os.PathLike | None = None, config: IndexSettings = IndexSettings(),
              encoder: str | None = None) -> str:
    """Hash of everything the index depends on: XML file names and bytes, the loader's code, the settings, where
    the sentence encoder comes from (``encoder``, default ``settings.encoder_preset()``)."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": CACHE_FORMAT, "bm25s": bm25s.__version__, **dataclasses.asdict(config),
                              "encoder": encoder or settings.encoder_preset()}, sort_keys=True).encode())
    # The loader decides which pairs are kept (answered, de-duplicated), so its code is part of the data.
    digest.update(Path(data.__file__).read_bytes())
    for name in _LEARNED_SOURCES:
        digest.update(Path(__file__).with_name(name).read_bytes())
    for path in (rqe_path(), liveqa_path(), WRITTEN_MESSAGES):  # training data of the learned parts, when present
        if path.is_file():
            digest.update(path.read_bytes())
    root = settings.medquad_dir(data_dir)
    for subset, path in data.xml_files(root):
        content = path.read_bytes()
        digest.update(f"\0{subset}/{path.name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()[:20]


class RetrievalIndex:
    """A BM25 index, the passages it returns and the question understanding that ranks them; build from records,
    or load a saved one."""

    def __init__(self, fields: dict[str, bm25s.BM25], passages: list[dict], config: IndexSettings, key: str = "",
                 understanding: Understanding | None = None,
                 descriptions: tuple[bm25s.BM25, list[str]] | None = None,
                 type_probabilities: np.ndarray | None = None):
        self._fields = fields  # _FIELDS name -> BM25 over that text, one document per passage
        self._descriptions = descriptions  # BM25 over focus descriptions, and the focus key of each document
        self._description_position = {key: i for i, key in enumerate(descriptions[1] if descriptions else [])}
        self._saying: dict[str, np.ndarray] = {}  # descriptions_saying per name: a name's words are asked again
        self._said_as_symptom: dict[str, bool] = {}
        self._symptom_and_cause_passages: list[np.ndarray] | None = None  # masks, made on first use
        self._passages = passages
        self._config = config
        self.key = key  # the cache key it was built for ("" when built from records directly)
        self.understanding = understanding
        self._stemmer = _stemmer(config)
        self._by_focus: dict[str, list[int]] = collections.defaultdict(list)
        self._by_page: dict[str, list[int]] = collections.defaultdict(list)
        for i, passage in enumerate(passages):
            self._by_focus[focus_key(passage["focus"])].append(i)
            self._by_page[data.page_key(passage["pair_id"])].append(i)
        self.answered_types = frozenset(p["question_type"] for p in passages)
        self.pair_counts = {key: len(indexes) for key, indexes in self._by_focus.items()}  # focus key -> its pairs
        sites = collections.defaultdict(set)
        for passage in passages:
            sites[focus_key(passage["focus"])].add(passage["source"])
        # foci only the rare-disease sites answer
        self.rare_foci = frozenset(key for key, names in sites.items() if names <= RARE_DISEASE_SITES)
        if understanding is not None and type_probabilities is None:
            raise ValueError("an index that retrieves needs its passages' question types")
        self._type_probabilities = type_probabilities

    @classmethod
    def build(cls, records: Sequence[QAPair], config: IndexSettings = IndexSettings(), progress: bool = False,
              annotations: Sequence[data.FocusAnnotation] | None = None,
              rqe: Sequence[tuple[str, str, bool]] | None = None, understand: bool = True,
              encoder: SentenceEncoder | None = None) -> RetrievalIndex:
        """BM25 fields plus the learned parts (see ``ranking.Understanding.build`` for the defaults; ``encoder``
        defaults to ``load_encoder()``). Without ``understand`` only ``search`` works (``retrieve`` refuses): what
        training's references need, 13.9 of the 14.0 s a small build took being the learned parts."""
        if not records:
            raise ValueError("cannot build a retrieval index from no records")
        stemmer = _stemmer(config)
        fields = {}
        for name, texts in (("document", [document_text(r, config) for r in records]),
                            ("focus", [r.focus for r in records])):
            fields[name] = bm25s.BM25(k1=config.k1, b=config.b)
            fields[name].index(_tokenize(texts, config.stopwords, stemmer, progress), show_progress=progress)
        passages = [{name: getattr(r, name) for name in _PASSAGE_FIELDS} for r in records]
        described: dict[str, list[str]] = collections.defaultdict(list)
        for record in records:
            if record.question_type in _DESCRIPTION_TYPES:
                described[focus_key(record.focus)].append(record.answer[:config.description_chars])
        keys = sorted(described)
        descriptions = None
        if keys:
            description_bm25 = bm25s.BM25(k1=config.k1, b=config.description_b)
            description_bm25.index(_tokenize([" ".join(described[k]) for k in keys], config.stopwords, stemmer),
                                   show_progress=False)
            descriptions = (description_bm25, keys)
        understanding = type_probabilities = None
        if understand:
            understanding = Understanding.build(records, annotations, rqe, encoder or load_encoder())
            # Read as the classifier learnt MedQuAD's questions, without their focus: 85 wordings to encode, not 16k.
            type_probabilities = understanding.types.probabilities([without_focus(p["question"], p["focus"])
                                                                    for p in passages])
        return cls(fields, passages, config, understanding=understanding, descriptions=descriptions,
                   type_probabilities=type_probabilities)

    def __len__(self) -> int:
        return len(self._passages)

    def search(self, query: str, k: int = 5) -> list[Passage]:
        """The ``k`` best passages by BM25 alone, best first; only passages sharing at least one term with the query."""
        if not query or not query.strip() or k <= 0:
            return []
        scores = self.bm25_scores(query)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [self.passage_result(i, float(scores[i])) for i in top if scores[i] > 0]

    def retrieve(self, message: str, history: Sequence[str] = (), k: int = 3) -> RetrievalResult:
        """Understand ``message`` (already PII-masked) and rank passages for each of its core questions.

        ``history`` is the user's earlier masked messages, oldest first: a follow-up that names no focus ("and
        how is it treated?") is about the focus of the latest one that did. See ``ranking.RetrievalResult``:
        one ``SubQuestion`` per core question (text, foci with confidence, types, passages, ``answerable``),
        ``passages(k)`` to cite, and ``medlineplus_url`` (a MedlinePlus search) for what MedQuAD cannot answer.
        Never raises for odd text (empty, noise, another language): it returns a non-answerable result.
        """
        if self.understanding is None:
            raise ValueError("this index was loaded without its question understanding")
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        return ranking.retrieve(self, message, history, k)

    def bm25_scores(self, query: str) -> np.ndarray:
        """BM25 score of every passage: the document field plus the weighted focus-name field."""
        tokens = _tokenize([query], self._config.stopwords, self._stemmer)[0]
        scores = np.zeros(len(self), dtype=np.float32)
        for name, weight in (("document", 1.0), ("focus", self._config.focus_field_weight)):
            token_ids = self._fields[name].get_tokens_ids(tokens)
            if token_ids:
                scores += weight * self._fields[name].get_scores_from_ids(token_ids)
        return scores

    def description_scores(self, text: str) -> np.ndarray:
        """BM25 of ``text`` against each focus's own description (what its answers say it is, its symptoms and
        causes), in ``description_keys`` order: how "the sugar disease where your body stops making insulin" reaches
        diabetes."""
        if self._descriptions is None:
            return np.zeros(0, dtype=np.float32)
        bm25, keys = self._descriptions
        token_ids = bm25.get_tokens_ids(_tokenize([text], self._config.stopwords, self._stemmer)[0])
        return bm25.get_scores_from_ids(token_ids) if token_ids else np.zeros(len(keys), dtype=np.float32)

    @property
    def description_keys(self) -> list[str]:
        return self._descriptions[1] if self._descriptions is not None else []

    def description_position(self, key: str) -> int | None:
        """Where focus ``key``'s description is in ``description_keys``; None when it has none."""
        return self._description_position.get(key)

    def described_share(self, name: str) -> float:
        """The share of the focus descriptions that say every word of ``name``: high for a symptom many conditions
        have ("pain" 0.21, "cough" 0.03), low for a condition ("gout" 0.005)."""
        saying = self.descriptions_saying(name)
        return float(saying.mean()) if len(saying) else 0.0

    def descriptions_saying(self, name: str) -> np.ndarray:
        """Whether each focus description (``description_keys`` order) says every word of ``name`` (read-only:
        kept for the next message naming it, as each word costs a pass over every description)."""
        if self._descriptions is None:
            return np.zeros(0, dtype=bool)
        if name not in self._saying:
            saying = self._saying_all(self._descriptions[0], name)
            saying.setflags(write=False)
            self._saying[name] = saying
        return self._saying[name]

    def _saying_all(self, bm25: bm25s.BM25, name: str) -> np.ndarray:
        """Whether each document of ``bm25`` has every word of ``name`` (stemmed as indexed)."""
        token_ids = bm25.get_tokens_ids(_tokenize([name], self._config.stopwords, self._stemmer)[0])
        saying = np.full(bm25.scores["num_docs"], bool(token_ids))
        for token_id in set(token_ids):
            saying &= bm25.get_scores_from_ids([token_id]) > 0
        return saying

    def said_as_symptom(self, name: str) -> bool:
        """Whether MedQuAD's symptom answers say every word of ``name`` at least as often (as a share of them) as its
        cause and susceptibility answers do: "cough" (2.8% of symptom answers against 1.7% of cause answers) is
        said as a symptom, "smoking" (0.4% against 13.6%) and "diabetes" (5.6% against 14.1%) as causes."""
        if name not in self._said_as_symptom:
            saying = self._saying_all(self._fields["document"], name)
            if self._symptom_and_cause_passages is None:
                kinds = np.array([p["question_type"] for p in self._passages])
                self._symptom_and_cause_passages = [np.isin(kinds, group) for group in (_SYMPTOM_TYPES, _CAUSE_TYPES)]
            shares = [saying[group].mean() if group.any() else 0.0 for group in self._symptom_and_cause_passages]
            self._said_as_symptom[name] = bool(saying.any()) and shares[0] >= shares[1]
        return self._said_as_symptom[name]

    def passage(self, i: int) -> dict:
        return self._passages[i]

    def passage_result(self, i: int, score: float) -> Passage:
        return Passage(**self._passages[i], score=score)

    def page_sections(self, pair_id: str) -> list[Passage]:
        """Every section of the page ``pair_id`` is on, in page order (the pair itself included), with score 0."""
        return [self.passage_result(i, 0.0) for i in self._by_page.get(data.page_key(pair_id), [])]

    def pairs_of_focus(self, key: str) -> list[int]:
        """Indexes of the passages about one focus (``data.focus_key``)."""
        return self._by_focus.get(key, [])

    def type_probabilities(self, indexes: np.ndarray) -> np.ndarray:
        """Question-type probabilities of these passages' questions (computed for all of them at build)."""
        return self._type_probabilities[indexes]

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
            if self.understanding is not None:
                self.understanding.save(staging / _UNDERSTANDING)
                np.save(staging / _TYPE_PROBABILITIES, self._type_probabilities)
            if self._descriptions is not None:
                self._descriptions[0].save(staging / _DESCRIPTION, show_progress=False)
                (staging / _DESCRIPTION_KEYS).write_text(json.dumps(self._descriptions[1]))
            # Written last: a directory without a manifest is incomplete.
            manifest = {"key": self.key, "count": len(self), "settings": dataclasses.asdict(self._config),
                        "sha256": _checksums(staging)}
            (staging / _MANIFEST).write_text(json.dumps(manifest, indent=1))
            shutil.rmtree(directory, ignore_errors=True)
            os.replace(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # only left over when something above failed

    @classmethod
    def load(cls, directory: str | os.PathLike, key: str | None = None,
             encoder: SentenceEncoder | None = None) -> RetrievalIndex:
        """Load a saved index; raises ValueError (or OSError) when it is incomplete, inconsistent, for another key or
        built with another sentence encoder than ``encoder`` (default ``load_encoder()``)."""
        directory = Path(directory)
        manifest = json.loads((directory / _MANIFEST).read_text())
        if key is not None and manifest.get("key") != key:
            raise ValueError(f"index at {directory} was built for key {manifest.get('key')!r}, not {key!r}")
        # Readable but wrong bytes (an out-of-range array value, an emptied vocabulary) load without an error
        # and fail later or find nothing, so every file must match what was written.
        if manifest.get("sha256") != _checksums(directory):
            raise ValueError(f"index at {directory} does not match the checksums in its manifest")
        config = IndexSettings(**manifest["settings"])
        with open(directory / _PASSAGES, encoding="utf-8") as handle:
            passages = [json.loads(line) for line in handle]
        fields = {name: bm25s.BM25.load(directory / name, show_progress=False, verbosity=0) for name in _FIELDS}
        sizes = {len(passages), manifest["count"], *(bm25.scores["num_docs"] for bm25 in fields.values())}
        if len(sizes) != 1:
            raise ValueError(f"index at {directory} is inconsistent: document counts {sorted(sizes)}")
        if any(set(p) != set(_PASSAGE_FIELDS) for p in passages):
            raise ValueError(f"index at {directory} has malformed passages")
        understanding = Understanding.load(directory / _UNDERSTANDING, encoder or load_encoder())
        type_probabilities = np.load(directory / _TYPE_PROBABILITIES, allow_pickle=False)
        if type_probabilities.shape != (len(passages), len(understanding.types.classes)):
            raise ValueError(f"index at {directory} has passage types that do not match its passages")
        description_keys = json.loads((directory / _DESCRIPTION_KEYS).read_text())
        description_bm25 = bm25s.BM25.load(directory / _DESCRIPTION, show_progress=False, verbosity=0)
        if description_bm25.scores["num_docs"] != len(description_keys):
            raise ValueError(f"index at {directory} has focus descriptions that do not match their foci")
        return cls(fields, passages, config, manifest.get("key", ""), understanding,
                   (description_bm25, description_keys), type_probabilities)

    @classmethod
    def load_or_build(cls, data_dir: str | os.PathLike | None = None, progress: bool = False,
                      config: IndexSettings = IndexSettings(),
                      encoder: SentenceEncoder | None = None) -> RetrievalIndex:
        """The cached index for this MedQuAD tree and settings, built (and cached) on first use."""
        encoder = encoder or load_encoder()
        key = cache_key(data_dir, config, encoder.preset)
        directory = settings.cache_dir() / "retrieval" / key
        if directory.exists():
            try:
                return cls.load(directory, key, encoder)
            except Exception as error:  # any damage (truncated JSON, missing array, bad dtype) means rebuild
                log.warning("retrieval cache at %s is unreadable (%s); rebuilding it", directory, error)
        records, _ = data.load_records(data_dir, progress=progress)
        index = cls.build(records, config, progress=progress,
                          annotations=data.load_annotations(data_dir, progress=progress), encoder=encoder)
        index.key = key
        try:
            index.save(directory)
            _prune_other_keys(directory)
        except OSError as error:  # a read-only or full disk costs a rebuild next start, not the answer now
            log.warning("could not cache the retrieval index at %s (%s)", directory, error)
        return index




def _checksums(directory: Path) -> dict[str, str]:
    """SHA-256 of every file under ``directory`` except the manifest, by relative path."""
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file() and path.name != _MANIFEST}


def _prune_other_keys(keep: Path) -> None:
    """Drop indexes built for older data or settings: they can never be served again, and each is ~35 MB."""
    for sibling in keep.parent.iterdir():
        if sibling != keep and sibling.is_dir() and ".tmp-" not in sibling.name:
            shutil.rmtree(sibling, ignore_errors=True)
