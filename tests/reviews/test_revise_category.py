"""Revising a substitution to a SKU of another catalog category needs a tick first.

A new user revised a bath towel substitution to a ceramic mug by a slip of the keyboard, and
six mugs replaced six towels without a word.
"""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from catalog.models import Sku
from reviews.forms import OTHER_CATEGORY, revise_form_for
from reviews.models import ReviewItem, ReviewStatus
from tests.guardrails.conftest_decisions import (  # noqa: F401
    locations_fixture,
    order_fixture,
    stock_set,
)
from tests.reviews.conftest import SUBSTITUTION, propose

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def item(order, locations) -> ReviewItem:
    Sku.objects.filter(code__startswith="TEE-").update(category="apparel/tops")
    Sku.objects.filter(code__startswith="MUG-").update(category="home/kitchen")
    stock_set("MUG-ENAMEL-NVY-OS", locations["wh-east"], 5)
    decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))
    return ReviewItem.objects.get(pk=decision.review_item_id)


@pytest.fixture
def agent_client(agent) -> Client:
    client = Client()
    client.force_login(agent)
    return client


def test_same_category_needs_no_tick(item):
    form = revise_form_for(item, data={"sku": "TEE-CLASSIC-WHT-M"})

    assert form.is_valid(), form.errors
    assert OTHER_CATEGORY not in form.fields


def test_other_category_asks_for_the_tick(item):
    form = revise_form_for(item, data={"sku": "MUG-ENAMEL-NVY-OS"})

    assert not form.is_valid()
    assert form.errors["sku"] == [
        "MUG-ENAMEL-NVY-OS is in home/kitchen, but the ordered TEE-CLASSIC-BLK-M is in "
        "apparel/tops. Tick the box below to ship it anyway."
    ]
    assert OTHER_CATEGORY in form.fields


def test_tick_allows_the_revision(item):
    form = revise_form_for(item, data={"sku": "MUG-ENAMEL-NVY-OS", OTHER_CATEGORY: "on"})

    assert form.is_valid(), form.errors
    assert form.revision() == {"sku": "MUG-ENAMEL-NVY-OS"}


def test_queue_page_shows_the_tick_and_changes_nothing(item, agent_client, order):
    url = reverse("reviews:revise", args=[item.pk])

    refused = agent_client.post(url, {"sku": "MUG-ENAMEL-NVY-OS"}, headers=HTMX)

    html = refused.content.decode()
    assert "Ship a product of another category" in html
    assert 'name="other_category"' in html
    item.refresh_from_db()
    assert item.status == ReviewStatus.OPEN
    assert order.lines.get().sku.code == "TEE-CLASSIC-BLK-M"

    agent_client.post(url, {"sku": "MUG-ENAMEL-NVY-OS", OTHER_CATEGORY: "on"}, headers=HTMX)

    item.refresh_from_db()
    assert item.status == ReviewStatus.ACCEPTED
    assert order.lines.get().sku.code == "MUG-ENAMEL-NVY-OS"
