"""Webhooks during a broker outage: acknowledged and stored, then processed by the sweep.

The test process publishes to a closed local port, so every publish fails for real. The
deliveries stay "received"; once the broker is back, the sweep task on a real worker queues
them again and each is processed once.
"""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.urls import reverse

from omsguard.celery import app as celery_app
from orders.models import Delivery, DeliveryOutcome, Order, OrderEvent
from orders.tasks import sweep_deliveries
from tests.conftest import as_body, order_payload, signed_headers
from tests.integration.test_celery_worker import shopify_channel  # noqa: F401 (fixture)
from tests.workers import queue_for_test, require_services, worker_start, worker_stop

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

# Nothing listens on port 1 (tcpmux) on an ordinary host, so connecting is refused at once.
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"
DELIVERIES = 20
# A failed publish may add at most this many seconds to a webhook response.
MAX_RESPONSE_SECONDS = 2
PROCESSING_TIMEOUT = 30
POLL_INTERVAL = 0.2


def _broker_pools_reset() -> None:
    """Forget the app's pooled broker connections, so the next publish reads broker_url again.

    Celery 5.7 has no public call for this, so do what its after-fork handler does. The pools
    are not closed: kombu keeps producer pools in a global registry keyed by broker URL, and a
    closed one would be handed back to every later test ("Acquire on closed pool").
    """
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextmanager
def _broker_unreachable() -> Iterator[None]:
    real_broker = celery_app.conf.broker_url
    celery_app.conf.broker_url = UNREACHABLE_BROKER
    _broker_pools_reset()
    try:
        yield
    finally:
        celery_app.conf.broker_url = real_broker
        _broker_pools_reset()


def _post(client, order_number: int):
    body = as_body(order_payload(order_id=5_000_000 + order_number, name=f"#{order_number}"))
    started = time.monotonic()
    response = client.post(
        reverse("webhooks:shopify", kwargs={"channel_code": "shop"}),
        data=body,
        content_type="application/json",
        headers=signed_headers(body, webhook_id=f"wh-outage-{order_number}"),
    )
    return response, time.monotonic() - started


def _wait_until_none_received(worker) -> None:
    deadline = time.monotonic() + PROCESSING_TIMEOUT
    while time.monotonic() < deadline:
        if not Delivery.objects.filter(outcome=DeliveryOutcome.RECEIVED).exists():
            return
        time.sleep(POLL_INTERVAL)
    left = Delivery.objects.filter(outcome=DeliveryOutcome.RECEIVED).count()
    pytest.fail(
        f"{left} deliveries still 'received' {PROCESSING_TIMEOUT} s after the sweep.\n"
        f"{worker.log()}",
        pytrace=False,
    )


def test_outage_deliveries_processed_after_sweep(shopify_channel, client, tmp_path, caplog):  # noqa: F811
    require_services()
    caplog.set_level(logging.ERROR, logger="orders.services")

    with queue_for_test() as queue:
        with _broker_unreachable():
            posted = [_post(client, number) for number in range(1, DELIVERIES + 1)]

        for response, seconds in posted:
            assert response.status_code == 200, response.content
            assert response.json()["status"] == "accepted"
            assert seconds < MAX_RESPONSE_SECONDS
        failed_publishes = [
            record
            for record in caplog.records
            if record.getMessage() == "could not queue delivery processing"
        ]
        assert len(failed_publishes) == DELIVERIES
        assert Delivery.objects.filter(outcome=DeliveryOutcome.RECEIVED).count() == DELIVERIES
        assert Order.objects.count() == 0

        log_path = tmp_path / "worker.log"
        worker = worker_start(
            queue=queue, log_path=log_path, environment={"OMSGUARD_SWEEP_AFTER_SECONDS": "0"}
        )
        try:
            sweep_deliveries.delay()
            _wait_until_none_received(worker)
        finally:
            worker_stop(worker)

    deliveries = list(Delivery.objects.order_by("pk"))
    assert len(deliveries) == DELIVERIES
    assert [delivery.outcome for delivery in deliveries] == [DeliveryOutcome.PROCESSED] * DELIVERIES
    assert [delivery.attempts for delivery in deliveries] == [1] * DELIVERIES
    assert {delivery.processed_by for delivery in deliveries} == {worker.nodename}
    assert Order.objects.count() == DELIVERIES
    assert sorted(Order.objects.values_list("delivery_id", flat=True)) == [
        delivery.pk for delivery in deliveries
    ]
    assert OrderEvent.objects.filter(kind="order.received").count() == DELIVERIES
