"""Safety checks the chat engine runs on every (already PII-masked) user message before anything is generated.

Usage:
    from gpt2chat.guard.emergency import build_detector
    from gpt2chat.guard.safety import SafetyPolicy, check_input

    policy = SafetyPolicy(build_detector())      # once, in the composition root (ChatEngine.build)
    urgent = policy.emergency(raw_message, earlier_user_messages, mask)   # first: any length/language
    text, problem = check_input(raw_message)      # cleaned text, or a polite InputProblem to show instead
    verdict = policy.assess(masked_text)          # emergency / dosing / diagnosis / None
    if verdict.category:
        show(verdict.reply)                        # shown before any answer
        if verdict.blocks_answer:                  # emergencies: the reply is the whole answer
            return

Emergencies are checked before anything else (``SafetyPolicy.emergency``): on the whole message, whatever its length
or language (Spanish and French rules too), and on the last turns of the conversation read together. They are found
by the keyword rules (``gpt2chat.guard.emergency_rules``) combined with a classifier trained on
hand-written messages in the way people type ("i took like 40 tylenol", "my friend OD'd", "kms"): see
``gpt2chat.guard.emergency``. Informational questions about the same conditions ("What are the warning signs of a
stroke?"), past events and hypotheticals are answered. The detector leans towards flagging: a needless emergency
number costs less than a missed one. ``python -m gpt2chat.safety --eval`` measures it on held-out messages.

Prompt injection: the app has no hidden instructions, tools, retrieval filters or secrets that text could
reach or reveal. The message is always placed in the prompt's Question slot as content, and the model only
continues that text, so the engine answers such messages like any other (tests/test_engine.py checks the prompt).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from pathlib import Path
from typing import Callable, Sequence

from gpt2chat.guard.emergency import SET_PATH, EmergencyDetector, normalise
from gpt2chat.guard.emergency_rules import foreign_kinds, rule_kinds

EMERGENCY = "emergency"
PERSONAL_DOSING = "personal_dosing"
DIAGNOSIS = "diagnosis"


@dataclasses.dataclass(frozen=True)
class SafetyVerdict:
    category: str | None  # EMERGENCY, PERSONAL_DOSING, DIAGNOSIS or None
    reply: str | None  # what to show the user before (or instead of) an answer
    blocks_answer: bool = False  # True for emergencies: no generated answer follows the reply


@dataclasses.dataclass(frozen=True)
class InputProblem:
    code: str  # "empty", "too_long" or "not_english"
    reply: str


SAFE = SafetyVerdict(None, None)

CALL_NOW = "Please call your local emergency number now (911 in the US, 112 in Europe) or have someone call for you."
_EMERGENCY_CLOSE = "I'm an information tool and can't help in an emergency. Please don't wait for it to pass."
_SUICIDE_LINE = (
    "If you are thinking about suicide or hurting yourself, you can call or text 988, the Suicide & Crisis "
    "Lifeline (US), at any time, or your local crisis line. You don't have to go through this alone."
)
_POISON_LINE = (
    "For a poisoning or overdose you can also call Poison Control at 1-800-222-1222 (US). If the person is "
    "unconscious, having a seizure or struggling to breathe, call emergency services first."
)
DOSING_REPLY = (
    "I can't tell you your personal dose or change one: the right amount depends on age, weight, kidney and liver "
    "function and your other medicines. A pharmacist or your doctor can tell you, and the label or leaflet gives "
    "the approved dosing. I can share general information about the medicine."
)
DIAGNOSIS_REPLY = (
    "I can't diagnose you or tell you what you have: that needs someone who can examine you and knows your "
    "history. A doctor can, and if symptoms are sudden or severe, please seek care now. I can share general "
    "information about the condition, which is not a diagnosis."
)

_FLAGS = re.IGNORECASE


# The reply stays in English (the app's language), with the call-now line also in the language the message was in.
_LOCAL_NUMBER = {
    "es": "Llame ahora al número de emergencias (112 en España y Europa, 911 en México y Estados Unidos) o pida a "
          "alguien que llame.",
    "fr": "Appelez maintenant le numéro d'urgence (15 ou 112 en France, 112 en Europe, 911 au Canada) ou demandez "
          "à quelqu'un d'appeler.",
}


def _emergency_reply(kinds: list[str], language: str | None = None) -> str:
    lines = [CALL_NOW] + ([_LOCAL_NUMBER[language]] if language in _LOCAL_NUMBER else [])
    if "suicide" in kinds:
        lines.append(_SUICIDE_LINE)
    if "poison" in kinds:
        lines.append(_POISON_LINE)
    lines.append(_EMERGENCY_CLOSE)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- dosing and diagnosis
_SUBJECT = r"(?:i|we|he|she|they|my \w+(?: \w+)?)"
_DOSING = re.compile(
    rf"\bhow (?:much|many)\b[^.?!]{{0,60}}\b(?:should|can|could|do|must|may|shall)\s+{_SUBJECT}\s+"
    r"(?:take|give|use|inject)\b|"
    rf"\b(?:what|which)\s+(?:dose|dosage|amount|strength)\b[^.?!]{{0,60}}\b(?:should|can|could|do|must)\s+{_SUBJECT}\b|"
    r"\b(?:what|which|right|correct)\s+(?:dose|dosage)\b[^.?!]{0,40}\bfor (?:me|my|him|her|us|an? \d+)\b|"
    rf"\b(?:can|should|may|could|do)\s+{_SUBJECT}\s+(?:double|triple|increase|decrease|lower|raise|skip|stop|halve|"
    r"split|crush|cut|up|change)\s+(?:taking )?(?:my |his |her |their |the )?(?:\w+ )?"
    r"(?:dose|dosage|medication|medicine|meds|pills?|tablets?|insulin)\b|"
    r"\b(?:my|his|her) (?:\w+ )?(?:dose|dosage)\b|\b(?:missed|skipped|forgot) (?:a |my |his |her )?(?:dose|pill)\b|"
    rf"\b(?:is|are) \d+(?:\.\d+)?\s*(?:mg|mcg|g|ml|milligrams?|units?|pills?|tablets?)\b[^.?!]{{0,40}}\b(?:too much|"
    r"too many|safe|ok|okay|enough)\b[^.?!]{0,20}\bfor (?:me|my|him|her)\b",
    _FLAGS,
)
_DIAGNOSIS = re.compile(
    # "do I have to fast before the test?" asks about a procedure, not for a diagnosis.
    r"\b(?:do|could|might)\s+(?:i|we)\s+have\b(?!\s+to\b)|"
    r"\b(?:does|could|might)\s+(?:he|she|my \w+)\s+have\b(?!\s+to\b)|"
    r"\bis it possible (?:that )?(?:i|my \w+) (?:have|has)\b|\bam i (?:sick|ill|dying|pregnant)\b|"
    r"\bwhat(?:'?s| is) wrong with (?:me|my|him|her|us)\b|\bdiagnos(?:e|is) (?:me|my|him|her)\b|"
    r"\b(?:can|could|would) you diagnos\w*|\bwhat (?:disease|condition|illness|infection|sickness) do (?:i|we) have\b|"
    r"\bwhat do (?:i|we) have\b|\bwhat (?:could|might|can) (?:this|it|that) be\b|"
    r"\bis this (?:cancer|serious|something serious)\b",
    _FLAGS,
)


# ------------------------------------------------------------------------------------------------ input checking
_MIN_LETTERS_SCRIPT = 4  # "糖尿病的症状" is a whole question in four to six letters
_MIN_LETTERS_WORDS = 12  # shorter Latin text (a drug name, "ibuprofène?") is never judged by its words
_MIN_LATIN_SHARE = 0.5
_ENGLISH_WORDS = frozenset(
    "the a an is are was what how why when which who of for to and or in on at my i me you it this that with can "
    "do does did should could would have has be been not no from about after before".split()
)
# Common function words that are not also English words ("die", "son", "per", "mi", "was" are left out).
_FUNCTION_WORDS = {
    "es": frozenset("el la los las del que qué y es para por con cómo cuál cuáles tengo puedo está una un mis".split()),
    "fr": frozenset("le les des du est sont et une pour avec mon mes comment quels quelle quel je ce qu j ai".split()),
    "de": frozenset("der das und ist sind mit ich wie ein eine für nicht mein meine habe".split()),
    "it": frozenset("il gli che è sono della perché ho".split()),
    "pt": frozenset("os é são com não meu minha como quais tenho".split()),
}
_FOREIGN_WORDS = frozenset().union(*_FUNCTION_WORDS.values())

EMPTY_REPLY = "Please type a question about a health topic, for example: \"How is glaucoma treated?\""
NOT_ENGLISH_REPLY = (
    "I can only answer in English: my knowledge comes from MedQuAD, a collection of English questions and answers "
    "from NIH websites. Please ask your question in English (medicine and disease names in any spelling are fine)."
)


def _too_long_reply(max_chars: int) -> str:
    return (
        f"Your message is longer than {max_chars:,} characters. Please shorten it to the main question "
        "(one or two sentences work best) and send it again."
    )


def clean_text(text: str) -> str:
    """NFC-normalised text without control or invisible format characters; layout whitespace becomes spaces."""
    text = " ".join(text.split())  # tabs, newlines and every other Unicode space become single spaces
    # "C*": control (NUL...), format (zero-width, bidi marks), surrogate, private use and unassigned code points.
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    return " ".join(unicodedata.normalize("NFC", text).split())


def _mostly_not_english(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) < _MIN_LETTERS_SCRIPT:
        return False
    # Another script: accented Latin ("café", "Ménière") counts as English-compatible.
    latin = sum(ch.isascii() or "LATIN" in unicodedata.name(ch, "") for ch in letters)
    if latin / len(letters) < _MIN_LATIN_SHARE:
        return True
    if len(letters) < _MIN_LETTERS_WORDS:
        return False
    # Latin script: Spanish, French, German, Italian or Portuguese function words outnumbering English ones.
    words = re.findall(r"[^\W\d_]+", text.lower())
    english = sum(w in _ENGLISH_WORDS for w in words)
    foreign = sum(w in _FOREIGN_WORDS for w in words)
    return foreign >= 2 and foreign > english


def _language(text: str) -> str | None:
    """"es" or "fr" when that language's function words outnumber English ones (two at least), else None."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    english = sum(w in _ENGLISH_WORDS for w in words)
    counts = {lang: sum(w in _FUNCTION_WORDS[lang] for w in words) for lang in ("es", "fr")}
    lang = max(counts, key=counts.get)
    return lang if counts[lang] >= 2 and counts[lang] > english else None


def check_input(text: str, max_chars: int = 2000) -> tuple[str, InputProblem | None]:
    """The cleaned message and the first problem with it (None when it can be answered). Never raises on a str."""
    cleaned = clean_text(text)
    if not cleaned or not any(ch.isalnum() for ch in cleaned):
        return cleaned, InputProblem("empty", EMPTY_REPLY)
    if len(cleaned) > max_chars:
        return cleaned, InputProblem("too_long", _too_long_reply(max_chars))
    if _mostly_not_english(cleaned):
        return cleaned, InputProblem("not_english", NOT_ENGLISH_REPLY)
    return cleaned, None


# Messages up to this length are judged whole; longer ones by clauses and windows (``SafetyPolicy.emergency``).
WINDOW_CHARS = 2000
# Of a longer message, the check reads the first and last READ_CHARS / 2 characters (10 times the input limit; every
# clause of a 1 MB message took 6-8 s on this machine, a cost one client could impose on every queue slot).
READ_CHARS = 20_000
# The conversation check reads the last two earlier user messages with the new one, each cut to its last
# TURN_CHARS characters: enough for "turn 1: what happened, turn 2: what now", while an emergency mentioned
# three messages ago no longer blocks answers (the price: the two messages after one get the emergency reply too).
CONVERSATION_TURNS = 2
TURN_CHARS = 1000


@dataclasses.dataclass(frozen=True)
class SafetyPolicy:
    """The checks the chat engine runs, as one collaborator that tests and reports can replace."""

    emergencies: EmergencyDetector  # gpt2chat.guard.emergency.build_detector: trained once by the caller

    def check_input(self, text: str, max_chars: int = 2000) -> tuple[str, InputProblem | None]:
        return check_input(text, max_chars)

    def _emergency_kinds(self, text: str) -> list[str]:
        """``EmergencyDetector.kinds`` for a message of any length. Beyond WINDOW_CHARS the rules read every clause
        and the classifier the first and last WINDOW_CHARS (where a story states what is happening, or asks what to
        do), so a 2,200-character story ending "his face is drooping and he cant talk" is flagged, in time linear in
        its length. Classifying overlapping windows throughout took 35 s for 1 MB and flagged repetitive filler."""
        detector = self.emergencies
        if len(text) <= WINDOW_CHARS:
            return detector.kinds(text)
        kinds = rule_kinds(normalise(text))
        head, tail = text[:WINDOW_CHARS].rsplit(" ", 1)[0], text[-WINDOW_CHARS:].split(" ", 1)[-1]
        for window in (head, tail):
            kinds += [k for k in detector.kinds(window) if k not in kinds]
        return kinds

    def emergency(self, message: str, earlier: Sequence[str] = (),
                  mask: Callable[[str], str] | None = None) -> SafetyVerdict | None:
        """The emergency verdict, checked first: on the whole raw message (any length, any language, before the
        length check; nothing is stored or logged) and then on the conversation, the last CONVERSATION_TURNS
        earlier user messages (masked with ``mask``) read together with this one, and each on its own: an emergency
        stays open for CONVERSATION_TURNS more messages. None when it is not one."""
        if len(message) > READ_CHARS:  # the rules cost about 6 s per MB of text: read its two ends
            message = message[: READ_CHARS // 2] + "\n" + message[-READ_CHARS // 2:]
        text = clean_text(message)
        kinds = self._emergency_kinds(text)
        if not kinds and earlier:
            recent = [clean_text(turn)[-TURN_CHARS:] for turn in list(earlier)[-CONVERSATION_TURNS:]]
            recent = [mask(turn) if mask else turn for turn in recent]
            text = ". ".join(recent + [text[-TURN_CHARS:]])
            # The story read together, or an emergency still open from an earlier turn: "it was the drain cleaner,
            # his mouth is red, what should i do" after "my son swallowed something from under the sink".
            kinds = self._emergency_kinds(text)
            for turn in recent:
                kinds += [kind for kind in self._emergency_kinds(turn) if kind not in kinds]
        if not kinds:
            return None
        return SafetyVerdict(EMERGENCY, _emergency_reply(kinds, foreign_kinds(text)[1] or _language(text)),
                             blocks_answer=True)

    def assess(self, masked_text: str) -> SafetyVerdict:
        """The first category that applies: emergency, then personal dosing, then diagnosis; SAFE otherwise."""
        urgent = self.emergency(masked_text)
        if urgent:
            return urgent
        if _DOSING.search(masked_text):
            return SafetyVerdict(PERSONAL_DOSING, DOSING_REPLY)
        if _DIAGNOSIS.search(masked_text):
            return SafetyVerdict(DIAGNOSIS, DIAGNOSIS_REPLY)
        return SAFE
