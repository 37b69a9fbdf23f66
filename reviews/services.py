"""Writes for review items: opening them and the reviewer's accept / reject decisions."""

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from catalog.models import ExternalIdKind, Sku
from catalog.services import MappingConflict, mapping_create
from guardrails.services import audit_record
from orders.models import Order, OrderLine
from orders.services import order_event_add, order_lock, order_update_hold_reasons

from .models import ReviewItem, ReviewKind, ReviewStatus

logger = logging.getLogger(__name__)

DECIDE_PERMISSION = "reviews.decide_reviewitem"


class ReviewError(Exception):
    """A decision that cannot be made; `code` is stable, `message` is for the reviewer."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class ReviewForbidden(ReviewError):
    status = 403


class ReviewNotFound(ReviewError):
    status = 404


class ReviewConflict(ReviewError):
    status = 409


def review_item_open_unmapped_sku(
    *, order: Order, line: OrderLine, candidates: list[dict]
) -> ReviewItem:
    item = ReviewItem.objects.create(
        kind=ReviewKind.UNMAPPED_SKU,
        order=order,
        order_line=line,
        reason=(
            f"Line {line.position} ({line.channel_sku or 'no SKU'}) has no mapping to a "
            f"canonical SKU on channel {order.channel.code}."
        ),
        source_data=line.raw,
        proposal={"candidates": candidates},
    )
    order_event_add(
        order=order,
        kind="review.opened",
        message=f"Review item #{item.pk} opened: unmapped SKU on line {line.position}.",
        data={"review_item": item.pk},
    )
    return item


def review_item_accept(
    *, item_id: int, user: AbstractBaseUser, sku_id: int | None = None, note: str = ""
) -> ReviewItem:
    """Accept an item. For an unmapped SKU: map the line to `sku_id` (default: best candidate)."""
    _check_may_decide(user)

    with transaction.atomic():
        item = _item_lock_open(item_id)
        order = order_lock(order_id=item.order_id)

        if item.kind == ReviewKind.UNMAPPED_SKU:
            decision = _accept_unmapped_sku(item=item, order=order, user=user, sku_id=sku_id)
            remaining = _reasons_without_line(order.hold_reasons, decision["line"])
        else:
            raise ReviewError("unsupported_kind", f"Items of kind {item.kind} cannot be accepted.")

        _item_close(
            item=item, status=ReviewStatus.ACCEPTED, user=user, decision=decision, note=note
        )
        order_update_hold_reasons(order=order, reasons=remaining, actor=user)
    return item


def review_item_reject(*, item_id: int, user: AbstractBaseUser, note: str = "") -> ReviewItem:
    """Reject an item's proposal; the order stays on hold for manual handling."""
    _check_may_decide(user)

    with transaction.atomic():
        item = _item_lock_open(item_id)
        order = order_lock(order_id=item.order_id)
        line = item.order_line
        position = line.position if line else None

        remaining = _reasons_without_line(order.hold_reasons, position)
        remaining.append(
            {
                "code": "review_rejected",
                "line": position,
                "message": (
                    f"Review item #{item.pk} rejected by {user.get_username()}; "
                    "the order needs manual handling"
                ),
            }
        )

        _item_close(
            item=item,
            status=ReviewStatus.REJECTED,
            user=user,
            decision={"rejected": True, "line": position},
            note=note,
        )
        order_update_hold_reasons(order=order, reasons=remaining, actor=user)
    return item


def _reasons_without_line(reasons: list[dict], line: int | None) -> list[dict]:
    """Hold reasons minus the unmapped-SKU reason of one line, which a decision settles."""
    return [
        reason
        for reason in reasons
        if not (reason.get("code") == "unmapped_sku" and reason.get("line") == line)
    ]


def _check_may_decide(user: AbstractBaseUser) -> None:
    if not user.has_perm(DECIDE_PERMISSION):
        raise ReviewForbidden("forbidden", "You do not have permission to decide review items.")


def _item_lock_open(item_id: int) -> ReviewItem:
    item = (
        ReviewItem.objects.select_for_update(of=("self",))
        .select_related("order_line", "decided_by")
        .filter(pk=item_id)
        .first()
    )
    if item is None:
        raise ReviewNotFound("not_found", f"Review item #{item_id} does not exist.")
    if not item.is_open:
        who = item.decided_by.get_username() if item.decided_by else "someone"
        raise ReviewConflict(
            "already_decided",
            f"Review item #{item.pk} was already {item.get_status_display().lower()} by {who}.",
        )
    return item


def _accept_unmapped_sku(
    *, item: ReviewItem, order: Order, user: AbstractBaseUser, sku_id: int | None
) -> dict:
    if sku_id is None:
        candidates = item.proposal.get("candidates") or []
        if not candidates:
            raise ReviewError("no_candidate", "There is no candidate SKU to accept; choose a SKU.")
        sku_id = candidates[0]["sku_id"]

    sku = Sku.objects.filter(pk=sku_id, is_active=True).first()
    if sku is None:
        raise ReviewError("invalid_sku", f"SKU id {sku_id} does not exist or is inactive.")

    line = item.order_line
    line_before = line.sku.code if line.sku_id else None
    mapping = None
    identifier = _line_identifier(line)
    if identifier is not None:
        id_kind, external_id = identifier
        try:
            mapping = mapping_create(
                channel=order.channel,
                id_kind=id_kind,
                external_id=external_id,
                sku=sku,
                actor=user,
                reason=f"Accepted in review item #{item.pk}",
            )
        except MappingConflict as conflict:
            raise ReviewConflict("mapping_conflict", str(conflict)) from None

    line.sku = sku
    line.save(update_fields=["sku"])
    audit_record(
        action="order_line.sku_set",
        target_type="order_line",
        target_id=line.pk,
        actor=user,
        reason=f"Accepted in review item #{item.pk}",
        before={"sku": line_before},
        after={"sku": sku.code},
    )
    return {
        "line": line.position,
        "sku_id": sku.pk,
        "sku": sku.code,
        "mapping_id": mapping.pk if mapping else None,
    }


def _line_identifier(line: OrderLine) -> tuple[str, str] | None:
    """The channel identifier a new mapping should use: the channel SKU, else the variant."""
    if line.channel_sku:
        return ExternalIdKind.SKU, line.channel_sku
    if line.channel_variant_id:
        return ExternalIdKind.SHOPIFY_VARIANT, line.channel_variant_id
    return None


def _item_close(
    *, item: ReviewItem, status: str, user: AbstractBaseUser, decision: dict, note: str
) -> None:
    item.status = status
    item.decided_by = user
    item.decided_at = timezone.now()
    item.decision = decision
    item.decision_note = note
    item.save(update_fields=["status", "decided_by", "decided_at", "decision", "decision_note"])

    verb = "accepted" if status == ReviewStatus.ACCEPTED else "rejected"
    order_event_add(
        order=item.order,
        kind=f"review.{verb}",
        message=f"Review item #{item.pk} {verb} by {user.get_username()}.",
        actor=user,
        data={"review_item": item.pk, "decision": decision},
    )
    audit_record(
        action=f"review_item.{verb}",
        target_type="review_item",
        target_id=item.pk,
        actor=user,
        reason=note or f"{item.get_kind_display()} {verb}",
        before={"status": ReviewStatus.OPEN, "proposal": item.proposal},
        after={"status": status, "decision": decision},
    )
    logger.info(
        "review item decided",
        extra={"review_item": item.pk, "status": status, "user": user.pk, "order": item.order_id},
    )
