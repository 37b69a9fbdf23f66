"""The order total must equal its rounded lines, less discounts, plus shipping and tax."""

from decimal import Decimal

from omsguard.money import money_round

from ..models import Order
from . import Finding, flag


def check_order_totals(*, order: Order) -> list[Finding]:
    """Flag (never correct) a total that differs from what its parts add up to.

    Each line is rounded to the currency's minor unit before summing, as channels do on
    their invoices. Shipping, tax and discounts are taken as the channel sent them.
    """
    currency = order.currency
    lines_total = sum(
        (money_round(line.unit_price * line.quantity, currency) for line in order.lines.all()),
        start=Decimal(0),
    )
    # With tax-inclusive prices (common in the EU) the tax is already inside the lines.
    tax = Decimal(0) if order.taxes_included else order.tax_total
    expected = money_round(
        lines_total - order.discount_total + order.shipping_total + tax, currency
    )
    sent = money_round(order.total, currency)
    if expected == sent:
        return []

    return [
        flag(
            "total_mismatch",
            f"Order total {sent} {currency} differs from its lines less discounts plus shipping "
            f"and tax ({expected} {currency})",
            data={"sent": str(sent), "expected": str(expected)},
        )
    ]
