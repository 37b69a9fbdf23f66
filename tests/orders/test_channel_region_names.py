"""Region names from channel adapters are stored as subdivision codes, the name kept beside."""

import json
from pathlib import Path

import pytest

from orders.adapters import amazon, ebay, square, woocommerce
from orders.models import Order, OrderStatus
from tests.conftest import as_body, order_payload

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def load(relative: str) -> dict:
    return json.loads((SAMPLES / relative).read_text("utf-8"))


def test_amazon_state_name_resolved():
    payload = load("amazon/01-prime.json")
    payload["order"]["ShippingAddress"]["StateOrRegion"] = "Colorado"

    address = amazon.parse_order(payload).shipping_address

    assert address["province_code"] == "CO"
    assert address["province"] == "Colorado"


def test_ebay_state_name_resolved():
    payload = load("ebay/02-international-shipping.json")
    ship_to = payload["fulfillmentStartInstructions"][0]["finalDestinationAddress"]
    ship_to["stateOrProvince"] = "victoria"

    address = ebay.parse_order(payload).shipping_address

    assert address["province_code"] == "VIC"
    assert address["province"] == "victoria"


def test_woocommerce_state_name_resolved_in_both_addresses():
    payload = load("woocommerce/01-normal.json")
    payload["shipping"]["state"] = "Wisconsin"
    payload["billing"] |= {"country": "CA", "state": "british columbia"}

    order = woocommerce.parse_order(payload)

    assert order.shipping_address["province_code"] == "WI"
    assert order.shipping_address["province"] == "Wisconsin"
    assert order.billing_address["province_code"] == "BC"
    assert order.billing_address["province"] == "british columbia"


def test_square_name_in_province_gets_code():
    order = load("square/orders/r2uij3XisMtiB349wCEDoOxN2M0ZY.json")["order"]
    recipient = order["fulfillments"][0]["shipment_details"]["recipient"]
    recipient["address"]["administrative_district_level_1"] = "Illinois"

    address = square.parse_order({"event": {}, "order": order}).shipping_address

    assert address["province_code"] == "IL"
    assert address["province"] == "Illinois"


@pytest.mark.django_db
def test_webhook_order_with_state_name_ready(channel, catalog, post_webhook):
    shipping = order_payload()["shipping_address"] | {"province_code": "Texas"}

    post_webhook(as_body(order_payload(shipping_address=shipping)))

    order = Order.objects.get()
    assert order.shipping_address["province_code"] == "TX"
    assert order.shipping_address["province"] == "Texas"
    assert order.status == OrderStatus.READY
