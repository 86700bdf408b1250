"""The one sentence splitter: training targets (``modeling.tokens``), the model's answer clean-up
(``modeling.prompt``), the support check and the extract (``chat.grounding``) and the reports all cut text into
sentences the same way, so the model learns to end where the support check sees a sentence end."""

from __future__ import annotations

import functools
import re
from typing import Iterable, Sequence

# Words that end with a period without ending a sentence ("e.g. aspirin", "Dr. Smith", "vs. placebo").
ABBREVIATIONS = frozenset(
    "e.g i.e vs cf dr mr mrs ms prof st no nos fig figs approx dept jr sr inc ltd co u.s u.k ph.d m.d al "
    "mt ft vol ed eds ca".split()
)
# A candidate boundary: terminal punctuation (plus closing quotes/brackets), spaces, then something that can start
# a sentence; a line break; the start of a credit line (below). Periods inside numbers ("2.5") and words ("e.g.")
# are never followed by a space, so never split.
_BOUNDARY = re.compile(r"""(?<=[.!?])["'”’)\]]*\s+(?=["'“‘(\[]?[A-Z0-9])|\s*\n\s*|\s+(?=NIH: )""")


# The line that credits an agency at the end of 701 MedlinePlus summaries ("NIH: National Institute of Diabetes and
# Digestive and Kidney Diseases", "Centers for Disease Control and Prevention"): never shown, and a sentence of its
# own where it is glued to the last list item. The extract had quoted one in 8 of 580 answers to the written check
# messages.
_ATTRIBUTION = re.compile(r"NIH: ")  # matched at a sentence start
_CREDIT_CAPITALS = 0.75  # "Dept. of Health and Human Services Office on Women's Health": 6 of its 7 content words


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, whitespace-trimmed; robust to abbreviations, initials and decimals."""
    sentences, start = [], 0
    for boundary in _BOUNDARY.finditer(text or ""):
        before = text[start: boundary.start()].rstrip()
        last_word = before.rsplit(None, 1)[-1] if before.split() else ""
        stem = last_word.rstrip(".!?\"'”’)]").lstrip("(\"'“‘[").lower()
        abbreviated = stem in ABBREVIATIONS or (len(stem) == 1 and stem.isalpha())  # "J. Smith", "vitamin B. ..."
        if "\n" not in boundary.group() and before.endswith(".") and abbreviated \
                and not _ATTRIBUTION.match(text, boundary.end()):
            continue
        if before.strip():
            sentences.append(before.strip())
        start = boundary.end()
    tail = (text or "")[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


# ------------------------------------------------------------------------------------------ words and answer sentences
_WORD = re.compile(r"[a-z0-9]+(?:['’.\-][a-z0-9]+)*")
NEGATIONS = frozenset("no not nor never none nothing without cannot neither nobody noone nowhere".split())
# What a sentence needs to be shown as an answer on its own (``is_answer_sentence``): the support check
# (``gpt2chat.chat.grounding``) accepts a copied sentence exactly when it has this many words (its copied-span density
# equals its length, the threshold is 4.5) and content words (``SupportThresholds.min_content_words``).
MIN_ANSWER_WORDS = 5
MIN_CONTENT_WORDS = 2


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits, with inner apostrophes, hyphens and decimal points)."""
    return _WORD.findall((text or "").lower())


@functools.lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop words (the Glasgow IR list) without the negations."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) - NEGATIONS


def content_words(tokens: Iterable[str]) -> list[str]:
    stops = stop_words()
    return [t for t in tokens if t not in stops]


def is_question(sentence: str) -> bool:
    """A question-like heading ("What are the signs of glaucoma?"): never an answer, whatever it copies."""
    return sentence.rstrip().endswith("?")



def is_answer_sentence(sentence: str) -> bool:
    """Whether ``sentence``, copied verbatim, can be shown as an answer sentence: the support check accepts it
    against itself (at least ``MIN_ANSWER_WORDS`` words, ``MIN_CONTENT_WORDS`` content words), it is not a question
    and its brackets close. "Yes.", "Nutrition.", "What is glaucoma?" or "(Watch the video to learn more about
    glaucoma." (half of a parenthesis the splitter cut) or a credit line ("NIH: National Cancer Institute") copied
    from a passage can only be dropped, so neither copy decoding nor the extract nor the model's selection ever
    picks them."""
    tokens = words(sentence)
    brackets_close = sentence.count("(") == sentence.count(")") and sentence.count("[") == sentence.count("]")
    return (brackets_close and not is_question(sentence) and not is_credit_line(sentence)
            and len(tokens) >= MIN_ANSWER_WORDS and len(content_words(tokens)) >= MIN_CONTENT_WORDS)


def is_credit_line(sentence: str) -> bool:
    """An agency credited for a page ("NIH: National Cancer Institute", "Food and Drug Administration"): no closing
    punctuation, and (nearly) every content word capitalised."""
    if sentence.rstrip()[-1:] in ".!?:;)\"'":
        return False
    content = [w for w in re.findall(r"[A-Za-z][\w'’.-]*", sentence) if w.lower() not in stop_words()]
    return bool(content) and sum(w[0].isupper() for w in content) >= _CREDIT_CAPITALS * len(content)


def answer_candidates(passages: Sequence[str], *, max_chars: int = 600,
                      per_passage: int | None = None) -> list[tuple[int, int, str]]:
    """(passage, sentence number, text) of every sentence that may be shown as an answer sentence
    (``is_answer_sentence``, at most ``max_chars`` long), the first ``per_passage`` of each passage (None: all): the
    one candidate list for the extract, the model's sentence selection and its training."""
    candidates = []
    for p, passage in enumerate(passages):
        kept = 0
        for s, sentence in enumerate(split_sentences(passage)):
            if per_passage is not None and kept >= per_passage:
                break
            if len(sentence) <= max_chars and is_answer_sentence(sentence):
                candidates.append((p, s, sentence))
                kept += 1
    return candidates
