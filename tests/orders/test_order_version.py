"""Order versions: material changes bump Order.version, the review flow's holds do not."""

import pytest
from django.contrib.auth.models import User

from orders.models import CarrierService, Order, OrderStatus
from orders.services import (
    order_address_set,
    order_cancel_by_decision,
    order_carrier_service_change,
    order_line_sku_substitute,
    order_pickup_set,
    order_reinstate,
    order_update_hold_reasons,
    order_version_bump,
)
from reviews.models import ReviewItem, ReviewKind
from reviews.services import review_item_accept, review_item_reject
from tests.conftest import as_body, order_payload, signed_headers

pytestmark = pytest.mark.django_db

T0 = "2024-11-04T10:15:34-05:00"
T1 = "2024-11-04T11:00:00-05:00"
# Austin, TX with a California ZIP code: the address check holds it with a correction.
WRONG_ZIP_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "94105",
    "country_code": "US",
}


@pytest.fixture
def reviewer(db) -> User:
    # A superuser, so these tests do not depend on which role approves which kind.
    return User.objects.create_superuser(username="rita", password="pw-rita")


def post(post_webhook, *, webhook_id="wh-1", topic="orders/create", **overrides) -> Order:
    body = as_body(order_payload(**overrides))
    headers = signed_headers(body, webhook_id=webhook_id) | {"X-Shopify-Topic": topic}
    post_webhook(body, headers)
    return Order.objects.get()


def test_new_order_starts_at_version_one(channel, catalog, post_webhook):
    order = post(post_webhook)

    assert order.version == 1
    assert order.status == OrderStatus.READY


def test_later_webhook_update_bumps_version(channel, catalog, post_webhook):
    post(post_webhook, updated_at=T0)

    order = post(
        post_webhook, webhook_id="wh-2", topic="orders/updated", updated_at=T1, total_price="50.00"
    )

    assert order.version == 2
    assert str(order.total) == "50.000"


def test_stale_webhook_update_keeps_version(channel, catalog, post_webhook):
    post(post_webhook, updated_at=T1)

    order = post(post_webhook, webhook_id="wh-2", topic="orders/updated", updated_at=T0)

    assert order.version == 1


def test_channel_cancellation_bumps_version(channel, catalog, post_webhook):
    post(post_webhook, updated_at=T0)

    order = post(
        post_webhook,
        webhook_id="wh-2",
        topic="orders/cancelled",
        updated_at=T1,
        cancelled_at=T1,
    )

    assert order.status == OrderStatus.CANCELLED
    assert order.version == 2


def test_hold_reason_change_keeps_version(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    order = post(post_webhook)
    assert [reason["code"] for reason in order.hold_reasons] == ["high_value"]

    order_update_hold_reasons(order=order, reasons=[], actor=None)

    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.version == 1


def test_accepting_release_item_keeps_version(channel, catalog, post_webhook, settings, reviewer):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    order = post(post_webhook)
    item = ReviewItem.objects.get(kind=ReviewKind.HIGH_VALUE)

    review_item_accept(item_id=item.pk, user=reviewer)

    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.version == 1


def test_rejecting_item_keeps_version(channel, catalog, post_webhook, settings, reviewer):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    order = post(post_webhook)
    item = ReviewItem.objects.get(kind=ReviewKind.HIGH_VALUE)

    review_item_reject(item_id=item.pk, user=reviewer)

    order.refresh_from_db()
    assert [reason["code"] for reason in order.hold_reasons] == ["review_rejected"]
    assert order.version == 1


def test_address_accept_bumps_version(channel, catalog, post_webhook, reviewer):
    order = post(post_webhook, shipping_address=WRONG_ZIP_ADDRESS)
    item = ReviewItem.objects.get(kind=ReviewKind.ADDRESS)

    review_item_accept(item_id=item.pk, user=reviewer)

    order.refresh_from_db()
    assert order.version == 2


def test_carrier_code_accept_bumps_version(channel, catalog, post_webhook, reviewer):
    order = post(post_webhook, shipping_lines=[{"code": "Standard", "price": "5.00"}])
    item = ReviewItem.objects.get(kind=ReviewKind.CARRIER_CODE)
    ground = CarrierService.objects.get(carrier__code="usps", code="ground_advantage")

    review_item_accept(item_id=item.pk, user=reviewer, service_id=ground.pk)

    order.refresh_from_db()
    assert order.carrier_service == ground
    assert order.version == 2


def test_unmapped_sku_accept_bumps_version(channel, catalog, post_webhook, reviewer):
    line = dict(order_payload()["line_items"][0], sku="NOT-MAPPED", variant_id=1)
    order = post(post_webhook, lines=[line])
    item = ReviewItem.objects.get(kind=ReviewKind.UNMAPPED_SKU)

    review_item_accept(item_id=item.pk, user=reviewer, sku_id=catalog[1].pk)

    order.refresh_from_db()
    assert order.lines.get().sku == catalog[1]
    assert order.version == 2


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda order, user, catalog: order_address_set(
                order=order,
                field="billing_address",
                address=WRONG_ZIP_ADDRESS,
                actor=user,
                reason="test",
            ),
            id="address",
        ),
        pytest.param(
            lambda order, user, catalog: order_carrier_service_change(
                order=order, service=None, actor=user, reason="test"
            ),
            id="carrier",
        ),
        pytest.param(
            lambda order, user, catalog: order_pickup_set(
                order=order, in_store_pickup=True, actor=user, reason="test"
            ),
            id="pickup",
        ),
        pytest.param(
            lambda order, user, catalog: order_line_sku_substitute(
                line=order.lines.get(), sku=catalog[1], actor=user, reason="test"
            ),
            id="substitute",
        ),
        pytest.param(
            lambda order, user, catalog: order_cancel_by_decision(
                order=order, actor=user, reason="test"
            ),
            id="cancel",
        ),
    ],
)
def test_decision_changes_bump_version(channel, catalog, post_webhook, reviewer, change):
    order = post(post_webhook)

    change(order, reviewer, catalog)

    order.refresh_from_db()
    assert order.version == 2


def test_reinstate_bumps_version_again(channel, catalog, post_webhook, reviewer):
    order = post(post_webhook)
    order_cancel_by_decision(order=order, actor=reviewer, reason="test")

    order_reinstate(
        order=order, status=OrderStatus.READY, hold_reasons=[], actor=reviewer, reason="undo"
    )

    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.version == 3


def test_pickup_unchanged_keeps_version(channel, catalog, post_webhook, reviewer):
    order = post(post_webhook)

    order_pickup_set(order=order, in_store_pickup=False, actor=reviewer, reason="no change")

    order.refresh_from_db()
    assert order.version == 1


def test_bump_counts_changes_of_another_instance(channel, catalog, post_webhook):
    order = post(post_webhook)
    other = Order.objects.get(pk=order.pk)

    order_version_bump(other, reason="first")
    order_version_bump(order, reason="second")

    assert order.version == 3
    assert Order.objects.get().version == 3
