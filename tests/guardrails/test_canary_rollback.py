"""Canary judgement and automatic rollback: the exact boundary, minimum samples, late outcomes,
inconclusive and complete runs, the decisions sent back to review, and the comparison."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.apps import apps as django_apps
from django.db import connection

from guardrails import rollouts
from guardrails.models import (
    AuditEntry,
    Canary,
    CanaryArm,
    CanaryEvent,
    CanaryEventKind,
    CanaryStatus,
    Decision,
    Verdict,
    VersionStatus,
)
from guardrails.rollout_selectors import canary_comparison, rollback_judgement
from guardrails.services import DecisionConflict
from monitoring.models import Alert, AlertStatus
from orders.fulfilment import fulfilment_exception_record, return_record, shipment_record
from orders.models import OrderStatus
from reviews.models import ReviewStatus
from reviews.services import review_item_accept, review_item_reject

from .canary_fixtures import (
    canary_of,
    model_versions,
    orders_in_arm,
    propose_carrier,
)

# --- rollback_judgement, pure ---------------------------------------------------------------------


def judge(control: tuple[int, int], candidate: tuple[int, int], *, minimum=1000, limit="0.100"):
    return rollback_judgement(
        control_orders=control[0],
        control_exceptions=control[1],
        candidate_orders=candidate[0],
        candidate_exceptions=candidate[1],
        min_orders_per_arm=minimum,
        max_increase_pp=Decimal(limit),
    )


@pytest.mark.parametrize(
    ("control", "candidate", "expected"),
    [
        # 1.0 % against 1.1 %: exactly +0.1 pp, which is not more than the limit.
        ((1000, 10), (1000, 11), "healthy"),
        ((100_000, 1000), (1000, 11), "healthy"),
        # 1.0 % against 1.2 %: +0.2 pp.
        ((1000, 10), (1000, 12), "rollback"),
        # Just above the boundary: 1.0 % against 1.1001 %.
        ((100_000, 1000), (1_000_000, 11_001), "rollback"),
        # Just below it: 1.0 % against 1.0999 %.
        ((100_000, 1000), (1_000_000, 10_999), "healthy"),
        # The candidate doing better is healthy, however much better.
        ((1000, 50), (1000, 0), "healthy"),
        ((1000, 0), (1000, 0), "healthy"),
    ],
)
def test_judgement_at_boundary(control, candidate, expected):
    assert judge(control, candidate) == expected


def test_judgement_float_trap_is_exact():
    # In floats 0.201 - 0.2 > 0.001 holds, so a float rule would roll back at +0.1 pp.
    assert 0.201 - 0.2 > 0.001
    assert judge((10_000, 2000), (10_000, 2010), limit="0.100") == "healthy"
    assert judge((10, 2), (10, 3), minimum=10, limit="10") == "healthy"


def test_judgement_below_minimum_inconclusive():
    assert judge((999, 0), (1000, 500)) == "inconclusive"
    assert judge((1000, 0), (999, 500)) == "inconclusive"
    assert judge((1000, 0), (1000, 500)) == "rollback"
    assert judge((0, 0), (0, 0), minimum=0) == "inconclusive"


def test_judgement_limit_of_zero():
    assert judge((1000, 10), (1000, 10), limit="0") == "healthy"
    assert judge((1000, 10), (1000, 11), limit="0") == "rollback"


# --- One canary end to end ------------------------------------------------------------------------


@pytest.fixture
def versions(default_policies, catalog, ops):
    return model_versions(ops)


@pytest.fixture
def canary(versions, ops):
    return canary_of(ops, versions[1], min_orders_per_arm=2)


def arms_with_decisions(canary, channel, *, candidate=2, control=2):
    candidate_orders = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, candidate)
    control_orders = orders_in_arm(canary, channel, CanaryArm.CONTROL, control)
    for order in candidate_orders:
        propose_carrier(order, "v2")
    for order in control_orders:
        propose_carrier(order, "v1")
    return candidate_orders, control_orders


def exception_on(order):
    fulfilment_exception_record(order=order, stage="pick", reason="wrong_item", user=None)


def test_rollback_end_to_end(canary, channel, versions, agent):
    (unshipped, shipped), control_orders = arms_with_decisions(canary, channel)
    shipment_record(order=shipped, shipment_id="PARCEL-1", user=None)
    exception_on(unshipped)

    evaluation = rollouts.canary_evaluate(canary_id=canary.pk)

    assert evaluation["outcome"] == "rollback"
    assert evaluation["action_taken"] == "rolled_back"
    canary.refresh_from_db()
    assert canary.status == CanaryStatus.ROLLED_BACK
    assert canary.ended_at is not None
    assert canary.end_reason == (
        "Candidate 50.0 % vs control 0.0 % fulfilment exceptions: +50.0 pp, over the 0.1 pp "
        "limit (2 candidate and 2 control orders)."
    )
    assert canary.result["outcome"] == "rollback"
    assert canary.last_evaluation["action_taken"] == "rolled_back"
    versions[1].refresh_from_db()
    assert versions[1].status == VersionStatus.DRAFT
    versions[0].refresh_from_db()
    assert versions[0].status == VersionStatus.ACTIVE

    event = CanaryEvent.objects.get(canary=canary, kind=CanaryEventKind.ROLLED_BACK)
    assert event.actor is None
    assert event.data["candidate"]["orders_with_fulfilment_exceptions"] == 1
    assert event.data["control"]["orders"] == 2
    assert event.data["difference_pp"] == "50.000"
    assert event.data["limit_pp"] == "0.100"
    assert event.data["decisions"] == {
        "requeued": 1,
        "left_shipped": 1,
        "left_cancelled": 0,
        "left_reviewed": 0,
        "still_queued": 0,
    }

    audit = AuditEntry.objects.get(action="canary.rolled_back", target_id=str(canary.pk))
    assert audit.actor_label == "canary-monitor"
    assert audit.before["status"] == "running"
    assert audit.after["status"] == "rolled_back"

    alert = Alert.objects.get(dedup_key=f"canary:{canary.pk}:rolled-back")
    assert alert.status == AlertStatus.OPEN
    assert alert.severity == "critical"
    assert alert.owner_group == "ops_manager"
    assert alert.runbook.startswith("1. ")
    assert alert.data["candidate"]["orders"] == 2

    back = Decision.objects.get(order=unshipped)
    assert back.review_item is not None
    assert back.review_item.status == ReviewStatus.OPEN
    assert back.review_item.kind == "routing"
    unshipped.refresh_from_db()
    assert unshipped.status == OrderStatus.ON_HOLD
    assert [reason["code"] for reason in unshipped.hold_reasons] == ["canary_rollback"]
    assert Decision.objects.get(order=shipped).review_item is None
    requeued = AuditEntry.objects.get(action="decision.requeued")
    assert requeued.target_id == str(back.pk)
    assert requeued.actor_label == "canary-monitor"
    assert requeued.reason == (
        f"Canary {canary.name} (#{canary.pk}) rolled back; the applied change goes back to "
        f"review in item #{back.review_item_id}."
    )
    assert requeued.before == {"review_item": None, "order": {"status": "ready", "hold_codes": []}}
    assert requeued.after == {
        "review_item": back.review_item_id,
        "order": {"status": "on_hold", "hold_codes": ["canary_rollback"]},
    }

    # New orders in the candidate's buckets get the active version only.
    first_new, second_new = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 2)
    assert propose_carrier(first_new, "v1").canary is None
    with pytest.raises(DecisionConflict) as raised:
        propose_carrier(second_new, "v2")
    assert raised.value.code == "version_not_active"


def test_rollback_runs_once(canary, channel):
    candidate_orders, _ = arms_with_decisions(canary, channel)
    exception_on(candidate_orders[0])

    rollouts.canary_evaluate(canary_id=canary.pk)
    again = rollouts.canary_evaluate(canary_id=canary.pk)
    rollouts.canary_rollback(canary_id=canary.pk, evaluation=again)

    assert again["action_taken"] == "none"
    assert CanaryEvent.objects.filter(kind=CanaryEventKind.ROLLED_BACK).count() == 1
    assert Alert.objects.get().occurrences == 1


def test_requeued_decision_accept_keeps_change(canary, channel, agent):
    candidate_orders, _ = arms_with_decisions(canary, channel)
    exception_on(candidate_orders[0])
    rollouts.canary_evaluate(canary_id=canary.pk)
    decision = Decision.objects.get(order=candidate_orders[0])

    review_item_accept(item_id=decision.review_item_id, user=agent)

    order = candidate_orders[0]
    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.carrier_service.carrier.code == "fedex"
    decision.refresh_from_db()
    assert decision.review_outcome == "agreed"
    assert decision.reverted_at is None
    assert AuditEntry.objects.filter(action="decision.kept", target_id=str(decision.pk)).exists()


def test_requeued_decision_reject_undoes_change(canary, channel, agent):
    candidate_orders, _ = arms_with_decisions(canary, channel)
    exception_on(candidate_orders[0])
    rollouts.canary_evaluate(canary_id=canary.pk)
    decision = Decision.objects.get(order=candidate_orders[0])

    review_item_reject(item_id=decision.review_item_id, user=agent, note="Keep UPS.")

    order = candidate_orders[0]
    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.carrier_service.carrier.code == "ups"
    decision.refresh_from_db()
    assert decision.review_outcome == "disagreed"
    assert decision.reverted_by == agent
    reverted = AuditEntry.objects.get(action="decision.reverted", target_id=str(decision.pk))
    assert reverted.actor == agent
    # Labelled an error, so breakers and the autonomy gate count the rolled-back change.
    assert decision.outcome == "error"
    assert decision.labelled_by == agent
    assert decision.label_note == "Keep UPS."
    labelled = AuditEntry.objects.get(action="decision.labelled", target_id=str(decision.pk))
    assert labelled.after == {"outcome": "error", "label_note": "Keep UPS."}


def test_queued_candidate_decisions_stay_queued(canary, channel):
    from guardrails.services import decision_propose

    candidate_orders, _ = arms_with_decisions(canary, channel)
    (waiting,) = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)
    queued = decision_propose(
        order_id=waiting.pk,
        action_code="select_carrier",
        before={"carrier_service": "ups/ground"},
        after={"carrier_service": "fedex/ground"},
        confidence=Decimal("0.50"),
        model_name="gpt-carrier",
        model_version="v2",
    )
    exception_on(candidate_orders[0])

    rollouts.canary_evaluate(canary_id=canary.pk)

    assert queued.verdict == Verdict.QUEUED_FOR_REVIEW
    decisions = CanaryEvent.objects.get(kind=CanaryEventKind.ROLLED_BACK).data["decisions"]
    assert decisions["requeued"] == 2
    assert decisions["still_queued"] == 1
    queued.refresh_from_db()
    assert queued.review_item.status == ReviewStatus.OPEN
    assert queued.applied_at is None


def test_cancelled_order_not_requeued(canary, channel):
    candidate_orders, _ = arms_with_decisions(canary, channel)
    exception_on(candidate_orders[0])
    candidate_orders[1].status = OrderStatus.CANCELLED
    candidate_orders[1].save(update_fields=["status"])

    rollouts.canary_evaluate(canary_id=canary.pk)

    decisions = CanaryEvent.objects.get(kind=CanaryEventKind.ROLLED_BACK).data["decisions"]
    assert decisions["requeued"] == 1
    assert decisions["left_cancelled"] == 1


def test_late_exception_flips_next_evaluation(canary, channel):
    candidate_orders, _ = arms_with_decisions(canary, channel)

    first = rollouts.canary_evaluate(canary_id=canary.pk)
    exception_on(candidate_orders[1])
    second = rollouts.canary_evaluate(canary_id=canary.pk)

    assert first["outcome"] == "healthy"
    assert first["action_taken"] == "none"
    assert second["outcome"] == "rollback"
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.ROLLED_BACK


def test_late_outcome_rolls_back_paused_canary(canary, channel, ops):
    candidate_orders, _ = arms_with_decisions(canary, channel)
    rollouts.canary_pause(canary_id=canary.pk, user=ops, reason="Holiday freeze.")

    exception_on(candidate_orders[0])
    rollouts.canary_evaluate(canary_id=canary.pk)

    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.ROLLED_BACK


def test_below_minimum_sample_no_rollback(versions, ops, channel):
    canary = canary_of(ops, versions[1], min_orders_per_arm=3)
    candidate_orders, _ = arms_with_decisions(canary, channel)
    exception_on(candidate_orders[0])

    evaluation = rollouts.canary_evaluate(canary_id=canary.pk)

    assert evaluation["outcome"] == "inconclusive"
    assert evaluation["significant"] is False
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.RUNNING


def test_inconclusive_at_end_pauses(versions, ops, channel):
    canary = canary_of(ops, versions[1], min_orders_per_arm=5, days=7)
    arms_with_decisions(canary, channel, candidate=1, control=3)

    evaluation = rollouts.canary_evaluate(
        canary_id=canary.pk, now=canary.ends_at + timedelta(minutes=1)
    )

    assert evaluation["outcome"] == "inconclusive"
    assert evaluation["action_taken"] == "paused"
    canary.refresh_from_db()
    assert canary.status == CanaryStatus.PAUSED
    event = CanaryEvent.objects.get(canary=canary, kind=CanaryEventKind.PAUSED)
    assert event.detail == (
        "Ran 7 days with too little data (1 candidate and 3 control orders, 5 needed in each "
        "arm); inconclusive."
    )
    assert AuditEntry.objects.get(action="canary.paused").actor_label == "canary-monitor"


def test_inconclusive_before_end_keeps_running(versions, ops, channel):
    canary = canary_of(ops, versions[1], min_orders_per_arm=5)

    evaluation = rollouts.canary_evaluate(
        canary_id=canary.pk, now=canary.ends_at - timedelta(minutes=1)
    )

    assert evaluation["action_taken"] == "none"
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.RUNNING


def test_healthy_at_end_pauses_for_decision(canary, channel):
    arms_with_decisions(canary, channel)

    evaluation = rollouts.canary_evaluate(
        canary_id=canary.pk, now=canary.ends_at + timedelta(seconds=1)
    )

    assert evaluation["outcome"] == "healthy"
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.PAUSED
    assert CanaryEvent.objects.get(kind=CanaryEventKind.PAUSED).detail == (
        "Run complete; promote or stop."
    )


def test_shadow_canary_never_rolls_back(versions, ops, channel):
    canary = canary_of(ops, versions[1], shadow=True)
    candidate_orders, _ = arms_with_decisions(canary, channel)
    exception_on(candidate_orders[0])

    evaluation = rollouts.canary_evaluate(canary_id=canary.pk)

    assert evaluation["outcome"] == "rollback"
    assert evaluation["automatic_rollback"] is False
    assert evaluation["action_taken"] == "none"
    canary.refresh_from_db()
    assert canary.status == CanaryStatus.RUNNING
    assert canary.last_evaluation["outcome"] == "rollback"
    assert not Alert.objects.exists()


def test_canaries_evaluate_task(canary, channel):
    from guardrails.tasks import canaries_evaluate

    candidate_orders, _ = arms_with_decisions(canary, channel)
    exception_on(candidate_orders[0])

    assert canaries_evaluate.delay().get() == 1
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.ROLLED_BACK
    assert canaries_evaluate.delay().get() == 0


# --- The comparison -------------------------------------------------------------------------------


def test_comparison_figures_per_arm(canary, channel, versions):
    candidate_orders, control_orders = arms_with_decisions(canary, channel, control=4)
    exception_on(candidate_orders[0])
    exception_on(candidate_orders[0])
    exception_on(control_orders[0])
    return_record(order=control_orders[1], return_id="R-1", reason="changed_mind", user=None)

    comparison = canary_comparison(canary)

    assert comparison["candidate"] == {
        "version": "v2",
        "orders": 2,
        "decisions": 2,
        "verdicts": {"applied": 2},
        "reviewed": 0,
        "disagreed": 0,
        "disagreement_rate": None,
        "orders_with_fulfilment_exceptions": 1,
        "fulfilment_exception_rate": "0.500000",
        "orders_with_reported_exceptions": 1,
        "orders_with_failed_deliveries": 0,
        "orders_with_fulfilment_returns": 0,
        "returns": 0,
        "return_rate": "0.000000",
    }
    assert comparison["control"]["orders"] == 4
    assert comparison["control"]["fulfilment_exception_rate"] == "0.250000"
    assert comparison["control"]["returns"] == 1
    assert comparison["control"]["return_rate"] == "0.250000"
    assert comparison["difference_pp"] == "25.000"
    assert comparison["outcome"] == "rollback"
    assert comparison["thresholds"] == {
        "min_orders_per_arm": 2,
        "max_exception_increase_pp": "0.100",
        "significance_level": "0.05",
    }
    assert comparison["significant"] is False


def test_comparison_significance_with_large_arms():
    from guardrails.rollout_selectors import _two_proportion_p_value

    # 1.0 % of 20,000 against 1.5 % of 20,000: z is about 4.5.
    assert _two_proportion_p_value(200, 20_000, 300, 20_000) < Decimal("0.0001")
    assert _two_proportion_p_value(200, 20_000, 205, 20_000) > Decimal("0.5")
    assert _two_proportion_p_value(0, 10, 0, 10) == Decimal("1")
    assert _two_proportion_p_value(0, 0, 1, 10) is None


def test_comparison_shadow_uses_would_be_verdicts(versions, ops, channel):
    canary = canary_of(ops, versions[1], shadow=True)
    candidate_orders = orders_in_arm(canary, channel, CanaryArm.CANDIDATE, 1)
    (control_order,) = orders_in_arm(canary, channel, CanaryArm.CONTROL, 1)
    propose_carrier(candidate_orders[0], "v2")
    propose_carrier(candidate_orders[0], "v1")
    low = propose_carrier(control_order, "v1")
    Decision.objects.filter(pk=low.pk).update(verdict=Verdict.QUEUED_FOR_REVIEW)

    comparison = canary_comparison(canary)

    # The candidate's shadow record only, with its would-be verdict; the active version's
    # applied decision on the same order is in neither arm's mix.
    assert comparison["candidate"]["verdicts"] == {"applied": 1}
    assert comparison["candidate"]["decisions"] == 1
    assert comparison["candidate"]["orders"] == 1
    assert comparison["control"]["verdicts"] == {"queued_for_review": 1}
    assert comparison["control"]["decisions"] == 1
    assert comparison["control"]["orders"] == 1


def test_comparison_counts_reviews(canary, channel, agent):
    candidate_orders, _ = arms_with_decisions(canary, channel)
    Decision.objects.filter(order=candidate_orders[0]).update(review_outcome="disagreed")
    Decision.objects.filter(order=candidate_orders[1]).update(review_outcome="agreed")

    candidate = canary_comparison(canary)["candidate"]

    assert candidate["reviewed"] == 2
    assert candidate["disagreed"] == 1
    assert candidate["disagreement_rate"] == "0.500000"


@pytest.mark.parametrize("per_arm", [2, 6])
def test_comparison_query_count_flat(canary, channel, per_arm, django_assert_num_queries):
    candidate_orders, control_orders = arms_with_decisions(
        canary, channel, candidate=per_arm, control=per_arm
    )
    for order in candidate_orders[:2] + control_orders[:1]:
        exception_on(order)
    canary = Canary.objects.select_related("candidate", "control").get(pk=canary.pk)

    with django_assert_num_queries(2):
        canary_comparison(canary)


# --- Races ----------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_roll_back_once(catalog, channel):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real row locks between transactions")
    import importlib

    from guardrails.defaults import default_policies_load
    from tests.conftest import ensure_role_groups, make_user

    ensure_role_groups()
    migration = importlib.import_module("guardrails.migrations.0008_canary_roles_and_schedule")
    migration.grant_rollout_permissions(django_apps, None)
    default_policies_load()
    ops = make_user("race-ops", "ops_manager")
    _, candidate = model_versions(ops)
    canary = canary_of(ops, candidate, min_orders_per_arm=2)
    candidate_orders, _ = arms_with_decisions(canary, channel)
    exception_on(candidate_orders[0])
    barrier = threading.Barrier(3)
    actions: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            actions.append(rollouts.canary_evaluate(canary_id=canary.pk)["action_taken"])
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(actions) == ["none", "none", "rolled_back"]
    assert CanaryEvent.objects.filter(kind=CanaryEventKind.ROLLED_BACK).count() == 1
    assert Alert.objects.get().occurrences == 1
