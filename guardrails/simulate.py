"""Judge one hypothetical order and action under a policy version, without storing anything.

The simulation judges the policy and the engine's safety rules only: live breakers and the
autonomy gate are state of the moment, so they are left out unless real order facts are used.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from catalog.models import Channel

from .engine import Evaluation, evaluate, rules_from_version
from .models import ActionType, CustomerTier, PolicyVersion
from .selectors import policy_version_live_for

STOCK_FRESH = "fresh"
STOCK_STALE = "stale"
STOCK_NONE = "none"


class SimulationError(ValueError):
    """The scenario cannot be simulated; `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Scenario:
    action: ActionType
    channel: Channel | None
    order_value: Decimal
    currency: str
    confidence: Decimal
    item_price: Decimal | None = None
    customer_tier: str = CustomerTier.STANDARD
    margin_rate: Decimal | None = None
    pickup_to_ship: bool = False
    listing_forbids: bool = False
    stock: str = STOCK_FRESH


@dataclass
class Simulation:
    version: PolicyVersion | None
    facts: dict
    evaluation: Evaluation


def scenario_facts(scenario: Scenario) -> dict:
    """Build the engine's facts for a hypothetical order, in the shape of `guardrails.facts`."""
    facts = {
        "action": scenario.action.code,
        "channel": scenario.channel.code if scenario.channel else "",
        "order": {
            "id": None,
            "status": "on_hold",
            "currency": scenario.currency,
            "total": str(scenario.order_value),
            "customer_tier": scenario.customer_tier,
            "margin_rate": _string_or_none(scenario.margin_rate),
            "in_store_pickup": scenario.pickup_to_ship,
        },
        "item_price": _string_or_none(scenario.item_price),
        "confidence": str(scenario.confidence),
        "model": {"name": "simulation", "version": ""},
        "stock": _stock_facts(scenario.stock),
        "breakers": [],
        "autonomy": {},
    }
    # The safety rules read these keys only for the actions they concern, as live facts do.
    if scenario.action.code == "substitute_sku":
        facts["listing_forbids"] = scenario.listing_forbids
    if scenario.action.code == "reroute_fulfilment":
        facts["pickup_to_ship"] = scenario.pickup_to_ship
    return facts


def simulate(
    *, action: ActionType, channel: Channel | None, facts: dict, version: PolicyVersion | None
) -> Simulation:
    """Evaluate the facts under `version`, or under the live version for the action and channel.

    Raises SimulationError when `version` belongs to another action's policy.
    """
    if version is not None and version.policy.action_id != action.pk:
        raise SimulationError(f"{version} is not a version of {action.code}.", field="version")
    if version is None:
        version = policy_version_live_for(action=action, channel=channel)

    rules = rules_from_version(version) if version is not None else None
    evaluation = evaluate(rules=rules, facts=facts)
    return Simulation(version=version, facts=facts, evaluation=evaluation)


def _stock_facts(stock: str) -> dict:
    if stock == STOCK_NONE:
        return {"checked": False, "fresh": False, "as_of": None}
    # The age only shows in messages: a stale snapshot is a day old, a fresh one current.
    as_of = timezone.now() - (timedelta(days=1) if stock == STOCK_STALE else timedelta(0))
    return {"checked": True, "fresh": stock == STOCK_FRESH, "as_of": as_of.isoformat()}


def _string_or_none(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
