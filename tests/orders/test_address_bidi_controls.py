"""A channel address with bidirectional controls is held for a person, not failed."""

from decimal import Decimal

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from orders.models import Order, OrderStatus
from reviews.models import ReviewItem
from tests.conftest import as_body, make_user, order_payload

pytestmark = pytest.mark.django_db

ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Ln",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
}


def order_with_address(post_webhook, address: dict) -> Order:
    post_webhook(as_body(order_payload(shipping_address=address)))
    return Order.objects.get()


def test_clean_address_ready(channel, catalog, post_webhook):
    order = order_with_address(post_webhook, ADDRESS)

    assert order.status == OrderStatus.READY
    assert order.address_reasons == []


def test_bidi_override_holds_order(channel, catalog, post_webhook):
    address = ADDRESS | {"address1": "12 \u202eBirch Ln\u202c"}

    order = order_with_address(post_webhook, address)

    assert order.status == OrderStatus.ON_HOLD
    assert order.address_score == Decimal("0.70")
    assert order.address_reasons == [
        {
            "code": "bidi_control",
            "field": "address1",
            "message": "address1 contains Unicode bidirectional control characters "
            "(U+202E, U+202C), which can make it display in another order. The suggested "
            "address has them removed.",
            "severity": "error",
        }
    ]
    item = ReviewItem.objects.get(order=order)
    assert item.proposal["normalized"]["address1"] == "12 Birch Ln"
    row = next(row for row in item.proposal["comparison"] if row["field"] == "address1")
    assert row["changed"] is True
    assert row["unresolved"] == []


def test_bidi_isolate_in_name_holds_order(channel, catalog, post_webhook):
    order = order_with_address(post_webhook, ADDRESS | {"name": "Ada \u2067Quill\u2069"})

    assert order.status == OrderStatus.ON_HOLD
    assert [(r["code"], r["field"]) for r in order.address_reasons] == [("bidi_control", "name")]


def test_bidi_held_despite_lowered_threshold(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ADDRESS_MIN_SCORE = "0.50"

    order = order_with_address(post_webhook, ADDRESS | {"address2": "Apt \u202e3B"})

    assert order.address_score == Decimal("0.70")
    assert order.status == OrderStatus.ON_HOLD
    assert ReviewItem.objects.filter(order=order).count() == 1


def test_accepting_suggestion_removes_controls(channel, catalog, post_webhook):
    order = order_with_address(post_webhook, ADDRESS | {"city": "Aus\u202dtin"})
    item = ReviewItem.objects.get(order=order)
    manager = make_user("api-manager", "cs_manager")
    client = Client(headers={"Authorization": f"Token {Token.objects.create(user=manager).key}"})

    response = client.post(f"/api/v1/review-items/{item.pk}/accept/", {"note": "checked"})

    assert response.status_code == 200, response.content
    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.shipping_address["city"] == "AUSTIN"


def test_right_to_left_name_not_held(channel, catalog, post_webhook):
    order = order_with_address(post_webhook, ADDRESS | {"name": "דנה כהן", "company": "دار النشر"})

    assert order.status == OrderStatus.READY
    assert order.address_reasons == []
