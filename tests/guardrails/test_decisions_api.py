"""The decisions API: every verdict with the default policies, validation, roles, listing."""

import pytest

from guardrails.models import AuditEntry, Decision, DecisionOutcome, Verdict
from guardrails.services import decision_propose
from inventory.models import Reservation, ReservationStatus
from orders.models import OrderStatus
from reviews.models import ReviewItem, ReviewKind
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SHIPPING_ADDRESS,
    SUBSTITUTION,
    bot_api_fixture,
    locations_fixture,
    manager_api_fixture,
    order_fixture,
    proposal,
)

URL = "/api/v1/decisions/"


def post(client, body):
    return client.post(URL, body, format="json")


def test_substitution_applied_and_reverted(bot_api, manager_api, order):
    response = post(bot_api, proposal(order, "substitute_sku", *SUBSTITUTION))

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["verdict"] == Verdict.APPLIED
    assert body["fired"] == []
    assert body["review_item"] is None
    assert body["policy_version_label"].startswith("substitute_sku (all channels) v")
    line = order.lines.get()
    assert line.sku.code == "TEE-CLASSIC-WHT-M"
    reservation = Reservation.objects.get(order_line=line, status=ReservationStatus.ACTIVE)
    assert reservation.stock_level.sku.code == "TEE-CLASSIC-WHT-M"
    # 5 at wh-east beat 3 at store-nyc.
    assert reservation.stock_level.location.code == "wh-east"
    audit = AuditEntry.objects.get(action="decision.applied", target_id=str(body["id"]))
    assert audit.actor_label == "ai:gpt-sub/2024-06"
    assert audit.before == SUBSTITUTION[0]
    assert audit.after["sku"] == "TEE-CLASSIC-WHT-M"

    reverted = manager_api.post(f"{URL}{body['id']}/revert/", {"note": "Customer wants black."})

    assert reverted.status_code == 200, reverted.json()
    assert reverted.json()["outcome"] == DecisionOutcome.ERROR
    line.refresh_from_db()
    assert line.sku.code == "TEE-CLASSIC-BLK-M"
    reservation.refresh_from_db()
    assert reservation.status == ReservationStatus.RELEASED
    assert AuditEntry.objects.filter(
        action="decision.reverted", target_id=str(body["id"]), actor__username="morgan"
    ).exists()


def test_revert_twice_conflicts(bot_api, manager_api, order):
    decision_id = post(bot_api, proposal(order, "substitute_sku", *SUBSTITUTION)).json()["id"]
    manager_api.post(f"{URL}{decision_id}/revert/", {"outcome": "correct"})

    again = manager_api.post(f"{URL}{decision_id}/revert/", {})

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_reverted"
    assert Decision.objects.get(pk=decision_id).outcome == DecisionOutcome.CORRECT


def test_substitution_at_confidence_limit_queued(bot_api, order):
    body = post(bot_api, proposal(order, "substitute_sku", *SUBSTITUTION, confidence="0.92"))

    assert body.status_code == 201
    data = body.json()
    assert data["verdict"] == Verdict.QUEUED_FOR_REVIEW
    assert [reason["rule"] for reason in data["fired"]] == ["confidence"]
    item = ReviewItem.objects.get(pk=data["review_item"])
    assert item.kind == ReviewKind.SUBSTITUTION
    assert item.proposal["decision"] == data["id"]
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert order.hold_reasons[0]["review_item"] == item.pk
    assert order.lines.get().sku.code == "TEE-CLASSIC-BLK-M"


def test_billing_address_blocked(bot_api, order):
    new_address = {**SHIPPING_ADDRESS, "address1": "1 Elm St"}
    response = post(
        bot_api,
        proposal(
            order,
            "change_billing_address",
            {"billing_address": None},
            {"billing_address": new_address},
            confidence="0.99",
        ),
    )

    assert response.status_code == 201
    assert response.json()["verdict"] == Verdict.BLOCKED
    assert "mode" in [reason["rule"] for reason in response.json()["fired"]]
    order.refresh_from_db()
    assert order.billing_address is None
    assert order.status == OrderStatus.READY
    assert not ReviewItem.objects.filter(order=order).exists()


def test_ship_date_recommendation_only(bot_api, order):
    response = post(bot_api, proposal(order, "estimate_ship_date", {}, {"ship_date": "2026-12-07"}))

    assert response.status_code == 201
    assert response.json()["verdict"] == Verdict.RECOMMENDATION_ONLY
    assert not ReviewItem.objects.filter(order=order).exists()


def test_stale_before_conflicts(bot_api, order):
    before = {"line": 1, "sku": "TEE-CLASSIC-WHT-M"}
    response = post(bot_api, proposal(order, "substitute_sku", before, SUBSTITUTION[0]))

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "stale_state"
    assert error["current"] == {"line": 1, "sku": "TEE-CLASSIC-BLK-M"}
    assert not Decision.objects.exists()


def test_unknown_order_not_found(bot_api, order):
    body = proposal(order, "substitute_sku", *SUBSTITUTION)
    response = post(bot_api, {**body, "order": order.pk + 1000})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "order_not_found"


def test_unknown_action_rejected(bot_api, order):
    response = post(bot_api, proposal(order, "teleport_parcel", *SUBSTITUTION))

    assert response.status_code == 400
    assert "action" in response.json()["error"]["fields"]


@pytest.mark.parametrize("confidence", ["-0.1", "1.1", "NaN"])
def test_confidence_out_of_range_rejected(bot_api, order, confidence):
    response = post(
        bot_api, proposal(order, "substitute_sku", *SUBSTITUTION, confidence=confidence)
    )

    assert response.status_code == 400
    assert "confidence" in response.json()["error"]["fields"]
    assert not Decision.objects.exists()


@pytest.mark.parametrize(
    ("action", "before", "after"),
    [
        ("substitute_sku", SUBSTITUTION[0], ["TEE-CLASSIC-WHT-M"]),
        ("substitute_sku", SUBSTITUTION[0], {"line": 1, "sku": "NO-SUCH-SKU"}),
        ("substitute_sku", SUBSTITUTION[0], {"line": 2, "sku": "TEE-CLASSIC-WHT-M"}),
        ("select_carrier", {"carrier_service": "ups/ground"}, {"carrier_service": "ups/teleport"}),
        (
            "reroute_fulfilment",
            {"location": None, "in_store_pickup": False},
            {"location": "mars", "in_store_pickup": False},
        ),
        ("cancel_order", {"status": "ready"}, {"status": "shipped"}),
        ("estimate_ship_date", {}, {"ship_date": "soon"}),
    ],
)
def test_wrong_after_shape_rejected(bot_api, order, action, before, after):
    response = post(bot_api, proposal(order, action, before, after))

    assert response.status_code == 400, response.json()
    assert "after" in response.json()["error"]["fields"]


def test_agent_may_not_propose(agent, order):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(agent)

    response = post(client, proposal(order, "substitute_sku", *SUBSTITUTION))

    assert response.status_code == 403
    assert not Decision.objects.exists()


def test_agent_may_not_revert_or_label(agent, bot_api, order):
    from rest_framework.test import APIClient

    decision_id = post(bot_api, proposal(order, "substitute_sku", *SUBSTITUTION)).json()["id"]
    client = APIClient()
    client.force_authenticate(agent)

    assert client.post(f"{URL}{decision_id}/revert/", {}).status_code == 403
    assert client.post(f"{URL}{decision_id}/label/", {"outcome": "error"}).status_code == 403
    assert Decision.objects.get(pk=decision_id).outcome == DecisionOutcome.UNLABELLED


def test_label_records_outcome(bot_api, manager_api, order):
    decision_id = post(bot_api, proposal(order, "substitute_sku", *SUBSTITUTION)).json()["id"]

    response = manager_api.post(
        f"{URL}{decision_id}/label/", {"outcome": "correct", "note": "Customer happy."}
    )

    assert response.status_code == 200
    decision = Decision.objects.get(pk=decision_id)
    assert decision.outcome == DecisionOutcome.CORRECT
    assert decision.labelled_by.username == "morgan"
    assert AuditEntry.objects.filter(
        action="decision.labelled", target_id=str(decision_id)
    ).exists()


def test_label_outcome_validated(bot_api, manager_api, order):
    decision_id = post(bot_api, proposal(order, "substitute_sku", *SUBSTITUTION)).json()["id"]

    response = manager_api.post(f"{URL}{decision_id}/label/", {"outcome": "maybe"})

    assert response.status_code == 400
    assert "outcome" in response.json()["error"]["fields"]


def test_list_filters_by_verdict(bot_api, manager_api, order):
    post(bot_api, proposal(order, "estimate_ship_date", {}, {"ship_date": "2026-12-07"}))
    blocked = post(
        bot_api,
        proposal(
            order,
            "split_order_carriers",
            {},
            {
                "shipments": [
                    {"lines": [1], "carrier_service": "ups/ground"},
                    {"lines": [1], "carrier_service": "fedex/ground"},
                ]
            },
        ),
    ).json()

    response = manager_api.get(URL, {"verdict": "blocked"})

    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [blocked["id"]]
    detail = manager_api.get(f"{URL}{blocked['id']}/").json()
    assert detail["facts"]["action"] == "split_order_carriers"


def _propose_many(order, count):
    for index in range(count):
        decision_propose(
            order_id=order.pk,
            action_code="estimate_ship_date",
            before={},
            after={"ship_date": f"2026-12-{index % 28 + 1:02d}"},
            confidence="0.9",
            model_name=f"model-{index % 3}",
            model_version="1",
        )


@pytest.mark.parametrize("count", [1, 20])
def test_list_query_count_flat(manager_api, order, count, django_assert_max_num_queries):
    _propose_many(order, count)
    manager_api.get(URL)  # warm up the session and permission caches

    with django_assert_max_num_queries(6):
        response = manager_api.get(URL)

    assert len(response.json()["results"]) == count
