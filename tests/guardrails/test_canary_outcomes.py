"""Canary outcomes: what counts as a fulfilment exception, from when, on which orders, and
shadow records kept out of breakers, backtests and KPI rollups."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from guardrails import breakers, rollouts
from guardrails.backtest import decisions_in_scope
from guardrails.models import (
    Breaker,
    BreakerCause,
    BreakerScope,
    BreakerState,
    Canary,
    CanaryArm,
    CanaryAssignment,
    CanaryStatus,
    Decision,
    Verdict,
    Version,
    VersionKind,
    VersionStatus,
)
from guardrails.rollout_selectors import canary_comparison
from monitoring.models import KpiRollup
from monitoring.rollups import kpi_rollups_refresh
from orders.fulfilment import (
    fulfilment_exception_record,
    return_record,
    shipment_record,
    shipment_status_set,
)
from tests.guardrails.breaker_fixtures import decisions_create, order_fixture  # noqa: F401

from .canary_fixtures import canary_of, model_versions, orders_in_arm, propose_carrier

# --- Fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def canary(default_policies, catalog, ops):
    _, candidate = model_versions(ops)
    return canary_of(ops, candidate, min_orders_per_arm=2)


def arms(canary, channel, *, candidate=2, control=2):
    """Orders in each arm, each with one applied carrier decision in the canary."""
    candidate_orders = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, candidate)
    control_orders = orders_in_arm(canary, channel, CanaryArm.CONTROL, control)
    for order in candidate_orders:
        propose_carrier(order, "v2")
    for order in control_orders:
        propose_carrier(order, "v1")
    return candidate_orders, control_orders


def entered_at(canary, order) -> datetime:
    return CanaryAssignment.objects.get(canary=canary, order=order).created_at


def failed_delivery(order, status: str, *, at: datetime | None = None) -> None:
    shipped_at = (at or timezone.now()) - timedelta(minutes=1)
    shipment, _ = shipment_record(
        order=order, shipment_id=f"P-{order.pk}", user=None, shipped_at=shipped_at
    )
    shipment_status_set(shipment=shipment, status=status, user=None, changed_at=at)


# --- What counts as a fulfilment exception --------------------------------------------------------


@pytest.mark.parametrize("status", ["delivery_failed", "returned_to_sender"])
def test_failed_delivery_counts_as_exception(canary, channel, status):
    (failed, _), _ = arms(canary, channel)
    failed_delivery(failed, status)

    candidate = canary_comparison(canary)["candidate"]

    assert candidate["orders_with_failed_deliveries"] == 1
    assert candidate["orders_with_reported_exceptions"] == 0
    assert candidate["orders_with_fulfilment_exceptions"] == 1
    assert candidate["fulfilment_exception_rate"] == "0.500000"


def test_delivered_shipment_is_no_exception(canary, channel):
    (delivered, _), _ = arms(canary, channel)
    failed_delivery(delivered, "delivered")

    candidate = canary_comparison(canary)["candidate"]

    assert candidate["orders_with_failed_deliveries"] == 0
    assert candidate["orders_with_fulfilment_exceptions"] == 0


@pytest.mark.parametrize(
    ("reason", "is_fulfilment"),
    [
        ("wrong_item", True),
        ("wrong_quantity", True),
        ("damaged_in_transit", True),
        ("late_delivery", True),
        ("changed_mind", False),
        ("defective", False),
        ("substitute_unwanted", False),
    ],
)
def test_return_counts_when_fulfilment_caused(canary, channel, reason, is_fulfilment):
    (returned, _), _ = arms(canary, channel)
    return_record(order=returned, return_id="R-1", reason=reason, user=None)

    candidate = canary_comparison(canary)["candidate"]

    assert candidate["returns"] == 1
    assert candidate["orders_with_fulfilment_returns"] == int(is_fulfilment)
    assert candidate["orders_with_fulfilment_exceptions"] == int(is_fulfilment)


def test_order_with_every_kind_counts_once(canary, channel):
    (worst, _), _ = arms(canary, channel)
    fulfilment_exception_record(order=worst, stage="pick", reason="wrong_item", user=None)
    failed_delivery(worst, "returned_to_sender")
    return_record(order=worst, return_id="R-1", reason="wrong_item", user=None)
    return_record(order=worst, return_id="R-2", reason="changed_mind", user=None)

    candidate = canary_comparison(canary)["candidate"]

    assert candidate["orders_with_reported_exceptions"] == 1
    assert candidate["orders_with_failed_deliveries"] == 1
    assert candidate["orders_with_fulfilment_returns"] == 1
    assert candidate["returns"] == 1
    assert candidate["orders_with_fulfilment_exceptions"] == 1


def test_late_fulfilment_return_rolls_back(canary, channel):
    (returned, _), _ = arms(canary, channel)
    first = rollouts.canary_evaluate(canary_id=canary.pk)

    return_record(order=returned, return_id="R-1", reason="damaged_in_transit", user=None)
    second = rollouts.canary_evaluate(canary_id=canary.pk)

    assert first["outcome"] == "healthy"
    assert second["outcome"] == "rollback"
    assert second["candidate"]["orders_with_fulfilment_returns"] == 1
    canary.refresh_from_db()
    assert canary.status == CanaryStatus.ROLLED_BACK
    figures = canary.events.get(kind="rolled_back").data["candidate"]
    assert figures["orders_with_fulfilment_returns"] == 1
    assert figures["orders_with_failed_deliveries"] == 0


def test_late_carrier_miss_rolls_back(canary, channel):
    (missed, _), _ = arms(canary, channel)

    failed_delivery(missed, "delivery_failed")
    evaluation = rollouts.canary_evaluate(canary_id=canary.pk)

    assert evaluation["outcome"] == "rollback"
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.ROLLED_BACK


def test_page_shows_exceptions_by_kind(canary, channel, ops, client):
    (first, second), _ = arms(canary, channel)
    failed_delivery(first, "delivery_failed")
    return_record(order=second, return_id="R-1", reason="wrong_item", user=None)
    client.force_login(ops)

    page = client.get(reverse("rollouts:canary", args=[canary.pk])).content.decode()

    for key, candidate in [
        ("orders_with_fulfilment_exceptions", "2"),
        ("orders_with_reported_exceptions", "0"),
        ("orders_with_failed_deliveries", "1"),
        ("orders_with_fulfilment_returns", "1"),
    ]:
        row = page.split(f'data-figure="{key}"', 1)[1].split("</tr>", 1)[0]
        assert f'<td class="arm-candidate">{candidate}</td>' in row, key
        assert '<td class="arm-control">0</td>' in row, key


# --- From when ------------------------------------------------------------------------------------


def test_outcomes_before_entry_not_counted(canary, channel):
    (earlier, later), _ = arms(canary, channel)
    before = entered_at(canary, earlier) - timedelta(hours=1)
    fulfilment_exception_record(
        order=earlier, stage="pick", reason="wrong_item", user=None, occurred_at=before
    )
    failed_delivery(earlier, "delivery_failed", at=before)
    return_record(
        order=earlier, return_id="R-1", reason="wrong_item", user=None, received_at=before
    )
    after = entered_at(canary, later)
    fulfilment_exception_record(
        order=later, stage="pack", reason="damaged", user=None, occurred_at=after
    )

    candidate = canary_comparison(canary)["candidate"]

    assert candidate["orders_with_reported_exceptions"] == 1
    assert candidate["orders_with_failed_deliveries"] == 0
    assert candidate["orders_with_fulfilment_returns"] == 0
    assert candidate["returns"] == 0
    assert candidate["orders_with_fulfilment_exceptions"] == 1


# --- Denominators and verdict mix -----------------------------------------------------------------


def test_assigned_without_decision_not_counted(canary, channel):
    arms(canary, channel)
    asked_only = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 3)
    for order in asked_only:
        rollouts.canary_assignment_for(
            order=order, action_code="select_carrier", model_name="gpt-carrier"
        )
    fulfilment_exception_record(order=asked_only[0], stage="pick", reason="wrong_item", user=None)

    comparison = canary_comparison(canary)

    assert CanaryAssignment.objects.filter(canary=canary, arm=CanaryArm.CANDIDATE).count() == 5
    assert comparison["candidate"]["orders"] == 2
    assert comparison["candidate"]["orders_with_fulfilment_exceptions"] == 0
    assert comparison["control"]["orders"] == 2


def test_shadow_candidate_reviews_not_counted(default_policies, catalog, ops, channel):
    _, candidate = model_versions(ops)
    canary = canary_of(ops, candidate, shadow=True)
    (order,) = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)
    shadow = propose_carrier(order, "v2")
    live = propose_carrier(order, "v1")
    # A reviewer judged the active version's decision on a candidate-arm order, which is
    # no evidence about the candidate.
    Decision.objects.filter(pk=live.pk).update(review_outcome="disagreed")

    figures = canary_comparison(canary)["candidate"]

    assert shadow.shadow_verdict == Verdict.APPLIED
    assert figures["decisions"] == 1
    assert figures["reviewed"] == 0
    assert figures["disagreement_rate"] is None


@pytest.mark.parametrize("per_arm", [2, 5])
def test_comparison_queries_flat_with_every_kind(
    canary, channel, per_arm, django_assert_num_queries
):
    candidate_orders, control_orders = arms(canary, channel, candidate=per_arm, control=per_arm)
    for number, order in enumerate(candidate_orders + control_orders):
        fulfilment_exception_record(order=order, stage="pick", reason="wrong_item", user=None)
        failed_delivery(order, "delivery_failed")
        return_record(order=order, return_id=f"R-{number}", reason="late_delivery", user=None)
    canary = Canary.objects.select_related("candidate", "control").get(pk=canary.pk)

    with django_assert_num_queries(2):
        comparison = canary_comparison(canary)

    assert comparison["candidate"]["orders_with_fulfilment_returns"] == per_arm


# --- Shadow records stay out of breakers, backtests and rollups -----------------------------------

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def shadow_canary_of(ops, *, kind: str) -> Canary:
    """A running shadow canary of the breaker fixtures' model, or of a rule set."""
    if kind == VersionKind.MODEL:
        _, candidate = model_versions(ops, subject="gpt-sub")
        return canary_of(ops, candidate, shadow=True)
    rule_set = Version.objects.create(
        kind=VersionKind.RULE_SET,
        subject="substitution rules",
        label="r2",
        changelog="Stricter substitution bands.",
        status=VersionStatus.CANARY,
    )
    return Canary.objects.create(
        name="rule set shadow",
        candidate=rule_set,
        share=Decimal("0.05"),
        shadow=True,
        salt="0f1e2d3c",
        status=CanaryStatus.RUNNING,
    )


def as_shadow_records(decisions, canary) -> None:
    Decision.objects.filter(pk__in=[decision.pk for decision in decisions]).update(
        canary=canary,
        canary_arm=CanaryArm.CANDIDATE,
        shadow_verdict=Verdict.APPLIED,
    )


def test_breaker_ignores_shadow_records(order, ops, frozen):
    canary = shadow_canary_of(ops, kind=VersionKind.MODEL)
    decisions_create(order, 20, applied=False, confidence="0.95", at=NOW - timedelta(days=2))
    live = decisions_create(order, 20, applied=False, confidence="0.95")
    shadow = decisions_create(
        order, 40, verdict=Verdict.RECOMMENDATION_ONLY, applied=False, confidence="0.50"
    )
    as_shadow_records(shadow, canary)

    breakers.breakers_check_after_decision(decision_id=live[-1].pk)

    assert not Breaker.objects.exists()


def test_breaker_counts_rule_set_shadow_decisions(order, ops, frozen):
    # A rule-set shadow canary stores its would-be verdict on live decisions.
    canary = shadow_canary_of(ops, kind=VersionKind.RULE_SET)
    decisions_create(order, 20, applied=False, confidence="0.95", at=NOW - timedelta(days=2))
    window = decisions_create(order, 20, applied=False, confidence="0.80")
    as_shadow_records(window, canary)

    breakers.breakers_check_after_decision(decision_id=window[-1].pk)

    model_breaker = Breaker.objects.get(scope=BreakerScope.MODEL)
    assert model_breaker.state == BreakerState.OPEN
    assert model_breaker.cause == BreakerCause.CONFIDENCE_COLLAPSE


def test_breaker_trial_skips_shadow_records(order, ops, frozen, settings):
    canary = shadow_canary_of(ops, kind=VersionKind.MODEL)
    opened = breakers.breaker_open(
        scope=BreakerScope.MODEL, key="gpt-sub", cause=BreakerCause.ERROR_RATE, detail="test"
    )
    Breaker.objects.filter(pk=opened.pk).update(
        state=BreakerState.HALF_OPEN, trial_started_at=NOW - timedelta(minutes=1)
    )
    shadow = decisions_create(order, 30, verdict=Verdict.RECOMMENDATION_ONLY, applied=False)
    as_shadow_records(shadow, canary)

    breakers.breakers_sweep()

    assert Breaker.objects.get(pk=opened.pk).state == BreakerState.HALF_OPEN


def test_rollup_decisions_skip_shadow_records(default_policies, catalog, ops, channel):
    _, candidate = model_versions(ops)
    canary = canary_of(ops, candidate, shadow=True)
    (order,) = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)
    propose_carrier(order, "v2")
    propose_carrier(order, "v1")

    now = timezone.now()
    kpi_rollups_refresh(since=now - timedelta(hours=1), until=now + timedelta(hours=1), now=now)

    rows = KpiRollup.objects.filter(counter="decisions", granularity="hour")
    assert sum(row.count for row in rows) == 1
    assert Decision.objects.count() == 2


def test_backtest_scope_skips_shadow_records(default_policies, catalog, ops, channel):
    _, candidate = model_versions(ops)
    canary = canary_of(ops, candidate, shadow=True)
    (order,) = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)
    shadow = propose_carrier(order, "v2")
    live = propose_carrier(order, "v1")

    scope = decisions_in_scope(live.policy_version.policy)

    assert list(scope.values_list("pk", flat=True)) == [live.pk]
    assert shadow.policy_version.policy_id == live.policy_version.policy_id
