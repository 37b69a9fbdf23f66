"""Fill a new review item's routing fields when its creator left them empty.

Many places open review items: hygiene checks, the decisions service, sampling and escalation
rules. This receiver gives each one the order version it was opened for, its deadline and
breach rule from the SLA, and its approver role, so no creator can forget them.
"""

import logging
from datetime import timedelta

from django.db.models.signals import pre_save
from django.dispatch import receiver
from django.utils import timezone

from .models import ReviewItem
from .sla import HYGIENE_KINDS_WITH_APPROVER, review_sla_for

logger = logging.getLogger(__name__)


@receiver(pre_save, sender=ReviewItem, dispatch_uid="reviews.review_item_routing_fill")
def review_item_routing_fill(sender, instance: ReviewItem, raw: bool = False, **kwargs) -> None:
    # Fixtures load rows as they are, so only new items get routing.
    if raw or not instance._state.adding:
        return

    order = instance.order if instance.order_id else None
    if order is not None and instance.order_version is None:
        instance.order_version = _order_version(order)

    if not _needs_sla(instance):
        return
    sla = review_sla_for(
        kind=instance.kind,
        action_code=instance.action_code,
        channel=order.channel if order is not None else None,
    )
    if instance.sla_minutes is None:
        instance.sla_minutes = sla.minutes
    if not instance.on_sla_breach:
        instance.on_sla_breach = sla.on_breach
    if instance.due_at is None:
        # auto_now_add sets created_at later in this save, to practically the same instant.
        instance.due_at = timezone.now() + timedelta(minutes=instance.sla_minutes)
    if not instance.approver_group and _takes_policy_approver(instance):
        instance.approver_group = sla.approver_group or _fallback_approver(instance)


def _order_version(order) -> int:
    """The order's stored version: an in-memory order may predate a bump in the database."""
    from orders.models import Order

    version = Order.objects.filter(pk=order.pk).values_list("version", flat=True).first()
    return version if version is not None else order.version


def _fallback_approver(item: ReviewItem) -> str:
    """An AI action no policy covers goes to the engine's fallback approver."""
    from guardrails.services import FALLBACK_APPROVER

    return FALLBACK_APPROVER if item.action_code else ""


def _needs_sla(item: ReviewItem) -> bool:
    return (
        item.due_at is None
        or item.sla_minutes is None
        or not item.on_sla_breach
        or (not item.approver_group and _takes_policy_approver(item))
    )


def _takes_policy_approver(item: ReviewItem) -> bool:
    """AI proposals and address items are decided by their policy's approver role."""
    return bool(item.action_code) or item.kind in HYGIENE_KINDS_WITH_APPROVER
