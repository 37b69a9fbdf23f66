import pytest
from django.contrib.auth.models import User

from orders.hygiene.escalation import check_escalations
from orders.models import Order, OrderStatus, PriorityCustomer
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from reviews.services import review_item_accept, review_item_reject
from tests.conftest import as_body, order_payload, signed_headers

pytestmark = pytest.mark.django_db

T0 = "2024-11-04T10:15:34-05:00"
T1 = "2024-11-04T11:00:00-05:00"
T2 = "2024-11-04T12:00:00-05:00"


@pytest.fixture
def reviewer(db) -> User:
    # A superuser, so these tests do not depend on which role approves which kind.
    return User.objects.create_superuser(username="rita", password="pw-rita")


def _codes(order: Order) -> list[str]:
    return [finding["code"] for finding in order.flags]


def _holds(order: Order) -> list[str]:
    return [reason["code"] for reason in order.hold_reasons]


def _post(post_webhook, *, webhook_id="wh-1", topic="orders/create", **overrides) -> None:
    body = as_body(order_payload(**overrides))
    post_webhook(body, signed_headers(body, webhook_id=webhook_id) | {"X-Shopify-Topic": topic})


def test_high_value_order_is_held_for_release(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"

    post_webhook(as_body(order_payload()))

    order = Order.objects.get()
    assert _codes(order) == ["order_value"]
    assert order.flags[0]["message"] == "Order total 44.98 USD is above the escalation limit 40"
    assert order.status == OrderStatus.ON_HOLD
    item = ReviewItem.objects.get()
    assert item.kind == ReviewKind.HIGH_VALUE
    assert item.status == ReviewStatus.OPEN
    assert item.reason == (
        "Order total 44.98 USD is above the escalation limit 40; a person releases "
        "high-value orders before fulfilment."
    )
    assert item.source_data == {
        "total": "44.98",
        "value": "44.98",
        "limit": "40",
        "currency": "USD",
    }
    assert item.proposal == {"action": "release"}
    assert order.hold_reasons == [
        {
            "severity": "hold",
            "code": "high_value",
            "message": f"High value order waits for release in review item #{item.pk}",
            "review_item": item.pk,
        }
    ]
    assert order.events.filter(kind="review.opened", data__review_item=item.pk).exists()


def test_low_total_held_by_lines(channel, catalog, post_webhook, settings):
    """A source that sends a total far below its lines still gets the high-value review."""
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "1000"
    line = order_payload()["line_items"][0] | {"quantity": 3, "price": "500.00"}

    post_webhook(as_body(order_payload(lines=[line], subtotal_price="0.50", total_price="15.00")))

    order = Order.objects.get()
    assert "order_value" in _codes(order)
    assert "high_value" in _holds(order)
    item = ReviewItem.objects.get(kind=ReviewKind.HIGH_VALUE)
    assert item.source_data == {
        "total": "15.00",
        "value": "1500.00",
        "limit": "1000",
        "currency": "USD",
    }
    assert item.reason.startswith(
        "Order lines worth 1500.00 USD before discounts are above the escalation limit 1000 "
        "(order total 15.00)"
    )


def test_accepting_high_value_item_releases_order(
    channel, catalog, post_webhook, settings, reviewer
):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    post_webhook(as_body(order_payload()))
    item = ReviewItem.objects.get()

    review_item_accept(item_id=item.pk, user=reviewer)

    item.refresh_from_db()
    order = Order.objects.get()
    assert item.status == ReviewStatus.ACCEPTED
    assert item.decision == {"action": "release", "released": True, "kind": "high_value"}
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []


def test_release_keeps_other_holds(channel, catalog, post_webhook, settings, reviewer):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    PriorityCustomer.objects.create(channel=channel, customer_id="7012345678901")
    post_webhook(as_body(order_payload()))
    high_value = ReviewItem.objects.get(kind=ReviewKind.HIGH_VALUE)

    review_item_accept(item_id=high_value.pk, user=reviewer)

    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD
    assert _holds(order) == ["priority_customer"]


def test_rejecting_escalation_keeps_order_for_manual_handling(
    channel, catalog, post_webhook, settings, reviewer
):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    post_webhook(as_body(order_payload()))
    item = ReviewItem.objects.get()

    review_item_reject(item_id=item.pk, user=reviewer, note="call the customer first")

    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD
    assert _holds(order) == ["review_rejected"]
    assert order.hold_reasons[0]["review_item"] == item.pk


def test_value_in_other_currency_is_not_compared(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    settings.OMSGUARD_ESCALATION_CURRENCY = "EUR"

    post_webhook(as_body(order_payload()))

    order = Order.objects.get()
    assert _codes(order) == []
    assert order.status == OrderStatus.READY
    assert not ReviewItem.objects.exists()


def test_value_at_limit_is_not_escalated(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "44.98"

    post_webhook(as_body(order_payload()))

    assert Order.objects.get().status == OrderStatus.READY
    assert not ReviewItem.objects.exists()


def test_priority_customer_by_id_is_held(channel, catalog, post_webhook):
    vip = PriorityCustomer.objects.create(channel=channel, customer_id="7012345678901", note="VIP")

    post_webhook(as_body(order_payload()))

    order = Order.objects.get()
    assert _codes(order) == ["priority_customer"]
    assert order.flags[0]["data"]["note"] == "VIP"
    assert _holds(order) == ["priority_customer"]
    item = ReviewItem.objects.get()
    assert item.kind == ReviewKind.PRIORITY_CUSTOMER
    assert item.source_data == {
        "priority_customer": vip.pk,
        "matched_on": "customer_id",
        "note": "VIP",
    }
    assert item.reason.startswith(
        "The customer is on the channel's priority list (matched by customer id)"
    )
    assert item.proposal == {"action": "release"}


def test_priority_customer_email_ignores_case(channel, catalog, post_webhook):
    PriorityCustomer.objects.create(channel=channel, email="ADA@example.com")

    post_webhook(as_body(order_payload()))

    order = Order.objects.get()
    assert _codes(order) == ["priority_customer"]
    assert ReviewItem.objects.get().source_data["matched_on"] == "email"


def test_unusual_destination_opens_routing_item(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ESCALATION_ROUTING_MIN_ORDERS = 2
    for number in (1, 2):
        body = as_body(order_payload(order_id=number))
        post_webhook(body, signed_headers(body, webhook_id=f"wh-{number}"))
    address = dict(order_payload()["shipping_address"], country_code="CA", province_code="ON")
    body = as_body(order_payload(order_id=3, shipping_address=address))

    post_webhook(body, signed_headers(body, webhook_id="wh-3"))

    order = Order.objects.get(channel_order_id="3")
    assert "unusual_destination" in _codes(order)
    assert "routing" in _holds(order)
    item = ReviewItem.objects.get(order=order, kind=ReviewKind.ROUTING)
    assert item.source_data == {"country": "CA", "orders_compared": 2, "usual_countries": ["US"]}
    assert item.proposal == {"action": "release"}
    assert _codes(Order.objects.get(channel_order_id="2")) == []
    assert not ReviewItem.objects.filter(kind=ReviewKind.ROUTING).exclude(order=order).exists()


def test_lower_case_country_code_is_a_usual_destination(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ESCALATION_ROUTING_MIN_ORDERS = 2
    for number in (1, 2):
        body = as_body(order_payload(order_id=number))
        post_webhook(body, signed_headers(body, webhook_id=f"wh-{number}"))
    address = dict(order_payload()["shipping_address"], country_code="us", province_code="tx")
    body = as_body(order_payload(order_id=3, shipping_address=address))

    post_webhook(body, signed_headers(body, webhook_id="wh-3"))

    order = Order.objects.get(channel_order_id="3")
    assert "unusual_destination" not in _codes(order)
    codes = (order.shipping_address["country_code"], order.shipping_address["province_code"])
    assert codes == ("US", "TX")


def test_checks_run_twice_keep_one_item_per_kind(channel, catalog, post_webhook, settings):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    post_webhook(as_body(order_payload()))
    order = Order.objects.get()
    first = ReviewItem.objects.get()

    findings = check_escalations(order=order)

    assert ReviewItem.objects.count() == 1
    assert [finding.get("review_item") for finding in findings] == [None, first.pk]


def test_update_with_same_total_is_not_held_again(
    channel, catalog, post_webhook, settings, reviewer
):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    _post(post_webhook, updated_at=T0)
    review_item_accept(item_id=ReviewItem.objects.get().pk, user=reviewer)

    _post(post_webhook, webhook_id="wh-2", topic="orders/updated", updated_at=T1, note="gift")

    order = Order.objects.get()
    assert order.status == OrderStatus.READY
    assert ReviewItem.objects.count() == 1


def test_update_with_new_total_is_held_again(channel, catalog, post_webhook, settings, reviewer):
    settings.OMSGUARD_ESCALATION_ORDER_VALUE = "40"
    _post(post_webhook, updated_at=T0)
    accepted = ReviewItem.objects.get()
    review_item_accept(item_id=accepted.pk, user=reviewer)

    _post(
        post_webhook, webhook_id="wh-2", topic="orders/updated", updated_at=T2, total_price="90.00"
    )

    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD
    reopened = ReviewItem.objects.get(status=ReviewStatus.OPEN)
    assert reopened.kind == ReviewKind.HIGH_VALUE
    assert reopened.source_data["total"] == "90.00"
    assert order.hold_reasons[0]["review_item"] == reopened.pk
