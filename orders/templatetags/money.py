from decimal import Decimal

from django import template

from omsguard.money import money_format

register = template.Library()


@register.filter
def money(amount: Decimal | None, currency: str) -> str:
    """Show an amount with its currency's digits: {{ order.total|money:order.currency }}."""
    return money_format(amount, currency)
