"""Fixtures for the decisions tests: a ready order with stock, API clients per role."""

from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.models import Sku
from guardrails.appliers import carrier_service_by_code
from inventory.models import Location, LocationKind, StockLevel
from orders.models import ChannelApiGrant, Delivery, Order, OrderLine, OrderStatus

SHIPPING_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
}


@pytest.fixture(name="locations")
def locations_fixture(db) -> dict[str, Location]:
    return {
        "wh-east": Location.objects.create(
            code="wh-east", name="East warehouse", kind=LocationKind.WAREHOUSE
        ),
        "store-nyc": Location.objects.create(
            code="store-nyc", name="NYC store", kind=LocationKind.STORE
        ),
    }


def stock_set(sku_code: str, location: Location, on_hand: int) -> StockLevel:
    """A freshly counted stock level."""
    return StockLevel.objects.update_or_create(
        sku=Sku.objects.get(code=sku_code),
        location=location,
        defaults={"on_hand": on_hand, "counted_at": timezone.now()},
    )[0]


@pytest.fixture(name="order")
def order_fixture(db, default_policies, catalog, channel, locations) -> Order:
    """A ready order: 1 x TEE-CLASSIC-BLK-M at 19.99 shipped by UPS Ground.

    The ordered SKU has no stock left; the white tee has 5 at wh-east and 3 at store-nyc.
    """
    stock_set("TEE-CLASSIC-BLK-M", locations["wh-east"], 0)
    stock_set("TEE-CLASSIC-WHT-M", locations["wh-east"], 5)
    stock_set("TEE-CLASSIC-WHT-M", locations["store-nyc"], 3)
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id="wh-decisions",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
    )
    order = Order.objects.create(
        channel=channel,
        channel_order_id="5837219471390",
        order_number="#1001",
        delivery=delivery,
        status=OrderStatus.READY,
        currency="USD",
        subtotal=Decimal("19.99"),
        shipping_total=Decimal("5"),
        tax_total=Decimal("0"),
        discount_total=Decimal("0"),
        total=Decimal("24.99"),
        customer_email="ada@example.com",
        shipping_address=SHIPPING_ADDRESS,
        carrier_service=carrier_service_by_code("ups/ground"),
    )
    OrderLine.objects.create(
        order=order,
        position=1,
        title="Classic Cotton T-Shirt - Black / M",
        quantity=1,
        unit_price=Decimal("19.99"),
        sku=Sku.objects.get(code="TEE-CLASSIC-BLK-M"),
        raw={"sku": "TEE-CLASSIC-BLK-M", "quantity": 1, "price": "19.99"},
    )
    return order


@pytest.fixture(name="bot_api")
def bot_api_fixture(integration_user, channel) -> APIClient:
    """The API client of an AI agent (role integration) granted the `channel` fixture."""
    ChannelApiGrant.objects.get_or_create(user=integration_user, channel=channel)
    client = APIClient()
    client.force_authenticate(integration_user)
    return client


@pytest.fixture(name="manager_api")
def manager_api_fixture(manager) -> APIClient:
    client = APIClient()
    client.force_authenticate(manager)
    return client


def proposal(order: Order, action: str, before: dict, after: dict, **overrides) -> dict:
    """A decisions API body with a confident, known model."""
    return {
        "action": action,
        "order": order.pk,
        "before": before,
        "after": after,
        "confidence": "0.95",
        "model_name": "gpt-sub",
        "model_version": "2024-06",
        "rationale": "Same tee in another colour.",
        **overrides,
    }


SUBSTITUTION = ({"line": 1, "sku": "TEE-CLASSIC-BLK-M"}, {"line": 1, "sku": "TEE-CLASSIC-WHT-M"})
