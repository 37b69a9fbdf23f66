"""Out-of-stock items in the review queue page and its one-click retry."""

import pytest
from django.test import Client
from django.urls import reverse

from orders.models import OrderStatus
from reviews.models import ReviewItem, ReviewStatus
from tests.inventory.conftest import TEE, api_client, make_inventory_user

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def agent_client(db) -> Client:
    client = Client()
    client.force_login(make_inventory_user("alice", "cs_agent"))
    return client


@pytest.fixture
def short_order(catalog, set_stock, place_order):
    set_stock(TEE, "WH", 1)
    set_stock(TEE, "STORE", 2)
    return place_order((TEE, 4))


def test_queue_shows_stock_per_location(agent_client, short_order):
    response = agent_client.get(reverse("reviews:queue"), {"kind": "out_of_stock"})

    content = response.content.decode()
    assert response.status_code == 200
    assert "Stock for <code>TEE-CLASSIC-BLK-M</code>" in content
    assert "4 requested; at most 2 available at one location." in content
    assert "<td><code>STORE</code></td>" in content
    assert "Retry reservation" in content
    assert "Candidate SKUs" not in content


def test_retry_while_short_flashes_conflict(agent_client, short_order):
    item = ReviewItem.objects.get()

    response = agent_client.post(reverse("reviews:accept", args=[item.pk]), headers=HTMX)

    assert response.status_code == 409
    assert "Still out of stock." in response.content.decode()
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN


def test_retry_after_restock_releases_order(agent_client, short_order, set_stock):
    item = ReviewItem.objects.get()
    set_stock(TEE, "STORE", 6)

    response = agent_client.post(reverse("reviews:accept", args=[item.pk]), headers=HTMX)

    assert response.status_code == 200
    assert "line 1 reserved at <code>STORE</code>." in response.content.decode()
    item.refresh_from_db()
    short_order.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.decision["location"] == "STORE"
    assert short_order.status == OrderStatus.READY


def test_api_accept_retries_reservation(short_order, set_stock):
    item = ReviewItem.objects.get()
    client = api_client(make_inventory_user("bob", "cs_agent"))

    still_short = client.post(f"/api/v1/review-items/{item.pk}/accept/", {}, format="json")
    set_stock(TEE, "WH", 9)
    accepted = client.post(f"/api/v1/review-items/{item.pk}/accept/", {}, format="json")

    assert still_short.status_code == 409
    assert still_short.json()["error"]["code"] == "still_out_of_stock"
    assert accepted.status_code == 200
    assert accepted.json()["decision"]["location"] == "WH"


def test_reject_says_order_stays_on_hold(agent_client, short_order):
    item = ReviewItem.objects.get()

    response = agent_client.post(reverse("reviews:reject", args=[item.pk]), headers=HTMX)

    assert response.status_code == 200
    assert f"order {short_order.order_number} stays on hold." in response.content.decode()
