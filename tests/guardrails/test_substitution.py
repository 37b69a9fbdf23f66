"""The substitution recommender: ranking, stock and ETA, listing constraints, calibration, and
its proposals judged by the default substitution policy."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction
from django.urls import reverse

from catalog.models import ListingConstraint, ListingConstraintKind
from guardrails.models import ActionType, Decision, Verdict
from guardrails.recommenders.calibration import (
    SUBSTITUTION_MODEL_NAME,
    Calibrator,
    prior_confidence,
)
from guardrails.recommenders.substitution import substitution_recommend
from inventory.hygiene import check_stock
from inventory.models import Replenishment
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.conftest import make_user

from .conftest import channel_grant
from .recommender_fixtures import order_create, sku_create, stock_set, warehouse

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
BLACK_M = {"colour": "Black", "size": "M"}


@pytest.fixture(autouse=True)
def _frozen_time():
    """Freeze the clock before the other fixtures count stock, so snapshots are NOW."""
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def ordered(db):
    """The ordered T-shirt, tracked and out of stock."""
    sku = sku_create("TEE-CLASSIC-BLK-M", "Classic Cotton T-Shirt - Black / M", attributes=BLACK_M)
    stock_set(sku, 0)
    return sku


@pytest.fixture
def similar(db):
    """A near twin of the ordered T-shirt: same colour, size, category and price band."""
    sku = sku_create(
        "TEE-PREMIUM-BLK-M",
        "Premium Cotton T-Shirt - Black / M",
        price="21.99",
        cost="9.00",
        attributes=BLACK_M,
    )
    stock_set(sku, 10)
    return sku


@pytest.fixture
def mug(db):
    sku = sku_create(
        "MUG-ENAMEL-NVY",
        "Enamel Camp Mug - Navy",
        price="14.00",
        cost="4.00",
        attributes={"colour": "Navy"},
        category="Mugs",
    )
    stock_set(sku, 50)
    return sku


def codes(recommendation) -> list[str]:
    return [candidate["sku"] for candidate in recommendation.candidates]


def test_similar_candidate_ranks_first(default_policies, channel, ordered, similar, mug):
    order = order_create(channel, [(ordered, 2, "19.99")])

    recommendation = substitution_recommend(order_line=order.lines.get(), quantity_short=2)

    assert codes(recommendation) == ["TEE-PREMIUM-BLK-M", "MUG-ENAMEL-NVY"]
    first, second = recommendation.candidates
    assert first["similarity"] > second["similarity"]
    assert first["similarity_parts"]["attributes"] == 1.0
    assert second["similarity_parts"]["category"] == 0.0
    assert Decimal(first["confidence"]) > Decimal(second["confidence"])
    assert recommendation.chosen["sku"] == "TEE-PREMIUM-BLK-M"


def test_margin_breaks_similarity_tie(default_policies, channel, ordered):
    title = "Premium Cotton T-Shirt - Black / M"
    costly = sku_create("TEE-A-BLK-M", title, price="21.99", cost="9.00", attributes=BLACK_M)
    cheap = sku_create("TEE-B-BLK-M", title, price="21.99", cost="6.00", attributes=BLACK_M)
    stock_set(costly, 5)
    stock_set(cheap, 5)
    order = order_create(channel, [(ordered, 1, "19.99")])

    recommendation = substitution_recommend(order_line=order.lines.get(), quantity_short=1)

    assert codes(recommendation) == ["TEE-B-BLK-M", "TEE-A-BLK-M"]
    first, second = recommendation.candidates
    assert first["similarity"] == second["similarity"]
    # The customer pays 19.99 either way: 8.00 ordered cost minus the substitute's cost.
    assert first["margin_impact_per_unit"] == "2.000"
    assert second["margin_impact_per_unit"] == "-1.000"


def test_candidates_carry_stock_and_eta(default_policies, channel, ordered, similar):
    arriving = sku_create(
        "TEE-ORGANIC-BLK-M", "Organic Cotton T-Shirt - Black / M", attributes=BLACK_M
    )
    stock_set(arriving, 0)
    eta = NOW + timedelta(days=3)
    Replenishment.objects.create(
        sku=arriving, location=warehouse(), quantity=40, expected_at=eta, source_reference="PO-7"
    )
    Replenishment.objects.create(
        sku=ordered, location=warehouse(), quantity=40, expected_at=NOW + timedelta(days=9)
    )
    short_stock = sku_create("TEE-VINTAGE-BLK-M", "Vintage Cotton T-Shirt - Black / M")
    stock_set(short_stock, 1)
    order = order_create(channel, [(ordered, 2, "19.99")])

    recommendation = substitution_recommend(order_line=order.lines.get(), quantity_short=2)

    by_code = {candidate["sku"]: candidate for candidate in recommendation.candidates}
    assert "TEE-VINTAGE-BLK-M" not in by_code, "1 unit and no ETA cannot cover 2"
    assert by_code["TEE-PREMIUM-BLK-M"]["stock"]["available"] == 10
    assert by_code["TEE-PREMIUM-BLK-M"]["stock"]["sufficient"] is True
    assert by_code["TEE-PREMIUM-BLK-M"]["stock"]["is_stale"] is False
    assert by_code["TEE-PREMIUM-BLK-M"]["stock"]["as_of"] == NOW.isoformat()
    assert by_code["TEE-ORGANIC-BLK-M"]["stock"]["sufficient"] is False
    assert by_code["TEE-ORGANIC-BLK-M"]["replenishment_eta"] == eta.isoformat()
    # Stock now ranks before an arrival later, and only a candidate with stock is proposed.
    assert codes(recommendation)[0] == "TEE-PREMIUM-BLK-M"
    assert recommendation.decision.after == {"line": 1, "sku": "TEE-PREMIUM-BLK-M"}
    facts = recommendation.decision.facts["recommendation"]
    assert facts["ordered_sku_eta"] == (NOW + timedelta(days=9)).isoformat()


def test_eta_only_candidates_propose_nothing(default_policies, channel, ordered):
    arriving = sku_create(
        "TEE-ORGANIC-BLK-M", "Organic Cotton T-Shirt - Black / M", attributes=BLACK_M
    )
    stock_set(arriving, 0)
    Replenishment.objects.create(
        sku=arriving, location=warehouse(), quantity=40, expected_at=NOW + timedelta(days=3)
    )
    Replenishment.objects.create(
        sku=arriving, location=warehouse(), quantity=40, expected_at=NOW - timedelta(days=1)
    )
    order = order_create(channel, [(ordered, 2, "19.99")])

    recommendation = substitution_recommend(order_line=order.lines.get(), quantity_short=2)

    assert codes(recommendation) == ["TEE-ORGANIC-BLK-M"]
    assert (
        recommendation.candidates[0]["replenishment_eta"] == (NOW + timedelta(days=3)).isoformat()
    ), "a past arrival is no ETA"
    assert recommendation.decision is None
    assert not Decision.objects.exists()


def test_no_substitution_listing_blocks_proposal(default_policies, channel, ordered, similar):
    ListingConstraint.objects.create(
        channel=channel, sku=ordered, kind=ListingConstraintKind.NO_SUBSTITUTION
    )
    order = order_create(channel, [(ordered, 2, "19.99")])

    recommendation = substitution_recommend(order_line=order.lines.get(), quantity_short=2)

    decision = recommendation.decision
    assert decision.verdict == Verdict.BLOCKED
    blocks = [reason["rule"] for reason in decision.reasons if reason["outcome"] == "block"]
    assert blocks == ["listing_constraint"]
    assert "forbids substituting TEE-CLASSIC-BLK-M" in recommendation.explanation
    order.lines.get().refresh_from_db()
    assert order.lines.get().sku == ordered


def test_not_a_substitute_candidate_excluded(default_policies, channel, ordered, similar, mug):
    ListingConstraint.objects.create(
        channel=channel, sku=similar, kind=ListingConstraintKind.NOT_A_SUBSTITUTE
    )
    order = order_create(channel, [(ordered, 2, "19.99")])

    recommendation = substitution_recommend(order_line=order.lines.get(), quantity_short=2)

    assert codes(recommendation) == ["MUG-ENAMEL-NVY"]


def test_not_a_substitute_for_every_sku_excludes_all(default_policies, channel, ordered, similar):
    ListingConstraint.objects.create(channel=channel, kind=ListingConstraintKind.NOT_A_SUBSTITUTE)
    order = order_create(channel, [(ordered, 2, "19.99")])

    recommendation = substitution_recommend(order_line=order.lines.get(), quantity_short=2)

    assert recommendation.candidates == []
    assert recommendation.decision is None


@pytest.mark.parametrize(
    ("price", "verdict"),
    [("24.99", Verdict.APPLIED), ("25.00", Verdict.QUEUED_FOR_REVIEW)],
)
def test_item_price_boundary_of_default_policy(default_policies, channel, price, verdict):
    ordered = sku_create(
        "SOCK-TRAIL-BLK-M", "Trail Running Sock - Black / M", price=price, attributes=BLACK_M
    )
    stock_set(ordered, 0)
    twin = sku_create(
        "SOCK-TRAIL-PRO-BLK-M",
        "Trail Running Sock Pro - Black / M",
        price=price,
        attributes=BLACK_M,
    )
    stock_set(twin, 10)
    order = order_create(channel, [(ordered, 1, price)])

    recommendation = substitution_recommend(order_line=order.lines.get(), quantity_short=1)

    assert recommendation.confidence > Decimal("0.92")
    decision = recommendation.decision
    assert decision.verdict == verdict
    item_price = next(reason for reason in decision.reasons if reason["rule"] == "item_price")
    assert item_price["outcome"] == ("pass" if verdict == Verdict.APPLIED else "fail")
    line = order.lines.get()
    expected = "SOCK-TRAIL-PRO-BLK-M" if verdict == Verdict.APPLIED else "SOCK-TRAIL-BLK-M"
    assert line.sku.code == expected


def test_stale_stock_snapshot_is_queued(default_policies, channel):
    ordered = sku_create(
        "SOCK-TRAIL-BLK-M", "Trail Running Sock - Black / M", price="9.99", attributes=BLACK_M
    )
    twin = sku_create(
        "SOCK-TRAIL-PRO-BLK-M",
        "Trail Running Sock Pro - Black / M",
        price="9.99",
        attributes=BLACK_M,
    )
    stock_set(ordered, 0)
    stock_set(twin, 10, counted_at=NOW - timedelta(minutes=6))
    order = order_create(channel, [(ordered, 1, "9.99")])

    recommendation = substitution_recommend(order_line=order.lines.get(), quantity_short=1)

    assert recommendation.chosen["stock"]["is_stale"] is True
    assert recommendation.confidence > Decimal("0.92")
    assert recommendation.decision.verdict == Verdict.QUEUED_FOR_REVIEW
    fired = [r["rule"] for r in recommendation.decision.reasons if r["outcome"] == "fail"]
    assert fired == ["stock_fresh"]


def test_low_confidence_is_queued(default_policies, channel, ordered, mug):
    order = order_create(channel, [(ordered, 1, "19.99")])

    recommendation = substitution_recommend(order_line=order.lines.get(), quantity_short=1)

    assert recommendation.confidence <= Decimal("0.92")
    assert recommendation.decision.verdict == Verdict.QUEUED_FOR_REVIEW
    assert recommendation.decision.review_item.kind == ReviewKind.SUBSTITUTION


def test_out_of_stock_event_proposes_substitute(
    default_policies, channel, ordered, similar, django_capture_on_commit_callbacks
):
    order = order_create(channel, [(ordered, 2, "19.99")])

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        findings = check_stock(order=order)

    assert [finding["code"] for finding in findings] == ["out_of_stock"]
    decision = Decision.objects.get(order=order)
    assert decision.model_name == SUBSTITUTION_MODEL_NAME
    assert decision.after == {"line": 1, "sku": "TEE-PREMIUM-BLK-M"}
    assert decision.facts["recommendation"]["quantity_short"] == 2


def _past_decisions(order, *, bucket: int, accepted: int, rejected: int) -> None:
    action = ActionType.objects.get(code="substitute_sku")
    statuses = [ReviewStatus.ACCEPTED] * accepted + [ReviewStatus.REJECTED] * rejected
    for status in statuses:
        item = ReviewItem.objects.create(
            kind=ReviewKind.SUBSTITUTION, order=order, reason="past", source_data={}, status=status
        )
        Decision.objects.create(
            action=action,
            order=order,
            channel=order.channel,
            model_name=SUBSTITUTION_MODEL_NAME,
            model_version="1",
            before={"line": 1, "sku": "A"},
            after={"line": 1, "sku": "B"},
            confidence=Decimal("0.95"),
            verdict=Verdict.QUEUED_FOR_REVIEW,
            facts={"recommendation": {"similarity_bucket": bucket}},
            review_item=item,
        )


def test_calibration_moves_towards_acceptance_rate(default_policies, channel, ordered):
    order = order_create(channel, [(ordered, 1, "19.99")])
    _past_decisions(order, bucket=9, accepted=5, rejected=20)
    _past_decisions(order, bucket=8, accepted=1, rejected=18)

    calibrator = Calibrator()
    high = calibrator.calibrate(0.95)
    sparse = calibrator.calibrate(0.85)

    prior = Decimal(str(round(prior_confidence(0.95), 4)))
    assert high.calibrated is True
    assert (high.reviewed, high.accepted) == (25, 5)
    assert high.prior == prior
    # Observed acceptance 0.20: the calibrated value lies between it and the prior.
    assert Decimal("0.20") < high.confidence < prior
    # (prior 0.952574 x prior weight 10 + 5 accepted) / (10 + 25 reviewed) = 0.41502
    assert high.confidence == Decimal("0.4150")
    assert sparse.calibrated is False, "19 reviews are under the 20 needed"
    assert sparse.confidence == sparse.prior


def test_calibration_counts_only_builtin_reviews(default_policies, channel, ordered):
    order = order_create(channel, [(ordered, 1, "19.99")])
    _past_decisions(order, bucket=9, accepted=0, rejected=25)
    Decision.objects.update(model_name="other-agent")

    assert Calibrator().calibrate(0.95).calibrated is False


def test_shortage_api_returns_recommendation(
    default_policies, client, integration_user, channel, ordered, similar
):
    order = order_create(channel, [(ordered, 2, "19.99")])
    client.force_login(channel_grant(integration_user, channel))
    url = reverse("order-shortages", kwargs={"order_id": order.pk})

    response = client.post(url, {"line": 1, "quantity_short": 2}, content_type="application/json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["chosen"]["sku"] == "TEE-PREMIUM-BLK-M"
    assert body["candidates"][0]["stock"]["available"] == 10
    assert body["decision"]["verdict"] in Verdict.values
    assert body["decision"]["id"] == Decision.objects.get().pk


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"line": 9, "quantity_short": 1}, "line"),
        ({"line": 1, "quantity_short": 0}, "quantity_short"),
        ({"line": 1, "quantity_short": 3}, "quantity_short"),
        ({"quantity_short": 1}, "line"),
    ],
)
def test_shortage_api_rejects_bad_input(
    default_policies, client, integration_user, channel, ordered, body, field
):
    order = order_create(channel, [(ordered, 2, "19.99")])
    client.force_login(channel_grant(integration_user, channel))
    url = reverse("order-shortages", kwargs={"order_id": order.pk})

    response = client.post(url, body, content_type="application/json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_shortage_api_unknown_order_404(default_policies, client, integration_user):
    client.force_login(integration_user)
    url = reverse("order-shortages", kwargs={"order_id": 999999})

    response = client.post(url, {"line": 1, "quantity_short": 1}, content_type="application/json")

    assert response.status_code == 404


def test_shortage_api_needs_propose_permission(default_policies, client, channel, ordered):
    order = order_create(channel, [(ordered, 2, "19.99")])
    client.force_login(make_user("carl", "cs_agent"))
    url = reverse("order-shortages", kwargs={"order_id": order.pk})

    response = client.post(url, {"line": 1, "quantity_short": 1}, content_type="application/json")

    assert response.status_code == 403


def test_stock_out_trigger_can_be_switched_off(
    default_policies, settings, channel, ordered, similar, django_capture_on_commit_callbacks
):
    settings.OMSGUARD_SUBSTITUTION_ON_STOCK_OUT = False
    order = order_create(channel, [(ordered, 2, "19.99")])

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        check_stock(order=order)

    assert ReviewItem.objects.filter(kind=ReviewKind.OUT_OF_STOCK).count() == 1
    assert not Decision.objects.exists()
