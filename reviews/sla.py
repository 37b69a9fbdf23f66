"""Service levels of review items: the deadline each item gets and what happens when it passes.

An AI proposal's item takes the SLA of the live policy version of its action. An address item
takes the policy of `correct_shipping_address` and an out-of-stock item that of
`substitute_sku`, the actions that would fix them. Every other item gets the default deadline
from the guardrail settings and keeps its order on hold.

Deadlines are instants in UTC: `due_at` is the opening time plus the SLA in real minutes, so a
daylight-saving change in the display time zone never moves it.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from guardrails.models import SlaBreachAction

from .display import role_label
from .models import ReviewItem, ReviewKind, ReviewStatus

logger = logging.getLogger(__name__)

# The action whose policy sets the SLA and the approver of a hygiene item without an action.
HYGIENE_POLICY_ACTIONS = {
    ReviewKind.ADDRESS: "correct_shipping_address",
    ReviewKind.OUT_OF_STOCK: "substitute_sku",
}
# Hygiene kinds whose approver role comes from that policy. Anyone may decide the others.
HYGIENE_KINDS_WITH_APPROVER = {ReviewKind.ADDRESS}
SLA_HOLD_CODE = "review_sla_passed"
SWEEP_LABEL = "review SLA sweep"


@dataclass(frozen=True)
class Sla:
    """How long an item may wait, what happens then, and who decides it.

    `escalation_group` is the role an `escalate` breach hands the item to ("" for none);
    `approver_group` is the policy's approver role ("" when no policy applies); `policy` is a
    label of the policy version, e.g. "correct_shipping_address (all channels) v1".
    """

    minutes: int
    on_breach: str
    escalation_group: str = ""
    approver_group: str = ""
    policy: str = ""

    def due_at(self, opened_at: datetime) -> datetime:
        """Return the deadline: `minutes` real minutes after `opened_at`, in UTC."""
        return opened_at.astimezone(UTC) + timedelta(minutes=self.minutes)


def review_sla_for(*, kind: str, action_code: str = "", channel=None) -> Sla:
    """Return the SLA of an item of `kind` (and `action_code` for AI proposals) on `channel`."""
    code = action_code or HYGIENE_POLICY_ACTIONS.get(kind, "")
    version = _live_version(code, channel) if code else None
    if version is None:
        return default_sla()
    return sla_from_version(version)


def sla_from_version(version) -> Sla:
    """The SLA a policy version sets; its approver is the engine's fallback when it has none."""
    from guardrails.services import FALLBACK_APPROVER

    return Sla(
        minutes=version.review_sla_minutes,
        on_breach=version.on_sla_breach,
        escalation_group=version.escalation_group.name if version.escalation_group_id else "",
        approver_group=(
            version.approver_group.name if version.approver_group_id else FALLBACK_APPROVER
        ),
        policy=str(version),
    )


def default_sla() -> Sla:
    """Return the SLA of items no policy covers: the settings' default, then the order is held."""
    from guardrails.selectors import guardrail_settings

    return Sla(
        minutes=guardrail_settings().review_default_sla_minutes,
        on_breach=SlaBreachAction.HOLD_ORDER,
    )


def review_item_routing_for_decision(decision) -> dict:
    """The routing fields of the item a queued decision opens, from the version that judged it.

    A decision without a policy goes to the engine's fallback approver with the default SLA.
    """
    from guardrails.services import decision_approver_groups

    sla = sla_from_version(decision.policy_version) if decision.policy_version_id else None
    sla = sla or default_sla()
    return {
        "action_code": decision.action.code,
        "confidence": decision.confidence,
        "approver_group": decision_approver_groups(decision)[0],
        "sla_minutes": sla.minutes,
        "on_sla_breach": sla.on_breach,
        "due_at": sla.due_at(timezone.now()),
    }


def review_items_sla_sweep(*, now: datetime | None = None) -> list[int]:
    """Act on open items whose deadline passed; return their ids.

    `hold_order` makes sure the order is held on the item; `escalate` hands the item to the
    escalation role. Each item is handled once: `sla_breached_at` marks it done. Known-answer
    items are skipped: they hold no order, and escalating one would show it is a test.
    """
    now = now or timezone.now()
    due = list(
        ReviewItem.objects.filter(
            status=ReviewStatus.OPEN,
            due_at__lte=now,
            sla_breached_at__isnull=True,
            known_answer__isnull=True,
        )
        .order_by("due_at", "pk")
        .values_list("pk", flat=True)
    )
    breached = []
    for item_id in due:
        # One transaction per item, so one failing order does not stop the others.
        if _item_breach(item_id=item_id, now=now):
            breached.append(item_id)
    if breached:
        logger.info("review SLAs passed", extra={"review_items": breached, "count": len(breached)})
    return breached


def _item_breach(*, item_id: int, now: datetime) -> bool:
    from orders.services import order_lock

    with transaction.atomic():
        # Lock in the order every review decision uses: the item, then its order.
        item = (
            ReviewItem.objects.select_for_update(of=("self",))
            .filter(pk=item_id, status=ReviewStatus.OPEN, sla_breached_at__isnull=True)
            .first()
        )
        if item is None:
            return False
        order = order_lock(order_id=item.order_id) if item.order_id else None
        item.order = order

        if item.on_sla_breach == SlaBreachAction.ESCALATE:
            result = _item_escalate(item, now)
        else:
            result = _order_keep_held(item, order)
        item.sla_breached_at = now
        item.save(update_fields=["sla_breached_at", "escalated_to", "escalated_at"])
        _breach_record(item, order, result)
    return True


def _item_escalate(item: ReviewItem, now: datetime) -> dict:
    item.escalated_to = _escalation_group(item)
    item.escalated_at = now
    return {"escalated_to": item.escalated_to}


def _escalation_group(item: ReviewItem) -> str:
    sla = review_sla_for(
        kind=item.kind,
        action_code=item.action_code,
        channel=item.order.channel if item.order is not None else None,
    )
    # Without an escalation role there is nobody to hand it to, so the approver keeps it.
    return sla.escalation_group or item.approver_group


def review_items_escalate_overdue(
    *, kind: str, older_than: timedelta, user: AbstractBaseUser, reason: str = ""
) -> int:
    """Escalate every open item of `kind` older than `older_than` that is not escalated yet.

    Each item goes to its SLA's escalation role, or else its approver role, as the SLA sweep
    would do. An item with neither is left as it is. Every escalation writes an audit entry
    (with `reason`, e.g. the alert that requested it) and an order event. Known-answer items
    are never escalated. Returns the number of items escalated.
    """
    if kind not in ReviewKind.values:
        raise ValueError(f"Unknown review queue {kind!r}; use one of {ReviewKind.values}.")
    now = timezone.now()
    due = list(
        ReviewItem.objects.filter(
            kind=kind,
            status=ReviewStatus.OPEN,
            created_at__lte=now - older_than,
            escalated_at__isnull=True,
            known_answer__isnull=True,
        )
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )
    escalated = [
        item_id
        for item_id in due
        if _item_escalate_now(item_id, now=now, user=user, older_than=older_than, reason=reason)
    ]
    logger.info(
        "overdue review items escalated",
        extra={"kind": kind, "review_items": escalated, "count": len(escalated), "user": user.pk},
    )
    return len(escalated)


def _item_escalate_now(
    item_id: int, *, now: datetime, user: AbstractBaseUser, older_than: timedelta, reason: str
) -> bool:
    from guardrails.services import audit_record
    from orders.services import order_event_add, order_lock

    # One transaction per item, locked in the order the sweep uses: the item, then its order.
    with transaction.atomic():
        item = (
            ReviewItem.objects.select_for_update(of=("self",))
            .filter(pk=item_id, status=ReviewStatus.OPEN, escalated_at__isnull=True)
            .first()
        )
        if item is None:
            return False
        item.order = order_lock(order_id=item.order_id) if item.order_id else None
        group = _escalation_group(item)
        if not group:
            return False

        before = {"escalated_to": item.escalated_to, "escalated_at": None}
        item.escalated_to = group
        item.escalated_at = now
        item.save(update_fields=["escalated_to", "escalated_at"])
        minutes = int(older_than.total_seconds() // 60)
        message = (
            f"Review item #{item.pk} escalated to {role_label(group)}: "
            f"open longer than {minutes} min."
        )
        if item.order is not None:
            order_event_add(
                order=item.order,
                kind="review.escalated",
                message=message,
                actor=user,
                data={"review_item": item.pk, "escalated_to": group},
            )
        audit_record(
            action="review_item.escalated",
            target_type="review_item",
            target_id=item.pk,
            actor=user,
            reason=f"{reason} {message}".strip(),
            before=before,
            after={"escalated_to": group, "escalated_at": now.isoformat()},
        )
    return True


def _order_keep_held(item: ReviewItem, order) -> dict:
    """Hold the order on the item unless one of its hold reasons already names the item."""
    from orders.models import OrderStatus
    from orders.services import order_hold

    if order is None or order.status == OrderStatus.CANCELLED:
        return {"held": False}
    if order.status == OrderStatus.ON_HOLD and any(
        reason.get("review_item") == item.pk for reason in order.hold_reasons
    ):
        return {"held": True, "already_held": True}

    reason = {
        "severity": "hold",
        "code": SLA_HOLD_CODE,
        "review_item": item.pk,
        "message": f"Review item #{item.pk} passed its deadline without a decision",
    }
    order_hold(order=order, reasons=[*order.hold_reasons, reason])
    return {"held": True, "already_held": False}


def _breach_record(item: ReviewItem, order, result: dict) -> None:
    from guardrails.services import audit_record
    from orders.services import order_event_add

    due = item.due_at.isoformat() if item.due_at else None
    if item.escalated_to:
        message = (
            f"Review item #{item.pk} passed its deadline; "
            f"escalated to {role_label(item.escalated_to)}."
        )
    else:
        message = f"Review item #{item.pk} passed its deadline; the order stays on hold."
    if order is not None:
        order_event_add(
            order=order,
            kind="review.sla_passed",
            message=message,
            data={"review_item": item.pk, "due_at": due, **result},
        )
    audit_record(
        action="review_item.sla_passed",
        target_type="review_item",
        target_id=item.pk,
        system_label=SWEEP_LABEL,
        reason=message,
        before={"due_at": due, "on_sla_breach": item.on_sla_breach},
        after={"sla_breached_at": item.sla_breached_at.isoformat(), **result},
    )


def _live_version(action_code: str, channel):
    from guardrails.selectors import action_get, policy_version_live_for

    action = action_get(code=action_code)
    if action is None:
        return None
    return policy_version_live_for(action=action, channel=channel)
