"""eBay adapter: one Sell Fulfillment API order, as getOrder returns it."""

from decimal import Decimal
from typing import Any

from catalog.models import ExternalIdKind

from ..canonical import (
    AdapterError,
    CanonicalLine,
    CanonicalOrder,
    optional_object,
    parse_currency,
    parse_money,
    parse_quantity,
    parse_timestamp,
    text,
)

ADDRESS_KEYS = {
    "addressLine1": "address1",
    "addressLine2": "address2",
    "city": "city",
    "stateOrProvince": "province_code",
    "postalCode": "zip",
    "countryCode": "country_code",
}


def order_key(payload: Any) -> str:
    """The delivery id of one order: orderId@lastModifiedDate."""
    if not isinstance(payload, dict):
        raise AdapterError("body", "expected a JSON object")
    order_id = text(payload.get("orderId"), "orderId").strip()
    if not order_id:
        raise AdapterError("orderId", "missing")
    modified = text(payload.get("lastModifiedDate"), "lastModifiedDate").strip()
    if not modified:
        raise AdapterError("lastModifiedDate", "missing")
    return f"{order_id}@{modified}"


def parse_order(payload: Any) -> CanonicalOrder:
    """Turn an eBay order into the canonical order, or raise AdapterError naming the field."""
    if not isinstance(payload, dict):
        raise AdapterError("body", "expected a JSON object")
    order_id = text(payload.get("orderId"), "orderId").strip()
    if not order_id:
        raise AdapterError("orderId", "missing order id")
    line_items = payload.get("lineItems")
    if not isinstance(line_items, list) or not line_items:
        raise AdapterError("lineItems", "an order needs at least one line item")

    pricing = payload.get("pricingSummary")
    if not isinstance(pricing, dict):
        raise AdapterError("pricingSummary", "expected a JSON object")
    total, currency = _money(pricing.get("total"), "pricingSummary.total")
    lines = [
        _parse_line(position, item, currency) for position, item in enumerate(line_items, start=1)
    ]

    instruction = _ship_to_instruction(payload)
    step = instruction.get("shippingStep") or {}
    ship_to = step.get("shipTo") if isinstance(step.get("shipTo"), dict) else {}
    hub_fulfillment = instruction.get("ebaySupportedFulfillment") is True or bool(
        instruction.get("finalDestinationAddress")
    )
    buyer = payload.get("buyer") if isinstance(payload.get("buyer"), dict) else {}
    registration = optional_object(
        buyer.get("buyerRegistrationAddress"), "buyer.buyerRegistrationAddress"
    )
    if hub_fulfillment:
        # eBay International Shipping: the seller ships to eBay's US hub (shipTo, kept in the
        # raw delivery with its shipToReferenceId), and eBay forwards to the buyer. The
        # buyer's finalDestinationAddress is the address to check and store.
        shipping_address = _address(
            instruction.get("finalDestinationAddress"),
            "fulfillmentStartInstructions[0].finalDestinationAddress",
            name=text(registration.get("fullName")),
        )
    else:
        primary_phone = optional_object(ship_to.get("primaryPhone"), "shipTo.primaryPhone")
        shipping_address = _address(
            ship_to.get("contactAddress"),
            "fulfillmentStartInstructions[0].shippingStep.shipTo.contactAddress",
            name=text(ship_to.get("fullName")),
            phone=text(primary_phone.get("phoneNumber"), "shipTo.primaryPhone.phoneNumber"),
        )

    shipping_lines = _shipping_lines(step, pricing, currency)
    cancel_state = optional_object(payload.get("cancelStatus"), "cancelStatus").get("cancelState")
    tags = ["ebay_international_shipping"] if hub_fulfillment else []
    return CanonicalOrder(
        channel_order_id=order_id,
        order_number=text(payload.get("salesRecordReference") or order_id, "salesRecordReference"),
        currency=currency,
        subtotal=_optional_money(
            pricing.get("priceSubtotal"), currency, "pricingSummary.priceSubtotal"
        ),
        shipping_total=_optional_money(
            pricing.get("deliveryCost"), currency, "pricingSummary.deliveryCost"
        ),
        tax_total=_optional_money(pricing.get("tax"), currency, "pricingSummary.tax"),
        discount_total=_optional_money(
            pricing.get("priceDiscount"), currency, "pricingSummary.priceDiscount"
        ),
        total=total,
        lines=lines,
        source_name="ebay",
        marketplace=text(line_items[0].get("purchaseMarketplaceId"), "purchaseMarketplaceId"),
        event_version=text(payload.get("lastModifiedDate"), "lastModifiedDate"),
        customer_email=text(ship_to.get("email") or registration.get("email"), "buyer.email"),
        customer_name=text(registration.get("fullName") or ship_to.get("fullName"), "fullName"),
        customer_id=text(buyer.get("username"), "buyer.username"),
        shipping_address=shipping_address,
        shipping_method=shipping_lines[0]["title"] if shipping_lines else "",
        shipping_lines=shipping_lines,
        placed_at=parse_timestamp(payload.get("creationDate"), "creationDate"),
        tags=tags,
        source_updated_at=parse_timestamp(payload.get("lastModifiedDate"), "lastModifiedDate"),
        state="cancelled" if cancel_state == "CANCELED" else "open",
    )


def _money(value: Any, field_name: str) -> tuple[Decimal, str]:
    """Parse an eBay Amount ({"value": "<decimal string>", "currency"})."""
    if not isinstance(value, dict):
        raise AdapterError(field_name, "expected an Amount object")
    amount = parse_money(value.get("value"), f"{field_name}.value")
    return amount, parse_currency(value.get("currency"), f"{field_name}.currency")


def _optional_money(value: Any, currency: str, field_name: str) -> Decimal:
    if value is None:
        return Decimal(0)
    amount, amount_currency = _money(value, field_name)
    if amount_currency != currency:
        raise AdapterError(
            f"{field_name}.currency", f"{amount_currency} differs from the order's {currency}"
        )
    return amount


def _parse_line(position: int, item: Any, currency: str) -> CanonicalLine:
    prefix = f"lineItems[{position - 1}]"
    if not isinstance(item, dict):
        raise AdapterError(prefix, "expected a JSON object")
    title = text(item.get("title"), f"{prefix}.title").strip()
    if not title:
        raise AdapterError(f"{prefix}.title", "missing title")
    quantity = parse_quantity(item.get("quantity"), f"{prefix}.quantity")
    # lineItemCost is unit price x quantity.
    line_cost = _optional_money(item.get("lineItemCost"), currency, f"{prefix}.lineItemCost")
    sku = text(item.get("sku"), f"{prefix}.sku").strip()
    legacy_item = text(item.get("legacyItemId"), f"{prefix}.legacyItemId").strip()
    return CanonicalLine(
        position=position,
        channel_line_id=text(item.get("lineItemId"), f"{prefix}.lineItemId"),
        channel_sku=sku,
        channel_variant_id=text(item.get("legacyVariationId"), f"{prefix}.legacyVariationId"),
        title=title,
        quantity=quantity,
        unit_price=line_cost / quantity,
        raw=item,
        # A legacy item id names a whole listing, so it only identifies single-variation
        # listings; the seller's SKU comes first.
        identifiers=[(ExternalIdKind.SKU, sku), (ExternalIdKind.EBAY_LEGACY_ITEM, legacy_item)],
    )


def _ship_to_instruction(payload: dict) -> dict:
    instructions = payload.get("fulfillmentStartInstructions") or []
    if not isinstance(instructions, list):
        raise AdapterError("fulfillmentStartInstructions", "expected a JSON array")
    for instruction in instructions:
        if isinstance(instruction, dict) and isinstance(instruction.get("shippingStep"), dict):
            return instruction
    return {}


def _shipping_lines(step: dict, pricing: dict, currency: str) -> list[dict[str, str]]:
    code = text(step.get("shippingServiceCode"), "shippingStep.shippingServiceCode").strip()
    if not code:
        return []
    price = _optional_money(pricing.get("deliveryCost"), currency, "pricingSummary.deliveryCost")
    return [
        {
            "code": code,
            "title": code,
            "source": text(step.get("shippingCarrierCode"), "shippingStep.shippingCarrierCode"),
            "carrier_identifier": "",
            "price": str(price),
        }
    ]


def _address(value: Any, field_name: str, *, name: str = "", phone: str = "") -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise AdapterError(field_name, "expected a JSON object")
    address = {
        canonical: text(value.get(key), f"{field_name}.{key}")
        for key, canonical in ADDRESS_KEYS.items()
        if value.get(key) not in (None, "")
    }
    if not address:
        return None
    if name:
        address["name"] = name
    if phone:
        address["phone"] = phone
    return address
