"""POST /api/v1/orders/ takes each field only in the JSON type the canonical format gives it.

New users found values DRF converted or dropped without a word (quantity 6.0, "yes" for a
boolean, a misspelt optional field) and timestamps that passed parsing but crashed later with
a 500 or a dead-lettered delivery. Each is now a 400 naming the field, and nothing is stored.
"""

import pytest

from orders.canonical import MAX_LINES
from orders.models import Delivery, IdempotencyKey, Order
from tests.ingestion.conftest import canonical_sample

pytestmark = pytest.mark.django_db(transaction=True)


def _field_errors(api_client, body: dict) -> dict:
    response = api_client.post_order(body)

    assert response.status_code == 400, response.content
    assert Delivery.objects.count() == 0
    assert Order.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0
    return response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("placed_at", "2024-02-30T10:00:00Z", "Not a real date and time"),
        ("placed_at", "2024-11-18T10:24:05+25:00", "Not a real date and time"),
        ("updated_at", "2024-02-30T00:00:00Z", "Not a real date and time"),
        ("placed_at", "0001-01-01T00:00:00+14:00", "Out of range once converted to UTC"),
        ("placed_at", 1732000000, "A JSON string is required."),
    ],
)
def test_impossible_timestamp_is_named(api_client, field, value, message):
    body = canonical_sample() | {field: value}

    errors = _field_errors(api_client, body)

    assert list(errors) == [field]
    assert errors[field][0].startswith(message), errors


@pytest.mark.parametrize("quantity", [6.0, "6", True])
def test_quantity_must_be_a_json_integer(api_client, quantity):
    body = canonical_sample()
    body["lines"][0]["quantity"] = quantity

    assert _field_errors(api_client, body) == {"lines[0].quantity": ["A JSON integer is required."]}


def test_boolean_must_be_json_true_or_false(api_client):
    body = canonical_sample() | {"in_store_pickup": "yes"}

    assert _field_errors(api_client, body) == {
        "in_store_pickup": ["A JSON boolean (true or false) is required."]
    }


@pytest.mark.parametrize(
    "amount", [" 381.59", "+381.59", "\u0663\u0668\u0661.\u0665\u0669", "3.8159e2"]
)
def test_amount_takes_ascii_digits_and_a_point_only(api_client, amount):
    body = canonical_sample() | {"total": amount}

    errors = _field_errors(api_client, body)

    assert list(errors) == ["total"]
    assert errors["total"][0].startswith("Not a decimal number"), errors


def test_negative_amount_says_so(api_client):
    body = canonical_sample() | {"total": "-381.59"}

    assert _field_errors(api_client, body) == {"total": ["Must be a non-negative decimal number."]}


def test_text_fields_refuse_numbers(api_client):
    body = canonical_sample() | {"channel_order_id": 1234, "tags": ["wholesale", 7]}

    assert _field_errors(api_client, body) == {
        "channel_order_id": ["A JSON string is required."],
        "tags[1]": ["A JSON string is required."],
    }


def test_unknown_fields_are_named_at_every_level(api_client):
    body = canonical_sample() | {"in_store_pikup": True}
    body["lines"][1]["colour"] = "blue"
    body["shipping_address"]["zip"] = "97201"

    assert _field_errors(api_client, body) == {
        "in_store_pikup": ["Unknown field; this format has no field of that name."],
        "lines[1].colour": ["Unknown field; this format has no field of that name."],
        "shipping_address.zip": ["Unknown field; this format has no field of that name."],
    }


def test_more_lines_than_the_limit_is_refused(api_client):
    body = canonical_sample()
    body["lines"] = [body["lines"][0]] * (MAX_LINES + 1)

    assert _field_errors(api_client, body) == {
        "lines": [f"At most {MAX_LINES} lines per order; split larger ones."]
    }


def test_samples_pass(api_client, carriers):
    for number, name in enumerate(
        ("01-normal.json", "02-kwd-three-decimals.json", "03-total-mismatch.json")
    ):
        response = api_client.post_order(canonical_sample(name), key=f"sample-{number}")

        assert response.status_code == 201, (name, response.content)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "EUR "}, "currency"),
        ({"currency": " EUR"}, "currency"),
        ({"customer": {"name": "Ada", "email": "a" * 250 + "@example.com"}}, "customer.email"),
    ],
)
def test_values_the_adapter_would_refuse_are_400(api_client, change, field):
    """The adapter reads the body as sent: a value it refuses must not pass validation first,
    where it would become a 201, a failed delivery and a CS item."""
    errors = _field_errors(api_client, canonical_sample() | change)

    assert list(errors) == [field], errors


def test_address_fields_stop_at_255_characters(api_client):
    body = canonical_sample()
    body["shipping_address"]["address1"] = "A" * 256

    assert list(_field_errors(api_client, body)) == ["shipping_address.address1"]


def test_shipping_amount_needs_the_currency_decimals(api_client):
    body = canonical_sample()
    body["shipping"]["amount"] = "12.345"

    assert _field_errors(api_client, body) == {
        "shipping.amount": ["Use exactly 2 decimal places for USD."]
    }


def test_pickup_order_without_carrier_is_not_held(api_client, carriers):
    """A kiosk's pickup order names its method but no carrier, charges nothing, has no address."""
    body = canonical_sample() | {"in_store_pickup": True, "shipping_address": None}
    body["shipping"] = {"carrier_code": "", "method": "In-store pickup", "amount": "0.00"}

    response = api_client.post_order(body)

    assert response.status_code == 201, response.content
    order = Order.objects.get()
    assert order.in_store_pickup is True
    assert order.shipping_lines == []
    codes = [reason["code"] for reason in order.hold_reasons]
    assert "carrier_code_unknown" not in codes
    assert "address_missing" not in codes
