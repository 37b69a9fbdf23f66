"""Settling out-of-stock holds: the review accept handler and the retry after a restock.

Both retry the line's reservation. Both lock the review item, then its order, then the stock
levels. Every review decision locks in that order, so these two cannot deadlock each other.
"""

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from guardrails.services import audit_record
from orders.models import Order, OrderStatus
from orders.services import order_event_add, order_flag, order_lock, order_update_hold_reasons
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from reviews.services import ReviewConflict, ReviewError

from .hygiene import stale_stock_flag
from .reservations import ReservationResult, order_line_reserve_stock

logger = logging.getLogger(__name__)

RESTOCK_LABEL = "stock replenishment"


def accept_out_of_stock(
    *, item: ReviewItem, order: Order, user: AbstractBaseUser, **choice: object
) -> dict:
    """Retry the line's reservation, raising ReviewConflict while the line is still short.

    The review decision runs this with the item and its order locked.
    """
    if choice:
        names = ", ".join(sorted(choice))
        raise ReviewError(
            "invalid_choice",
            f"Out-of-stock items take no options, but got: {names}. Accepting retries the "
            "reservation.",
        )

    result = order_line_reserve_stock(line=item.order_line, actor=user)
    if result.short:
        shortage = result.short[0]
        raise ReviewConflict(
            "still_out_of_stock",
            f"Still out of stock. {shortage.describe()}. Restock it, or reject the item.",
        )
    decision = _decision(item=item, order=order, result=result)
    _substitutions_resolve(item=item, order=order)
    return decision


def out_of_stock_retry(*, sku_id: int) -> list[ReviewItem]:
    """Retry the open out-of-stock items of a SKU, oldest first, each in its own transaction.

    An item whose line now fits is resolved, and its order is released when nothing else
    holds it. An item that still does not fit stays open and the next one is tried, so a
    large old line does not keep smaller ones waiting. Returns the resolved items.
    """
    item_ids = list(
        ReviewItem.objects.filter(
            kind=ReviewKind.OUT_OF_STOCK,
            status=ReviewStatus.OPEN,
            order_line__sku_id=sku_id,
        )
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )
    resolved = []
    for item_id in item_ids:
        with transaction.atomic():
            item = _item_resolve_if_in_stock(item_id=item_id)
        if item is not None:
            resolved.append(item)
    logger.info(
        "out-of-stock items retried",
        extra={"sku": sku_id, "tried": len(item_ids), "resolved": len(resolved)},
    )
    return resolved


def _item_resolve_if_in_stock(*, item_id: int) -> ReviewItem | None:
    item = (
        ReviewItem.objects.select_for_update(of=("self",))
        .select_related("order_line", "order_line__sku")
        .filter(pk=item_id, status=ReviewStatus.OPEN)
        .first()
    )
    if item is None:
        return None
    order = order_lock(order_id=item.order_id)

    result = order_line_reserve_stock(line=item.order_line, actor=None)
    if result.short:
        return None

    decision = _decision(item=item, order=order, result=result)
    _item_close_resolved(item=item, decision=decision)
    _substitutions_resolve(item=item, order=order)
    if order.status == OrderStatus.ON_HOLD:
        reasons = [r for r in order.hold_reasons if r.get("review_item") != item.pk]
        order_update_hold_reasons(order=order, reasons=reasons)
    return item


def _substitutions_resolve(*, item: ReviewItem, order: Order) -> None:
    """Close queued substitutions of the line: the ordered SKU is reserved after all."""
    from reviews.services import review_items_resolve_for_line

    review_items_resolve_for_line(
        line=item.order_line,
        order=order,
        kinds=[ReviewKind.SUBSTITUTION],
        note="the ordered SKU is in stock again",
        data={"ordered_sku_reserved": True, "out_of_stock_item": item.pk},
    )


def _decision(*, item: ReviewItem, order: Order, result: ReservationResult) -> dict:
    """Build the decision data, and flag the order if the reservation used a stale snapshot."""
    line = item.order_line
    decision = {"line": line.position, "sku": line.sku.code if line.sku_id else None}
    if not result.reserved:
        # Already reserved (by an earlier retry), or the SKU is no longer stock-tracked.
        decision["reservation"] = None
        return decision

    reservation = result.reserved[0]
    decision.update(
        reservation=reservation.pk,
        location=reservation.stock_level.location.code,
        quantity=reservation.quantity,
        stale_stock=bool(result.stale),
    )
    if result.stale:
        order_flag(order=order, flags=[stale_stock_flag(*result.stale[0])])
    return decision


def _item_close_resolved(*, item: ReviewItem, decision: dict) -> None:
    item.status = ReviewStatus.RESOLVED
    item.decided_by = None
    item.decided_at = timezone.now()
    item.decision = decision
    item.decision_note = "reserved after a stock increase"
    item.save(update_fields=["status", "decided_by", "decided_at", "decision", "decision_note"])

    order_event_add(
        order=item.order,
        kind="review.resolved",
        message=f"Review item #{item.pk} resolved: {item.decision_note}.",
        data={"review_item": item.pk, "decision": decision},
    )
    audit_record(
        action="review_item.resolved",
        target_type="review_item",
        target_id=item.pk,
        system_label=RESTOCK_LABEL,
        reason=item.decision_note,
        before={"status": ReviewStatus.OPEN, "proposal": item.proposal},
        after={"status": item.status, "decision": decision},
    )
    logger.info(
        "out-of-stock item resolved", extra={"review_item": item.pk, "order": item.order_id}
    )
