"""Reads for canaries: the bucket an order hashes to, the canary that covers a decision, and
the comparison of the two arms with the rollback judgement.

Buckets. An order's key is "<channel code>:<channel order id>", which a redelivered webhook
never changes. `bucket_for` hashes it with the canary's random salt (SHA-256) into one of
10,000 buckets. The order joins the candidate arm when its bucket is below share x 10,000, so
a 5 % canary sends buckets 0 to 499 to the candidate. Each canary has its own salt, so the
orders of two canaries are split independently.

Comparison. `canary_comparison` counts, per arm, the orders assigned, the decisions made and
their verdicts, the reviewed and disagreed decisions, and the orders with at least one
fulfilment exception or return. Outcomes are counted by order, not by the time they were
reported, so a return or exception recorded days later counts at the next evaluation.

Judgement. `rollback_judgement` compares exactly, with fractions and never floats. It returns
"inconclusive" while either arm has fewer than `min_orders_per_arm` orders. It returns
"rollback" when the candidate's exception rate exceeds the control's by strictly more than
`max_exception_increase_pp` percentage points, and "healthy" otherwise. With the default
0.1 pp, 1.1 % against 1.0 % is healthy and 1.2 % rolls back. The significance indicator (a
two-proportion z-test) is shown beside the outcome but does not decide it, because the rule
is the product's fixed threshold.
"""

import hashlib
import math
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from catalog.models import Channel
from orders.models import FulfilmentException, Order, OrderReturn

from .models import (
    ActionType,
    Canary,
    CanaryArm,
    CanaryAssignment,
    CanaryStatus,
    Decision,
    Policy,
    ReviewOutcome,
    VersionKind,
)
from .selectors import policy_for

BUCKETS = 10_000
# Kinds whose versions decisions carry as model_name (subject) and model_version (label).
MODEL_KINDS = (VersionKind.MODEL, VersionKind.PROMPT, VersionKind.RECOMMENDER)
SIGNIFICANCE_LEVEL = Decimal("0.05")
RATE_PLACES = Decimal("0.000001")
PP_PLACES = Decimal("0.001")
P_VALUE_PLACES = Decimal("0.0001")

INCONCLUSIVE = "inconclusive"
HEALTHY = "healthy"
ROLLBACK = "rollback"

_POLICY_UNSET = object()


def order_key(order: Order) -> str:
    """Return the order's canary key, "<channel code>:<channel order id>"."""
    return f"{order.channel.code}:{order.channel_order_id}"


def bucket_for(key: str, salt: str) -> int:
    """Return the key's bucket, 0 to 9,999, from the SHA-256 of salt + ":" + key.

    The first 8 bytes of the digest are reduced modulo 10,000; the bias of that reduction
    is below 1e-15 per bucket.
    """
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def candidate_bucket_limit(share: Decimal) -> int:
    """Return the first bucket that stays on the control at this share (500 for 0.05)."""
    return int(Decimal(share) * BUCKETS)


def canary_for_decision(
    *,
    action: ActionType,
    channel: Channel | None,
    model_name: str,
    policy: Policy | None | object = _POLICY_UNSET,
) -> Canary | None:
    """Return the running canary that covers a decision on (action, channel) by `model_name`.

    A model, prompt or recommender canary covers decisions whose model name is its
    candidate's subject. A rule-set canary covers decisions judged by a policy of which its
    candidate contains a version. The judging policy is the channel's own, else the
    all-channels one. Pass `policy` when the caller already knows it (None: no policy
    judges). The canary's action (else its candidate's) and channel, when set, must match.
    Paused and ended canaries cover nothing.

    NOTE: when two running canaries cover the same decision, for example a model canary and a
    rule-set canary of the same action, the one started first routes it and the other never
    sees it, so the second canary's arms miss those decisions.
    """
    if policy is _POLICY_UNSET:
        policy = policy_for(action=action, channel=channel)

    covers = Q(candidate__kind__in=MODEL_KINDS, candidate__subject=model_name)
    if policy is not None:
        covers |= Q(candidate__kind=VersionKind.RULE_SET, candidate__policy_versions__policy=policy)
    in_action = (
        Q(action=action)
        | Q(action__isnull=True, candidate__action__isnull=True)
        | Q(action__isnull=True, candidate__action=action)
    )
    in_channel = Q(channel__isnull=True)
    if channel is not None:
        in_channel |= Q(channel=channel)

    canary_id = (
        Canary.objects.filter(covers, in_action, in_channel, status=CanaryStatus.RUNNING)
        .order_by("started_at", "id")
        .values_list("id", flat=True)
        .first()
    )
    if canary_id is None:
        return None
    return Canary.objects.select_related("candidate", "control").get(pk=canary_id)


def rollback_judgement(
    *,
    control_orders: int,
    control_exceptions: int,
    candidate_orders: int,
    candidate_exceptions: int,
    min_orders_per_arm: int,
    max_increase_pp: Decimal,
) -> str:
    """Judge the arms' fulfilment exception rates: "inconclusive", "rollback" or "healthy".

    Inconclusive while either arm has fewer orders than `min_orders_per_arm` (or none);
    rollback when candidate rate - control rate > max_increase_pp / 100, compared exactly.
    """
    if min(control_orders, candidate_orders) < max(min_orders_per_arm, 1):
        return INCONCLUSIVE
    increase = Fraction(candidate_exceptions, candidate_orders) - Fraction(
        control_exceptions, control_orders
    )
    limit = Fraction(Decimal(max_increase_pp)) / 100
    return ROLLBACK if increase > limit else HEALTHY


def canary_comparison(canary: Canary) -> dict:
    """Compare the two arms of a canary; return a JSON-ready dict.

    Shape (rates and differences are decimal strings, None when an arm has nothing to count):

        {"canary": 7, "status": "running", "shadow": False, "computed_at": "<ISO time>",
         "control": ARM, "candidate": ARM,
         "difference_pp": "0.300",   # candidate minus control exception rate, in pp
         "p_value": "0.0312",        # two-proportion z-test on the exception rates
         "significant": True,        # p < 0.05 and both arms at the minimum sample
         "outcome": "rollback",      # inconclusive | healthy | rollback
         "thresholds": {"min_orders_per_arm": 1000, "max_exception_increase_pp": "0.100",
                        "significance_level": "0.05"}}

    ARM is {"version": label or None, "orders", "decisions", "verdicts": {verdict: count},
    "reviewed", "disagreed", "disagreement_rate", "orders_with_fulfilment_exceptions",
    "fulfilment_exception_rate", "returns", "return_rate"}. "returns" counts orders with at
    least one return. In a shadow canary the candidate's verdicts are the ones it would have
    had (shadow_verdict). Runs two queries, however many orders the canary has.
    """
    arms = {arm: _empty_arm() for arm in CanaryArm.values}
    arms[CanaryArm.CONTROL]["version"] = canary.control.label if canary.control_id else None
    arms[CanaryArm.CANDIDATE]["version"] = canary.candidate.label
    _count_orders(canary, arms)
    _count_decisions(canary, arms)
    for figures in arms.values():
        _add_rates(figures)

    control, candidate = arms[CanaryArm.CONTROL], arms[CanaryArm.CANDIDATE]
    outcome = rollback_judgement(
        control_orders=control["orders"],
        control_exceptions=control["orders_with_fulfilment_exceptions"],
        candidate_orders=candidate["orders"],
        candidate_exceptions=candidate["orders_with_fulfilment_exceptions"],
        min_orders_per_arm=canary.min_orders_per_arm,
        max_increase_pp=canary.max_exception_increase_pp,
    )
    p_value = _two_proportion_p_value(
        control["orders_with_fulfilment_exceptions"],
        control["orders"],
        candidate["orders_with_fulfilment_exceptions"],
        candidate["orders"],
    )
    return {
        "canary": canary.pk,
        "status": canary.status,
        "shadow": canary.shadow,
        "computed_at": timezone.now().isoformat(),
        "control": control,
        "candidate": candidate,
        "difference_pp": _difference_pp(control, candidate),
        "p_value": _decimal_string(p_value, P_VALUE_PLACES),
        "significant": (
            p_value is not None and p_value < SIGNIFICANCE_LEVEL and outcome != INCONCLUSIVE
        ),
        "outcome": outcome,
        "thresholds": {
            "min_orders_per_arm": canary.min_orders_per_arm,
            "max_exception_increase_pp": str(canary.max_exception_increase_pp),
            "significance_level": str(SIGNIFICANCE_LEVEL),
        },
    }


def exception_rates(comparison: dict) -> tuple[Fraction | None, Fraction | None]:
    """Return the (control, candidate) exception rates of a comparison, exactly."""
    return tuple(
        Fraction(arm["orders_with_fulfilment_exceptions"], arm["orders"]) if arm["orders"] else None
        for arm in (comparison["control"], comparison["candidate"])
    )


# --- Steps of canary_comparison -------------------------------------------------------------------


def _empty_arm() -> dict:
    return {
        "version": None,
        "orders": 0,
        "decisions": 0,
        "verdicts": {},
        "reviewed": 0,
        "disagreed": 0,
        "disagreement_rate": None,
        "orders_with_fulfilment_exceptions": 0,
        "fulfilment_exception_rate": None,
        "returns": 0,
        "return_rate": None,
    }


def _count_orders(canary: Canary, arms: dict) -> None:
    has_exception = Exists(FulfilmentException.objects.filter(order_id=OuterRef("order_id")))
    has_return = Exists(OrderReturn.objects.filter(order_id=OuterRef("order_id")))
    rows = (
        CanaryAssignment.objects.filter(canary=canary)
        .order_by()
        .values("arm")
        .annotate(
            orders=Count("id"),
            exceptions=Count("id", filter=Q(has_exception)),
            returns=Count("id", filter=Q(has_return)),
        )
    )
    for row in rows:
        figures = arms[row["arm"]]
        figures["orders"] = row["orders"]
        figures["orders_with_fulfilment_exceptions"] = row["exceptions"]
        figures["returns"] = row["returns"]


def _count_decisions(canary: Canary, arms: dict) -> None:
    rows = (
        Decision.objects.filter(canary=canary)
        .order_by()
        .values("canary_arm", "verdict", "shadow_verdict")
        .annotate(
            decisions=Count("id"),
            reviewed=Count("id", filter=Q(review_outcome__in=ReviewOutcome.values)),
            disagreed=Count("id", filter=Q(review_outcome=ReviewOutcome.DISAGREED)),
        )
    )
    for row in rows:
        figures = arms.get(row["canary_arm"])
        if figures is None:
            continue
        # A shadow candidate changed nothing: its verdict mix is what it would have done.
        shadowed = canary.shadow and row["canary_arm"] == CanaryArm.CANDIDATE
        verdict = (row["shadow_verdict"] or row["verdict"]) if shadowed else row["verdict"]
        figures["verdicts"][verdict] = figures["verdicts"].get(verdict, 0) + row["decisions"]
        figures["decisions"] += row["decisions"]
        figures["reviewed"] += row["reviewed"]
        figures["disagreed"] += row["disagreed"]


def _add_rates(figures: dict) -> None:
    figures["disagreement_rate"] = _rate(figures["disagreed"], figures["reviewed"])
    figures["fulfilment_exception_rate"] = _rate(
        figures["orders_with_fulfilment_exceptions"], figures["orders"]
    )
    figures["return_rate"] = _rate(figures["returns"], figures["orders"])


def _rate(count: int, total: int) -> str | None:
    if not total:
        return None
    return str((Decimal(count) / Decimal(total)).quantize(RATE_PLACES, rounding=ROUND_HALF_UP))


def _difference_pp(control: dict, candidate: dict) -> str | None:
    if not control["orders"] or not candidate["orders"]:
        return None
    difference = Fraction(candidate["orders_with_fulfilment_exceptions"], candidate["orders"]) - (
        Fraction(control["orders_with_fulfilment_exceptions"], control["orders"])
    )
    return str(fraction_decimal(difference * 100, PP_PLACES))


def fraction_decimal(value: Fraction, places: Decimal) -> Decimal:
    """Round a fraction to a Decimal with the given places, half up."""
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(
        places, rounding=ROUND_HALF_UP
    )


def _two_proportion_p_value(
    control_hits: int, control_total: int, candidate_hits: int, candidate_total: int
) -> Decimal | None:
    """Return the two-sided p-value that the two rates differ, or None without data.

    A pooled two-proportion z-test with the normal approximation. With fewer than about 10
    exceptions per arm the approximation is rough, so the rollback rule does not use it.
    """
    if not control_total or not candidate_total:
        return None
    pooled = (control_hits + candidate_hits) / (control_total + candidate_total)
    variance = pooled * (1 - pooled) * (1 / control_total + 1 / candidate_total)
    if variance <= 0:
        # Both arms at 0 % (or both at 100 %): the rates are equal.
        return Decimal("1")
    z = (candidate_hits / candidate_total - control_hits / control_total) / math.sqrt(variance)
    return Decimal(str(math.erfc(abs(z) / math.sqrt(2))))


def _decimal_string(value: Decimal | None, places: Decimal) -> str | None:
    return None if value is None else str(value.quantize(places, rounding=ROUND_HALF_UP))
