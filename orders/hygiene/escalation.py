"""Escalation flags: orders a person should look at before fulfilment, though nothing holds them.

Three findings, all flags: a high order value, a priority customer, and unusual routing.
"""

from decimal import Decimal

from django.conf import settings

from omsguard.money import money_format

from ..models import Order, PriorityCustomer
from . import Finding, flag

# How many of the channel's latest orders make up its usual destination countries.
ROUTING_HISTORY = 500


def check_escalations(*, order: Order) -> list[Finding]:
    findings = []
    findings.extend(_order_value(order))
    findings.extend(_priority_customer(order))
    findings.extend(_unusual_routing(order))
    return findings


def _order_value(order: Order) -> list[Finding]:
    # NOTE: there is no currency conversion yet, so only orders in the limit's own currency
    # are compared; a large order in another currency gets no flag.
    currency = settings.OMSGUARD_ESCALATION_CURRENCY
    limit = Decimal(settings.OMSGUARD_ESCALATION_ORDER_VALUE)
    if order.currency != currency or order.total <= limit:
        return []
    return [
        flag(
            "order_value",
            f"Order total {money_format(order.total, currency)} {currency} is above the "
            f"escalation limit {limit}",
            data={"total": str(order.total), "limit": str(limit), "currency": currency},
        )
    ]


def _priority_customer(order: Order) -> list[Finding]:
    customers = PriorityCustomer.objects.filter(channel=order.channel)
    match = None
    if order.customer_id:
        match = customers.filter(customer_id=order.customer_id).first()
    if match is None and order.customer_email:
        match = customers.filter(email__iexact=order.customer_email).first()
    if match is None:
        return []
    return [
        flag(
            "priority_customer",
            "The customer is on the channel's priority list",
            data={"priority_customer": match.pk, "note": match.note},
        )
    ]


def _unusual_routing(order: Order) -> list[Finding]:
    findings = []
    if order.in_store_pickup and _ships(order.shipping_lines):
        findings.append(
            flag(
                "pickup_ships",
                "In-store pickup order with a shipping line that charges for delivery",
            )
        )

    country = (order.shipping_address or {}).get("country_code", "")
    if not country:
        return findings
    history = list(
        Order.objects.filter(channel=order.channel)
        .exclude(pk=order.pk)
        .order_by("-created_at")
        .values_list("shipping_address__country_code", flat=True)[:ROUTING_HISTORY]
    )
    if len(history) >= settings.OMSGUARD_ESCALATION_ROUTING_MIN_ORDERS and country not in history:
        findings.append(
            flag(
                "unusual_destination",
                f"Destination country {country} is not among the channel's last "
                f"{len(history)} orders",
                data={"country": country},
            )
        )
    return findings


def _ships(shipping_lines: list[dict]) -> bool:
    """Whether any shipping line charges for delivery or names a carrier."""
    for line in shipping_lines:
        try:
            price = Decimal(line.get("price") or "0")
        except ArithmeticError:
            price = Decimal(0)
        if price > 0 or line.get("carrier_identifier"):
            return True
    return False
