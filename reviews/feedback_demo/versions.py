"""Versions and canaries of the demo agent over the invented history."""

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Min
from django.template.defaultfilters import pluralize

from guardrails import rollouts
from guardrails.models import (
    Canary,
    CanaryAssignment,
    CanaryEvent,
    CanaryEventKind,
    Decision,
    Version,
    VersionKind,
)
from guardrails.recommenders.calibration import SUBSTITUTION_MODEL_NAME, SUBSTITUTION_MODEL_VERSION
from guardrails.recommenders.carrier import CARRIER_MODEL_NAME, CARRIER_MODEL_VERSION
from guardrails.rollout_selectors import HEALTHY
from monitoring.demo import HISTORY_MARK, HISTORY_MODEL_NAME, HistoryStaff
from orders.models import Order

from .labels import LabelGroup

logger = logging.getLogger(__name__)

CANARY_RUN_DAYS = 14
CANARY_SHARE = Decimal("0.05")
# An arm's sample counts only orders with a decision in the canary, about a fifth of the
# demo's orders, so ten days at 5 % give the candidate about ten. The minimum is set below
# that so the rollback rule judges; the product default of 1,000 would keep the demo
# inconclusive.
CANARY_MIN_ORDERS = 8
# Seeded salts tried for the running canary (see running_canary_load).
SALT_ATTEMPTS = 5
# Seeds the canaries' salts, so every demo splits its orders the same way.
SALT_SEED = "demo-history-canary"
PAST_CANARY_DAYS = 14

FIRST_CHANGELOG = (
    "First recorded version of the demo agent. It proposes carriers, substitutes for lines "
    "that are out of stock, and corrections of shipping addresses."
)
RETRAINED_CHANGELOG = (
    "Retrained on the review outcomes of the month before. It checks the postcode against "
    "the city before it proposes an address correction, and it proposes substitutes in the "
    "ordered colour first."
)
BUILT_IN_VERSIONS = [
    (
        SUBSTITUTION_MODEL_NAME,
        SUBSTITUTION_MODEL_VERSION,
        "substitute_sku",
        "Built-in substitution recommender: ranks substitutes by similarity and margin "
        "impact, with stock and the replenishment date.",
    ),
    (
        CARRIER_MODEL_NAME,
        CARRIER_MODEL_VERSION,
        "select_carrier",
        "Built-in carrier recommender: weighs carrier reliability, the service level and cost.",
    ),
]


@dataclass(frozen=True)
class _Release:
    """A model version the history's decisions carry, and when it first decided."""

    label: str
    first_decision_at: datetime


def _releases() -> list[_Release]:
    rows = (
        Decision.objects.filter(model_name=HISTORY_MODEL_NAME)
        .values("model_version")
        .annotate(first=Min("created_at"))
        .order_by("first")
    )
    return [_Release(label=row["model_version"], first_decision_at=row["first"]) for row in rows]


def versions_load(*, staff: HistoryStaff, history_start: datetime) -> None:
    """Record a version per release: activate the first, promote each later one by a canary.

    NOTE: in the 120-day history the second release starts 90 days before the end, on the
    edge of the weekly review's 90-day version comparison. This week's page shows its pick
    accuracy only on the day of seeding, until the time of day of its first decision. Last
    week's page and earlier ones always show it.
    """
    for index, release in enumerate(_releases()):
        version = rollouts.version_create(
            kind=VersionKind.MODEL,
            subject=HISTORY_MODEL_NAME,
            label=release.label,
            changelog=FIRST_CHANGELOG if index == 0 else RETRAINED_CHANGELOG,
            user=staff.ops,
        )
        if index == 0:
            rollouts.version_activate(
                version_id=version.pk, user=staff.ops, note="First version of the demo agent."
            )
            _version_dates(version, activated_at=release.first_decision_at)
        else:
            start = max(release.first_decision_at - timedelta(days=PAST_CANARY_DAYS), history_start)
            _past_canary_load(
                staff=staff, candidate=version, start=start, end=release.first_decision_at
            )


def _version_dates(version: Version, *, activated_at: datetime) -> None:
    Version.objects.filter(pk=version.pk).update(
        created_at=activated_at - timedelta(days=1), activated_at=activated_at
    )


def built_in_versions_load(*, staff: HistoryStaff, since: datetime) -> None:
    """Activate the built-in recommenders' versions, in use since the history began."""
    for subject, label, action, changelog in BUILT_IN_VERSIONS:
        version = rollouts.version_create(
            kind=VersionKind.RECOMMENDER,
            subject=subject,
            label=label,
            action=action,
            changelog=changelog,
            user=staff.ops,
        )
        rollouts.version_activate(
            version_id=version.pk, user=staff.ops, note="The built-in recommender as shipped."
        )
        # Before the history, so the weekly review's 90-day version comparison leaves them out.
        _version_dates(version, activated_at=since - timedelta(days=1))


def _past_canary_load(
    *, staff: HistoryStaff, candidate: Version, start: datetime, end: datetime
) -> Canary:
    """Run a canary of `candidate` from `start` to `end` over the history, then promote it.

    It keeps the product's minimum sample, so its figures stay inconclusive, and the
    promotion note states that.
    """
    canary = _canary_start_at(
        staff=staff,
        candidate=candidate,
        start=start,
        salt=_salt(candidate.label, 0),
        min_orders_per_arm=None,
    )
    orders = _history_orders(start, end)
    _canary_backfill(canary, orders, start=start, end=end)

    comparison = rollouts.canary_comparison(canary)
    control, arm = comparison["control"], comparison["candidate"]
    note = (
        f"Ran {(end - start).days} days beside the version in use: {arm['orders']:,} candidate "
        f"and {control['orders']:,} control orders, fewer than the {canary.min_orders_per_arm:,} "
        "the rollback rule needs, so its verdict stayed inconclusive. Promoted after reading "
        f"the review outcomes: {arm['disagreed']} of {arm['reviewed']} candidate decisions "
        f"and {control['disagreed']} of {control['reviewed']} control decisions were "
        "corrected by a person."
    )
    rollouts.canary_promote(canary_id=canary.pk, user=staff.ops, note=note)

    canary.refresh_from_db()
    result = {**canary.result, "computed_at": end.isoformat()}
    Canary.objects.filter(pk=canary.pk).update(ended_at=end, result=result)
    CanaryEvent.objects.filter(canary=canary, kind=CanaryEventKind.PROMOTED).update(created_at=end)
    Version.objects.filter(pk=candidate.pk).update(
        created_at=start - timedelta(days=1), activated_at=end
    )
    Version.objects.filter(pk=canary.control_id).update(retired_at=end)
    return canary


def candidate_create(*, staff: HistoryStaff, label: str, fixes: LabelGroup | None) -> Version:
    """Record the draft candidate; its changelog names the label group it fixes, if any."""
    changelog = (
        "Retrained with the labelled errors of the last weeks, and the substitution prompt "
        "now lists the replenishment date."
    )
    if fixes is not None:
        changelog += (
            f" Fixes the {len(fixes.plans)} error{pluralize(len(fixes.plans))} labelled "
            f"\u201c{fixes.cause.name}\u201d "
            f"on {fixes.subject} (see the fixes backlog)."
        )
    return rollouts.version_create(
        kind=VersionKind.MODEL,
        subject=HISTORY_MODEL_NAME,
        label=label,
        changelog=changelog,
        user=staff.ops,
    )


def running_canary_load(
    *,
    staff: HistoryStaff,
    candidate: Version,
    start: datetime,
    now: datetime,
) -> Canary:
    """Start the canary of `candidate` at `start` and give it the history's orders since.

    NOTE: this stages the demo. A real canary's salt is random, and with a dozen candidate
    orders one fulfilment exception in the candidate arm is enough to roll it back. The demo
    wants a running canary with a judged comparison, so it tries a few seeded salts. It keeps
    the first one the rollback rule judges healthy, and the figures are still the history's.
    When no salt is judged healthy, or the history is too small for a judged sample, the
    first salt is kept and the evaluation shows the outcome of its figures.
    """
    orders = _history_orders(start, now)
    decided = (
        Decision.objects.filter(model_name=HISTORY_MODEL_NAME, order__in=[o.pk for o in orders])
        .values("order_id")
        .distinct()
        .count()
    )
    # Too few decided orders for a judged sample whatever the salt: keep the first one.
    attempts = SALT_ATTEMPTS if decided * CANARY_SHARE >= CANARY_MIN_ORDERS else 0
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                canary = _running_canary_try(staff, candidate, start, now, orders, attempt)
                if rollouts.canary_comparison(canary)["outcome"] != HEALTHY:
                    raise _SaltRejected
                break
        except _SaltRejected:
            continue
    else:
        canary = _running_canary_try(staff, candidate, start, now, orders, 0)
    Version.objects.filter(pk=candidate.pk).update(created_at=start - timedelta(days=1))
    return canary


class _SaltRejected(Exception):
    """Undoes one try of the running canary's salt (see running_canary_load)."""


def _running_canary_try(
    staff: HistoryStaff,
    candidate: Version,
    start: datetime,
    now: datetime,
    orders: list[Order],
    attempt: int,
) -> Canary:
    canary = _canary_start_at(
        staff=staff,
        candidate=candidate,
        start=start,
        salt=_salt(candidate.label, attempt),
        min_orders_per_arm=CANARY_MIN_ORDERS,
    )
    _canary_backfill(canary, orders, start=start, end=now)
    return canary


def _canary_start_at(
    *,
    staff: HistoryStaff,
    candidate: Version,
    start: datetime,
    salt: str,
    min_orders_per_arm: int | None,
) -> Canary:
    """Start a canary through the service, then move its start to `start` and set its salt."""
    settings = {"min_orders_per_arm": min_orders_per_arm} if min_orders_per_arm else {}
    canary = rollouts.canary_start(
        candidate_id=candidate.pk,
        user=staff.ops,
        share=CANARY_SHARE,
        days=CANARY_RUN_DAYS if min_orders_per_arm else PAST_CANARY_DAYS,
        **settings,
    )
    Canary.objects.filter(pk=canary.pk).update(
        salt=salt,
        started_at=start,
        ends_at=start + timedelta(days=canary.days),
        created_at=start,
    )
    CanaryEvent.objects.filter(canary=canary).update(created_at=start)
    canary.refresh_from_db()
    return canary


def _history_orders(start: datetime, end: datetime) -> list[Order]:
    return list(
        Order.objects.filter(source_name=HISTORY_MARK, created_at__gte=start, created_at__lt=end)
        .select_related("channel")
        .order_by("created_at", "pk")
    )


def _canary_backfill(
    canary: Canary, orders: list[Order], *, start: datetime, end: datetime
) -> None:
    """Assign the orders to arms and tag their agent decisions with the canary and arm.

    The candidate arm's decisions get the candidate's label: a model canary lets only the
    candidate propose on those orders.
    """
    assignments = [rollouts.canary_assign(canary=canary, order=order) for order in orders]
    for assignment, order in zip(assignments, orders, strict=True):
        assignment.created_at = order.created_at
    CanaryAssignment.objects.bulk_update(assignments, ["created_at"], batch_size=500)

    arms = {assignment.order_id: assignment.arm for assignment in assignments}
    decisions = list(
        Decision.objects.filter(
            model_name=HISTORY_MODEL_NAME,
            order__source_name=HISTORY_MARK,
            order__created_at__gte=start,
            order__created_at__lt=end,
        )
    )
    for decision in decisions:
        decision.canary = canary
        decision.canary_arm = arms[decision.order_id]
        if decision.canary_arm == "candidate":
            decision.model_version = canary.candidate.label
            # The stored facts name the model that proposed, as decision_propose records it.
            if "model" in decision.facts:
                decision.facts["model"]["version"] = canary.candidate.label
    Decision.objects.bulk_update(
        decisions, ["canary", "canary_arm", "model_version", "facts"], batch_size=500
    )


def _salt(label: str, attempt: int) -> str:
    return hashlib.sha256(f"{SALT_SEED}:{label}:{attempt}".encode()).hexdigest()[:16]
