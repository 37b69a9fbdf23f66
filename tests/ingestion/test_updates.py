import pytest

from guardrails.models import AuditEntry
from orders.models import Delivery, DeliveryOutcome, Order, OrderStatus
from reviews.models import ReviewItem, ReviewStatus
from tests.ingestion.conftest import shopify_update

pytestmark = pytest.mark.django_db

T0 = "2024-11-04T10:15:34-05:00"
T1 = "2024-11-04T11:00:00-05:00"
T2 = "2024-11-04T12:00:00-05:00"

TWO_SHIRTS = {
    "id": 13571113171923,
    "variant_id": 44012345678901,
    "sku": "TEE-CLASSIC-BLK-M",
    "name": "Classic Cotton T-Shirt - Black / M",
    "quantity": 3,
    "price": "19.99",
}


def test_newer_update_changes_lines_and_totals(channel, catalog, post_shopify):
    post_shopify(shopify_update(T0), webhook_id="wh-1", topic="orders/create")

    response = post_shopify(
        shopify_update(T1, lines=[TWO_SHIRTS], subtotal_price="59.97", total_price="64.97"),
        webhook_id="wh-2",
    )

    assert response.status_code == 200
    order = Order.objects.get()
    assert str(order.total) == "64.970"
    assert order.lines.get().quantity == 3
    assert order.status == OrderStatus.READY
    assert order.source_updated_at.isoformat() == "2024-11-04T16:00:00+00:00"
    assert Delivery.objects.get(delivery_id="wh-2").outcome == DeliveryOutcome.PROCESSED
    kinds = list(order.events.values_list("kind", flat=True))
    assert "order.updated" in kinds
    assert kinds.count("order.ready") == 2
    assert AuditEntry.objects.filter(action="order.updated", target_id=order.pk).count() == 1


@pytest.mark.parametrize("updated_at", [T0, "2024-11-04T09:00:00-05:00"])
def test_older_or_equal_update_is_stale(channel, catalog, post_shopify, updated_at):
    post_shopify(shopify_update(T0), webhook_id="wh-1", topic="orders/create")

    post_shopify(
        shopify_update(updated_at, lines=[TWO_SHIRTS], total_price="64.97"), webhook_id="wh-2"
    )

    order = Order.objects.get()
    assert str(order.total) == "44.980"
    assert order.lines.get().quantity == 2
    stale = Delivery.objects.get(delivery_id="wh-2")
    assert stale.outcome == DeliveryOutcome.STALE_UPDATE
    assert "was updated at" in stale.error
    assert not order.events.filter(kind="order.updated").exists()


def test_retried_old_delivery_after_newer_is_stale(channel, catalog, post_shopify):
    post_shopify(shopify_update(T0), webhook_id="wh-1", topic="orders/create")
    post_shopify(shopify_update(T2, total_price="50.00"), webhook_id="wh-3")

    post_shopify(shopify_update(T1, total_price="60.00"), webhook_id="wh-2")

    assert str(Order.objects.get().total) == "50.000"
    assert Delivery.objects.get(delivery_id="wh-2").outcome == DeliveryOutcome.STALE_UPDATE


def test_update_resolves_items_that_no_longer_apply(channel, catalog, post_shopify):
    unmapped = dict(TWO_SHIRTS, sku="NOT-MAPPED", variant_id=1, quantity=1)
    post_shopify(
        shopify_update(T0, lines=[unmapped], subtotal_price="19.99", total_price="24.99"),
        webhook_id="wh-1",
        topic="orders/create",
    )
    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD
    item = ReviewItem.objects.get(order=order)

    post_shopify(shopify_update(T1), webhook_id="wh-2")

    item.refresh_from_db()
    order.refresh_from_db()
    assert item.status == ReviewStatus.RESOLVED
    assert item.decision_note.startswith("Order updated by the channel (delivery wh-2)")
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []
    assert ReviewItem.objects.filter(status=ReviewStatus.OPEN).count() == 0


def test_update_opens_items_the_new_version_needs(channel, catalog, post_shopify):
    post_shopify(shopify_update(T0), webhook_id="wh-1", topic="orders/create")
    unmapped = dict(TWO_SHIRTS, sku="NOT-MAPPED", variant_id=1, quantity=1)

    post_shopify(
        shopify_update(T1, lines=[unmapped], subtotal_price="19.99", total_price="24.99"),
        webhook_id="wh-2",
    )

    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD
    assert [reason["code"] for reason in order.hold_reasons] == ["unmapped_sku"]
    assert ReviewItem.objects.get(status=ReviewStatus.OPEN).order == order


def test_cancellation_cancels_order_and_closes_items(channel, catalog, post_shopify):
    unmapped = dict(TWO_SHIRTS, sku="NOT-MAPPED", variant_id=1, quantity=1)
    post_shopify(
        shopify_update(T0, lines=[unmapped], subtotal_price="19.99", total_price="24.99"),
        webhook_id="wh-1",
        topic="orders/create",
    )

    response = post_shopify(
        shopify_update(T1, lines=[unmapped], cancelled_at=T1),
        webhook_id="wh-2",
        topic="orders/cancelled",
    )

    assert response.status_code == 200
    order = Order.objects.get()
    assert order.status == OrderStatus.CANCELLED
    assert order.hold_reasons == []
    assert ReviewItem.objects.get().status == ReviewStatus.RESOLVED
    assert order.events.filter(kind="order.cancelled").count() == 1
    assert AuditEntry.objects.filter(action="order.cancelled", target_id=order.pk).count() == 1


def test_cancelled_order_ignores_later_updates(channel, catalog, post_shopify):
    post_shopify(shopify_update(T0), webhook_id="wh-1", topic="orders/create")
    post_shopify(shopify_update(T1, cancelled_at=T1), webhook_id="wh-2", topic="orders/cancelled")

    post_shopify(shopify_update(T2), webhook_id="wh-3")

    assert Order.objects.get().status == OrderStatus.CANCELLED
    later = Delivery.objects.get(delivery_id="wh-3")
    assert later.outcome == DeliveryOutcome.STALE_UPDATE
    assert "is cancelled" in later.error


def test_first_delivery_already_cancelled(channel, catalog, post_shopify):
    post_shopify(shopify_update(T0, cancelled_at=T0), webhook_id="wh-1", topic="orders/cancelled")

    order = Order.objects.get()
    assert order.status == OrderStatus.CANCELLED
    assert list(order.events.values_list("kind", flat=True)) == [
        "order.received",
        "order.cancelled",
    ]


def test_unsupported_topic_names_the_accepted_ones(channel, post_shopify):
    response = post_shopify(shopify_update(T0), webhook_id="wh-1", topic="orders/paid")

    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "Topic 'orders/paid' is not supported; expected orders/create, orders/updated, "
        "orders/cancelled."
    )


def test_webhook_and_event_ids_are_kept(channel, catalog, post_shopify):
    post_shopify(shopify_update(T0), webhook_id="wh-1", topic="orders/updated")

    delivery = Delivery.objects.get()
    assert delivery.delivery_id == "wh-1"
    assert delivery.event_id == "ev-wh-1"
    assert delivery.topic == "orders/updated"
