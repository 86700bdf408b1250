"""Cue-anchored patterns for identifiers that Presidio's stock recognizers do not cover.

Used by :mod:`gpt2chat.guard.masking` through :func:`pattern_recognizers`. Each pattern masks only its ``value`` group,
so the cue stays readable ("born on <DATE_OF_BIRTH>"), and most values count only after their cue word: a birth
date, a medical record, bank account, passport or driving-licence number, a postcode on its own. Medical codes
that look like identifiers ("stage 4", "T2N1M0", "BRCA1", "15q11") have no cue and are left alone. Postal
addresses are matched by shape: US, UK, Irish, Canadian, Australian and Indian formats with the number first,
continental ones with the number after the street ("Hauptstraße 5, 10115 Berlin").
"""

from __future__ import annotations

from typing import Callable

import regex
from presidio_analyzer import EntityRecognizer, RecognizerResult

from gpt2chat.guard.pii_names import KIN, is_person


class RegexRecognizer(EntityRecognizer):
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


# "Liam", "O'Connor", "Al-Sayed", "McDonald"; stops before a possessive ("Grace Kim's").
_NAME = r"(?:\p{Lu}['’]\p{Lu}\p{L}+|\p{Lu}\p{L}+(?:['’]\p{Lu}\p{L}+|-\p{L}+)*)"
_PERSON_CUES = (
    rf"(?i:\bmy\s+name\s+is|\bmy\s+name['’]s|\bthis\s+is|\b(?:hi|hello|hey)[,!]?\s+it['’]s|\bcall\s+me|\bnamed"
    rf"|\bcalled)\s+(?P<value>{_NAME}(?:\s+{_NAME}){{0,2}})",
    # "I'm Pregnant", "I am Hispanic": after "I am" only a first and last name counts.
    rf"(?i:\bi\s+am|\bi['’]m)\s+(?P<value>{_NAME}(?:\s+{_NAME}){{1,2}})",
    rf"\b(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof)\.?\s+(?P<value>{_NAME}(?:\s+{_NAME}){{0,2}})",
    rf"(?i:\b(?:my|our|his|her|their)\s+(?:{KIN}))\s*,?\s+(?P<value>{_NAME}(?:\s+{_NAME}){{0,2}})",
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
_STREET_WORD = r"\p{Lu}[\p{L}'’\-]*"
_NUMBER_FIRST = "|".join((
    # "1423 Maple Avenue", "250 West 57th Street", "Flat 3, 12 High Street"
    rf"(?:\b{_UNIT},?\s+)?\b\d{{1,6}}[A-Za-z]?\s+(?:(?:\p{{Lu}}[\p{{L}}'’.\-]*|\d{{1,3}}(?i:st|nd|rd|th))\s+){{1,4}}"
    rf"{_STREET_SUFFIX}(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?",
    # "i live at 27 old gloucester road"
    rf"(?<={_ADDRESS_CUE})\d{{1,6}}[a-z]?\s+(?:\p{{Ll}}[\p{{L}}'’.\-]*\s+){{1,4}}{_STREET_SUFFIX}",
    r"(?i:\bp\.?\s?o\.?\s+box|\bpost\s+office\s+box)\s+\d{1,6}",
    # "12 rue de la Paix", "1200 rue Sainte-Catherine Ouest"
    rf"\b\d{{1,5}}(?:\s?(?:bis|ter))?,?\s+{_NUMBER_FIRST_TYPE}(?:\s+(?:{_PARTICLE}|{_STREET_WORD})){{1,5}}",
))
_NUMBER_AFTER = "|".join((
    rf"\b{_EU_STREET_WORD}",  # "Hauptstraße", "Keizersgracht"
    r"\b\p{Lu}\p{L}+\s+(?:Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee)",  # "Berliner Straße"
    rf"\b{_TYPE_FIRST}(?:\s+(?:{_PARTICLE}|{_STREET_WORD})){{1,4}}",  # "Calle Mayor", "Via Roma"
))
# Comma-separated parts from a flat or house number to a 6-digit PIN ("B-12, Lajpat Nagar II, New Delhi 110024").
_PART = r"[\p{Lu}\d][\p{L}\d.'’\-]*(?:\s+[\p{Lu}\d][\p{L}\d.'’\-]*){0,3}"
_INDIAN = rf"\b(?:{_UNIT}|[A-Z]-?\d{{1,4}}[A-Z]?)(?:,\s+{_PART}){{1,5}},?\s+\d{{6}}(?![\w-])"
_ADDRESS = (
    rf"(?P<value>(?:{_NUMBER_FIRST}){_CITY_TAIL}"
    rf"|(?:{_NUMBER_AFTER})\s+\d{{1,4}}[a-zA-Z]?(?![\w-]){_EU_TAIL}?"
    rf"|\b\p{{Lu}}[\p{{L}}.'’\-]+(?:\s+\p{{L}}[\p{{L}}.'’\-]+){{0,3}}\s+\d{{1,4}}[a-zA-Z]?{_EU_TAIL}"  # any street
    rf"|{_INDIAN})"
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


# Presidio scores nine bare digits 0.05 as an SSN (a phone at best): after its cue it is one ("ssn 078051120").
_SSN_CUE = (
    r"(?i:\bssn|\bsocial\s+security(?:\s+(?:number|no\.?|num|#))?|\bsocial)(?i:\s+(?:is|was))?\s*[:#]?\s*"
    r"(?P<value>\d{3}[ \-.]?\d{2}[ \-.]?\d{4})(?![\w-])"
)
# Health-insurance identifiers: a member, subscriber, policy, group, Medicare or Medicaid number after its cue.
_INSURANCE = (
    r"(?i:\b(?:insurance|member|subscriber|policy|group|plan|medicare|medicaid|beneficiary|health\s+plan|"
    r"insurance\s+member|insurance\s+policy)"
    rf"){_ID_NUMBER_CUE}"
    r"(?P<value>(?=(?:[A-Za-z\-]*\d){4})[A-Za-z\d](?:[A-Za-z\d]|-(?=[A-Za-z\d])){5,19})(?![\w-])"
)
# Presidio's e-mail recognizer checks the domain against the public suffix list, so "jane.doe@gmial.con" passed
# as text: any address-shaped word is masked.
_EMAIL_SHAPE = r"(?P<value>(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+)"
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|OK|OR|"
    "PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR"
)
_US_STATE_NAMES = (
    r"(?i:alabama|alaska|arizona|arkansas|california|colorado|connecticut|delaware|florida|georgia|hawaii|idaho|"
    r"illinois|indiana|iowa|kansas|kentucky|louisiana|maine|maryland|massachusetts|michigan|minnesota|mississippi|"
    r"missouri|montana|nebraska|nevada|new\s+hampshire|new\s+jersey|new\s+mexico|new\s+york|north\s+carolina|"
    r"north\s+dakota|ohio|oklahoma|oregon|pennsylvania|rhode\s+island|south\s+carolina|south\s+dakota|tennessee|"
    r"texas|utah|vermont|virginia|washington|west\s+virginia|wisconsin|wyoming)"
)
# Words that start no city name: the city is the one to three words right before the state ("moved to Austin, TX").
_NOT_CITY = ("(?!(?i:i|me|my|we|our|take|took|takes|pills?|mg|units|dose|or|and|of|to|in|on|at|for|is|was|from|near|"
             "live|lives|moved|born|address)\\b)")
_CITY_WORD = rf"{_NOT_CITY}\p{{L}}[\p{{L}}'’\-]*"
# "Springfield, IL 62704" on its own (after a street on the line before, or after a full stop): a city, a state
# (code or name; a lower-case code only after a comma, so "pills or 10000 units" stays) and a ZIP.
_CITY_STATE_ZIP = (
    rf"(?P<value>\b{_CITY_WORD}(?:[ \t]+{_CITY_WORD}){{0,2}}"
    rf"(?:,?\s+(?:{_US_STATES})|,\s*(?i:{_US_STATES})|,?\s+{_US_STATE_NAMES}),?\s+\d{{5}}(?:-\d{{4}})?)(?![\w-])"
)
# After a place cue ("born in", "live in", "moved to", "from") a state and ZIP, with or without a city before it, in
# any case: "born in NY 10001", "i live in brooklyn ny 11201" (issue 23). The cue and the five digits after the
# state keep "pills or 10000 units" and "born in 1985" out.
_PLACE_CUE = (r"(?i:\b(?:born|raised|live|lives|living|lived|stay|staying|moved|moving|reside|resides|residing|"
              r"located|based)(?:\s+(?:in|to|at|near))?|\bfrom)\s+")
_CUED_STATE_ZIP = (
    rf"(?<={_PLACE_CUE})(?P<value>(?:{_CITY_WORD}(?:[ \t]+{_CITY_WORD}){{0,2}},?\s+)?"
    rf"(?:(?i:{_US_STATES})|{_US_STATE_NAMES}),?\s+\d{{5}}(?:-\d{{4}})?)(?![\w-])"
)
# A lower-case street with its city, state and ZIP and no cue: "123 main st springfield il 62704".
_LOWER_STREET_ZIP = (
    rf"(?P<value>\b\d{{1,6}}\s+(?:\p{{Ll}}[\p{{L}}'’.\-]*\s+){{1,4}}{_STREET_SUFFIX},?"
    rf"(?:\s+\p{{Ll}}[\p{{L}}.'’\-]*){{1,3}},?\s+(?i:{_US_STATES})\s+\d{{5}}(?:-\d{{4}})?)(?![\w-])"
)



def _has_five_digits(text: str, start: int, end: int) -> bool:
    """A licence number has at least five digits: "licence 2 years ago" has a number, not an identifier."""
    return sum(c.isdigit() for c in text[start:end]) >= 5


def pattern_recognizers() -> list[EntityRecognizer]:
    """One recognizer per pattern; PERSON cues keep only spans that can be names and are not medical."""
    return [
        *(RegexRecognizer("PERSON", p, 0.85, f"PersonCue{i}", keep=is_person) for i, p in enumerate(_PERSON_CUES)),
        RegexRecognizer("DATE_OF_BIRTH", _DOB, 0.9, "DateOfBirthRecognizer"),
        RegexRecognizer("MEDICAL_RECORD", _MRN, 0.9, "MedicalRecordRecognizer"),
        RegexRecognizer("BANK_ACCOUNT", _BANK, 0.9, "BankAccountRecognizer"),
        RegexRecognizer("ADDRESS", _ADDRESS, 0.9, "StreetAddressRecognizer"),
        RegexRecognizer("ADDRESS", _POSTCODE_CUE, 0.9, "PostcodeRecognizer"),
        RegexRecognizer("PASSPORT", _PASSPORT, 0.9, "PassportRecognizer"),
        RegexRecognizer("DRIVERS_LICENSE", _DRIVERS_LICENSE, 0.9, "DriversLicenseRecognizer", keep=_has_five_digits),
        RegexRecognizer("US_SSN", _SSN_CUE, 0.95, "SsnCueRecognizer"),
        RegexRecognizer("INSURANCE_ID", _INSURANCE, 0.9, "InsuranceIdRecognizer"),
        RegexRecognizer("EMAIL", _EMAIL_SHAPE, 0.9, "EmailShapeRecognizer"),
        RegexRecognizer("ADDRESS", _CITY_STATE_ZIP, 0.9, "CityStateZipRecognizer"),
        RegexRecognizer("ADDRESS", _LOWER_STREET_ZIP, 0.9, "LowerStreetZipRecognizer"),
        RegexRecognizer("ADDRESS", _CUED_STATE_ZIP, 0.9, "CuedStateZipRecognizer"),
    ]
