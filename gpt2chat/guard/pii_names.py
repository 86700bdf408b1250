"""Which words are people: medical language that spaCy takes for names, and names it misses in lower case.

Used by :mod:`gpt2chat.guard.masking`. Two questions, each with its own vocabulary in ``resources/``:

* Is a PERSON span really a disease or a drug? Eponyms with a possessive or a disease word after them ("Crohn's",
  "Hodgkin lymphoma"), drug names and disease-shaped words are not people, unless a personal cue precedes them
  ("Dr. Bell", "my son Wilson") -- ``medical_terms.txt``.
* Is a lower-case word after a personal cue a name? After "my name is" any word but a function or medical word;
  after "im", "this is", "my son", "thanks," only a listed given name (``given_names.txt``) or a word English does
  not have, judged with the spaCy pipeline's own lemmatizer tables.
"""

from __future__ import annotations

import functools

import regex
from presidio_analyzer import EntityRecognizer, RecognizerResult

from gpt2chat import settings

RESOURCES = settings.PACKAGE_DIR / "resources"
MEDICAL_TERMS = RESOURCES / "medical_terms.txt"
GIVEN_NAMES = RESOURCES / "given_names.txt"
FOCUS_WORDS = RESOURCES / "focus_words.txt"


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
KIN = (
    "son|daughter|wife|husband|partner|mother|father|mom|mum|dad|brother|sister|grandson|granddaughter|grandmother|"
    "grandfather|grandma|grandpa|aunt|uncle|niece|nephew|cousin|friend|neighbou?r|baby|child|kid|twins?|boyfriend|"
    "girlfriend|fianc[ée]e?|colleague|boss|patient|doctor|surgeon|nurse|dentist|therapist|gp"
)
_TITLES = r"(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Doctor|Nurse)\.?"
# Right before a name, these say "this is a person" and override the medical rules ("Dr. Bell", "my son Wilson").
_PERSONAL_CUE = regex.compile(
    rf"(?:\b{_TITLES}|\bmy\s+name\s+is|\b(?:my|our|his|her|their)\s+(?:{KIN})\s*,?)\s*$", regex.IGNORECASE
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


@functools.lru_cache(maxsize=1)
def _focus_words() -> frozenset[str]:
    """The words of MedQuAD's focus names and synonyms (resources/focus_words.txt), made with::

        words = {w for a in data.load_annotations() for name in (a.focus, *a.synonyms)
                 for w in re.findall("[a-z]+", name.lower())
                 if len(w) >= 3 and w not in given_names and w not in sklearn's ENGLISH_STOP_WORDS}
    """
    lines = FOCUS_WORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


_SPAN_STOP_WORDS = frozenset("and or of the in with to for".split())


def names_a_condition(words: list[str]) -> bool:
    """Every word of the span is a word of MedQuAD's condition names (or a joining word) and none is a given name:
    spaCy tagged a capitalised condition as PERSON ("What is (are) Personality Disorders ?" lost its topic on 81
    of 812 MedQuAD test questions). "John Smith" stays a name: "john" is a given name."""
    given, foci = _given_names(), _focus_words()
    content = [w for w in words if w not in _SPAN_STOP_WORDS]
    return bool(content) and all(w in foci for w in content) and not any(w in given for w in content)


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
    if any(_is_disease_word(w) for w in words) or names_a_condition([w.strip(",.;:") for w in words]):
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
# "name" as it is mistyped: every swap of two neighbouring letters and every dropped letter but the first ("my nmae
# is", "my naem is", "my nme is"), and "mi" for "my" (issue 23: "my nmae is ..." reached the feedback database).
_NAME_WORD = "(?:name|anme|nmae|naem|nme|nae|nam)"
_STRONG_NAME_CUE = (
    rf"(?:(?i:\bm[yi]\s+{_NAME_WORD}(?:\s+is|['’]s)|\bi['’]?m\s+called|\bi\s+am\s+called)\s+|(?i:\bname)\s*:\s*)"
    rf"(?P<first>{_ANY_WORD})(?:\s+(?P<second>{_ANY_WORD}))?"
)
_WEAK_NAME_CUE = (
    rf"(?i:\bi\s+am|\bi['’]?m|\bthis\s+is|\bit['’]?s|\bcall\s+me|\b(?:my|our|his|her|their)\s+(?:{KIN})\s*,?"
    rf"|\b(?:thanks|thank\s+you|regards|cheers|best|love)\s*,)\s+"
    rf"(?P<first>{_LOWER_WORD})(?:\s+(?P<second>{_LOWER_WORD}))?"
    # "quincy abernathy here, ...": a name then "here" opening the message, a line, a sentence or after a greeting.
    rf"|(?:^|(?<=[\n.!?]\s*)|(?<=(?i:\b(?:hi|hello|hey|ok|so))[,!]?\s+))"
    rf"(?P<first>{_ANY_WORD})(?:\s+(?P<second>{_ANY_WORD}))?\s+(?i:here)\b(?!\s+(?:is|are|was|were)\b)"
)


# "Abernathy, Quincy": a surname, a comma and a given name, at the start of the message or a line or after a colon
# ("Patient: Abernathy, Quincy"), in any case.
_LAST_FIRST = rf"(?:^|(?<=[\n:]))\s*(?P<last>{_ANY_WORD}),\s*(?P<first>{_ANY_WORD})"


class LowercaseNameRecognizer(EntityRecognizer):
    """Names spaCy's NER does not see: typed in lower case after a cue ("my name is john smith", "im mary jones",
    "this is bob", "my son jacob", "thanks, mike", "im quincy abernathy"), or written "Last, First"."""

    def __init__(self, lexicon: EnglishLexicon):
        self._lexicon = lexicon
        self._cues = ((regex.compile(_STRONG_NAME_CUE), True), (regex.compile(_WEAK_NAME_CUE), False))
        self._last_first = regex.compile(_LAST_FIRST)
        super().__init__(supported_entities=["PERSON"], name="LowercaseNameRecognizer", supported_language="en")

    def load(self) -> None:  # compiled in __init__
        pass

    def _noun_or_unknown(self, word: str) -> bool:
        """A word that can be a name and has no reading but a noun ("quincy" is a town in WordNet)."""
        return self._lexicon.could_be_name(word) and self._lexicon.readings(word) <= {"noun"}

    def _unknown(self, word: str) -> bool:
        """A word English does not have ("abernathy"): a surname, after any cue."""
        return self._lexicon.is_given_name(word) and not self._lexicon.readings(word)

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        results = []
        for pattern, strong in self._cues:
            for match in pattern.finditer(text):
                first, second = match.group("first").lower(), match.group("second")
                if strong or self._lexicon.is_given_name(first):
                    if not self._lexicon.could_be_name(first):
                        continue
                    end = match.end("first")
                    if second and self._lexicon.could_be_surname(second.lower(), strong):
                        end = match.end("second")
                elif second and self._noun_or_unknown(first) and self._unknown(second.lower()):
                    end = match.end("second")  # "im quincy abernathy": an unknown surname makes the first a name
                else:
                    continue
                results.append(RecognizerResult("PERSON", match.start("first"), end, 0.85))
        for match in self._last_first.finditer(text):
            last, first = match.group("last").lower(), match.group("first").lower()
            if self._unknown(last) and (self._noun_or_unknown(first) or first in _given_names()):
                results.append(RecognizerResult("PERSON", match.start("last"), match.end("first"), 0.85))
        return results


def is_person(text: str, start: int, end: int) -> bool:
    return is_name_shaped(text[start:end]) and not is_medical_span(text, start, end)
