"""The carrier recommender: weighting of reliability, SLA and cost, rate lanes, and its
select_carrier proposals judged by the default policy."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from guardrails.models import Decision, Verdict
from guardrails.recommenders.carrier import carrier_recommend
from orders.models import CarrierRateStatus

from .conftest import channel_grant
from .recommender_fixtures import (
    order_create,
    rate_create,
    service_get,
    service_set,
    sku_create,
)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def shirt(db):
    return sku_create("TEE-CLASSIC-BLK-M", "Classic Cotton T-Shirt - Black / M", weight_grams=250)


@pytest.fixture
def ground_services(carriers):
    """UPS: more reliable, USPS: cheaper; both promise 5 days."""
    service_set("ups/ground", reliability="0.96", transit_days=5)
    service_set("usps/ground_advantage", reliability="0.90", transit_days=5)


def scores(recommendation) -> dict[str, float]:
    return {c["carrier_service"]: c["score"] for c in recommendation.candidates}


def test_reliability_outweighs_small_price_gap(default_policies, channel, shirt, ground_services):
    rate_create("ups/ground", "10.00")
    rate_create("usps/ground_advantage", "9.50")
    order = order_create(channel, [(shirt, 1, "19.99")])

    recommendation = carrier_recommend(order=order)

    assert recommendation.chosen["carrier_service"] == "ups/ground"
    # 0.4 x 0.96 + 0.35 x 1 + 0.25 x (9.50 / 10.00) against 0.4 x 0.90 + 0.35 + 0.25
    assert scores(recommendation) == {"ups/ground": 0.9715, "usps/ground_advantage": 0.96}


def test_large_price_gap_outweighs_reliability(default_policies, channel, shirt, ground_services):
    rate_create("ups/ground", "10.00")
    rate_create("usps/ground_advantage", "8.00")
    order = order_create(channel, [(shirt, 1, "19.99")])

    recommendation = carrier_recommend(order=order)

    assert recommendation.chosen["carrier_service"] == "usps/ground_advantage"
    assert scores(recommendation)["ups/ground"] == 0.934


def test_weights_come_from_settings(default_policies, settings, channel, shirt, ground_services):
    settings.OMSGUARD_CARRIER_WEIGHTS = {"reliability": 1, "sla": 0, "cost": 0}
    rate_create("ups/ground", "10.00")
    rate_create("usps/ground_advantage", "8.00")
    order = order_create(channel, [(shirt, 1, "19.99")])

    recommendation = carrier_recommend(order=order)

    assert recommendation.chosen["carrier_service"] == "ups/ground"
    assert scores(recommendation) == {"ups/ground": 0.96, "usps/ground_advantage": 0.9}


def test_sla_scores_transit_against_level_target(default_policies, channel, shirt, carriers):
    service_set("ups/2nd_day_air", reliability="0.95", transit_days=2)
    service_set("usps/priority_mail", reliability="0.95", transit_days=3)
    service_set("ups/ground", reliability="0.99", transit_days=5)
    rate_create("ups/2nd_day_air", "20.00")
    rate_create("usps/priority_mail", "20.00")
    rate_create("ups/ground", "5.00")
    order = order_create(
        channel, [(shirt, 1, "19.99")], carrier_service=service_get("usps/priority_mail")
    )

    recommendation = carrier_recommend(order=order)

    by_service = {c["carrier_service"]: c for c in recommendation.candidates}
    assert "ups/ground" not in by_service, "a ground service would downgrade an expedited order"
    assert by_service["ups/2nd_day_air"]["parts"]["sla"] == 1.0
    # 3 days against the 2-day target of expedited: 1 - (3 - 2) / 2
    assert by_service["usps/priority_mail"]["parts"]["sla"] == 0.5
    assert recommendation.chosen["carrier_service"] == "ups/2nd_day_air"


def test_narrowest_rate_lane_applies(default_policies, channel, carriers):
    service_set("ups/ground", reliability="0.96", transit_days=5)
    heavy = sku_create("KETTLEBELL-16", "Kettlebell 16 kg", weight_grams=16000, category="Gym")
    light = sku_create("TEE-CLASSIC-BLK-M", "Classic Cotton T-Shirt - Black / M", weight_grams=250)
    rate_create("ups/ground", "30.00", country="")
    rate_create("ups/ground", "12.00", country="US")
    rate_create("ups/ground", "7.00", country="US", max_weight_grams=1000)

    light_order = order_create(channel, [(light, 2, "19.99")], number=1)
    heavy_order = order_create(channel, [(heavy, 1, "59.00")], number=2)
    canada_order = order_create(channel, [(light, 1, "19.99")], number=3, country="CA")

    assert carrier_recommend(order=light_order).chosen["rate"]["price"] == "7.000"
    assert carrier_recommend(order=heavy_order).chosen["rate"]["price"] == "12.000"
    assert carrier_recommend(order=canada_order).chosen["rate"]["price"] == "30.000"


def test_pending_and_inactive_are_ignored(default_policies, channel, shirt, ground_services):
    rate_create("ups/ground", "10.00")
    rate_create("usps/ground_advantage", "1.00", status=CarrierRateStatus.PENDING_SIGNOFF)
    fedex = service_set("fedex/ground", reliability="0.99", transit_days=3)
    fedex.is_active = False
    fedex.save(update_fields=["is_active"])
    rate_create("fedex/ground", "2.00")
    order = order_create(channel, [(shirt, 1, "19.99")])

    recommendation = carrier_recommend(order=order)

    assert list(scores(recommendation)) == ["ups/ground"]


def test_best_carrier_is_proposed_and_applied(default_policies, channel, shirt, ground_services):
    rate_create("ups/ground", "10.00")
    rate_create("usps/ground_advantage", "8.00")
    order = order_create(channel, [(shirt, 1, "19.99")], carrier_service=service_get("ups/ground"))

    recommendation = carrier_recommend(order=order)

    decision = recommendation.decision
    assert decision.action.code == "select_carrier"
    assert decision.model_name == "omsguard-carrier"
    assert decision.before == {"carrier_service": "ups/ground"}
    assert decision.after == {"carrier_service": "usps/ground_advantage"}
    assert decision.confidence == Decimal("0.96")
    assert decision.verdict == Verdict.APPLIED
    order.refresh_from_db()
    assert order.carrier_service == service_get("usps/ground_advantage")


def test_low_score_is_queued(default_policies, channel, shirt, carriers):
    service_set("usps/ground_advantage", reliability="0.60", transit_days=8)
    rate_create("usps/ground_advantage", "8.00")
    order = order_create(channel, [(shirt, 1, "19.99")])

    recommendation = carrier_recommend(order=order)

    assert recommendation.confidence <= Decimal("0.85")
    assert recommendation.decision.verdict == Verdict.QUEUED_FOR_REVIEW


def test_current_best_proposes_nothing(default_policies, channel, shirt, ground_services):
    rate_create("ups/ground", "10.00")
    order = order_create(channel, [(shirt, 1, "19.99")], carrier_service=service_get("ups/ground"))

    recommendation = carrier_recommend(order=order)

    assert recommendation.chosen["carrier_service"] == "ups/ground"
    assert recommendation.decision is None
    assert not Decision.objects.exists()


def test_pickup_order_gets_no_carrier(default_policies, channel, shirt, ground_services):
    rate_create("ups/ground", "10.00")
    order = order_create(channel, [(shirt, 1, "19.99")])
    order.in_store_pickup = True
    order.save(update_fields=["in_store_pickup"])

    recommendation = carrier_recommend(order=order)

    assert recommendation.candidates == []
    assert recommendation.decision is None


def test_carrier_api_returns_verdict(
    default_policies, client, integration_user, channel, shirt, ground_services
):
    rate_create("ups/ground", "10.00")
    order = order_create(channel, [(shirt, 1, "19.99")])
    client.force_login(channel_grant(integration_user, channel))

    response = client.post(reverse("order-carrier-recommendation", kwargs={"order_id": order.pk}))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["chosen"]["carrier_service"] == "ups/ground"
    assert body["decision"]["verdict"] == Verdict.APPLIED


def test_carrier_api_unknown_order_404(default_policies, client, integration_user):
    client.force_login(integration_user)

    response = client.post(reverse("order-carrier-recommendation", kwargs={"order_id": 424242}))

    assert response.status_code == 404
