"""Keyword rules for emergencies: which kinds of emergency a message describes as happening to someone now.

A topic alone ("What are the symptoms of a stroke?") is an information question; it becomes an emergency only
with a sign that it is happening to someone now: a first- or third-person subject ("I", "my dad", "she is"), an
acute verb ("having a stroke", "took 30 pills"), or a statement rather than a question. Generic hypotheticals
("what should I do if someone has a seizure?"), negated mentions ("I don't have chest pain") and past events
("my father had a stroke last year") are not emergencies.

The rules are precise but miss phrasings nobody listed ("i took like 40 tylenol", "my friend OD'd"): the
classifier in ``gpt2chat.guard.emergency`` covers those, and ``not_happening_now`` lets these rules veto it on clear
history, hypotheticals and denials.
"""

from __future__ import annotations

import re
import unicodedata

_FLAGS = re.IGNORECASE

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
    r"describe|define|list|give|show|info|information|facts|signs?|symptoms?|causes?|treatments?|rates?|statistics|"
    r"risks?|types?|stages|first aid)\b|\?\s*$",
    _FLAGS,
)
_HISTORY = re.compile(
    r"\b(?:last (?:year|month|week|summer|winter|spring|fall)|(?:years?|months?|weeks?) ago|in (?:19|20)\d\d|"
    r"history of|in the past|used to|recover(?:ing|ed) from|survivor|previous|prior)\b",
    _FLAGS,
)
# A negation just before a finding ("no chest pain", "I don't have chest pain", "not having a stroke").
_NEGATED = re.compile(
    r"\b(?:no|not|never|without|denies|(?:do|does|did)(?: not|n'?t) (?:have|want to)|(?:have|has)(?: not|n'?t) had|"
    r"(?:was|were|is|are)(?: not|n'?t))\s+"
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
        r"\b(?:don'?t|do not|doesn'?t|does not) (?:want|wanna) (?:to )?(?:live|be alive|be here|wake up)\b|"
        r"\bbetter off dead\b|\bno reason to live\b|\btake my (?:own )?life\b|"
        r"\bkms\b|\bunaliv\w*|\bsewer ?slide\b|\boff (?:myself|himself|herself)\b|"  # chat slang
        r"\b(?:wanna|wants? to) die\b(?! (?:laughing|of (?:embarrassment|boredom)))",
        _FLAGS)),
    ("poison", re.compile(
        r"\boverdos\w*|\bpoisoned\b|\bo\.?d(?:'?d|'?ed|'?ing)\b|"
        r"\b(?:took|taken|swallowed|ate|eaten) (?:too many|too much|an overdose|a handful of|a bunch of|"
        r"a (?:whole|full) (?:bottle|pack|box)|the (?:whole|entire) (?:bottle|pack|box)|an entire (?:bottle|pack|box)|"
        r"all (?:of )?(?:my|his|her|their|the) (?:pills|tablets|medicine|meds))\b|"
        # "took 30 tylenol", but not "took 20 mg" or "took 10 minutes"
        r"\b(?:took|taken|swallowed) (?:like |about |around |maybe |over |almost |at least )?[1-9]\d+ (?!(?:mg|mcg|g|ml|iu|units?|milligrams?|micrograms?|minutes?|mins?|"
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
        rf"\bunconscious\b|\bunresponsive\b|\b{_WONT} wake up\b(?! (?:for|in time|on time|early))|\b{_CANT} wake (?:him|her|them|up)\b|"
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
        r"(?! (?:through|out of|in through)\b)|"
        r"\bcan barely breathe\b|\bstruggling to breathe\b|\bgasping for (?:air|breath)\b|\bturning blue\b|"
        r"\b(?:is|are|he'?s|she'?s|i'?m) choking\b",
        _FLAGS)),
]
KINDS = tuple(kind for kind, _ in _EMERGENCIES)
# Asking for a lethal amount or a way to die needs no "I" to be alarming ("how many tylenol does it take to die").
_LETHAL_QUESTION = re.compile(
    r"\b(?:how (?:many|much)|what amount)\b[^.?!]{0,40}\b(?:does it|would it|will it|do you|to) (?:take )?to "
    r"(?:die|kill (?:me|myself|someone|a person))\b|\bhow (?:many|much)\b[^.?!]{0,40}\bwould kill (?:me|someone)\b|"
    r"\b(?:easiest|fastest|quickest|painless|best) way to (?:die|kill (?:myself|yourself)|end it)\b",
    _FLAGS,
)


# A clause longer than this is cut at spaces: some patterns scan a clause from every match ("crushing ... chest"), and
# one 16,000-word clause of "crushing" took 57 s before the cut. Emergencies are stated in a few words.
_MAX_CLAUSE_CHARS = 300


def _cut(clause: str) -> list[str]:
    pieces, start = [], 0
    while len(clause) - start > _MAX_CLAUSE_CHARS:
        end = clause.rfind(" ", start, start + _MAX_CLAUSE_CHARS)
        end = end if end > start else start + _MAX_CLAUSE_CHARS
        pieces.append(clause[start:end])
        start = end
    return pieces + [clause[start:]]


def _clauses(message: str) -> list[str]:
    """Sentences, split again at "but", so "I had a stroke last year but now my face is drooping" is two."""
    return [p for c in re.split(r"[.!?;\n]+|\bbut\b", message, flags=_FLAGS) if c.strip() for p in _cut(c)]


def _about_someone_now(clause: str) -> bool:
    if _HISTORY.search(clause) or _GENERIC.search(clause):
        return False
    if _PERSON.search(_HELPER.sub(" ", clause)):
        return True
    return not _QUESTION.search(clause)  # a bare statement ("crushing chest pain, can't breathe") is first-hand


def _live(pattern: re.Pattern, clause: str) -> bool:
    """A match that is not negated just before it."""
    return any(not _NEGATED.search(clause[: m.start()]) for m in pattern.finditer(clause))


def _english_kinds(message: str) -> list[str]:
    kinds = ["suicide"] if _LETHAL_QUESTION.search(message) else []
    personal = [c for c in _clauses(message) if _about_someone_now(c)]
    for kind, pattern in _EMERGENCIES:
        if kind not in kinds and any(_live(pattern, c) for c in personal):
            kinds.append(kind)
    # Chest pain is an emergency with a companion sign anywhere in the message (often the next sentence).
    if "heart" not in kinds and any(_live(_CHEST_PAIN, c) for c in personal) and any(_live(_CHEST_COMPANION, c) for c in _clauses(message)):
        kinds.append("heart")
    return kinds


# --- Spanish and French ------------------------------------------------------------------------------------------
# The app answers only in English, but an emergency must be recognised in the language it is written in. These
# rules read the message folded to unaccented lower case ("bebé" -> "bebe": phones and hurried typing drop accents),
# and only acute phrasings: a topic alone ("¿qué es un ictus?") is not an emergency, as in English. Words that are
# also English ("suicide", "overdose", "anaphylaxis") are left to the English rules, which check who and when: as
# French words they flagged 5 held-out English questions ("what are the warning signs of suicide").
def fold(text: str) -> str:
    """Lower case without accents, "ç" and "ñ" included; curly apostrophes straightened."""
    decomposed = unicodedata.normalize("NFKD", text.replace("\u2019", "'").lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_ES_SUBSTANCES = (r"(?:lejia|cloro|veneno|lavavajillas|desatascador|destapacanos|destapa ?canos|limpiador|anticongelante|"
                  r"pilas?|bateria|raticida|insecticida|matarratas|detergente|capsulas? de (?:detergente|lavadora)|"
                  r"gasolina|queroseno|amoniaco|sosa caustica|salfuman|aguarras|hongos|setas)")
_FR_SUBSTANCES = (r"(?:eau de javel|javel|poison|deboucheur|destop|detergent|lessive|capsules? de lessive|antigel|"
                  r"piles?|pile bouton|raticide|mort aux rats|insecticide|pesticide|essence|petrole|white spirit|"
                  r"ammoniaque|soude|acide|champignons)")
_PILLS_ES = r"(?:pastillas|pildoras|comprimidos|tabletas|capsulas|paracetamol|ibuprofeno|aspirinas?|medicamentos|medicinas)"
_PILLS_FR = r"(?:pilules|comprimes|cachets|gelules|medicaments|doliprane|paracetamol|ibuprofene|aspirines?|somniferes)"
_MANY = r"(?:[1-9]\d+|veinte|treinta|cuarenta|cincuenta|vingt|trente|quarante|cinquante)"
_FOREIGN = {
    "es": [
        ("suicide", r"\bsuicid(?:arme|arse|arte|io|a)\b|\bme suicido\b|\b(?:me )?quiero morir(?:me)?\b|\bquitarme la vida\b|\bmatarme\b|\bme voy a matar\b|"
                    r"\bno quiero (?:seguir )?vivir\b|\bacabar con (?:mi vida|todo)\b|\bhacerme (?:dano|cortes)\b|"
                    r"\bcortarme\b|\bme estoy cortando\b|\bautolesion\w*|\bquiere morir(?:se)?\b|\bquitarse la vida\b"),
        ("poison", rf"\bsobredosis\b|\benvenenad[oa]s?\b|\b(?:se )?(?:ha |he |han )?(?:trago|tragado|tome|tomo|tomado|bebio|bebido|"
                   rf"comio|comido|ingirio|ingerido|chupo|mordio)\b[^.?!]{{0,40}}?\b(?:{_ES_SUBSTANCES}|todas? (?:las|mis|sus) "
                   rf"{_PILLS_ES}|un (?:frasco|bote|blister) entero|una caja entera|{_MANY} {_PILLS_ES})\b"),
        ("breathing", rf"\bno (?:puede |puedo |podia |esta |estaba )?respira(?:r|ndo)?\b|\b(?:dejo|ha dejado|deja) de respirar\b|"
                      r"\b(?:le|me) cuesta (?:mucho )?respirar\b|\bse (?:esta )?(?:ahogando|ahoga)\b|\bme ahogo\b|"
                      r"\b(?:se (?:esta )?poniendo|se puso|esta) (?:azul|morad[oa])\b|\blabios (?:azules|morados)\b|"
                      r"\batragant\w*"),
        ("unconscious", r"\binconsciente\b|\bno (?:se )?despierta\b|\bno reacciona\b|\bno responde\b|"
                        r"\bperdio el (?:conocimiento|sentido)\b|\bse desmayo\b|\bse desplomo\b"),
        ("stroke", rf"\b(?:cara|boca|sonrisa) (?:torcida|caida|paralizada|dormida|de lado)\b|"
                   rf"\bse (?:le|me) (?:cae|cayo|tuerce|torcio|duerme|durmio) (?:la cara|la boca|media cara|el brazo|un lado)\b|"
                   rf"\bno (?:puede|puedo) (?:hablar|mover (?:el|un|su|mi) (?:brazo|lado|pierna))\b|\b(?:habla raro|arrastra las palabras)\b|"
                   rf"\b(?:esta teniendo|tiene|le esta dando|le dio) (?:un )?(?:derrame|ictus|infarto cerebral)\b"),
        ("heart", r"\b(?:esta teniendo|estoy teniendo|le esta dando|me esta dando) (?:un )?(?:infarto|ataque al corazon|"
                  r"ataque cardiaco)\b"),
        ("anaphylaxis", r"\bse (?:me|le) (?:esta )?(?:cerrando|cierra|hinchando|hincha) (?:la garganta|la lengua|la cara)\b|"
                        r"\bgarganta (?:cerrada|hinchada|se (?:me |le )?cierra)\b|\blengua hinchada\b|\banafila\w*|"
                        r"\bchoque anafilactico\b"),
        ("bleeding", r"\bno (?:para|deja) de sangrar\b|\bsangra (?:mucho|muchisimo|sin parar|a chorros)\b|"
                     r"\bsangrado (?:abundante|que no para|muy fuerte)\b|\bmucha sangre\b|\b(?:vomita|vomitando|tose|tosiendo) sangre\b|"
                     r"\bperdiendo (?:mucha )?sangre\b|\bhemorragia\b"),
        ("seizure", r"\bconvulsionando\b|\b(?:esta teniendo|sigue con|lleva \w+ minutos con) (?:una |un )?(?:convulsion\w*|"
                    r"ataque epileptico|crisis)\b|\bconvulsion(?:es)? que no (?:para|paran)\b|\bno para de convulsionar\b|"
                    r"\bconvulsiona\b"),
    ],
    "fr": [
        ("suicide", r"\bsuicid(?:er|aire|e-moi)\b|\bau suicide\b|\b(?:je )?veux mourir\b|\benvie de mourir\b|\bme tuer\b|\ben finir\b|"
                    r"\bmettre fin a (?:mes jours|ma vie)\b|\bme faire du mal\b|\bme scarifi\w*|\bme couper\b|"
                    r"\bautomutil\w*|\bveut mourir\b|\bse tuer\b"),
        ("poison", rf"\bsurdose\b|\bempoisonn\w*|\b(?:a|ai|as|avons|ont) (?:avale|bu|mange|pris|ingere|croque|"
                   rf"leche)\b[^.?!]{{0,40}}?\b(?:{_FR_SUBSTANCES}|toute? (?:la boite|la plaquette|le flacon|ses {_PILLS_FR}|"
                   rf"mes {_PILLS_FR})|tous (?:ses|mes|les) {_PILLS_FR}|{_MANY} {_PILLS_FR})\b"),
        ("breathing", r"\bne respire (?:plus|pas)\b|\bn'?arrive (?:plus|pas) a respirer\b|\bne peu[xt] (?:plus|pas) respirer\b|"
                      r"\bs'?etouffe\b|\bm'?etouffe\b|\b(?:devient|est) (?:tout )?(?:bleu|bleue|violet|violette)\b|"
                      r"\bleures? (?:bleues|violettes)\b|\blevres (?:bleues|violettes)\b|\ba du mal a respirer\b"),
        ("unconscious", r"\binconscient\w*|\bne se reveille (?:plus|pas)\b|\bne reagit (?:plus|pas)\b|\bne repond (?:plus|pas)\b|"
                        r"\bperdu connaissance\b|\bs'?est effondre\w*"),
        ("stroke", r"\b(?:visage|bouche|sourire) (?:est |a l'?air )?(?:paralyse|tombe|deforme|engourdi|de travers|tordu)\w*|"
                   r"\bne (?:peut|peux|parvient) (?:plus |pas )?(?:parler|bouger (?:le|son|mon) (?:bras|cote|jambe))\b|"
                   r"\bn'?arrive (?:plus|pas) a (?:parler|bouger (?:le|son|mon) (?:bras|cote|jambe))\b|"
                   r"\b(?:fait|fais) un avc\b|\bparle bizarrement\b|\bmots? (?:pateux|melanges)\b"),
        ("heart", r"\b(?:fait|fais|est en train de faire) (?:une crise cardiaque|un infarctus|une attaque cardiaque)\b"),
        ("anaphylaxis", r"\bgorge (?:qui )?(?:se (?:ferme|serre)|gonfle|gonflee|serree)\b|\blangue (?:qui )?(?:gonfle|gonflee)\b|"
                        r"\bchoc anaphylactique\b|\boedeme de quincke\b|\bvisage (?:qui )?gonfle\b"),
        ("bleeding", r"\bsaigne (?:beaucoup|abondamment|enormement|sans arret|a flots)\b|\b(?:n'?arrete|ne s'?arrete) pas de saigner\b|"
                     r"\bsaignement (?:abondant|qui ne s'?arrete pas|tres important)\b|\bbeaucoup de sang\b|"
                     r"\b(?:vomit|crache|tousse) du sang\b|\bperd (?:beaucoup de|enormement de) sang\b|\bhemorragie\b"),
        ("seizure", r"\b(?:il|elle|bebe|fils|fille) convulse\b|\ben train de convulser\b|\b(?:fait|fais) une (?:crise|convulsion)\w*|\bconvulsions? depuis\b|"
                    r"\bcrise (?:d'?epilepsie|convulsive) qui (?:dure|ne s'?arrete pas)\b"),
    ],
}
_FOREIGN_PATTERNS = {lang: [(kind, re.compile(pattern)) for kind, pattern in rules] for lang, rules in _FOREIGN.items()}
# Chest pain needs a companion sign, as in English.
_FOREIGN_CHEST = {
    "es": (re.compile(r"\bdolor (?:muy )?(?:fuerte |intenso |opresivo )?(?:en el|de|del) pecho\b|\bme duele (?:mucho )?el pecho\b|"
                      r"\bpresion en el pecho\b|\ble duele (?:mucho )?el pecho\b|\bopresion en el pecho\b"),
           re.compile(r"\bbrazo\b|\bmandibula\b|\bsud(?:or|ando)\b|\bfalta (?:de )?aire\b|\bno (?:puedo|puede) respirar\b|"
                      r"\bnauseas?\b|\bmareo\b|\bme ahogo\b")),
    "fr": (re.compile(r"\bdouleur (?:forte |intense |violente )?(?:a|dans) la poitrine\b|\bmal (?:a|dans) la poitrine\b|"
                      r"\b(?:serrement|oppression|poids) (?:dans|a|sur) la poitrine\b|\boppression thoracique\b|"
                      r"\bdouleur thoracique\b"),
           re.compile(r"\bbras\b|\bmachoire\b|\btranspir\w*|\bsueurs?\b|\bessouffl\w*|\bdu mal a respirer\b|\bnausee\w*|"
                      r"\bsouffle\b")),
}
# "si alguien no respira", "il y a deux ans", "no tengo dolor en el pecho": anyone, the past, a denial.
_FOREIGN_NOT_NOW = re.compile(
    r"\b(?:si|cuando|quand) (?:alguien|una persona|un nino|uno|quelqu'?un|une personne|un enfant|on)\b|"
    r"\b(?:hace|il y a) (?:\d+|un|una|unos|dos|tres|deux|trois|quelques) (?:anos?|meses|mes|semanas|ans?|annees?|mois|semaines)\b|"
    r"\b(?:el ano pasado|l'?annee derniere|l'?an dernier)\b|"
    r"^\W*(?:que|cual|cuales|como|por que|qu'?est|quels?|quelles?|comment|pourquoi)\b(?!.*\b(?:ahora|maintenant|ya)\b)")
_FOREIGN_DENIAL = re.compile(r"^\W*(?:no (?:tengo|tiene)|je n'?ai pas|je ne suis pas|il n'?a pas|elle n'?a pas|"
                             r"il n'?est pas|elle n'?est pas)\b")
_FOREIGN_NEGATED = re.compile(r"\b(?:no (?:tengo|tiene|hay)|sin|nunca|je n'?ai pas|il n'?a pas|elle n'?a pas|pas de|sans|"
                              r"aucune?|jamais)\s+(?:\w+\s+)?$")


def _foreign_live(pattern: re.Pattern, clause: str) -> bool:
    return any(not _FOREIGN_NEGATED.search(clause[: m.start()]) for m in pattern.finditer(clause))


def foreign_kinds(message: str) -> tuple[list[str], str | None]:
    """Spanish and French emergencies: the kinds found and the language they were written in (None if none)."""
    clauses = [c for c in _clauses(fold(message)) if not _FOREIGN_NOT_NOW.search(c)]
    for lang, rules in _FOREIGN_PATTERNS.items():
        kinds = [kind for kind, pattern in rules if any(_foreign_live(pattern, c) for c in clauses)]
        pain, companion = _FOREIGN_CHEST[lang]
        if "heart" not in kinds and any(_foreign_live(pain, c) for c in clauses) and companion.search(fold(message)):
            kinds.append("heart")
        if kinds:
            return kinds, lang
    return [], None


def rule_kinds(message: str) -> list[str]:
    """The kinds of emergency (see KINDS) the rules find happening to someone now, in English, Spanish or French;
    empty when none."""
    kinds = _english_kinds(message)
    return kinds + [kind for kind in foreign_kinds(message)[0] if kind not in kinds]


# A clause that denies it ("I'm not having a heart attack, right?", "no chest pain, just heartburn"). Only these
# denials: "she's not breathing / responding / making sense" is the emergency itself.
_DENIAL = re.compile(
    r"^\W*(?:no|never)\b(?! one\b)|"
    r"\b(?:i'?m|i am|he'?s|she'?s|(?:he|she|it|this|that) is|it'?s|that'?s|(?:i|he|she|it) was)\s+not\s+"
    r"(?:having|suicidal|in (?:any )?(?:danger|pain)|bleeding|choking|overdosing|dying|an emergency|"
    r"going to (?:hurt|harm|kill))\b|"
    r"\b(?:do|does|did)(?: not|n'?t) (?:have|get) (?:a |an |any )?(?:chest|heart|pain|stroke|seizure|allerg|symptom|"
    r"fever|trouble|problem|thoughts)|\b(?:do|does|did)(?: not|n'?t) want to (?:hurt|harm|kill)\b",
    _FLAGS,
)


def not_happening_now(message: str) -> bool:
    """True when every clause is about the past ("had a stroke last year"), about anyone ("if someone overdoses")
    or denies it ("I'm not suicidal"): the rules' veto over the classifier."""
    return all(_HISTORY.search(c) or _GENERIC.search(c) or _DENIAL.search(c) or _FOREIGN_NOT_NOW.search(fold(c))
               or _FOREIGN_DENIAL.search(fold(c)) for c in _clauses(message))
