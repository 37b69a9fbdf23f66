"""Bidirectional controls outside the shipping address: the customer name, the billing
address, line titles and the shipping method hold a channel order for review, never fail it."""

import pytest
from django.db import transaction

from guardrails.models import AuditEntry
from orders.hygiene.bidi_text import bidi_text_accept
from orders.models import Order, OrderEvent, OrderStatus
from reviews.models import ReviewItem
from tests.conftest import as_body, make_user, order_payload, signed_headers

pytestmark = pytest.mark.django_db

LINE = {
    "id": 13571113171923,
    "variant_id": 44012345678901,
    "sku": "TEE-CLASSIC-BLK-M",
    "title": "Classic Cotton T-Shirt",
    "name": "Classic Cotton T-Shirt - Black / M",
    "quantity": 2,
    "price": "19.99",
}
BILLING = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
}


def held_order(post_webhook, **overrides) -> Order:
    response = post_webhook(as_body(order_payload(**overrides)))
    assert response.status_code == 200, response.content
    return Order.objects.get()


def bidi_item(order: Order) -> ReviewItem:
    return ReviewItem.objects.get(order=order, kind="bidi_text")


def test_customer_name_holds_order(channel, catalog, post_webhook):
    customer = {"id": 7012345678901, "first_name": "Ada", "last_name": "\u202eQuill"}

    order = held_order(post_webhook, customer=customer)

    assert order.status == OrderStatus.ON_HOLD
    item = bidi_item(order)
    assert order.hold_reasons == [
        {
            "severity": "hold",
            "code": "bidi_text",
            "message": "Bidirectional control characters in customer.name wait for review "
            f"item #{item.pk}",
            "review_item": item.pk,
            "data": {"fields": ["customer.name"]},
        }
    ]
    assert item.reason == (
        "customer.name contains Unicode bidirectional control characters (U+202E), which "
        "can make it display in another order. Accepting removes them."
    )
    assert item.proposal == {
        "action": "remove_bidi_controls",
        "fields": [
            {
                "field": "customer.name",
                "value": "Ada \u202eQuill",
                "shown": "Ada [U+202E]Quill",
                "cleaned": "Ada Quill",
                "controls": ["U+202E"],
            }
        ],
    }
    # The shipping address is clean, so no address item opens.
    assert list(ReviewItem.objects.values_list("kind", flat=True)) == ["bidi_text"]


def test_billing_address_fields_named(channel, catalog, post_webhook):
    billing = BILLING | {"address1": "12 \u2066Birch\u2069 Lane", "province_code": "T\u202dX"}

    order = held_order(post_webhook, billing_address=billing)

    assert order.status == OrderStatus.ON_HOLD
    item = bidi_item(order)
    fields = [(entry["field"], entry["controls"]) for entry in item.proposal["fields"]]
    assert fields == [
        ("billing_address.address1", ["U+2066", "U+2069"]),
        ("billing_address.region", ["U+202D"]),
    ]
    assert order.hold_reasons[0]["data"] == {
        "fields": ["billing_address.address1", "billing_address.region"]
    }


def test_line_title_and_shipping_method(channel, catalog, post_webhook):
    second = LINE | {"id": 2, "name": "Gift \u202ewrap\u202c", "sku": "TEE-CLASSIC-WHT-M"}
    shipping = [{"code": "Standard", "title": "Standard \u2067Shipping", "price": "5.00"}]

    order = held_order(post_webhook, lines=[LINE, second], shipping_lines=shipping)

    assert order.status == OrderStatus.ON_HOLD
    fields = [entry["field"] for entry in bidi_item(order).proposal["fields"]]
    assert fields == ["shipping.method", "lines[1].title"]


def test_right_to_left_text_not_held(channel, catalog, post_webhook):
    customer = {"id": 7012345678901, "first_name": "דנה", "last_name": "כהן"}
    billing = BILLING | {"name": "دار النشر"}
    line = LINE | {"name": "Gift \u202ewrap"}

    order = held_order(post_webhook, customer=customer, billing_address=billing, lines=[line])

    # Only the line has a control; the Hebrew and Arabic names display correctly without them.
    assert [entry["field"] for entry in bidi_item(order).proposal["fields"]] == ["lines[0].title"]


def test_accept_removes_controls(channel, catalog, post_webhook):
    customer = {"id": 7012345678901, "first_name": "Ada", "last_name": "\u202eQuill"}
    billing = BILLING | {"city": "Aus\u202btin"}
    line = LINE | {"name": "Classic \u2068Tee\u2069"}
    order = held_order(post_webhook, customer=customer, billing_address=billing, lines=[line])
    item = bidi_item(order)
    version = order.version
    manager = make_user("bidi-manager", "cs_manager")

    with transaction.atomic():
        decision = bidi_text_accept(item=item, order=order, user=manager)

    assert decision == {
        "action": "remove_bidi_controls",
        "fields": ["billing_address.city", "customer.name", "lines[0].title"],
    }
    order.refresh_from_db()
    assert order.customer_name == "Ada Quill"
    assert order.billing_address["city"] == "Austin"
    assert order.lines.get().title == "Classic Tee"
    assert order.lines.get().raw["name"] == "Classic \u2068Tee\u2069"
    assert order.version == version + 1
    entry = AuditEntry.objects.get(action="order.bidi_controls_removed")
    assert entry.actor == manager
    assert entry.before["customer.name"] == "Ada \u202eQuill"
    assert entry.after["customer.name"] == "Ada Quill"
    assert OrderEvent.objects.filter(order=order, kind="order.bidi_controls_removed").exists()


def test_channel_update_without_controls_releases(channel, catalog, post_webhook):
    customer = {"id": 7012345678901, "first_name": "Ada", "last_name": "\u202eQuill"}
    order = held_order(post_webhook, customer=customer)
    item = bidi_item(order)

    body = as_body(order_payload(updated_at="2024-11-04T10:20:00-05:00"))
    headers = signed_headers(body, webhook_id="wh-2") | {"X-Shopify-Topic": "orders/updated"}
    post_webhook(body, headers=headers)

    order.refresh_from_db()
    item.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert item.status == "resolved"
