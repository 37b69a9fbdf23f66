"""Races on real PostgreSQL row locks: reservations and stock events from parallel threads."""

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from catalog.models import Sku
from inventory.hygiene import check_stock
from inventory.models import Reservation, StockEvent, StockEventKind, StockLevel
from inventory.services import StockEventInput, stock_event_record
from orders.models import Order, OrderStatus
from reviews.models import ReviewItem, ReviewKind
from tests.conftest import as_body, order_payload, signed_headers
from tests.inventory.conftest import TEE

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real row locks between transactions")


def run_in_threads(count: int, work: Callable[[int, threading.Barrier], object]) -> list[object]:
    """Run work(index, barrier) in `count` threads, each on its own connection.

    Returns the results in index order and re-raises the first error of any thread.
    """
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = work(index, barrier)
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def reserve_concurrently(order_ids: list[int]) -> list[list[str]]:
    """Each thread locks its order, waits for all others, then runs the stock check."""

    def reserve(index: int, barrier: threading.Barrier) -> list[str]:
        with transaction.atomic():
            # Only the order row: order_lock() also locks the channel row through its join,
            # which would queue the threads before they reach the stock levels.
            order = Order.objects.select_for_update(of=("self",)).get(pk=order_ids[index])
            barrier.wait(timeout=20)
            return [finding["code"] for finding in check_stock(order=order)]

    return run_in_threads(len(order_ids), reserve)


def test_five_units_two_orders_of_three(catalog, set_stock, place_order):
    orders = [place_order((TEE, 3)), place_order((TEE, 3))]
    set_stock(TEE, "WH", 5)

    codes = reserve_concurrently([order.pk for order in orders])

    assert sorted(codes) == [[], ["out_of_stock"]]
    level = StockLevel.objects.get(sku__code=TEE, location__code="WH")
    assert (level.on_hand, level.reserved) == (5, 3)
    assert Reservation.objects.count() == 1
    assert ReviewItem.objects.filter(kind=ReviewKind.OUT_OF_STOCK).count() == 1


def test_ten_units_twenty_orders_of_one(catalog, set_stock, place_order):
    orders = [place_order((TEE, 1)) for _ in range(20)]
    set_stock(TEE, "WH", 10)

    codes = reserve_concurrently([order.pk for order in orders])

    assert Counter(tuple(c) for c in codes) == {(): 10, ("out_of_stock",): 10}
    level = StockLevel.objects.get(sku__code=TEE, location__code="WH")
    assert (level.on_hand, level.reserved) == (10, 10)
    assert Reservation.objects.count() == 10


def test_two_webhook_orders_race_for_stock(catalog, set_stock):
    set_stock(TEE, "WH", 5)
    url = reverse("webhooks:shopify", kwargs={"channel_code": "shop"})
    line = order_payload()["line_items"][0] | {"quantity": 3}
    bodies = [as_body(order_payload(order_id=8_000 + n, lines=[line])) for n in range(2)]

    def post(index: int, barrier: threading.Barrier):
        body = bodies[index]
        headers = signed_headers(body, webhook_id=f"wh-race-{index}")
        barrier.wait(timeout=20)
        return Client().post(url, data=body, content_type="application/json", headers=headers)

    responses = run_in_threads(2, post)

    assert [response.status_code for response in responses] == [200, 200]
    statuses = sorted(Order.objects.values_list("status", flat=True))
    assert statuses == [OrderStatus.ON_HOLD, OrderStatus.READY]
    assert StockLevel.objects.get(sku__code=TEE, location__code="WH").reserved == 3


def test_concurrent_deltas_lose_no_update(catalog, locations):
    sku = Sku.objects.get(code=TEE)

    def send(index: int, barrier: threading.Barrier) -> str:
        barrier.wait(timeout=20)
        result = stock_event_record(
            data=StockEventInput(
                source="pos",
                event_id=f"sale-{index}",
                sku=sku,
                location=locations["STORE"],
                kind=StockEventKind.DELTA,
                quantity=1,
                version=index + 1,
            )
        )
        return result.outcome

    outcomes = Counter(run_in_threads(20, send))

    assert set(outcomes) <= {"applied", "stale"}
    assert sum(outcomes.values()) == 20
    [level] = StockLevel.objects.filter(sku=sku)
    assert level.on_hand == outcomes["applied"]
    applied = StockEvent.objects.filter(outcome="applied").values_list("version", flat=True)
    assert level.version == max(applied)


def test_concurrent_replays_apply_once(catalog, locations):
    sku = Sku.objects.get(code=TEE)

    def send(index: int, barrier: threading.Barrier) -> str:
        barrier.wait(timeout=20)
        result = stock_event_record(
            data=StockEventInput(
                source="pos",
                event_id="restock-1",
                sku=sku,
                location=locations["WH"],
                kind=StockEventKind.DELTA,
                quantity=4,
                version=1,
            )
        )
        return result.outcome

    outcomes = Counter(run_in_threads(8, send))

    assert outcomes == {"applied": 1, "duplicate": 7}
    assert StockLevel.objects.get(sku=sku, location=locations["WH"]).on_hand == 4
