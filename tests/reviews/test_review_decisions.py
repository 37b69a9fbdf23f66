"""Accepting and rejecting review items: the order's hold, mappings, events and audit."""

import pytest

from catalog.models import ChannelSkuMapping, ExternalIdKind
from guardrails.models import AuditEntry
from orders.models import Order, OrderStatus
from reviews.models import ReviewItem, ReviewStatus
from reviews.services import (
    ReviewConflict,
    ReviewError,
    ReviewForbidden,
    review_item_accept,
    review_item_reject,
)
from tests.conftest import as_body, order_payload
from tests.orders.test_pipeline import UNMAPPED_LINE

pytestmark = pytest.mark.django_db


@pytest.fixture
def held_order(channel, catalog, post_webhook) -> Order:
    lines = [order_payload()["line_items"][0], UNMAPPED_LINE]
    post_webhook(as_body(order_payload(lines=lines)))
    return Order.objects.get()


@pytest.fixture
def item(held_order) -> ReviewItem:
    return ReviewItem.objects.get(order=held_order)


def test_accept_maps_line_and_releases_hold(item, agent, channel, catalog):
    review_item_accept(item_id=item.pk, user=agent)

    item.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.decided_by == agent
    assert item.decided_at is not None
    assert item.decision["sku"] == "TEE-CLASSIC-BLK-M"
    mapping = ChannelSkuMapping.objects.get(
        channel=channel, id_kind=ExternalIdKind.SKU, external_id="TSHIRT-CLASSIC-BLACK-MED"
    )
    assert mapping.sku == catalog[0]
    assert item.order_line.sku == catalog[0]
    order = Order.objects.get()
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []


def test_accept_with_chosen_sku(item, agent, catalog):
    review_item_accept(item_id=item.pk, user=agent, sku_id=catalog[1].pk)

    item.refresh_from_db()
    assert item.order_line.sku == catalog[1]


def test_accept_records_event_and_audit_with_user(item, agent):
    review_item_accept(item_id=item.pk, user=agent, note="same tee, old code")

    event = item.order.events.get(kind="review.accepted")
    assert event.actor == agent
    assert event.message == f"Review item #{item.pk} accepted by alice."
    audit = AuditEntry.objects.get(action="review_item.accepted")
    assert audit.actor == agent
    assert audit.actor_label == "alice"
    assert audit.reason == "same tee, old code"
    assert audit.before["status"] == "open"
    assert audit.after["status"] == "accepted"
    assert AuditEntry.objects.filter(action="order.released", actor=agent).count() == 1
    assert AuditEntry.objects.filter(action="mapping.created", actor=agent).count() == 1


def test_reject_keeps_hold_with_reason(item, agent):
    review_item_reject(item_id=item.pk, user=agent, note="not a product we sell")

    item.refresh_from_db()
    assert item.status == ReviewStatus.REJECTED
    assert item.decided_by == agent
    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD
    assert [reason["code"] for reason in order.hold_reasons] == ["review_rejected"]
    assert not ChannelSkuMapping.objects.filter(external_id="TSHIRT-CLASSIC-BLACK-MED").exists()
    assert AuditEntry.objects.get(action="review_item.rejected").actor == agent


def test_order_with_two_items_is_released_only_after_both(channel, catalog, post_webhook, agent):
    second = UNMAPPED_LINE | {"sku": "LEGACY-MUG", "title": "Enamel Mug", "name": "Enamel Mug"}
    post_webhook(as_body(order_payload(lines=[UNMAPPED_LINE, second])))
    first_item, second_item = ReviewItem.objects.order_by("pk")

    review_item_accept(item_id=first_item.pk, user=agent)
    assert Order.objects.get().status == OrderStatus.ON_HOLD

    review_item_accept(item_id=second_item.pk, user=agent)
    assert Order.objects.get().status == OrderStatus.READY


def test_second_decision_is_a_conflict(item, agent):
    review_item_accept(item_id=item.pk, user=agent)

    with pytest.raises(ReviewConflict) as raised:
        review_item_reject(item_id=item.pk, user=agent)

    assert raised.value.code == "already_decided"
    assert raised.value.message == f"Review item #{item.pk} was already accepted by alice."


def test_user_without_permission_is_refused(item, outsider):
    with pytest.raises(ReviewForbidden) as raised:
        review_item_accept(item_id=item.pk, user=outsider)

    assert raised.value.status == 403
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN


def test_integration_user_cannot_decide(item):
    from tests.conftest import make_user

    with pytest.raises(ReviewForbidden):
        review_item_reject(item_id=item.pk, user=make_user("robot", "integration"))


def test_inactive_or_unknown_sku_is_invalid(item, agent, catalog):
    catalog[1].is_active = False
    catalog[1].save()

    with pytest.raises(ReviewError) as raised:
        review_item_accept(item_id=item.pk, user=agent, sku_id=catalog[1].pk)

    assert raised.value.code == "invalid_sku"


def test_mapping_to_another_sku_is_a_conflict(item, agent, channel, catalog):
    ChannelSkuMapping.objects.create(
        channel=channel,
        id_kind=ExternalIdKind.SKU,
        external_id="TSHIRT-CLASSIC-BLACK-MED",
        sku=catalog[2],
    )

    with pytest.raises(ReviewConflict) as raised:
        review_item_accept(item_id=item.pk, user=agent, sku_id=catalog[0].pk)

    assert raised.value.code == "mapping_conflict"
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN


def test_no_candidate_and_no_choice_is_an_error(item, agent):
    item.proposal = {"candidates": []}
    item.save()

    with pytest.raises(ReviewError) as raised:
        review_item_accept(item_id=item.pk, user=agent)

    assert raised.value.code == "no_candidate"
