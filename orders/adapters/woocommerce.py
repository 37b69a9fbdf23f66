"""WooCommerce adapter: the REST API v3 order JSON of the order.created/updated webhooks."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_datetime
from django.views.decorators.debug import sensitive_variables

from catalog.models import ExternalIdKind

from ..canonical import (
    AdapterError,
    CanonicalLine,
    CanonicalOrder,
    parse_currency,
    parse_money,
    parse_optional_money,
    parse_quantity,
    text,
)
from .signing import hmac_sha256_base64, signature_matches

# WooCommerce statuses after which the order will not be fulfilled.
CANCELLED_STATUSES = {"cancelled", "refunded", "failed"}
# Shipping method ids of WooCommerce's pickup methods (core "local_pickup" and the block
# checkout's "pickup_location").
PICKUP_METHOD_IDS = {"local_pickup", "pickup_location"}

# WooCommerce address keys -> the canonical (Shopify-style) keys address checks read.
ADDRESS_KEYS = {
    "first_name": "first_name",
    "last_name": "last_name",
    "company": "company",
    "address_1": "address1",
    "address_2": "address2",
    "city": "city",
    "state": "province_code",
    "postcode": "zip",
    "country": "country_code",
    "phone": "phone",
}


@sensitive_variables("secret")
def signature_for(body: bytes, secret: str) -> str:
    """The X-WC-Webhook-Signature value: base64 of HMAC-SHA256 over the raw body."""
    return hmac_sha256_base64(body, secret)


@sensitive_variables("secret")
def signature_is_valid(body: bytes, secret: str, header_value: str | None) -> bool:
    if not secret:
        return False
    return signature_matches(signature_for(body, secret), header_value)


def parse_gmt(value: Any, field_name: str) -> datetime | None:
    """Parse a WooCommerce `*_gmt` field, which is UTC written without an offset."""
    if value in (None, ""):
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        # Well formed but impossible, such as month 13: parse_datetime raises for those.
        parsed = None
    if parsed is None:
        raise AdapterError(field_name, f"not an ISO 8601 timestamp: {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def delivery_key(payload: Any) -> str:
    """The id that recognises a repeated delivery: order id and date_modified_gmt.

    WooCommerce makes a new X-WC-Webhook-Delivery-ID for every attempt, so that header cannot
    detect repeats. Raises AdapterError when either field is missing.
    """
    if not isinstance(payload, dict):
        raise AdapterError("body", "expected a JSON object")
    order_id = _order_id(payload)
    modified = parse_gmt(payload.get("date_modified_gmt"), "date_modified_gmt")
    if modified is None:
        raise AdapterError("date_modified_gmt", "missing")
    return f"order-{order_id}@{modified.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def parse_order(payload: Any) -> CanonicalOrder:
    """Turn a WooCommerce order into the canonical order, or raise AdapterError."""
    if not isinstance(payload, dict):
        raise AdapterError("body", "expected a JSON object")
    order_id = _order_id(payload)

    line_items = payload.get("line_items")
    if not isinstance(line_items, list) or not line_items:
        raise AdapterError("line_items", "an order needs at least one line item")
    currency = parse_currency(payload.get("currency"), "currency")
    lines = [_parse_line(position, item) for position, item in enumerate(line_items, start=1)]
    shipping_lines = _shipping_lines(payload)
    in_store_pickup = _is_pickup(payload, shipping_lines)
    # A pickup rate has no carrier to map, like a Shopify pickup order without shipping lines.
    shipping_lines = [line for line in shipping_lines if line["source"] not in PICKUP_METHOD_IDS]
    billing = payload.get("billing") if isinstance(payload.get("billing"), dict) else {}

    customer_id = text(payload.get("customer_id"), "customer_id")
    return CanonicalOrder(
        channel_order_id=order_id,
        order_number=text(payload.get("number") or order_id, "number"),
        currency=currency,
        subtotal=sum((line.unit_price * line.quantity for line in lines), start=Decimal(0)),
        shipping_total=parse_optional_money(payload.get("shipping_total"), "shipping_total"),
        tax_total=parse_optional_money(payload.get("total_tax"), "total_tax"),
        discount_total=parse_optional_money(payload.get("discount_total"), "discount_total"),
        total=parse_money(payload.get("total"), "total"),
        lines=lines,
        # Line and shipping amounts exclude tax even with prices_include_tax, so the tax is
        # always added on top (the setting only changes how the shop displays prices).
        taxes_included=False,
        source_name=text(payload.get("created_via"), "created_via"),
        event_version=text(payload.get("date_modified_gmt"), "date_modified_gmt"),
        customer_email=text(billing.get("email"), "billing.email"),
        customer_name=" ".join(
            part
            for part in (text(billing.get("first_name")), text(billing.get("last_name")))
            if part
        ),
        customer_id="" if customer_id == "0" else customer_id,
        shipping_address=None if in_store_pickup else _address(payload.get("shipping"), "shipping"),
        billing_address=_address(payload.get("billing"), "billing"),
        shipping_method=shipping_lines[0]["title"] if shipping_lines else "",
        shipping_lines=shipping_lines,
        placed_at=parse_gmt(payload.get("date_created_gmt"), "date_created_gmt"),
        source_updated_at=parse_gmt(payload.get("date_modified_gmt"), "date_modified_gmt"),
        state="cancelled" if _status(payload) in CANCELLED_STATUSES else "open",
        in_store_pickup=in_store_pickup,
    )


def _status(payload: dict) -> str:
    return text(payload.get("status"), "status")


def _order_id(payload: dict) -> str:
    order_id = payload.get("id")
    if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id <= 0:
        raise AdapterError("id", f"not a positive integer: {order_id!r}")
    return str(order_id)


def _parse_line(position: int, item: Any) -> CanonicalLine:
    prefix = f"line_items[{position - 1}]"
    if not isinstance(item, dict):
        raise AdapterError(prefix, "expected a JSON object")
    title = text(item.get("name"), f"{prefix}.name").strip()
    if not title:
        raise AdapterError(f"{prefix}.name", "missing title")

    quantity = parse_quantity(item.get("quantity"), f"{prefix}.quantity")
    sku = text(item.get("sku"), f"{prefix}.sku").strip()
    variation_id = text(item.get("variation_id"), f"{prefix}.variation_id")
    return CanonicalLine(
        position=position,
        channel_line_id=text(item.get("id"), f"{prefix}.id"),
        channel_sku=sku,
        channel_variant_id="" if variation_id == "0" else variation_id,
        title=title,
        quantity=quantity,
        unit_price=_unit_price(item, quantity, prefix),
        raw=item,
        identifiers=[(ExternalIdKind.SKU, sku)],
    )


def _unit_price(item: dict, quantity: int, prefix: str) -> Decimal:
    """The unit price before discounts: line subtotal / quantity.

    The order's discount_total is subtracted once from the whole order, so the line price
    must not have it already. `price` (after discounts, a JSON number) is the fallback, read
    through str() so the number's printed digits are kept and no float arithmetic happens.
    """
    if item.get("subtotal") not in (None, ""):
        return parse_money(item["subtotal"], f"{prefix}.subtotal") / quantity
    return parse_money(item.get("price"), f"{prefix}.price")


def _shipping_lines(payload: dict) -> list[dict[str, str]]:
    lines = payload.get("shipping_lines") or []
    if not isinstance(lines, list):
        raise AdapterError("shipping_lines", "expected a JSON array")
    parsed = []
    for index, line in enumerate(lines):
        prefix = f"shipping_lines[{index}]"
        if not isinstance(line, dict):
            raise AdapterError(prefix, "expected a JSON object")
        title = text(line.get("method_title"), f"{prefix}.method_title").strip()
        parsed.append(
            {
                # WooCommerce rates are named by the shop, so the title is the carrier code.
                "code": title,
                "title": title,
                "source": text(line.get("method_id"), f"{prefix}.method_id").strip(),
                "carrier_identifier": "",
                "price": text(line.get("total"), f"{prefix}.total").strip(),
            }
        )
    return parsed


def _is_pickup(payload: dict, shipping_lines: list[dict[str, str]]) -> bool:
    shipping = payload.get("shipping")
    no_address = shipping is None or (
        isinstance(shipping, dict) and not any(text(value).strip() for value in shipping.values())
    )
    picked_up = any(line["source"] in PICKUP_METHOD_IDS for line in shipping_lines)
    return no_address and picked_up


def _address(value: Any, field_name: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise AdapterError(field_name, "expected a JSON object or null")
    address = {
        canonical: text(value.get(key), f"{field_name}.{key}")
        for key, canonical in ADDRESS_KEYS.items()
        if value.get(key) not in (None, "")
    }
    return address or None
