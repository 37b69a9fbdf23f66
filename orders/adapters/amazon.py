"""Amazon adapter: one SP-API Orders v0 order with its items, {"order": ..., "items": [...]}."""

from decimal import Decimal
from typing import Any

from catalog.models import ExternalIdKind
from omsguard.money import money_round

from ..canonical import (
    MAX_AMOUNT,
    AdapterError,
    CanonicalLine,
    CanonicalOrder,
    parse_currency,
    parse_money,
    parse_timestamp,
    text,
)

# Orders Amazon has not finished placing: no totals, no address, no item prices yet.
INCOMPLETE_STATUSES = {"Pending", "PendingAvailability"}
CANCELLED_STATUSES = {"Canceled"}

# Currency of each marketplace, for Pending and Canceled orders that carry no money at all.
MARKETPLACE_CURRENCIES = {
    "ATVPDKIKX0DER": "USD",  # amazon.com
    "A2EUQ1WTGCTBG2": "CAD",  # amazon.ca
    "A1AM78C64UM0Y8": "MXN",  # amazon.com.mx
    "A1F83G8C2ARO7P": "GBP",  # amazon.co.uk
    "A1PA6795UKMFR9": "EUR",  # amazon.de
    "A13V1IB3VIYZZH": "EUR",  # amazon.fr
    "APJ6JRA9NG5V4": "EUR",  # amazon.it
    "A1RKKUPIHCS9HS": "EUR",  # amazon.es
    "A1VC38T7YXB528": "JPY",  # amazon.co.jp
}

ADDRESS_KEYS = {
    "Name": "name",
    "CompanyName": "company",
    "AddressLine1": "address1",
    "AddressLine2": "address2",
    "City": "city",
    "StateOrRegion": "province_code",
    "PostalCode": "zip",
    "CountryCode": "country_code",
    "Phone": "phone",
}


def order_key(entry: Any) -> str:
    """The delivery id of one file entry: AmazonOrderId@LastUpdateDate."""
    order = entry.get("order") if isinstance(entry, dict) else None
    if not isinstance(order, dict):
        raise AdapterError("order", "expected a JSON object")
    order_id = text(order.get("AmazonOrderId"), "order.AmazonOrderId").strip()
    if not order_id:
        raise AdapterError("order.AmazonOrderId", "missing")
    updated = text(order.get("LastUpdateDate"), "order.LastUpdateDate").strip()
    if not updated:
        raise AdapterError("order.LastUpdateDate", "missing")
    return f"{order_id}@{updated}"


def parse_order(payload: Any) -> CanonicalOrder:
    """Turn an Amazon order and its items into the canonical order, or raise AdapterError."""
    if not isinstance(payload, dict) or not isinstance(payload.get("order"), dict):
        raise AdapterError("order", 'expected {"order": {...}, "items": [...]}')
    order = payload["order"]
    items = payload.get("items")
    if not isinstance(items, list) or not items:
        raise AdapterError("items", "an order needs at least one item")
    order_id = text(order.get("AmazonOrderId"), "order.AmazonOrderId").strip()
    if not order_id:
        raise AdapterError("order.AmazonOrderId", "missing order id")

    status = text(order.get("OrderStatus"), "order.OrderStatus")
    cancelled = status in CANCELLED_STATUSES
    incomplete = status in INCOMPLETE_STATUSES
    currency = _currency(order, items)
    lines = [
        _parse_line(position, item, currency, allow_zero=cancelled)
        for position, item in enumerate(items, start=1)
    ]

    # OrderTotal = sum of ItemPrice + ShippingPrice + ItemTax + ShippingTax
    # - PromotionDiscount - ShippingDiscount over the items.
    shipping = _item_sum(items, ("ShippingPrice",))
    tax = _item_sum(items, ("ItemTax", "ShippingTax"))
    discount = _item_sum(items, ("PromotionDiscount", "ShippingDiscount"))
    order_total = order.get("OrderTotal")
    if isinstance(order_total, dict) and order_total.get("Amount") not in (None, ""):
        total = parse_money(order_total["Amount"], "order.OrderTotal.Amount")
    elif incomplete or cancelled:
        total = Decimal(0)
    else:
        raise AdapterError("order.OrderTotal", f"missing for an order in status {status!r}")

    ship_service_level = text(order.get("ShipServiceLevel"), "order.ShipServiceLevel").strip()
    buyer = order.get("BuyerInfo") if isinstance(order.get("BuyerInfo"), dict) else {}
    shipping_address = _address(order.get("ShippingAddress"))
    return CanonicalOrder(
        channel_order_id=order_id,
        order_number=text(order.get("SellerOrderId") or order_id, "order.SellerOrderId"),
        currency=currency,
        subtotal=_item_sum(items, ("ItemPrice",)),
        shipping_total=shipping,
        tax_total=tax,
        discount_total=discount,
        total=total,
        lines=lines,
        source_name=text(order.get("FulfillmentChannel"), "order.FulfillmentChannel"),
        marketplace=text(
            order.get("SalesChannel") or order.get("MarketplaceId"), "order.SalesChannel"
        ),
        event_version=text(order.get("LastUpdateDate"), "order.LastUpdateDate"),
        customer_email=text(buyer.get("BuyerEmail"), "order.BuyerInfo.BuyerEmail"),
        customer_name=text(buyer.get("BuyerName"), "order.BuyerInfo.BuyerName"),
        shipping_address=shipping_address,
        shipping_method=ship_service_level,
        # The ship service level names a speed, not a carrier; carrier mapping turns it into
        # the seller's carrier service.
        shipping_lines=(
            [
                {
                    "code": ship_service_level,
                    "title": ship_service_level,
                    "source": "amazon",
                    "carrier_identifier": "",
                    "price": str(shipping),
                }
            ]
            if ship_service_level
            else []
        ),
        placed_at=parse_timestamp(order.get("PurchaseDate"), "order.PurchaseDate"),
        tags=["prime"] if order.get("IsPrime") is True else [],
        source_updated_at=parse_timestamp(order.get("LastUpdateDate"), "order.LastUpdateDate"),
        state=_state(cancelled=cancelled, incomplete=incomplete),
    )


def _currency(order: dict, items: list) -> str:
    order_total = order.get("OrderTotal")
    if isinstance(order_total, dict) and order_total.get("CurrencyCode"):
        return parse_currency(order_total["CurrencyCode"], "order.OrderTotal.CurrencyCode")
    for item in items:
        price = item.get("ItemPrice") if isinstance(item, dict) else None
        if isinstance(price, dict) and price.get("CurrencyCode"):
            return parse_currency(price["CurrencyCode"], "items.ItemPrice.CurrencyCode")
    marketplace = text(order.get("MarketplaceId"), "order.MarketplaceId")
    if marketplace in MARKETPLACE_CURRENCIES:
        return MARKETPLACE_CURRENCIES[marketplace]
    raise AdapterError("order.MarketplaceId", f"unknown marketplace {marketplace!r} and no amounts")


def _parse_line(position: int, item: Any, currency: str, *, allow_zero: bool) -> CanonicalLine:
    prefix = f"items[{position - 1}]"
    if not isinstance(item, dict):
        raise AdapterError(prefix, "expected a JSON object")
    title = text(item.get("Title"), f"{prefix}.Title").strip()
    if not title:
        raise AdapterError(f"{prefix}.Title", "missing title")

    quantity = _quantity(item.get("QuantityOrdered"), f"{prefix}.QuantityOrdered", allow_zero)
    line_total = _amount(item.get("ItemPrice"), f"{prefix}.ItemPrice")
    if line_total >= MAX_AMOUNT:
        # Checked before rounding, which cannot quantize an amount of more than 28 digits.
        raise AdapterError(f"{prefix}.ItemPrice.Amount", f"amount too large: {line_total}")
    # ItemPrice is the line total; the unit price is rounded to the currency's minor unit.
    unit_price = money_round(line_total / quantity, currency) if quantity else Decimal(0)
    seller_sku = text(item.get("SellerSKU"), f"{prefix}.SellerSKU").strip()
    asin = text(item.get("ASIN"), f"{prefix}.ASIN").strip()
    return CanonicalLine(
        position=position,
        channel_line_id=text(item.get("OrderItemId"), f"{prefix}.OrderItemId"),
        channel_sku=seller_sku,
        channel_variant_id=asin,
        title=title,
        quantity=quantity,
        unit_price=unit_price,
        raw=item,
        # SellerSKU is the seller's own code and most specific. The ASIN names the product
        # page, which several sellers share. A plain "sku" mapping is the fallback, so a
        # catalog whose codes equal the SellerSKUs needs no Amazon-specific mappings.
        identifiers=[
            (ExternalIdKind.AMAZON_SELLER_SKU, seller_sku),
            (ExternalIdKind.AMAZON_ASIN, asin),
            (ExternalIdKind.SKU, seller_sku),
        ],
    )


def _quantity(value: Any, field_name: str, allow_zero: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AdapterError(field_name, f"not a whole number: {value!r}")
    if value < 0:
        raise AdapterError(field_name, f"negative quantity: {value}")
    if value == 0 and not allow_zero:
        raise AdapterError(field_name, "quantity must be at least 1 unless the order is canceled")
    return value


def _amount(value: Any, field_name: str) -> Decimal:
    """An optional Money object ({"CurrencyCode", "Amount"}): missing counts as zero."""
    if value is None:
        return Decimal(0)
    if not isinstance(value, dict):
        raise AdapterError(field_name, "expected a Money object")
    return parse_money(value.get("Amount"), f"{field_name}.Amount")


def _item_sum(items: list, names: tuple[str, ...]) -> Decimal:
    total = Decimal(0)
    for index, item in enumerate(items):
        for name in names:
            total += _amount(item.get(name), f"items[{index}].{name}")
    return total


def _address(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise AdapterError("order.ShippingAddress", "expected a JSON object")
    address = {
        canonical: text(value.get(key), f"order.ShippingAddress.{key}")
        for key, canonical in ADDRESS_KEYS.items()
        if value.get(key) not in (None, "")
    }
    return address or None


def _state(*, cancelled: bool, incomplete: bool) -> str:
    if cancelled:
        return "cancelled"
    if incomplete:
        return "incomplete"
    return "open"
