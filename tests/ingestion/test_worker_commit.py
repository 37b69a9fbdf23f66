"""Processing commits without waiting for the WAL flush only when nothing outside the database
depends on the commit."""

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from orders.channel_holds import delivery_lock_with_channel
from orders.models import Delivery, DeliveryOutcome, Order, OrderStatus
from orders.pipeline import delivery_process
from tests.conftest import as_body, order_payload

# The processing transaction must be the outermost one, as in a worker, so these tests commit.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

NO_FLUSH = "set_config('synchronous_commit', 'off', true)"
FLUSH_AGAIN = "SET LOCAL synchronous_commit = on"


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is a PostgreSQL setting")


def _delivery(channel, body: bytes, number: int = 1) -> Delivery:
    return Delivery.objects.create(
        channel=channel,
        delivery_id=f"wh-commit-{number}",
        topic="orders/create",
        headers={},
        body=body,
        signature_valid=True,
    )


def _process(delivery: Delivery) -> list[str]:
    """Process the delivery; return the SQL statements it ran."""
    with CaptureQueriesContext(connection) as queries:
        delivery_process(delivery_id=delivery.pk, worker="test")
    return [query["sql"] for query in queries.captured_queries]


def _commits_without_flush(statements: list[str]) -> bool:
    """Whether synchronous_commit was off when the last statement, the COMMIT, ran."""
    assert statements[-1] == "COMMIT"
    switched_off = [index for index, sql in enumerate(statements) if NO_FLUSH in sql]
    switched_on = [index for index, sql in enumerate(statements) if sql == FLUSH_AGAIN]
    return bool(switched_off) and max(switched_off) > max(switched_on, default=-1)


def test_ready_order_commits_without_flush(channel, catalog):
    delivery = _delivery(channel, as_body(order_payload()))

    statements = _process(delivery)

    assert Order.objects.get().status == OrderStatus.READY
    assert _commits_without_flush(statements)
    assert FLUSH_AGAIN not in statements


def test_failed_payload_commits_with_flush(channel):
    # A failed delivery opens a review item, whose commit clears the queue counts.
    delivery = _delivery(channel, b'{"id": "not an order"')

    statements = _process(delivery)

    delivery.refresh_from_db()
    assert delivery.outcome == DeliveryOutcome.FAILED
    assert not _commits_without_flush(statements)


def test_setting_off_commits_with_flush(channel, catalog, settings):
    settings.OMSGUARD_PROCESSING_ASYNC_COMMIT = False
    delivery = _delivery(channel, as_body(order_payload()))

    statements = _process(delivery)

    assert Order.objects.get().status == OrderStatus.READY
    assert not any(NO_FLUSH in sql for sql in statements)


def test_inside_outer_transaction_commits_with_flush(channel, catalog):
    delivery = _delivery(channel, as_body(order_payload()))

    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        delivery_process(delivery_id=delivery.pk, worker="test")

    assert Order.objects.get().status == OrderStatus.READY
    assert not any(NO_FLUSH in query["sql"] for query in queries.captured_queries)


def test_async_commit_is_local_to_transaction(channel, catalog):
    delivery = _delivery(channel, as_body(order_payload()))

    _process(delivery)

    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"


def test_delivery_lock_without_flush_reads_same_rows(channel):
    delivery = _delivery(channel, as_body(order_payload()))

    with transaction.atomic():
        plain = delivery_lock_with_channel(delivery_id=delivery.pk)
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            before = cursor.fetchone()[0]
        relaxed = delivery_lock_with_channel(delivery_id=delivery.pk, commit_without_flush=True)
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            after = cursor.fetchone()[0]

    assert model_to_dict(relaxed) == model_to_dict(plain)
    assert model_to_dict(relaxed.channel) == model_to_dict(plain.channel)
    assert (before, after) == ("on", "off")
