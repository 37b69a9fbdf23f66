"""Webhook deliveries processed by a real Celery worker process through Redis and PostgreSQL.

Each test starts its own worker on its own queue, so a worker already running on the machine
never takes these tasks. The worker is another process, so the tests commit their data
(transactional tests) and the worker connects to pytest-django's test database.

Without Redis or PostgreSQL the tests skip, unless OMSGUARD_REQUIRE_SERVICES=1, as in CI, where
they fail instead.
"""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from celery.signals import after_task_publish
from celery.utils.nodenames import host_format
from django.conf import settings
from django.db import connection
from django.urls import reverse

from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind, Sku
from omsguard.celery import app as celery_app
from orders.models import Delivery, DeliveryOutcome, Order, OrderStatus
from tests.conftest import SECRET, as_body, order_payload, signed_headers

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESS_DELIVERY_TASK = "orders.tasks.process_delivery"
# Timeouts in seconds: generous bounds for a loaded CI runner, not tuned values.
WORKER_START_TIMEOUT = 30
WORKER_STOP_TIMEOUT = 10
PROCESSING_TIMEOUT = 30
POLL_INTERVAL = 0.2


@dataclass
class Worker:
    """A `celery worker` subprocess consuming one queue, with its output in a log file."""

    nodename: str
    queue: str
    process: subprocess.Popen
    log_path: Path
    # (task name, routing key) of every task the test process published during the test.
    published: list[tuple[str, str]] = field(default_factory=list)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- log of worker {self.nodename} (queue {self.queue}) ---\n{text}"


def _services_unavailable(reason: str) -> None:
    """Skip the test, or fail it when OMSGUARD_REQUIRE_SERVICES=1 makes the services mandatory."""
    if os.environ.get("OMSGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail(
            f"{reason} OMSGUARD_REQUIRE_SERVICES=1 makes the worker tests mandatory: CI must "
            "run with PostgreSQL (DATABASE_URL=postgres://...) and Redis (REDIS_URL=redis://...).",
            pytrace=False,
        )
    pytest.skip(reason)


def _test_database_url() -> str:
    """Build a DATABASE_URL for the test database that pytest-django created for this session."""
    database = connection.settings_dict
    credentials = quote(database["USER"] or "", safe="")
    if database["PASSWORD"]:
        credentials += ":" + quote(database["PASSWORD"], safe="")
    # A socket directory as HOST is percent-encoded, the form dj-database-url accepts for it.
    host = quote(str(database["HOST"] or ""), safe="")
    port = f":{database['PORT']}" if database["PORT"] else ""
    name = quote(str(database["NAME"]), safe="")
    return f"postgres://{credentials}@{host}{port}/{name}"


def _worker_stop(process: subprocess.Popen) -> None:
    """Stop the worker with SIGTERM (warm shutdown), and with SIGKILL if it does not exit."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=WORKER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _queue_delete(name: str) -> None:
    """Delete the test's queue from Redis, with kombu's binding keys for it."""
    with celery_app.connection_for_write() as broker:
        queue = celery_app.amqp.queues[name](broker.default_channel)
        # kombu's queue_delete removes only the bindings recorded on this channel (kombu 5.7),
        # so declare the queue on it first.
        queue.declare()
        queue.delete()


def _worker_wait_ready(worker: Worker) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(
                f"Celery worker exited with code {worker.process.returncode} before it was "
                f"ready.\n{worker.log()}",
                pytrace=False,
            )
        if celery_app.control.ping(destination=[worker.nodename], timeout=1):
            return
    pytest.fail(
        f"Celery worker {worker.nodename} did not answer a ping within {WORKER_START_TIMEOUT} s."
        f"\n{worker.log()}",
        pytrace=False,
    )


@pytest.fixture
def worker(request, transactional_db, tmp_path) -> Iterator[Worker]:
    """Start a Celery worker on a queue of its own and make this process publish to it."""
    if not settings.REDIS_URL:
        _services_unavailable("REDIS_URL is not set, so there is no broker for a worker.")
    if connection.vendor != "postgresql":
        _services_unavailable(
            f"The database is {connection.vendor}, not PostgreSQL; a worker process cannot "
            "reach the test database."
        )

    suffix = uuid.uuid4().hex[:12]
    queue = f"omsguard-test-{suffix}"
    nodename = host_format(f"test-worker-{suffix}@%h")
    environment = os.environ.copy()
    environment.update(
        {
            "DJANGO_SETTINGS_MODULE": "omsguard.settings",
            "DATABASE_URL": _test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "OMSGUARD_CELERY_QUEUE": queue,
            # The settings reject an empty SECRET_KEY unless DEBUG=1, so pass this process's key.
            "SECRET_KEY": settings.SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
        }
    )
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "omsguard",
        "worker",
        "--pool=solo",
        "--loglevel=INFO",
        "-Q",
        queue,
        "-n",
        nodename,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]

    # The autouse fixture in tests/conftest.py has made tasks eager for this test. Celery's
    # router reads task_default_queue at each send (celery 5.7, app/routes.py), so setting it
    # here routes this process's tasks to the new queue.
    previous_eager = celery_app.conf.task_always_eager
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue

    log_path = tmp_path / "worker.log"
    failed_before = request.session.testsfailed
    published: list[tuple[str, str]] = []

    def record_publish(sender=None, routing_key=None, **kwargs):
        published.append((sender, routing_key))

    after_task_publish.connect(record_publish, weak=False)
    process = None
    try:
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT
            )
        started = Worker(
            nodename=nodename,
            queue=queue,
            process=process,
            log_path=log_path,
            published=published,
        )
        _worker_wait_ready(started)
        yield started
    finally:
        after_task_publish.disconnect(record_publish)
        if process is not None:
            _worker_stop(process)
        celery_app.conf.task_always_eager = previous_eager
        celery_app.conf.task_default_queue = previous_queue
        _queue_delete(queue)
        # pytest shows teardown output only in the report of a failed test.
        if process is not None and request.session.testsfailed > failed_before:
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


def _wait_until_processed(delivery_pk: int, worker: Worker) -> Delivery:
    """Poll the database until the worker has given the delivery an outcome."""
    deadline = time.monotonic() + PROCESSING_TIMEOUT
    while time.monotonic() < deadline:
        delivery = Delivery.objects.get(pk=delivery_pk)
        if delivery.outcome != DeliveryOutcome.RECEIVED:
            return delivery
        time.sleep(POLL_INTERVAL)
    pytest.fail(
        f"Delivery {delivery_pk} still has outcome 'received' after {PROCESSING_TIMEOUT} s, so "
        f"the worker did not process it.\n{worker.log()}",
        pytrace=False,
    )


def test_webhook_is_processed_by_worker(worker, shopify_channel, client):
    body = as_body(order_payload())

    response = _post_webhook(client, body, webhook_id="wh-worker-1")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "accepted"
    assert worker.published == [(PROCESS_DELIVERY_TASK, worker.queue)]

    delivery = _wait_until_processed(response.json()["delivery"], worker)
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
    assert worker.published == [(PROCESS_DELIVERY_TASK, worker.queue)]

    delivery = _wait_until_processed(first.json()["delivery"], worker)
    assert delivery.outcome == DeliveryOutcome.PROCESSED, delivery.error
    assert delivery.processed_by == worker.nodename
    assert Delivery.objects.count() == 1
    assert Order.objects.count() == 1
    assert Order.objects.get().status == OrderStatus.READY
