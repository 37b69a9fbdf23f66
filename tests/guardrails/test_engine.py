"""The shipped default policies judged by the engine, at the limits the product brief sets."""

import pytest

from guardrails.engine import evaluate, rules_from_version
from guardrails.models import Policy

pytestmark = pytest.mark.django_db


def _rules(code: str):
    version = Policy.objects.get(action__code=code, channel__isnull=True).live_version
    return rules_from_version(version)


def _facts(action: str = "substitute_sku", **changes) -> dict:
    """A substitution on a standard customer's USD 40 order that passes every default limit."""
    order = {
        "id": 7,
        "status": "on_hold",
        "currency": "USD",
        "total": "40.00",
        "customer_tier": "standard",
        "margin_rate": "0.35",
        "in_store_pickup": False,
    }
    order.update(changes.pop("order", {}))
    facts = {
        "action": action,
        "channel": "shop",
        "order": order,
        "item_price": "19.99",
        "confidence": "0.95",
        "model": {"name": "gpt-sub", "version": "1"},
        "stock": {"checked": True, "fresh": True, "as_of": "2026-12-01T10:00:00+00:00"},
        "listing_forbids": False,
        "breakers": [],
        "autonomy": {
            "suspended": False,
            "error_rate": "0",
            "max_error_rate": "0.002",
            "window_days": 30,
        },
    }
    facts.update(changes)
    return facts


def _outcome(evaluation, rule: str) -> str:
    outcomes = [reason["outcome"] for reason in evaluation.reasons if reason["rule"] == rule]
    assert len(outcomes) == 1, evaluation.reasons
    return outcomes[0]


# (case, fact changes, verdict, rule that decided it, its outcome)
SUBSTITUTION_BOUNDARIES = [
    ("item 24.99 applies", {"item_price": "24.99"}, "applied", "item_price", "pass"),
    ("item 25.00 queues", {"item_price": "25.00"}, "queued_for_review", "item_price", "fail"),
    ("confidence 0.9201 applies", {"confidence": "0.9201"}, "applied", "confidence", "pass"),
    (
        "confidence 0.9200 queues",
        {"confidence": "0.9200"},
        "queued_for_review",
        "confidence",
        "fail",
    ),
    (
        "stale stock queues",
        {"stock": {"checked": True, "fresh": False, "as_of": "2026-11-30T10:00:00+00:00"}},
        "queued_for_review",
        "stock_fresh",
        "fail",
    ),
    (
        "no stock snapshot queues",
        {"stock": {"checked": False, "fresh": False, "as_of": None}},
        "queued_for_review",
        "stock_fresh",
        "fail",
    ),
    (
        "EUR order queues",
        {"order": {"currency": "EUR"}, "item_price": "9.99"},
        "queued_for_review",
        "item_price",
        "fail",
    ),
    (
        "priority customer queues",
        {"order": {"customer_tier": "priority"}},
        "queued_for_review",
        "mode",
        "fail",
    ),
    (
        "order 1000 USD queues",
        {"order": {"total": "1000.00"}},
        "queued_for_review",
        "mode",
        "fail",
    ),
    ("order 999.99 USD applies", {"order": {"total": "999.99"}}, "applied", "mode", "pass"),
    ("listing forbids blocks", {"listing_forbids": True}, "blocked", "listing_constraint", "block"),
]


@pytest.mark.parametrize(
    "case,changes,verdict,rule,outcome",
    SUBSTITUTION_BOUNDARIES,
    ids=[row[0] for row in SUBSTITUTION_BOUNDARIES],
)
def test_substitution_default(case, changes, verdict, rule, outcome):
    evaluation = evaluate(rules=_rules("substitute_sku"), facts=_facts(**changes))

    assert evaluation.verdict == verdict
    assert _outcome(evaluation, rule) == outcome


def test_priority_band_names_band_and_approver():
    evaluation = evaluate(
        rules=_rules("substitute_sku"), facts=_facts(order={"customer_tier": "priority"})
    )

    assert evaluation.band == "Priority customers"
    assert evaluation.approver_group == "cs_agent"
    assert evaluation.review_sla_minutes == 60


def test_eur_order_matches_no_value_band():
    evaluation = evaluate(
        rules=_rules("substitute_sku"), facts=_facts(order={"currency": "EUR", "total": "5000"})
    )

    assert evaluation.band is None


@pytest.mark.parametrize(
    "code", ["change_billing_address", "split_order_carriers", "downgrade_shipping_service"]
)
def test_hard_blocked_default(code):
    facts = _facts(code, confidence="0.99")
    facts.pop("listing_forbids")

    evaluation = evaluate(rules=_rules(code), facts=facts)

    assert evaluation.verdict == "blocked"
    assert _outcome(evaluation, "mode") == "block"


def test_pickup_to_ship_blocked_despite_approval_policy():
    facts = _facts("reroute_fulfilment", pickup_to_ship=True, order={"in_store_pickup": True})
    facts.pop("listing_forbids")

    evaluation = evaluate(rules=_rules("reroute_fulfilment"), facts=facts)

    assert evaluation.verdict == "blocked"
    assert _outcome(evaluation, "pickup_never_rerouted") == "block"


def test_reroute_between_warehouses_needs_manager():
    facts = _facts("reroute_fulfilment", pickup_to_ship=False)
    facts.pop("listing_forbids")

    evaluation = evaluate(rules=_rules("reroute_fulfilment"), facts=facts)

    assert evaluation.verdict == "queued_for_review"
    assert evaluation.approver_group == "cs_manager"
    assert _outcome(evaluation, "pickup_never_rerouted") == "pass"


@pytest.mark.parametrize("code", ["estimate_ship_date", "suggest_packaging"])
def test_recommend_only_default(code):
    facts = _facts(code, confidence="0.99")
    facts.pop("listing_forbids")

    evaluation = evaluate(rules=_rules(code), facts=facts)

    assert evaluation.verdict == "recommendation_only"
    assert _outcome(evaluation, "mode") == "info"


# (code, SLA minutes) of the defaults that always need a CS manager
APPROVAL_DEFAULTS = [("correct_shipping_address", 30), ("cancel_order", 60)]


@pytest.mark.parametrize("code,sla", APPROVAL_DEFAULTS)
def test_needs_approval_default(code, sla):
    facts = _facts(code, confidence="0.99")
    facts.pop("listing_forbids")

    evaluation = evaluate(rules=_rules(code), facts=facts)

    assert evaluation.verdict == "queued_for_review"
    assert evaluation.approver_group == "cs_manager"
    assert evaluation.review_sla_minutes == sla


# (case, fact changes, verdict)
CARRIER_CASES = [
    ("confident small order applies", {"confidence": "0.86"}, "applied"),
    ("confidence 0.85 queues", {"confidence": "0.85"}, "queued_for_review"),
    ("order 1000 USD queues", {"order": {"total": "1000"}}, "queued_for_review"),
]


@pytest.mark.parametrize("case,changes,verdict", CARRIER_CASES, ids=[c[0] for c in CARRIER_CASES])
def test_select_carrier_default(case, changes, verdict):
    facts = _facts("select_carrier", **changes)
    facts.pop("listing_forbids")

    evaluation = evaluate(rules=_rules("select_carrier"), facts=facts)

    assert evaluation.verdict == verdict


def test_suspended_autonomy_queues_substitution():
    autonomy = {
        "suspended": True,
        "error_rate": "0.003",
        "max_error_rate": "0.002",
        "window_days": 30,
    }

    evaluation = evaluate(rules=_rules("substitute_sku"), facts=_facts(autonomy=autonomy))

    assert evaluation.verdict == "queued_for_review"
    assert _outcome(evaluation, "autonomy_gate") == "fail"
    # The rate counts failed applies as well as labelled errors, so the message says both.
    assert _message(evaluation, "autonomy_gate") == (
        "Error rate (labelled errors and failed applies) 0.003 over 30 days is at or over "
        "0.002; autonomy is suspended."
    )


def test_open_autonomy_gate_names_what_the_rate_counts():
    evaluation = evaluate(rules=_rules("substitute_sku"), facts=_facts())

    assert _outcome(evaluation, "autonomy_gate") == "pass"
    assert _message(evaluation, "autonomy_gate") == (
        "Error rate (labelled errors and failed applies) 0 is under 0.002."
    )


def _message(evaluation, rule: str) -> str:
    messages = [reason["message"] for reason in evaluation.reasons if reason["rule"] == rule]
    assert len(messages) == 1, evaluation.reasons
    return messages[0]


def test_money_reasons_use_minor_digits():
    evaluation = evaluate(rules=_rules("substitute_sku"), facts=_facts(item_price="19.990"))

    assert _message(evaluation, "item_price") == "Item price USD 19.99 is under 25.00."
