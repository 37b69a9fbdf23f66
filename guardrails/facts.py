"""The facts a live decision is judged on, gathered from the database in the engine's shape.

The shape is documented at the top of `guardrails.engine`. Facts are stored on the decision,
so they stay JSON-ready and small: money and rates are decimal strings, times ISO strings.
Call `facts_for_order` only with a proposal that `guardrails.appliers` has validated.
"""

import logging
from decimal import Decimal
from typing import TYPE_CHECKING

from catalog.models import ListingConstraintKind, Sku
from omsguard.money import money_round
from orders.models import Order, OrderLine

from .models import ActionType, CustomerTier

if TYPE_CHECKING:
    from .selectors import ProposalReads

logger = logging.getLogger(__name__)


# Actions that pick a carrier service, and so turn a pickup order into a shipment.
CARRIER_ACTIONS = ("select_carrier", "downgrade_shipping_service", "split_order_carriers")


def facts_for_order(
    *,
    order: Order,
    action: ActionType,
    before: dict,
    after: dict,
    confidence: Decimal,
    model_name: str,
    model_version: str,
    extra_facts: dict | None = None,
    order_summary: dict | None = None,
) -> dict:
    """Gather what the engine reads about the order and the proposed action.

    Pass `order_summary` when the caller already has `order_facts(order)`.
    """
    facts = {
        "action": action.code,
        "channel": order.channel.code,
        "order": order_summary if order_summary is not None else order_facts(order),
        "item_price": None,
        "confidence": str(confidence),
        "model": {"name": model_name, "version": model_version},
    }

    if action.code == "substitute_sku":
        facts.update(_substitution_facts(order, after))
    elif action.code == "reroute_fulfilment":
        # Only an explicit `false` ships a pickup order; a missing flag keeps it as it is.
        facts["pickup_to_ship"] = bool(
            order.in_store_pickup and after.get("in_store_pickup") is False
        )
    elif action.code in CARRIER_ACTIONS:
        # Choosing a carrier for an order the customer collects in a store ships it instead.
        facts["pickup_to_ship"] = order.in_store_pickup

    facts["breakers"] = _breaker_facts(action.code, order.channel.code, model_name)
    facts["autonomy"] = _autonomy_facts(action.code)
    if extra_facts:
        facts.update(extra_facts)
    # Set after extra_facts, so that no caller can hide a held channel from the engine.
    facts.update(channel_hold_facts(order))
    return facts


def channel_hold_facts(order: Order) -> dict:
    """Return whether the order's channel is held, and the reason given for the hold.

    Read without a lock: the caller has locked the order, and locking the channel after it
    could deadlock with a release, which locks the channel first. A hold that commits while
    the decision is made counts as coming after the decision.
    """
    channel = order.channel
    return {
        "channel_orders_held": channel.orders_held,
        "channel_orders_held_reason": channel.orders_held_reason if channel.orders_held else "",
    }


def order_facts(order: Order, *, reads: "ProposalReads | None" = None) -> dict:
    """Summarise the order for the engine and the review queue.

    Pass `reads` when the caller already has `proposal_reads` for the order.
    """
    from .selectors import order_line_costs

    listed = reads.priority_listed if reads is not None else None
    line_costs = reads.line_costs if reads is not None else order_line_costs(order)
    return {
        "id": order.pk,
        "status": order.status,
        "currency": order.currency,
        "total": str(money_round(order.total, order.currency)),
        "value": str(order_value(order, line_costs=line_costs)),
        "customer_tier": customer_tier(order, listed=listed),
        "margin_rate": _string_or_none(margin_rate(order, line_costs=line_costs)),
        "in_store_pickup": order.in_store_pickup,
    }


def order_value(order: Order, *, line_costs: list) -> Decimal:
    """Return the value that order-value limits and bands compare: the larger of the total the
    source sent and what its lines are worth before discounts.

    A source that sends a total below its lines (by mistake, or to slip under a limit, with or
    without a matching discount) must not make a large order look small to the guardrails.
    `line_costs` is `order_line_costs(order)`.
    """
    lines = sum((unit_price * quantity for unit_price, quantity, _, _ in line_costs), Decimal("0"))
    return money_round(max(order.total, lines), order.currency)


def customer_tier(order: Order, *, listed: bool | None = None) -> str:
    """Return "priority" when ingestion flagged the customer or the channel lists them.

    `listed` is `priority_listed(order)` when the caller has read it already.
    """
    from .selectors import priority_listed

    if any(finding.get("code") == "priority_customer" for finding in order.flags or []):
        return CustomerTier.PRIORITY
    if listed is None:
        listed = priority_listed(order)
    return CustomerTier.PRIORITY if listed else CustomerTier.STANDARD


def margin_rate(order: Order, *, line_costs: list | None = None) -> Decimal | None:
    """Margin over the lines whose SKU has a cost in the order's currency, rounded to 4 places.

    Returns None when no line has a known cost, so a band with a minimum margin never matches
    an order whose margin nobody knows. `line_costs` is `order_line_costs(order)` when the
    caller has read it already.
    """
    from .selectors import order_line_costs

    revenue = Decimal("0")
    margin = Decimal("0")
    if line_costs is None:
        line_costs = order_line_costs(order)
    for unit_price, quantity, cost, currency in line_costs:
        if cost is None or currency != order.currency:
            continue
        revenue += unit_price * quantity
        margin += (unit_price - cost) * quantity
    if revenue <= 0:
        return None
    return (margin / revenue).quantize(Decimal("0.0001"))


def _substitution_facts(order: Order, after: dict) -> dict:
    from catalog.selectors import listing_forbids
    from inventory.selectors import stock_availability

    line = OrderLine.objects.select_related("sku").get(order=order, position=after["line"])
    substitute = Sku.objects.get(code=after["sku"])

    # The higher of the two prices is judged, so an expensive item is never swapped in (or
    # out) autonomously under a cheap one's price.
    item_price = max(line.unit_price, substitute.price)

    forbids = listing_forbids(
        channel=order.channel, sku=substitute, kind=ListingConstraintKind.NOT_A_SUBSTITUTE
    )
    if line.sku is not None:
        forbids = forbids or listing_forbids(
            channel=order.channel, sku=line.sku, kind=ListingConstraintKind.NO_SUBSTITUTION
        )

    availability = stock_availability(sku=substitute)
    stock = {
        "checked": availability.tracked,
        "fresh": availability.tracked and not availability.is_stale,
        "as_of": availability.as_of.isoformat() if availability.as_of else None,
        "available": availability.available if availability.tracked else None,
        "quantity": line.quantity,
    }
    return {"item_price": str(item_price), "stock": stock, "listing_forbids": forbids}


def _breaker_facts(action_code: str, channel_code: str, model_name: str) -> list[dict]:
    from .breakers import breaker_facts

    return breaker_facts(action_code=action_code, channel_code=channel_code, model_name=model_name)


def _autonomy_facts(action_code: str) -> dict:
    from .autonomy import autonomy_facts

    return autonomy_facts(action_code=action_code)


def _string_or_none(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
