"""simulate_decision with a real order: an unfit --after ends in a clear CommandError."""

import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from orders.models import Order
from tests.conftest import as_body, order_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(catalog, post_webhook) -> Order:
    post_webhook(as_body(order_payload()))
    return Order.objects.get()


def simulate_after(order: Order, after: str) -> None:
    call_command(
        "simulate_decision",
        "--action=substitute_sku",
        f"--order={order.pk}",
        "--confidence=0.95",
        f"--after={after}",
        "--json",
    )


@pytest.mark.parametrize(
    ("after", "message"),
    [
        ('{"line": 99, "sku": "X"}', "The order has no line 99."),
        ('{"line": 1, "sku": null}', "`sku` must be a SKU code."),
        ('{"line": 1}', "Expected exactly the keys line, sku; got ['line']."),
        ('{"line": "one", "sku": "X"}', "`line` must be the line's position, an integer."),
        ('{"line": 1, "sku": "NO-SUCH-SKU"}', "SKU 'NO-SUCH-SKU' does not exist or is inactive."),
        ('{"line": 1, "sku": "TEE\\u0000"}', "must not contain NUL characters"),
        ('{"line\\u0000": 1, "sku": "X"}', "must not contain NUL characters"),
    ],
)
def test_unfit_after_is_a_command_error(order, after, message):
    with pytest.raises(CommandError) as raised:
        simulate_after(order, after)

    assert raised.value.args[0].startswith("--after")
    assert message in raised.value.args[0]


def test_fitting_after_gathers_the_substitute_facts(order, capsys):
    simulate_after(order, '{"line": 1, "sku": "TEE-CLASSIC-WHT-M"}')

    facts = json.loads(capsys.readouterr().out)["facts"]
    assert Decimal(facts["item_price"]) == Decimal("19.99")
    assert facts["listing_forbids"] is False
    assert facts["stock"]["quantity"] == 2
