"""General English text for the generic GPT-2 baseline: WordNet 3.0's glosses, read from Debian's ``wordnet-base``.

Why WordNet: it installs offline from Debian (``apt-get install wordnet-base``, 6.5 MB, on every machine this
project runs on; ``scripts/setup.sh`` installs it), its licence allows any use, it is plain text with a documented
format (wndb(5WN)), and its 117,659 definitions and example sentences cover every domain of present-day English
(1.87 million words as formatted here), in plain present-day prose. The alternatives
looked at: Debian's ``dict-gcide`` is Webster's 1913 (archaic spelling and usage, heavy markup), the Python
documentation is one technical domain, and the ``fortunes`` files are 2.6 MB of quips.

Each synset becomes one line of text, ``Word, synonym (noun): its definition. "An example."``. Synsets are split
into train / validation / test by a hash of their identity, so the split does not depend on the files' order and
the test lines (the "held-out general text" of ``gpt2chat.compare``) are never trained on.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

from gpt2chat import settings

PACKAGE = "wordnet-base"
DATA_FILES = {"noun": "data.noun", "verb": "data.verb", "adjective": "data.adj", "adverb": "data.adv"}
SPLITS = ("train", "validation", "test")
HELD_OUT_PERCENT = 3  # per held-out split: ~3,500 synsets, ~90,000 tokens each, enough for 256 rows of 256 tokens


class GenericCorpusNotFound(FileNotFoundError):
    """WordNet is not installed where it is looked for."""


def corpus_dir(explicit: str | Path | None = None) -> Path:
    """The WordNet database directory (``settings.wordnet_dir``), checked: one line naming the install if absent."""
    directory = settings.wordnet_dir(explicit)
    missing = [name for name in DATA_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise GenericCorpusNotFound(
            f"the general-English corpus (WordNet 3.0) is not in {directory} (missing {', '.join(missing)}): "
            f"install it with `apt-get install {PACKAGE}` (bash scripts/setup.sh does), or point "
            f"${settings.WORDNET_ENV} at a WordNet 3.0 'dict' directory")
    return directory


def split_of(key: str) -> str:
    """The split a synset belongs to, from a hash of its identity (``pos:offset``)."""
    bucket = zlib.crc32(key.encode()) % 100
    return "test" if bucket < HELD_OUT_PERCENT else "validation" if bucket < 2 * HELD_OUT_PERCENT else "train"


def synset_text(line: str, part_of_speech: str) -> str | None:
    """One data-file line (wndb(5WN): offset, lexicographer file, type, word count in hex, words with lex ids,
    pointers, ``| gloss``) as a sentence-like line; None for the licence header lines."""
    if line.startswith("  ") or "|" not in line:
        return None
    fields, gloss = line.split("|", 1)
    parts = fields.split()
    count = int(parts[3], 16)
    words = [re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in parts[4 : 4 + 2 * count : 2]]
    words = list(dict.fromkeys(words))  # "US" and "U.S." stay; exact repeats (other lex ids) go
    pieces = [piece.strip() for piece in gloss.strip().split(";") if piece.strip()]
    definitions = [p for p in pieces if not p.startswith('"')]
    examples = [p.strip('"').strip() for p in pieces if p.startswith('"')]
    if not definitions and not examples:
        return None
    head = ", ".join(words)
    text = f"{head[:1].upper()}{head[1:]} ({part_of_speech}): {'; '.join(definitions) or 'as in'}."
    return " ".join([text, *(f'"{e[:1].upper()}{e[1:]}."' for e in examples if e)])


def read_texts(split: str, directory: str | Path | None = None, limit: int | None = None) -> list[str]:
    """The lines of ``split`` (train, validation or test), in file order; ``limit`` keeps the first N."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = corpus_dir(directory)
    texts = []
    for part_of_speech, name in DATA_FILES.items():
        with open(root / name, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                text = synset_text(line, part_of_speech)
                if text and split_of(f"{part_of_speech}:{line[:8]}") == split:
                    texts.append(text)
                    if limit is not None and len(texts) >= limit:
                        return texts
    return texts
