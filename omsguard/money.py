"""Money amounts: Decimal, rounded to the ISO 4217 minor unit of their currency."""

from decimal import ROUND_HALF_UP, Decimal
from functools import cache

import iso4217


class UnknownCurrency(ValueError):
    def __init__(self, code: object) -> None:
        self.code = code
        super().__init__(f"{code!r} is not an ISO 4217 currency code.")


def minor_units(currency: str) -> int:
    """Digits after the decimal point for a currency (JPY 0, USD 2, KWD 3).

    Raises UnknownCurrency for anything else, including values that are not text.
    """
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
        raise UnknownCurrency(currency)
    return _iso_minor_units(currency)


# Cached apart from minor_units, whose callers may pass a list or a dict from a payload:
# those cannot be cache keys and raised TypeError instead of UnknownCurrency.
@cache
def _iso_minor_units(currency: str) -> int:
    try:
        exponent = iso4217.Currency(currency).exponent
    except (KeyError, ValueError):
        raise UnknownCurrency(currency) from None
    # Funds and precious metals (XAU, XDR...) have no minor unit in ISO 4217; they are not
    # order currencies.
    if exponent is None:
        raise UnknownCurrency(currency)
    return exponent


def is_currency(code: object) -> bool:
    try:
        minor_units(code)  # type: ignore[arg-type]
    except UnknownCurrency:
        return False
    return True


def money_round(amount: Decimal, currency: str) -> Decimal:
    """Round half up to the currency's minor unit: 2.675 USD -> 2.68, 1234.5 JPY -> 1235.

    Ties round away from zero (-2.675 USD -> -2.68). Raises TypeError for a float or any
    other type than Decimal: a float cannot hold most amounts exactly (2.675 is stored as
    2.67499...), so convert from the amount's text instead.
    """
    if not isinstance(amount, Decimal):
        raise TypeError(
            f"money_round takes a Decimal amount, got {type(amount).__name__} {amount!r}."
        )
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


def money_format(amount: Decimal | None, currency: str) -> str:
    """The amount with exactly the currency's minor digits, e.g. "44.98" or "2980"."""
    if amount is None:
        return ""
    try:
        return str(money_round(amount, currency))
    except UnknownCurrency:
        return str(amount)
