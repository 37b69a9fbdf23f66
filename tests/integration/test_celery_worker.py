"""Webhook deliveries processed by a real Celery worker process through Redis and PostgreSQL.

Each test starts its own worker on its own queue, so a worker already running on the machine
never takes these tasks. The worker is another process, so the tests commit their data
(transactional tests) and the worker connects to pytest-django's test database.

Without Redis or PostgreSQL the tests skip, unless OMSGUARD_REQUIRE_SERVICES=1, as in CI, where
they fail instead.
"""

from collections.abc import Iterator

import pytest
from celery.signals import after_task_publish
from django.urls import reverse

from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind, Sku
from omsguard.queues import INGEST, queue_name
from orders.models import Delivery, DeliveryOutcome, Order, OrderStatus
from tests.conftest import SECRET, as_body, order_payload, signed_headers
from tests.workers import (
    Worker,
    delivery_wait_processed,
    queue_for_test,
    require_services,
    worker_start,
    worker_stop,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PROCESS_DELIVERY_TASK = "orders.tasks.process_delivery"


@pytest.fixture
def worker(request, transactional_db, tmp_path) -> Iterator[Worker]:
    """Start a Celery worker on a queue of its own and make this process publish to it."""
    require_services()

    failed_before = request.session.testsfailed
    published: list[tuple[str, str]] = []

    def record_publish(sender=None, routing_key=None, **kwargs):
        published.append((sender, routing_key))

    after_task_publish.connect(record_publish, weak=False)
    started = None
    try:
        with queue_for_test() as queue:
            started = worker_start(queue=queue, log_path=tmp_path / "worker.log", environment={})
            started.published = published
            try:
                yield started
            finally:
                worker_stop(started)
    finally:
        after_task_publish.disconnect(record_publish)
        # pytest shows teardown output only in the report of a failed test.
        if started is not None and request.session.testsfailed > failed_before:
            print(started.log())


@pytest.fixture
def shopify_channel(transactional_db, carriers) -> Channel:
    """The "shop" channel, with the SKU and carrier code of order_payload() mapped."""
    channel = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop", webhook_secret=SECRET)
    sku = Sku.objects.create(
        code="TEE-CLASSIC-BLK-M",
        title="Classic Cotton T-Shirt - Black / M",
        price="19.99",
        currency="USD",
    )
    ChannelSkuMapping.objects.create(
        channel=channel, id_kind=ExternalIdKind.SKU, external_id=sku.code, sku=sku
    )
    return channel


def _post_webhook(client, body: bytes, webhook_id: str):
    """POST a signed orders/create webhook. The delivery commits, and its task is published."""
    url = reverse("webhooks:shopify", kwargs={"channel_code": "shop"})
    return client.post(
        url,
        data=body,
        content_type="application/json",
        headers=signed_headers(body, webhook_id=webhook_id),
    )


def test_webhook_is_processed_by_worker(worker, shopify_channel, client):
    body = as_body(order_payload())

    response = _post_webhook(client, body, webhook_id="wh-worker-1")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"
    assert worker.published == [(PROCESS_DELIVERY_TASK, queue_name(worker.queue, INGEST))]

    delivery = delivery_wait_processed(response.json()["delivery"], worker)
    assert delivery.outcome == DeliveryOutcome.PROCESSED, delivery.error
    assert delivery.processed_by == worker.nodename
    assert delivery.attempts == 1

    order = Order.objects.get()
    assert order.status == OrderStatus.READY
    assert order.delivery_id == delivery.pk


def test_duplicate_delivery_processed_once_by_worker(worker, shopify_channel, client):
    body = as_body(order_payload())

    first = _post_webhook(client, body, webhook_id="wh-worker-dup")
    second = _post_webhook(client, body, webhook_id="wh-worker-dup")

    assert first.status_code == 200, first.content
    assert first.json()["status"] == "accepted"
    assert second.status_code == 200, second.content
    assert second.json() == {"status": "duplicate", "delivery": first.json()["delivery"]}
    # The duplicate is acknowledged without queueing a second task.
    assert worker.published == [(PROCESS_DELIVERY_TASK, queue_name(worker.queue, INGEST))]

    delivery = delivery_wait_processed(first.json()["delivery"], worker)
    assert delivery.outcome == DeliveryOutcome.PROCESSED, delivery.error
    assert delivery.processed_by == worker.nodename
    assert Delivery.objects.count() == 1
    assert Order.objects.count() == 1
    assert Order.objects.get().status == OrderStatus.READY
