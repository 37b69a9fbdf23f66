"""Square adapter: a recorded Square delivery, {"event": <webhook body>, "order": <Order>}.

The webhook only names the order, so the webhook view fetches the full order from the Orders
API and records both; this adapter reads only the recorded JSON and never the network.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.views.decorators.debug import sensitive_variables

from catalog.models import ExternalIdKind
from omsguard.money import UnknownCurrency, minor_units

from ..canonical import (
    AdapterError,
    CanonicalLine,
    CanonicalOrder,
    optional_object,
    parse_currency,
    parse_quantity,
    parse_timestamp,
    text,
)
from .signing import hmac_sha256_base64, signature_matches

# Square's address keys -> the canonical (Shopify-style) keys address checks read.
ADDRESS_KEYS = {
    "first_name": "first_name",
    "last_name": "last_name",
    "address_line_1": "address1",
    "address_line_2": "address2",
    "locality": "city",
    "administrative_district_level_1": "province_code",
    "postal_code": "zip",
    "country": "country_code",
}


@sensitive_variables("signature_key")
def signature_for(notification_url: str, body: bytes, signature_key: str) -> str:
    """The x-square-hmacsha256-signature value: base64 HMAC-SHA256 of the URL plus the body."""
    return hmac_sha256_base64(notification_url.encode("utf-8") + body, signature_key)


@sensitive_variables("signature_key")
def signature_is_valid(
    notification_url: str, body: bytes, signature_key: str, header_value: str | None
) -> bool:
    if not signature_key or not notification_url:
        return False
    return signature_matches(signature_for(notification_url, body, signature_key), header_value)


def event_order_id(event: Any) -> str:
    """The order id a webhook event names (data.id), or raise AdapterError."""
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict) or data.get("type") != "order":
        raise AdapterError("data.type", "expected an order event")
    order_id = data.get("id")
    if not isinstance(order_id, str) or not order_id.strip() or not order_id.isascii():
        raise AdapterError("data.id", f"missing or invalid order id: {order_id!r}")
    return order_id.strip()


def event_created_at(event: Any, field_name: str = "created_at") -> datetime | None:
    """Return the webhook event's created_at, or None when it has none.

    Raises AdapterError naming the field when created_at is not an ISO 8601 timestamp with
    an offset, as every adapter does for a date it cannot read. The delivery age check
    needs the time, so an unreadable one must not pass as if it were absent.
    """
    if not isinstance(event, dict):
        return None
    return parse_timestamp(event.get("created_at"), field_name)


def parse_order(payload: Any) -> CanonicalOrder:
    """Turn a recorded {"event", "order"} pair into the canonical order, or raise AdapterError."""
    if not isinstance(payload, dict) or not isinstance(payload.get("order"), dict):
        raise AdapterError("order", "expected the fetched Square order as a JSON object")
    # The webhook view records an event whose created_at it cannot read, so nothing is lost,
    # but skips the age check. Failing here puts the delivery in front of a person (an
    # Unprocessable delivery item) instead of making an order whose age was never checked.
    event_created_at(payload.get("event"), "event.created_at")
    order = payload["order"]
    order_id = text(order.get("id"), "order.id").strip()
    if not order_id:
        raise AdapterError("order.id", "missing order id")

    total_money = order.get("total_money")
    currency = parse_currency(
        total_money.get("currency") if isinstance(total_money, dict) else None,
        "order.total_money.currency",
    )
    line_items = order.get("line_items")
    if not isinstance(line_items, list) or not line_items:
        raise AdapterError("order.line_items", "an order needs at least one line item")
    lines = [
        _parse_line(position, item, currency) for position, item in enumerate(line_items, start=1)
    ]

    fulfillments = order.get("fulfillments") or []
    if not isinstance(fulfillments, list):
        raise AdapterError("order.fulfillments", "expected a JSON array")
    shipment = _first_fulfillment(fulfillments, "SHIPMENT")
    pickup = _first_fulfillment(fulfillments, "PICKUP")
    recipient = _recipient(shipment or pickup)
    shipping_lines = _shipping_lines(shipment, order, currency)

    taxes = order.get("taxes") or []
    if not isinstance(taxes, list):
        raise AdapterError("order.taxes", "expected a JSON array")
    version = order.get("version")
    return CanonicalOrder(
        channel_order_id=order_id,
        order_number=text(order.get("reference_id") or order_id, "order.reference_id"),
        currency=currency,
        subtotal=sum((line.unit_price * line.quantity for line in lines), start=Decimal(0)),
        shipping_total=_money(
            order.get("total_service_charge_money"),
            currency,
            "order.total_service_charge_money",
            required=False,
        ),
        tax_total=_money(
            order.get("total_tax_money"), currency, "order.total_tax_money", required=False
        ),
        discount_total=_money(
            order.get("total_discount_money"),
            currency,
            "order.total_discount_money",
            required=False,
        ),
        total=_money(total_money, currency, "order.total_money"),
        lines=lines,
        # Inclusive tax is already inside the item prices (Japan's consumption tax).
        taxes_included=any(
            isinstance(tax, dict) and tax.get("type") == "INCLUSIVE" for tax in taxes
        ),
        source_name=text(
            optional_object(order.get("source"), "order.source").get("name"), "order.source.name"
        ),
        pos_register=text(order.get("location_id"), "order.location_id"),
        event_version=text(version, "order.version"),
        customer_email=text(recipient.get("email_address"), "recipient.email_address"),
        customer_name=text(recipient.get("display_name"), "recipient.display_name"),
        customer_id=text(order.get("customer_id"), "order.customer_id"),
        shipping_address=_address(recipient) if shipment else None,
        shipping_method=shipping_lines[0]["title"] if shipping_lines else "",
        shipping_lines=shipping_lines,
        placed_at=parse_timestamp(order.get("created_at"), "order.created_at"),
        source_updated_at=parse_timestamp(order.get("updated_at"), "order.updated_at"),
        state="cancelled" if order.get("state") == "CANCELED" else "open",
        in_store_pickup=pickup is not None and shipment is None,
    )


def _money(value: Any, currency: str, field_name: str, *, required: bool = True) -> Decimal:
    """Convert Square's {"amount": <integer minor units>, "currency"} into a Decimal."""
    if value is None and not required:
        return Decimal(0)
    if not isinstance(value, dict):
        raise AdapterError(field_name, "expected a Money object")
    amount = value.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise AdapterError(f"{field_name}.amount", f"not an integer amount: {amount!r}")
    if amount < 0:
        raise AdapterError(f"{field_name}.amount", f"negative amount: {amount}")
    if value.get("currency") not in (None, currency):
        raise AdapterError(
            f"{field_name}.currency",
            f"{value.get('currency')!r} differs from the order's {currency}",
        )
    try:
        exponent = minor_units(currency)
    except UnknownCurrency:
        raise AdapterError(f"{field_name}.currency", f"unknown currency {currency!r}") from None
    return Decimal(amount).scaleb(-exponent)


def _parse_line(position: int, item: Any, currency: str) -> CanonicalLine:
    prefix = f"order.line_items[{position - 1}]"
    if not isinstance(item, dict):
        raise AdapterError(prefix, "expected a JSON object")
    name = text(item.get("name"), f"{prefix}.name").strip()
    variation = text(item.get("variation_name"), f"{prefix}.variation_name").strip()
    title = f"{name} - {variation}" if name and variation else name or variation
    if not title:
        raise AdapterError(f"{prefix}.name", "missing title")

    catalog_object_id = text(item.get("catalog_object_id"), f"{prefix}.catalog_object_id")
    return CanonicalLine(
        position=position,
        channel_line_id=text(item.get("uid"), f"{prefix}.uid"),
        channel_sku="",
        channel_variant_id=catalog_object_id,
        title=title,
        # Square sends quantities as decimal strings ("3"); fractional ones (by weight) are
        # rejected because order lines count whole units.
        quantity=parse_quantity(item.get("quantity"), f"{prefix}.quantity"),
        unit_price=_money(item.get("base_price_money"), currency, f"{prefix}.base_price_money"),
        raw=item,
        identifiers=[(ExternalIdKind.POS_CATALOG_OBJECT, catalog_object_id)],
    )


def _first_fulfillment(fulfillments: list, kind: str) -> dict | None:
    for fulfillment in fulfillments:
        if isinstance(fulfillment, dict) and fulfillment.get("type") == kind:
            return fulfillment
    return None


def _recipient(fulfillment: dict | None) -> dict:
    if fulfillment is None:
        return {}
    details = fulfillment.get("shipment_details") or fulfillment.get("pickup_details") or {}
    recipient = details.get("recipient") if isinstance(details, dict) else None
    return recipient if isinstance(recipient, dict) else {}


def _shipping_lines(shipment: dict | None, order: dict, currency: str) -> list[dict[str, str]]:
    """One shipping line from the SHIPMENT fulfillment's carrier and shipping type.

    Square orders have no shipping field; the shipping fee is a service charge, so the line's
    price is the sum of the service charges.
    """
    if shipment is None:
        return []
    details = optional_object(shipment.get("shipment_details"), "shipment_details")
    carrier = text(details.get("carrier"), "shipment_details.carrier").strip()
    shipping_type = text(details.get("shipping_type"), "shipment_details.shipping_type").strip()
    title = " ".join(part for part in (carrier, shipping_type) if part)
    price = _money(
        order.get("total_service_charge_money"),
        currency,
        "order.total_service_charge_money",
        required=False,
    )
    return [
        {
            "code": title,
            "title": title,
            "source": carrier,
            "carrier_identifier": "",
            "price": str(price),
        }
    ]


def _address(recipient: dict) -> dict[str, str] | None:
    address = recipient.get("address")
    if not isinstance(address, dict):
        return None
    fields = {
        canonical: text(address.get(key), f"recipient.address.{key}")
        for key, canonical in ADDRESS_KEYS.items()
        if address.get(key) not in (None, "")
    }
    # Square puts a state code (IL) or a prefecture name (大阪府) in the same field.
    region = fields.pop("province_code", "")
    if region:
        fields["province_code" if region.isascii() and len(region) <= 3 else "province"] = region
    if recipient.get("display_name"):
        fields["name"] = text(recipient["display_name"])
    if recipient.get("phone_number"):
        fields["phone"] = text(recipient["phone_number"])
    return fields or None
