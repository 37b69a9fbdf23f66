import pytest

from orders.models import Order, OrderStatus, PriorityCustomer
from tests.conftest import as_body, order_payload

pytestmark = pytest.mark.django_db


def _codes(order: Order) -> list[str]:
    return [finding["code"] for finding in order.flags]


def test_high_value_order_is_flagged(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"

    post_webhook(as_body(order_payload()))

    order = Order.objects.get()
    assert _codes(order) == ["order_value"]
    assert order.flags[0]["message"] == ("Order total 44.98 USD is above the escalation limit 40")
    assert order.status == OrderStatus.READY


def test_value_in_other_currency_is_not_compared(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    settings.OMSGUARD_ESCALATION_CURRENCY = "EUR"

    post_webhook(as_body(order_payload()))

    assert _codes(Order.objects.get()) == []


def test_priority_customer_by_id_and_email(channel, catalog, post_webhook):
    PriorityCustomer.objects.create(channel=channel, customer_id="7012345678901", note="VIP")

    post_webhook(as_body(order_payload()))

    order = Order.objects.get()
    assert _codes(order) == ["priority_customer"]
    assert order.flags[0]["data"]["note"] == "VIP"


def test_priority_customer_email_ignores_case(channel, catalog, post_webhook):
    PriorityCustomer.objects.create(channel=channel, email="ADA@example.com")

    post_webhook(as_body(order_payload()))

    assert _codes(Order.objects.get()) == ["priority_customer"]


def test_unusual_destination_is_flagged(channel, catalog, post_webhook, settings):
    from tests.conftest import signed_headers

    settings.OMSGUARD_ESCALATION_ROUTING_MIN_ORDERS = 2
    for number in (1, 2):
        body = as_body(order_payload(order_id=number))
        post_webhook(body, signed_headers(body, webhook_id=f"wh-{number}"))
    address = dict(order_payload()["shipping_address"], country_code="CA", province_code="ON")
    body = as_body(order_payload(order_id=3, shipping_address=address))

    post_webhook(body, signed_headers(body, webhook_id="wh-3"))

    order = Order.objects.get(channel_order_id="3")
    assert "unusual_destination" in _codes(order)
    assert _codes(Order.objects.get(channel_order_id="2")) == []
