"""The steps of a canary rollback: the figures in words, the candidate's applied decisions back
to review, and the alert. `guardrails.rollouts.canary_rollback` runs them in one transaction.

Which decisions go back to review: the candidate arm's decisions of this canary that were
applied, not reverted, on orders that have no shipment and are not cancelled. Each gets a
review item of its action's kind, its order is put on hold, and a `decision.requeued` audit
entry records it. Accepting the item keeps the change, and rejecting it reverts the change
with the reviewer as the actor and labels the decision an error
(guardrails.services handles both for applied decisions). Decisions already linked to a
review item are left alone: an open audit sample is already in a queue, and a decided one
was already judged by a person. Decisions still queued for review stay where they are.
"""

import logging
from decimal import Decimal
from fractions import Fraction

from django.db.models import Exists, OuterRef

from orders.models import Order, OrderStatus, Shipment

from .models import Canary, CanaryArm, Decision
from .rollout_selectors import FULFILMENT_EXCEPTION_KINDS, exception_rates, fraction_decimal
from .services import ai_actor_label, audit_record

logger = logging.getLogger(__name__)

HOLD_CODE = "canary_rollback"
# The actor label of the canary monitor's audit entries, as in guardrails.rollouts.
SYSTEM_LABEL = "canary-monitor"


def rollback_figures(canary: Canary, evaluation: dict) -> dict:
    """Return the figures behind a rollback, with a one-sentence summary in words."""
    control, candidate = evaluation["control"], evaluation["candidate"]
    control_rate, candidate_rate = exception_rates(evaluation)
    limit = f"{Decimal(canary.max_exception_increase_pp).normalize():f}"
    summary = "Rolled back without comparable exception rates."
    if control_rate is not None and candidate_rate is not None:
        difference = candidate_rate - control_rate
        summary = (
            f"Candidate {_percent(candidate_rate)} % vs control {_percent(control_rate)} % "
            f"fulfilment exceptions: {_signed(difference)} pp, over the {limit} pp limit "
            f"({candidate['orders']:,} candidate and {control['orders']:,} control orders)."
        )
    return {
        "summary": summary,
        "control": _arm_figures(control),
        "candidate": _arm_figures(candidate),
        "difference_pp": evaluation.get("difference_pp"),
        "limit_pp": str(canary.max_exception_increase_pp),
        "min_orders_per_arm": canary.min_orders_per_arm,
        "p_value": evaluation.get("p_value"),
    }


def candidate_decisions_requeue(canary: Canary) -> dict:
    """Send the candidate arm's applied decisions on unshipped orders back to review.

    Call inside the rollback's transaction. Locks each order (in pk order) before its
    decision. Returns the counts: requeued, left_shipped, left_cancelled, left_reviewed
    (already linked to a review item) and still_queued.
    """
    from orders.services import order_lock
    from reviews.models import ReviewKind, ReviewStatus

    # NOTE: decision_propose reads the canary without locking it, so a candidate decision
    # committed while this runs (after the list below is read) is applied and not sent back.
    applied = Decision.objects.filter(
        canary=canary,
        canary_arm=CanaryArm.CANDIDATE,
        applied_at__isnull=False,
        reverted_at__isnull=True,
    )
    shipped = Exists(Shipment.objects.filter(order_id=OuterRef("order_id")))
    rows = list(
        applied.annotate(shipped=shipped)
        .order_by("order_id", "pk")
        .values_list("pk", "order_id", "shipped")
    )
    counts = {
        "requeued": 0,
        "left_shipped": 0,
        "left_cancelled": 0,
        "left_reviewed": 0,
        "still_queued": 0,
    }
    for decision_id, order_id, is_shipped in rows:
        if is_shipped:
            counts["left_shipped"] += 1
            continue
        order = order_lock(order_id=order_id)
        decision = (
            Decision.objects.select_for_update(of=("self",))
            .select_related("action", "policy_version")
            .get(pk=decision_id)
        )
        if order.status == OrderStatus.CANCELLED:
            counts["left_cancelled"] += 1
        elif decision.review_item_id is not None or decision.reverted_at is not None:
            counts["left_reviewed"] += 1
        else:
            _decision_requeue(decision, order, canary)
            counts["requeued"] += 1

    counts["still_queued"] = (
        Decision.objects.filter(
            canary=canary,
            canary_arm=CanaryArm.CANDIDATE,
            applied_at__isnull=True,
            review_item__status=ReviewStatus.OPEN,
        )
        .exclude(review_item__kind=ReviewKind.AUDIT_SAMPLE)
        .count()
    )
    return counts


def rollback_alert_raise(canary: Canary, figures: dict) -> None:
    """Open the critical alert of a rollback; a repeat updates the open one."""
    from monitoring.services import alert_raise

    requeued = figures["decisions"]["requeued"]
    alert_raise(
        severity="critical",
        source="canary",
        dedup_key=f"canary:{canary.pk}:rolled-back",
        title=f"Canary {canary.name} rolled back: fulfilment exceptions rose",
        detail=f"{figures['summary']} {requeued} applied decision(s) went back to review.",
        owner_group="ops_manager",
        runbook=(
            "1. Work through the review queue of the action: the candidate's applied "
            "decisions on unshipped orders wait there with the order held. Accept keeps a "
            "change, reject undoes it.\n"
            "2. Check that the agents propose with the active version again; the candidate's "
            "label is now rejected.\n"
            "3. Open the canary's comparison and check the figures behind the rollback.\n"
            "4. Label the failures the candidate caused, fix it, and start a new canary under "
            "a new label.\n"
            "5. Resolve this alert."
        ),
        data={"canary": canary.pk, **figures},
    )


def _decision_requeue(decision: Decision, order: Order, canary: Canary) -> None:
    """Open a review item for an applied decision and hold its order on it."""
    from orders.services import order_event_add, order_update_hold_reasons
    from reviews.models import ReviewItem
    from reviews.sla import review_item_routing_for_decision

    from .facts import order_facts

    label = ai_actor_label(decision.model_name, decision.model_version)
    line = None
    if decision.action.code == "substitute_sku":
        line = order.lines.filter(position=decision.after["line"]).first()
    held_before = _order_hold_state(order)
    item = ReviewItem.objects.create(
        kind=decision.action.review_kind,
        order=order,
        order_line=line,
        reason=(
            f"Canary {canary.name} rolled back: {decision.action.name} applied by {label} "
            "before the order shipped. Accept keeps the change; reject undoes it."
        ),
        source_data={"before": decision.before, "order": order_facts(order)},
        proposal={
            "decision": decision.pk,
            "action": decision.action.code,
            "before": decision.before,
            "after": decision.after,
            "confidence": str(decision.confidence),
            "model": {"name": decision.model_name, "version": decision.model_version},
            "rationale": decision.rationale,
            "reasons": decision.reasons,
            "applied_at": decision.applied_at.isoformat(),
            "canary": canary.pk,
        },
        **review_item_routing_for_decision(decision),
    )
    decision.review_item = item
    decision.save(update_fields=["review_item"])
    order_event_add(
        order=order,
        kind="review.opened",
        message=(
            f"Review item #{item.pk} opened: canary {canary.name} rolled back, so "
            f"{decision.action.name} by decision #{decision.pk} waits for a person."
        ),
        data={"review_item": item.pk, "decision": decision.pk, "canary": canary.pk},
    )
    reason = {
        "severity": "hold",
        "code": HOLD_CODE,
        "review_item": item.pk,
        "decision": decision.pk,
        "message": f"{decision.action.name} by a rolled-back canary candidate waits for review",
    }
    order = order_update_hold_reasons(order=order, reasons=[*order.hold_reasons, reason])
    audit_record(
        action="decision.requeued",
        target_type="decision",
        target_id=decision.pk,
        system_label=SYSTEM_LABEL,
        reason=(
            f"Canary {canary.name} (#{canary.pk}) rolled back; the applied change goes back "
            f"to review in item #{item.pk}."
        ),
        before={"review_item": None, "order": held_before},
        after={
            "review_item": item.pk,
            "order": _order_hold_state(order),
        },
    )
    logger.info(
        "canary decision requeued",
        extra={"canary": canary.pk, "decision": decision.pk, "review_item": item.pk},
    )


def _order_hold_state(order: Order) -> dict:
    return {
        "status": order.status,
        "hold_codes": [reason.get("code") for reason in order.hold_reasons],
    }


def _arm_figures(arm: dict) -> dict:
    figures = {
        "version": arm["version"],
        "orders": arm["orders"],
        "orders_with_fulfilment_exceptions": arm["orders_with_fulfilment_exceptions"],
        "fulfilment_exception_rate": arm["fulfilment_exception_rate"],
    }
    for kind in FULFILMENT_EXCEPTION_KINDS:
        figures[f"orders_with_{kind}"] = arm.get(f"orders_with_{kind}")
    return figures


def _percent(rate: Fraction) -> str:
    """Format a rate as a percentage with one or two decimals, e.g. 0.013 -> "1.3"."""
    text = f"{fraction_decimal(rate * 100, Decimal('0.01')):.2f}"
    return text[:-1] if text.endswith("0") else text


def _signed(difference: Fraction) -> str:
    sign = "+" if difference >= 0 else "-"
    return f"{sign}{_percent(abs(difference))}"
