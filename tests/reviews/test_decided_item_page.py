"""The item page after a decision, the note limit and the wording of decided cards."""

from datetime import timedelta

import pytest
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import Sku
from orders.models import Order
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from reviews.views import NOTE_MAX_LENGTH
from tests.reviews.test_queue_pages import HTMX, order_with_lines, substitution_item
from tests.reviews.test_queue_views import hold_orders

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent_client(agent) -> Client:
    client = Client()
    client.force_login(agent)
    return client


def accept_unmapped(client: Client, item: ReviewItem) -> HttpResponse:
    sku = Sku.objects.get(code="TEE-CLASSIC-WHT-M")
    return client.post(
        reverse("reviews:accept", args=[item.pk]), data={"sku_id": sku.pk}, headers=HTMX
    )


def test_decided_page_has_no_oob_counts(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()

    fragment = accept_unmapped(agent_client, item)
    page = agent_client.get(reverse("reviews:item", args=[item.pk])).content.decode()

    assert fragment.status_code == 200
    assert '<span id="open-count" hx-swap-oob="true">' in fragment.content.decode()
    assert 'data-status="accepted"' in page
    assert "hx-swap-oob" not in page


def test_decided_page_not_stale_no_deadline(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()
    ReviewItem.objects.filter(pk=item.pk).update(due_at=timezone.now() + timedelta(hours=4))
    order = item.order

    accept_unmapped(agent_client, item)
    page = agent_client.get(reverse("reviews:item", args=[item.pk])).content.decode()

    # The accept itself moved the order's version past the item's.
    assert Order.objects.get(pk=order.pk).version > ReviewItem.objects.get(pk=item.pk).order_version
    assert 'data-code="stale_order"' not in page
    assert "approving is disabled" not in page
    assert 'class="countdown' not in page


def test_resolved_item_names_system(agent_client, channel, catalog):
    order = order_with_lines(channel, 1)
    item = ReviewItem.objects.create(
        kind=ReviewKind.ADDRESS,
        order=order,
        reason="The shipping address needs a check.",
        source_data={},
        proposal={},
        status=ReviewStatus.RESOLVED,
        decided_at=timezone.now(),
        decision={"decision": 99},
        decision_note="decision #99 corrected the shipping address",
    )

    page = agent_client.get(reverse("reviews:item", args=[item.pk])).content.decode()

    assert "Resolved by another decision</strong> (closed by the system):" in page
    assert "decision #99 corrected the shipping address." in page
    assert " by :" not in page
    assert "stays on hold" not in page


def test_long_note_is_400_not_cut(agent_client, channel, catalog):
    item = substitution_item(order_with_lines(channel, 1))
    too_long = "x" * (NOTE_MAX_LENGTH + 1)

    for action in ("accept", "reject", "revise"):
        response = agent_client.post(
            reverse(f"reviews:{action}", args=[item.pk]), data={"note": too_long}, headers=HTMX
        )
        html = response.content.decode()
        assert response.status_code == 400, action
        assert 'data-code="note_too_long"' in html, action
        assert f"the maximum is {NOTE_MAX_LENGTH}" in html, action
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN


def test_note_at_limit_is_kept(agent_client, channel, catalog):
    item = substitution_item(order_with_lines(channel, 1))
    note = "x" * NOTE_MAX_LENGTH

    response = agent_client.post(
        reverse("reviews:reject", args=[item.pk]), data={"note": note}, headers=HTMX
    )

    assert response.status_code == 200
    item.refresh_from_db()
    assert item.decision_note == note


def test_revised_sku_card_names_sku(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()

    response = agent_client.post(
        reverse("reviews:revise", args=[item.pk]), data={"sku": "TEE-CLASSIC-WHT-M"}, headers=HTMX
    )
    html = response.content.decode()

    assert response.status_code == 200
    assert "revised: line 1 mapped to <code>TEE-CLASSIC-WHT-M</code>." in html
    assert "sku_id" not in html


def test_back_link_keeps_acronym(agent_client, channel, catalog, post_webhook):
    hold_orders(post_webhook, 1)
    item = ReviewItem.objects.get()

    page = agent_client.get(reverse("reviews:item", args=[item.pk])).content.decode()

    assert "Back to the unmapped SKU queue" in page


def test_item_page_selects_its_item(agent_client, channel, catalog):
    item = substitution_item(order_with_lines(channel, 1))

    page = agent_client.get(reverse("reviews:item", args=[item.pk])).content.decode()

    # queue.js selects the first item of a list marked so, which makes a / r / e work at once.
    assert 'class="items" aria-label="Review item" data-select-on-load' in page
