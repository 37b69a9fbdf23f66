"""A worker killed with SIGKILL mid-task: Redis hands the task to a fresh worker, once.

The task is acks_late, so it stays in Redis's unacked set while it runs. When the whole worker
dies (pool child and main process), nothing rejects it; only the visibility timeout returns it
to the queue. The workers here run with a 5 s timeout instead of kombu's hour.
"""

import time
from pathlib import Path

import pytest
from django.db import OperationalError, transaction
from django.urls import reverse

from orders.models import Delivery, DeliveryOutcome, Order, OrderEvent, OrderStatus
from tests.conftest import as_body, order_payload, signed_headers
from tests.integration.test_celery_worker import shopify_channel  # noqa: F401 (fixture)
from tests.workers import (
    queue_for_test,
    require_services,
    worker_kill,
    worker_start,
    worker_stop,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

VISIBILITY_TIMEOUT = 5
PROCESSING_DELAY = 3
# Bounds in seconds for a loaded CI runner; the redelivery itself needs about
# VISIBILITY_TIMEOUT plus one restore scan.
START_TIMEOUT = 20
REDELIVERY_TIMEOUT = 30
POLL_INTERVAL = 0.1


def _delivery_locked(delivery_pk: int) -> bool:
    """Whether another session holds the delivery's row lock, as a running task does."""
    try:
        with transaction.atomic():
            Delivery.objects.select_for_update(nowait=True).filter(pk=delivery_pk).exists()
    except OperationalError:
        return True
    return False


def _wait_for_lock(delivery_pk: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _delivery_locked(delivery_pk):
            return
        time.sleep(POLL_INTERVAL)
    pytest.fail(
        f"No worker locked delivery {delivery_pk} within {START_TIMEOUT} s.\n{log.read_text()}",
        pytrace=False,
    )


def _wait_for_outcome(delivery_pk: int, log: Path) -> Delivery:
    deadline = time.monotonic() + REDELIVERY_TIMEOUT
    while time.monotonic() < deadline:
        delivery = Delivery.objects.get(pk=delivery_pk)
        if delivery.outcome != DeliveryOutcome.RECEIVED:
            return delivery
        time.sleep(POLL_INTERVAL)
    pytest.fail(
        f"Delivery {delivery_pk} was not processed within {REDELIVERY_TIMEOUT} s of the "
        f"second worker's start.\n{log.read_text()}",
        pytrace=False,
    )


def test_killed_worker_task_processed_once(shopify_channel, client, tmp_path):  # noqa: F811
    require_services()
    log = tmp_path / "workers.log"
    timeout = {"OMSGUARD_BROKER_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT)}
    body = as_body(order_payload())

    with queue_for_test() as queue:
        first = worker_start(
            queue=queue,
            log_path=log,
            prefork=True,
            environment=timeout | {"OMSGUARD_TEST_PROCESSING_DELAY_SECONDS": str(PROCESSING_DELAY)},
        )
        try:
            response = client.post(
                reverse("webhooks:shopify", kwargs={"channel_code": "shop"}),
                data=body,
                content_type="application/json",
                headers=signed_headers(body, webhook_id="wh-crash"),
            )
            assert response.status_code == 200, response.content
            delivery_pk = response.json()["delivery"]
            _wait_for_lock(delivery_pk, log)
        finally:
            worker_kill(first)

        assert Delivery.objects.get(pk=delivery_pk).outcome == DeliveryOutcome.RECEIVED
        second = worker_start(queue=queue, log_path=log, environment=timeout)
        try:
            started = time.monotonic()
            delivery = _wait_for_outcome(delivery_pk, log)
            redelivered_after = time.monotonic() - started
        finally:
            worker_stop(second)

    assert delivery.outcome == DeliveryOutcome.PROCESSED, delivery.error
    assert delivery.processed_by == second.nodename
    # The killed run's increment was rolled back with its transaction.
    assert delivery.attempts == 1
    assert Order.objects.count() == 1
    assert Order.objects.get().status == OrderStatus.READY
    assert OrderEvent.objects.filter(kind="order.received").count() == 1
    assert redelivered_after < REDELIVERY_TIMEOUT
