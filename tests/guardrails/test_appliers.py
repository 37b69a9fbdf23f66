"""Appliers: each action's change, its revert, and what happens when either cannot be made."""

import pytest

from guardrails.models import AuditEntry, Decision, Verdict
from guardrails.services import DecisionConflict, decision_propose, decision_revert
from inventory.models import Reservation, ReservationStatus, StockLevel
from inventory.reservations import order_reserve_stock
from orders.models import OrderStatus
from reviews.services import review_item_accept
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
    stock_set,
)


def propose(order, action, before, after, confidence="0.95"):
    return decision_propose(
        order_id=order.pk,
        action_code=action,
        before=before,
        after=after,
        confidence=confidence,
        model_name="gpt-route",
        model_version="7",
    )


def test_select_carrier_applied_and_reverted(order, manager):
    decision = propose(
        order,
        "select_carrier",
        {"carrier_service": "ups/ground"},
        {"carrier_service": "fedex/ground"},
    )

    assert decision.verdict == Verdict.APPLIED
    order.refresh_from_db()
    assert order.carrier_service.name == "FedEx Ground"
    entry = AuditEntry.objects.get(action="order.carrier_service_changed")
    assert entry.actor_label == "ai:gpt-route/7"
    assert entry.before == {"carrier_service": "UPS Ground"}

    decision_revert(decision_id=decision.pk, user=manager, note="wrong carrier")

    order.refresh_from_db()
    assert order.carrier_service.name == "UPS Ground"


def test_revert_refused_after_order_changed(order, manager):
    from guardrails.appliers import carrier_service_by_code

    decision = propose(
        order,
        "select_carrier",
        {"carrier_service": "ups/ground"},
        {"carrier_service": "fedex/ground"},
    )
    order.refresh_from_db()
    order.carrier_service = carrier_service_by_code("ups/next_day_air")
    order.save()

    with pytest.raises(DecisionConflict) as raised:
        decision_revert(decision_id=decision.pk, user=manager, note="")

    assert raised.value.code == "state_changed"
    assert raised.value.data["current"] == {"carrier_service": "ups/next_day_air"}
    assert Decision.objects.get(pk=decision.pk).reverted_at is None


def test_substitution_without_stock_goes_to_review(order, locations):
    # The substitute is counted (fresh) but every unit is gone, so reserving it fails.
    stock_set("TEE-CLASSIC-WHT-M", locations["wh-east"], 0)
    stock_set("TEE-CLASSIC-WHT-M", locations["store-nyc"], 0)

    decision = propose(order, "substitute_sku", *SUBSTITUTION)

    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW
    assert "TEE-CLASSIC-WHT-M" in decision.apply_error
    assert decision.reasons[-1]["rule"] == "apply_failed"
    assert decision.applied_at is None
    assert decision.review_item is not None
    # The savepoint rolled the half-made switch back.
    assert order.lines.get().sku.code == "TEE-CLASSIC-BLK-M"


def test_reroute_accepted_moves_reservations(order, manager, locations):
    stock_set("TEE-CLASSIC-BLK-M", locations["wh-east"], 2)
    stock_set("TEE-CLASSIC-BLK-M", locations["store-nyc"], 1)
    order_reserve_stock(order=order)
    before = {"location": "wh-east", "in_store_pickup": False}
    after = {"location": "store-nyc", "in_store_pickup": True}

    decision = propose(order, "reroute_fulfilment", before, after)
    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW
    review_item_accept(item_id=decision.review_item_id, user=manager)

    reservation = Reservation.objects.get(order=order, status=ReservationStatus.ACTIVE)
    assert reservation.stock_level.location.code == "store-nyc"
    order.refresh_from_db()
    assert order.in_store_pickup is True
    assert order.status == OrderStatus.READY

    decision_revert(decision_id=decision.pk, user=manager, note="store closed")

    reservation = Reservation.objects.get(order=order, status=ReservationStatus.ACTIVE)
    assert reservation.stock_level.location.code == "wh-east"
    order.refresh_from_db()
    assert order.in_store_pickup is False


def test_pickup_never_rerouted_to_shipping(order):
    order.in_store_pickup = True
    order.save()

    decision = propose(
        order,
        "reroute_fulfilment",
        {"location": None, "in_store_pickup": True},
        {"location": "wh-east", "in_store_pickup": False},
    )

    assert decision.verdict == Verdict.BLOCKED
    assert "pickup_never_rerouted" in [
        r["rule"] for r in decision.reasons if r["outcome"] == "block"
    ]
    order.refresh_from_db()
    assert order.in_store_pickup is True


def test_cancel_accepted_then_reverted(order, manager, locations):
    stock_set("TEE-CLASSIC-BLK-M", locations["wh-east"], 1)
    order_reserve_stock(order=order)

    decision = propose(order, "cancel_order", {"status": "ready"}, {"status": "cancelled"})
    review_item_accept(item_id=decision.review_item_id, user=manager)

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert not Reservation.objects.filter(order=order, status=ReservationStatus.ACTIVE).exists()

    decision_revert(decision_id=decision.pk, user=manager, note="customer changed mind")

    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert Reservation.objects.filter(order=order, status=ReservationStatus.ACTIVE).count() == 1


def test_cancel_revert_conflicts_when_stock_gone(order, manager, locations):
    stock_set("TEE-CLASSIC-BLK-M", locations["wh-east"], 1)
    order_reserve_stock(order=order)
    decision = propose(order, "cancel_order", {"status": "ready"}, {"status": "cancelled"})
    review_item_accept(item_id=decision.review_item_id, user=manager)
    StockLevel.objects.filter(sku__code="TEE-CLASSIC-BLK-M").update(on_hand=0)

    with pytest.raises(DecisionConflict) as raised:
        decision_revert(decision_id=decision.pk, user=manager, note="")

    assert raised.value.code == "stock_gone"
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
