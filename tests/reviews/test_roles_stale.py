"""Who may decide an item, stale approvals, and two reviewers deciding at once."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from guardrails.models import Decision, ReviewOutcome
from orders.models import OrderStatus
from orders.services import order_version_bump
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from reviews.services import (
    ReviewConflict,
    ReviewForbidden,
    review_item_accept,
    review_item_may_decide,
    review_item_reject,
    review_item_revise,
)
from tests.conftest import as_body, make_user, order_payload
from tests.guardrails.conftest_decisions import (  # noqa: F401
    locations_fixture,
    order_fixture,
)
from tests.reviews.conftest import GOOD_ADDRESS, SUBSTITUTION, WRONG_ZIP_ADDRESS, propose

# --- Roles ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_agent_refused_on_address_correction_item(address_item, agent):
    assert not review_item_may_decide(address_item, agent)

    with pytest.raises(ReviewForbidden) as raised:
        review_item_accept(item_id=address_item.pk, user=agent)

    assert raised.value.code == "not_approver"
    assert "the CS manager role" in raised.value.message
    address_item.refresh_from_db()
    assert address_item.status == ReviewStatus.OPEN


@pytest.mark.django_db
def test_agent_refused_reject_and_revise_too(address_item, agent):
    with pytest.raises(ReviewForbidden):
        review_item_reject(item_id=address_item.pk, user=agent)
    with pytest.raises(ReviewForbidden):
        review_item_revise(item_id=address_item.pk, user=agent, revision=GOOD_ADDRESS)


@pytest.mark.django_db
def test_manager_accepts_address_correction_item(address_item, address_order, cs_manager):
    review_item_accept(item_id=address_item.pk, user=cs_manager)

    address_order.refresh_from_db()
    assert address_order.status == OrderStatus.READY
    assert address_order.shipping_address == address_item.proposal["normalized"]


@pytest.mark.django_db
def test_api_refusal_names_the_role(address_item, agent):
    client = APIClient()
    client.force_authenticate(agent)

    response = client.post(f"/api/v1/review-items/{address_item.pk}/accept/", {}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_approver"
    assert "the CS manager role" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_decide_permission_needed_without_approver(
    policies, channel, catalog, post_webhook, outsider
):
    lines = [{"id": 1, "sku": "NOT-MAPPED", "title": "Mystery", "quantity": 1, "price": "5.00"}]
    post_webhook(as_body(order_payload(line_items=lines)))
    item = ReviewItem.objects.get(kind=ReviewKind.UNMAPPED_SKU)

    assert item.approver_group == ""
    assert not review_item_may_decide(item, outsider)
    with pytest.raises(ReviewForbidden) as raised:
        review_item_accept(item_id=item.pk, user=outsider)
    assert raised.value.code == "forbidden"


@pytest.mark.django_db
def test_superuser_decides_anything(address_item):
    from django.contrib.auth.models import User

    admin = User.objects.create_superuser("root", password="pw-root-123")

    assert review_item_may_decide(address_item, admin)


@pytest.mark.django_db
def test_escalation_role_may_decide_once_escalated(order, agent, cs_manager):
    decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))
    item = decision.review_item
    with pytest.raises(ReviewForbidden):
        review_item_accept(item_id=item.pk, user=cs_manager)

    ReviewItem.objects.filter(pk=item.pk).update(escalated_to="cs_manager")
    review_item_accept(item_id=item.pk, user=cs_manager)

    decision.refresh_from_db()
    assert decision.applied_at is not None
    assert decision.review_outcome == ReviewOutcome.AGREED
    assert decision.reviewed_at is not None


# --- Stale approvals ------------------------------------------------------------------------


@pytest.mark.django_db
def test_stale_item_allows_only_reject(address_item, address_order, cs_manager):
    order_version_bump(address_order, reason="a later webhook")

    with pytest.raises(ReviewConflict) as raised:
        review_item_accept(item_id=address_item.pk, user=cs_manager)
    assert raised.value.code == "stale_order"
    assert "version 1, now 2" in raised.value.message

    with pytest.raises(ReviewConflict) as raised:
        review_item_revise(item_id=address_item.pk, user=cs_manager, revision=GOOD_ADDRESS)
    assert raised.value.code == "stale_order"

    review_item_reject(item_id=address_item.pk, user=cs_manager)
    address_item.refresh_from_db()
    assert address_item.status == ReviewStatus.REJECTED


@pytest.mark.django_db
def test_stale_approval_over_the_api_is_409(address_item, address_order, cs_manager):
    order_version_bump(address_order, reason="address edited")
    client = APIClient()
    client.force_authenticate(cs_manager)

    response = client.post(f"/api/v1/review-items/{address_item.pk}/accept/", {}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "stale_order"


@pytest.mark.django_db
def test_accept_keeps_sibling_items_current(order, agent):
    # Two proposals on one order; applying the first changes the order (a new version).
    carrier = propose(
        order,
        "select_carrier",
        {"carrier_service": "ups/ground"},
        {"carrier_service": "fedex/ground"},
        confidence=Decimal("0.5"),
    )
    substitution = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))

    review_item_accept(item_id=carrier.review_item_id, user=agent)

    order.refresh_from_db()
    item = ReviewItem.objects.get(pk=substitution.review_item_id)
    assert order.version > 1
    assert item.order_version == order.version
    review_item_accept(item_id=item.pk, user=agent)
    assert order.lines.get().sku.code == "TEE-CLASSIC-WHT-M"


@pytest.mark.django_db
def test_rejecting_a_decision_item_records_disagreement(order, agent):
    decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))

    review_item_reject(item_id=decision.review_item_id, user=agent, note="wrong colour")

    decision.refresh_from_db()
    assert decision.review_outcome == ReviewOutcome.DISAGREED
    assert decision.reviewed_at is not None


# --- Two reviewers at once (PostgreSQL row locks) -------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_accepts_decide_once(policies, channel, catalog, post_webhook):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real row locks between transactions")
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))
    item = ReviewItem.objects.get(kind=ReviewKind.ADDRESS)
    first, second = make_user("morgan", "cs_manager"), make_user("maria", "cs_manager")
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def decide(user) -> None:
        barrier.wait()
        try:
            review_item_accept(item_id=item.pk, user=user)
            outcomes[user.username] = "accepted"
        except ReviewConflict as conflict:
            outcomes[user.username] = conflict.code
        finally:
            # Each thread has its own connection; close it so the test database can be dropped.
            connection.close()

    threads = [threading.Thread(target=decide, args=(user,)) for user in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes.values()) == ["accepted", "already_decided"]
    item.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.decided_by.username == next(n for n, o in outcomes.items() if o == "accepted")
    assert Decision.objects.count() == 0
    events = item.order.events.filter(kind="review.accepted")
    assert events.count() == 1


@pytest.mark.django_db
def test_second_decision_gets_already_decided(address_item, cs_manager):
    review_item_accept(item_id=address_item.pk, user=cs_manager)
    client = APIClient()
    client.force_authenticate(make_user("maria", "cs_manager"))

    response = client.post(f"/api/v1/review-items/{address_item.pk}/reject/", {}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_decided"
    assert "morgan" in response.json()["error"]["message"]
