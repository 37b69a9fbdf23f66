"""Escalations: orders a person should release before fulfilment.

Three findings hold the order, each on a review item of its own kind that proposes releasing
it: a high order value (`high_value`), a priority customer (`priority_customer`), and a
destination the channel does not usually ship to (`routing`). Each also keeps its flag
(`order_value`, `priority_customer`, `unusual_destination`) on the order, because the
guardrail facts read the priority customer flag and people see flags on the order page.
Accepting an item releases its hold; rejecting it keeps the order for manual handling.

An in-store pickup order with a charged shipping line (`pickup_ships`) is only flagged.
"""

import json
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Count, Q

from omsguard.money import money_format, money_round

from ..models import Order, PriorityCustomer
from ..services import order_event_add
from . import Finding, flag, hold

logger = logging.getLogger(__name__)

# How many of the channel's latest orders make up its usual destination countries.
ROUTING_HISTORY = 500
# At most this many usual countries are copied into a routing item's source data.
ROUTING_COUNTRIES_SHOWN = 30

RELEASE_PROPOSAL = {"action": "release"}

# The priority customers and the routing counts in one round trip (escalation_facts_read).
# The first part lists the ids of the channel's priority customers that match the order's
# customer id or email, ignoring case as email__iexact does. The second counts the channel's
# latest ROUTING_HISTORY other orders and those of them that went to the order's country.
# A part the order has no input for is left out of the select list.
# The routing part reads the index order_channel_recent_idx. Without it PostgreSQL read and
# sorted every order of the channel: 7.7 ms per order at 3,030 orders and 29 ms at 6,000,
# against 0.4 ms with it (EXPLAIN ANALYZE, PostgreSQL 15).
PRIORITY_IDS_SQL = (
    "ARRAY(SELECT id FROM orders_prioritycustomer WHERE channel_id = %(channel)s "
    "AND ((%(customer_id)s <> '' AND customer_id = %(customer_id)s) "
    "OR (%(email)s <> '' AND UPPER(email::text) = UPPER(%(email)s))) ORDER BY id)"
)
ROUTING_COUNTS_SQL = (
    "(SELECT ARRAY[COUNT(*), COUNT(*) FILTER (WHERE shipping_address -> 'country_code' "
    "= %(country)s::jsonb)] FROM (SELECT shipping_address FROM orders_order "
    "WHERE channel_id = %(channel)s AND id <> %(order)s ORDER BY created_at DESC "
    "LIMIT %(history)s) AS latest)"
)


@dataclass(frozen=True)
class EscalationFacts:
    """The database facts that the priority customer and routing checks decide on."""

    # Matching priority customers in pk order; None when the order has no id or email.
    priority_ids: list[int] | None
    # Of the channel's latest other orders: how many, and how many went to the order's
    # country; None when the order has no destination country.
    routing_counts: tuple[int, int] | None


def check_escalations(*, order: Order) -> list[Finding]:
    facts = escalation_facts_read(order)
    findings = []
    findings.extend(_order_value(order))
    findings.extend(_priority_customer(order, facts.priority_ids))
    findings.extend(_unusual_routing(order, facts.routing_counts))
    return findings


def escalation_facts_read(order: Order) -> EscalationFacts:
    """Read the priority customer matches and the routing counts, in one query on PostgreSQL.

    Other databases run the two ORM queries they replace.
    """
    wants_priority = bool(order.customer_id or order.customer_email)
    country = _destination_country(order)
    if not wants_priority and not country:
        return EscalationFacts(priority_ids=None, routing_counts=None)
    if connection.vendor != "postgresql":
        return EscalationFacts(
            priority_ids=_priority_ids_orm(order) if wants_priority else None,
            routing_counts=_routing_counts_orm(order, country) if country else None,
        )

    parts = [
        PRIORITY_IDS_SQL if wants_priority else "NULL",
        ROUTING_COUNTS_SQL if country else "NULL",
    ]
    params = {
        "channel": order.channel_id,
        "order": order.pk,
        "customer_id": order.customer_id or "",
        "email": order.customer_email or "",
        "country": json.dumps(country),
        "history": ROUTING_HISTORY,
    }
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(parts)}", params)
        priority_ids, routing = cursor.fetchone()
    return EscalationFacts(
        priority_ids=priority_ids,
        routing_counts=(routing[0], routing[1]) if routing is not None else None,
    )


def _destination_country(order: Order) -> object:
    return (order.shipping_address or {}).get("country_code", "")


def _priority_ids_orm(order: Order) -> list[int]:
    clauses = []
    if order.customer_id:
        clauses.append(Q(customer_id=order.customer_id))
    if order.customer_email:
        clauses.append(Q(email__iexact=order.customer_email))
    wanted = clauses[0] if len(clauses) == 1 else clauses[0] | clauses[1]
    matches = PriorityCustomer.objects.filter(wanted, channel=order.channel).order_by("pk")
    return list(matches.values_list("pk", flat=True))


def _routing_history_query(order: Order):
    return (
        Order.objects.filter(channel=order.channel)
        .exclude(pk=order.pk)
        .order_by("-created_at")
        .values_list("shipping_address__country_code", flat=True)[:ROUTING_HISTORY]
    )


def _routing_counts_orm(order: Order, country: object) -> tuple[int, int]:
    known = _routing_history_query(order).aggregate(
        orders=Count("pk"),
        seen=Count("pk", filter=Q(shipping_address__country_code=country)),
    )
    return known["orders"], known["seen"]


def escalation_release_accept(*, item, order: Order, user: AbstractBaseUser) -> dict:
    """Accept handler for high value, priority customer and routing items: release the hold.

    The review flow removes the item's hold reason after this returns, and the order goes on
    when no other reason holds it; this handler only states what was decided.
    """
    from reviews.services import ReviewError

    if item.proposal.get("action") != RELEASE_PROPOSAL["action"]:
        raise ReviewError(
            "unsupported_proposal",
            f"Review item #{item.pk} proposes no release; reject it and handle the order.",
        )
    logger.info(
        "escalation released",
        extra={"review_item": item.pk, "order": order.pk, "kind": item.kind},
    )
    return {"action": "release", "released": True, "kind": item.kind}


def _order_value(order: Order) -> list[Finding]:
    # NOTE: there is no currency conversion yet, so only orders in the limit's own currency
    # are compared; a large order in another currency gets no flag.
    currency = settings.OMSGUARD_ESCALATION_CURRENCY
    limit = Decimal(settings.OMSGUARD_ESCALATION_ORDER_VALUE)
    if order.currency != currency:
        return []
    # Rounded to the currency, so an order read back from the database compares equal.
    total = money_round(order.total, currency)
    value = max(total, money_round(_lines_value(order), currency))
    if value <= limit:
        return []
    if value == total:
        message = (
            f"Order total {money_format(total, currency)} {currency} is above the "
            f"escalation limit {limit}"
        )
    else:
        message = (
            f"Order lines worth {money_format(value, currency)} {currency} before discounts "
            f"are above the escalation limit {limit} (order total {money_format(total, currency)})"
        )
    data = {"total": str(total), "value": str(value), "limit": str(limit), "currency": currency}
    findings = [flag("order_value", message, data=data)]
    findings.extend(
        _escalate(
            order,
            kind="high_value",
            reason=f"{message}; a person releases high-value orders before fulfilment.",
            source_data=data,
        )
    )
    return findings


def _lines_value(order: Order) -> Decimal:
    """What the order's lines are worth before discounts: a source that sends a total below
    them (by mistake, or to slip under the limit) must not skip the high-value review."""
    return sum((line.unit_price * line.quantity for line in order.lines.all()), Decimal("0"))


def _priority_customer(order: Order, priority_ids: list[int] | None) -> list[Finding]:
    # A customer id match wins over an email match.
    if not priority_ids:
        return []
    candidates = list(PriorityCustomer.objects.filter(pk__in=priority_ids).order_by("pk"))
    match, matched_on = None, ""
    if order.customer_id:
        match = next((c for c in candidates if c.customer_id == order.customer_id), None)
        matched_on = "customer_id"
    if match is None and candidates:
        # No customer id matched, so each candidate was found by its email.
        match, matched_on = candidates[0], "email"
    if match is None:
        return []
    message = "The customer is on the channel's priority list"
    findings = [
        flag("priority_customer", message, data={"priority_customer": match.pk, "note": match.note})
    ]
    findings.extend(
        _escalate(
            order,
            kind="priority_customer",
            reason=(
                f"{message} (matched by {matched_on.replace('_', ' ')}); a person checks "
                "priority customers' orders before fulfilment."
            ),
            source_data={
                "priority_customer": match.pk,
                "matched_on": matched_on,
                "note": match.note,
            },
        )
    )
    return findings


def _unusual_routing(order: Order, routing_counts: tuple[int, int] | None) -> list[Finding]:
    findings = []
    if order.in_store_pickup and _ships(order.shipping_lines):
        findings.append(
            flag(
                "pickup_ships",
                "In-store pickup order with a shipping line that charges for delivery",
            )
        )

    if routing_counts is None:
        return findings
    country = _destination_country(order)
    # Most orders go to a usual country: the counts show that, instead of reading back the
    # channel's last ROUTING_HISTORY orders; those are read only for an unusual one.
    orders, seen = routing_counts
    if orders < settings.OMSGUARD_ESCALATION_ROUTING_MIN_ORDERS or seen:
        return findings
    history = list(_routing_history_query(order))

    message = f"Destination country {country} is not among the channel's last {len(history)} orders"
    findings.append(flag("unusual_destination", message, data={"country": country}))
    usual = sorted({code for code in history if code})
    findings.extend(
        _escalate(
            order,
            kind="routing",
            reason=f"{message}; a person confirms unusual routing before fulfilment.",
            source_data={
                "country": country,
                "orders_compared": len(history),
                "usual_countries": usual[:ROUTING_COUNTRIES_SHOWN],
            },
        )
    )
    return findings


def _escalate(order: Order, *, kind: str, reason: str, source_data: dict) -> list[Finding]:
    """Open the order's review item of this kind and return the hold that names it.

    One open item per kind and order: a second run of the checks reuses it. An order whose
    item of this kind was already accepted for the same source data is not held again, so a
    channel update that changes something else does not ask for the same release twice.
    """
    from reviews.models import ReviewItem, ReviewKind, ReviewStatus

    items = ReviewItem.objects.filter(order=order, kind=kind)
    item = items.filter(status=ReviewStatus.OPEN).order_by("pk").first()
    if item is None:
        accepted = items.filter(status=ReviewStatus.ACCEPTED).values_list("source_data", flat=True)
        if source_data in list(accepted):
            return []
        item = ReviewItem.objects.create(
            kind=kind,
            order=order,
            reason=reason,
            source_data=source_data,
            proposal=dict(RELEASE_PROPOSAL),
        )
        label = ReviewKind(kind).label.lower()
        order_event_add(
            order=order,
            kind="review.opened",
            message=f"Review item #{item.pk} opened: {label} order waits for release.",
            data={"review_item": item.pk},
        )
        logger.info(
            "order escalated", extra={"order": order.pk, "kind": kind, "review_item": item.pk}
        )
    return [
        hold(
            kind,
            f"{ReviewKind(kind).label} order waits for release in review item #{item.pk}",
            review_item=item.pk,
        )
    ]


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
