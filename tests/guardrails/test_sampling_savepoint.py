"""Audit sampling opens its item in a savepoint, and a draw that opens nothing uses none."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from guardrails import sampling
from guardrails.models import GuardrailSettings, Verdict
from guardrails.services import decision_propose
from orders.models import OrderEvent
from reviews.models import ReviewItem, ReviewKind
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
)
from tests.guardrails.test_decision_queries import order_copy

pytestmark = pytest.mark.django_db


def _propose(order):
    """A substitution under USD 25 at a confidence over 0.92: applied autonomously."""
    return decision_propose(
        order_id=order.pk,
        action_code="substitute_sku",
        before=SUBSTITUTION[0],
        after=SUBSTITUTION[1],
        confidence=Decimal("0.95"),
        model_name="gpt-sub",
        model_version="2024-06",
    )


def _savepoints(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries if query["sql"].startswith("SAVEPOINT")]


def _savepoint_count(order) -> tuple[int, object]:
    """Return the savepoints a decision on `order` opens, and the decision.

    Call it after a first decision of the action, which also creates its sampling state.
    """
    with CaptureQueriesContext(connection) as queries:
        decision = _propose(order)
    return len(_savepoints(queries)), decision


def _sampling_off(monkeypatch) -> None:
    monkeypatch.setattr(sampling, "audit_sample_maybe", lambda decision, *, rng=None: None)


def test_skipped_draw_uses_no_savepoint(order, monkeypatch):
    other = order_copy(order, 1)
    _propose(order_copy(order, 2))
    count, decision = _savepoint_count(order)
    _sampling_off(monkeypatch)
    without_sampling, _ = _savepoint_count(other)

    assert decision.verdict == Verdict.APPLIED
    assert decision.review_item_id is None
    assert count == without_sampling


def test_sampled_draw_opens_item(order, monkeypatch):
    GuardrailSettings.objects.filter(pk=1).update(audit_sample_start_rate=Decimal("1"))

    other = order_copy(order, 1)
    _propose(order_copy(order, 2))
    count, decision = _savepoint_count(order)
    _sampling_off(monkeypatch)
    without_sampling, _ = _savepoint_count(other)

    assert decision.review_item.kind == ReviewKind.AUDIT_SAMPLE
    assert count == without_sampling + 1


def test_failed_sample_keeps_decision(order, monkeypatch):
    """An error after the item's insert rolls back the item only, not the applied decision."""
    from orders import services as order_services

    GuardrailSettings.objects.filter(pk=1).update(audit_sample_start_rate=Decimal("1"))
    real_event_add = order_services.order_event_add

    def event_add_failing_on_review(**kwargs):
        if kwargs["kind"] == "review.opened":
            raise RuntimeError("event store is broken")
        return real_event_add(**kwargs)

    monkeypatch.setattr(order_services, "order_event_add", event_add_failing_on_review)
    with CaptureQueriesContext(connection) as queries:
        decision = _propose(order)

    decision.refresh_from_db()
    assert decision.verdict == Verdict.APPLIED
    assert decision.applied_at is not None
    assert decision.review_item_id is None
    assert not ReviewItem.objects.filter(kind=ReviewKind.AUDIT_SAMPLE).exists()
    assert any(query["sql"].startswith("ROLLBACK TO SAVEPOINT") for query in queries)
    assert OrderEvent.objects.filter(order=order, kind="ai.applied").exists()
