"""Safety checks the chat engine runs on every (already PII-masked) user message before anything is generated.

Usage:
    from gpt2chat.safety import assess, check_input

    text, problem = check_input(raw_message)      # cleaned text, or a polite InputProblem to show instead
    verdict = assess(masked_text)                  # emergency / personal_dosing / diagnosis / None
    if verdict.category:
        show(verdict.reply)                        # shown before any answer
        if verdict.blocks_answer:                  # emergencies: the reply is the whole answer
            return

Emergency detection is keyword rules, not a classifier. A topic alone ("What are the symptoms of a stroke?")
is an information question; it becomes an emergency only with a sign that it is happening to someone now: a
first- or third-person subject ("I", "my dad", "she is"), an acute verb ("having a stroke", "took 30 pills"),
or a statement rather than a question. Generic hypotheticals ("what should I do if someone has a seizure?"),
negated mentions ("I don't have chest pain") and past events ("my father had a stroke last year") are not
emergencies. The rules lean towards flagging: a needless emergency number costs less than a missed one.

Prompt injection: the app has no hidden instructions, tools, retrieval filters or secrets that text could
reach or reveal. The message is always placed in the prompt's Question slot as content, and the model only
continues that text. ``looks_like_injection`` exists so the engine and reports can count such messages; it
changes nothing about how they are answered.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata

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

# ---------------------------------------------------------------------------------------------------- emergency
# Words written as they appear in chat: apostrophes optional ("cant", "dont", "im").
_CANT = r"(?:can'?t|cannot|can not|unable to)"
_WONT = r"(?:won'?t|will not|doesn'?t|does not|isn'?t going to)"

# Someone specific, now. "you" and "someone" are deliberately absent: they make a question general.
_PERSON = re.compile(
    r"\b(?:i|i'?m|i'?ve|i'?d|me|my|myself|mine|we|we'?re|our|us|he|he'?s|him|his|she|she'?s|her|they|they'?re|"
    r"them|their|this)\b|\bright now\b|^\s*help\b|\bhelp(?: me| us)?\s*$|"
    r"\bcall(?:ing)? (?:an? )?(?:ambulance|911|112)\b|\bgo to (?:the )?(?:er|emergency|hospital)\b",
    _FLAGS,
)
# "What should I do", "tell me about": the speaker asks for know-how; their "I" or "me" is not the patient.
_HELPER = re.compile(
    r"\b(?:what|how)\s+(?:should|can|could|do|would|must)\s+(?:i|we)(?:\s+do)?\b|"
    r"\b(?:should|can|could|do)\s+(?:i|we)\b|\b(?:tell|show|explain to|teach) me\b|"
    r"\bi(?:'?m| am| was)? (?:curious|wondering|interested)\b|"
    r"\bi (?:want|would like|need) to (?:know|learn|understand)\b",
    _FLAGS,
)
_GENERIC = re.compile(r"\b(?:if|when|whenever|in case)\s+(?:someone|somebody|anyone|a person|people|you|a child|one)\b",
                      _FLAGS)
_QUESTION = re.compile(  # a question or a request for information ("tell me about self-harm in teenagers")
    r"^\s*(?:please\s+)?(?:what|how|why|when|which|who|is|are|can|could|does|do|should|will|would|tell|explain|"
    r"describe|define|list|give|show|info|information|facts)\b|\?\s*$",
    _FLAGS,
)
_HISTORY = re.compile(
    r"\b(?:last (?:year|month|week|summer|winter|spring|fall)|(?:years?|months?|weeks?) ago|in (?:19|20)\d\d|"
    r"history of|in the past|used to|recover(?:ing|ed) from|survivor|previous|prior)\b",
    _FLAGS,
)
# A negation just before a finding ("no chest pain", "I don't have chest pain", "not having a stroke").
_NEGATED = re.compile(
    r"\b(?:no|not|never|without|denies|(?:do|does|did)(?: not|n'?t) have|(?:have|has)(?: not|n'?t) had)\s+"
    r"(?:\w+\s+){0,2}$",
    _FLAGS,
)

_CHEST_PAIN = re.compile(
    r"\bchest (?:pains?|pressure|tightness|hurts?|is hurting|feels? (?:tight|heavy|crushed))\b|"
    r"\b(?:pain|pressure|tightness|squeezing) in (?:my|his|her|the) chest\b|\bcrushing\b[^.?!]*\bchest\b",
    _FLAGS,
)
_CHEST_COMPANION = re.compile(  # what turns chest pain into "possible heart attack"
    r"\bshort(?:ness)? of breath\b|\bbreathless\w*\b|\b(?:trouble|difficulty|hard|struggling to) breath\w*\b|"
    rf"\b{_CANT} (?:breathe|catch (?:my|his|her|a) breath|get (?:enough )?air)\b|"
    r"\b(?:left |down (?:my|his|her|the) )?arm\b|\bjaw\b|\bsweat\w*\b|\bcrushing\b|\bnause\w*\b|\bfaint\w*\b",
    _FLAGS,
)

# (kind, pattern): the kind picks the extra lines of the reply. Each needs a specific person, now.
_EMERGENCIES = [
    ("heart", re.compile(r"\b(?:having|just had|in the middle of) (?:a |an )?heart attack\b|"
                         r"\b(?:is|was) (?:this|it|that) (?:a )?heart attack\b|\bheart attack (?:right )?now\b",
                         _FLAGS)),
    ("stroke", re.compile(
        r"\b(?:having|just had) (?:a |an )?stroke\b|\b(?:is|was) (?:this|it|that) (?:a )?stroke\b|"
        r"\b(?:face|mouth|smile|lip)s? (?:is |are |has |have |started |keeps? )?"
        r"(?:drooping|droops|drooped|sagging|numb)\b|"
        r"\bdrooping (?:face|mouth|smile)\b|\bslurr(?:ed|ing)\b|"
        rf"\b{_CANT} (?:move|lift|feel) (?:my|his|her|their|one) (?:arm|leg|face|side)\b|"
        r"\bsudden(?:ly)? (?:numbness|weakness|confusion|numb|weak|confused)\b",
        _FLAGS)),
    ("suicide", re.compile(
        r"\b(?:kill|killing|hurt|hurting|harm|harming|cut|cutting|end|ending) (?:myself|himself|herself|themselves)\b|"
        r"\bsuicid\w*|\bself[- ]?harm\w*|\bend(?:ing)? (?:my|his|her|their) (?:own )?life\b|\bend it all\b|"
        r"\b(?:don'?t|do not|doesn'?t|does not) want to (?:live|be alive|be here|wake up)\b|\bwant(?:s)? to die\b|"
        r"\bbetter off dead\b|\bno reason to live\b|\btake my (?:own )?life\b",
        _FLAGS)),
    ("poison", re.compile(
        r"\boverdos\w*|\bpoisoned\b|"
        r"\b(?:took|taken|swallowed|ate|eaten) (?:too many|too much|an overdose|a handful of|a bunch of|"
        r"a (?:whole|full) (?:bottle|pack|box)|the (?:whole|entire) (?:bottle|pack|box)|an entire (?:bottle|pack|box)|"
        r"all (?:of )?(?:my|his|her|their|the) (?:pills|tablets|medicine|meds))\b|"
        # "took 30 tylenol", but not "took 20 mg" or "took 10 minutes"
        r"\b(?:took|taken|swallowed) [1-9]\d+ (?!(?:mg|mcg|g|ml|iu|units?|milligrams?|micrograms?|minutes?|mins?|"
        r"hours?|hrs?|days?|weeks?|months?|years?|seconds?|times?|percent)\b)\w+|"
        r"\b(?:swallowed|drank|drunk|ingested|ate|eaten|got into|chewed|licked)\b[^.?!]{0,40}?\b(?:bleach|"
        r"detergent|(?:laundry|dishwasher|detergent) pods?|cleaner|antifreeze|poison|pesticide|weed ?killer|"
        r"batter(?:y|ies)|lamp oil|gasoline|petrol|chemicals?|wild mushrooms?)\b",
        _FLAGS)),
    ("bleeding", re.compile(
        rf"\b{_WONT} stop bleeding\b|\b{_CANT} stop (?:the )?bleeding\b|\bbleeding {_WONT} stop\b|"
        r"\bbleeding (?:heavily|profusely|badly|everywhere)\b|\b(?:severe|uncontrolled|massive) bleeding\b|"
        r"\bblood (?:is )?(?:spurting|gushing|pouring)\b|\b(?:spurting|gushing|pouring) blood\b|"
        r"\blosing (?:a lot of|lots of|so much) blood\b|\b(?:vomiting|throwing up|coughing up) (?:a lot of )?blood\b",
        _FLAGS)),
    ("anaphylaxis", re.compile(
        r"\b(?:throat|tongue)s? (?:is |are |feels? |keeps? )?(?:swelling|swollen|closing|tight(?:ening)?)\b|"
        r"\bswollen (?:throat|tongue)\b|\bswelling (?:of|in) (?:my|his|her|the) (?:throat|tongue)\b|"
        r"\b(?:having|in|going into) (?:an )?anaphyla\w*|\banaphylactic (?:shock|reaction)\b",
        _FLAGS)),
    ("unconscious", re.compile(
        rf"\bunconscious\b|\bunresponsive\b|\b{_WONT} wake up\b|\b{_CANT} wake (?:him|her|them|up)\b|"
        r"\bnot waking up\b|\bcollapsed\b|\b(?:isn'?t|is not|not|stopped|aren'?t) breathing\b",
        _FLAGS)),
    ("seizure", re.compile(
        r"\b(?:having|had) (?:a |another )?(?:seizure|fit|convulsion)s?\b[^.?!]*\b(?:won'?t stop|not stopping|"
        r"minutes|mins|back to back|one after another|still)\b|"
        r"\b(?:seizure|convulsion|fit)s? (?:has |have )?(?:lasted|lasting|going on|won'?t stop|not stopping)\b|"
        r"\b(?:seizing|convulsing)\b|\b(?:is|he'?s|she'?s) fitting\b",
        _FLAGS)),
    ("breathing", re.compile(
        # "I can't breathe through my nose" is a blocked nose, not an emergency.
        rf"\b{_CANT} (?:breathe|breath|get (?:any |enough )?air)\b"
        r"(?! (?:through|out of|in through) (?:my|his|her|the|one) nos)|"
        r"\bcan barely breathe\b|\bstruggling to breathe\b|\bgasping for (?:air|breath)\b|\bturning blue\b|"
        r"\b(?:is|are|he'?s|she'?s|i'?m) choking\b",
        _FLAGS)),
]


def _clauses(message: str) -> list[str]:
    """Sentences, split again at "but", so "I had a stroke last year but now my face is drooping" is two."""
    return [c for c in re.split(r"[.!?;\n]+|\bbut\b", message, flags=_FLAGS) if c.strip()]


def _about_someone_now(clause: str) -> bool:
    if _HISTORY.search(clause) or _GENERIC.search(clause):
        return False
    if _PERSON.search(_HELPER.sub(" ", clause)):
        return True
    return not _QUESTION.search(clause)  # a bare statement ("crushing chest pain, can't breathe") is first-hand


def _live(pattern: re.Pattern, clause: str) -> bool:
    """A match that is not negated just before it."""
    return any(not _NEGATED.search(clause[: m.start()]) for m in pattern.finditer(clause))


def _emergency_kinds(message: str) -> list[str]:
    kinds = []
    personal = [c for c in _clauses(message) if _about_someone_now(c)]
    for kind, pattern in _EMERGENCIES:
        if any(_live(pattern, c) for c in personal):
            kinds.append(kind)
    # Chest pain is an emergency with a companion sign anywhere in the message (often the next sentence).
    if any(_live(_CHEST_PAIN, c) for c in personal) and any(_live(_CHEST_COMPANION, c) for c in _clauses(message)):
        kinds.append("heart")
    return kinds


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


def assess(message: str) -> SafetyVerdict:
    """The first category that applies: emergency, then personal dosing, then diagnosis; SAFE otherwise."""
    kinds = _emergency_kinds(message)
    if kinds:
        return SafetyVerdict(EMERGENCY, _emergency_reply(kinds), blocks_answer=True)
    if _DOSING.search(message):
        return SafetyVerdict(PERSONAL_DOSING, DOSING_REPLY)
    if _DIAGNOSIS.search(message):
        return SafetyVerdict(DIAGNOSIS, DIAGNOSIS_REPLY)
    return SAFE


# ----------------------------------------------------------------------------------------------- prompt injection
_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|the\s+)?(?:of\s+)?(?:the\s+|your\s+)?"
    r"(?:previous|prior|above|earlier|preceding|original|system|those|these|your)?\s*(?:instructions?|prompts?|rules|"
    r"directions|guidelines|programming)\b|\b(?:ignore|disregard|forget) (?:everything|all) (?:above|before|else)\b|"
    r"\bsystem prompt\b|\byou are now\b|\bfrom now on,? you\b|"
    r"\b(?:reveal|show|print|repeat|output|tell me|what are)\b[^.?!]{0,30}\b(?:your|the) (?:hidden |initial |"
    r"original |secret )?(?:instructions|prompt|rules|guidelines)\b|\bjailbreak\w*|\bdeveloper mode\b|"
    r"\bpretend (?:to be|you are|you'?re)\b|\bact as (?:an?|my)\b|<\|\w+\|>|^\s*(?:system|assistant)\s*:|"
    r"\bnew instructions\b",
    _FLAGS | re.MULTILINE,
)


def looks_like_injection(text: str) -> bool:
    """True for text that tries to re-instruct the assistant. Informational only: see the module docstring."""
    return bool(_INJECTION.search(text))


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


class SafetyPolicy:
    """The checks the chat engine runs, as one collaborator that tests and reports can replace."""

    def check_input(self, text: str, max_chars: int = 2000) -> tuple[str, InputProblem | None]:
        return check_input(text, max_chars)

    def assess(self, masked_text: str) -> SafetyVerdict:
        return assess(masked_text)
