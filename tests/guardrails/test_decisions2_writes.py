"""Decision writes folded into fewer statements: the carrier change, applied_at, review_item."""

from datetime import timedelta

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from guardrails.appliers import carrier_service_by_code
from guardrails.models import AuditEntry, Decision, Verdict
from guardrails.services import audit_record_with_event, decision_propose
from orders.models import Order, OrderEvent
from orders.services import order_carrier_service_change, order_events_batched, order_version_bump
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
)

POSTGRESQL = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="counts PostgreSQL's statements"
)


def _propose(order: Order, action: str, before: dict, after: dict, confidence: str) -> Decision:
    return decision_propose(
        order_id=order.pk,
        action_code=action,
        before=before,
        after=after,
        confidence=confidence,
        model_name="gpt-route",
        model_version="7",
    )


def _stored(decision: Decision) -> Decision:
    return Decision.objects.get(pk=decision.pk)


def test_carrier_change_writes_service_version_and_time(order, manager):
    version, updated_at = order.version, order.updated_at
    service = carrier_service_by_code("fedex/ground")

    order_carrier_service_change(order=order, service=service, actor=manager, reason="cheaper")

    stored = Order.objects.get(pk=order.pk)
    assert stored.carrier_service_id == service.pk
    assert stored.version == order.version == version + 1
    assert stored.updated_at == order.updated_at > updated_at
    entry = AuditEntry.objects.get(action="order.carrier_service_changed", target_id=order.pk)
    assert (entry.actor, entry.before, entry.after, entry.reason) == (
        manager,
        {"carrier_service": "UPS Ground"},
        {"carrier_service": "FedEx Ground"},
        "cheaper",
    )
    event = OrderEvent.objects.get(order=order, kind="order.carrier_set")
    assert event.message == "Carrier service changed from UPS Ground to FedEx Ground: cheaper."
    assert (event.actor, event.data) == (manager, {"carrier_service": service.pk})


@POSTGRESQL
def test_carrier_change_takes_two_statements(order):
    service = carrier_service_by_code("fedex/ground")

    with CaptureQueriesContext(connection) as queries:
        order_carrier_service_change(
            order=order, service=service, actor=None, system_label="ai:x/1", reason="cheaper"
        )

    # One UPDATE sets the service, the time and the version, and one INSERT writes the audit
    # entry with its event.
    assert len(queries) == 2, [query["sql"] for query in queries]


def test_version_bump_writes_only_the_fields_named(order):
    order.carrier_service = None
    order.customer_email = "not-saved@example.com"

    order_version_bump(order, reason="test", update_fields=("carrier_service",))

    stored = Order.objects.get(pk=order.pk)
    assert stored.carrier_service_id is None
    assert stored.customer_email != "not-saved@example.com"
    assert stored.version == order.version


def test_version_bump_of_missing_order_raises(order):
    missing = Order(pk=order.pk + 10_000, version=1)

    with pytest.raises(Order.DoesNotExist):
        order_version_bump(missing, reason="test", update_fields=("carrier_service",))


def test_applied_decision_stores_applied_at(order):
    decision = _propose(order, "substitute_sku", *SUBSTITUTION, confidence="0.95")

    assert decision.verdict == Verdict.APPLIED
    stored = _stored(decision)
    assert stored.applied_at == decision.applied_at is not None
    assert stored.apply_error == ""
    assert AuditEntry.objects.filter(action="decision.applied", target_id=decision.pk).exists()
    assert OrderEvent.objects.filter(order=order, kind="ai.applied").exists()


def test_queued_decision_stores_review_item(order):
    decision = _propose(order, "substitute_sku", *SUBSTITUTION, confidence="0.92")

    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW
    assert _stored(decision).review_item_id == decision.review_item.pk
    event = OrderEvent.objects.get(order=order, kind="review.opened")
    assert event.data == {"review_item": decision.review_item.pk, "decision": decision.pk}


def _audit_and_event(order, decision: Decision) -> dict:
    return {
        "audit": {
            "action": "test.saving",
            "target_type": "decision",
            "target_id": decision.pk,
            "system_label": "ai:x/1",
        },
        "event": {"order": order, "kind": "test.saving", "message": "Saved."},
    }


@pytest.mark.parametrize("batched", [False, True], ids=["one_statement", "batched"])
def test_saving_is_written_with_audit_and_event(order, batched):
    decision = _propose(order, "estimate_ship_date", {}, {"ship_date": "2026-12-07"}, "0.9")
    decision.applied_at = timezone.now() - timedelta(days=1)

    if batched:
        with order_events_batched():
            audit_record_with_event(
                saving=(decision, ("applied_at",)), **_audit_and_event(order, decision)
            )
    else:
        audit_record_with_event(
            saving=(decision, ("applied_at",)), **_audit_and_event(order, decision)
        )

    assert _stored(decision).applied_at == decision.applied_at
    assert AuditEntry.objects.filter(action="test.saving").count() == 1
    assert OrderEvent.objects.filter(order=order, kind="test.saving").count() == 1


def test_saving_a_missing_row_raises(order):
    decision = _propose(order, "estimate_ship_date", {}, {"ship_date": "2026-12-07"}, "0.9")
    decision.pk += 10_000

    with pytest.raises(DatabaseError):
        audit_record_with_event(
            saving=(decision, ("applied_at",)), **_audit_and_event(order, decision)
        )
