"""The canonical order every channel adapter produces, and the adapter error type."""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils.dateparse import parse_datetime

from omsguard.money import is_currency


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
    placed_at: datetime | None = None
    tags: list[str] = field(default_factory=list)


def parse_money(value: Any, field_name: str) -> Decimal:
    """Parse a channel's money amount (string or number) into a non-negative Decimal."""
    if isinstance(value, bool) or value is None or value == "":
        raise AdapterError(field_name, "missing amount")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise AdapterError(field_name, f"not a number: {value!r}") from None
    if not amount.is_finite():
        raise AdapterError(field_name, f"not a finite amount: {value!r}")
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
        raise AdapterError(field_name, f"not a whole number: {value!r}")
    try:
        quantity = int(value)
    except ValueError:
        raise AdapterError(field_name, f"not a whole number: {value!r}") from None
    if quantity < 0:
        raise AdapterError(field_name, f"negative quantity: {quantity}")
    return quantity


def parse_currency(value: Any, field_name: str) -> str:
    code = value.upper() if isinstance(value, str) else value
    if not is_currency(code):
        raise AdapterError(field_name, f"not an ISO 4217 currency code: {value!r}")
    return code


def parse_timestamp(value: Any, field_name: str) -> datetime | None:
    if value in (None, ""):
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise AdapterError(field_name, f"not an ISO 8601 timestamp with offset: {value!r}")
    return parsed


def text(value: Any) -> str:
    """A channel value as text: None becomes "", numbers keep all their digits."""
    if value is None:
        return ""
    return str(value)
