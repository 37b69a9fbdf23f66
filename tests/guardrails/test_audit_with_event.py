"""audit_record_with_event writes the rows of audit_record and order_event_add, in one statement
on PostgreSQL."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from guardrails.models import AuditEntry
from guardrails.services import audit_record, audit_record_with_event
from orders.models import OrderEvent
from orders.services import order_event_add, order_events_batched
from tests.guardrails.conftest_decisions import (  # noqa: F401
    locations_fixture,
    order_fixture,
)

AUDIT_COLUMNS = [
    "actor_kind",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "reason",
    "before",
    "after",
]
EVENT_COLUMNS = ["order_id", "kind", "message", "actor_kind", "actor_id", "data"]


def _arguments(order, actor, label: str) -> tuple[dict, dict]:
    audit = {
        "action": f"test.{label}",
        "target_type": "decision",
        "target_id": 41,
        "actor": actor,
        "system_label": "ai:gpt-sub/2024-06" if actor is None else "",
        "reason": "Verdict applied. Nothing fired.",
        "before": {"carrier_service": None},
        "after": {"carrier_service": "ups/ground", "result": {"line": [1, 2]}},
    }
    event = {
        "order": order,
        "kind": f"test.{label}",
        "message": "Select or swap carrier applied (decision #41).",
        "actor": actor,
        "data": {"decision": 41, "note": "naïve ✓"},
    }
    return audit, event


def _rows(label: str) -> tuple[dict, dict]:
    audit = AuditEntry.objects.filter(action=f"test.{label}").values(*AUDIT_COLUMNS).get()
    event = OrderEvent.objects.filter(kind=f"test.{label}").values(*EVENT_COLUMNS).get()
    return audit, event


@pytest.mark.parametrize("actor_kind", ["system", "user"])
def test_audit_with_event_same_rows(order, manager, actor_kind):
    actor = manager if actor_kind == "user" else None
    audit, event = _arguments(order, actor, "orm")
    audit_record(**audit)
    order_event_add(**event)
    audit, event = _arguments(order, actor, "paired")
    audit_record_with_event(audit=audit, event=event)

    orm_audit, orm_event = _rows("orm")
    paired_audit, paired_event = _rows("paired")

    assert paired_audit == orm_audit | {"action": "test.paired"}
    assert paired_event == orm_event | {"kind": "test.paired"}


def test_audit_with_event_sets_created_at(order):
    started = timezone.now()
    audit, event = _arguments(order, None, "time")
    audit_record_with_event(audit=audit, event=event)

    entry = AuditEntry.objects.get(action="test.time")
    event = OrderEvent.objects.get(kind="test.time")

    assert started <= entry.created_at <= event.created_at
    assert event.created_at - started < timedelta(seconds=5)


def test_audit_with_event_one_statement(order):
    audit, event = _arguments(order, None, "count")
    with CaptureQueriesContext(connection) as queries:
        audit_record_with_event(audit=audit, event=event)

    expected = 1 if connection.vendor == "postgresql" else 2
    assert len(queries.captured_queries) == expected
    assert AuditEntry.objects.filter(action="test.count").count() == 1
    assert OrderEvent.objects.filter(kind="test.count").count() == 1


def test_audit_with_event_rolled_back_savepoint(order):
    audit, event = _arguments(order, None, "undone")
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record_with_event(audit=audit, event=event)
        raise RuntimeError("apply failed")

    assert not AuditEntry.objects.filter(action="test.undone").exists()
    assert not OrderEvent.objects.filter(kind="test.undone").exists()


def test_audit_with_event_keeps_event_batch(order):
    """Inside order_events_batched() the event waits for the batch, after the earlier events."""
    audit, event = _arguments(order, None, "batched")
    with order_events_batched():
        order_event_add(order=order, kind="test.first", message="First.")
        audit_record_with_event(audit=audit, event=event)
        assert not OrderEvent.objects.filter(kind="test.batched").exists()

    first = OrderEvent.objects.get(kind="test.first")
    batched = OrderEvent.objects.get(kind="test.batched")
    assert first.pk < batched.pk
    assert AuditEntry.objects.filter(action="test.batched").count() == 1


def test_audit_with_event_needs_actor_or_label(order):
    audit, event = _arguments(order, None, "nobody")
    audit["system_label"] = ""
    with pytest.raises(ValueError):
        audit_record_with_event(audit=audit, event=event)

    assert not OrderEvent.objects.filter(kind="test.nobody").exists()
