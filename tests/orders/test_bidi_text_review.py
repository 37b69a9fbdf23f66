"""The bidi_text review item in the queue: its card, and accepting it through the API."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from orders.models import Order, OrderStatus
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.conftest import as_body, make_user, order_payload

pytestmark = pytest.mark.django_db

CUSTOMER = {"id": 7012345678901, "first_name": "Ada", "last_name": "\u202eQuill"}


def held_order(post_webhook) -> Order:
    post_webhook(as_body(order_payload(customer=CUSTOMER)))
    return Order.objects.get()


def test_item_page_shows_controls_written_out(channel, catalog, post_webhook):
    order = held_order(post_webhook)
    item = ReviewItem.objects.get(order=order, kind=ReviewKind.BIDI_TEXT)
    client = Client()
    client.force_login(make_user("bidi-agent", "cs_agent"))

    html = client.get(reverse("reviews:item", args=[item.pk])).content.decode()

    assert "<code>customer.name</code>" in html
    assert "Ada [U+202E]Quill" in html
    assert "Remove controls and release" in html
    assert "\u202e" not in html.split("Raw payload")[0].split("Fields with bidirectional")[1]


def test_api_accept_cleans_and_releases(channel, catalog, post_webhook):
    order = held_order(post_webhook)
    item = ReviewItem.objects.get(order=order, kind=ReviewKind.BIDI_TEXT)
    agent = make_user("bidi-api-agent", "cs_agent")
    client = Client(headers={"Authorization": f"Token {Token.objects.create(user=agent).key}"})

    response = client.post(f"/api/v1/review-items/{item.pk}/accept/", {"note": "checked"})

    assert response.status_code == 200, response.content
    item.refresh_from_db()
    order.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.decision == {"action": "remove_bidi_controls", "fields": ["customer.name"]}
    assert order.customer_name == "Ada Quill"
    assert order.status == OrderStatus.READY
