"""Celery routing: every OMS Guard task goes to one of the four queues of its namespace.

A task routed to a queue that no worker pool consumes waits there forever without an error.
These tests check the routes of every registered task and of the periodic jobs, and what a
worker started with and without -Q consumes. One test runs a real worker on one queue and
checks that it leaves the other queues' tasks alone.
"""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.apps import apps as django_apps
from django.conf import settings
from django.urls import reverse
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind, Sku
from guardrails.tasks import breakers_sweep
from omsguard.celery import app as celery_app
from omsguard.queues import (
    DECISIONS,
    INGEST,
    MONITORING,
    REVIEWS,
    kind_for_task,
    queue_name,
    queue_names,
)
from orders.models import DeliveryOutcome
from tests.conftest import SECRET, as_body, order_payload, signed_headers
from tests.workers import (
    REPO_ROOT,
    delivery_wait_processed,
    queue_for_test,
    require_services,
    worker_start,
    worker_stop,
)

# The kind of each task that exists today. A new task needs a row here, which makes its author
# choose the pool it runs in on purpose.
EXPECTED_KINDS = {
    "catalog.tasks.run_import_job": INGEST,
    "orders.tasks.process_delivery": INGEST,
    "orders.tasks.sweep_deliveries": INGEST,
    "inventory.tasks.retry_out_of_stock": INGEST,
    "guardrails.recommenders.tasks.substitution_for_out_of_stock": DECISIONS,
    "guardrails.tasks.autonomy_gates_recompute": DECISIONS,
    "guardrails.tasks.breakers_check_after_decision": DECISIONS,
    "guardrails.tasks.breakers_sweep": DECISIONS,
    "guardrails.tasks.canaries_evaluate": DECISIONS,
    "guardrails.tasks.sampling_rate_recompute_for_action": DECISIONS,
    "guardrails.tasks.sampling_rates_recompute": DECISIONS,
    "reviews.confirmation_tasks.address_confirmation_send_task": REVIEWS,
    "reviews.confirmation_tasks.address_confirmations_send_due": REVIEWS,
    "reviews.tasks.review_items_sla_sweep": REVIEWS,
    "monitoring.notification_tasks.alert_notification_send_task": MONITORING,
    "monitoring.notification_tasks.alert_notifications_send_pending_task": MONITORING,
    "monitoring.tasks.alert_rules_evaluate": MONITORING,
    "monitoring.tasks.kpi_rollups_refresh_days": MONITORING,
    "monitoring.tasks.kpi_rollups_refresh_recent": MONITORING,
}

PROCESS_DELIVERY_TASK = "orders.tasks.process_delivery"
WAITING_TASK = "guardrails.tasks.breakers_sweep"


def _project_app_labels() -> set[str]:
    """Labels of the Django apps that live in this repository (not installed packages)."""
    return {
        config.label
        for config in django_apps.get_app_configs()
        if Path(config.path).resolve().is_relative_to(REPO_ROOT)
    }


def _project_tasks() -> list[str]:
    celery_app.loader.import_default_modules()
    labels = _project_app_labels()
    return sorted(name for name in celery_app.tasks if name.split(".", 1)[0] in labels)


def _routed_queue(task_name: str, options: dict | None = None) -> str:
    """The queue Celery's router picks for a task sent with `options`, as apply_async does."""
    route = celery_app.amqp.router.route(dict(options or {}), task_name, (), {})
    return route["queue"].name


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace of the test's own, set as this process's task_default_queue."""
    previous = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = f"omsguard-test-{uuid.uuid4().hex[:12]}"
    try:
        yield celery_app.conf.task_default_queue
    finally:
        celery_app.conf.task_default_queue = previous


def test_project_tasks_route_to_namespace():
    consumed = set(queue_names(celery_app.conf.task_default_queue))
    tasks = _project_tasks()

    assert tasks, "no OMS Guard task is registered; the task modules were not imported"
    for task_name in tasks:
        assert _routed_queue(task_name) in consumed, (
            f"{task_name} goes to {_routed_queue(task_name)!r}, which no worker pool consumes; "
            "add its app to omsguard.queues.KIND_BY_APP"
        )


def test_project_tasks_have_expected_kinds():
    namespace = celery_app.conf.task_default_queue

    assert set(_project_tasks()) == set(EXPECTED_KINDS)
    for task_name, kind in EXPECTED_KINDS.items():
        assert kind_for_task(task_name) == kind, task_name
        assert _routed_queue(task_name) == queue_name(namespace, kind), task_name


def test_celery_tasks_fall_through_to_default_queue():
    # Celery's own tasks are not used; they fall to the default queue instead of a pool's.
    assert kind_for_task("celery.backend_cleanup") is None
    assert _routed_queue("celery.backend_cleanup") == celery_app.conf.task_default_queue


def test_default_queue_change_moves_routes(namespace):
    assert _routed_queue(PROCESS_DELIVERY_TASK) == f"{namespace}.ingest"
    assert _routed_queue("guardrails.tasks.breakers_sweep") == f"{namespace}.decisions"
    assert _routed_queue("reviews.tasks.review_items_sla_sweep") == f"{namespace}.reviews"
    assert _routed_queue("monitoring.tasks.alert_rules_evaluate") == f"{namespace}.monitoring"


def test_explicit_queue_overrides_route():
    # apply_async(queue=...) wins over the router, which is why no periodic task row may pin one.
    assert _routed_queue(PROCESS_DELIVERY_TASK, {"queue": "elsewhere"}) == "elsewhere"


def _worker_queues(namespace: str, queues: str | None) -> list[str]:
    """The queues a worker of `namespace` consumes, from a WorkController built in a subprocess.

    Building the controller applies -Q (`queues`) the way `celery worker` does, without
    connecting to the broker.
    """
    script = (
        "import json, django\n"
        "django.setup()\n"
        "from omsguard.celery import app\n"
        f"app.WorkController(app=app, pool_cls='solo', queues={queues!r})\n"
        "selected = app.amqp.queues.consume_from or app.amqp.queues\n"
        "print(json.dumps(sorted(selected)))\n"
    )
    environment = os.environ | {
        "DJANGO_SETTINGS_MODULE": "omsguard.settings",
        "OMSGUARD_CELERY_QUEUE": namespace,
        "DEBUG": "1",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_worker_without_q_consumes_four_queues():
    assert _worker_queues("acme", None) == sorted(queue_names("acme"))


def test_worker_with_q_consumes_one_queue():
    assert _worker_queues("acme", "acme.ingest") == ["acme.ingest"]


@pytest.mark.django_db
def test_periodic_tasks_route_to_namespace_queues():
    namespace = celery_app.conf.task_default_queue
    rows = list(PeriodicTask.objects.exclude(task__startswith="celery."))

    assert rows, "the periodic task rows of the data migrations are missing"
    for row in rows:
        entry = ModelEntry(row, app=celery_app)
        kind = kind_for_task(row.task)
        assert kind is not None, f"periodic task {row.name} runs {row.task}, of no OMS Guard app"
        assert _routed_queue(row.task, entry.options) == queue_name(namespace, kind), row.name


@pytest.mark.django_db
def test_periodic_tasks_pin_no_queue():
    pinned = PeriodicTask.objects.exclude(queue__isnull=True).exclude(queue="")

    assert list(pinned.values_list("name", "queue")) == []


# --- A pool per queue, with a real worker --------------------------------------------------------


def _waiting_task_names(queue: str) -> list[str]:
    """Names of the tasks waiting in a Redis queue (kombu keeps each message as a JSON string)."""
    with redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5) as client:
        messages = client.lrange(queue, 0, -1)
    return [json.loads(message)["headers"]["task"] for message in messages]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_ingest_pool_leaves_other_queues(request, carriers, client, tmp_path):
    require_services()
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
    failed_before = request.session.testsfailed

    with queue_for_test() as namespace:
        # Only <namespace>.ingest, as an ingest pool of a deployment consumes.
        worker = worker_start(
            queue=namespace, log_path=tmp_path / "worker.log", environment={}, kinds=[INGEST]
        )
        try:
            breakers_sweep.delay()
            body = as_body(order_payload())
            response = client.post(
                reverse("webhooks:shopify", kwargs={"channel_code": "shop"}),
                data=body,
                content_type="application/json",
                headers=signed_headers(body, webhook_id="wh-ingest-pool"),
            )
            assert response.status_code == 200, response.content

            delivery = delivery_wait_processed(response.json()["delivery"], worker)

            assert delivery.outcome == DeliveryOutcome.PROCESSED, delivery.error
            assert delivery.processed_by == worker.nodename
            assert WAITING_TASK in _waiting_task_names(queue_name(namespace, DECISIONS))
            assert PROCESS_DELIVERY_TASK not in _waiting_task_names(queue_name(namespace, INGEST))
        finally:
            worker_stop(worker)
            if request.session.testsfailed > failed_before:
                print(worker.log())
