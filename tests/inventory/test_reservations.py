"""Reserving stock at ingestion, out-of-stock review items, and retries after restocks."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import transaction

from guardrails.models import AuditEntry
from inventory.models import Reservation, ReservationStatus, StockLevel
from inventory.reservations import reservation_consume, reservation_release
from orders.models import OrderStatus
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from reviews.services import ReviewConflict, ReviewError, review_item_accept, review_item_reject
from tests.inventory.conftest import MUG, TEE, TEE_WHITE, make_inventory_user

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def level(sku: str, location: str) -> StockLevel:
    return StockLevel.objects.get(sku__code=sku, location__code=location)


def test_untracked_sku_passes_unreserved(catalog, locations, place_order):
    order = place_order((TEE, 2))

    assert order.status == OrderStatus.READY
    assert Reservation.objects.count() == 0
    assert order.hold_reasons == []


def test_reserves_at_location_with_most_available(catalog, set_stock, place_order):
    set_stock(TEE, "WH", 5)
    set_stock(TEE, "STORE", 9)
    set_stock(TEE, "TPL", 7)

    order = place_order((TEE, 2))

    assert order.status == OrderStatus.READY
    reservation = Reservation.objects.get()
    assert reservation.stock_level.location.code == "STORE"
    assert reservation.quantity == 2
    assert reservation.status == ReservationStatus.ACTIVE
    assert (level(TEE, "STORE").on_hand, level(TEE, "STORE").reserved) == (9, 2)
    assert order.events.get(kind="stock.reserved").message == (
        "Reserved 2 x TEE-CLASSIC-BLK-M at STORE for line 1."
    )
    assert AuditEntry.objects.get(action="reservation.created").after == {
        "on_hand": 9,
        "reserved": 2,
    }


def test_tie_goes_to_first_location_code(catalog, set_stock, place_order):
    set_stock(TEE, "WH", 4)
    set_stock(TEE, "TPL", 4)

    place_order((TEE, 1))

    assert Reservation.objects.get().stock_level.location.code == "TPL"


def test_inactive_location_gets_no_reservation(catalog, locations, set_stock, place_order):
    set_stock(TEE, "WH", 1)
    set_stock(TEE, "STORE", 8)
    locations["STORE"].is_active = False
    locations["STORE"].save()

    place_order((TEE, 1))

    assert Reservation.objects.get().stock_level.location.code == "WH"


def test_lines_are_not_split_across_locations(catalog, set_stock, place_order):
    set_stock(TEE, "WH", 2)
    set_stock(TEE, "STORE", 2)

    order = place_order((TEE, 3))

    assert order.status == OrderStatus.ON_HOLD
    assert Reservation.objects.count() == 0
    assert (level(TEE, "WH").reserved, level(TEE, "STORE").reserved) == (0, 0)


def test_two_lines_of_same_sku_see_each_other(catalog, set_stock, place_order):
    set_stock(TEE, "WH", 5)

    order = place_order((TEE, 3), (TEE, 3))

    assert order.status == OrderStatus.ON_HOLD
    assert [reason["line"] for reason in order.hold_reasons] == [2]
    assert level(TEE, "WH").reserved == 3


def test_out_of_stock_holds_order_and_opens_item(catalog, set_stock, place_order):
    with time_machine.travel(NOW, tick=False):
        set_stock(TEE, "WH", 1)
        set_stock(TEE, "STORE", 2)
        set_stock(MUG, "WH", 10)
        order = place_order((MUG, 1), (TEE, 4))

    assert order.status == OrderStatus.ON_HOLD
    item = ReviewItem.objects.get(kind=ReviewKind.OUT_OF_STOCK)
    assert item.order_line.position == 2
    assert (
        item.reason
        == "Line 2 (TEE-CLASSIC-BLK-M): 4 requested, at most 2 available at one location."
    )
    assert item.proposal["requested"] == 4
    assert item.proposal["best_available"] == 2
    assert item.proposal["as_of"] == "2025-03-01T12:00:00+00:00"
    assert [(row["location"], row["available"]) for row in item.proposal["locations"]] == [
        ("WH", 1),
        ("STORE", 2),
    ]
    out_of_stock_reasons = [r for r in order.hold_reasons if r["code"] == "out_of_stock"]
    assert out_of_stock_reasons == [
        {
            "severity": "hold",
            "code": "out_of_stock",
            "message": (
                "Line 2 (TEE-CLASSIC-BLK-M): 4 requested, at most 2 available at one location"
            ),
            "line": 2,
            "review_item": item.pk,
            "data": {
                "sku": TEE,
                "requested": 4,
                "best_available": 2,
                "as_of": "2025-03-01T12:00:00+00:00",
            },
        }
    ]
    # The other line keeps its reservation while the order waits.
    assert Reservation.objects.get().order_line.position == 1
    assert (level(TEE, "WH").reserved, level(TEE, "STORE").reserved) == (0, 0)


def test_accept_after_restock_releases_order(catalog, set_stock, place_order):
    set_stock(TEE, "WH", 1)
    order = place_order((TEE, 3))
    item = ReviewItem.objects.get()
    agent = make_inventory_user("alice", "cs_agent")
    # On-commit callbacks do not run here, so the automatic retry after a restock stays off.
    set_stock(TEE, "WH", 3)

    review_item_accept(item_id=item.pk, user=agent)

    item.refresh_from_db()
    order.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.decision == {
        "line": 1,
        "sku": TEE,
        "reservation": Reservation.objects.get().pk,
        "location": "WH",
        "quantity": 3,
        "stale_stock": False,
    }
    assert order.status == OrderStatus.READY
    assert level(TEE, "WH").reserved == 3
    assert order.events.get(kind="stock.reserved").actor == agent


def test_accept_while_still_short_is_conflict(catalog, set_stock, place_order):
    set_stock(TEE, "WH", 1)
    order = place_order((TEE, 3))
    item = ReviewItem.objects.get()
    agent = make_inventory_user("alice", "cs_agent")

    with pytest.raises(ReviewConflict) as raised:
        review_item_accept(item_id=item.pk, user=agent)

    assert raised.value.code == "still_out_of_stock"
    assert raised.value.message == (
        "Still out of stock. Line 1 (TEE-CLASSIC-BLK-M): 3 requested, at most 1 available at "
        "one location. Restock it, or reject the item."
    )
    item.refresh_from_db()
    order.refresh_from_db()
    assert item.status == ReviewStatus.OPEN
    assert order.status == OrderStatus.ON_HOLD
    assert Reservation.objects.count() == 0


def test_accept_with_sku_choice_is_invalid(catalog, set_stock, place_order):
    set_stock(TEE, "WH", 1)
    place_order((TEE, 3))
    item = ReviewItem.objects.get()

    with pytest.raises(ReviewError) as raised:
        review_item_accept(
            item_id=item.pk, user=make_inventory_user("alice", "cs_agent"), sku_id=catalog[1].pk
        )

    assert raised.value.code == "invalid_choice"


def test_reject_keeps_hold(catalog, set_stock, place_order):
    set_stock(TEE, "WH", 1)
    order = place_order((TEE, 3))
    item = ReviewItem.objects.get()

    review_item_reject(item_id=item.pk, user=make_inventory_user("alice", "cs_agent"))

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert [reason["code"] for reason in order.hold_reasons] == ["review_rejected"]
    assert Reservation.objects.count() == 0


def test_restock_retries_held_orders_oldest_first(
    catalog, set_stock, place_order, django_capture_on_commit_callbacks
):
    set_stock(TEE, "WH", 0)
    first = place_order((TEE, 2))
    second = place_order((TEE, 5))
    third = place_order((TEE, 1))

    with django_capture_on_commit_callbacks(execute=True):
        set_stock(TEE, "WH", 3)

    for order in (first, second, third):
        order.refresh_from_db()
    assert first.status == OrderStatus.READY
    assert second.status == OrderStatus.ON_HOLD
    assert third.status == OrderStatus.READY
    assert level(TEE, "WH").reserved == 3
    resolved = ReviewItem.objects.get(order=first)
    assert resolved.status == ReviewStatus.RESOLVED
    assert resolved.decided_by is None
    assert resolved.decision_note == "reserved after a stock increase"
    assert ReviewItem.objects.get(order=second).status == ReviewStatus.OPEN
    assert (
        AuditEntry.objects.filter(
            action="review_item.resolved", actor_label="stock replenishment"
        ).count()
        == 2
    )


def test_restock_of_other_sku_leaves_held_order(
    catalog, set_stock, place_order, django_capture_on_commit_callbacks
):
    set_stock(TEE, "WH", 0)
    order = place_order((TEE, 1))

    with django_capture_on_commit_callbacks(execute=True):
        set_stock(TEE_WHITE, "WH", 10)

    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD


def test_reservation_on_stale_snapshot_is_flagged(catalog, set_stock, place_order, settings):
    settings.OMSGUARD_STOCK_TTL_SECONDS = 300
    with time_machine.travel(NOW, tick=False):
        set_stock(TEE, "WH", 5)
    with time_machine.travel(NOW + timedelta(seconds=301), tick=False):
        order = place_order((TEE, 1))

    assert order.status == OrderStatus.READY
    [finding] = [flag for flag in order.flags if flag["code"] == "stale_stock"]
    assert finding["line"] == 1
    assert finding["data"]["location"] == "WH"
    assert finding["data"]["as_of"] == "2025-03-01T12:00:00+00:00"
    assert finding["message"] == (
        "Line 1 (TEE-CLASSIC-BLK-M) was reserved at WH on a stock count from "
        "2025-03-01T12:00:00+00:00, older than 300 s"
    )


def test_reservation_within_ttl_is_not_flagged(catalog, set_stock, place_order):
    with time_machine.travel(NOW, tick=False):
        set_stock(TEE, "WH", 5)
    with time_machine.travel(NOW + timedelta(seconds=300), tick=False):
        order = place_order((TEE, 1))

    assert [flag["code"] for flag in order.flags if flag["code"] == "stale_stock"] == []


def test_release_and_consume_adjust_stock(catalog, set_stock, place_order):
    set_stock(TEE, "WH", 5)
    place_order((TEE, 2))
    place_order((TEE, 1))
    shipped, cancelled = Reservation.objects.order_by("pk")

    reservation_consume(reservation_id=shipped.pk, actor=None, reason="shipped")
    reservation_release(reservation_id=cancelled.pk, actor=None, reason="order cancelled")

    assert (level(TEE, "WH").on_hand, level(TEE, "WH").reserved) == (3, 0)
    shipped.refresh_from_db()
    cancelled.refresh_from_db()
    assert (shipped.status, cancelled.status) == ("consumed", "released")
    assert cancelled.order.events.get(kind="stock.released").message == (
        "Reservation of 1 x TEE-CLASSIC-BLK-M at WH released: order cancelled"
    )
    with pytest.raises(ValueError, match="is released, not active"):
        reservation_release(reservation_id=cancelled.pk, actor=None, reason="again")


def test_reserving_twice_keeps_one_reservation(catalog, set_stock, place_order):
    from inventory.reservations import order_reserve_stock

    set_stock(TEE, "WH", 5)
    order = place_order((TEE, 2))

    with transaction.atomic():
        result = order_reserve_stock(order=order)

    assert result.reserved == []
    assert level(TEE, "WH").reserved == 2


def test_shortage_lists_only_active_locations(catalog, locations, set_stock, place_order):
    set_stock(TEE, "WH", 1)
    set_stock(TEE, "STORE", 8)
    locations["STORE"].is_active = False
    locations["STORE"].save()

    order = place_order((TEE, 3))

    assert order.status == OrderStatus.ON_HOLD
    item = ReviewItem.objects.get()
    assert [row["location"] for row in item.proposal["locations"]] == ["WH"]
    assert item.proposal["best_available"] == 1
