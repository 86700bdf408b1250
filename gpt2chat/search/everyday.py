"""Everyday words for what MedQuAD says in medical words, read from ``resources/everyday_words.tsv``.

MedQuAD's answers never say "pee", "tummy" or "throw up", so a message in those words shares no term with the page
that answers it, and a word like "burning" names the wrong focus (Burns). ``EverydayWords.medical`` rewrites the
message into MedQuAD's words before it is understood: "it burns when i pee" -> "it painful urination".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from gpt2chat import settings

RULES = settings.PACKAGE_DIR / "resources" / "everyday_words.tsv"


class EverydayWords:
    def __init__(self, rules: Sequence[tuple[re.Pattern, str]]):
        self.rules = tuple(rules)  # applied in order: a longer phrase is rewritten before the words in it

    @classmethod
    def load(cls, path: Path = RULES) -> EverydayWords:
        """The rules of ``path``: lines "regular expression<TAB>medical words"; blank lines and "#" comments skipped.
        A malformed line is a ValueError naming it."""
        rules = []
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            pattern, _, words = line.partition("\t")
            if not words.strip():
                raise ValueError(f"{path}:{number}: expected 'expression<TAB>medical words'")
            try:
                rules.append((re.compile(rf"\b(?:{pattern})\b", re.IGNORECASE), words.strip()))
            except re.error as error:
                raise ValueError(f"{path}:{number}: {error}") from None
        return cls(rules)

    def medical(self, text: str) -> tuple[str, frozenset[str]]:
        """``text`` with each everyday phrase a rule knows replaced by its medical words, and the medical words put
        in (lowercase): a name they make is the system's reading, less certain than one the user wrote."""
        put = set()
        for pattern, words in self.rules:
            text, count = pattern.subn(words, text)
            if count:
                put.add(words.lower())
        return text, frozenset(put)
