"""Inventory fixtures: locations, stock set through the real service, orders, role users."""

import importlib
from collections.abc import Callable

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Sku
from inventory.models import Location, LocationKind, StockEventKind, StockLevel
from inventory.services import StockEventInput, stock_event_record
from orders.models import Order
from tests.conftest import as_body, make_user, order_payload, signed_headers

TEE = "TEE-CLASSIC-BLK-M"
TEE_WHITE = "TEE-CLASSIC-WHT-M"
MUG = "MUG-ENAMEL-NVY-OS"


def make_inventory_user(username: str, group: str | None) -> User:
    """A user in a role group that also carries the inventory permissions.

    A transactional test flushes the groups; tests.conftest recreates them from the reviews
    migration only, so the inventory migration's grants are added again here.
    """
    user = make_user(username, group)
    roles = importlib.import_module("inventory.migrations.0002_roles")
    roles.add_role_permissions(django_apps, None)
    return User.objects.get(pk=user.pk)


def api_client(user: User) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def locations(db) -> dict[str, Location]:
    return {
        code: Location.objects.create(code=code, name=name, kind=kind)
        for code, name, kind in [
            ("WH", "Warehouse", LocationKind.WAREHOUSE),
            ("STORE", "Store", LocationKind.STORE),
            ("TPL", "3PL", LocationKind.THIRD_PARTY),
        ]
    }


@pytest.fixture
def set_stock(locations) -> Callable[..., StockLevel]:
    """Set a SKU's on hand at a location with an absolute event of the next version."""

    def set_stock(sku_code: str, location_code: str, on_hand: int) -> StockLevel:
        sku = Sku.objects.get(code=sku_code)
        location = locations[location_code]
        level = StockLevel.objects.filter(sku=sku, location=location).first()
        version = level.version + 1 if level else 1
        result = stock_event_record(
            data=StockEventInput(
                source="test",
                event_id=f"{sku_code}@{location_code}-v{version}",
                sku=sku,
                location=location,
                kind=StockEventKind.ABSOLUTE,
                quantity=on_hand,
                version=version,
            )
        )
        assert result.event.outcome == "applied", result.event.reason
        return StockLevel.objects.get(sku=sku, location=location)

    return set_stock


@pytest.fixture
def place_order(post_webhook) -> Callable[..., Order]:
    """Post an order through the webhook with (sku code, quantity) lines; return it."""
    counter = iter(range(1, 10_000))

    def place(*lines: tuple[str, int]) -> Order:
        number = next(counter)
        payload = order_payload(
            order_id=7_000_000_000_000 + number,
            name=f"#{7000 + number}",
            lines=[
                {
                    "id": 13_000_000_000_000 + number * 10 + position,
                    "sku": code,
                    "title": code,
                    "quantity": quantity,
                    "price": "10.00",
                }
                for position, (code, quantity) in enumerate(lines)
            ],
        )
        body = as_body(payload)
        response = post_webhook(body, headers=signed_headers(body, webhook_id=f"wh-inv-{number}"))
        assert response.status_code == 200
        return Order.objects.get(channel_order_id=str(payload["id"]))

    return place
