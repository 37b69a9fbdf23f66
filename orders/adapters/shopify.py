"""Shopify adapter: the REST Admin API order JSON (as sent by the orders/create webhook)."""

from decimal import Decimal
from typing import Any

from django.views.decorators.debug import sensitive_variables

from catalog.models import ExternalIdKind

from ..canonical import (
    AdapterError,
    CanonicalLine,
    CanonicalOrder,
    optional_object,
    parse_currency,
    parse_money,
    parse_optional_money,
    parse_quantity,
    parse_timestamp,
    shown,
    text,
)
from .signing import hmac_sha256_base64, signature_matches

ADDRESS_FIELDS = (
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
    "phone",
)


@sensitive_variables("secret")
def signature_for(body: bytes, secret: str) -> str:
    """The X-Shopify-Hmac-Sha256 value: base64 of HMAC-SHA256 over the raw body."""
    return hmac_sha256_base64(body, secret)


@sensitive_variables("secret")
def signature_is_valid(body: bytes, secret: str, header_value: str | None) -> bool:
    if not secret:
        return False
    return signature_matches(signature_for(body, secret), header_value)


def parse_order(payload: Any) -> CanonicalOrder:
    """Turn a Shopify order into the canonical order, or raise AdapterError naming the field."""
    if not isinstance(payload, dict):
        raise AdapterError("body", "expected a JSON object")
    order_id = payload.get("id")
    if order_id in (None, ""):
        raise AdapterError("id", "missing order id")
    if isinstance(order_id, bool) or not (
        (isinstance(order_id, int) and order_id > 0)
        or (isinstance(order_id, str) and order_id.isdigit() and order_id.isascii())
    ):
        raise AdapterError("id", f"not a positive integer: {shown(order_id)}")

    line_items = payload.get("line_items")
    if not isinstance(line_items, list) or not line_items:
        raise AdapterError("line_items", "an order needs at least one line item")

    currency = parse_currency(payload.get("currency"), "currency")
    presentment = optional_object(payload.get("total_price_set"), "total_price_set")
    presentment_money = optional_object(
        presentment.get("presentment_money"), "total_price_set.presentment_money"
    )

    return CanonicalOrder(
        channel_order_id=text(order_id),
        order_number=text(payload.get("name") or payload.get("order_number"), "name"),
        currency=currency,
        subtotal=parse_optional_money(payload.get("subtotal_price"), "subtotal_price"),
        shipping_total=_shipping_total(payload),
        tax_total=parse_optional_money(payload.get("total_tax"), "total_tax"),
        discount_total=parse_optional_money(payload.get("total_discounts"), "total_discounts"),
        total=parse_money(payload.get("total_price"), "total_price"),
        lines=[_parse_line(position, item) for position, item in enumerate(line_items, start=1)],
        taxes_included=payload.get("taxes_included") is True,
        source_name=text(payload.get("source_name"), "source_name"),
        pos_register=text(payload.get("location_id"))
        if payload.get("source_name") == "pos"
        else "",
        event_version=_event_version(payload),
        presentment_currency=text(payload.get("presentment_currency"), "presentment_currency"),
        presentment_total=(
            parse_money(presentment_money["amount"], "total_price_set.presentment_money.amount")
            if presentment_money.get("amount") not in (None, "")
            else None
        ),
        customer_email=text(payload.get("email") or payload.get("contact_email"), "email"),
        customer_name=_customer_name(payload),
        shipping_address=_address(payload.get("shipping_address"), "shipping_address"),
        billing_address=_address(payload.get("billing_address"), "billing_address"),
        shipping_method=_shipping_method(payload),
        shipping_lines=_shipping_lines(payload),
        placed_at=parse_timestamp(payload.get("created_at"), "created_at"),
        tags=[tag.strip() for tag in text(payload.get("tags"), "tags").split(",") if tag.strip()],
        source_updated_at=parse_timestamp(payload.get("updated_at"), "updated_at"),
        state="cancelled" if payload.get("cancelled_at") else "open",
        customer_id=_customer_id(payload),
    )


def _parse_line(position: int, item: Any) -> CanonicalLine:
    prefix = f"line_items[{position - 1}]"
    if not isinstance(item, dict):
        raise AdapterError(prefix, "expected a JSON object")

    title = text(item.get("name") or item.get("title"), f"{prefix}.name")
    if not title:
        raise AdapterError(f"{prefix}.title", "missing title")

    # Shopify sends "" or null for lines without a SKU; both mean "no SKU".
    sku = text(item.get("sku"), f"{prefix}.sku").strip()
    variant_id = text(item.get("variant_id"), f"{prefix}.variant_id")
    return CanonicalLine(
        position=position,
        channel_line_id=text(item.get("id"), f"{prefix}.id"),
        channel_sku=sku,
        channel_variant_id=variant_id,
        title=title,
        quantity=parse_quantity(item.get("quantity"), f"{prefix}.quantity"),
        unit_price=parse_money(item.get("price"), f"{prefix}.price"),
        raw=item,
        # The variant id is the more specific: a shop may reuse one SKU code on variants.
        identifiers=[(ExternalIdKind.SHOPIFY_VARIANT, variant_id), (ExternalIdKind.SKU, sku)],
    )


def _shipping_total(payload: dict) -> Decimal:
    price_set = optional_object(payload.get("total_shipping_price_set"), "total_shipping_price_set")
    shop_money = optional_object(price_set.get("shop_money"), "total_shipping_price_set.shop_money")
    if shop_money.get("amount") not in (None, ""):
        return parse_money(shop_money["amount"], "total_shipping_price_set.shop_money.amount")

    lines = payload.get("shipping_lines") or []
    if not isinstance(lines, list):
        raise AdapterError("shipping_lines", "expected a JSON array")
    total = parse_optional_money(None, "shipping_lines")
    for index, line in enumerate(lines):
        if isinstance(line, dict):
            total += parse_optional_money(line.get("price"), f"shipping_lines[{index}].price")
    return total


def _event_version(payload: dict) -> str:
    """The order's updated_at, which orders Shopify's updates of one order."""
    updated_at = parse_timestamp(payload.get("updated_at"), "updated_at")
    return updated_at.isoformat() if updated_at else ""


SHIPPING_LINE_FIELDS = ("code", "title", "source", "carrier_identifier", "price")


def _shipping_lines(payload: dict) -> list[dict[str, str]]:
    """The shipping lines with the fields carrier mapping needs; removed lines are left out.

    For rates a carrier calculated, "code" is the carrier's service code (UPS "03") and
    "source" names the carrier app; for the shop's own rates, "code" is the rate's name.
    """
    lines = payload.get("shipping_lines") or []
    if not isinstance(lines, list):
        raise AdapterError("shipping_lines", "expected a JSON array")

    parsed = []
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            raise AdapterError(f"shipping_lines[{index}]", "expected a JSON object")
        if line.get("is_removed") is True:
            continue
        parsed.append(
            {
                key: text(line.get(key), f"shipping_lines[{index}].{key}").strip()
                for key in SHIPPING_LINE_FIELDS
            }
        )
    return parsed


def _shipping_method(payload: dict) -> str:
    lines = payload.get("shipping_lines") or []
    first = lines[0] if isinstance(lines, list) and lines and isinstance(lines[0], dict) else {}
    return text(first.get("title") or first.get("code"))


def _customer_id(payload: dict) -> str:
    customer = payload.get("customer") or {}
    if not isinstance(customer, dict):
        return ""
    return text(customer.get("id"), "customer.id")


def _customer_name(payload: dict) -> str:
    customer = payload.get("customer") or {}
    if not isinstance(customer, dict):
        return ""
    parts = [text(customer.get("first_name")), text(customer.get("last_name"))]
    return " ".join(part for part in parts if part)


def _address(value: Any, field_name: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise AdapterError(field_name, "expected a JSON object or null")
    return {
        key: text(value.get(key), f"{field_name}.{key}")
        for key in ADDRESS_FIELDS
        if value.get(key) is not None
    }
