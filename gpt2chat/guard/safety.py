"""Safety checks the chat engine runs on every (already PII-masked) user message before anything is generated.

Usage:
    from gpt2chat.guard.emergency import default_detector
    from gpt2chat.guard.safety import SafetyPolicy, check_input

    text, problem = check_input(raw_message)      # cleaned text, or a polite InputProblem to show instead
    verdict = SafetyPolicy(default_detector()).assess(masked_text)   # emergency / dosing / diagnosis / None
    if verdict.category:
        show(verdict.reply)                        # shown before any answer
        if verdict.blocks_answer:                  # emergencies: the reply is the whole answer
            return

Emergencies are found by the keyword rules (``gpt2chat.guard.emergency_rules``) combined with a classifier trained on
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

from gpt2chat.guard.emergency import EmergencyDetector, default_detector

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


def _emergency_reply(kinds: list[str]) -> str:
    lines = [CALL_NOW]
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
_FOREIGN_WORDS = frozenset(
    "el la los las del que qué y es para por con cómo cuál cuáles tengo puedo está una un mis "  # Spanish
    "le les des du est sont et une pour avec mon mes comment quels quelle quel je ce qu j ai "  # French
    "der das und ist sind mit ich wie ein eine für nicht mein meine habe "  # German
    "il gli che è sono della perché ho "  # Italian
    "os é são com não meu minha como quais tenho".split()  # Portuguese
)

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


@dataclasses.dataclass(frozen=True)
class SafetyPolicy:
    """The checks the chat engine runs, as one collaborator that tests and reports can replace."""

    emergencies: EmergencyDetector | None = None  # None: the process-wide detector, trained on first use

    def check_input(self, text: str, max_chars: int = 2000) -> tuple[str, InputProblem | None]:
        return check_input(text, max_chars)

    def assess(self, masked_text: str) -> SafetyVerdict:
        """The first category that applies: emergency, then personal dosing, then diagnosis; SAFE otherwise."""
        kinds = (self.emergencies or default_detector()).kinds(masked_text)
        if kinds:
            return SafetyVerdict(EMERGENCY, _emergency_reply(kinds), blocks_answer=True)
        if _DOSING.search(masked_text):
            return SafetyVerdict(PERSONAL_DOSING, DOSING_REPLY)
        if _DIAGNOSIS.search(masked_text):
            return SafetyVerdict(DIAGNOSIS, DIAGNOSIS_REPLY)
        return SAFE
