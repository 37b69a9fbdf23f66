"""A 409 on the item page sends the item's card out of band, and failed requests are logged."""

import logging
from collections.abc import Iterator

import pytest
from django.db.models import F
from django.test import Client
from django.test.html import Element, parse_html
from django.urls import reverse

from catalog.models import Sku
from orders.models import Order
from reviews.models import ReviewItem
from reviews.services import review_item_claim, review_item_reject
from tests.conftest import make_user
from tests.reviews.test_queue_pages import HTMX
from tests.reviews.test_queue_views import hold_orders

pytestmark = pytest.mark.django_db

VIEWS_LOGGER = "reviews.views"


@pytest.fixture
def item(channel, catalog, post_webhook) -> ReviewItem:
    hold_orders(post_webhook, 1)
    return ReviewItem.objects.get()


@pytest.fixture
def agent_client(agent) -> Client:
    client = Client()
    client.force_login(agent)
    return client


def _headers(current_path: str) -> dict:
    return HTMX | {"HX-Current-URL": f"http://testserver{current_path}"}


def _item_page(item: ReviewItem) -> str:
    return reverse("reviews:item", args=[item.pk])


def _accept(client: Client, item: ReviewItem, current_path: str):
    sku = Sku.objects.get(code="TEE-CLASSIC-WHT-M")
    return client.post(
        reverse("reviews:accept", args=[item.pk]),
        data={"sku_id": sku.pk},
        headers=_headers(current_path),
    )


def _elements(node: Element) -> Iterator[Element]:
    for child in node.children:
        if isinstance(child, Element):
            yield child
            yield from _elements(child)


def _attribute(element: Element, name: str) -> str | None:
    return dict(element.attributes).get(name)


def _card(body: str, item: ReviewItem) -> Element | None:
    """Return the item's card from a response body, or None when the body has none."""
    for element in _elements(parse_html(body)):
        if _attribute(element, "id") == f"item-{item.pk}":
            return element
    return None


def _actions(card: Element) -> list[str]:
    """Return the data-action values of the card's buttons (accept, reject, revise, claim)."""
    return [
        _attribute(element, "data-action")
        for element in _elements(card)
        if _attribute(element, "data-action")
    ]


def _posts(card: Element) -> list[str]:
    return [
        _attribute(element, "hx-post")
        for element in _elements(card)
        if _attribute(element, "hx-post")
    ]


def test_decided_elsewhere_card_has_no_buttons(agent_client, item):
    review_item_reject(item_id=item.pk, user=make_user("bob", "cs_agent"), note="duplicate")

    response = _accept(agent_client, item, _item_page(item))

    assert response.status_code == 409
    card = _card(response.content.decode(), item)
    assert card is not None
    assert _attribute(card, "hx-swap-oob") == "true"
    assert _attribute(card, "data-status") == "rejected"
    assert "by bob: order #1001 stays on hold." in str(card)
    assert _actions(card) == []
    assert _posts(card) == []
    assert "revise-form" not in str(card)


def test_revise_conflict_drops_revise_form(agent_client, item):
    review_item_reject(item_id=item.pk, user=make_user("bob", "cs_agent"))

    response = agent_client.post(
        reverse("reviews:revise", args=[item.pk]),
        data={"sku": "TEE-CLASSIC-WHT-M"},
        headers=_headers(_item_page(item)),
    )

    assert response.status_code == 409
    card = _card(response.content.decode(), item)
    assert card is not None
    assert _attribute(card, "data-status") == "rejected"
    assert _actions(card) == []
    assert "revise-form" not in str(card)


def test_stale_order_card_offers_reject_only(agent_client, item):
    Order.objects.filter(pk=item.order_id).update(version=F("version") + 1)

    response = _accept(agent_client, item, _item_page(item))

    assert response.status_code == 409
    card = _card(response.content.decode(), item)
    assert card is not None
    assert _attribute(card, "hx-swap-oob") == "true"
    assert "approving is disabled" in str(card)
    # Reject is the only decision left, because the server refuses to approve a stale item.
    actions = _actions(card)
    assert "reject" in actions
    assert "accept" not in actions
    assert "revise" not in actions
    assert reverse("reviews:accept", args=[item.pk]) not in _posts(card)


def test_claim_conflict_card_names_claimant(agent_client, item):
    review_item_claim(item_id=item.pk, user=make_user("bob", "cs_agent"))

    response = agent_client.post(
        reverse("reviews:claim", args=[item.pk]), headers=_headers(_item_page(item))
    )

    assert response.status_code == 409
    card = _card(response.content.decode(), item)
    assert card is not None
    assert _attribute(card, "hx-swap-oob") == "true"
    assert "Claimed by bob" in str(card)
    assert "claim" not in _actions(card)


def test_list_conflict_logged_without_card(agent_client, agent, item, caplog):
    review_item_reject(item_id=item.pk, user=make_user("bob", "cs_agent"))

    with caplog.at_level(logging.INFO, logger=VIEWS_LOGGER):
        response = _accept(agent_client, item, reverse("reviews:queue"))

    body = response.content.decode()
    records = [record for record in caplog.records if record.name == VIEWS_LOGGER]
    assert response.status_code == 409
    assert "already rejected by bob" in body
    # The list's own rows are not refreshed, so nothing out of band may miss its target there.
    assert _card(body, item) is None
    assert "hx-swap-oob" not in body
    assert len(records) == 1
    assert records[0].status == 409
    assert records[0].user == agent.pk


def test_conflict_logged_at_info(agent_client, agent, item, caplog):
    review_item_reject(item_id=item.pk, user=make_user("bob", "cs_agent"))

    with caplog.at_level(logging.INFO, logger=VIEWS_LOGGER):
        _accept(agent_client, item, _item_page(item))

    records = [record for record in caplog.records if record.name == VIEWS_LOGGER]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.INFO
    assert record.getMessage() == "review request failed"
    assert record.review_item == item.pk
    assert record.user == agent.pk
    assert record.status == 409
    assert record.code == "already_decided"
    # The error message names the other reviewer, so the log keeps only ids and the code.
    assert "bob" not in record.getMessage()
    assert "bob" not in repr(record.__dict__)


def test_not_found_logged_at_info(agent_client, agent, caplog):
    with caplog.at_level(logging.INFO, logger=VIEWS_LOGGER):
        response = agent_client.post(
            reverse("reviews:reject", args=[999_999]), headers=_headers("/queue/")
        )

    records = [record for record in caplog.records if record.name == VIEWS_LOGGER]
    assert response.status_code == 404
    assert len(records) == 1
    assert records[0].levelno == logging.INFO
    assert records[0].status == 404
    assert records[0].code == "not_found"
    assert records[0].review_item == 999_999


def test_forbidden_logged_at_warning(item, caplog):
    viewer = make_user("viewer", "cs_agent")
    ReviewItem.objects.filter(pk=item.pk).update(approver_group="cs_manager")
    client = Client()
    client.force_login(viewer)

    with caplog.at_level(logging.INFO, logger=VIEWS_LOGGER):
        response = _accept(client, item, _item_page(item))

    records = [record for record in caplog.records if record.name == VIEWS_LOGGER]
    assert response.status_code == 403
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].status == 403
    assert records[0].code == "not_approver"
    assert records[0].user == viewer.pk


def test_invalid_choice_logged_at_warning(agent_client, item, caplog):
    with caplog.at_level(logging.INFO, logger=VIEWS_LOGGER):
        response = agent_client.post(
            reverse("reviews:accept", args=[item.pk]),
            data={"sku_id": "999999"},
            headers=_headers(_item_page(item)),
        )

    records = [record for record in caplog.records if record.name == VIEWS_LOGGER]
    assert response.status_code == 400
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].status == 400
    assert records[0].code == "invalid_sku"
