"""Circuit breakers: error rate, upstream reports, manual operation, half-open trials, behaviour."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from guardrails import breakers
from guardrails.autonomy import autonomy_gate_recompute
from guardrails.models import (
    AuditEntry,
    AutonomyGate,
    Breaker,
    BreakerCause,
    BreakerEvent,
    BreakerScope,
    BreakerState,
    DecisionOutcome,
    Verdict,
)
from guardrails.tasks import breakers_sweep
from tests.conftest import make_user
from tests.guardrails.breaker_fixtures import MODEL, decisions_create, order_fixture  # noqa: F401

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def check(decision) -> None:
    breakers.breakers_check_after_decision(decision_id=decision.pk)


def breaker(scope: str, key: str) -> Breaker | None:
    return Breaker.objects.filter(scope=scope, key=key).first()


def facts(action: str = "substitute_sku", channel: str = "shop", model: str = MODEL) -> list:
    return breakers.breaker_facts(action_code=action, channel_code=channel, model_name=model)


# --- Error rate --------------------------------------------------------------------------------


def test_error_rate_at_threshold_opens(order, frozen):
    # 1 error in 20 applied decisions is 5 %, the default threshold.
    decisions = decisions_create(order, 20, errors=1)

    check(decisions[-1])

    action_breaker = breaker(BreakerScope.ACTION, "substitute_sku")
    assert action_breaker.state == BreakerState.OPEN
    assert action_breaker.cause == BreakerCause.ERROR_RATE
    event = action_breaker.events.get()
    assert event.from_state == BreakerState.CLOSED
    assert event.data["errors"] == 1
    assert event.data["decisions"] == 20
    # The channel and the model saw the same decisions, so their breakers open too.
    assert breaker(BreakerScope.CHANNEL, "shop").state == BreakerState.OPEN
    assert breaker(BreakerScope.MODEL, MODEL).state == BreakerState.OPEN
    audit = AuditEntry.objects.filter(
        target_type="guardrails.breaker", target_id=str(action_breaker.pk)
    ).get()
    assert audit.action == "breaker.open"
    assert audit.actor_label == breakers.SYSTEM_LABEL
    assert audit.after["data"]["error_rate"] == "0.0500"


def test_error_rate_below_threshold_stays_closed(order, frozen):
    # 1 error in 21 is 4.76 %, under 5 %.
    decisions = decisions_create(order, 21, errors=1)

    check(decisions[-1])

    assert Breaker.objects.filter(state=BreakerState.OPEN).count() == 0


def test_error_rate_below_min_decisions_stays_closed(order, frozen):
    decisions = decisions_create(order, 19, errors=10)

    check(decisions[-1])

    assert Breaker.objects.filter(state=BreakerState.OPEN).count() == 0


def test_error_rate_counts_apply_errors(order, frozen):
    decisions = decisions_create(order, 20, apply_errors=1)

    check(decisions[-1])

    assert breaker(BreakerScope.ACTION, "substitute_sku").state == BreakerState.OPEN


def test_error_rate_ignores_unapplied_decisions(order, frozen):
    # Queued proposals never carried out do not count, even when labelled errors.
    decisions_create(order, 19)
    queued = decisions_create(order, 5, verdict=Verdict.QUEUED_FOR_REVIEW, applied=False, errors=5)

    check(queued[-1])

    assert Breaker.objects.filter(state=BreakerState.OPEN).count() == 0


def test_error_rate_ignores_decisions_before_window(order, frozen):
    decisions_create(order, 20, errors=5, at=NOW - timedelta(minutes=61))
    recent = decisions_create(order, 20)

    check(recent[-1])

    assert Breaker.objects.filter(state=BreakerState.OPEN).count() == 0


def test_open_breaker_open_again_records_nothing(order, frozen):
    decisions = decisions_create(order, 20, errors=2)
    check(decisions[-1])
    action_breaker = breaker(BreakerScope.ACTION, "substitute_sku")

    check(decisions[-1])
    breakers.breaker_open(
        scope=BreakerScope.ACTION,
        key="substitute_sku",
        cause=BreakerCause.ERROR_RATE,
        detail="again",
    )

    assert action_breaker.events.count() == 1
    assert AuditEntry.objects.filter(target_id=str(action_breaker.pk)).count() == 1


def test_label_opens_breaker(order, frozen):
    decisions = decisions_create(order, 20)
    check(decisions[-1])
    assert breaker(BreakerScope.ACTION, "substitute_sku") is None

    labelled = decisions[0]
    labelled.outcome = DecisionOutcome.ERROR
    labelled.save(update_fields=["outcome"])
    breakers.breaker_record_outcome(decision=labelled)

    assert breaker(BreakerScope.ACTION, "substitute_sku").state == BreakerState.OPEN


# --- Upstream degradation and manual operation -------------------------------------------------


def test_upstream_report_opens_and_recovery_half_opens(order, frozen):
    integration = make_user("bot", "integration")

    opened = breakers.breaker_report_degradation(
        scope=BreakerScope.CHANNEL, key="shop", detail="Shopify API 503s", user=integration
    )

    assert opened.state == BreakerState.OPEN
    assert opened.cause == BreakerCause.UPSTREAM
    assert facts()[0]["trial_allowed"] is False

    # An upstream opening does not cool down: it waits for the recovery report.
    frozen.shift(timedelta(hours=5))
    assert facts()[0]["state"] == BreakerState.OPEN

    recovered = breakers.breaker_report_recovery(
        scope=BreakerScope.CHANNEL, key="shop", detail="Shopify API healthy", user=integration
    )

    assert recovered.state == BreakerState.HALF_OPEN
    assert recovered.cause == BreakerCause.RECOVERY
    assert recovered.trial_started_at == NOW + timedelta(hours=5)
    causes = list(recovered.events.order_by("id").values_list("cause", "actor__username"))
    assert causes == [(BreakerCause.UPSTREAM, "bot"), (BreakerCause.RECOVERY, "bot")]
    assert facts()[0]["trial_allowed"] is True


def test_upstream_report_on_automatic_opening_stops_cool_down(order, frozen):
    breakers.breaker_open(
        scope=BreakerScope.MODEL, key=MODEL, cause=BreakerCause.ERROR_RATE, detail="errors"
    )

    breakers.breaker_report_degradation(
        scope=BreakerScope.MODEL, key=MODEL, detail="model host degraded", user=None
    )
    frozen.shift(timedelta(hours=1))

    assert facts()[0]["state"] == BreakerState.OPEN
    assert facts()[0]["cause"] == BreakerCause.UPSTREAM


def test_recovery_leaves_manual_opening_open(order, frozen):
    ops = make_user("olivia", "ops_manager")
    breakers.breaker_open(
        scope=BreakerScope.CHANNEL,
        key="shop",
        cause=BreakerCause.MANUAL,
        detail="Pausing for the sale",
        user=ops,
    )

    result = breakers.breaker_report_recovery(
        scope=BreakerScope.CHANNEL, key="shop", detail="fine", user=None
    )

    assert result.state == BreakerState.OPEN
    assert result.cause == BreakerCause.MANUAL


def test_manual_open_and_close(order, frozen):
    ops = make_user("olivia", "ops_manager")

    opened = breakers.breaker_open(
        scope=BreakerScope.ACTION,
        key="substitute_sku",
        cause=BreakerCause.MANUAL,
        detail="Supplier catalog is being rebuilt",
        user=ops,
    )
    frozen.shift(timedelta(days=1))
    # A breaker opened by hand never cools down on its own.
    assert facts()[0]["state"] == BreakerState.OPEN
    assert breakers_sweep() == 0

    closed = breakers.breaker_close(breaker_id=opened.pk, user=ops, detail="Catalog rebuilt")
    again = breakers.breaker_close(breaker_id=opened.pk, user=ops, detail="twice")

    assert closed.state == BreakerState.CLOSED
    assert again.state == BreakerState.CLOSED
    events = list(opened.events.order_by("id"))
    assert [(event.from_state, event.to_state) for event in events] == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.CLOSED),
    ]
    assert all(event.actor == ops for event in events)
    audits = AuditEntry.objects.filter(target_id=str(opened.pk)).order_by("id")
    assert [audit.action for audit in audits] == ["breaker.open", "breaker.closed"]
    assert audits[1].actor == ops
    assert audits[1].reason == "Catalog rebuilt"
    assert facts() == []


def test_breaker_open_rejects_unknown_scope(db):
    with pytest.raises(breakers.BreakerError) as raised:
        breakers.breaker_open(scope="warehouse", key="x", cause=BreakerCause.MANUAL, detail="x")

    assert raised.value.field == "scope"


def test_breaker_close_unknown_id(db):
    ops = make_user("olivia", "ops_manager")

    with pytest.raises(breakers.BreakerError) as raised:
        breakers.breaker_close(breaker_id=999, user=ops, detail="x")

    assert raised.value.status == 404


# --- Cool-down and the half-open trial ---------------------------------------------------------


def open_on_errors(order) -> Breaker:
    decisions = decisions_create(order, 20, errors=4)
    check(decisions[-1])
    return breaker(BreakerScope.ACTION, "substitute_sku")


def test_cool_down_half_opens_and_trial_passes(order, frozen):
    opened = open_on_errors(order)
    assert opened.state == BreakerState.OPEN

    frozen.shift(timedelta(minutes=29))
    assert [fact["state"] for fact in facts()] == [BreakerState.OPEN] * 3

    frozen.shift(timedelta(minutes=1))
    action_fact = next(fact for fact in facts() if fact["scope"] == BreakerScope.ACTION)
    assert action_fact["state"] == BreakerState.HALF_OPEN
    assert action_fact["trial_allowed"] is True

    # Five clean trial decisions (the default) close the breaker.
    frozen.shift(timedelta(minutes=1))
    trial = decisions_create(order, 5)
    assert all(not fact["trial_allowed"] for fact in facts())
    check(trial[-1])

    closed = breaker(BreakerScope.ACTION, "substitute_sku")
    assert closed.state == BreakerState.CLOSED
    assert closed.cause == BreakerCause.TRIAL_PASSED
    assert closed.events.order_by("-id").first().data["trial_decisions"] == [
        decision.pk for decision in trial
    ]
    # The errors that opened it are still in the window but no longer count.
    check(trial[-1])
    assert breaker(BreakerScope.ACTION, "substitute_sku").state == BreakerState.CLOSED


def test_trial_waits_for_all_decisions(order, frozen):
    open_on_errors(order)
    frozen.shift(timedelta(minutes=30))
    facts()
    frozen.shift(timedelta(minutes=1))

    trial = decisions_create(order, 4)
    check(trial[-1])

    assert breaker(BreakerScope.ACTION, "substitute_sku").state == BreakerState.HALF_OPEN


def test_trial_failure_reopens(order, frozen):
    open_on_errors(order)
    frozen.shift(timedelta(minutes=30))
    facts()
    frozen.shift(timedelta(minutes=1))

    trial = decisions_create(order, 2, apply_errors=1)
    check(trial[-1])

    reopened = breaker(BreakerScope.ACTION, "substitute_sku")
    assert reopened.state == BreakerState.OPEN
    assert reopened.cause == BreakerCause.TRIAL_FAILED
    assert reopened.trial_started_at is None
    # A failed trial cools down again like any automatic opening.
    frozen.shift(timedelta(minutes=30))
    assert breakers_sweep() >= 1
    assert breaker(BreakerScope.ACTION, "substitute_sku").state == BreakerState.HALF_OPEN


def test_label_fails_trial(order, frozen):
    open_on_errors(order)
    frozen.shift(timedelta(minutes=30))
    facts()
    frozen.shift(timedelta(minutes=1))
    trial = decisions_create(order, 3)
    check(trial[-1])

    trial[0].outcome = DecisionOutcome.ERROR
    trial[0].save(update_fields=["outcome"])
    breakers.breaker_record_outcome(decision=trial[0])

    assert breaker(BreakerScope.ACTION, "substitute_sku").cause == BreakerCause.TRIAL_FAILED


def test_sweep_half_opens_without_traffic(order, frozen):
    open_on_errors(order)
    frozen.shift(timedelta(minutes=30))

    changed = breakers_sweep()

    assert changed == 3
    assert set(Breaker.objects.values_list("state", flat=True)) == {BreakerState.HALF_OPEN}
    assert BreakerEvent.objects.filter(cause=BreakerCause.COOL_DOWN).count() == 3


def test_breaker_facts_one_query_when_closed(order, django_assert_num_queries):
    Breaker.objects.create(scope=BreakerScope.ACTION, key="substitute_sku")

    with django_assert_num_queries(1):
        assert facts() == []


# --- Behaviour: decision mix and confidence ----------------------------------------------------


def mix_baseline(order) -> None:
    # Over the last days substitutions were 10 % of the channel's decisions.
    day_ago = NOW - timedelta(days=1)
    decisions_create(order, 10, applied=False, verdict=Verdict.QUEUED_FOR_REVIEW, at=day_ago)
    decisions_create(
        order,
        90,
        action="select_carrier",
        applied=False,
        verdict=Verdict.QUEUED_FOR_REVIEW,
        at=day_ago,
    )


def test_decision_mix_three_times_baseline_opens(order, frozen):
    mix_baseline(order)
    decisions_create(order, 14, action="select_carrier", applied=False)
    window = decisions_create(order, 6, applied=False)  # 30 % of 20 decisions

    check(window[-1])

    action_breaker = breaker(BreakerScope.ACTION, "substitute_sku")
    assert action_breaker.state == BreakerState.OPEN
    assert action_breaker.cause == BreakerCause.DECISION_MIX
    data = action_breaker.events.get().data
    assert data["window_share"] == "0.3000"
    assert data["baseline_share"] == "0.1000"
    assert breaker(BreakerScope.CHANNEL, "shop") is None


def test_decision_mix_under_three_times_stays_closed(order, frozen):
    mix_baseline(order)
    decisions_create(order, 15, action="select_carrier", applied=False)
    window = decisions_create(order, 5, applied=False)  # 25 % of 20 decisions

    check(window[-1])

    assert breaker(BreakerScope.ACTION, "substitute_sku") is None


def test_confidence_collapse_opens(order, frozen):
    decisions_create(order, 20, applied=False, confidence="0.95", at=NOW - timedelta(days=2))
    window = decisions_create(order, 20, applied=False, confidence="0.80")

    check(window[-1])

    model_breaker = breaker(BreakerScope.MODEL, MODEL)
    assert model_breaker.state == BreakerState.OPEN
    assert model_breaker.cause == BreakerCause.CONFIDENCE_COLLAPSE
    assert model_breaker.events.get().data["window_mean"] == "0.8000"
    assert breaker(BreakerScope.ACTION, "substitute_sku").cause == (
        BreakerCause.CONFIDENCE_COLLAPSE
    )


def test_confidence_small_drop_stays_closed(order, frozen):
    decisions_create(order, 20, applied=False, confidence="0.95", at=NOW - timedelta(days=2))
    window = decisions_create(order, 20, applied=False, confidence="0.81")

    check(window[-1])

    assert Breaker.objects.count() == 0


# --- End to end through the decision service ---------------------------------------------------


@pytest.fixture
def ingested_order(default_policies, catalog, post_webhook):
    """A standard customer's USD 44.98 order of a USD 19.99 T-shirt, with fresh substitute stock."""
    from catalog.models import Sku
    from inventory.models import Location, LocationKind, StockLevel
    from orders.models import Order
    from tests.conftest import as_body, order_payload

    assert post_webhook(as_body(order_payload())).status_code == 200
    warehouse = Location.objects.create(code="WH", name="Warehouse", kind=LocationKind.WAREHOUSE)
    StockLevel.objects.create(
        sku=Sku.objects.get(code="TEE-CLASSIC-WHT-M"),
        location=warehouse,
        on_hand=10,
        counted_at=timezone.now(),
    )
    return Order.objects.get()


def propose_substitution(order):
    from guardrails.services import decision_propose

    return decision_propose(
        order_id=order.pk,
        action_code="substitute_sku",
        before={"line": 1, "sku": "TEE-CLASSIC-BLK-M"},
        after={"line": 1, "sku": "TEE-CLASSIC-WHT-M"},
        confidence=Decimal("0.97"),
        model_name=MODEL,
        model_version="2024-06",
    )


def failed_rules(decision) -> set[str]:
    return {reason["rule"] for reason in decision.reasons if reason["outcome"] == "fail"}


def test_substitution_applies_without_breaker(ingested_order):
    decision = propose_substitution(ingested_order)

    assert decision.verdict == Verdict.APPLIED
    assert failed_rules(decision) == set()


def test_open_breaker_sends_substitution_to_review(ingested_order):
    breakers.breaker_open(
        scope=BreakerScope.ACTION,
        key="substitute_sku",
        cause=BreakerCause.MANUAL,
        detail="Supplier catalog is being rebuilt",
        user=make_user("olivia", "ops_manager"),
    )

    decision = propose_substitution(ingested_order)

    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW
    assert failed_rules(decision) == {"breaker"}
    assert decision.review_item is not None


def test_half_open_trial_lets_substitution_apply(ingested_order):
    breakers.breaker_report_degradation(
        scope=BreakerScope.MODEL, key=MODEL, detail="model host degraded", user=None
    )
    breakers.breaker_report_recovery(
        scope=BreakerScope.MODEL, key=MODEL, detail="model host healthy", user=None
    )

    decision = propose_substitution(ingested_order)

    assert decision.verdict == Verdict.APPLIED
    breaker_reason = next(reason for reason in decision.reasons if reason["rule"] == "breaker")
    assert breaker_reason["outcome"] == "info"


def test_suspended_gate_sends_substitution_to_review(ingested_order):
    gate = AutonomyGate.objects.get(action__code="substitute_sku")
    decisions_create(ingested_order, 100, errors=1)
    assert autonomy_gate_recompute(action_code="substitute_sku").suspended is True

    decision = propose_substitution(ingested_order)

    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW
    assert failed_rules(decision) == {"autonomy_gate"}
    gate.refresh_from_db()
    assert decision.facts["autonomy"]["errors"] == gate.errors
