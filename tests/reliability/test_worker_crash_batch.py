"""Worker crash: kill -9 the Celery worker in the middle of a batch, restart it, lose nothing.

A quarter of a batch of deliveries is recorded and queued, and a prefork worker (main process
and pool child) processes it. The test then locks the channel row and records the rest, so
the worker's next delivery waits inside its transaction, holding that delivery's row lock, and
kills the worker's whole process group with SIGKILL at that moment. A new worker takes the
rest of the queue at once, and the task the dead worker had taken but not acknowledged once
the transport's visibility timeout (5 s here) returns it. Every delivery must end processed
once: one order, one committed run of processing, one reservation.

The second test proves the bound on retries. A delivery whose processing keeps failing with
a database error is retried MAX_RETRIES times and then goes to the dead letter state.
"""

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction
from django.db.models import Count

from catalog.models import Channel
from inventory.models import Reservation
from orders.models import Delivery, DeliveryOutcome, Order, OrderEvent
from orders.services import delivery_record
from orders.tasks import MAX_RETRIES
from tests.conftest import signed_headers
from tests.integration.test_celery_worker import shopify_channel  # noqa: F401 (fixture)
from tests.reliability.deliveries import (
    ORDER_SKU,
    POLL_INTERVAL,
    order_body,
    wait_until_none_received,
    warehouse_stock_set,
    worker_log_tail,
)
from tests.reliability.figures import figure, sized
from tests.workers import (
    Worker,
    delivery_wait_processed,
    queue_for_test,
    require_services,
    worker_kill,
    worker_start,
    worker_stop,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SUITE = "worker crash"
BATCH = int(sized(full=2000, ci=60))
# The first worker is killed once this share of the batch is processed.
KILL_AFTER_SHARE = 0.25
VISIBILITY_TIMEOUT = 5
# Bounds in seconds for a loaded runner: the worker processes about 20 deliveries/s.
KILL_POINT_TIMEOUT = sized(full=300, ci=60)
LOCK_WAIT_TIMEOUT = 20
RECOVERY_TIMEOUT = sized(full=900, ci=120)
# The dead letter test: a lock held longer than the worker's lock_timeout fails every run.
LOCK_TIMEOUT_MS = 200
DEAD_LETTER_TIMEOUT = 60


@pytest.fixture(autouse=True)
def _services():
    require_services()


def test_killed_worker_batch_processed_once(shopify_channel, tmp_path):  # noqa: F811
    _, level = warehouse_stock_set(sku_code=ORDER_SKU, on_hand=BATCH + 10)
    timeout = {"OMSGUARD_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}

    before_kill = int(BATCH * KILL_AFTER_SHARE)
    with queue_for_test() as queue:
        deliveries = _batch_record(shopify_channel, range(before_kill))
        first = worker_start(
            queue=queue, log_path=tmp_path / "first-worker.log", prefork=True, environment=timeout
        )
        try:
            _wait_until_processed(first, shopify_channel, count=before_kill)
            # The rest of the batch is recorded only once the channel is locked. A worker
            # processes ~100 deliveries/s, so a batch queued at the start could be done
            # before the lock is taken, with no delivery left in flight.
            with _channel_row_locked(shopify_channel):
                deliveries += _batch_record(shopify_channel, range(before_kill, BATCH))
                _wait_for_lock_waiter(first)
                in_flight = _deliveries_locked(shopify_channel)
                worker_kill(first)
                killed_at = time.monotonic()
        finally:
            worker_kill(first)
        processed_before_kill = _processed(shopify_channel)
        # The worker waited for the channel lock in one delivery's transaction.
        assert len(in_flight) == 1, in_flight

        second = worker_start(
            queue=queue, log_path=tmp_path / "second-worker.log", environment=timeout
        )

        def logs() -> str:
            return f"{worker_log_tail(first)}\n{worker_log_tail(second)}"

        try:
            restarted_at = time.monotonic()
            delivery_wait_processed(in_flight[0], timeout=RECOVERY_TIMEOUT, logs=logs)
            redelivery_seconds = time.monotonic() - killed_at
            wait_until_none_received(channel=shopify_channel, timeout=RECOVERY_TIMEOUT, logs=logs)
            recovery_seconds = time.monotonic() - restarted_at
        finally:
            worker_stop(second)

    counts = _batch_counts(shopify_channel, deliveries)
    level.refresh_from_db()
    figure(SUITE, "deliveries in the batch", BATCH)
    figure(SUITE, "processed before the kill", processed_before_kill)
    figure(SUITE, "in flight when the worker was killed", len(in_flight))
    figure(SUITE, "deliveries processed", counts["processed"])
    figure(SUITE, "deliveries processed twice", counts["processed twice"])
    figure(SUITE, "deliveries lost", counts["lost"])
    figure(SUITE, "seconds from the kill until its delivery was processed", redelivery_seconds, "s")
    figure(SUITE, "seconds from the restart until the batch was done", recovery_seconds, "s")

    assert 0 < processed_before_kill < BATCH
    assert counts["outcomes"] == {DeliveryOutcome.PROCESSED: BATCH}
    assert counts["lost"] == 0
    assert counts["processed twice"] == 0
    assert counts["orders"] == BATCH
    assert counts["deliveries with one order"] == BATCH
    assert counts["order.received events"] == BATCH
    assert counts["reservations"] == BATCH
    assert level.reserved == BATCH
    assert counts["processed by"] == {
        first.nodename: processed_before_kill,
        second.nodename: BATCH - processed_before_kill,
    }
    redelivered = Delivery.objects.get(pk=in_flight[0])
    assert (redelivered.processed_by, redelivered.attempts) == (second.nodename, 1)


def test_database_errors_dead_letter_after_retries(shopify_channel, tmp_path):  # noqa: F811

    with queue_for_test() as queue:
        worker = worker_start(
            queue=queue,
            log_path=tmp_path / "worker.log",
            environment={
                # libpq reads PGOPTIONS: every statement of the worker waits for a lock at
                # most this long, then fails with an OperationalError.
                "PGOPTIONS": f"-c lock_timeout={LOCK_TIMEOUT_MS}",
                "OMSGUARD_DELIVERY_RETRY_BACKOFF_MAX_SECONDS": "1",
            },
        )
        try:
            with _channel_row_locked(shopify_channel):
                delivery = _delivery_record(shopify_channel, 0)
                started = time.monotonic()
                delivery = delivery_wait_processed(
                    delivery.pk,
                    timeout=DEAD_LETTER_TIMEOUT,
                    logs=lambda: worker_log_tail(worker),
                )
                seconds = time.monotonic() - started
        finally:
            worker_stop(worker)

    retries_logged = worker.log_path.read_text().count('"delivery processing retried"')
    figure(SUITE, "retries before the dead letter state", retries_logged)
    figure(SUITE, "seconds until dead-lettered (retry backoff max 1 s)", seconds, "s")

    assert delivery.outcome == DeliveryOutcome.DEAD_LETTER, worker_log_tail(worker)
    assert delivery.error.startswith(
        f"database error after {MAX_RETRIES} retries: canceling statement due to lock timeout"
    ), delivery.error
    assert delivery.attempts == 1
    assert retries_logged == MAX_RETRIES
    assert not Order.objects.exists()


def _batch_record(channel: Channel, numbers: range) -> list[Delivery]:
    """Record deliveries as the webhook view does. Each delivery's task is queued on commit."""
    return [_delivery_record(channel, number) for number in numbers]


def _delivery_record(channel: Channel, number: int) -> Delivery:
    body = order_body(number)
    webhook_id = f"wh-crash-{number}"
    delivery, created = delivery_record(
        channel=channel,
        delivery_id=webhook_id,
        topic="orders/create",
        body=body,
        headers={
            name: value
            for name, value in signed_headers(body, webhook_id=webhook_id).items()
            if name != "X-Shopify-Hmac-Sha256"
        },
    )
    assert created
    return delivery


def _processed(channel: Channel) -> int:
    return Delivery.objects.filter(channel=channel, outcome=DeliveryOutcome.PROCESSED).count()


def _wait_until_processed(worker: Worker, channel: Channel, *, count: int) -> None:
    deadline = time.monotonic() + KILL_POINT_TIMEOUT
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(
                f"The first worker exited with code {worker.process.returncode} before the "
                f"kill.\n{worker_log_tail(worker)}",
                pytrace=False,
            )
        if _processed(channel) >= count:
            return
        time.sleep(POLL_INTERVAL)
    pytest.fail(
        f"The first worker processed {_processed(channel)} of the {count} deliveries it "
        f"should process before the kill in {KILL_POINT_TIMEOUT} s.\n{worker_log_tail(worker)}",
        pytrace=False,
    )


def _wait_for_lock_waiter(worker: Worker) -> None:
    """Wait until a session of this database waits for a lock: the worker, on the channel."""
    deadline = time.monotonic() + LOCK_WAIT_TIMEOUT
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
        time.sleep(0.02)
    pytest.fail(
        f"The first worker did not wait for the channel's lock within {LOCK_WAIT_TIMEOUT} s."
        f"\n{worker_log_tail(worker)}",
        pytrace=False,
    )


def _deliveries_locked(channel: Channel) -> list[int]:
    """Return the ids of the channel's unprocessed deliveries another session has locked."""
    received = Delivery.objects.filter(channel=channel, outcome=DeliveryOutcome.RECEIVED)
    with transaction.atomic():
        every = set(received.values_list("pk", flat=True))
        unlocked = set(received.select_for_update(skip_locked=True).values_list("pk", flat=True))
    return sorted(every - unlocked)


def _batch_counts(channel: Channel, deliveries: list[Delivery]) -> dict:
    stored = Delivery.objects.filter(pk__in=[delivery.pk for delivery in deliveries])
    with_order = set(Order.objects.filter(channel=channel).values_list("delivery_id", flat=True))
    orders_per_delivery = (
        Order.objects.filter(channel=channel).values("delivery_id").annotate(copies=Count("id"))
    )
    return {
        "outcomes": dict(Counter(stored.values_list("outcome", flat=True))),
        "processed": stored.filter(outcome=DeliveryOutcome.PROCESSED).count(),
        "lost": sum(1 for delivery in deliveries if delivery.pk not in with_order),
        # A run's attempts increment commits with its order, and a killed run's rolls back.
        "processed twice": stored.filter(attempts__gt=1).count(),
        "orders": Order.objects.filter(channel=channel).count(),
        "deliveries with one order": orders_per_delivery.filter(copies=1).count(),
        "order.received events": OrderEvent.objects.filter(
            order__channel=channel, kind="order.received"
        ).count(),
        "reservations": Reservation.objects.filter(order__channel=channel).count(),
        "processed by": dict(Counter(stored.values_list("processed_by", flat=True))),
    }


@contextmanager
def _channel_row_locked(channel: Channel) -> Iterator[None]:
    """Hold the channel row FOR NO KEY UPDATE in another session for the block.

    Processing reads the channel's hold state FOR SHARE, so it waits for this lock until its
    lock_timeout. Recording a delivery only takes FOR KEY SHARE (its foreign key check),
    which this lock allows.
    """
    locked = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT id FROM catalog_channel WHERE id = %s FOR NO KEY UPDATE",
                        [channel.pk],
                    )
                locked.set()
                release.wait(timeout=DEAD_LETTER_TIMEOUT * 2)
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)
        finally:
            locked.set()
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        if errors:
            raise errors[0]
        yield
    finally:
        release.set()
        holder.join(timeout=10)
