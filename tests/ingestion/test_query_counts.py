"""Query counts of the ingestion hot path: the webhook acknowledgement and processing an order.

Both run once per order, so an extra query is paid thousands of times a minute (bench/ingest.py
measures the throughput). The counts must also stay the same however many lines an order has.
Counted inside the test's transaction, so processing's own transaction shows as a SAVEPOINT and
its RELEASE; in production they are BEGIN and COMMIT.
"""

import pytest
from django.db import connection
from django.urls import reverse

from orders.models import Delivery, DeliveryOutcome, Order, OrderStatus
from orders.pipeline import delivery_process
from tests.conftest import as_body, order_payload, signed_headers

pytestmark = pytest.mark.django_db

# The first ack of a thread: SELECT the channel with its row version, then INSERT the
# delivery. Later acks of the same channel only INSERT (tests/ingestion/test_ack_channel_cache.py).
ACK_QUERIES = 2
# SAVEPOINT, lock the delivery with its channel's hold state, INSERT the order, find the
# lines' SKUs, INSERT the lines; priority customers with the routing counts, the stock levels
# (the new lines cannot have reservations yet), carrier mapping; then one query of four
# statements (UPDATE the order, INSERT the audit entry, INSERT the events, UPDATE the
# delivery), RELEASE. Other databases than PostgreSQL read the priority customers and the
# routing counts with two queries, and send the last four statements one by one.
PROCESSING_QUERIES = 10
PROCESSING_QUERIES_NOT_POSTGRESQL = 14

SKUS = ("TEE-CLASSIC-BLK-M", "TEE-CLASSIC-WHT-M", "MUG-ENAMEL-NVY-OS")


def _lines(count: int) -> list[dict]:
    return [
        {
            "id": 13571113171900 + index,
            "variant_id": 44012345678900 + index,
            "sku": SKUS[index % len(SKUS)],
            "title": "Line",
            "name": f"Line {index}",
            "quantity": 1,
            "price": "10.00",
        }
        for index in range(count)
    ]


def _post(client, body: bytes, webhook_id: str):
    return client.post(
        reverse("webhooks:shopify", kwargs={"channel_code": "shop"}),
        data=body,
        content_type="application/json",
        headers=signed_headers(body, webhook_id=webhook_id),
    )


def test_webhook_ack_queries(
    channel, client, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    body = as_body(order_payload())
    with (
        django_capture_on_commit_callbacks(execute=False) as queued,
        django_assert_max_num_queries(ACK_QUERIES),
    ):
        response = _post(client, body, "wh-count")

    assert response.json()["status"] == "accepted"
    assert len(queued) == 1  # the processing task, published once the row is committed

    # A repeat adds one query, reading the recorded delivery it answers with.
    with (
        django_capture_on_commit_callbacks(execute=False) as queued,
        django_assert_max_num_queries(ACK_QUERIES + 1),
    ):
        response = _post(client, body, "wh-count")
    assert response.json()["status"] == "duplicate"
    assert queued == []
    assert Delivery.objects.count() == 1


@pytest.mark.parametrize("line_count", [1, 6])
def test_processing_queries_do_not_grow_with_lines(
    channel, catalog, django_assert_max_num_queries, line_count
):
    total = f"{10 * line_count + 5:.2f}"
    payload = order_payload(
        lines=_lines(line_count), subtotal_price=f"{10 * line_count:.2f}", total_price=total
    )
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id=f"d-{line_count}",
        topic="orders/create",
        headers={},
        body=as_body(payload),
        signature_valid=True,
    )

    expected = (
        PROCESSING_QUERIES
        if connection.vendor == "postgresql"
        else PROCESSING_QUERIES_NOT_POSTGRESQL
    )
    with django_assert_max_num_queries(expected):
        delivery_process(delivery_id=delivery.pk, worker="test")

    delivery.refresh_from_db()
    assert delivery.outcome == DeliveryOutcome.PROCESSED
    order = Order.objects.get()
    assert order.status == OrderStatus.READY
    assert order.lines.count() == line_count
    # The fields the checks set reach the database with the final status.
    assert order.carrier_service is not None
    assert order.address_score is not None
    assert list(order.events.values_list("kind", flat=True)) == [
        "order.received",
        "order.validated",
        "order.ready",
    ]


@pytest.mark.parametrize(
    "body",
    [
        # Raw UTF-8 bytes of a lone surrogate, which json.loads decodes without complaint.
        b'{"id": 1, "note": "\xed\xa0\x80"}',
        # UTF-16, which json.loads also reads; the quick scan of UTF-8 bodies does not apply.
        '{"id": 1, "note": "a\\u0000b"}'.encode("utf-16"),
    ],
    ids=["raw surrogate bytes", "utf-16 body with NUL"],
)
def test_unstorable_json_is_still_caught_without_escapes(channel, post_webhook, body):
    post_webhook(body)

    delivery = Delivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.FAILED
    assert delivery.error.startswith("body.note: contains")
