"""The queue's decided card describes what deciding an AI proposal did to the order."""

import pytest
from django.urls import reverse

from guardrails.services import decision_propose
from orders.models import OrderStatus
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SHIPPING_ADDRESS,
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
)

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def propose(order, action_code: str, before: dict, after: dict):
    return decision_propose(
        order_id=order.pk,
        action_code=action_code,
        before=before,
        after=after,
        confidence="0.90",
        model_name="gpt-test",
        model_version="1",
    )


def decide(client, user, decision, verb: str = "accept") -> str:
    client.force_login(user)
    response = client.post(reverse(f"reviews:{verb}", args=[decision.review_item_id]), headers=HTMX)
    assert response.status_code == 200, response.content
    return " ".join(response.content.decode().split())


def test_accepted_cancellation_says_the_order_is_cancelled(order, client, manager):
    decision = propose(order, "cancel_order", {"status": order.status}, {"status": "cancelled"})

    card = decide(client, manager, decision)

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    label = order.order_number or order.channel_order_id
    assert f"order {label} cancelled (decision #{decision.pk})." in card
    assert "stays on hold" not in card
    assert "Order status: Cancelled." in card


def test_accepted_substitution_names_the_new_sku(order, client, agent):
    decision = propose(order, "substitute_sku", SUBSTITUTION[0], SUBSTITUTION[1])

    card = decide(client, agent, decision)

    sku = SUBSTITUTION[1]["sku"]
    assert f"line 1 now ships <code>{sku}</code> (decision #{decision.pk})." in card


def test_accepted_address_says_which_address_changed(order, client, manager):
    corrected = {**SHIPPING_ADDRESS, "address1": "12 Birch Ln"}
    decision = propose(
        order,
        "correct_shipping_address",
        {"shipping_address": SHIPPING_ADDRESS},
        {"shipping_address": corrected},
    )

    card = decide(client, manager, decision)

    assert f"shipping address changed (decision #{decision.pk})." in card


def test_rejected_cancellation_leaves_the_order_as_it_was(order, client, manager):
    decision = propose(order, "cancel_order", {"status": order.status}, {"status": "cancelled"})

    card = decide(client, manager, decision, "reject")

    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    label = order.order_number or order.channel_order_id
    assert f"decision #{decision.pk} rejected; order {label} is left as it was." in card
    # The order is released, so the card must not say it stays on hold.
    assert "stays on hold" not in card
    assert "Order status: Ready for fulfilment." in card
