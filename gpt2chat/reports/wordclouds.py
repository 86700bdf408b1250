"""Word clouds of MedQuAD text: boilerplate and stop words removed, word counts, cloud images.

``gpt2chat.reports.eda`` draws its clouds with these; the choices below are explained where they are made.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Iterable

from gpt2chat.corpus.data import LINK_LIST_OPENING


# --- stop words -------------------------------------------------------------------------------------------------
#
# MedQuAD is generated from templates and NIH page layouts, so the most frequent words of a raw cloud are the
# template itself ("what", "are", "symptoms of") and page boilerplate, which hides the medical vocabulary.
# Three layers are removed, each as narrowly as possible:
# 1. whole boilerplate passages repeated verbatim across thousands of answers (regexes below);
# 2. question-template words, for question clouds only (in answers "genetic" or "risk" are content);
# 3. generic filler that survives wordcloud's English STOPWORDS ("may", "also", "condition", "affected"), and,
#    in each per-type cloud, the type's own word ("treatment" in the treatment cloud says nothing new).

BOILERPLATE_PATTERNS = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # GARD "symptoms" answers: the Human Phenotype Ontology preamble and the note on frequencies (~2,200 each)
        r"What are the signs and symptoms of [^?]*\?",
        r"The Human Phenotype Ontology provides the following list of signs and symptoms for [^.]*\.",
        r"If the information is available, the table below includes how often the symptom is seen in people "
        r"with this condition\.",
        r"You can use the MedlinePlus Medical Dictionary to look up the definitions for these medical terms\.",
        r"Signs and Symptoms Approximate number of patients \(when available\)",
        r"The Human Phenotype Ontology \(HPO\) has collected information on how often .*? may be rare or common\.",
        # GHR "treatment" answers: the list of generic MedlinePlus resources (~1,100)
        re.escape(LINK_LIST_OPENING) + r" [^:]*:",
        r"These resources from MedlinePlus offer information about the diagnosis and management of various health "
        r"conditions:( - (Diagnostic Tests|Drug Therapy|Surgery and Rehabilitation|Genetic Counseling|"
        r"Palliative Care))*",
        r"Genetic Testing Registry|MedlinePlus Encyclopedia",
        # NCI (CancerGov) clinical-trial paragraphs repeated in every cancer summary
        r"General information about clinical trials is available from the NCI website\.",
        r"Check the list of NCI-supported cancer clinical trials [^.]*\.",
        r"For more specific results, refine the search [^.]*\.",
    )
)

QUESTION_TEMPLATE_WORDS = frozenset(
    """
    what are is how many people affected inherited genetic changes related causes cause diagnose outlook risk
    research clinical trials done being prevent stages complications symptoms treatments information know need
    do you have about who to for
    """.split()
)

GENERIC_WORDS = frozenset(
    """
    may also condition conditions affected affect affects people many can one two will include includes including
    usually often called known however cases case information individuals individual person see use used well
    without within found number due other others might must per
    """.split()
)

# The word(s) each question type is named after, removed from that type's own answer cloud only.
TYPE_WORDS = {
    "information": {"information"},
    "symptoms": {"symptom", "symptoms", "signs", "sign"},
    "treatment": {"treatment", "treatments", "treated", "treat"},
    "inheritance": {"inherited", "inheritance", "inherit"},
    "frequency": {"frequency", "affects", "estimated"},
    "genetic changes": {"genetic", "changes", "change"},
    "causes": {"cause", "causes", "caused"},
    "exams and tests": {"test", "tests", "exam", "exams", "diagnose", "diagnosed", "diagnosis"},
    "research": {"research", "researchers"},
    "outlook": {"outlook", "prognosis"},
    "susceptibility": {"risk", "susceptibility"},
    "considerations": {"considerations"},
    "prevention": {"prevent", "prevention", "prevented"},
    "stages": {"stage", "stages"},
    "complications": {"complications", "complication"},
}


def stopwords(kind: str, question_type: str | None = None) -> frozenset[str]:
    """Words left out of a cloud of ``kind`` "questions" or "answers" (optionally of one question type)."""
    from wordcloud import STOPWORDS

    words = set(STOPWORDS) | GENERIC_WORDS
    if kind == "questions":
        words |= QUESTION_TEMPLATE_WORDS
    if question_type is not None:
        words |= TYPE_WORDS.get(question_type, {question_type})
    return frozenset(words)


def strip_boilerplate(text: str) -> str:
    for pattern in BOILERPLATE_PATTERNS:
        text = pattern.sub(" ", text)
    return text


_WORD = re.compile(r"[a-z][a-z0-9'-]*[a-z0-9]")


def word_frequencies(texts: Iterable[str], stop: frozenset[str]) -> collections.Counter:
    """Lower-cased word counts without boilerplate, stop words, numbers or possessive 's (in order of first
    appearance, which fixes the word-cloud layout among equal counts)."""
    import pandas as pd

    words = (pd.Series(list(texts), dtype="str").map(strip_boilerplate).str.lower().str.findall(_WORD.pattern)
             .explode().dropna().str.removesuffix("'s"))
    return collections.Counter(words[~words.isin(stop)].value_counts(sort=False).to_dict())


def font_path() -> str:
    """DejaVu Sans as bundled with matplotlib: always installed, never downloaded."""
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")


def cloud_image(frequencies: collections.Counter, width: int, height: int, *, max_words: int, seed: int):
    """The word cloud of ``frequencies`` as an RGB array; ``seed`` fixes the layout, so re-runs are identical."""
    from wordcloud import WordCloud

    cloud = WordCloud(width=width, height=height, background_color="white", max_words=max_words,
                      font_path=font_path(), random_state=seed, colormap="viridis")
    # An empty sample (tiny test subsets) would make WordCloud raise; one placeholder word keeps the figure valid.
    return cloud.generate_from_frequencies(frequencies or {"(no words)": 1}).to_array()
