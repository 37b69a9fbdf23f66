"""The autonomy gate: suspended at or over 0.2 % errors over 30 days, allowed again below."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from guardrails.autonomy import autonomy_facts, autonomy_gate_recompute
from guardrails.models import AuditEntry, AutonomyGate, Verdict
from guardrails.tasks import autonomy_gates_recompute
from tests.guardrails.breaker_fixtures import decisions_create, order_fixture  # noqa: F401

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def gate_audits(action: str = "substitute_sku") -> list[AuditEntry]:
    return list(
        AuditEntry.objects.filter(target_type="guardrails.actiontype", target_id=action).order_by(
            "id"
        )
    )


def test_gate_suspends_at_limit(order, frozen):
    # 1 error in 500 autonomous decisions is exactly 0.2 %.
    decisions_create(order, 500, errors=1)

    gate = autonomy_gate_recompute(action_code="substitute_sku")

    assert gate.suspended is True
    assert gate.errors == 1
    assert gate.autonomous_decisions == 500
    assert str(gate.error_rate) == "0.002000"
    assert gate.changed_at == NOW
    audits = gate_audits()
    assert [audit.action for audit in audits] == ["autonomy_gate.suspend"]
    assert audits[0].after["decisions"] == 500
    assert audits[0].after["max_error_rate"] == "0.002000"
    facts = autonomy_facts(action_code="substitute_sku")
    assert facts["suspended"] is True
    assert facts["window_days"] == 30


def test_gate_allows_under_limit(order, frozen):
    # 1 error in 501 decisions is 0.1996 %, under 0.2 %.
    decisions_create(order, 501, errors=1)

    gate = autonomy_gate_recompute(action_code="substitute_sku")

    assert gate.suspended is False
    assert gate_audits() == []


def test_gate_counts_only_autonomous_decisions(order, frozen):
    decisions_create(order, 501, errors=1)
    # Errors on proposals a person reviewed do not count against autonomy.
    decisions_create(order, 10, verdict=Verdict.QUEUED_FOR_REVIEW, errors=10)

    gate = autonomy_gate_recompute(action_code="substitute_sku")

    assert gate.autonomous_decisions == 501
    assert gate.errors == 1
    assert gate.suspended is False


def test_gate_counts_failed_autonomous_apply(order, frozen):
    decisions_create(order, 499)
    # A failed autonomous apply ends in review with apply_error set; it still counts.
    decisions_create(order, 1, verdict=Verdict.QUEUED_FOR_REVIEW, applied=False, apply_errors=1)

    gate = autonomy_gate_recompute(action_code="substitute_sku")

    assert gate.autonomous_decisions == 500
    assert gate.errors == 1
    assert gate.suspended is True


def test_gate_resumes_when_errors_leave_window(order, frozen):
    decisions_create(order, 2, errors=2, at=NOW - timedelta(days=29))
    decisions_create(order, 600, at=NOW - timedelta(days=10))
    suspended = autonomy_gate_recompute(action_code="substitute_sku")
    assert suspended.suspended is True

    # Two days on, the errors are 31 days old and out of the rolling window.
    frozen.shift(timedelta(days=2))
    resumed = autonomy_gate_recompute(action_code="substitute_sku")

    assert resumed.suspended is False
    assert resumed.errors == 0
    assert resumed.autonomous_decisions == 600
    assert resumed.changed_at == NOW + timedelta(days=2)
    audits = gate_audits()
    assert [audit.action for audit in audits] == [
        "autonomy_gate.suspend",
        "autonomy_gate.resume",
    ]
    assert audits[1].before == {"suspended": True}


def test_gate_recompute_without_change_keeps_changed_at(order, frozen):
    decisions_create(order, 500, errors=1)
    autonomy_gate_recompute(action_code="substitute_sku")

    frozen.shift(timedelta(hours=1))
    gate = autonomy_gate_recompute(action_code="substitute_sku")

    assert gate.changed_at == NOW
    assert gate.computed_at == NOW + timedelta(hours=1)
    assert len(gate_audits()) == 1


def test_autonomy_facts_computes_missing_gate(order, frozen):
    AutonomyGate.objects.filter(action__code="substitute_sku").delete()
    decisions_create(order, 100, errors=1)

    facts = autonomy_facts(action_code="substitute_sku")

    assert facts == {
        "suspended": True,
        "error_rate": "0.010000",
        "max_error_rate": "0.002000",
        "window_days": 30,
        "errors": 1,
        "decisions": 100,
    }
    assert AutonomyGate.objects.get(action__code="substitute_sku").suspended is True


def test_autonomy_facts_unknown_action(db):
    assert autonomy_facts(action_code="teleport_parcel") == {}


def test_periodic_task_recomputes_every_gate(order, frozen):
    decisions_create(order, 10, action="select_carrier", errors=1)

    recomputed = autonomy_gates_recompute.delay().get()

    assert recomputed >= 10
    assert AutonomyGate.objects.get(action__code="select_carrier").suspended is True
    assert AutonomyGate.objects.get(action__code="substitute_sku").suspended is False
    assert AutonomyGate.objects.filter(computed_at=NOW).count() == recomputed
