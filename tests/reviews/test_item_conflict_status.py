"""A 409 on the item page also sends the item's current status line out of band."""

import pytest
from django.db.models import F
from django.test import Client
from django.urls import reverse

from catalog.models import Sku
from orders.models import Order
from reviews.models import ReviewItem
from reviews.services import review_item_claim, review_item_reject
from tests.conftest import make_user
from tests.reviews.test_queue_pages import HTMX
from tests.reviews.test_queue_views import hold_orders

pytestmark = pytest.mark.django_db


@pytest.fixture
def item(channel, catalog, post_webhook) -> ReviewItem:
    hold_orders(post_webhook, 1)
    return ReviewItem.objects.get()


@pytest.fixture
def agent_client(agent) -> Client:
    client = Client()
    client.force_login(agent)
    return client


def _accept(client: Client, item: ReviewItem, current_url: str):
    sku = Sku.objects.get(code="TEE-CLASSIC-WHT-M")
    return client.post(
        reverse("reviews:accept", args=[item.pk]),
        data={"sku_id": sku.pk},
        headers=HTMX | {"HX-Current-URL": f"http://testserver{current_url}"},
    )


def _item_page(item: ReviewItem) -> str:
    return reverse("reviews:item", args=[item.pk])


def test_decided_elsewhere_sends_status(agent_client, item):
    review_item_reject(item_id=item.pk, user=make_user("bob", "cs_agent"), note="duplicate")

    response = _accept(agent_client, item, _item_page(item))

    body = response.content.decode()
    assert response.status_code == 409
    assert f"Review item #{item.pk} was already rejected by bob." in body
    assert f'id="item-status-{item.pk}" hx-swap-oob="true"' in body
    assert '<span class="badge">Rejected</span>' in body
    assert "Rejected by bob at " in body


def test_stale_order_sends_stale_notice(agent_client, item):
    Order.objects.filter(pk=item.order_id).update(version=F("version") + 1)

    response = _accept(agent_client, item, _item_page(item))

    body = response.content.decode()
    assert response.status_code == 409
    assert 'data-code="stale_order"' in body
    assert f'id="item-status-{item.pk}" hx-swap-oob="true"' in body
    assert '<span class="badge">Open</span>' in body
    assert "approving is disabled" in body


def test_claim_conflict_sends_status(agent_client, item):
    review_item_claim(item_id=item.pk, user=make_user("bob", "cs_agent"))

    response = agent_client.post(
        reverse("reviews:claim", args=[item.pk]),
        headers=HTMX | {"HX-Current-URL": f"http://testserver{_item_page(item)}"},
    )

    assert response.status_code == 409
    assert f'id="item-status-{item.pk}" hx-swap-oob="true"' in response.content.decode()


def test_conflict_on_list_has_no_status(agent_client, item):
    review_item_reject(item_id=item.pk, user=make_user("bob", "cs_agent"))

    response = _accept(agent_client, item, reverse("reviews:queue"))

    body = response.content.decode()
    assert response.status_code == 409
    assert "already rejected by bob" in body
    # The list page has no status line, and htmx logs an error for an out-of-band swap that
    # finds no target.
    assert "item-status" not in body


def test_forbidden_on_item_page_has_no_status(item, channel):
    client = Client()
    client.force_login(make_user("viewer", "cs_agent"))
    # Only a CS manager may decide the item now, so the CS agent gets a 403, not a 409.
    ReviewItem.objects.filter(pk=item.pk).update(approver_group="cs_manager")

    response = _accept(client, item, _item_page(item))

    assert response.status_code == 403
    assert "item-status" not in response.content.decode()
