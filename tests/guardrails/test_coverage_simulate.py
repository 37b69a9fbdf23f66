"""The policy coverage report and the decision simulator: selector, pages and commands."""

import json
import re
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from catalog.models import Channel, ChannelKind
from guardrails.coverage import policy_coverage
from guardrails.models import ActionType, Policy
from guardrails.policies import policy_version_create, policy_version_publish
from orders.models import Delivery, Order, OrderStatus
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

SIMULATE_URL = "guardrails:simulate"
COVERAGE_URL = "guardrails:coverage"


@pytest.fixture
def channels(channel) -> list[Channel]:
    amazon = Channel.objects.create(kind=ChannelKind.AMAZON, code="amazon", webhook_secret="s")
    Channel.objects.create(
        kind=ChannelKind.SHOPIFY, code="retired", webhook_secret="s", is_active=False
    )
    return [channel, amazon]


@pytest.fixture
def amazon_substitution(channels, ops) -> Policy:
    """A hard block on substitutions for the amazon channel only."""
    policy = Policy.objects.create(
        action=ActionType.objects.get(code="substitute_sku"), channel=channels[1]
    )
    version = policy_version_create(
        policy=policy,
        user=ops,
        changelog="The marketplace forbids substitutions.",
        mode="hard_block",
        approver_group="cs_manager",
    )
    policy_version_publish(version=version, user=ops)
    return policy


def _rows_by_pair(rows) -> dict[tuple[str, str], str]:
    return {(row.action.code, row.channel.code): row.source for row in rows}


def test_coverage_every_active_pair(channels, amazon_substitution):
    rows = _rows_by_pair(policy_coverage())

    assert len(rows) == ActionType.objects.count() * 2
    assert rows[("substitute_sku", "amazon")] == "channel"
    assert rows[("substitute_sku", "shop")] == "default"
    assert rows[("cancel_order", "amazon")] == "default"
    assert ("substitute_sku", "retired") not in rows


def test_coverage_reports_no_policy(channels):
    action = ActionType.objects.get(code="cancel_order")
    Policy.objects.filter(action=action).update(live_version=None)

    rows = _rows_by_pair(policy_coverage())

    assert rows[("cancel_order", "shop")] == "none"


def test_coverage_draft_only_channel_policy_falls_back(channels, ops):
    policy = Policy.objects.create(
        action=ActionType.objects.get(code="select_carrier"), channel=channels[0]
    )
    policy_version_create(
        policy=policy, user=ops, changelog="Draft", mode="needs_approval", approver_group="cs_agent"
    )

    rows = _rows_by_pair(policy_coverage())

    assert rows[("select_carrier", "shop")] == "default"


def test_coverage_missing_only(channels, amazon_substitution):
    rows = _rows_by_pair(policy_coverage(missing_only=True))

    assert ("substitute_sku", "amazon") not in rows
    assert ("substitute_sku", "shop") in rows


def test_coverage_page(client, channels, amazon_substitution):
    client.force_login(make_user("alice", "cs_agent"))

    response = client.get(reverse(COVERAGE_URL))

    assert response.status_code == 200
    assert b"Channel policy" in response.content
    assert len(response.context["rows"]) == ActionType.objects.count() * 2


def test_coverage_page_missing_only(client, channels, amazon_substitution):
    client.force_login(make_user("alice", "cs_agent"))

    response = client.get(reverse(COVERAGE_URL), {"missing": "1"})

    assert len(response.context["rows"]) == ActionType.objects.count() * 2 - 1


def test_coverage_page_needs_permission(client, channels):
    client.force_login(make_user("mallory", None))

    assert client.get(reverse(COVERAGE_URL)).status_code == 403


def test_coverage_page_needs_login(client):
    response = client.get(reverse(COVERAGE_URL))

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_coverage_command(channels, amazon_substitution, capsys):
    call_command("policy_coverage")

    output = capsys.readouterr().out
    assert re.search(r"substitute_sku\s+amazon\s+channel policy\s+v1\s+hard_block", output)
    assert re.search(r"substitute_sku\s+shop\s+all channels\s+v1\s+autonomous", output)
    assert f"{ActionType.objects.count() * 2} row(s), 1 with a channel policy." in output


def test_coverage_command_missing_only(channels, amazon_substitution, capsys):
    call_command("policy_coverage", "--missing-only")

    output = capsys.readouterr().out
    assert "channel policy" not in output.replace("with a channel policy", "")
    assert f"{ActionType.objects.count() * 2 - 1} row(s), 0 with a channel policy." in output


def _simulate_params(**changes) -> dict:
    params = {
        "action": "substitute_sku",
        "channel": "shop",
        "order_value": "40",
        "currency": "USD",
        "item_price": "24.99",
        "confidence": "0.93",
        "customer_tier": "standard",
        "stock": "fresh",
    }
    params.update(changes)
    return params


@pytest.fixture
def viewer(client, channel):
    client.force_login(make_user("morgan", "cs_manager"))
    return client


def _reasons(response) -> dict[str, str]:
    return {
        reason["rule"]: reason["outcome"]
        for reason in response.context["result"].evaluation.reasons
    }


def test_simulate_page_applies_under_limits(viewer):
    response = viewer.get(reverse(SIMULATE_URL), _simulate_params())

    assert response.status_code == 200
    assert response.context["result"].evaluation.verdict == "applied"
    reasons = _reasons(response)
    assert reasons["item_price"] == "pass"
    assert reasons["confidence"] == "pass"
    assert reasons["stock_fresh"] == "pass"
    assert reasons["listing_constraint"] == "pass"
    assert b"Verdict: applied" in response.content


def test_simulate_page_item_at_limit_queues(viewer):
    response = viewer.get(reverse(SIMULATE_URL), _simulate_params(item_price="25.00"))

    assert response.context["result"].evaluation.verdict == "queued_for_review"
    assert _reasons(response)["item_price"] == "fail"


def test_simulate_page_stale_stock_queues(viewer):
    response = viewer.get(reverse(SIMULATE_URL), _simulate_params(stock="stale"))

    assert response.context["result"].evaluation.verdict == "queued_for_review"
    assert _reasons(response)["stock_fresh"] == "fail"


def test_simulate_page_pickup_to_ship_blocked(viewer):
    params = _simulate_params(action="reroute_fulfilment", pickup_to_ship="on")

    response = viewer.get(reverse(SIMULATE_URL), params)

    assert response.context["result"].evaluation.verdict == "blocked"
    assert _reasons(response)["pickup_never_rerouted"] == "block"


def test_simulate_page_under_draft_version(viewer, ops):
    policy = Policy.objects.get(action__code="substitute_sku", channel__isnull=True)
    draft = policy_version_create(
        policy=policy,
        user=ops,
        changelog="Lower the price limit",
        mode="autonomous",
        approver_group="cs_agent",
        item_price_under=Decimal("20"),
        confidence_above=Decimal("0.92"),
        review_sla_minutes=60,
    )

    live = viewer.get(reverse(SIMULATE_URL), _simulate_params())
    drafted = viewer.get(reverse(SIMULATE_URL), _simulate_params(version=draft.pk))

    assert live.context["result"].evaluation.verdict == "applied"
    assert drafted.context["result"].evaluation.verdict == "queued_for_review"
    assert drafted.context["result"].version == draft


BAD_INPUT = [
    ("order_value", "forty"),
    ("confidence", "1.5"),
    ("confidence", "NaN"),
    ("item_price", "-2"),
    ("currency", "ZZZ"),
    ("action", "teleport"),
    ("version", "999999"),
    ("margin_rate", "abc"),
]


@pytest.mark.parametrize("field,value", BAD_INPUT)
def test_simulate_page_bad_input_is_form_error(viewer, field, value):
    response = viewer.get(reverse(SIMULATE_URL), _simulate_params(**{field: value}))

    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert response.context["result"] is None


def test_simulate_page_version_of_other_action(viewer):
    other = Policy.objects.get(action__code="cancel_order").live_version

    response = viewer.get(reverse(SIMULATE_URL), _simulate_params(version=other.pk))

    assert response.status_code == 400
    assert "version" in response.context["form"].errors


def test_simulate_page_blank_form(viewer):
    response = viewer.get(reverse(SIMULATE_URL))

    assert response.status_code == 200
    assert response.context["result"] is None


def test_simulate_page_needs_permission(client, channel):
    client.force_login(make_user("mallory", None))

    assert client.get(reverse(SIMULATE_URL), _simulate_params()).status_code == 403


def test_simulate_command_prints_every_rule(channel, capsys):
    call_command(
        "simulate_decision",
        "--action=substitute_sku",
        "--channel=shop",
        "--order-value=40",
        "--item-price=24.99",
        "--confidence=0.93",
    )

    output = capsys.readouterr().out
    assert output.startswith("Verdict: applied (judged by substitute_sku (all channels) v1)")
    for rule in ("listing_constraint", "policy", "mode", "item_price", "confidence", "stock_fresh"):
        assert f"  {rule}" in output


def test_simulate_command_confidence_at_limit(channel, capsys):
    call_command(
        "simulate_decision",
        "--action=substitute_sku",
        "--order-value=40",
        "--item-price=10",
        "--confidence=0.92",
        "--json",
    )

    output = json.loads(capsys.readouterr().out)
    assert output["evaluation"]["verdict"] == "queued_for_review"
    failed = [r["rule"] for r in output["evaluation"]["reasons"] if r["outcome"] == "fail"]
    assert failed == ["confidence"]


def test_simulate_command_rejects_bad_number(channel):
    with pytest.raises(CommandError, match="--order-value"):
        call_command(
            "simulate_decision",
            "--action=substitute_sku",
            "--order-value=lots",
            "--confidence=0.9",
        )


def test_simulate_command_real_order(channel, capsys):
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id="wh-sim",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
    )
    order = Order.objects.create(
        channel=channel,
        channel_order_id="9001",
        delivery=delivery,
        status=OrderStatus.ON_HOLD,
        currency="USD",
        subtotal=Decimal("1200"),
        shipping_total=Decimal("0"),
        tax_total=Decimal("0"),
        discount_total=Decimal("0"),
        total=Decimal("1200"),
    )

    call_command(
        "simulate_decision",
        "--action=substitute_sku",
        f"--order={order.pk}",
        "--item-price=10",
        "--confidence=0.99",
        "--json",
    )

    output = json.loads(capsys.readouterr().out)
    assert output["facts"]["order"]["id"] == order.pk
    assert output["evaluation"]["band"] == "Order value 1000 USD and over"
    assert output["evaluation"]["verdict"] == "queued_for_review"


def test_simulate_command_unknown_order(channel):
    with pytest.raises(CommandError, match="no order has id"):
        call_command(
            "simulate_decision", "--action=substitute_sku", "--order=424242", "--confidence=0.9"
        )


def test_simulate_link_without_optional_fields(viewer):
    response = viewer.get(
        "/guardrails/simulate/",
        {
            "action": "substitute_sku",
            "channel": "",
            "order_value": "40",
            "currency": "USD",
            "item_price": "24.99",
            "confidence": "0.93",
        },
    )

    assert response.status_code == 200
    assert response.context["result"].evaluation.verdict == "applied"
