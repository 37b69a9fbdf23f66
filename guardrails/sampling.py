"""Audit sampling: a share of autonomous decisions goes to the audit queue for a second look.

Each action type has a `SamplingState` whose `rate` is the probability that one of its
autonomously applied decisions opens an `audit_sample` review item. The rate starts at
`audit_sample_start_rate` (10 %) and adapts to the action's disagreement rate, the share of
its reviewed decisions where the reviewer did not agree with the AI (review_outcome
"disagreed"), counted over `disagreement_window_days` by review time:

    rate = max(floor, min(start, start * disagreement / target))

With fewer than `audit_sample_min_reviews` reviewed decisions in the window the start rate
applies. An audit sample puts no hold on the order: the decision stays applied whatever the
reviewer decides. Accepting the item records that the reviewer agrees, rejecting that they disagree.
"""

import logging
import random
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from .models import ActionType, Decision, ReviewOutcome, SamplingState, Verdict
from .selectors import guardrail_settings, shared_config_read
from .services import ai_actor_label, audit_record, decision_approver_groups

logger = logging.getLogger(__name__)

SYSTEM_LABEL = "audit sampling"
RATE_PLACES = Decimal("0.0001")


def audit_sample_maybe(decision: Decision, *, rng: random.Random | None = None):
    """Open an audit sample item for an autonomously applied decision, with the action's rate.

    Returns the new ReviewItem, or None when the draw skips the decision or the decision was
    not applied autonomously (not applied, or already linked to a review item). Call inside
    the decision's transaction with its order locked; the item holds nothing.

    The item is opened in a savepoint, so an error while opening it undoes only the item and
    the caller may keep the decision. Most draws open nothing, so the state is read and the
    draw made before the savepoint: a skipped decision sends no empty savepoint (2 statements).
    NOTE: a database error while reading the state (normally from the configuration cache)
    is outside that savepoint, so on PostgreSQL it also fails the decision's transaction.
    """
    if decision.verdict != Verdict.APPLIED or decision.applied_at is None:
        return None
    if decision.review_item_id is not None:
        return None

    state = sampling_state_for(action=decision.action)
    draw = (rng or random).random()
    if draw >= state.rate:
        return None
    with transaction.atomic():
        return _audit_sample_open(decision, rate=state.rate)


def sampling_state_for(*, action: ActionType) -> SamplingState:
    """Return the action's sampling state, created at the start rate the first time it is needed."""

    def read() -> SamplingState | None:
        return SamplingState.objects.filter(action=action).first()

    state = shared_config_read(("sampling_state", action.pk), read)
    if state is not None:
        return state
    state, _ = SamplingState.objects.get_or_create(
        action=action, defaults={"rate": guardrail_settings().audit_sample_start_rate}
    )
    return state


def sampling_rate_recompute(*, action_code: str) -> SamplingState:
    """Measure the action's disagreement rate over the window and store its sampling rate.

    A change of rate is audited with the figures. Raises ActionType.DoesNotExist for an
    unknown action code.
    """
    action = ActionType.objects.get(code=action_code)
    config = guardrail_settings()
    since = timezone.now() - timedelta(days=config.disagreement_window_days)
    counts = Decision.objects.filter(
        action=action, reviewed_at__gte=since, review_outcome__in=ReviewOutcome.values
    ).aggregate(
        reviewed=Count("id"),
        disagreed=Count("id", filter=Q(review_outcome=ReviewOutcome.DISAGREED)),
    )
    reviewed, disagreed = counts["reviewed"], counts["disagreed"]
    disagreement = _ratio(disagreed, reviewed)
    rate = sampling_rate_for(
        disagreement=disagreement,
        reviewed=reviewed,
        start=config.audit_sample_start_rate,
        floor=config.audit_sample_floor_rate,
        target=config.audit_sample_target_disagreement,
        min_reviews=config.audit_sample_min_reviews,
    )

    with transaction.atomic():
        # A missing state had the start rate, so the first computation is compared to it.
        SamplingState.objects.get_or_create(
            action=action, defaults={"rate": config.audit_sample_start_rate}
        )
        state = (
            SamplingState.objects.select_for_update().select_related("action").get(action=action)
        )
        previous = state.rate
        state.rate = rate
        state.disagreement_rate = disagreement
        state.reviewed = reviewed
        state.computed_at = timezone.now()
        state.save()
        if previous != rate:
            _audit_rate_change(state, previous=previous, disagreed=disagreed, config=config)
    return state


def sampling_rates_recompute() -> int:
    """Recompute the sampling rate of every active action type; return how many."""
    codes = list(ActionType.objects.filter(is_active=True).values_list("code", flat=True))
    for code in codes:
        sampling_rate_recompute(action_code=code)
    return len(codes)


def sampling_rate_for(
    *,
    disagreement: Decimal | None,
    reviewed: int,
    start: Decimal,
    floor: Decimal,
    target: Decimal,
    min_reviews: int,
) -> Decimal:
    """Compute the sampling rate: the start rate scaled by disagreement / target, within limits.

    Too few reviews, or a target of 0, keep the start rate. The floor wins over the start
    rate when an admin sets it higher.
    """
    if disagreement is None or reviewed < min_reviews or target <= 0:
        rate = start
    else:
        rate = min(start, start * disagreement / target)
    return max(floor, rate).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


# --- Deciding an audit sample ------------------------------------------------------------------


def audit_sample_accept(*, item, order, user: AbstractBaseUser) -> dict:
    """Accept handler for audit samples: the reviewer agrees with the applied decision.

    Nothing is applied. Runs inside the review's transaction with the item locked.
    """
    from orders.services import order_event_add

    decision = _decision_for_sample(item)
    _review_outcome_set(decision, ReviewOutcome.AGREED)
    audit_record(
        action="decision.audit_agreed",
        target_type="decision",
        target_id=decision.pk,
        actor=user,
        reason=f"Agreed in audit sample #{item.pk}",
        before=decision.before,
        after=decision.after,
    )
    order_event_add(
        order=order,
        kind="ai.audit_agreed",
        message=f"Audit of decision #{decision.pk} ({decision.action.name}): the reviewer agrees.",
        actor=user,
        data={"decision": decision.pk, "review_item": item.pk},
    )
    _recompute_on_commit(decision.action.code)
    return {"decision": decision.pk, "agreed": True}


def audit_sample_reject(*, item, order, user: AbstractBaseUser, note: str) -> Decision:
    """Record that the reviewer disagrees with an applied decision; the order is left as it is.

    The decision stays applied: undoing it is a separate revert, so a reviewer who
    disagrees can still choose to keep the change (for instance, when the order has shipped).
    """
    from orders.services import order_event_add

    decision = _decision_for_sample(item)
    _review_outcome_set(decision, ReviewOutcome.DISAGREED)
    audit_record(
        action="decision.audit_disagreed",
        target_type="decision",
        target_id=decision.pk,
        actor=user,
        reason=note or f"Disagreed in audit sample #{item.pk}",
        before=decision.before,
        after=decision.after,
    )
    order_event_add(
        order=order,
        kind="ai.audit_disagreed",
        message=(
            f"Audit of decision #{decision.pk} ({decision.action.name}): the reviewer "
            "disagrees; the change stays applied until someone reverts it."
        ),
        actor=user,
        data={"decision": decision.pk, "review_item": item.pk},
    )
    _recompute_on_commit(decision.action.code)
    return decision


# --- Helpers --------------------------------------------------------------------------------


def _audit_sample_open(decision: Decision, *, rate: Decimal):
    from orders.services import order_event_add
    from reviews.models import ReviewItem, ReviewKind

    from .models import SlaBreachAction

    percent = _percent(rate)
    order = decision.order
    item = ReviewItem.objects.create(
        kind=ReviewKind.AUDIT_SAMPLE,
        order=order,
        reason=(
            f"Sampled for audit at {percent} %: {decision.action.name} applied by "
            f"{ai_actor_label(decision.model_name, decision.model_version)}."
        ),
        source_data={"before": decision.before},
        proposal={
            "decision": decision.pk,
            "action": decision.action.code,
            "before": decision.before,
            "after": decision.after,
            "confidence": str(decision.confidence),
            "model": {"name": decision.model_name, "version": decision.model_version},
            "rationale": decision.rationale,
            "reasons": decision.reasons,
            "sampling_rate": str(rate),
            "applied_at": decision.applied_at.isoformat(),
        },
        action_code=decision.action.code,
        confidence=decision.confidence,
        # The approver of the version that judged the decision audits it.
        approver_group=decision_approver_groups(decision)[0],
        # Nothing waits on an audit: the default deadline, and a passed one may only escalate,
        # because the order is already changed and must not be held for it. The review
        # signal fills in due_at from these.
        sla_minutes=guardrail_settings().review_default_sla_minutes,
        on_sla_breach=SlaBreachAction.ESCALATE,
    )
    decision.review_item = item
    decision.save(update_fields=["review_item"])
    order_event_add(
        order=order,
        kind="review.opened",
        message=f"Review item #{item.pk} opened: decision #{decision.pk} sampled for audit.",
        data={"review_item": item.pk, "decision": decision.pk},
    )
    logger.info(
        "decision sampled for audit",
        extra={"decision": decision.pk, "review_item": item.pk, "rate": str(rate)},
    )
    return item


def _decision_for_sample(item) -> Decision:
    """Lock and return the sampled decision; the review service checked who may decide it."""
    from reviews.services import ReviewError

    decision = (
        Decision.objects.select_for_update(of=("self",))
        .select_related("action")
        .filter(review_item_id=item.pk)
        .first()
    )
    if decision is None:
        raise ReviewError("no_decision", f"Audit sample #{item.pk} has no decision.")
    return decision


def _review_outcome_set(decision: Decision, outcome: str) -> None:
    decision.review_outcome = outcome
    decision.reviewed_at = timezone.now()
    decision.save(update_fields=["review_outcome", "reviewed_at"])


def _recompute_on_commit(action_code: str) -> None:
    def enqueue() -> None:
        from .tasks import sampling_rate_recompute_for_action

        try:
            sampling_rate_recompute_for_action.delay(action_code)
        except Exception:
            # The periodic recompute catches up within its interval.
            logger.exception(
                "could not queue the sampling recompute", extra={"action": action_code}
            )

    transaction.on_commit(enqueue)


def _audit_rate_change(state: SamplingState, *, previous: Decimal, disagreed: int, config) -> None:
    figures = {
        "rate": str(state.rate),
        "reviewed": state.reviewed,
        "disagreed": disagreed,
        "disagreement_rate": _text(state.disagreement_rate),
        "start_rate": str(config.audit_sample_start_rate),
        "floor_rate": str(config.audit_sample_floor_rate),
        "target_disagreement": str(config.audit_sample_target_disagreement),
        "min_reviews": config.audit_sample_min_reviews,
        "window_days": config.disagreement_window_days,
    }
    if state.reviewed < config.audit_sample_min_reviews:
        reason = (
            f"{state.reviewed} reviewed decisions in {config.disagreement_window_days} days, "
            f"fewer than {config.audit_sample_min_reviews}: the start rate applies."
        )
    else:
        reason = (
            f"Disagreement {state.disagreement_rate} over {state.reviewed} reviewed decisions "
            f"against a target of {config.audit_sample_target_disagreement}."
        )
    audit_record(
        action="sampling.rate_changed",
        target_type="guardrails.actiontype",
        target_id=state.action.code,
        system_label=SYSTEM_LABEL,
        reason=f"Audit sampling {_percent(previous)} % -> {_percent(state.rate)} %. {reason}",
        before={"rate": str(previous)},
        after=figures,
    )
    logger.info(
        "audit sampling rate changed",
        extra={"action": state.action.code, "previous": str(previous), **figures},
    )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _ratio(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part) / whole).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def _percent(rate: Decimal) -> str:
    """Format a rate as a percentage without trailing zeros: 0.1000 -> "10", 0.0125 -> "1.25"."""
    value = (rate * 100).quantize(Decimal("0.01")).normalize()
    return f"{value:f}"
