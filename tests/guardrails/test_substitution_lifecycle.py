"""A short line carries two items: the out-of-stock hold and the queued substitution. Settling
either one makes the other moot, and the order goes on once nothing else holds it."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.db import transaction

from inventory.hygiene import check_stock
from inventory.models import StockLevel
from inventory.out_of_stock import out_of_stock_retry
from orders.models import Order, OrderStatus
from orders.services import order_hold
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from reviews.services import review_item_accept
from tests.conftest import make_user

from .recommender_fixtures import order_create, sku_create, stock_set

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
BLACK_M = {"colour": "Black", "size": "M"}


@pytest.fixture(autouse=True)
def _frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def held_order(default_policies, channel, django_capture_on_commit_callbacks) -> Order:
    """An order whose only line is short, with a substitute in stock and proposed."""
    ordered = sku_create(
        "TEE-CLASSIC-BLK-M", "Classic Cotton T-Shirt - Black / M", attributes=BLACK_M
    )
    stock_set(ordered, 0)
    substitute = sku_create(
        "TEE-PREMIUM-BLK-M",
        "Premium Cotton T-Shirt - Black / M",
        price="21.99",
        cost="9.00",
        attributes=BLACK_M,
    )
    stock_set(substitute, 10)
    order = order_create(channel, [(ordered, 2, "19.99")], status=OrderStatus.VALIDATED)

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        findings = check_stock(order=order)
        order.refresh_from_db()
        order_hold(order=order, reasons=findings)

    order.refresh_from_db()
    return order


def items_by_kind(order: Order) -> dict[str, ReviewItem]:
    return {item.kind: item for item in ReviewItem.objects.filter(order=order)}


def test_short_line_has_both_items(held_order):
    items = items_by_kind(held_order)

    assert set(items) == {ReviewKind.OUT_OF_STOCK, ReviewKind.SUBSTITUTION}
    assert held_order.status == OrderStatus.ON_HOLD
    assert [reason["code"] for reason in held_order.hold_reasons] == [
        "out_of_stock",
        "ai_decision",
    ]


def test_accepted_substitution_resolves_out_of_stock(held_order):
    agent = make_user("sam", "cs_agent")
    items = items_by_kind(held_order)

    review_item_accept(item_id=items[ReviewKind.SUBSTITUTION].pk, user=agent)

    held_order.refresh_from_db()
    out_of_stock = ReviewItem.objects.get(pk=items[ReviewKind.OUT_OF_STOCK].pk)
    assert out_of_stock.status == ReviewStatus.RESOLVED
    assert out_of_stock.decision["substituted_by"] == "TEE-PREMIUM-BLK-M"
    assert held_order.lines.get().sku.code == "TEE-PREMIUM-BLK-M"
    assert held_order.hold_reasons == []
    assert held_order.status == OrderStatus.READY


def test_restock_resolves_queued_substitution(held_order):
    items = items_by_kind(held_order)
    level = StockLevel.objects.get(sku__code="TEE-CLASSIC-BLK-M")
    level.on_hand = 5
    level.save(update_fields=["on_hand"])

    resolved = out_of_stock_retry(sku_id=level.sku_id)

    held_order.refresh_from_db()
    substitution = ReviewItem.objects.get(pk=items[ReviewKind.SUBSTITUTION].pk)
    assert [item.pk for item in resolved] == [items[ReviewKind.OUT_OF_STOCK].pk]
    assert substitution.status == ReviewStatus.RESOLVED
    assert held_order.lines.get().sku.code == "TEE-CLASSIC-BLK-M"
    assert held_order.status == OrderStatus.READY
