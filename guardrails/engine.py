"""The policy evaluator: a pure function from (policy rules, facts) to a verdict and its reasons.

Nothing here reads the database. `guardrails.facts` gathers the facts of a live decision, and
the same facts, stored on the decision, replay it later under another policy version
(backtests, shadow versions, the simulate page). Every rule that was checked is reported,
passed or not, so a person can see why a verdict came out as it did.

The facts are a JSON-ready dict; money and rates are decimal strings:

    {
      "action": "substitute_sku",
      "channel": "shop",
      "order": {"id": 7, "status": "on_hold", "currency": "USD", "total": "44.98",
                "value": "44.98",        # what limits and bands compare (facts.order_value);
                                         # facts stored before it existed hold only "total"
                "customer_tier": "standard", "margin_rate": "0.35" or None,
                "in_store_pickup": False},
      "item_price": "19.99" or None,     # unit price of the item the action touches
      "confidence": "0.95",
      "model": {"name": "gpt-sub", "version": "2024-06"},
      "stock": {"checked": True, "fresh": True, "as_of": "2024-11-04T10:00:00+00:00"},
      "listing_forbids": False,          # substitution only: a listing forbids it
      "pickup_to_ship": False,           # reroute only: a pickup order would be shipped
      "channel_orders_held": False,      # True while the channel's orders are held
      "channel_orders_held_reason": "",  # the reason given for the hold, "" when not held
      "breakers": [{"scope": "action", "key": "substitute_sku", "state": "open",
                    "cause": "error_rate", "trial_allowed": False}],
      "autonomy": {"suspended": False, "error_rate": "0.001", "max_error_rate": "0.002",
                   "window_days": 30},
    }
"""

from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from omsguard.money import money_format

from .models import CustomerTier, Mode, PolicyVersion, Verdict

PASS = "pass"  # noqa: S105 (a rule outcome, not a password)
FAIL = "fail"
BLOCK = "block"
INFO = "info"


@dataclass(frozen=True)
class Band:
    name: str
    order_value_from: Decimal | None = None
    order_value_to: Decimal | None = None
    customer_tier: str = CustomerTier.ANY
    margin_rate_from: Decimal | None = None
    mode: str = ""
    item_price_under: Decimal | None = None
    confidence_above: Decimal | None = None


@dataclass(frozen=True)
class PolicyRules:
    """A policy version as the evaluator needs it, detached from the database."""

    mode: str
    label: str = ""
    version_id: int | None = None
    approver_group: str | None = None
    limits_currency: str = "USD"
    order_value_under: Decimal | None = None
    item_price_under: Decimal | None = None
    confidence_above: Decimal | None = None
    require_fresh_stock: bool = False
    review_sla_minutes: int = 60
    on_sla_breach: str = "hold_order"
    escalation_group: str | None = None
    has_applier: bool = True
    bands: tuple[Band, ...] = ()


@dataclass
class Evaluation:
    verdict: str
    reasons: list[dict] = field(default_factory=list)
    band: str | None = None
    approver_group: str | None = None
    review_sla_minutes: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def fired(self) -> list[dict]:
        """The reasons that changed the outcome: failed limits and blocks."""
        return [reason for reason in self.reasons if reason["outcome"] in (FAIL, BLOCK)]


def rules_from_version(version: PolicyVersion) -> PolicyRules:
    """Detach a stored policy version (with its bands) for evaluation."""
    action = version.policy.action
    return PolicyRules(
        mode=version.mode,
        label=str(version),
        version_id=version.pk,
        approver_group=version.approver_group.name if version.approver_group_id else None,
        limits_currency=version.limits_currency,
        order_value_under=version.order_value_under,
        item_price_under=version.item_price_under,
        confidence_above=version.confidence_above,
        require_fresh_stock=version.require_fresh_stock,
        review_sla_minutes=version.review_sla_minutes,
        on_sla_breach=version.on_sla_breach,
        escalation_group=version.escalation_group.name if version.escalation_group_id else None,
        has_applier=action.has_applier,
        bands=tuple(
            Band(
                name=band.name,
                order_value_from=band.order_value_from,
                order_value_to=band.order_value_to,
                customer_tier=band.customer_tier,
                margin_rate_from=band.margin_rate_from,
                mode=band.mode,
                item_price_under=band.item_price_under,
                confidence_above=band.confidence_above,
            )
            for band in version.bands.all()
        ),
    )


def evaluate(
    *, rules: PolicyRules | None, facts: dict, fallback_approver: str = "cs_manager"
) -> Evaluation:
    """Judge one proposed action. `rules` is None when no policy covers the action.

    Verdict precedence: any block wins, then recommend-only, then any failed check (queued
    for review), and only a proposal that passes everything is applied.
    """
    reasons: list[dict] = []
    reasons.extend(_safety_rules(facts))

    if rules is None:
        reasons.append(
            _reason(
                "policy",
                FAIL,
                f"No policy covers {facts.get('action')} on channel {facts.get('channel')}; "
                "a person decides.",
            )
        )
        return _evaluation(reasons, mode=Mode.NEEDS_APPROVAL, approver=fallback_approver)

    band = _matching_band(rules.bands, facts, currency=rules.limits_currency)
    mode = (band.mode if band and band.mode else "") or rules.mode
    reasons.append(
        _reason(
            "policy",
            INFO,
            f"Judged by {rules.label or 'the policy'}.",
            {"version": rules.version_id},
        )
    )
    if band is not None:
        reasons.append(_reason("band", INFO, f"Value band {band.name!r} applies.", asdict(band)))
    reasons.append(_mode_reason(mode, rules.approver_group))

    if mode in (Mode.AUTONOMOUS, Mode.NEEDS_APPROVAL):
        reasons.extend(_autonomy_checks(rules, facts))
        reasons.extend(_limit_checks(rules, band, facts))

    return _evaluation(
        reasons,
        mode=mode,
        approver=rules.approver_group,
        band=band.name if band else None,
        sla=rules.review_sla_minutes,
    )


def _evaluation(
    reasons: list[dict], *, mode: str, approver: str | None, band: str | None = None, sla=None
) -> Evaluation:
    outcomes = {reason["outcome"] for reason in reasons}
    if BLOCK in outcomes or mode == Mode.HARD_BLOCK:
        verdict = Verdict.BLOCKED
    elif mode == Mode.RECOMMEND_ONLY:
        verdict = Verdict.RECOMMENDATION_ONLY
    elif FAIL in outcomes or mode == Mode.NEEDS_APPROVAL:
        verdict = Verdict.QUEUED_FOR_REVIEW
    else:
        verdict = Verdict.APPLIED
    return Evaluation(
        verdict=str(verdict),
        reasons=reasons,
        band=band,
        approver_group=approver,
        review_sla_minutes=sla,
    )


def _safety_rules(facts: dict) -> list[dict]:
    """Rules no policy can switch off: they come from the product's channel rules."""
    reasons = []
    order = facts.get("order") or {}
    if order.get("status") == "cancelled" and facts.get("action") != "cancel_order":
        reasons.append(_reason("order_cancelled", BLOCK, "The order is cancelled."))
    if "pickup_to_ship" in facts:
        if facts["pickup_to_ship"]:
            reasons.append(
                _reason(
                    "pickup_never_rerouted",
                    BLOCK,
                    "In-store pickup orders are never rerouted to shipping.",
                )
            )
        else:
            reasons.append(
                _reason("pickup_never_rerouted", PASS, "Not a pickup order rerouted to shipping.")
            )
    if "listing_forbids" in facts:
        if facts["listing_forbids"]:
            reasons.append(
                _reason(
                    "listing_constraint",
                    BLOCK,
                    "The channel's listing forbids this substitution.",
                )
            )
        else:
            reasons.append(_reason("listing_constraint", PASS, "No listing forbids it."))
    # Facts stored before this rule existed have no such key and are judged without it.
    if "channel_orders_held" in facts:
        reasons.append(_channel_hold_reason(facts))
    return reasons


def _channel_hold_reason(facts: dict) -> dict:
    """Fail, not block: a held channel sends every proposal to a person instead of applying it.

    A block still wins, and a recommend-only policy still only recommends.
    """
    channel = facts.get("channel")
    if facts["channel_orders_held"]:
        held_reason = str(facts.get("channel_orders_held_reason") or "no reason given")
        return _reason(
            "channel_held",
            FAIL,
            f"Channel {channel}'s orders are held: {held_reason.rstrip('.')}. "
            "No automation applies changes to its orders until a person releases the channel.",
        )
    return _reason("channel_held", PASS, f"Channel {channel}'s orders are not held.")


def _mode_reason(mode: str, approver: str | None) -> dict:
    if mode == Mode.HARD_BLOCK:
        return _reason("mode", BLOCK, "The policy hard-blocks this action.")
    if mode == Mode.RECOMMEND_ONLY:
        return _reason("mode", INFO, "The policy allows this action as a recommendation only.")
    if mode == Mode.NEEDS_APPROVAL:
        who = approver or "a reviewer"
        return _reason("mode", FAIL, f"The policy needs approval by {who}.")
    return _reason("mode", PASS, "The policy allows this action autonomously within limits.")


def _autonomy_checks(rules: PolicyRules, facts: dict) -> list[dict]:
    reasons = []
    if not rules.has_applier:
        reasons.append(
            _reason("applier", FAIL, "OMS Guard cannot carry this action out; a person does.")
        )

    for breaker in facts.get("breakers") or []:
        scope = f"{breaker.get('scope')} {breaker.get('key')}"
        if breaker.get("state") == "half_open" and breaker.get("trial_allowed"):
            reasons.append(
                _reason("breaker", INFO, f"Breaker on {scope} is half-open; trial.", breaker)
            )
        else:
            reasons.append(
                _reason(
                    "breaker",
                    FAIL,
                    f"Breaker on {scope} is {breaker.get('state')} ({breaker.get('cause')}).",
                    breaker,
                )
            )

    autonomy = facts.get("autonomy") or {}
    if autonomy.get("suspended"):
        reasons.append(
            _reason(
                "autonomy_gate",
                FAIL,
                f"Error rate (labelled errors and failed applies) {autonomy.get('error_rate')} "
                f"over {autonomy.get('window_days')} days is at or over "
                f"{autonomy.get('max_error_rate')}; autonomy is suspended.",
                autonomy,
            )
        )
    elif autonomy:
        reasons.append(
            _reason(
                "autonomy_gate",
                PASS,
                f"Error rate (labelled errors and failed applies) {autonomy.get('error_rate')} "
                f"is under {autonomy.get('max_error_rate')}.",
                autonomy,
            )
        )
    return reasons


def _limit_checks(rules: PolicyRules, band: Band | None, facts: dict) -> list[dict]:
    reasons = []
    order = facts.get("order") or {}
    item_price_under = band.item_price_under if band and band.item_price_under else None
    confidence_above = band.confidence_above if band and band.confidence_above else None
    item_price_under = item_price_under or rules.item_price_under
    confidence_above = confidence_above or rules.confidence_above

    if rules.order_value_under is not None:
        reasons.append(
            _money_under(
                "order_value",
                "Order value",
                _order_value(order),
                order.get("currency"),
                rules.order_value_under,
                rules.limits_currency,
            )
        )
    if item_price_under is not None:
        reasons.append(
            _money_under(
                "item_price",
                "Item price",
                facts.get("item_price"),
                order.get("currency"),
                item_price_under,
                rules.limits_currency,
            )
        )
    if confidence_above is not None:
        confidence = _decimal(facts.get("confidence"))
        if confidence is not None and confidence > confidence_above:
            reasons.append(
                _reason("confidence", PASS, f"Confidence {confidence} is above {confidence_above}.")
            )
        else:
            reasons.append(
                _reason(
                    "confidence",
                    FAIL,
                    f"Confidence {facts.get('confidence')} is not above {confidence_above}.",
                )
            )
    if rules.require_fresh_stock:
        stock = facts.get("stock") or {}
        if stock.get("fresh"):
            reasons.append(_reason("stock_fresh", PASS, "The stock snapshot is within its TTL."))
        elif not stock.get("checked"):
            reasons.append(_reason("stock_fresh", FAIL, "No stock snapshot backs this action."))
        else:
            reasons.append(
                _reason(
                    "stock_fresh",
                    FAIL,
                    f"The stock snapshot from {stock.get('as_of')} is older than its TTL.",
                )
            )
    return reasons


def _money_under(
    rule: str,
    label: str,
    amount: Any,
    currency: str | None,
    limit: Decimal,
    limit_currency: str,
) -> dict:
    value = _decimal(amount)
    # The limit column stores three decimals; show it with the currency's minor digits.
    limit_text = money_format(limit, limit_currency)
    if value is None:
        return _reason(
            rule, FAIL, f"{label} is unknown; the limit is {limit_currency} {limit_text}."
        )
    if currency != limit_currency:
        return _reason(
            rule,
            FAIL,
            f"{label} is in {currency} and the limit in {limit_currency}; a person compares them.",
        )
    value_text = money_format(value, currency)
    if value < limit:
        return _reason(rule, PASS, f"{label} {currency} {value_text} is under {limit_text}.")
    return _reason(rule, FAIL, f"{label} {currency} {value_text} is not under {limit_text}.")


def _order_value(order: dict) -> object:
    """Return the order's value for limits and bands (facts.order_value).

    Facts stored before that value existed have only a total, which is used instead.
    """
    return order.get("value", order.get("total"))


def _matching_band(bands: tuple[Band, ...], facts: dict, *, currency: str) -> Band | None:
    order = facts.get("order") or {}
    # Value bands are in the policy's currency; an order in another currency matches none.
    value = _decimal(_order_value(order)) if order.get("currency") == currency else None
    margin = _decimal(order.get("margin_rate"))
    tier = order.get("customer_tier") or CustomerTier.STANDARD
    for band in bands:
        if band.customer_tier not in (CustomerTier.ANY, tier):
            continue
        if band.order_value_from is not None and (value is None or value < band.order_value_from):
            continue
        if band.order_value_to is not None and (value is None or value >= band.order_value_to):
            continue
        if band.margin_rate_from is not None and (margin is None or margin < band.margin_rate_from):
            continue
        return band
    return None


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def _reason(rule: str, outcome: str, message: str, data: dict | None = None) -> dict:
    reason = {"rule": rule, "outcome": outcome, "message": message}
    if data:
        reason["data"] = _jsonable(data)
    return reason


def _jsonable(data: dict) -> dict:
    return {key: str(value) if isinstance(value, Decimal) else value for key, value in data.items()}
