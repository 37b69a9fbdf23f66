"""Review items opened by decisions: who may approve, what accepting and rejecting change."""

import pytest
from django.urls import reverse

from guardrails.models import AuditEntry, Decision, Verdict
from guardrails.services import decision_propose
from orders.models import OrderStatus
from reviews.models import ReviewKind, ReviewStatus
from reviews.services import ReviewForbidden, review_item_accept, review_item_reject
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SHIPPING_ADDRESS,
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
)

CORRECTED = {**SHIPPING_ADDRESS, "address1": "12 Birch Ln", "zip": "78702"}


def propose_address(order) -> Decision:
    return decision_propose(
        order_id=order.pk,
        action_code="correct_shipping_address",
        before={"shipping_address": SHIPPING_ADDRESS},
        after={"shipping_address": CORRECTED},
        confidence="0.97",
        model_name="gpt-addr",
        model_version="3",
    )


def propose_substitution(order, confidence="0.90") -> Decision:
    return decision_propose(
        order_id=order.pk,
        action_code="substitute_sku",
        before=SUBSTITUTION[0],
        after=SUBSTITUTION[1],
        confidence=confidence,
        model_name="gpt-sub",
        model_version="2024-06",
    )


def test_address_queued_for_manager(order):
    decision = propose_address(order)

    assert decision.verdict == Verdict.QUEUED_FOR_REVIEW
    assert decision.review_item.kind == ReviewKind.ADDRESS
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert order.shipping_address == SHIPPING_ADDRESS


def test_agent_may_not_approve_address(order, agent):
    decision = propose_address(order)

    with pytest.raises(ReviewForbidden) as raised:
        review_item_accept(item_id=decision.review_item_id, user=agent)

    assert raised.value.code == "not_approver"
    decision.review_item.refresh_from_db()
    assert decision.review_item.status == ReviewStatus.OPEN


def test_manager_accepts_address(order, manager):
    decision = propose_address(order)

    review_item_accept(item_id=decision.review_item_id, user=manager)

    order.refresh_from_db()
    assert order.shipping_address == CORRECTED
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []
    decision.refresh_from_db()
    assert decision.applied_at is not None
    entry = AuditEntry.objects.get(action="decision.applied", target_id=str(decision.pk))
    assert entry.actor.username == "morgan"
    assert entry.before == {"shipping_address": SHIPPING_ADDRESS}
    assert entry.after["shipping_address"] == CORRECTED


def test_agent_accepts_substitution(order, agent):
    # Substitutions are approved by cs_agent under the default policy.
    decision = propose_substitution(order)

    review_item_accept(item_id=decision.review_item_id, user=agent)

    assert order.lines.get().sku.code == "TEE-CLASSIC-WHT-M"
    decision.refresh_from_db()
    assert decision.applied_at is not None


def test_reject_leaves_order_unchanged(order, agent):
    decision = propose_substitution(order)

    review_item_reject(item_id=decision.review_item_id, user=agent, note="colour matters")

    assert order.lines.get().sku.code == "TEE-CLASSIC-BLK-M"
    decision.refresh_from_db()
    assert decision.applied_at is None
    assert decision.review_item.status == ReviewStatus.REJECTED
    assert AuditEntry.objects.filter(
        action="decision.rejected", target_id=str(decision.pk)
    ).exists()
    order.refresh_from_db()
    # The proposal's own hold goes with it: the order is back where it was, ready.
    assert order.hold_reasons == []
    assert order.status == OrderStatus.READY


def test_accept_refused_when_order_changed(order, manager):
    from reviews.services import ReviewConflict

    decision = propose_address(order)
    order.refresh_from_db()
    order.shipping_address = {**SHIPPING_ADDRESS, "city": "Dallas"}
    order.save()

    with pytest.raises(ReviewConflict) as raised:
        review_item_accept(item_id=decision.review_item_id, user=manager)

    assert raised.value.code == "stale_state"
    order.refresh_from_db()
    assert order.shipping_address["city"] == "Dallas"


def test_queue_page_renders_decision_items(order, client, manager):
    address = propose_address(order)
    substitution = propose_substitution(order)
    client.force_login(manager)

    response = client.get(reverse("reviews:queue"))

    assert response.status_code == 200
    page = response.content.decode()
    assert f"decision #{address.pk}" in page
    assert f"decision #{substitution.pk}" in page
    assert "gpt-sub" in page
    assert "Confidence" in page
