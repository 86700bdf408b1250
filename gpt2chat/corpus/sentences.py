"""The one sentence splitter: training targets (``modeling.tokens``), the model's answer clean-up
(``modeling.prompt``), the support check and the extract (``chat.grounding``) and the reports all cut text into
sentences the same way, so the model learns to end where the support check sees a sentence end."""

from __future__ import annotations

import re

# Words that end with a period without ending a sentence ("e.g. aspirin", "Dr. Smith", "vs. placebo").
_ABBREVIATIONS = frozenset(
    "e.g i.e vs cf dr mr mrs ms prof st no nos fig figs approx dept jr sr inc ltd co u.s u.k ph.d m.d al "
    "mt ft vol ed eds ca".split()
)
# A candidate boundary: terminal punctuation (plus closing quotes/brackets), spaces, then something that can start
# a sentence. Periods inside numbers ("2.5") and words ("e.g.") are never followed by a space, so never split.
_BOUNDARY = re.compile(r"""(?<=[.!?])["'”’)\]]*\s+(?=["'“‘(\[]?[A-Z0-9])|\s*\n\s*""")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` in order, whitespace-trimmed; robust to abbreviations, initials and decimals."""
    sentences, start = [], 0
    for boundary in _BOUNDARY.finditer(text or ""):
        before = text[start: boundary.start()].rstrip()
        last_word = before.rsplit(None, 1)[-1] if before.split() else ""
        stem = last_word.rstrip(".!?\"'”’)]").lstrip("(\"'“‘[").lower()
        if "\n" not in boundary.group() and before.endswith(".") and (
            stem in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha())  # "J. Smith", "vitamin B. ..."
        ):
            continue
        if before.strip():
            sentences.append(before.strip())
        start = boundary.end()
    tail = (text or "")[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences
