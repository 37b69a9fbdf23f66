"""Builders for the recommender tests: SKUs with stock, orders with lines, carrier rates."""

from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from catalog.models import Channel, Sku
from inventory.models import Location, LocationKind, StockLevel
from orders.models import CarrierRate, CarrierService, Delivery, Order, OrderLine, OrderStatus


def sku_create(
    code: str,
    title: str,
    *,
    price: str = "19.99",
    cost: str | None = "8.00",
    attributes: dict | None = None,
    category: str = "T-Shirts",
    currency: str = "USD",
    weight_grams: int | None = 200,
) -> Sku:
    return Sku.objects.create(
        code=code,
        title=title,
        price=Decimal(price),
        cost=Decimal(cost) if cost is not None else None,
        attributes=attributes or {},
        category=category,
        currency=currency,
        weight_grams=weight_grams,
    )


def warehouse() -> Location:
    location, _ = Location.objects.get_or_create(
        code="wh-east", defaults={"name": "East warehouse", "kind": LocationKind.WAREHOUSE}
    )
    return location


def stock_set(sku: Sku, on_hand: int, *, counted_at: datetime | None = None) -> StockLevel:
    return StockLevel.objects.create(
        sku=sku,
        location=warehouse(),
        on_hand=on_hand,
        version=1,
        counted_at=counted_at or timezone.now(),
    )


def order_create(
    channel: Channel,
    lines: list[tuple[Sku, int, str]],
    *,
    number: int = 1,
    country: str = "US",
    carrier_service: CarrierService | None = None,
    status: str = OrderStatus.ON_HOLD,
) -> Order:
    """An order with one line per (sku, quantity, unit price), shipped to `country`."""
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id=f"wh-rec-{channel.code}-{number}",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
    )
    subtotal = sum((Decimal(price) * quantity for _, quantity, price in lines), Decimal("0"))
    order = Order.objects.create(
        channel=channel,
        channel_order_id=str(7_000_000 + number),
        order_number=f"#{2000 + number}",
        delivery=delivery,
        status=status,
        currency="USD",
        subtotal=subtotal,
        shipping_total=Decimal("5"),
        tax_total=Decimal("0"),
        discount_total=Decimal("0"),
        total=subtotal + Decimal("5"),
        shipping_address={"name": "Ada Quill", "city": "Austin", "country_code": country},
        carrier_service=carrier_service,
    )
    for position, (sku, quantity, price) in enumerate(lines, start=1):
        OrderLine.objects.create(
            order=order,
            position=position,
            title=sku.title,
            quantity=quantity,
            unit_price=Decimal(price),
            sku=sku,
            raw={"sku": sku.code},
        )
    return order


def service_get(code: str) -> CarrierService:
    """A reference service by "carrier/service" code, e.g. "ups/ground"."""
    carrier_code, service_code = code.split("/")
    return CarrierService.objects.select_related("carrier").get(
        carrier__code=carrier_code, code=service_code
    )


def service_set(code: str, *, reliability: str, transit_days: int) -> CarrierService:
    service = service_get(code)
    service.reliability = Decimal(reliability)
    service.transit_days = transit_days
    service.save(update_fields=["reliability", "transit_days"])
    return service


def rate_create(code: str, price: str, *, country: str = "US", **fields) -> CarrierRate:
    return CarrierRate.objects.create(
        service=service_get(code),
        destination_country=country,
        price=Decimal(price),
        currency="USD",
        **fields,
    )
