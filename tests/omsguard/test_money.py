"""Currency minor units and rounding."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omsguard.money import UnknownCurrency, minor_units, money_format, money_round


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4)],
)
def test_minor_units_follow_iso_4217(currency, digits):
    assert minor_units(currency) == digits


@pytest.mark.parametrize("code", ["usd", "US", "ABC", "XAU", "", None, 840])
def test_unknown_or_unusable_codes_raise(code):
    with pytest.raises(UnknownCurrency):
        minor_units(code)


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("2.675", "USD", "2.68"),
        ("2.665", "USD", "2.67"),
        ("-2.675", "USD", "-2.68"),
        ("1234.5", "JPY", "1235"),
        ("1234.49", "JPY", "1234"),
        ("0.0005", "KWD", "0.001"),
        ("1.2344", "KWD", "1.234"),
        ("10", "KWD", "10.000"),
    ],
)
def test_money_round_half_up_to_minor_unit(amount, currency, rounded):
    assert str(money_round(Decimal(amount), currency)) == rounded


def test_money_format_uses_currency_digits():
    assert money_format(Decimal("44.980"), "USD") == "44.98"
    assert money_format(Decimal("2980.000"), "JPY") == "2980"
    assert money_format(None, "USD") == ""


@given(
    amount=st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, places=6),
    currency=st.sampled_from(["USD", "JPY", "KWD", "EUR", "BHD"]),
)
def test_rounding_is_idempotent_and_within_half_a_unit(amount, currency):
    rounded = money_round(amount, currency)

    assert money_round(rounded, currency) == rounded
    assert abs(rounded - amount) <= Decimal(1).scaleb(-minor_units(currency)) / 2
    assert -rounded.as_tuple().exponent == minor_units(currency)
