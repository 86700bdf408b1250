"""The NIH sites MedQuAD was crawled from: their names as readers know them, and where their pages live now.

    site_name("MPlusHealthTopics")  -> "MedlinePlus"
    current_url("https://ghr.nlm.nih.gov/condition/gout")  -> "https://medlineplus.gov/genetics/condition/gout/"

The moves are listed in ``resources/moved_urls.json``: pages of a site that moved are rewritten to their new
address; pages of a retired site (NIHSeniorHealth) are cited through the Internet Archive, and ``is_archived``
tells the UI to label them so.
"""

from __future__ import annotations

import functools
import json
import re

from gpt2chat import settings

# MedQuAD's ``source`` attribute -> the name its readers know (the codes are MedQuAD's own).
SITE_NAMES = {
    "CancerGov": "National Cancer Institute",
    "GARD": "GARD",
    "GHR": "MedlinePlus Genetics",  # Genetics Home Reference became MedlinePlus Genetics in 2020
    "MPlusHealthTopics": "MedlinePlus",
    "NIDDK": "NIDDK",
    "NINDS": "NINDS",
    "NIHSeniorHealth": "NIHSeniorHealth",
    "NHLBI": "NHLBI",
    "CDC": "CDC",
}


def site_name(source: str) -> str:
    return SITE_NAMES.get(source, source)


def source_code(name: str) -> str:
    """The MedQuAD code of a site name (what ratings store); unknown names pass through."""
    return next((code for code, known in SITE_NAMES.items() if known == name), name)


@functools.lru_cache(maxsize=1)
def _moves() -> tuple[list[tuple[re.Pattern, str]], list[tuple[re.Pattern, str]]]:
    table = json.loads((settings.PACKAGE_DIR / "resources" / "moved_urls.json").read_text(encoding="utf-8"))
    moved = [(re.compile(rule["pattern"]), rule["to"]) for rule in table["moved"]]
    archived = [(re.compile(rule["pattern"]), rule["archive"]) for rule in table["archived"]]
    return moved, archived


def current_url(url: str) -> str:
    """Where a MedQuAD page is today: its new address when its site moved, its Internet Archive copy when the site
    was retired, else the URL unchanged."""
    moved, archived = _moves()
    for pattern, replacement in moved:
        if pattern.match(url):
            return pattern.sub(replacement, url, count=1)
    for pattern, archive in archived:
        if pattern.match(url):
            return archive + url
    return url


def is_archived(url: str) -> bool:
    """Whether ``current_url`` sent this page to an archive copy."""
    return any(url.startswith(archive) for _, archive in _moves()[1])


def archived_page(url: str) -> str:
    """The page an archive copy is of (MedQuAD's URL); other URLs unchanged."""
    return next((url.removeprefix(archive) for _, archive in _moves()[1] if url.startswith(archive)), url)
