"""Decision writes in fewer statements: the decision's INSERT goes with its first audit entry
and event, a queued decision's hold is one statement, and values skip Django's preparation
only where it would change nothing."""

from datetime import UTC, datetime
from decimal import Decimal
from unittest import mock

import pytest
from django.db import connection, models
from django.test.utils import CaptureQueriesContext

from guardrails.models import AuditEntry, Decision, Verdict
from guardrails.services import (
    _db_values,
    _insert_statement,
    _order_hold_add,
    _update_statement,
    decision_propose,
)
from orders.models import Order, OrderEvent, OrderStatus
from orders.services import order_events_batched, order_update_hold_reasons
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
)
from tests.guardrails.test_decision_queries import order_copy

POSTGRESQL = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="counts PostgreSQL's statements"
)
SHIP_DATE = ("estimate_ship_date", {}, {"ship_date": "2026-12-07"}, "0.9")


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


def _statements_writing(queries: CaptureQueriesContext, table: str) -> list[str]:
    return [query["sql"] for query in queries if f'INSERT INTO "{table}"' in query["sql"]]


@POSTGRESQL
def test_decision_insert_shares_audit_statement(order):
    with CaptureQueriesContext(connection) as queries:
        decision = _propose(order, *SHIP_DATE)

    (statement,) = _statements_writing(queries, "guardrails_decision")
    assert 'INSERT INTO "guardrails_auditentry"' in statement
    assert 'INSERT INTO "orders_orderevent"' in statement
    stored = Decision.objects.get()
    assert stored.pk == decision.pk
    assert stored.verdict == Verdict.RECOMMENDATION_ONLY
    entry = AuditEntry.objects.get(action="decision.proposed")
    assert entry.target_id == str(decision.pk)
    event = OrderEvent.objects.get(order=order, kind="ai.decision")
    assert event.data == {"decision": decision.pk, "verdict": Verdict.RECOMMENDATION_ONLY}
    assert f"decision #{decision.pk})" in event.message


@POSTGRESQL
def test_decision_ids_follow_sequence(order):
    first = _propose(order, *SHIP_DATE)
    second = _propose(order_copy(order, 1), *SHIP_DATE)

    assert second.pk > first.pk
    # An INSERT without an id still gets a fresh one from the same sequence.
    third = Decision.objects.create(
        action=first.action,
        order=order,
        channel=order.channel,
        model_name="m",
        model_version="1",
        before={},
        after={},
        confidence=Decimal("0.5"),
        verdict=Verdict.BLOCKED,
        facts={},
    )
    assert third.pk > second.pk


@POSTGRESQL
def test_order_with_lines_takes_one_id(order):
    """The reads return one row per line, and the id comes from a subquery evaluated once."""
    other = order_copy(order, 1)
    line = order.lines.get()
    for position in (2, 3):
        line.pk, line.position = None, position
        line.save()

    first = _propose(order, *SHIP_DATE)
    second = _propose(other, *SHIP_DATE)

    assert second.pk == first.pk + 1


def test_decision_batched_still_stored(order):
    """Inside order_events_batched() the decision is saved by itself before its audit entry."""
    with order_events_batched():
        decision = _propose(order, *SHIP_DATE)

    assert Decision.objects.get().pk == decision.pk
    assert AuditEntry.objects.get(action="decision.proposed").target_id == str(decision.pk)
    assert OrderEvent.objects.filter(order=order, kind="ai.decision").count() == 1


@POSTGRESQL
def test_queued_hold_takes_one_statement(order):
    with CaptureQueriesContext(connection) as queries:
        decision = _propose(order, "substitute_sku", *SUBSTITUTION, confidence="0.92")

    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW
    updates = [query["sql"] for query in queries if 'UPDATE "orders_order"' in query["sql"]]
    assert len(updates) == 1, updates
    assert 'INSERT INTO "guardrails_auditentry"' in updates[0]
    assert 'INSERT INTO "orders_orderevent"' in updates[0]
    assert Order.objects.get(pk=order.pk).status == OrderStatus.ON_HOLD


def _hold_reason(number: int) -> dict:
    return {
        "severity": "hold",
        "code": "ai_decision",
        "review_item": number,
        "decision": number,
        "message": f"Substitute SKU proposed by AI waits for review ({number})",
    }


def _hold_writes(order: Order) -> tuple:
    stored = Order.objects.get(pk=order.pk)
    entry = AuditEntry.objects.get(action="order.held", target_id=str(order.pk))
    event = OrderEvent.objects.get(order=order, kind="order.held")
    return (
        (stored.status, stored.hold_reasons, stored.updated_at == order.updated_at),
        (entry.actor_kind, entry.actor_id, entry.actor_label, entry.reason),
        (entry.target_type, entry.before, entry.after),
        (event.message, event.actor_kind, event.actor_id, event.data),
    )


@pytest.mark.parametrize("held_before", [False, True], ids=["ready", "already_held"])
def test_hold_add_matches_order_hold(order, held_before):
    copy = order_copy(order, 1)
    for target in (order, copy):
        if held_before:
            target.status = OrderStatus.ON_HOLD
            target.hold_reasons = [_hold_reason(1)]
            target.save(update_fields=["status", "hold_reasons"])
        target.refresh_from_db()

    _order_hold_add(order, [*order.hold_reasons, _hold_reason(2)])
    order_update_hold_reasons(order=copy, reasons=[*copy.hold_reasons, _hold_reason(2)])

    ours, theirs = _hold_writes(order), _hold_writes(copy)
    assert ours[0] == theirs[0]
    assert ours[1] == theirs[1]
    assert ours[2] == theirs[2]
    assert ours[3] == theirs[3]


def test_hold_add_batched_keeps_order_hold(order):
    with order_events_batched():
        _order_hold_add(order, [_hold_reason(1)])

    assert Order.objects.get(pk=order.pk).status == OrderStatus.ON_HOLD
    assert AuditEntry.objects.filter(action="order.held").count() == 1
    assert OrderEvent.objects.filter(order=order, kind="order.held").count() == 1


def _prepared(instance, fields, *, add: bool) -> list:
    return [field.get_db_prep_save(field.pre_save(instance, add), connection) for field in fields]


def _decision_values(order: Order, **overrides) -> Decision:
    decision = _propose(order, *SHIP_DATE)
    for name, value in overrides.items():
        setattr(decision, name, value)
    return decision


# Only PostgreSQL writes rows this way, and other databases prepare datetimes differently.
@POSTGRESQL
@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"latency_ms": 3, "rationale": None},
        {"applied_at": datetime(2026, 12, 5, 12, 0), "verdict": Verdict.APPLIED},
        {"applied_at": datetime(2026, 12, 5, 12, 0, tzinfo=UTC), "confidence": "0.5"},
        {"model_name": 7, "before": "text", "after": None},
    ],
    ids=["proposed", "int_float_none", "naive_time", "aware_time", "odd_types"],
)
def test_db_values_match_get_db_prep_save(order, overrides):
    decision = _decision_values(order, **overrides)
    decision.pk = None
    _, plan = _insert_statement(Decision, with_key=False)
    fields = [field for field, _ in plan]

    values = _db_values(decision, plan, add=False)
    expected = _prepared(decision, fields, add=False)

    for field, value, expected_value in zip(fields, values, expected, strict=True):
        # psycopg's Jsonb wraps JSON values and does not compare by value.
        unwrapped = getattr(value, "obj", value)
        assert unwrapped == getattr(expected_value, "obj", expected_value), field.name
        # Django may wrap an int in psycopg's Int4 or Int8, a subclass that binds the same.
        same_type = isinstance(value, type(expected_value)) or isinstance(
            expected_value, type(value)
        )
        assert same_type, field.name


@POSTGRESQL
def test_db_values_run_auto_now(order):
    _, plan = _update_statement(Order, ("status", "hold_reasons", "updated_at"))
    before = order.updated_at

    values = _db_values(order, plan, add=False)

    assert order.updated_at > before
    assert values[2] == order.updated_at


@POSTGRESQL
def test_db_values_skip_preparing_text(order):
    """Text, ids and None go to the database as they are, without get_db_prep_save."""
    decision = _decision_values(order)
    _, plan = _insert_statement(Decision, with_key=True)

    original = models.Field.get_db_prep_save
    with mock.patch.object(
        models.Field, "get_db_prep_save", autospec=True, side_effect=original
    ) as prepare:
        values = _db_values(decision, plan, add=False)

    prepared = {call.args[0].name for call in prepare.call_args_list}
    assert "gpt-route" in values
    # Plain text, ids, None and floats are not prepared. JSON, decimals and enum members are.
    assert not prepared & {"model_name", "model_version", "order", "rationale"}
    assert not prepared & {"latency_ms", "review_item", "applied_at", "label_note"}
    assert {"before", "confidence"} <= prepared


@POSTGRESQL
def test_decision_skips_audit_event_instances(order):
    """Audit entries and order events written with other rows are plain values, not models."""
    with (
        mock.patch.object(AuditEntry, "__init__", side_effect=AssertionError) as audit_init,
        mock.patch.object(OrderEvent, "__init__", side_effect=AssertionError) as event_init,
    ):
        decision = _propose(order, "substitute_sku", *SUBSTITUTION, confidence="0.92")

    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW
    assert audit_init.call_count == 0
    assert event_init.call_count == 0
    proposed = AuditEntry.objects.get(action="decision.proposed")
    assert proposed.target_id == str(decision.pk)
    assert AuditEntry.objects.filter(action="order.held", target_id=str(order.pk)).count() == 1
    kinds = set(OrderEvent.objects.filter(order=order).values_list("kind", flat=True))
    assert {"ai.decision", "review.opened", "order.held"} <= kinds
