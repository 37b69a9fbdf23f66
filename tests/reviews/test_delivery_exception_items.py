"""Signed but unprocessable deliveries open an exception item in the review queue."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from orders.models import Delivery, DeliveryOutcome, Order
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.conftest import as_body, make_user, order_payload

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def failed_item(channel, catalog, post_webhook) -> ReviewItem:
    post_webhook(as_body(order_payload(total_price="-1")))
    return ReviewItem.objects.get(kind=ReviewKind.DELIVERY_FAILED)


def test_failed_delivery_opens_one_exception_item(failed_item):
    delivery = Delivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.FAILED
    assert failed_item.delivery == delivery
    assert failed_item.order is None
    assert failed_item.status == ReviewStatus.OPEN
    assert failed_item.reason == (
        "Delivery wh-1 (orders/create) from channel shop could not be processed: "
        "total_price: negative amount: -1"
    )


def test_queue_shows_exception_item_with_replay(client, agent, failed_item):
    client.force_login(agent)

    html = client.get(reverse("reviews:queue")).content.decode()

    assert "Unprocessable delivery" in html
    assert "<code>wh-1</code>" in html
    assert ">Replay</button>" in html


def test_replay_processes_the_delivery_again(client, agent, failed_item, settings):
    client.force_login(agent)
    response = client.post(reverse("reviews:accept", args=[failed_item.pk]), headers=HTMX)

    assert response.status_code == 200
    assert "queued for processing again" in response.content.decode()
    failed_item.refresh_from_db()
    assert failed_item.status == ReviewStatus.ACCEPTED
    assert failed_item.decided_by == agent
    assert Delivery.objects.get().outcome == DeliveryOutcome.RECEIVED


def test_reject_dismisses_without_an_order(client, agent, failed_item):
    client.force_login(agent)

    response = client.post(
        reverse("reviews:reject", args=[failed_item.pk]), {"note": "test order"}, headers=HTMX
    )

    assert response.status_code == 200
    assert "dismissed" in response.content.decode()
    failed_item.refresh_from_db()
    assert failed_item.status == ReviewStatus.REJECTED
    assert failed_item.decision_note == "test order"
    assert Order.objects.count() == 0


def test_admin_replay_resolves_the_open_item(failed_item):
    from orders.services import delivery_replay

    delivery_replay(delivery_id=failed_item.delivery_id, actor=None, reason="fixed")

    failed_item.refresh_from_db()
    assert failed_item.status == ReviewStatus.RESOLVED


def test_api_lists_exception_items(failed_item):
    client = APIClient()
    user = make_user("api-agent", "cs_agent")
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    response = client.get("/api/v1/review-items/?kind=delivery_failed")

    assert response.status_code == 200
    [item] = response.json()["results"]
    assert item["order"] is None
    assert item["order_number"] is None
    assert item["channel"] == "shop"
    assert item["delivery"] == failed_item.delivery_id


def test_queue_query_count_flat_with_exception_items(agent, channel, catalog, post_webhook):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.conftest import signed_headers

    client = Client()
    client.force_login(agent)

    def fail(number: int) -> None:
        body = as_body(order_payload(order_id=100 + number, total_price="-1"))
        post_webhook(body, signed_headers(body, webhook_id=f"wh-bad-{number}"))

    fail(0)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("reviews:queue"))
    for number in range(1, 8):
        fail(number)
    with CaptureQueriesContext(connection) as many:
        client.get(reverse("reviews:queue"))

    assert len(many.captured_queries) == len(few.captured_queries)
