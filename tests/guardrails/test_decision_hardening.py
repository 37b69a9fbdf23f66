"""Proposals that must not get round the guardrails, and input the API must reject cleanly."""

import json

import pytest

from guardrails.appliers import carrier_service_by_code
from guardrails.models import Decision, Verdict
from orders.models import OrderLine, OrderStatus
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from reviews.services import ReviewForbidden, review_item_accept, review_item_reject
from tests.conftest import make_user

from .conftest_decisions import (  # noqa: F401 (fixtures)
    SUBSTITUTION,
    bot_api_fixture,
    locations_fixture,
    manager_api_fixture,
    order_fixture,
    proposal,
)

URL = "/api/v1/decisions/"


def post(client, body: dict):
    return client.post(URL, body, format="json")


def test_carrier_pick_cannot_downgrade(bot_api, order):
    order.carrier_service = carrier_service_by_code("ups/next_day_air")
    order.save(update_fields=["carrier_service"])

    response = post(
        bot_api,
        proposal(
            order,
            "select_carrier",
            {"carrier_service": "ups/next_day_air"},
            {"carrier_service": "ups/ground"},
        ),
    )

    assert response.status_code == 400
    assert "downgrade_shipping_service" in response.json()["error"]["fields"]["after"][0]
    order.refresh_from_db()
    assert order.carrier_service.code == "next_day_air"


def test_carrier_pick_faster_is_applied(bot_api, order):
    response = post(
        bot_api,
        proposal(
            order,
            "select_carrier",
            {"carrier_service": "ups/ground"},
            {"carrier_service": "ups/2nd_day_air"},
        ),
    )

    assert response.status_code == 201
    assert response.json()["verdict"] == Verdict.APPLIED


def test_carrier_pick_on_pickup_order_blocked(bot_api, order):
    order.in_store_pickup = True
    order.carrier_service = None
    order.save(update_fields=["in_store_pickup", "carrier_service"])

    response = post(
        bot_api,
        proposal(
            order, "select_carrier", {"carrier_service": None}, {"carrier_service": "ups/ground"}
        ),
    )

    assert response.status_code == 201
    assert response.json()["verdict"] == Verdict.BLOCKED
    assert "pickup_never_rerouted" in [reason["rule"] for reason in response.json()["fired"]]
    order.refresh_from_db()
    assert order.carrier_service is None


def test_substitution_on_unmapped_line_rejected(bot_api, order):
    OrderLine.objects.filter(order=order).update(sku=None)

    response = post(
        bot_api,
        proposal(
            order,
            "substitute_sku",
            {"line": 1, "sku": None},
            {"line": 1, "sku": "TEE-CLASSIC-WHT-M"},
        ),
    )

    assert response.status_code == 400
    assert "no mapped SKU" in response.json()["error"]["fields"]["after"][0]
    assert not Decision.objects.exists()


@pytest.mark.parametrize(
    "after",
    [
        {"carrier_service": "ups/gro\u0000und"},
        {"carrier_service": "ups/ground", "note\u0000": "x"},
    ],
)
def test_nul_character_rejected(bot_api, order, after):
    response = post(
        bot_api, proposal(order, "select_carrier", {"carrier_service": "ups/ground"}, after)
    )

    assert response.status_code == 400
    assert "NUL" in json.dumps(response.json()["error"])


def test_nul_in_rationale_rejected(bot_api, order):
    body = proposal(
        order,
        "select_carrier",
        {"carrier_service": "ups/ground"},
        {"carrier_service": "fedex/ground"},
    )
    body["rationale"] = "cheaper\u0000"

    response = post(bot_api, body)

    assert response.status_code == 400
    assert "rationale" in response.json()["error"]["fields"]


def test_deeply_nested_json_rejected(bot_api, order):
    body = '{"action": "select_carrier", "after": ' + "[" * 100_000 + "]" * 100_000 + "}"

    response = bot_api.post(URL, data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("body", ['{"action": ', "{'action': 1}", "[1, 2,]"])
def test_invalid_json_has_the_orders_api_code(bot_api, order, body):
    response = bot_api.post(URL, data=body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert response.json()["error"]["message"].startswith("JSON parse error")


def test_oversized_body_gets_json_413(bot_api, order, settings):
    body = json.dumps(
        {
            "action": "select_carrier",
            "after": {"x": "a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)},
        }
    )

    response = bot_api.post(URL, data=body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_second_proposal_while_pending_conflicts(bot_api, order):
    body = proposal(
        order, "cancel_order", {"status": OrderStatus.READY}, {"status": OrderStatus.CANCELLED}
    )
    first = post(bot_api, body)
    order.refresh_from_db()

    second = post(bot_api, {**body, "before": {"status": order.status}})

    assert first.json()["verdict"] == Verdict.QUEUED_FOR_REVIEW
    assert second.status_code == 409
    error = second.json()["error"]
    assert error["code"] == "proposal_pending"
    # The agent learns which decision and item to wait for.
    assert (error["decision"], error["review_item"]) == (
        first.json()["id"],
        first.json()["review_item"],
    )
    assert ReviewItem.objects.filter(order=order).count() == 1


def test_identical_retry_of_queued_proposal_learns_it_waits(bot_api, order):
    body = proposal(
        order, "cancel_order", {"status": OrderStatus.READY}, {"status": OrderStatus.CANCELLED}
    )
    first = post(bot_api, body)

    # The queued cancellation put the order on hold, so `before` no longer matches.
    retry = post(bot_api, body)

    assert retry.status_code == 409
    assert retry.json()["error"]["code"] == "proposal_pending"
    assert retry.json()["error"]["decision"] == first.json()["id"]


def test_rejected_proposal_releases_its_hold(bot_api, order, manager):
    body = proposal(
        order, "cancel_order", {"status": OrderStatus.READY}, {"status": OrderStatus.CANCELLED}
    )
    item_id = post(bot_api, body).json()["review_item"]
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD

    review_item_reject(item_id=item_id, user=manager, note="duplicate check was wrong")

    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []


def test_accepted_ai_address_resolves_hygiene_item(bot_api, order, manager):
    hygiene_item = ReviewItem.objects.create(
        kind=ReviewKind.ADDRESS,
        order=order,
        reason="Shipping address scored 0.70",
        source_data={"shipping_address": order.shipping_address},
        proposal={"normalized": order.shipping_address},
    )
    order.status = OrderStatus.ON_HOLD
    order.hold_reasons = [
        {
            "severity": "hold",
            "code": "address_low_score",
            "message": "Shipping address scored 0.70",
            "review_item": hygiene_item.pk,
        }
    ]
    order.save(update_fields=["status", "hold_reasons"])
    corrected = {**order.shipping_address, "address1": "14 Birch Lane"}
    body = proposal(
        order,
        "correct_shipping_address",
        {"shipping_address": order.shipping_address},
        {"shipping_address": corrected},
    )
    ai_item_id = post(bot_api, body).json()["review_item"]

    review_item_accept(item_id=ai_item_id, user=manager)

    order.refresh_from_db()
    hygiene_item.refresh_from_db()
    assert order.shipping_address["address1"] == "14 Birch Lane"
    assert hygiene_item.status == ReviewStatus.RESOLVED
    assert order.hold_reasons == []
    assert order.status == OrderStatus.READY


def test_agent_cannot_accept_address_correction(bot_api, order):
    corrected = {**order.shipping_address, "address1": "14 Birch Lane"}
    body = proposal(
        order,
        "correct_shipping_address",
        {"shipping_address": order.shipping_address},
        {"shipping_address": corrected},
    )
    item_id = post(bot_api, body).json()["review_item"]
    agent = make_user("sam", "cs_agent")

    with pytest.raises(ReviewForbidden):
        review_item_accept(item_id=item_id, user=agent)


def test_open_audit_sample_does_not_block_proposals(bot_api, order):
    from guardrails.models import ActionType, SamplingState

    SamplingState.objects.update_or_create(
        action=ActionType.objects.get(code="select_carrier"), defaults={"rate": "1"}
    )
    first = post(
        bot_api,
        proposal(
            order,
            "select_carrier",
            {"carrier_service": "ups/ground"},
            {"carrier_service": "fedex/ground"},
        ),
    )

    second = post(
        bot_api,
        proposal(
            order,
            "select_carrier",
            {"carrier_service": "fedex/ground"},
            {"carrier_service": "ups/ground"},
        ),
    )

    sample = ReviewItem.objects.get(pk=first.json()["review_item"])
    assert sample.kind == ReviewKind.AUDIT_SAMPLE
    assert sample.status == ReviewStatus.OPEN
    assert second.status_code == 201
    assert second.json()["verdict"] == Verdict.APPLIED


def test_address_correction_failing_country_rules_is_400(bot_api, order):
    invalid = {**order.shipping_address, "zip": "9021", "city": "Nowhere"}
    body = proposal(
        order,
        "correct_shipping_address",
        {"shipping_address": order.shipping_address},
        {"shipping_address": invalid},
    )

    response = post(bot_api, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_proposal"
    assert list(error["fields"]) == ["after"]
    assert "fails its country's rules" in error["message"]
    assert not Decision.objects.filter(order=order).exists()
