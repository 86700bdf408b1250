"""Question understanding for retrieval: which MedQuAD foci a message names, its core sub-questions, and the
focus a follow-up question inherits from the conversation.

    recogniser = FocusRecogniser.build(records, annotations)   # every focus, synonym, CUI link and abbreviation
    recogniser.find("i want to know more about aeortic stenosis")  # -> [FocusMatch('aortic stenosis', 0.92, ...)]
    split_questions("Glaucoma. My mother has it. What causes it? How is it treated?")

The recogniser is built from the data at index build time and saved beside the retrieval index (JSON only), so
it shares its content key and its checksummed manifest; the question-type classifier is gpt2chat.search.question_types.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re
from typing import Iterable, Sequence

import bm25s
import Stemmer
from rapidfuzz import fuzz, process

from gpt2chat.corpus.data import FocusAnnotation, QAPair, focus_key, name_key
from gpt2chat.corpus.sentences import ABBREVIATIONS

_WORD = re.compile(r"[A-Za-z0-9]+")
_ACRONYM = re.compile(r"\s\(([A-Z][A-Za-z0-9]{1,7})\)")
_STEMMER = Stemmer.Stemmer("english")
# Words that never make a focus on their own, although some MedQuAD synonym lists contain them.
_FUNCTION_WORDS = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its me my of on or the their this to "
    "type what when which who why with you your".split())
MAX_SURFACE_WORDS = 10
# Spelling correction: a rapidfuzz ratio of 80 accepts "aeortic" -> "aortic" (92), "mediterean" ->
# "mediterranean" (87), "ginetic" -> "genetic" (86) while "cancel" -> "cancer" (83) only happens for words
# never seen in lowercase in MedQuAD; tokens shorter than 5 letters are never corrected ("lime" is not "lyme").
SPELLING_CUTOFF = 80
ACRONYM_CONFIDENCE = 0.9
# A lay name for a group of conditions ("a heart condition" for Heart Diseases) is what the message is about only
# when it names nothing more precise: "WPW, a heart condition" asks about WPW. Below STRONG_CONFIDENCE (ranking).
LAY_CONFIDENCE = 0.85
ORDER_FREE_CONFIDENCE = 0.9
CONTAINING_CONFIDENCE = 0.8
MAX_CONTAINING = 5
GENERIC_FACTOR = 0.5
# A stem in at least 0.3% of MedQuAD's pairs (49 of 16,375) is an everyday word of health text ("warning" 0.5%,
# "exist" 0.8%); rarer ones name something ("hangover" 0.01%, "poem" 0.01%, "weather" 0.2%).
# A one-word synonym in 1% to 3% of the pairs still names its answered focus ("hypertension" 1.9%, "hemorrhage"
# 1.3%) unless questions use it anyway ("surgery", "test"); commoner ones ("stroke" 3.7%, "pain" 11.6%) are names only.
TERM_SHARE = 0.03
# An abbreviation written in lower case counts when MedQuAD writes that word in lower case fewer times than this
# ("als" 3 times, "add" 52, "all" 4,181).
LOWER_ACRONYM_MAX = 20
# Texting shorthand is no abbreviation of a condition when written in lower case: "sir pls help me" is not about
# primary lateral sclerosis (PLS), "thx" not about anything.
CHAT_ABBREVIATIONS = frozenset("pls plz thx ty btw fyi lol omg idk imo imho asap ppl bc cuz coz im ive ur yr yrs".split())
EVERYDAY_SHARE = 0.003
EVERYDAY_MIN_DOCUMENTS = 20
# Everyday English: words seen at least this often in pyspellchecker's English word counts (film subtitles; 12,761
# words). Such a word is never "corrected" into a focus name ("madam" became "Maeda", a name of CARASIL, in 2 of 161
# LiveQA train messages' greetings) and is no focus by itself once a name's qualifier is dropped ("she cant afford"
# named Cant syndrome).
EVERYDAY_ENGLISH_COUNT = 2000


def everyday_english() -> frozenset[str]:
    from spellchecker import SpellChecker

    counts = SpellChecker(language="en").word_frequency.dictionary
    return frozenset(w for w, n in counts.items() if n >= EVERYDAY_ENGLISH_COUNT and w.isalpha())


def _words_by_stem(words: Iterable[str]) -> dict[str, list[str]]:
    by_stem: dict[str, list[str]] = collections.defaultdict(list)
    for word in words:
        by_stem[_STEMMER.stemWord(word)].append(word)
    return by_stem


def _stem_of_another_word(name: str, english_by_stem: dict[str, list[str]]) -> bool:
    """An eponym whose stem is an everyday word's (``_words_by_stem`` of them): "Ribbing" stems as "ribs", "Lowe"
    as "low", "Paine" as "pain" ("low iron" had named Lowe syndrome); "Eyelid" is a form of "eyelids"."""
    lower = name.lower()
    return not any(w.startswith(lower) for w in english_by_stem.get(_STEMMER.stemWord(lower), [lower]))


def _shouted(words: Sequence[str]) -> bool:
    """Most words of the message are in capitals (at least four words of two letters or more)."""
    long_words = [w for w in words if len(w) > 1]
    return len(long_words) >= 4 and sum(w.isupper() for w in long_words) > 0.6 * len(long_words)


_BRITISH = ((re.compile(r"ae|oe"), "e"), (re.compile(r"our$"), "or"), (re.compile(r"([bt])re$"), r"\1er"))


def american_spelling(word: str) -> str:
    """A lower-case word in American spelling ("anaemia", "oesophageal", "tumour", "fibre" -> "anemia",
    "esophageal", "tumor", "fiber"), as MedQuAD's names are written; a word it does not fit comes out changed too
    ("shoe" -> "she"), so callers keep a result only when a name uses it."""
    for pattern, replacement in _BRITISH:
        word = pattern.sub(replacement, word)
    return word


def _compound_parts(word: str, english: frozenset[str]) -> list[str] | None:
    """The two everyday English words a one-word name is made of, written apart ("heartburn" -> heart, burn), the
    second at least 4 letters so that no suffix counts as a word ("abortion" is no "abort ion"), or an inflection of
    an everyday word of at least 6 ("bed wetting", "near sightedness"; shorter ones made "pin keye", "bun ions");
    else None."""
    for cut in range(3, len(word) - 3):
        rest = word[cut:]
        if word[:cut] in english and (rest in english or len(rest) >= 6 and stems([rest])[0] in english):
            return [word[:cut], rest]
    return None


# How people name a group of conditions: "heart problems", "kidney trouble", "a thyroid issue" for MedlinePlus's
# "Heart Diseases", "Kidney Diseases", "Thyroid Diseases" (which had no answer, or a rare subtype's page, before).
_CONDITION_HEADS = frozenset("disease diseases disorder disorders condition conditions problem problems".split())
_LAY_HEADS = ("problem", "issue", "trouble", "condition", "disease", "disorder")
_GENERIC_SUFFIXES = frozenset("syndrome disease disorder disorders type 1 2 3 4 i ii iii iv".split())
_SUFFIX_STEMS = frozenset(_STEMMER.stemWords(sorted(_GENERIC_SUFFIXES)))
# How MedQuAD's medicine names end ("Latanoprost Ophthalmic", "Heparin Injection", "Nicotine Transdermal Patch"):
# people name the drug alone ("I use latanoprost drops").
_ROUTES = frozenset("injection topical ophthalmic inhalation oral spray nasal patch transdermal rectal otic implant "
                    "vaginal".split())


@functools.lru_cache(maxsize=4096)
def as_word(phrase: str) -> re.Pattern:
    """``phrase`` written as a word or words of a text, any case: "diabetes" is not said in "prediabetes"."""
    return re.compile(rf"(?<!\w){re.escape(phrase)}(?!\w)", re.IGNORECASE)


def mentions(phrase: str, text: str) -> list[int]:
    """Where ``phrase`` is said as a word in ``text`` (``as_word``), first first."""
    return [found.start() for found in as_word(phrase).finditer(text)] if phrase else []


def raw_words(text: str) -> list[str]:
    """Words as written (case kept, so acronyms can be told from common words); possessives dropped."""
    return _WORD.findall(re.sub(r"['’]s\b", "", text))


def stems(words: Iterable[str]) -> tuple[str, ...]:
    """Case-folded Snowball stems: plurals and inflections meet ("Diabetes", "diabete" -> "diabet")."""
    return tuple(_STEMMER.stemWords([w.lower() for w in words]))


@dataclasses.dataclass(frozen=True)
class FocusMatch:
    focus: str  # the MedQuAD focus as displayed (for an answered focus, the name its pairs use)
    key: str  # focus_key of it
    confidence: float  # 1.0 exact name or synonym; lower for a corrected spelling or an abbreviation
    span: str  # the words of the message that named it (already PII-masked text)
    answered: bool  # whether MedQuAD has answered pairs for it (drugs and A.D.A.M. topics have none)
    generic: bool = False  # a one-word topic named by a word questions use anyway ("surgery", "test", "gene")
    # named (a name, synonym or abbreviation), unordered (all its words, any order), containing (its name contains
    # a named focus), described (gpt2chat.search.ranking: its description matches), carried (from an earlier message)
    kind: str = "named"


class FocusRecogniser:
    """Dictionary matcher over every MedQuAD focus name, synonym and mined abbreviation, with fuzzy spelling."""

    def __init__(self, surfaces: dict, acronyms: dict, names: dict, answered: Iterable[str], known_words: Iterable[str],
                 spelling_words: Sequence[str], question_stems: Iterable[str] = (), everyday_stems: Iterable[str] = (),
                 lower_words: Iterable[str] = (), medicines: Iterable[str] = (), lay_surfaces: Iterable[str] = ()):
        self.surfaces = surfaces  # " ".join(stems) -> [focus keys]
        self.lay_surfaces = frozenset(lay_surfaces)  # "heart problem" for Heart Diseases: see LAY_CONFIDENCE
        self.acronyms = acronyms  # lower-case abbreviation -> focus keys
        self.names = names  # focus key -> display name
        self.answered = frozenset(answered)
        self.known_words = frozenset(known_words)  # words seen in lower case in MedQuAD text: never "corrected"
        self.lower_words = frozenset(lower_words)  # seen in lower case at least LOWER_ACRONYM_MAX times: not acronyms
        self.medicines = frozenset(medicines)  # unanswered drug and supplement topics: no other page answers for them
        self.question_stems = frozenset(question_stems)  # words of the questions themselves, see TypeClassifier
        self.everyday_stems = frozenset(everyday_stems)  # stems in many answers: no topic of their own, see follows_up
        self.spelling_words = list(spelling_words)  # lower-case words of the surface forms
        self._spelling_set = frozenset(self.spelling_words)
        # A word whose stem MedQuAD uses is a form of a known word, not a misspelling: "snores" is snoring, not
        # "sores" (which named Peptic Ulcer at 0.91).
        self._known_stems = frozenset(stems(self.known_words))
        # Candidates share the first letter: 20x fewer comparisons, and misspellings keep it in every example we
        # have ("aeortic", "diabete", "fybromyaglia", "cronic", "ginetic").
        self._spelling_by_letter: dict[str, list[str]] = collections.defaultdict(list)
        for word in self.spelling_words:
            self._spelling_by_letter[word[0]].append(word)
        self._corrections: dict[str, tuple[str, float]] = {}  # bounded memo: chat repeats its words
        self._max_words = max((k.count(" ") + 1 for k in surfaces), default=1)
        # Content stems of every answered focus name, and which foci use each stem, for the order-free and
        # containing matches below.
        self._focus_stems = {key: frozenset(content_stems(names.get(key, key))) for key in self.answered}
        self._foci_with_stem: dict[str, set[str]] = collections.defaultdict(set)
        for key, focus_stems in self._focus_stems.items():
            for stem in focus_stems:
                self._foci_with_stem[stem].add(key)
        # Answered foci that a name or synonym of several words names together, and no other ("hemoglobin SS disease":
        # sickle cell anemia and sickle cell disease). A name shared by more ("SCA") names a family, and a one-word
        # synonym ("hernia" of pelvic support problems) a related condition, not one condition on two sites.
        self._same_name: dict[str, set[str]] = collections.defaultdict(set)
        for surface, targets in surfaces.items():
            if len(targets) == 2 and " " in surface:
                for key in targets:
                    self._same_name[key].update(t for t in targets if t != key and t in self.answered)

    @classmethod
    def build(cls, records: Sequence[QAPair], annotations: Sequence[FocusAnnotation],
              question_stems: Iterable[str] = ()) -> FocusRecogniser:
        names: dict[str, str] = {}
        for record in records:
            if record.focus:
                names.setdefault(focus_key(record.focus), record.focus)
        answered = set(names)
        lower_counts: collections.Counter = collections.Counter()
        document_frequency: collections.Counter = collections.Counter()
        for record in records:
            words = _WORD.findall(f"{record.question} {record.answer}")
            lower_counts.update(w for w in words if w.islower())
            document_frequency.update(set(stems(words)))
        english = everyday_english()
        english_by_stem = _words_by_stem(english)
        known = {w for w, n in lower_counts.items() if n >= 3} | english
        lower = {w for w, n in lower_counts.items() if n >= LOWER_ACRONYM_MAX} | CHAT_ABBREVIATIONS
        # A one-word synonym used in over 1% of answers ("doctor", "sugar", "family") names no topic by itself
        # (at least 50 answers, so that a small index of a few diseases does not find its own names common).
        common = {s for s, n in document_frequency.items() if n > max(50, 0.01 * len(records))}
        everyday_terms = {s for s in common if document_frequency[s] > TERM_SHARE * len(records)} | set(question_stems)
        everyday = {s for s, n in document_frequency.items() if n >= max(EVERYDAY_MIN_DOCUMENTS,
                                                                           EVERYDAY_SHARE * len(records))}
        # A UMLS concept links a topic without answers (A.D.A.M., a synonym list) to answered foci of that concept;
        # only single-concept documents count, as multi-CUI lists mix the topic with related concepts.
        by_cui: dict[str, set[str]] = collections.defaultdict(set)
        for note in annotations:
            if focus_key(note.focus) in answered and len(note.cuis) == 1:
                by_cui[note.cuis[0]].add(focus_key(note.focus))
        surfaces: dict[str, set[str]] = collections.defaultdict(set)
        medicines: set[str] = set()
        exact: dict[str, str] = {}  # a surface that IS a focus name points at that focus only
        upper_only: set[str] = set()  # surfaces only ever written in capitals ("ALL", "AMD")
        written_lower: set[str] = set()
        said: set[str] = set()  # surfaces a name or synonym says as such
        lay_surfaces: set[str] = set()  # surfaces only a lay head made

        def add(surface: str, target: str, is_name: bool) -> None:
            words = raw_words(surface)
            key = stems(words)
            # "the syndrome" (trichohepatoenteric syndrome is "THE syndrome") names nothing
            if not key or len(key) > MAX_SURFACE_WORDS or all(
                    s in _FUNCTION_WORDS or s.isdigit() or s in _SUFFIX_STEMS for s in key):
                return
            joined = " ".join(key)
            if len(joined) < 3 or (len(key) == 1 and key[0] in common and not is_name
                                   and (key[0] in everyday_terms or target not in answered)):
                return
            if is_name:
                exact.setdefault(joined, target)
            surfaces[joined].add(target)
            said.add(joined)
            compound = _compound_parts(words[0].lower(), english) if is_name and len(words) == 1 else None
            if compound:  # "heart burn", "ear ache", "sun burn" for Heartburn, Earache, Sunburn
                surfaces[" ".join(stems(compound))].add(target)
                written_lower.add(" ".join(stems(compound)))
            (upper_only if all(w.isupper() for w in words) else written_lower).add(joined)
            # "Klinefelter syndrome" is also "klinefelter's", "Lyme disease" "lyme", "optic atrophy type 1"
            # "optic atrophy": the qualifier is dropped unless only common words remain ("Down syndrome").
            stripped = words
            while stripped and stripped[-1].lower() in _GENERIC_SUFFIXES:
                stripped = stripped[:-1]
            # ("Parkinson disease" is also "parkinson's": a name written in capitals is no everyday word)
            if len(words) >= 2 and words[-1].lower() in _CONDITION_HEADS:
                for head in _LAY_HEADS:
                    lay = " ".join(stems([*words[:-1], head]))
                    if lay != joined:
                        surfaces[lay].add(target)
                        written_lower.add(lay)
                        lay_surfaces.add(lay)
            # ("Opitz G/BBB syndrome" is no "G": a stripped name needs three letters as any surface does)
            if stripped and stripped != words and len(" ".join(stems(stripped))) >= 3 and not (
                    set(stems(stripped)) <= common and all(w.lower() in known for w in stripped)) and not (
                    len(stripped) == 1 and (stripped[0].lower() in english
                                            or _stem_of_another_word(stripped[0], english_by_stem))):
                surfaces[" ".join(stems(stripped))].add(target)
                written_lower.add(" ".join(stems(stripped)))

        for key, name in names.items():
            add(name, key, is_name=True)
            add(re.sub(r"\([^)]*\)", " ", name), key, is_name=True)  # "Rocky Mountain Spotted Fever (RMSF)"
        for note in annotations:
            own = focus_key(note.focus)
            if not own:
                continue
            targets = {own} if own in answered else by_cui.get(note.cuis[0], set()) if len(note.cuis) == 1 else set()
            if not targets:  # a topic MedQuAD names but never answers (a drug, an encyclopedia article)
                names.setdefault(own, note.focus)
                targets = {own}
                if "Drugs" in note.subset or "Herbs" in note.subset:
                    medicines.add(own)
            for surface in (note.focus, *note.synonyms):
                for target in targets:
                    add(surface, target, is_name=surface == note.focus and target == own)
        for own in sorted(medicines):
            named = re.sub(r"\([^)]*\)", " ", names[own]).split()  # "Insulin Glargine (rDNA origin) Injection"
            words = named
            while len(words) > 1 and words[-1].lower() in _ROUTES:
                words = words[:-1]
            plain = " ".join(stems(raw_words(" ".join(words))))
            # unless the drug's name alone is already another topic's
            if len(words) < len(named) and surfaces.get(plain, set()) <= medicines:
                add(" ".join(words), own, is_name=False)
        for surface, target in _mine_also_called(records, surfaces):
            if target in answered and " ".join(stems(raw_words(surface))) not in surfaces:
                add(surface, target, is_name=False)
        # A synonym that is an answered focus's own name reordered names that focus: "Lewy body dementia", which
        # MedlinePlus lists for Dementia, is "Dementia With Lewy Bodies".
        def content(joined: str) -> frozenset[str]:
            return frozenset(joined.split()) - _FUNCTION_WORDS

        reordered: dict[frozenset[str], str] = {}
        for joined, target in exact.items():
            if target in answered:
                reordered.setdefault(content(joined), target)

        def resolve(joined: str, targets: set[str]) -> list[str]:
            if joined in exact:
                return [exact[joined]]
            if len(joined.split()) > 1 and content(joined) in reordered:
                return [reordered[content(joined)]]
            return sorted(targets)

        resolved = {joined: resolve(joined, targets) for joined, targets in surfaces.items()}
        acronyms = {short: [target] for short, target in _mine_acronyms(records, names, resolved).items()}
        # A synonym written only in capitals names its foci as an abbreviation; one that several foci list (GARD's
        # and GHR's "SCA3") goes to the closest name when matched (125 were lost before, "SCA3" among them).
        for joined in upper_only - written_lower:
            targets = resolved.get(joined)
            if targets and (len(targets) == 1 or joined not in acronyms):
                acronyms[joined] = targets
        for joined in upper_only - written_lower:  # matched through _acronym, with its capitals rule
            resolved.pop(joined, None)
        spelling = sorted({w.lower() for name in (*names.values(), *(s for n in annotations for s in n.synonyms))
                           for w in raw_words(name) if len(w) >= 5 and w.isalpha()})
        return cls(resolved, acronyms, names, answered, known, spelling, question_stems, everyday, lower, medicines,
                   lay_surfaces - said)

    def find(self, text: str) -> list[FocusMatch]:
        """Foci named in ``text``, best confidence first.

        Three kinds of match: a surface form (name, synonym, abbreviation; longest first, without overlaps, with
        spelling corrected), an answered focus whose name's words all occur in any order ("Lewy body dementia"
        -> "Dementia With Lewy Bodies"), and answered foci whose name contains a match ("distal renal tubular
        acidosis" -> "SLC4A1-associated distal renal tubular acidosis"), with confidence scaled by how much of
        the longer name the match covers. A focus whose words are all inside another matched focus is dropped
        ("Dementia" when "Dementia With Lewy Bodies" is named).
        """
        words = raw_words(text)
        corrected, scores = self._correct(words)
        named = self._named(words, corrected, scores, _shouted(words))
        message_stems = set(stems(corrected))
        for key in set().union(*(self._foci_with_stem.get(s, set()) for s in message_stems)) if message_stems else ():
            focus_stems = self._focus_stems[key]
            if len(focus_stems) >= 2 and focus_stems <= message_stems and key not in named:
                named[key] = FocusMatch(self.names[key], key, ORDER_FREE_CONFIDENCE, self.names[key], True,
                                        kind="unordered")
        specific = {key: match for key, match in named.items()
                    if not any(key != other and self.stems_of(key) < self.stems_of(other)
                               and named[other].confidence >= match.confidence for other in named)}
        found = dict(specific)
        for match in specific.values():
            span = frozenset(content_stems(match.span))
            if not span or not all(s in self._foci_with_stem for s in span):  # misspelt ("aeortic stenosis")
                span = self.stems_of(match.key)
            if not span:
                continue
            containing = set.intersection(*(self._foci_with_stem.get(s, set()) for s in span)) - set(found)
            ranked = sorted(containing, key=lambda k: (-len(span) / len(self._focus_stems[k]), k))
            for key in ranked[:MAX_CONTAINING]:
                coverage = len(span) / len(self._focus_stems[key])
                confidence = round(CONTAINING_CONFIDENCE * match.confidence * coverage, 3)
                found[key] = FocusMatch(self.names[key], key, confidence, match.span, True, match.generic, "containing")
        return sorted(found.values(), key=lambda m: -m.confidence)

    def follows_up(self, text: str) -> bool:
        """Whether a message naming no focus continues the conversation's topic ("and how is it treated?", "what
        are the warning signs?", "is surgery the only treatment?") rather than starting a new one ("what helps
        with a hangover", "write me a poem about cats", "what is the condition where you stop breathing in your
        sleep"): it points back ("it", "them"), or its words beyond question wording are at most two everyday ones that
        are in no focus name."""
        if changes_topic(text) or off_topic_request(text):
            return False
        words = [w.lower() for w in raw_words(text.replace("’", "'"))]
        if _ANAPHORA & set(words):
            return True
        own = [s for s in stems(words) if s not in _STOP_STEMS and s not in self.question_stems]
        # a word of a focus name or an abbreviation ("acid reflux", "als") names a new topic
        return bool(words) and len(own) <= MAX_OWN_WORDS and all(
            s in self.everyday_stems and s not in self._foci_with_stem and s not in self.acronyms for s in own)

    def same_named(self, key: str) -> set[str]:
        """The other answered focus that a name or synonym of several words of ``key`` names, when it names only the
        two ("sickle cell disease" for "sickle cell anemia"): the same condition on another site, not a variant
        whose name contains it ("tylosis with esophageal cancer" for "cancer")."""
        return self._same_name.get(key, set())

    def stems_of(self, key: str) -> frozenset:
        return self._focus_stems.get(key) or frozenset(content_stems(self.names.get(key, key)))

    def _named(self, words: list[str], corrected: list[str], scores: list[float],
               shouted: bool = False) -> dict[str, FocusMatch]:
        keys = stems(corrected)
        candidates = []
        for start in range(len(keys)):
            for length in range(min(self._max_words, len(keys) - start), 0, -1):
                joined = " ".join(keys[start:start + length])
                targets = self.surfaces.get(joined)
                if not targets and length == 1:
                    targets = self._acronym(words[start], shouted)
                    if targets:
                        candidates.append((length, start, targets, ACRONYM_CONFIDENCE))
                    continue
                if targets:
                    weight = LAY_CONFIDENCE if joined in self.lay_surfaces else 1.0
                    candidates.append((length, start, targets, weight * min(scores[start:start + length])))
                    break
        taken: set[int] = set()
        found: dict[str, FocusMatch] = {}
        for length, start, targets, confidence in sorted(candidates, key=lambda c: (-c[0], c[1])):
            span = set(range(start, start + length))
            if span & taken:
                continue
            taken |= span
            # An ambiguous surface goes to the foci whose names are closest to it ("type 2 diabetes" is "Diabetes
            # Type 2" rather than "Diabetes" or "I Can Lower My Risk for Type 2 Diabetes: A Guide for American
            # Indians"); the others keep a smaller share.
            closest = self._closest(keys[start:start + length], targets)
            # "Ataxia telangiectasia" and "ataxia-telangiectasia" are one name: "Louis Bar syndrome" names both fully
            share = confidence / len({name_key(self.names.get(t, t)) for t in closest})
            # A follow-up "is surgery the only treatment?" is still about the conversation's cataract.
            generic = length == 1 and keys[start] in self.question_stems
            if generic:
                share *= GENERIC_FACTOR
            for target in targets:
                weight = share if target in closest else share * GENERIC_FACTOR / len(targets)
                if target not in found or found[target].confidence < weight:
                    found[target] = FocusMatch(self.names.get(target, target), target, round(weight, 3),
                                               " ".join(words[start:start + length]), target in self.answered,
                                               generic)
        return found

    def _closest(self, surface: Sequence[str], targets: Sequence[str]) -> list[str]:
        """The targets whose names add the fewest words to ``surface`` (stems) and share the most with it."""
        if len(targets) == 1:
            return list(targets)
        said = set(surface)

        def distance(target: str) -> tuple[int, int]:
            name = set(stems(raw_words(self.names.get(target, target))))
            return len(name - said), -len(name & said)

        best = min(distance(t) for t in targets)
        return [t for t in targets if distance(t) == best]

    def _correct(self, words: list[str]) -> tuple[list[str], list[float]]:
        corrected, scores = [], []
        for word in words:
            lower = word.lower()
            american = american_spelling(lower)
            if american != lower and american in self._spelling_set:  # English dictionaries know "anaemia"
                corrected.append(american)
                scores.append(1.0)
                continue
            if (len(lower) < 5 or not lower.isalpha() or lower in self.known_words or lower in self._spelling_set
                    or not self.spelling_words or _STEMMER.stemWord(lower) in self._known_stems):
                corrected.append(word)
                scores.append(1.0)
                continue
            if lower not in self._corrections:
                if len(self._corrections) > 50_000:
                    self._corrections.clear()
                best = process.extractOne(lower, self._spelling_by_letter.get(lower[0], []), scorer=fuzz.ratio,
                                          score_cutoff=SPELLING_CUTOFF)
                self._corrections[lower] = (best[0], best[1] / 100) if best else (word, 1.0)
            correction, score = self._corrections[lower]
            corrected.append(correction)
            scores.append(score)
        return corrected, scores

    def _acronym(self, word: str, shouted: bool = False) -> list[str]:
        lower = word.lower()
        targets = self.acronyms.get(lower)
        # "ALL" is leukaemia but "all" is a word: lower-case forms count only when MedQuAD never writes them so, and
        # so do capitals in a message written in capitals ("... LUNG CANCER TREATMENT ... TO" had named
        # Tracheobronchopathia osteoplastica).
        if targets and ((word.isupper() and not shouted) or lower not in self.lower_words):
            return list(targets)
        return []

    def to_json(self) -> dict:
        return {"surfaces": self.surfaces, "acronyms": self.acronyms, "names": self.names,
                "answered": sorted(self.answered), "known_words": sorted(self.known_words),
                "spelling_words": self.spelling_words, "question_stems": sorted(self.question_stems),
                "everyday_stems": sorted(self.everyday_stems), "lower_words": sorted(self.lower_words),
                "medicines": sorted(self.medicines), "lay_surfaces": sorted(self.lay_surfaces)}

    @classmethod
    def from_json(cls, payload: dict) -> FocusRecogniser:
        return cls(**payload)


def content_stems(text: str) -> list[str]:
    return [s for s in stems(raw_words(text)) if s not in _FUNCTION_WORDS and not s.isdigit()]


def _mine_acronyms(records: Sequence[QAPair], names: dict, surfaces: dict) -> dict[str, str]:
    """Abbreviations defined in the answers ("deep vein thrombosis (DVT)") whose long form is a known surface."""
    counts: collections.Counter = collections.Counter()
    for name in names.values():  # focus names that carry their own abbreviation
        for match in _ACRONYM.finditer(name):
            counts[(match.group(1).lower(), focus_key(name))] += 2
    for record in records:
        for match in _ACRONYM.finditer(record.answer):
            short = match.group(1)
            words = raw_words(record.answer[max(0, match.start() - 120):match.start()])[-(len(short) + 3):]
            for start in range(len(words)):
                if words[start][0].lower() != short[0].lower():
                    continue
                targets = surfaces.get(" ".join(stems(words[start:])))
                if targets and len(targets) == 1:
                    counts[(short.lower(), targets[0])] += 1
                    break
    best: dict[str, tuple[int, str]] = {}
    for (short, target), count in counts.items():
        if count >= 2 and count > best.get(short, (0, ""))[0]:
            best[short] = (count, target)
    return {short: target for short, (_, target) in best.items()}


# "gastroesophageal reflux (GER), also called acid reflux or acid regurgitation": the everyday name after "also
# called" is a synonym of the known name before it.
_ALSO_CALLED = re.compile(r"([A-Za-z][A-Za-z' -]{2,80}?)\s*(?:\([^)]{1,12}\))?,?\s+(?:is |are )?(?:also|sometimes|often|"
                          r"commonly) (?:called|known as|referred to as)\s+(?:an? |the )?([a-z][a-z'-]*(?: [a-z][a-z'-]*){0,3}?)"
                          r"(?=\s*(?:[,.;:)]|\bor\b|\band\b))")
MAX_ALSO_CALLED_WORDS = 4


def _mine_also_called(records: Sequence[QAPair], surfaces: dict) -> list[tuple[str, str]]:
    """(everyday name, focus key) from answers that say "<known name>, also called <everyday name>"."""
    mined = []
    for record in records:
        if "called" not in record.answer and "known as" not in record.answer:
            continue
        for match in _ALSO_CALLED.finditer(record.answer):
            words = raw_words(match.group(1))[-MAX_ALSO_CALLED_WORDS:]
            for start in range(len(words)):
                targets = surfaces.get(" ".join(stems(words[start:])))
                if targets:
                    mined.extend((match.group(2), target) for target in targets)
                    break
    return mined


# A sentence ends at ? ! ; a line break, or a period, but not at a period inside a number ("2.5 mg"), a web or mail
# address ("[http://www.nlm.nih.gov/medlineplus/ency/article/000954.htm]" had been read as four sentences) or after an
# abbreviation ("i.e. is there", "Dr. Smith"). A period with no space after it still ends a sentence in a word
# ("iron.I am anemic", "from2007.How often").
_SENTENCE_END = re.compile(r"[.?!;]+|\n")
_ADDRESS = re.compile(r"https?://|www\.|\w@\w|\.(?:com|org|gov|net|edu|html?|pdf|jpe?g|png)\b", re.IGNORECASE)
_QUESTION_START = frozenset(
    "what whats what's how why when where who which whom is are was were do does did can could should would will "
    "may might has have any".split())
_REQUEST_CUES = re.compile(r"\b(know|information|info|learn|tell me|help|advice|looking for|send|explain|"
                           r"treatments?|cure|article|find|my question|wondering)\b", re.IGNORECASE)
# "Thank you in advance for your help!!!" asks nothing, whatever its words ("Thanks, but what is the dose?" asks).
_THANKS = re.compile(r"^\W*(?:thanks|thank you|thank u|thx|many thanks)\b", re.IGNORECASE)
MAX_SUB_QUESTIONS = 3


def sentences(text: str) -> list[str]:
    """The text's sentences (``_SENTENCE_END``), stripped, those without a letter or digit left out."""
    found, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        # the word or address around a period is read within 80 characters of it, so a long message costs no more
        if end.group() == "." and not _ends_sentence(text[max(start, end.start() - 80): end.start()],
                                                     text[end.end(): end.end() + 80]):
            continue
        found.append(text[start:end.end()].strip())
        start = end.end()
    found.append(text[start:].strip())
    return [s for s in found if any(c.isalnum() for c in s)]


def _ends_sentence(before: str, after: str) -> bool:
    """Whether a single period between ``before`` and ``after`` ends a sentence."""
    if after[:1].isdigit() and not before[-1:].isalpha():  # "2.5 mg", "take .5 mg"
        return False
    token = re.search(r"\S*$", before).group() + "." + re.match(r"\S*", after).group()
    if after[:1].strip() and _ADDRESS.search(token):
        return False
    word = (re.search(r"[\w.]*$", before).group() + "." + re.match(r"[\w.]*", after).group()).strip(".")
    if word.isupper() and "." not in word:  # "I have MS. Can it be cured?": an acronym, not "Ms."
        return True
    if word.lower() == "no":  # "the doctor said no. What now?", not "No. 5"
        return not after.lstrip()[:1].isdigit()
    return word.lower() not in ABBREVIATIONS


def split_questions(message: str) -> list[str]:
    """The core questions of a message: question or request sentences, without a subject line or greetings.

    A subject line ("Chronic lymphocytic leukemia. How can I get information...") or a sentence that only states
    facts is dropped here; its foci still reach the questions through ``retrieve``'s whole-message recognition.
    A message with no sentence that asks anything is one question as a whole.
    """
    questions = []
    for sentence in [s for s in sentences(message) if len(raw_words(s)) >= 2]:
        words = raw_words(sentence)
        asked = sentence.rstrip().endswith("?")
        asks = asked or words[0].lower() in _QUESTION_START
        only_thanks = _THANKS.search(sentence) and not asked
        if (asks or _REQUEST_CUES.search(sentence)) and not only_thanks:
            questions.append(sentence)
    return questions[:MAX_SUB_QUESTIONS] or [" ".join(message.split())]


# A follow-up points back ("it", "that", "them") or asks only in question words ("what are the symptoms?"); a
# message with words of its own ("what helps with a hangover") starts a new topic, as does one that says so.
_ANAPHORA = frozenset("it its it's itself that this these those they them their he she his her him one ones".split())
MAX_OWN_WORDS = 2  # "what are the warning signs?", "what treatments exist": words of no topic of their own
_TOPIC_CHANGE = re.compile(
    r"\b(?:unrelated|different (?:question|topic|subject)|another (?:question|topic|thing|subject)|"
    r"new (?:question|topic|subject)|change (?:of |the )?(?:topic|subject)|something else|on another note|"
    r"by the way|btw|off topic)\b", re.IGNORECASE)
# Requests no NIH page answers, whatever the conversation was about: "write me a poem about cats", "tell me a joke".
_OFF_TOPIC_REQUEST = re.compile(
    r"^\W*(?:(?:hi|hey|hello|ok|okay|thanks|thank you|now|please)\W+)*(?:(?:can|could|would|will) you\s+)?(?:please\s+)?"
    r"(?:write|compose|draw|sing|translate|recommend|book|order|play|code|program|tell me a (?:joke|story|riddle))\b",
    re.IGNORECASE)
_STOP_STEMS = frozenset(stems(bm25s.stopwords.STOPWORDS_EN_PLUS)) | _FUNCTION_WORDS


def changes_topic(text: str) -> bool:
    """The message says it leaves the conversation's topic ("unrelated, ...", "different question: ...")."""
    return bool(_TOPIC_CHANGE.search(text))


def off_topic_request(text: str) -> bool:
    """A request outside health information (a poem, a joke, a translation): never answered from NIH pages."""
    return bool(_OFF_TOPIC_REQUEST.search(text))


