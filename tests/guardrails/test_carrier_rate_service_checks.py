"""carrier_rate_change checks the money and the lane of a new rate itself, so every caller gets
the admin form's errors: a bad value raises a ValidationError naming the field, and nothing
is stored or audited."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from guardrails.models import AuditEntry
from guardrails.recommenders.rates import RATE_MAX_WEIGHT_GRAMS, carrier_rate_change
from orders.models import CarrierRate

from .recommender_fixtures import service_get

UNKNOWN_COUNTRY = (
    "Unknown country {!r}; use an ISO 3166-1 code like US, or leave it empty for every destination."
)
VALID = {
    "price": Decimal("5.00"),
    "currency": "USD",
    "destination_country": "US",
    "max_weight_grams": 1000,
}


def rate_change(**changes) -> None:
    carrier_rate_change(
        service=service_get("canada_post/expedited_parcel"), user=None, **(VALID | changes)
    )


@pytest.mark.parametrize(
    ("field", "value", "code", "message"),
    [
        (
            "currency",
            "XYZ",
            "unknown_currency",
            "Unknown currency 'XYZ'; use an ISO 4217 code like USD.",
        ),
        (
            "currency",
            "XAU",
            "unknown_currency",
            "Unknown currency 'XAU'; use an ISO 4217 code like USD.",
        ),
        (
            "currency",
            "usd",
            "unknown_currency",
            "Unknown currency 'usd'; use an ISO 4217 code like USD.",
        ),
        ("destination_country", "ZZ", "unknown_country", UNKNOWN_COUNTRY.format("ZZ")),
        ("destination_country", "xx", "unknown_country", UNKNOWN_COUNTRY.format("XX")),
        ("destination_country", 840, "unknown_country", UNKNOWN_COUNTRY.format(840)),
        (
            "max_weight_grams",
            0,
            "weight_too_small",
            "The weight limit must be at least 1 g; leave it empty for any weight.",
        ),
        (
            "max_weight_grams",
            RATE_MAX_WEIGHT_GRAMS + 1,
            "weight_too_large",
            "The weight limit 1,000,001 g is more than 1,000,000 g (1,000 kg); enter the limit "
            "in grams.",
        ),
        (
            "max_weight_grams",
            "500",
            "invalid_weight",
            "The weight limit must be a whole number of grams, not '500'.",
        ),
        (
            "price",
            9.5,
            "invalid_price",
            "The price must be a Decimal, an integer or a decimal string, not float 9.5.",
        ),
        (
            "price",
            "nine",
            "invalid_price",
            "The price 'nine' is not a number; enter an amount like 9.50.",
        ),
        (
            "price",
            Decimal("NaN"),
            "invalid_price",
            "The price Decimal('NaN') is not a number; enter an amount like 9.50.",
        ),
        (
            "price",
            Decimal("-0.01"),
            "invalid_price",
            "The price Decimal('-0.01') is negative; enter 0 or more.",
        ),
    ],
)
def test_rate_change_rejects_bad_value(carriers, field, value, code, message):
    with pytest.raises(ValidationError) as raised:
        rate_change(**{field: value})

    assert raised.value.message_dict == {field: [message]}
    assert [error.code for error in raised.value.error_dict[field]] == [code]
    assert not CarrierRate.objects.exists()
    assert not AuditEntry.objects.filter(target_type="carrier_rate").exists()


def test_rate_change_names_every_bad_field(carriers):
    with pytest.raises(ValidationError) as raised:
        rate_change(currency="XYZ", destination_country="ZZ", max_weight_grams=0)

    assert set(raised.value.message_dict) == {"currency", "destination_country", "max_weight_grams"}
    assert not CarrierRate.objects.exists()
