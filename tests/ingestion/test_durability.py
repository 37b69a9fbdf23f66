from datetime import timedelta
from unittest import mock

import pytest
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from guardrails.models import AuditEntry
from orders.models import Delivery, DeliveryOutcome, Order, OrderStatus
from orders.services import DeliveryNotReplayable, deliveries_sweep, delivery_replay
from orders.tasks import MAX_RETRIES, process_delivery
from tests.conftest import as_body, order_payload

pytestmark = pytest.mark.django_db


def _break_hygiene(monkeypatch):
    def broken_check(*, order):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr("orders.hygiene.hygiene_checks", lambda: [broken_check])


def _received(channel, delivery_id="wh-1", age_seconds=0) -> Delivery:
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id=delivery_id,
        topic="orders/create",
        body=as_body(order_payload()),
        headers={},
        signature_valid=True,
    )
    received_at = timezone.now() - timedelta(seconds=age_seconds)
    Delivery.objects.filter(pk=delivery.pk).update(received_at=received_at)
    return delivery


def test_replay_processes_dead_letter(channel, catalog, post_webhook, monkeypatch, admin_user):
    with monkeypatch.context() as patch:
        _break_hygiene(patch)
        post_webhook(as_body(order_payload()))
    delivery = Delivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.DEAD_LETTER

    delivery_replay(delivery_id=delivery.pk, actor=admin_user, reason="bug fixed")
    process_delivery.delay(delivery.pk)

    delivery.refresh_from_db()
    assert delivery.outcome == DeliveryOutcome.PROCESSED
    assert delivery.attempts == 2
    assert Order.objects.get().status == OrderStatus.READY
    entry = AuditEntry.objects.get(action="delivery.replayed")
    assert entry.before == {
        "outcome": "dead_letter",
        "error": "unexpected ZeroDivisionError: simulated bug",
    }


def test_replay_rejects_processed_delivery(channel, catalog, post_webhook, admin_user):
    post_webhook(as_body(order_payload()))

    with pytest.raises(DeliveryNotReplayable):
        delivery_replay(delivery_id=Delivery.objects.get().pk, actor=admin_user, reason="x")


def test_admin_replay_button(
    channel, catalog, admin_client, monkeypatch, django_capture_on_commit_callbacks
):
    delivery = _received(channel)
    Delivery.objects.filter(pk=delivery.pk).update(
        outcome=DeliveryOutcome.DEAD_LETTER, error="unexpected KeyError: 'x'"
    )
    page = admin_client.get(reverse("admin:orders_delivery_change", args=[delivery.pk]))
    assert b">Replay</button>" in page.content

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:orders_delivery_replay", args=[delivery.pk]))

    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.outcome == DeliveryOutcome.PROCESSED
    assert AuditEntry.objects.filter(action="delivery.replayed").count() == 1


def test_admin_replay_action(channel, catalog, admin_client, django_capture_on_commit_callbacks):
    dead = _received(channel, "wh-dead")
    Delivery.objects.filter(pk=dead.pk).update(outcome=DeliveryOutcome.DEAD_LETTER)
    fresh = _received(channel, "wh-fresh")

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse("admin:orders_delivery_changelist"),
            {"action": "replay_deliveries", "_selected_action": [dead.pk, fresh.pk]},
        )

    assert Delivery.objects.get(pk=dead.pk).outcome == DeliveryOutcome.PROCESSED
    assert Delivery.objects.get(pk=fresh.pk).outcome == DeliveryOutcome.RECEIVED


def test_sweep_queues_old_received_deliveries(channel, catalog):
    old = _received(channel, "wh-old", age_seconds=600)
    recent = _received(channel, "wh-recent", age_seconds=5)

    with mock.patch("orders.tasks.process_delivery.delay") as delay:
        queued = deliveries_sweep(older_than_seconds=120)

    assert queued == [old.pk]
    delay.assert_called_once_with(old.pk)
    assert recent.pk not in queued


def test_sweep_task_processes_them(channel, catalog, settings):
    settings.OMSGUARD_SWEEP_AFTER_SECONDS = 60
    delivery = _received(channel, age_seconds=600)

    from orders.tasks import sweep_deliveries

    assert sweep_deliveries() == 1
    delivery.refresh_from_db()
    assert delivery.outcome == DeliveryOutcome.PROCESSED


def test_sweep_is_scheduled_every_minute():
    task = PeriodicTask.objects.get(task="orders.tasks.sweep_deliveries")

    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "minutes")


def test_database_errors_retry_then_dead_letter(channel, catalog):
    delivery = _received(channel)
    calls = []

    def flaky(*, delivery_id, worker):
        calls.append(delivery_id)
        raise OperationalError("server closed the connection")

    with mock.patch("orders.tasks.delivery_process", side_effect=flaky):
        result = process_delivery.apply(args=[delivery.pk])

    assert result.get() == DeliveryOutcome.DEAD_LETTER
    assert len(calls) == MAX_RETRIES + 1
    delivery.refresh_from_db()
    assert delivery.outcome == DeliveryOutcome.DEAD_LETTER
    assert delivery.error == (
        f"database error after {MAX_RETRIES} retries: server closed the connection"
    )
