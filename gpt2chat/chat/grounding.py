"""Grounding checks: is each sentence of an answer supported by the cited NIH passages? Plus the no-model
answers (lead-k and a question-focused extract) and a definition of a degenerate answer.

Support check (per answer sentence, against each cited passage; the sentence is kept when one passage supports it):

* **K-Precision** (Adlakha et al. 2023, "Evaluating Correctness and Faithfulness of Instruction-Following Models
  for Question Answering", McGill-NLP/instruct-qa): the share of the sentence's tokens (a multiset) found in the
  passage. instruct-qa drops only articles; here all English stop words (scikit-learn's list) are dropped except
  negations, because function words are in every passage and would let word salad score high, while "not"/"no"
  flip a sentence's meaning and must be matched.
* **Extractive fragment coverage and density** (Grusky et al. 2018, "Newsroom", section 4.1): the greedy shared
  fragments F between the sentence S and the passage; coverage = sum |f| / |S|, density = sum |f|^2 / |S|.
  Coverage is the share of words copied, density the mean length of the copied span a word belongs to: a
  sentence that reshuffles the passage's words has K-Precision 1 but density near 1.

The thresholds (``SupportThresholds``) were chosen by ``python -m gpt2chat.grounding --calibrate`` on MedQuAD
(the measured precision and recall are in its output and in the comments below).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import re
from typing import Iterable, Sequence

import numpy as np

from gpt2chat.corpus.sentences import (NEGATIONS, answer_candidates, content_words, is_answer_sentence, is_question,
                                       split_sentences, stop_words, words)
from gpt2chat.search.question_types import cue
from gpt2chat.search.understanding import american_spelling

__all__ = ["Extract", "ExtractConfig", "answer_candidates", "answer_openers", "choose_sentences", "Verification",
           "Vocabulary", "adds_to_previous", "extractive_answer",
           "has_type_cue", "is_answer_sentence", "is_degenerate", "lead_k", "lead_words", "refers_back",
           "split_sentences", "stands_in_answer", "verify"]

# ------------------------------------------------------------------------------------------ sentences and words


# ------------------------------------------------------------------------------------------ the support check
def k_precision(sentence_tokens: Sequence[str], passage_tokens: Sequence[str]) -> float:
    """Share of the sentence's content tokens (multiset) found in the passage's; 0 for a sentence without any."""
    sentence = collections.Counter(content_words(sentence_tokens))
    if not sentence:
        return 0.0
    common = sentence & collections.Counter(content_words(passage_tokens))
    return sum(common.values()) / sum(sentence.values())


def fragments(summary: Sequence[str], article: Sequence[str]) -> list[int]:
    """Lengths of Newsroom's greedy extractive fragments: at each summary position, the longest span that also
    occurs in the article; the next search starts after it."""
    positions: dict[str, list[int]] = collections.defaultdict(list)
    for j, token in enumerate(article):
        positions[token].append(j)
    lengths, i = [], 0
    while i < len(summary):
        best = 0
        for j in positions.get(summary[i], ()):
            n = 0
            while i + n < len(summary) and j + n < len(article) and summary[i + n] == article[j + n]:
                n += 1
            best = max(best, n)
        if best:
            lengths.append(best)
        i += max(best, 1)
    return lengths


@dataclasses.dataclass(frozen=True)
class SupportThresholds:
    """A sentence is supported when all hold against one passage. Chosen by ``python -m gpt2chat.grounding
    --calibrate`` (highest recall at precision >= 0.99 on 3,306 validation examples, ties to the stricter): every
    word in the passage, every content word too, and copied spans 4.5 words long on average. On the test split's
    3,292 examples: precision 0.994, recall 0.944; accepted: copies and compressed spans 100%, spans with one or
    two words left out 81%, other foci's sentences 0.3%, entity swaps 0.3%, passage fragments spliced together
    1.8%, shuffled passage sentences 0.2%, passage-word salad 0%, and inserted negations 27% (a known limit of
    token-overlap checks). A sentence under 5 words is never supported (density <= its length): 1.1% of
    MedQuAD's sentences are that short."""

    k_precision: float = 1.0
    coverage: float = 1.0
    density: float = 4.5
    # "The signs." or "The condition." is copied but says nothing; 0.23% of MedQuAD's sentences have under 2.
    min_content_words: int = 2


DEFAULT_THRESHOLDS = SupportThresholds()


@dataclasses.dataclass(frozen=True)
class SentenceSupport:
    text: str
    k_precision: float
    coverage: float
    density: float
    passage: int | None  # index of the passage that supports it (the best-scoring one when unsupported)
    supported: bool


def sentence_support(
    sentence: str, passage_tokens: Sequence[Sequence[str]], thresholds: SupportThresholds = DEFAULT_THRESHOLDS
) -> SentenceSupport:
    """Scores of one sentence against each tokenized passage; the supporting (or best) passage's."""
    tokens = words(sentence)
    best = SentenceSupport(sentence, 0.0, 0.0, 0.0, None, False)
    if not tokens:
        return best
    enough_content = len(content_words(tokens)) >= thresholds.min_content_words
    for index, passage in enumerate(passage_tokens):
        lengths = fragments(tokens, passage)
        coverage = sum(lengths) / len(tokens)
        density = sum(n * n for n in lengths) / len(tokens)
        precision = k_precision(tokens, passage)
        supported = enough_content and (
            precision >= thresholds.k_precision and coverage >= thresholds.coverage
            and density >= thresholds.density
        )
        candidate = SentenceSupport(sentence, precision, coverage, density, index, supported)
        if (candidate.supported, precision + coverage) > (best.supported, best.k_precision + best.coverage):
            best = candidate
    return best


@dataclasses.dataclass(frozen=True)
class Verification:
    sentences: tuple[SentenceSupport, ...]

    @property
    def kept(self) -> list[SentenceSupport]:
        return [s for s in self.sentences if s.supported]

    @property
    def dropped(self) -> list[SentenceSupport]:
        return [s for s in self.sentences if not s.supported]

    @property
    def support_rate(self) -> float:
        """Share of the answer's sentences that are supported (0 for an answer without sentences)."""
        return len(self.kept) / len(self.sentences) if self.sentences else 0.0

    @property
    def text(self) -> str:
        """The answer as the user may see it: the supported sentences only, in order."""
        return " ".join(s.text for s in self.kept)

    @property
    def supporting_passages(self) -> list[int]:
        return sorted({s.passage for s in self.kept if s.passage is not None})

    def needs_fallback(self, min_support_rate: float = 0.5, vocabulary: "Vocabulary | None" = None) -> bool:
        """Too little is left to show: the kept text is degenerate, or most of what the model wrote was
        unsupported (then even the kept sentences are more likely chance copies than an answer)."""
        return self.support_rate < min_support_rate or bool(is_degenerate(self.text, vocabulary))


def verify(
    answer: str, passages: Sequence[str], thresholds: SupportThresholds = DEFAULT_THRESHOLDS
) -> Verification:
    """Check every sentence of ``answer`` against the cited ``passages`` (texts). A sentence that refers back counts
    as supported only where it stands in its passage (``stands_in_answer``): a passage supports what it says there."""
    passage_tokens = [words(p) for p in passages]
    passage_sentences: dict[int, list[list[str]]] = {}  # tokenized sentences of a passage, split when first needed
    checked, previous = [], None  # previous: (passage, position) of the last supported sentence
    for sentence in split_sentences(answer):
        support = sentence_support(sentence, passage_tokens, thresholds)
        if support.supported:
            if support.passage not in passage_sentences:
                passage_sentences[support.passage] = [words(t) for t in split_sentences(passages[support.passage])]
            # The passage sentence it copies: the one that supports it best, as its passages support an answer.
            position = sentence_support(sentence, passage_sentences[support.passage], thresholds).passage or 0
            after = previous[1] if previous and previous[0] == support.passage else None
            if stands_in_answer(sentence, position, after):
                previous = (support.passage, position)
            else:
                support = dataclasses.replace(support, supported=False)
        checked.append(support)
    return Verification(tuple(checked))


# A sentence that points back to what came before it means what its passage means only right after the sentence it
# follows there: "While these treatments may save remaining vision, they do not improve sight already lost from
# glaucoma." was the whole reply to "How is glaucoma treated?" in 11 of 20 sampled replies of the quick-start model.
# Pointing back: a connective opening the sentence, or a pronoun or demonstrative among its first words, except "this
# condition" and the like (the cited page's topic, which the question names) and "such as". Of MedQuAD's answer
# sentences, 20.6% of those after the first point back so, and 7.3% of first sentences (whose "it" is the topic).
_CONNECTIVES = frozenset("however but also additionally moreover furthermore therefore thus otherwise instead still "
                         "yet and or so then nevertheless similarly likewise conversely hence consequently "
                         "besides".split())
# Connectives of several words: "As a result, the signs and symptoms vary ..." answered "What are the symptoms of
# Marfan syndrome?".
_CONNECTIVE_PHRASES = tuple(tuple(p.split()) for p in (
    "as a result", "as a consequence", "in addition", "for example", "for instance", "in contrast",
    "on the other hand", "in other words", "even so"))
_BACK_REFERENCES = frozenset("this these those that's they them their theirs it its it's such he she his her him "
                             "both either neither latter former".split())
# "This condition" is the page's topic; "these conditions" are ones a sentence before listed ("These conditions
# include runny nose, sinus infections, ..." opened an asthma answer).
_PAGE_TOPIC = frozenset("condition disorder disease syndrome cancer tumor type form".split())
REFERENCE_WINDOW = 4  # first words searched for a back reference
# "Other signs and symptoms of anemia include ..." and "Many are medicines ..." opened answers to "What are the
# symptoms of anemia?" and "How is psoriasis treated?": an opener that continues a list, and a quantifier standing
# alone as the subject (followed by a verb, not a noun).
_CONTINUING_OPENERS = frozenset("other another others".split())
_QUANTIFIERS = frozenset("many some most several few all each one".split())
_VERBS_AFTER_PRONOUN = frozenset("are is were was have has can may might will would do does also include".split())


def refers_back(sentence: str) -> bool:
    """Whether ``sentence`` opens with a reference to an earlier sentence ("However, ...", "These cells ...")."""
    tokens = words(sentence)[: REFERENCE_WINDOW + 1]
    if tokens and tokens[0] in _CONNECTIVES or any(tuple(tokens[:len(p)]) == p for p in _CONNECTIVE_PHRASES):
        return True
    if tokens and (tokens[0] in _CONTINUING_OPENERS
                   or (tokens[0] in _QUANTIFIERS and len(tokens) > 1 and tokens[1] in _VERBS_AFTER_PRONOUN)):
        return True
    for word, following in zip(tokens[:REFERENCE_WINDOW], [*tokens[1:], ""]):
        if (word == "this" and following in _PAGE_TOPIC) or (word == "such" and following == "as"):
            continue
        if word in _BACK_REFERENCES:
            return True
    return False


_ADDITIVE_WORDS = frozenset("also too".split())
_ADDITIVE_PHRASES = (("as", "well"), ("in", "addition"))


def adds_to_previous(sentence: str) -> bool:
    """Whether ``sentence`` adds to what the one before it says ("Good hygiene, including hand washing, can also
    help." after "The main way to keep from getting the flu is to get a yearly flu vaccine.")."""
    tokens = words(sentence)
    return (bool(_ADDITIVE_WORDS.intersection(tokens))
            or any(pair in _ADDITIVE_PHRASES for pair in zip(tokens, tokens[1:])))


def stands_in_answer(sentence: str, position: int, previous: int | None) -> bool:
    """Whether the passage's sentence number ``position`` may be shown after its sentence number ``previous`` (None:
    it opens the answer or follows another passage's sentence): it opens its passage, follows the sentence it may
    refer back to, or does not refer back. The one rule for model answers (``verify``), copy decoding and
    extracts."""
    return position == 0 or previous == position - 1 or not refers_back(sentence)


# ------------------------------------------------------------------------------------------ answers without a model
def lead_k(passage: str, k: int = 3) -> str:
    """The passage's first ``k`` sentences (the classic summarisation baseline)."""
    return " ".join(split_sentences(passage)[:k])


def lead_words(passage: str, n: int) -> str:
    """The passage's first ``n`` whitespace-separated words: the lead baseline at exactly an answer's length."""
    return " ".join((passage or "").split()[:n])


# Words that answers of each MedQuAD question type use, to rank passage sentences for the extract (a sentence about
# treatment for "How is X treated?"); the support check never uses them. The type a question asks is
# ``search.question_types.cue``, as for retrieval and the follow-up suggestions (the extract had patterns of its own:
# --calibrate-extract 50.72 | 8.16 -> 50.76 | 8.06; every type a long message's cues name, 50.75 | 7.84, as its
# story sentences add off-type words). Not "avoid": it opened "How can I prevent the flu?" with advice for the
# sick ("... stay home and avoid contact with others"); without it, 50.75 | 8.15 -> 50.72 | 8.15.
# "relieve": "Stretching or gently massaging the muscle can relieve this pain." answers what to do about cramps
# (`answer_quality --calibrate-extract` 51.01 | 7.87 -> 51.05 | 7.86).
_TREATMENT_WORDS = ("treatment treatments treated treat therapy therapies surgery medication medications medicines "
                    "relieve drugs managed management")
_INHERITANCE_WORDS = "inherited inheritance autosomal dominant recessive pattern gene mutations"
ANSWER_WORDS = {qtype: tuple(words.split()) for qtype, words in {
    "treatment": _TREATMENT_WORDS,
    "considerations": _TREATMENT_WORDS,
    "symptoms": "symptoms signs include characterized features experience",
    "causes": "caused causes cause mutations due result results risk",
    "inheritance": _INHERITANCE_WORDS,
    "genetic changes": _INHERITANCE_WORDS,
    "exams and tests": "diagnosis diagnosed diagnose test tests testing exam examination imaging",
    "prevention": "prevent prevention prevented reduce risk vaccine vaccines vaccination",
    "outlook": "prognosis outlook survival expectancy",
    "frequency": "affects prevalence estimated common rare people worldwide",
    "susceptibility": "risk higher increased likely",
    "research": "research clinical trials studies researchers",
    "complications": "complications lead",
    "stages": "stage stages",
}.items()}


def has_type_cue(question: str) -> bool:
    """Whether ``question`` asks something specific (treatment, symptoms, ...) rather than what a thing is."""
    return cue(question) in ANSWER_WORDS


def type_cues(question: str) -> frozenset[str]:
    """The answer words of the question type ``question`` asks (empty: it asks what a thing is)."""
    return frozenset(ANSWER_WORDS.get(cue(question), ()))


@functools.lru_cache(maxsize=1)
def _porter():
    from nltk.stem.porter import PorterStemmer  # nltk comes with rouge-score

    return PorterStemmer()


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    return _porter().stem(word)


def question_terms(question: str, cue_weight: float) -> dict[str, float]:
    """Query weights: the question's content words (1) and the cue words of its question type (``cue_weight``)."""
    terms = {t: 1.0 for t in content_words(words(question))}
    for word in sorted(type_cues(question)):
        terms.setdefault(word, cue_weight)
    return terms


def bm25_scores(query: dict[str, float], documents: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75):
    """Okapi BM25 of each tokenized document for weighted query terms, with the documents as the collection."""
    n = len(documents)
    if not n:
        return np.zeros(0)
    average = max(sum(len(d) for d in documents) / n, 1.0)
    frequency = collections.Counter(t for d in documents for t in set(d))
    scores = np.zeros(n)
    for i, document in enumerate(documents):
        counts = collections.Counter(document)
        norm = k1 * (1 - b + b * len(document) / average)
        for term, weight in query.items():
            tf = counts.get(term, 0)
            if tf:
                idf = math.log(1 + (n - frequency[term] + 0.5) / (frequency[term] + 0.5))
                scores[i] += weight * idf * tf * (k1 + 1) / (tf + norm)
    return scores


@dataclasses.dataclass(frozen=True)
class Extract:
    text: str
    sentences: tuple[tuple[int, int], ...]  # (passage index, sentence index), in reading order

    @property
    def passages(self) -> list[int]:
        return sorted({p for p, _ in self.sentences})


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """Weights swept by ``--calibrate`` on 400 validation questions, each with all its focus's answers as passages in
    a random order (ROUGE-L against the gold answer; lead-3 24.5): cue weight 0 / 0.5 / 1 / 1.5 / 2 gave 25.6 /
    32.8 / 35.4 / 36.1 / 36.4, flattening out (test split, default weights: 32.2 vs lead-3 21.5). A prior for a
    passage's first sentence on every question (0.1 to 0.5) cost 0.8 to 2 ROUGE-L in an earlier such sweep; on
    questions without a type cue only, it helps (``lead_weight``)."""

    cue_weight: float = 1.5  # a cue word of the question's type weighs 1.5 question words
    # Prefer the better-retrieved passages (the reply cites the first): -0.1 ROUGE-L at this cue weight in that sweep
    # (up to -0.7 at others), where the passage order is random by construction; retrieval's order is not.
    rank_weight: float = 0.1
    # A question with no type cue ("What is glaucoma?") asks what the thing is, and NIH pages open with that: its
    # extract prefers each passage's first sentence. 0 / 0.2 / 0.5 / 1 on such validation questions: ROUGE-L
    # 25.4 / 26.0 / 26.2 / 26.1, the best sentence of the gold passage its lead in 52 / 75 / 85 / 99%; test at
    # 0.5: 23.7 -> 24.8, 47 -> 85% (--calibrate). Without it "What is glaucoma?" opened on "A comprehensive eye
    # exam can tell if you have glaucoma." (the shortest sentence naming it).
    lead_weight: float = 0.5
    # Over a whole page, the sections retrieval cited answer the question far more often than the page's others (see
    # the engine): their sentences get this prior, and only their first sentences the lead prior.
    cited_weight: float = 0.5
    # A question of a type ("How can I prevent the flu?") over a section written for another question (MedlinePlus's
    # one "What is flu?" section): a sentence there with none of the type's cue words has its relevance multiplied by
    # this, 0 leaving it out, so a short sentence that only names the focus ("Flu almost never causes an upset
    # stomach.") does not join the vaccine sentence. ``python -m gpt2chat.answer_quality --calibrate-extract``,
    # ROUGE-2 on 200 validation questions | 161 LiveQA train messages (stemmed words): 1 / 0.5 / 0 scored
    # 50.75 | 7.54, 50.75 | 7.47, 50.75 | 7.31 (44 words against 47). 0 is chosen although it is 0.2 lower on the
    # messages: it never shows a sentence of another type. Applied to every section alike (before stemming), 0 cost
    # 6.5 on validation: a section of the asked type needs its uncued sentences.
    uncued_factor: float = 0.0
    # ... except a sentence that adds to the chosen one before it (``adds_to_previous``): it stays a candidate, taken
    # only right after that sentence. Without it "How can I prevent the flu?" lost "Good hygiene, including hand
    # washing, can also help." after the vaccine sentence. --calibrate-extract, as above: 50.75 | 7.31 with it,
    # 50.75 | 7.20 without.
    continuations: bool = True
    # Match words by their Porter stem ("symptom" for "symptoms"): without it "The most common symptom of anemia is
    # fatigue." scored 0.44 where "Other signs and symptoms of anemia include ..." scored 6.6. On the calibration
    # sets it is even: 50.75 | 7.31 stemmed, 51.01 | 7.40 not (within one question's worth on either set).
    stem: bool = True


def extractive_answer(
    question: str, passages: Sequence[str], max_sentences: int = 3, max_chars: int = 600,
    config: ExtractConfig = ExtractConfig(), per_passage: int | None = None, cited: int | None = None,
    passage_questions: Sequence[str] | None = None,
) -> Extract:
    """The (at most ``max_sentences``) passage sentences most relevant to ``question``, whole, in passage order,
    within ``max_chars`` characters in all.

    Score = BM25 with the question (and its question-type cues), normalised to [0, 1] over the candidates, plus a
    passage-rank prior, plus a prior for each passage's first sentence when the question has no type cue. Only
    sentences that can be shown are candidates (``is_answer_sentence``: no headings, questions or fragments), and
    one that refers back only with the one before it (``choose_sentences``); a sentence longer than ``max_chars`` is
    never cut, only skipped. ``passage_questions``: the question each passage answers, so that a passage written for
    another type of question keeps only the sentences of the asked type (``ExtractConfig.uncued_factor``)."""
    candidates = answer_candidates(passages, max_chars=max_chars, per_passage=per_passage)
    if not candidates:
        return Extract("", ())
    terms, cues = question_terms(question, config.cue_weight), type_cues(question)
    off_type = [not cues.intersection(type_cues(q)) for q in passage_questions] if passage_questions else []
    tokens = [words(c[2]) for c in candidates]
    if config.stem:
        tokens = [[stem(t) for t in sentence] for sentence in tokens]
        stemmed: dict[str, float] = {}
        for term, weight in terms.items():  # a question word and a cue word of one stem: the larger weight
            stemmed[stem(term)] = max(weight, stemmed.get(stem(term), 0.0))
        terms = stemmed
        cues = frozenset(stem(c) for c in cues)
    # "anaemia" asks about a page that says "anemia": a question word no sentence has, in American spelling
    said = {t for sentence in tokens for t in sentence}
    terms = {american_spelling(t) if t not in said and american_spelling(t) in said else t: weight
             for t, weight in terms.items()}
    relevance = bm25_scores(terms, tokens)
    uncued = np.asarray([bool(cues) and off_type[c[0]] and not cues.intersection(t)
                         for c, t in zip(candidates, tokens)]) if off_type else np.zeros(len(tokens), bool)
    follows = np.zeros(len(candidates), bool)  # taken only right after its predecessor
    if config.continuations and uncued.any():
        cued = {c[:2] for c, u in zip(candidates, uncued) if not u}
        follows = np.asarray([u and (c[0], c[1] - 1) in cued and adds_to_previous(c[2])
                              for c, u in zip(candidates, uncued)])
        uncued &= ~follows
    if uncued.any() and not uncued.all():
        if config.uncued_factor == 0:
            candidates, relevance, follows = ([c for c, u in zip(candidates, uncued) if not u], relevance[~uncued],
                                              follows[~uncued])
        else:
            relevance = np.where(uncued, relevance * config.uncued_factor, relevance)
    if relevance.max() > 0:
        relevance = relevance / relevance.max()
    lead = config.lead_weight if not has_type_cue(question) else 0.0
    cited = len(passages) if cited is None else cited  # the first ``cited`` passages are the cited sections
    scores = [r + config.rank_weight / (1 + p) + (config.cited_weight if p < cited and cited < len(passages) else 0.0)
              + (lead if s == 0 and p < cited else 0.0) for r, (p, s, _) in zip(relevance, candidates)]
    return choose_sentences(candidates, scores, max_sentences=max_sentences, max_chars=max_chars, follows=follows)


def choose_sentences(candidates: Sequence[tuple[int, int, str]], scores: Sequence[float], *, max_sentences: int,
                     max_chars: int, min_score: float | None = None, follows: Sequence[bool] = ()) -> Extract:
    """The best-scored candidates, whole, in passage order: at most ``max_sentences`` within ``max_chars`` in all,
    and (after the first) only those scoring at least ``min_score``. A sentence that refers back (``stands_in_answer``)
    or that ``follows`` marks is taken only with the one before it: it waits for it, and is taken right after it
    (before, one ranked above its predecessor was lost: --calibrate-extract 50.41 | 7.17 -> 50.75 | 7.31)."""
    chosen, used = [], 0
    waiting: dict[tuple[int, int], int] = {}  # (passage, sentence) -> the candidate waiting for that sentence
    for best in sorted(range(len(candidates)), key=lambda i: -scores[i]):
        if chosen and min_score is not None and scores[best] < min_score:
            break
        pending = [best]
        while pending and len(chosen) < max_sentences:
            i = pending.pop()
            p, position, sentence = candidates[i]
            after = position - 1 if any(candidates[j][:2] == (p, position - 1) for j in chosen) else None
            if after is None and (not stands_in_answer(sentence, position, None) or (i < len(follows) and follows[i])):
                waiting[(p, position - 1)] = i
                continue
            length = len(sentence) + (1 if chosen else 0)
            repeated = any(candidates[j][2] == sentence for j in chosen)  # pages repeat sentences across sections
            if used + length <= max_chars and not repeated:
                chosen.append(i)
                used += length
                if (p, position) in waiting:
                    pending.append(waiting.pop((p, position)))
        if len(chosen) >= max_sentences:
            break
    chosen.sort(key=lambda i: candidates[i][:2])
    return Extract(" ".join(candidates[i][2] for i in chosen), tuple(candidates[i][:2] for i in chosen))


def answer_openers(question: str, passage: str) -> frozenset[tuple[str, ...]]:
    """The sentence of ``passage`` a model answer to ``question`` opens with, as a word tuple: the one the
    question-focused extract ranks first (the lead when it ranks none); the model chooses how far to go on.

    The 16M quick-start model picks the wrong sentence when it may choose: free to open on any passage sentence,
    it answered "What is Moyamoya disease?" with "In an attempt to compensate, new networks of small, fragile blood
    vessels form."; free to choose between the lead and the extract's picks, "Is spinal muscular atrophy inherited?"
    with what the parents of an affected child carry, and "What is psoriasis?" with "A problem with your immune
    system causes psoriasis.". Opening on the extract's first choice changed 44 of 100 seeded grounded test answers
    (``benchmarks/answer_openers.py``); read side by side (not blind), 35 were better answers, 5 worse, 4 as good;
    ROUGE-L against the gold answer, 0.7 below the lead at the same length, was 0.9 below it."""
    best = extractive_answer(question, [passage], max_sentences=1).sentences
    sentences = split_sentences(passage)
    if best:
        return frozenset({tuple(words(sentences[best[0][1]]))})
    lead = sentences[:1]
    return frozenset(tuple(words(s)) for s in lead if is_answer_sentence(s) and stands_in_answer(s, 0, None))


# ------------------------------------------------------------------------------------------ degenerate answers
class Vocabulary:
    """Words and word bigrams of a reference corpus (MedQuAD answers), for the word-salad test. Bigrams are kept
    as sorted 64-bit ``hash`` values (6 MB for MedQuAD instead of ~100 MB of strings); Python salts ``hash`` per
    process, so a vocabulary is built in the process that uses it and never saved."""

    def __init__(self, vocabulary: Iterable[str], bigram_hashes: np.ndarray):
        self.words = frozenset(vocabulary)
        self._bigrams = np.unique(np.asarray(bigram_hashes, dtype=np.int64))

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "Vocabulary":
        vocabulary, hashes = set(), []
        for text in texts:
            tokens = words(text)
            vocabulary.update(tokens)
            hashes.extend(hash(pair) for pair in zip(tokens, tokens[1:]))
        return cls(vocabulary, np.asarray(hashes, dtype=np.int64))

    def unseen_bigram_rate(self, tokens: Sequence[str]) -> float:
        pairs = np.asarray([hash(pair) for pair in zip(tokens, tokens[1:])], dtype=np.int64)
        if not len(pairs):
            return 0.0
        found = np.searchsorted(self._bigrams, pairs)
        found = np.minimum(found, len(self._bigrams) - 1)
        return float(np.mean(self._bigrams[found] != pairs)) if len(self._bigrams) else 1.0

    def unknown_word_rate(self, tokens: Sequence[str]) -> float:
        return sum(t not in self.words for t in tokens) / len(tokens) if tokens else 0.0


@dataclasses.dataclass(frozen=True)
class DegeneracyThresholds:
    """The 99.5th percentiles of 731 validation answers cut to 600 characters, against a vocabulary of the train
    split's answers (``--calibrate``). On the test split they flag 1.6% of the 812 real answers (mostly long
    symptom lists) and 91% of the same answers with their words shuffled."""

    min_words: int = 5
    repetition: float = 0.22  # seq-rep-4 (Welleck et al. 2020): 1 - distinct word 4-grams / word 4-grams
    unknown_words: float = 0.13  # share of words not in the vocabulary
    unseen_bigrams: float = 0.47  # share of adjacent word pairs never seen in the vocabulary's corpus


@dataclasses.dataclass(frozen=True)
class Degeneracy:
    reason: str | None  # None: not degenerate

    def __bool__(self) -> bool:
        return self.reason is not None


def repetition_rate(tokens: Sequence[str], n: int = 4) -> float:
    grams = list(zip(*(tokens[i:] for i in range(n))))
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def is_degenerate(
    text: str, vocabulary: Vocabulary | None = None, thresholds: DegeneracyThresholds = DegeneracyThresholds()
) -> Degeneracy:
    """Why ``text`` is not worth showing, or ``Degeneracy(None)`` (falsy) when it is fine. In order: empty; under
    ``min_words`` words; repeated 4-grams above ``repetition``; and, with a ``vocabulary``, word salad: too many
    unknown words or too many word pairs that never occur in the vocabulary's corpus."""
    tokens = words(text)
    if not tokens:
        return Degeneracy("empty")
    if len(tokens) < thresholds.min_words:
        return Degeneracy(f"under {thresholds.min_words} words")
    if repetition_rate(tokens) > thresholds.repetition:
        return Degeneracy("repeated n-grams")
    if vocabulary is not None:
        if vocabulary.unknown_word_rate(tokens) > thresholds.unknown_words:
            return Degeneracy("out-of-vocabulary words")
        if vocabulary.unseen_bigram_rate(tokens) > thresholds.unseen_bigrams:
            return Degeneracy("word salad")
    return Degeneracy(None)
