"""Processing recorded deliveries: order creation, the unmapped-SKU hold and bad payloads."""

from decimal import Decimal

import pytest

from guardrails.models import AuditEntry
from orders.models import Delivery, DeliveryOutcome, Order, OrderStatus
from orders.pipeline import delivery_process
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.conftest import as_body, order_payload

pytestmark = pytest.mark.django_db

UNMAPPED_LINE = {
    "id": 13571113171999,
    "variant_id": 44012345670000,
    "sku": "TSHIRT-CLASSIC-BLACK-MED",
    "title": "Classic Cotton Tee",
    "name": "Classic Cotton Tee - Black / M",
    "quantity": 1,
    "price": "19.99",
}


def test_mapped_order_becomes_ready_with_timeline(channel, catalog, post_webhook):
    post_webhook(as_body(order_payload()))

    order = Order.objects.get()
    assert order.status == OrderStatus.READY
    assert order.lines.get().sku.code == "TEE-CLASSIC-BLK-M"
    assert list(order.events.values_list("kind", flat=True)) == [
        "order.received",
        "order.validated",
        "order.ready",
    ]
    assert not ReviewItem.objects.exists()


def test_order_keeps_provenance_and_money(channel, catalog, post_webhook):
    post_webhook(as_body(order_payload()))

    order = Order.objects.get()
    assert order.channel == channel
    assert order.channel_order_id == "5837219471390"
    assert order.delivery.delivery_id == "wh-1"
    assert order.event_version == "2024-11-04T10:15:34-05:00"
    assert str(order.total) == "44.980"
    assert order.currency == "USD"
    assert order.shipping_address["city"] == "Austin"


def test_unmapped_sku_holds_order_and_opens_review_item(channel, catalog, post_webhook):
    lines = [order_payload()["line_items"][0], UNMAPPED_LINE]

    post_webhook(as_body(order_payload(lines=lines)))

    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD
    item = ReviewItem.objects.get()
    assert order.hold_reasons == [
        {
            "severity": "hold",
            "code": "unmapped_sku",
            "line": 2,
            "review_item": item.pk,
            "message": "Line 2 (TSHIRT-CLASSIC-BLACK-MED) has no SKU mapping",
        },
    ]
    assert item.kind == ReviewKind.UNMAPPED_SKU
    assert item.status == ReviewStatus.OPEN
    assert item.order_line.position == 2
    assert item.source_data == UNMAPPED_LINE
    assert item.proposal["candidates"][0]["code"] == "TEE-CLASSIC-BLK-M"
    assert AuditEntry.objects.filter(action="order.held", target_id=str(order.pk)).exists()


def test_line_without_any_sku_is_unmapped(channel, catalog, post_webhook):
    line = UNMAPPED_LINE | {"sku": None, "variant_id": None}

    post_webhook(as_body(order_payload(lines=[line])))

    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD
    assert order.hold_reasons[0]["message"] == "Line 1 (no SKU) has no SKU mapping"


def test_variant_mapping_is_used_before_sku(channel, catalog, post_webhook):
    from catalog.models import ChannelSkuMapping, ExternalIdKind

    ChannelSkuMapping.objects.create(
        channel=channel,
        id_kind=ExternalIdKind.SHOPIFY_VARIANT,
        external_id="44012345678901",
        sku=catalog[1],
    )

    post_webhook(as_body(order_payload()))

    assert Order.objects.get().lines.get().sku == catalog[1]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "body: not valid JSON"),
        (b"\xff\xfe", "body: not valid JSON"),
        (b"[]", "body: expected a JSON object"),
        (as_body(order_payload(total_price="-1")), "total_price: negative amount: -1"),
    ],
)
def test_unprocessable_payload_marks_delivery_failed(channel, post_webhook, body, error):
    response = post_webhook(body)

    assert response.status_code == 200
    delivery = Delivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.FAILED
    assert delivery.error.startswith(error)
    assert Order.objects.count() == 0


def test_processing_twice_changes_nothing(channel, catalog, post_webhook):
    post_webhook(as_body(order_payload()))
    delivery = Delivery.objects.get()

    again = delivery_process(delivery_id=delivery.pk, worker="test")

    assert again.outcome == DeliveryOutcome.PROCESSED
    assert again.processed_by == "eager"
    assert again.attempts == 1
    assert Order.objects.count() == 1


def test_amounts_are_rounded_to_currency_minor_unit(channel, catalog, post_webhook):
    line = order_payload()["line_items"][0] | {"price": "2980.4", "quantity": 1}
    payload = order_payload(
        lines=[line],
        currency="JPY",
        subtotal_price="2980.4",
        total_price="3480.4",
        total_shipping_price_set={"shop_money": {"amount": "500", "currency_code": "JPY"}},
    )

    post_webhook(as_body(payload))

    order = Order.objects.get()
    assert order.total == Decimal("3480")
    assert order.lines.get().unit_price == Decimal("2980")
    assert order.flags == []


def test_total_mismatch_is_flagged_not_fixed(channel, catalog, post_webhook):
    post_webhook(as_body(order_payload(total_price="50.00")))

    order = Order.objects.get()
    assert order.total == Decimal("50.00")
    assert order.status == OrderStatus.READY
    assert order.flags == [
        {
            "severity": "flag",
            "code": "total_mismatch",
            "message": (
                "Order total 50.00 USD differs from its lines less discounts plus shipping "
                "and tax (44.98 USD)"
            ),
            "data": {"sent": "50.00", "expected": "44.98"},
        }
    ]
    assert order.events.filter(kind="order.flagged").count() == 1


def test_tax_included_prices_are_not_counted_twice(channel, catalog, post_webhook):
    payload = order_payload(taxes_included=True, total_tax="6.38")

    post_webhook(as_body(payload))

    assert Order.objects.get().flags == []


def test_every_sample_order_adds_up(channel, post_webhook):
    from tests.conftest import SAMPLES, signed_headers

    for number, path in enumerate(sorted((SAMPLES / "shopify").glob("0*.json"))):
        body = path.read_bytes()
        post_webhook(body, signed_headers(body, webhook_id=f"wh-sample-{number}"))

    assert Order.objects.count() == len(list((SAMPLES / "shopify").glob("0*.json")))
    mismatches = [
        finding
        for order in Order.objects.all()
        for finding in order.flags
        if finding["code"] == "total_mismatch"
    ]
    assert mismatches == []


def _line(**change) -> dict:
    return order_payload()["line_items"][0] | change


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (order_payload(lines=[_line(price="1e400")]), "line_items[0].price: amount too large"),
        (order_payload(total_price="9" * 40), "total: amount too large"),
        (order_payload(lines=[_line(quantity=10**30)]), "line_items[0].quantity: more than"),
        (order_payload(lines=[_line(quantity=0)]), "line_items[0].quantity: quantity must be"),
        (order_payload(lines=[_line(sku="X" * 10_000)]), "line_items[0].channel_sku: longer"),
        (order_payload(lines=[_line(sku="A\x00B")]), "body.line_items[0].sku: contains a NUL"),
        (order_payload(lines=[_line(sku={"a": 1})]), "line_items[0].sku: expected text"),
        (
            order_payload(shipping_address={"address1": "x" * 20_000, "country_code": "US"}),
            "shipping_address.address1: longer than 255 characters",
        ),
        (order_payload(id="abc"), "id: not a positive integer: 'abc'"),
        (order_payload(id=-5), "id: not a positive integer: -5"),
        (order_payload(id=1.5), "id: not a positive integer: 1.5"),
        (order_payload(updated_at="x"), "updated_at: not an ISO 8601 timestamp"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_out_of_range_values_fail_the_delivery_with_field(
    channel, catalog, post_webhook, payload, error
):
    post_webhook(as_body(payload))

    delivery = Delivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.FAILED
    assert delivery.error.startswith(error)
    assert Order.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"id": 1, "note": "\\ud800"}', "body.note: contains an unpaired UTF-16 surrogate"),
        (b"[" * 5000 + b"]" * 5000, "body: JSON nested too deeply"),
    ],
    ids=["lone surrogate", "deep nesting"],
)
def test_unstorable_json_fails_the_delivery(channel, post_webhook, body, error):
    post_webhook(body)

    delivery = Delivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.FAILED
    assert delivery.error == error


def test_unexpected_error_dead_letters_delivery(channel, catalog, post_webhook, monkeypatch):
    def broken_check(*, order):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr("orders.hygiene.hygiene_checks", lambda: [broken_check])

    response = post_webhook(as_body(order_payload()))

    assert response.status_code == 200
    delivery = Delivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.DEAD_LETTER
    assert delivery.error == "unexpected ZeroDivisionError: simulated bug"
    assert Order.objects.count() == 0


def test_process_deliveries_continues_after_a_failure(channel, catalog, monkeypatch):
    from io import StringIO

    from django.core.management import call_command

    bad = Delivery.objects.create(
        channel=channel,
        delivery_id="wh-bad",
        topic="orders/create",
        headers={},
        body=as_body(order_payload(lines=[_line(price="1e400")])),
        signature_valid=True,
    )
    good = Delivery.objects.create(
        channel=channel,
        delivery_id="wh-good",
        topic="orders/create",
        headers={},
        body=as_body(order_payload(order_id=42)),
        signature_valid=True,
    )

    call_command("process_deliveries", "--older-than", "0", "--inline", stdout=StringIO())

    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.outcome == DeliveryOutcome.FAILED
    assert good.outcome == DeliveryOutcome.PROCESSED
