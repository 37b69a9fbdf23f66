"""Fixtures for the review queue tests: default policies, a CS manager, items of each origin."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from guardrails.defaults import default_policies_load
from guardrails.models import Decision
from guardrails.services import decision_propose
from orders.models import Order
from reviews.models import ReviewItem, ReviewKind
from tests.conftest import as_body, ensure_role_groups, make_user, order_payload

# Austin, TX with a California ZIP code: one error, score 0.70, so the order is held.
WRONG_ZIP_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "94105",
    "country_code": "US",
}
GOOD_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Ln",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
}
SUBSTITUTION = ({"line": 1, "sku": "TEE-CLASSIC-BLK-M"}, {"line": 1, "sku": "TEE-CLASSIC-WHT-M"})


@pytest.fixture
def policies(db) -> None:
    """The action catalog and default policies; a transactional test flushes them."""
    ensure_role_groups()
    default_policies_load()


@pytest.fixture
def default_policies(policies) -> None:
    """The name the decisions fixtures (tests.guardrails.conftest_decisions) ask for."""


@pytest.fixture
def cs_manager(db) -> User:
    return make_user("morgan", "cs_manager")


@pytest.fixture
def address_order(policies, channel, catalog, post_webhook) -> Order:
    """An order held for a wrong ZIP code, with its open address item."""
    post_webhook(as_body(order_payload(shipping_address=WRONG_ZIP_ADDRESS)))
    return Order.objects.get()


@pytest.fixture
def address_item(address_order) -> ReviewItem:
    return ReviewItem.objects.get(order=address_order, kind=ReviewKind.ADDRESS)


def propose(order: Order, action_code: str, before: dict, after: dict, **extra) -> Decision:
    return decision_propose(
        order_id=order.pk,
        action_code=action_code,
        before=before,
        after=after,
        confidence=extra.pop("confidence", Decimal("0.90")),
        model_name=extra.pop("model_name", "gpt-sub"),
        model_version=extra.pop("model_version", "2024-06"),
        **extra,
    )
