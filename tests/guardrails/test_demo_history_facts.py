"""The demo history stores the facts decision_propose stores, so backtests replay it."""

from collections.abc import Iterator
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction

from guardrails.backtest import backtest_run
from guardrails.facts import facts_for_order, order_facts
from guardrails.models import Decision, Policy
from guardrails.policies import policy_version_create
from monitoring.demo import HISTORY_MODEL_NAME
from orders.models import OrderStatus
from tests.monitoring.test_demo_history import NOW, small_history, world_create


@pytest.fixture(scope="module")
def history(django_db_setup, django_db_blocker) -> Iterator[None]:
    """One small history for the module, rolled back after its last test."""
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            small_history(world_create())
            yield
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


def _live_version(action_code: str):
    return Policy.objects.get(action__code=action_code, channel=None).live_version


@pytest.mark.django_db
@pytest.mark.parametrize("action_code", ["select_carrier", "substitute_sku"])
def test_live_policy_backtest_changes_nothing(history, action_code):
    # Address corrections are left out: their policy queues every one whatever the facts.
    history_decisions = Decision.objects.filter(
        model_name=HISTORY_MODEL_NAME, action__code=action_code
    )

    with time_machine.travel(NOW, tick=False):
        run = backtest_run(version=_live_version(action_code), days=365)

    # Applied decisions are the ones a replay on missing facts would send to a person.
    assert history_decisions.filter(verdict="applied").exists()
    assert run.decisions_replayed == history_decisions.count()
    assert run.report["by_transition"] == {}
    assert run.verdicts_changed == 0


@pytest.mark.django_db
def test_stricter_draft_changes_only_less_confident(history):
    live = _live_version("select_carrier")
    draft = policy_version_create(
        policy=live.policy,
        user=None,
        changelog="Only very confident carrier choices run on their own.",
        mode=live.mode,
        approver_group=live.approver_group,
        order_value_under=live.order_value_under,
        confidence_above=Decimal("0.97"),
        review_sla_minutes=live.review_sla_minutes,
        on_sla_breach=live.on_sla_breach,
        escalation_group=live.escalation_group,
    )
    less_confident = Decision.objects.filter(
        model_name=HISTORY_MODEL_NAME,
        action__code="select_carrier",
        verdict="applied",
        confidence__lte=Decimal("0.97"),
    ).count()

    with time_machine.travel(NOW, tick=False):
        run = backtest_run(version=draft, days=365)

    assert less_confident > 0
    assert run.verdicts_changed == less_confident
    assert set(run.report["by_transition"]) == {"applied -> queued_for_review"}


def _history_decision(action_code: str) -> Decision:
    # A channel cancellation comes after the decision, so a cancelled order's status today is
    # not the one its decision saw.
    return (
        Decision.objects.filter(model_name=HISTORY_MODEL_NAME, action__code=action_code)
        .exclude(order__status=OrderStatus.CANCELLED)
        .select_related("order__channel", "action")
        .first()
    )


@pytest.mark.django_db
@pytest.mark.parametrize("action_code", ["select_carrier", "correct_shipping_address"])
def test_history_facts_match_decision_propose(history, action_code):
    decision = _history_decision(action_code)

    live_facts = facts_for_order(
        order=decision.order,
        action=decision.action,
        before=decision.before,
        after=decision.after,
        confidence=decision.confidence,
        model_name=decision.model_name,
        model_version=decision.model_version,
    )

    assert set(decision.facts) == set(live_facts)
    assert decision.facts["order"] == live_facts["order"]
    assert decision.facts["confidence"] == live_facts["confidence"]
    assert decision.facts["model"] == live_facts["model"]
    assert decision.facts.get("pickup_to_ship") == live_facts.get("pickup_to_ship")


@pytest.mark.django_db
def test_history_substitution_facts_complete(history):
    decision = _history_decision("substitute_sku")
    line = decision.order.lines.get(position=decision.after["line"])

    assert decision.facts["order"] == order_facts(decision.order)
    assert decision.facts["item_price"] == str(line.unit_price)
    assert decision.facts["stock"]["fresh"] is True
    assert decision.facts["stock"]["quantity"] == line.quantity
    assert decision.facts["listing_forbids"] is False
