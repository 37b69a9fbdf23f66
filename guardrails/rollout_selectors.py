"""Reads for canaries: the bucket an order hashes to, the canary that covers a decision, and
the comparison of the two arms with the rollback judgement.

Buckets. An order's key is "<channel code>:<channel order id>", which a redelivered webhook
never changes. `bucket_for` hashes it with the canary's random salt (SHA-256) into one of
10,000 buckets. The order joins the candidate arm when its bucket is below share x 10,000, so
a 5 % canary sends buckets 0 to 499 to the candidate. Each canary has its own salt, so the
orders of two canaries are split independently.

Comparison. `canary_comparison` counts, per arm, the orders that got at least one decision in
the canary, the arm's decisions and their verdicts, the reviewed and disagreed decisions, and
the orders with at least one fulfilment exception or return. An order's fulfilment
exceptions are the outcomes `order_fulfilment_outcomes` defines: a pick, pack or ship
mistake the warehouse reported, a parcel the carrier failed to deliver or returned to sender,
or a return whose reason blames the warehouse or carrier. Only outcomes at or after the time
the order entered the canary count, and they count when they arrive: a return recorded a week
later changes the next evaluation.

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

from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.expressions import Combinable
from django.db.models.functions import Coalesce
from django.utils import timezone

from catalog.models import Channel
from orders.models import (
    SHIPPING_ERROR_STATUSES,
    FulfilmentException,
    Order,
    OrderReturn,
    ReturnAttribution,
    Shipment,
)

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
from .selectors import policy_for, shared_config_read

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

# The kinds of outcome that make an order count as having a fulfilment exception in a canary;
# `order_fulfilment_outcomes` defines each. The comparison reports each kind per arm too.
FULFILMENT_EXCEPTION_KINDS = ("reported_exceptions", "failed_deliveries", "fulfilment_returns")

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

    key = (
        "canary",
        action.pk,
        channel.pk if channel is not None else None,
        model_name,
        policy.pk if policy is not None else None,
    )
    return shared_config_read(
        key,
        lambda: _canary_for_decision_read(
            action=action, channel=channel, model_name=model_name, policy=policy
        ),
    )


def _canary_for_decision_read(
    *, action: ActionType, channel: Channel | None, model_name: str, policy: Policy | None
) -> Canary | None:
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


def order_fulfilment_outcomes(*, order: Combinable, since: Combinable) -> dict[str, Exists]:
    """Build one EXISTS test per kind of fulfilment exception an order can have since a time.

    `order` and `since` are expressions of the outer query, e.g. OuterRef("order_id") and
    OuterRef("created_at"). The kinds (FULFILMENT_EXCEPTION_KINDS) are:

    - reported_exceptions: a FulfilmentException (pick, pack or ship mistake) at occurred_at;
    - failed_deliveries: a shipment whose carrier failed to deliver it or returned it to the
      sender, at status_changed_at (created_at when a sender never gave the time);
    - fulfilment_returns: a return attributed to fulfilment, at received_at. Its reason is
      wrong item, wrong quantity, damaged in transit or late delivery (FULFILMENT_RETURN_REASONS).

    "all_returns" (any return at received_at) is added for the return rate; it is not a
    fulfilment exception.
    """
    failed_at = Coalesce(F("status_changed_at"), F("created_at"))
    return {
        "reported_exceptions": Exists(
            FulfilmentException.objects.filter(order_id=order, occurred_at__gte=since)
        ),
        "failed_deliveries": Exists(
            Shipment.objects.filter(order_id=order, status__in=SHIPPING_ERROR_STATUSES)
            .alias(failed_at=failed_at)
            .filter(failed_at__gte=since)
        ),
        "fulfilment_returns": Exists(
            OrderReturn.objects.filter(
                order_id=order,
                attributed_to=ReturnAttribution.FULFILMENT,
                received_at__gte=since,
            )
        ),
        "all_returns": Exists(OrderReturn.objects.filter(order_id=order, received_at__gte=since)),
    }


def shadow_record_q() -> Q:
    """Match the decisions a shadow canary recorded for its model-like candidate, never applied.

    Such a decision carries the live model's name, so breakers, backtests, the autonomy gate
    and KPI rollups leave it out: it decided nothing. A rule-set shadow canary stores its
    would-be verdict (shadow_verdict) on live decisions instead, and those stay in.
    """
    model_canaries = Canary.objects.filter(candidate__kind__in=MODEL_KINDS).values("pk")
    return ~Q(shadow_verdict="") & Q(canary_id__in=model_canaries)


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
    "fulfilment_exception_rate", "orders_with_reported_exceptions",
    "orders_with_failed_deliveries", "orders_with_fulfilment_returns", "returns",
    "return_rate"}.

    "orders" counts the arm's orders with at least one decision in the canary; an order an
    agent only asked about is assigned but not counted. The outcome counts are orders with at
    least one outcome of the kind at or after the order entered the canary, and
    "orders_with_fulfilment_exceptions" those with any kind (see order_fulfilment_outcomes).
    "returns" counts orders with any return. The arm's decisions are those on its orders. In a
    shadow canary the candidate's are only its shadow records, with the verdicts they would
    have had (shadow_verdict). The control's never include a shadow record. Runs two queries,
    however many orders the canary has.
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
        "orders_with_reported_exceptions": 0,
        "orders_with_failed_deliveries": 0,
        "orders_with_fulfilment_returns": 0,
        "returns": 0,
        "return_rate": None,
    }


def _count_orders(canary: Canary, arms: dict) -> None:
    outcomes = order_fulfilment_outcomes(order=OuterRef("order_id"), since=OuterRef("created_at"))
    any_exception = Q()
    for kind in FULFILMENT_EXCEPTION_KINDS:
        any_exception |= Q(outcomes[kind])
    decided = Exists(Decision.objects.filter(canary=canary, order_id=OuterRef("order_id")))
    rows = (
        CanaryAssignment.objects.filter(decided, canary=canary)
        .order_by()
        .values("arm")
        .annotate(
            orders=Count("id"),
            exceptions=Count("id", filter=any_exception),
            returns=Count("id", filter=Q(outcomes["all_returns"])),
            **{kind: Count("id", filter=Q(outcomes[kind])) for kind in FULFILMENT_EXCEPTION_KINDS},
        )
    )
    for row in rows:
        figures = arms[row["arm"]]
        figures["orders"] = row["orders"]
        figures["orders_with_fulfilment_exceptions"] = row["exceptions"]
        for kind in FULFILMENT_EXCEPTION_KINDS:
            figures[f"orders_with_{kind}"] = row[kind]
        figures["returns"] = row["returns"]


def _count_decisions(canary: Canary, arms: dict) -> None:
    # Grouped by the order's stored arm, which never changes, rather than by the arm a
    # decision was tagged with.
    arm = "order__canary_assignments__arm"
    rows = (
        Decision.objects.filter(canary=canary, order__canary_assignments__canary=canary)
        .order_by()
        .values(arm, "verdict", "shadow_verdict")
        .annotate(
            decisions=Count("id"),
            reviewed=Count("id", filter=Q(review_outcome__in=ReviewOutcome.values)),
            disagreed=Count("id", filter=Q(review_outcome=ReviewOutcome.DISAGREED)),
        )
    )
    for row in rows:
        figures = arms.get(row[arm])
        # A shadow candidate changed nothing, so its arm shows what it would have done: its
        # shadow records only. The active version's decisions on those orders belong to
        # neither arm's figures.
        shadow_arm = canary.shadow and row[arm] == CanaryArm.CANDIDATE
        if figures is None or bool(row["shadow_verdict"]) != shadow_arm:
            continue
        verdict = row["shadow_verdict"] if shadow_arm else row["verdict"]
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
