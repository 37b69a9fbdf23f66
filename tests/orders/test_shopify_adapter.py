"""Shopify order JSON to the canonical order, on our samples and on bad input."""

import json
from decimal import Decimal

import pytest

from orders.adapters.shopify import parse_order
from orders.canonical import MAX_LINES, AdapterError, check_order_limits
from tests.conftest import SAMPLES, order_payload


def load_sample(name: str) -> dict:
    return json.loads((SAMPLES / "shopify" / name).read_bytes())


@pytest.mark.parametrize(
    "path", sorted((SAMPLES / "shopify").glob("0*.json")), ids=lambda p: p.name
)
def test_every_sample_parses_with_consistent_totals(path):
    order = parse_order(json.loads(path.read_bytes()))

    assert order.lines
    assert len(order.currency) == 3
    assert order.total == order.subtotal + order.shipping_total + order.tax_total


def test_large_ids_keep_every_digit():
    payload = load_sample("01-normal.json")

    order = parse_order(payload)

    assert order.channel_order_id == str(payload["id"])
    assert order.lines[0].channel_line_id == str(payload["line_items"][0]["id"])


def test_empty_and_null_sku_both_mean_no_sku():
    order = parse_order(load_sample("03-empty-sku.json"))

    assert [line.channel_sku for line in order.lines] == ["", ""]


def test_null_shipping_address_is_kept_as_none():
    order = parse_order(load_sample("04-null-shipping-address.json"))

    assert order.shipping_address is None
    assert order.shipping_total == Decimal("0")
    assert "pickup" in order.tags


def test_multi_currency_keeps_shop_and_presentment_amounts():
    payload = load_sample("05-multi-currency.json")

    order = parse_order(payload)

    assert order.currency == "USD"
    assert order.presentment_currency == "EUR"
    assert order.presentment_total == Decimal(
        payload["total_price_set"]["presentment_money"]["amount"]
    )
    assert order.total == Decimal(payload["total_price"])


def test_unicode_names_survive():
    payload = load_sample("06-unicode-names.json")

    order = parse_order(payload)

    assert (
        order.customer_name
        == f"{payload['customer']['first_name']} {payload['customer']['last_name']}"
    )
    assert order.shipping_address["city"] == payload["shipping_address"]["city"]
    assert order.currency == "JPY"


def test_pos_order_records_location_as_register():
    payload = load_sample("08-pos.json")

    order = parse_order(payload)

    assert order.source_name == "pos"
    assert order.pos_register == str(payload["location_id"])


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"id": None}, "id", "missing order id"),
        ({"line_items": []}, "line_items", "an order needs at least one line item"),
        ({"currency": "usd1"}, "currency", "not an ISO 4217 currency code: 'usd1'"),
        ({"currency": "XYZ"}, "currency", "not an ISO 4217 currency code: 'XYZ'"),
        ({"currency": None}, "currency", "not an ISO 4217 currency code: None"),
        ({"total_price": "abc"}, "total_price", "not a number: 'abc'"),
        ({"total_price": "-5.00"}, "total_price", "negative amount: -5.00"),
        ({"total_price": "NaN"}, "total_price", "not a finite amount: 'NaN'"),
        (
            {"created_at": "yesterday"},
            "created_at",
            "not an ISO 8601 timestamp with offset: 'yesterday'",
        ),
        (
            {"shipping_address": "12 Birch Lane"},
            "shipping_address",
            "expected a JSON object or null",
        ),
    ],
)
def test_invalid_order_fields_name_the_field(change, field, reason):
    with pytest.raises(AdapterError) as raised:
        parse_order(order_payload(**change))

    assert raised.value.field == field
    assert raised.value.reason == reason


@pytest.mark.parametrize(
    ("line_change", "field", "reason"),
    [
        ({"quantity": -1}, "line_items[0].quantity", "negative quantity: -1"),
        ({"quantity": "two"}, "line_items[0].quantity", "not a whole number: 'two'"),
        ({"quantity": 1.5}, "line_items[0].quantity", "not a whole number: 1.5"),
        ({"price": None}, "line_items[0].price", "missing amount"),
        ({"name": None, "title": None}, "line_items[0].title", "missing title"),
    ],
)
def test_invalid_line_fields_name_the_field(line_change, field, reason):
    line = order_payload()["line_items"][0] | line_change

    with pytest.raises(AdapterError) as raised:
        parse_order(order_payload(lines=[line]))

    assert raised.value.field == field
    assert raised.value.reason == reason


def test_non_object_body_is_rejected():
    with pytest.raises(AdapterError) as raised:
        parse_order([1, 2])

    assert raised.value.field == "body"


def test_adapter_registry_finds_shopify_and_rejects_unknown_kinds():
    from orders.adapters import NoAdapter, adapter_for

    assert adapter_for("shopify").parse_order is parse_order
    with pytest.raises(NoAdapter, match="No order adapter for channel kind 'myspace'."):
        adapter_for("myspace")


def test_line_identifiers_list_variant_before_sku():
    order = parse_order(load_sample("01-normal.json"))
    line = order.lines[0]

    assert line.identifiers == [
        ("shopify_variant", line.channel_variant_id),
        ("sku", line.channel_sku),
    ]


def test_huge_values_are_cut_in_errors():
    line = order_payload()["line_items"][0] | {"quantity": "x" * 5000}
    huge = parse_order(order_payload(lines=[order_payload()["line_items"][0]]))
    huge.lines[0].quantity = int("9" * 4200)

    with pytest.raises(AdapterError) as text:
        parse_order(order_payload(lines=[line]))
    with pytest.raises(AdapterError) as number:
        check_order_limits(huge)

    assert text.value.reason.endswith("... (5,002 characters)")
    assert len(text.value.reason) < 120
    assert number.value.reason.endswith("... (4,200 characters)")
    assert len(number.value.reason) < 120


def test_line_limit_names_line_items():
    line = order_payload()["line_items"][0]
    at_limit = parse_order(order_payload(lines=[line] * MAX_LINES))
    over = parse_order(order_payload(lines=[line] * (MAX_LINES + 1)))

    check_order_limits(at_limit)
    with pytest.raises(AdapterError) as error:
        check_order_limits(over)

    assert error.value.field == "line_items"
    assert error.value.reason == f"more than {MAX_LINES} lines ({MAX_LINES + 1}); split the order"
