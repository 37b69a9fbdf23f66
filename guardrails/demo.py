"""Demo AI proposals, sent through the real decisions API by `seed_demo`, demo carrier rates, and
the facts of the invented history's decisions.

Each sample in samples/decisions/proposals.json names an order by channel and order number
and the proposed `after` state. Like a real agent, the replay reads the order's current state
for `before`, then posts the proposal with the demo integration user's token.

The invented history (monitoring.demo) writes its decisions in bulk, not through
decision_propose. `demo_history_facts` gives each of them the facts decision_propose would have
stored, so a backtest or shadow version replays them like real decisions.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Sku
from omsguard.money import money_round
from orders.demo import demo_host
from orders.models import CarrierRate, CarrierRateStatus, CarrierService, Order, OrderLine

from .appliers import applier_for
from .engine import PolicyRules, rules_from_version
from .facts import CARRIER_ACTIONS, customer_tier, margin_rate, order_value
from .models import Decision, Policy, PolicyVersion
from .recommenders.rates import carrier_rate_validate
from .services import audit_record

DEMO_MODEL_NAME = "demo-agent"
DEMO_MODEL_VERSION = "2026-11"
PROPOSALS_FILE = Path(settings.BASE_DIR) / "samples" / "decisions" / "proposals.json"
# Age of the stock count behind an invented substitution: well inside the 300 s stock TTL,
# because the history's locations have a working feed.
HISTORY_STOCK_AGE = timedelta(minutes=2)


# Invented USD rates for the carrier recommender, so that
# POST /api/v1/orders/<id>/carrier-recommendation/ has candidates on the demo. Each entry is
# (carrier, service, destination country or "" for any, weight limit in grams or None, price).
# Every lane has a rate up to 1 kg and a dearer one for any weight. The prices are invented
# for the demo and come from no carrier's price list or contract.
DEMO_CARRIER_RATES = [
    ("usps", "ground_advantage", "US", 1000, "7.50"),
    ("usps", "ground_advantage", "US", None, "12.40"),
    ("usps", "priority_mail", "US", 1000, "10.40"),
    ("usps", "priority_mail", "US", None, "17.60"),
    ("usps", "priority_mail_express", "US", 1000, "31.00"),
    ("usps", "priority_mail_express", "US", None, "45.00"),
    ("ups", "ground", "US", 1000, "11.20"),
    ("ups", "ground", "US", None, "16.80"),
    ("ups", "2nd_day_air", "US", 1000, "24.50"),
    ("ups", "2nd_day_air", "US", None, "36.90"),
    ("ups", "next_day_air", "US", 1000, "58.00"),
    ("ups", "next_day_air", "US", None, "79.00"),
    ("fedex", "ground", "US", 1000, "10.90"),
    ("fedex", "ground", "US", None, "16.40"),
    ("fedex", "2day", "US", 1000, "25.10"),
    ("fedex", "2day", "US", None, "37.50"),
    ("fedex", "standard_overnight", "US", 1000, "55.40"),
    ("fedex", "standard_overnight", "US", None, "76.80"),
    ("dhl_express", "express_worldwide", "", 1000, "48.00"),
    ("dhl_express", "express_worldwide", "", None, "72.00"),
]
DEMO_RATE_CURRENCY = "USD"
DEMO_RATE_NOTE = "Invented demo rate."


def demo_carrier_rates_load() -> int:
    """Add the demo's carrier rates as active rates; return how many were added.

    A lane that already has a rate of any status is left alone, so running seed_demo again
    adds nothing and never replaces a rate someone entered. The rates skip
    carrier_rate_change's sign-off replay on purpose: on a demo database that already has
    orders, the first rate of a lane changes every recommendation and would wait for sign-off.
    Each rate still gets the `carrier_rate.activated` audit entry that function writes.
    """
    services = {
        (service.carrier.code, service.code): service
        for service in CarrierService.objects.select_related("carrier")
    }
    added = 0
    for carrier, code, country, max_weight, price in DEMO_CARRIER_RATES:
        service = services[(carrier, code)]
        # The demo skips carrier_rate_change's sign-off replay, but not its checks.
        carrier_rate_validate(
            price=Decimal(price),
            currency=DEMO_RATE_CURRENCY,
            destination_country=country,
            max_weight_grams=max_weight,
        )
        lane = CarrierRate.objects.filter(
            service=service, destination_country=country, max_weight_grams=max_weight
        )
        if lane.exists():
            continue
        with transaction.atomic():
            rate = CarrierRate.objects.create(
                service=service,
                destination_country=country,
                max_weight_grams=max_weight,
                price=Decimal(price),
                currency=DEMO_RATE_CURRENCY,
                status=CarrierRateStatus.ACTIVE,
                approved_at=timezone.now(),
                note=DEMO_RATE_NOTE,
            )
            audit_record(
                action="carrier_rate.activated",
                target_type="carrier_rate",
                target_id=rate.pk,
                system_label="demo seed",
                reason=DEMO_RATE_NOTE,
                after={
                    "service": service.pk,
                    "destination_country": country,
                    "max_weight_grams": max_weight,
                    "price": price,
                    "currency": DEMO_RATE_CURRENCY,
                    "status": CarrierRateStatus.ACTIVE,
                },
            )
        added += 1
    return added


@dataclass
class ProposalResult:
    action: str
    order_number: str
    status_code: int
    verdict: str
    note: str


def demo_decisions_replay(*, token: Token, path: Path = PROPOSALS_FILE) -> list[ProposalResult]:
    """POST each sample proposal to /api/v1/decisions/.

    Does nothing once demo decisions exist, so seed_demo stays safe to run again.
    """
    if Decision.objects.filter(model_name=DEMO_MODEL_NAME).exists():
        return []

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    results = []
    for sample in json.loads(path.read_text("utf-8")):
        order = Order.objects.filter(
            channel__code=sample["order"]["channel"],
            order_number=sample["order"]["order_number"],
        ).first()
        if order is None:
            # With a real broker the worker may not have built the order yet.
            results.append(
                ProposalResult(
                    action=sample["action"],
                    order_number=sample["order"]["order_number"],
                    status_code=0,
                    verdict="skipped",
                    note="the order is not processed yet; run seed_demo again later",
                )
            )
            continue
        response = client.post(
            "/api/v1/decisions/",
            {
                "action": sample["action"],
                "order": order.pk,
                "before": _current_state(order, sample["action"]),
                "after": sample["after"],
                "confidence": sample["confidence"],
                "model_name": DEMO_MODEL_NAME,
                "model_version": DEMO_MODEL_VERSION,
                "rationale": sample["rationale"],
            },
            format="json",
            secure=settings.SECURE_SSL_REDIRECT,
            headers={"Host": demo_host()},
        )
        body = response.json()
        results.append(
            ProposalResult(
                action=sample["action"],
                order_number=order.order_number,
                status_code=response.status_code,
                verdict=body.get("verdict") or body.get("error", {}).get("code", "error"),
                note=sample.get("note", ""),
            )
        )
    return results


def _current_state(order: Order, action_code: str) -> dict:
    """Read the order's state in the action's proposal shape, as an agent does first."""
    applier = applier_for(action_code)
    if applier is None:
        return {}
    return applier.current(order, {})


def demo_history_rules(action_codes: Iterable[str]) -> dict[str, PolicyRules]:
    """Detach the live all-channels policy version of each action, for judging history proposals.

    An action without a live version is left out, and the engine then queues its proposals
    for a person, as decision_propose does.
    """
    versions = (
        PolicyVersion.objects.filter(
            pk__in=Policy.objects.filter(action__code__in=list(action_codes), channel=None).values(
                "live_version"
            )
        )
        .select_related("policy__action", "approver_group", "escalation_group")
        .prefetch_related("bands")
    )
    return {version.policy.action.code: rules_from_version(version) for version in versions}


def demo_history_facts(
    *,
    action_code: str,
    order: Order,
    lines: list[OrderLine],
    after: dict,
    confidence: Decimal,
    model_name: str,
    model_version: str,
    decided_at: datetime,
) -> dict:
    """Build the facts decision_propose would store for an invented history proposal.

    The order and its lines may be unsaved, so nothing is read from the database: the order's
    `id` is None until the caller saves it and fills it in. The shape is that of
    guardrails.facts.facts_for_order. The history has no open breakers, held channels or
    listing constraints.
    """
    line_costs = [(line.unit_price, line.quantity, *_sku_cost(line.sku)) for line in lines]
    rate = margin_rate(order, line_costs=line_costs)
    facts = {
        "action": action_code,
        "channel": order.channel.code,
        "order": {
            "id": order.pk,
            "status": order.status,
            "currency": order.currency,
            "total": str(money_round(order.total, order.currency)),
            "value": str(order_value(order, line_costs=line_costs)),
            # The history puts no customer on a channel's priority list.
            "customer_tier": customer_tier(order, listed=False),
            "margin_rate": None if rate is None else str(rate),
            "in_store_pickup": order.in_store_pickup,
        },
        "item_price": None,
        "confidence": str(confidence),
        "model": {"name": model_name, "version": model_version},
    }
    if action_code == "substitute_sku":
        facts.update(_history_substitution_facts(lines, after, decided_at))
    elif action_code in CARRIER_ACTIONS:
        facts["pickup_to_ship"] = order.in_store_pickup
    facts["breakers"] = []
    # NOTE: the history does not replay the autonomy gate, because its baseline weeks label
    # more errors than the gate allows and a replayed gate would have suspended autonomy
    # there. An empty dict makes the engine skip the gate check.
    facts["autonomy"] = {}
    facts["channel_orders_held"] = False
    facts["channel_orders_held_reason"] = ""
    return facts


def _sku_cost(sku: Sku | None) -> tuple[Decimal | None, str | None]:
    return (sku.cost, sku.currency) if sku is not None else (None, None)


def _history_substitution_facts(lines: list[OrderLine], after: dict, decided_at: datetime) -> dict:
    line = next(line for line in lines if line.position == after["line"])
    # The history's substitutes are invented codes outside the catalog, so the ordered item's
    # price is used in place of the higher of the two prices that facts_for_order judges.
    as_of = decided_at - HISTORY_STOCK_AGE
    return {
        "item_price": str(line.unit_price),
        # The history does not count stock per SKU, so it records just enough for the line.
        "stock": {
            "checked": True,
            "fresh": True,
            "as_of": as_of.isoformat(),
            "available": line.quantity,
            "quantity": line.quantity,
        },
        "listing_forbids": False,
    }
