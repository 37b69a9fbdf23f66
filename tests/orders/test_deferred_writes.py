"""The last writes of processing an order, sent in one round trip (order_writes_deferred)."""

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from guardrails.models import AuditEntry
from orders.models import Delivery, DeliveryOutcome, Order, OrderEvent, OrderStatus
from orders.pipeline import delivery_process
from orders.services import (
    order_event_add,
    order_events_batched,
    order_hold,
    order_mark_ready,
    order_writes_deferred,
)
from tests.conftest import as_body, order_payload

pytestmark = pytest.mark.django_db

needs_postgres = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="several statements in one query need PostgreSQL"
)

UNMAPPED_LINE = {
    "id": 13571113171999,
    "variant_id": 44012345670000,
    "sku": "NOT-IN-THE-CATALOG",
    "title": "Unknown",
    "name": "Unknown line",
    "quantity": 1,
    "price": "19.99",
}


def _delivery(channel, payload: dict) -> Delivery:
    return Delivery.objects.create(
        channel=channel,
        delivery_id=f"d-{payload['id']}",
        topic="orders/create",
        headers={},
        body=as_body(payload),
        signature_valid=True,
    )


def _last_query(queries) -> str:
    # The deferred writes are the statement before processing's RELEASE SAVEPOINT.
    return queries.captured_queries[-2]["sql"]


@needs_postgres
def test_ready_order_final_writes_one_query(channel, catalog):
    delivery = _delivery(channel, order_payload())

    with CaptureQueriesContext(connection) as queries:
        delivery_process(delivery_id=delivery.pk, worker="test")

    final = _last_query(queries)
    assert final.startswith('UPDATE "orders_order"')
    assert 'INSERT INTO "guardrails_auditentry"' in final
    assert 'INSERT INTO "orders_orderevent"' in final
    assert 'UPDATE "orders_delivery"' in final

    delivery.refresh_from_db()
    order = Order.objects.get()
    assert delivery.outcome == DeliveryOutcome.PROCESSED
    assert delivery.processed_by == "test"
    assert order.status == OrderStatus.READY
    assert order.carrier_service is not None
    assert order.updated_at > order.created_at
    assert AuditEntry.objects.get(target_id=str(order.pk)).action == "order.ready"
    assert list(order.events.order_by("created_at", "id").values_list("kind", flat=True)) == [
        "order.received",
        "order.validated",
        "order.ready",
    ]


@needs_postgres
def test_flagged_held_order_keeps_both_updates(channel, catalog):
    # An unmapped line puts the order on hold and a wrong total flags it: two UPDATEs of one row.
    lines = [*order_payload()["line_items"], UNMAPPED_LINE]
    delivery = _delivery(channel, order_payload(lines=lines, total_price="99.00"))

    with CaptureQueriesContext(connection) as queries:
        delivery_process(delivery_id=delivery.pk, worker="test")

    assert _last_query(queries).count('UPDATE "orders_order"') == 2
    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD
    assert [flag["code"] for flag in order.flags] == ["total_mismatch"]
    assert "unmapped_sku" in [reason["code"] for reason in order.hold_reasons]
    assert AuditEntry.objects.get(target_id=str(order.pk)).action == "order.held"
    assert order.events.filter(kind="order.flagged").count() == 1
    assert order.events.filter(kind="order.held").count() == 1


@needs_postgres
def test_deferred_writes_get_primary_keys(channel, catalog):
    delivery_process(delivery_id=_delivery(channel, order_payload()).pk, worker="test")
    order = Order.objects.get()
    order.status = OrderStatus.VALIDATED

    with transaction.atomic(), order_events_batched():
        event = order_event_add(order=order, kind="test.note", message="Note.")
        with order_writes_deferred():
            order_mark_ready(order=order)
            assert event.pk is None
    assert event.pk == OrderEvent.objects.get(kind="test.note").pk
    assert AuditEntry.objects.filter(target_id=str(order.pk), action="order.ready").count() == 2


@needs_postgres
def test_block_that_raises_sends_nothing(channel, catalog):
    delivery_process(delivery_id=_delivery(channel, order_payload()).pk, worker="test")
    order = Order.objects.get()
    reasons = [{"severity": "hold", "code": "test", "message": "Test hold"}]

    with (
        pytest.raises(RuntimeError, match="stop"),
        transaction.atomic(),
        CaptureQueriesContext(connection) as queries,
        order_events_batched(),
        order_writes_deferred(),
    ):
        order_hold(order=order, reasons=reasons)
        raise RuntimeError("stop")

    assert [query["sql"] for query in queries.captured_queries] == []
    assert Order.objects.get().status == OrderStatus.READY


@needs_postgres
def test_deferred_update_of_missing_row_raises(channel, catalog):
    delivery_process(delivery_id=_delivery(channel, order_payload()).pk, worker="test")
    order = Order.objects.get()
    order.pk = order.pk + 1000

    with (
        pytest.raises(DatabaseError, match="matched 0 rows instead of 1"),
        transaction.atomic(),
        order_writes_deferred(),
    ):
        order_mark_ready(order=order)


@needs_postgres
def test_server_binding_connection_still_defers(channel, catalog):
    # Several statements in one query need client-side binding, which the deferred writes
    # use whatever the connection's own binding (DB_PREPARED_STATEMENTS).
    assert connection.settings_dict["OPTIONS"].get("server_side_binding") is True
    delivery_process(delivery_id=_delivery(channel, order_payload()).pk, worker="test")
    order = Order.objects.get()
    reasons = [{"severity": "hold", "code": "test", "message": "Test hold"}]

    with transaction.atomic(), order_writes_deferred():
        order_hold(order=order, reasons=reasons)
        assert Order.objects.get().status == OrderStatus.READY

    assert Order.objects.get().status == OrderStatus.ON_HOLD
