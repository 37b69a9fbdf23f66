"""A held channel stops automation: AI proposals on its orders go to a person."""

import pytest

from guardrails.backtest import backtest_run
from guardrails.engine import evaluate, rules_from_version
from guardrails.models import Decision, Policy, Verdict
from orders.channel_holds import channel_orders_hold, channel_orders_release
from reviews.models import ReviewItem, ReviewStatus

from .backtest_fixtures import live_version, version_copy
from .conftest_decisions import (  # noqa: F401 (fixtures)
    bot_api_fixture,
    locations_fixture,
    order_fixture,
    proposal,
)

URL = "/api/v1/decisions/"
HOLD_REASON = "Carrier outage in Texas."
FASTER_CARRIER = ({"carrier_service": "ups/ground"}, {"carrier_service": "ups/2nd_day_air"})


def propose_carrier(bot_api, order, **overrides):
    body = proposal(order, "select_carrier", *FASTER_CARRIER, confidence="0.99", **overrides)
    return bot_api.post(URL, body, format="json")


def reasons_by_rule(body: dict) -> dict[str, dict]:
    return {reason["rule"]: reason for reason in body["reasons"]}


@pytest.fixture
def held(channel):
    return channel_orders_hold(channel=channel, user=None, reason=HOLD_REASON)


# --- Through the decisions API -------------------------------------------------------------


def test_confident_carrier_pick_queued(bot_api, order, held):
    response = propose_carrier(bot_api, order)

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["verdict"] == Verdict.QUEUED_FOR_REVIEW
    assert [reason["rule"] for reason in body["fired"]] == ["channel_held"]
    assert reasons_by_rule(body)["channel_held"]["message"] == (
        "Channel shop's orders are held: Carrier outage in Texas. No automation applies "
        "changes to its orders until a person releases the channel."
    )
    order.refresh_from_db()
    assert order.carrier_service.code == "ground"
    item = ReviewItem.objects.get(ai_decision=body["id"])
    assert item.status == ReviewStatus.OPEN


def test_facts_snapshot_records_hold(bot_api, order, held):
    response = propose_carrier(bot_api, order)

    facts = Decision.objects.get(pk=response.json()["id"]).facts
    assert facts["channel_orders_held"] is True
    assert facts["channel_orders_held_reason"] == HOLD_REASON


def test_released_channel_applies_again(bot_api, order, held):
    channel_orders_release(channel=held, user=None, note="Outage over")

    response = propose_carrier(bot_api, order)

    body = response.json()
    assert body["verdict"] == Verdict.APPLIED
    assert reasons_by_rule(body)["channel_held"]["outcome"] == "pass"
    assert Decision.objects.get(pk=body["id"]).facts["channel_orders_held"] is False
    assert Decision.objects.get(pk=body["id"]).facts["channel_orders_held_reason"] == ""
    order.refresh_from_db()
    assert order.carrier_service.code == "2nd_day_air"


def test_blocked_stays_blocked(bot_api, order, held):
    order.in_store_pickup = True
    order.carrier_service = None
    order.save(update_fields=["in_store_pickup", "carrier_service"])

    response = bot_api.post(
        URL,
        proposal(
            order, "select_carrier", {"carrier_service": None}, {"carrier_service": "ups/ground"}
        ),
        format="json",
    )

    body = response.json()
    assert body["verdict"] == Verdict.BLOCKED
    assert {reason["rule"] for reason in body["fired"]} == {
        "pickup_never_rerouted",
        "channel_held",
    }


def test_recommendation_stays_recommendation(bot_api, order, held):
    response = bot_api.post(
        URL,
        proposal(order, "estimate_ship_date", {}, {"ship_date": "2026-12-08"}, confidence="0.99"),
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["verdict"] == Verdict.RECOMMENDATION_ONLY


# --- The engine on stored facts ------------------------------------------------------------


def carrier_facts(**changes) -> dict:
    """A confident carrier pick on a small order, which the default policy applies."""
    facts = {
        "action": "select_carrier",
        "channel": "shop",
        "order": {
            "id": 7,
            "status": "ready",
            "currency": "USD",
            "total": "40.00",
            "customer_tier": "standard",
            "margin_rate": None,
            "in_store_pickup": False,
        },
        "item_price": None,
        "confidence": "0.99",
        "model": {"name": "gpt-carrier", "version": "1"},
        "pickup_to_ship": False,
        "breakers": [],
        "autonomy": {
            "suspended": False,
            "error_rate": "0",
            "max_error_rate": "0.002",
            "window_days": 30,
        },
    }
    return facts | changes


def carrier_rules():
    version = Policy.objects.get(action__code="select_carrier", channel__isnull=True).live_version
    return rules_from_version(version)


@pytest.mark.parametrize(
    ("changes", "verdict"),
    [
        ({}, "applied"),
        ({"channel_orders_held": False, "channel_orders_held_reason": ""}, "applied"),
        ({"channel_orders_held": True, "channel_orders_held_reason": "Audit"}, "queued_for_review"),
    ],
    ids=["facts before the rule", "not held", "held"],
)
def test_engine_hold_verdicts(default_policies, changes, verdict):
    evaluation = evaluate(rules=carrier_rules(), facts=carrier_facts(**changes))

    assert evaluation.verdict == verdict


def test_engine_old_facts_get_no_hold_reason(default_policies):
    evaluation = evaluate(rules=carrier_rules(), facts=carrier_facts())

    assert "channel_held" not in [reason["rule"] for reason in evaluation.reasons]


def test_engine_hold_without_policy_queues(default_policies):
    facts = carrier_facts(channel_orders_held=True, channel_orders_held_reason="")

    evaluation = evaluate(rules=None, facts=facts)

    assert evaluation.verdict == "queued_for_review"
    held = [reason for reason in evaluation.fired() if reason["rule"] == "channel_held"]
    assert [reason["outcome"] for reason in held] == ["fail"]
    assert held[0]["message"].startswith("Channel shop's orders are held: no reason given. ")


def test_backtest_replays_hold(bot_api, order, held):
    queued = propose_carrier(bot_api, order).json()
    same_rules = version_copy(live_version("select_carrier"))

    run = backtest_run(version=same_rules, days=30)

    assert queued["verdict"] == Verdict.QUEUED_FOR_REVIEW
    assert run.decisions_replayed == 1
    assert run.verdicts_changed == 0
    assert run.report["verdicts_after"] == {"queued_for_review": 1}
