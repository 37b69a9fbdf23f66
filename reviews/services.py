"""Writes for review items: opening them, and accepting or rejecting them.

Every open item settles one hold reason of its order (the reason carries the item's id).
Accepting an item runs the handler of its kind, removes that hold reason and releases the
order when no reason is left. Rejecting replaces the reason with "needs manual handling".
"""

import inspect
import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from catalog.models import ChannelSkuMapping, ExternalIdKind, Sku
from catalog.services import MappingConflict, mapping_create
from guardrails.services import audit_record
from orders.models import Delivery, Order, OrderLine, OrderStatus
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


# An accept handler applies what the reviewer accepted and returns the decision as data.
# It runs inside the decision's transaction with the item and its order locked.
AcceptHandler = Callable[..., dict]


def review_item_open_unmapped_sku(
    *, order: Order, line: OrderLine, candidates: list[dict]
) -> ReviewItem:
    item = ReviewItem.objects.create(
        kind=ReviewKind.UNMAPPED_SKU,
        order=order,
        order_line=line,
        reason=(
            f"Line {line.position} ({line.identifier_label}) has no mapping to a "
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


def review_item_open_delivery_failed(*, delivery: Delivery) -> ReviewItem:
    """Open an exception item for a delivery that could not become an order.

    One open item per delivery: a delivery that fails again after a replay gets a new item
    only once the earlier one is closed.
    """
    existing = ReviewItem.objects.filter(
        kind=ReviewKind.DELIVERY_FAILED, delivery=delivery, status=ReviewStatus.OPEN
    ).first()
    if existing is not None:
        return existing
    return ReviewItem.objects.create(
        kind=ReviewKind.DELIVERY_FAILED,
        delivery=delivery,
        reason=(
            f"Delivery {delivery.delivery_id} ({delivery.topic}) from channel "
            f"{delivery.channel.code} could not be processed: {delivery.error}"
        )[:2000],
        source_data={"delivery": delivery.pk, "outcome": delivery.outcome},
        proposal={"action": "replay"},
    )


def review_items_resolve_for_replay(
    *, delivery: Delivery, actor: AbstractBaseUser | None
) -> list[ReviewItem]:
    """Close the delivery's open exception items because it is being processed again."""
    items = list(
        ReviewItem.objects.select_for_update(of=("self",)).filter(
            kind=ReviewKind.DELIVERY_FAILED, delivery=delivery, status=ReviewStatus.OPEN
        )
    )
    for item in items:
        _item_close(
            item=item,
            status=ReviewStatus.RESOLVED,
            user=actor,
            decision={"replayed": True, "delivery": delivery.pk},
            note="the delivery was replayed",
        )
    return items


def review_item_accept(
    *, item_id: int, user: AbstractBaseUser, note: str = "", **choice: Any
) -> ReviewItem:
    """Accept an item. `choice` contains the kind's options, e.g. `sku_id` for an unmapped SKU."""
    _check_may_decide(user)

    with transaction.atomic():
        item = _item_lock_open(item_id)
        order = order_lock(order_id=item.order_id) if item.order_id else None
        # The fragment and events read item.order; make it the locked, up-to-date instance.
        item.order = order
        handler = _ai_decision_handler(item) or accept_handler(item.kind)
        if handler is None:
            raise ReviewError("unsupported_kind", f"Items of kind {item.kind} cannot be accepted.")
        _check_choice_applies(handler, item, choice)

        decision = handler(item=item, order=order, user=user, **choice)
        _item_close(
            item=item, status=ReviewStatus.ACCEPTED, user=user, decision=decision, note=note
        )
        # An accepted cancellation leaves the order cancelled, not released.
        if order is not None and order.status != OrderStatus.CANCELLED:
            order_update_hold_reasons(
                order=order, reasons=_reasons_without_item(order.hold_reasons, item), actor=user
            )
    return item


def review_item_reject(*, item_id: int, user: AbstractBaseUser, note: str = "") -> ReviewItem:
    """Reject an item's proposal.

    For a hygiene item the order stays on hold for manual handling. For an AI proposal the
    order goes on as it was: only the proposal's own hold is removed.
    """
    _check_may_decide(user)

    with transaction.atomic():
        item = _item_lock_open(item_id)
        if item.order_id is None:
            # An unprocessable delivery: rejecting dismisses it; nothing else changes.
            _item_close(
                item=item,
                status=ReviewStatus.REJECTED,
                user=user,
                decision={"dismissed": True, "delivery": item.delivery_id},
                note=note,
            )
            return item
        order = order_lock(order_id=item.order_id)
        # The fragment and events read item.order; make it the locked, up-to-date instance.
        item.order = order
        position = item.order_line.position if item.order_line else None
        decision_rejected = _ai_decision_reject(item=item, order=order, user=user, note=note)
        if decision_rejected is not None:
            # Rejecting an AI proposal leaves the order as it was before the proposal, so
            # the hold the proposal added goes and nothing new needs manual handling.
            held = _item_holds(order, item)
            _item_close(
                item=item,
                status=ReviewStatus.REJECTED,
                user=user,
                decision={"rejected": True, "decision": decision_rejected},
                note=note,
            )
            if held:
                order_update_hold_reasons(
                    order=order, reasons=_reasons_without_item(order.hold_reasons, item), actor=user
                )
            return item

        remaining = _reasons_without_item(order.hold_reasons, item)
        remaining.append(
            {
                "severity": "hold",
                "code": "review_rejected",
                "line": position,
                "review_item": item.pk,
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


def review_items_resolve_by_mappings(
    *,
    mappings: list[ChannelSkuMapping],
    actor: AbstractBaseUser | None,
    cause: str,
    exclude_item_id: int | None = None,
) -> list[ReviewItem]:
    """Settle the open unmapped-SKU items that the given mappings now match.

    Each such item's line gets the mapped SKU, the item is marked resolved (no person decided
    it), and its order is released when nothing else holds it. Call inside a transaction.
    """
    resolved = []
    for item in _open_items_waiting_on(mappings):
        if item.pk == exclude_item_id:
            continue
        # NOTE: orders are locked in ascending id order here, but the caller may already hold
        # another order's lock; two people accepting the same channel SKU on different orders
        # at the same moment can deadlock, and PostgreSQL then aborts one of the two.
        order = order_lock(order_id=item.order_id)
        item = _item_lock_open(item.pk)
        item.order = order
        sku = _mapped_sku_for_line(item.order_line, mappings)
        _line_set_sku(line=item.order_line, sku=sku, actor=actor, reason=cause)
        _item_close(
            item=item,
            status=ReviewStatus.RESOLVED,
            user=actor,
            decision={"line": item.order_line.position, "sku_id": sku.pk, "sku": sku.code},
            note=cause,
        )
        if order.status == OrderStatus.ON_HOLD:
            order_update_hold_reasons(
                order=order, reasons=_reasons_without_item(order.hold_reasons, item), actor=actor
            )
        resolved.append(item)
    return resolved


def review_items_resolve_for_line(
    *,
    line: OrderLine,
    order: Order,
    kinds: list[str],
    note: str,
    data: dict,
    actor: AbstractBaseUser | None = None,
) -> list[ReviewItem]:
    """Close a line's open items of the given kinds that another change made moot.

    An out-of-stock item is moot once a substitution shipped another SKU on its line, and a
    queued substitution is moot once the ordered SKU is reserved after all. See
    review_items_resolve_moot.
    """
    return review_items_resolve_moot(
        order=order, kinds=kinds, note=note, data=data, line=line, actor=actor
    )


def review_items_resolve_moot(
    *,
    order: Order,
    kinds: list[str],
    note: str,
    data: dict,
    line: OrderLine | None = None,
    exclude_item_id: int | None = None,
    actor: AbstractBaseUser | None = None,
) -> list[ReviewItem]:
    """Close the order's open items of the given kinds (on `line`, if given) as resolved.

    Each item's hold reason goes, and the order is released when no other reason holds it.
    Call inside a transaction with `order` locked; pass the locked instance, because its
    hold reasons are updated in place.
    """
    items = ReviewItem.objects.select_for_update(of=("self",)).filter(
        order=order, kind__in=kinds, status=ReviewStatus.OPEN
    )
    if line is not None:
        items = items.filter(order_line=line)
    items = list(items.exclude(pk=exclude_item_id).order_by("pk"))
    for item in items:
        item.order = order
        _item_close(item=item, status=ReviewStatus.RESOLVED, user=None, decision=data, note=note)
    if items and order.status == OrderStatus.ON_HOLD:
        closed = {item.pk for item in items}
        reasons = [r for r in order.hold_reasons if r.get("review_item") not in closed]
        order_update_hold_reasons(order=order, reasons=reasons, actor=actor)
    return items


def _open_items_waiting_on(mappings: list[ChannelSkuMapping]) -> list[ReviewItem]:
    items = []
    for mapping in mappings:
        line_field = (
            "order_line__channel_variant_id"
            if mapping.id_kind == ExternalIdKind.SHOPIFY_VARIANT
            else "order_line__channel_sku"
        )
        items.extend(
            ReviewItem.objects.filter(
                kind=ReviewKind.UNMAPPED_SKU,
                status=ReviewStatus.OPEN,
                order__channel_id=mapping.channel_id,
                **{line_field: mapping.external_id},
            )
            .select_related("order_line")
            .order_by("order_id", "pk")
        )
    return sorted({item.pk: item for item in items}.values(), key=lambda i: (i.order_id, i.pk))


def _mapped_sku_for_line(line: OrderLine, mappings: list[ChannelSkuMapping]) -> Sku:
    for mapping in mappings:
        if mapping.external_id in (line.channel_sku, line.channel_variant_id):
            return mapping.sku
    raise LookupError(f"No mapping matches order line {line.pk}.")


def _ai_decision_handler(item: ReviewItem) -> AcceptHandler | None:
    """Items an AI decision opened apply that decision, whatever their kind."""
    from guardrails.services import decision_for_review_item, decision_review_accept

    return decision_review_accept if decision_for_review_item(item) is not None else None


def _ai_decision_reject(
    *, item: ReviewItem, order: Order, user: AbstractBaseUser, note: str
) -> int | None:
    """Record the rejection on the item's AI decision; return its id, or None without one."""
    from guardrails.services import decision_for_review_item, decision_review_reject

    if decision_for_review_item(item) is None:
        return None
    return decision_review_reject(item=item, order=order, user=user, note=note).pk


def _item_holds(order: Order, item: ReviewItem) -> bool:
    return any(reason.get("review_item") == item.pk for reason in order.hold_reasons)


def _reasons_without_item(reasons: list[dict], item: ReviewItem) -> list[dict]:
    """Hold reasons minus the one this item settles."""
    return [reason for reason in reasons if reason.get("review_item") != item.pk]


def _check_choice_applies(handler: AcceptHandler, item: ReviewItem, choice: dict) -> None:
    """Reject options the item's kind does not take, e.g. a service_id for an address."""
    parameters = inspect.signature(handler).parameters
    unknown = sorted(set(choice) - (set(parameters) - {"item", "order", "user"}))
    if unknown:
        raise ReviewError(
            "invalid_choice",
            f"{', '.join(unknown)} does not apply to {item.get_kind_display().lower()} items.",
        )


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
        from django.contrib.auth import get_user_model

        # After waiting for the lock, PostgreSQL rechecks the item row only: the joined user
        # may be the one from before the winner's update (none), so read the decider by id.
        decider = (
            get_user_model().objects.filter(pk=item.decided_by_id).first()
            if item.decided_by_id
            else None
        )
        who = decider.get_username() if decider is not None else "the system"
        raise ReviewConflict(
            "already_decided",
            f"Review item #{item.pk} was already {item.get_status_display().lower()} by {who}.",
        )
    return item


def _accept_unmapped_sku(
    *, item: ReviewItem, order: Order, user: AbstractBaseUser, sku_id: int | None = None
) -> dict:
    """Map the line's channel identifier to the SKU (default: the best candidate)."""
    if sku_id is None:
        candidates = item.proposal.get("candidates") or []
        if not candidates:
            raise ReviewError("no_candidate", "There is no candidate SKU to accept; choose a SKU.")
        sku_id = candidates[0]["sku_id"]

    sku = Sku.objects.filter(pk=sku_id, is_active=True).first()
    if sku is None:
        raise ReviewError("invalid_sku", f"SKU id {sku_id} does not exist or is inactive.")

    line = item.order_line
    reason = f"Accepted in review item #{item.pk}"
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
                reason=reason,
            )
        except MappingConflict as conflict:
            raise ReviewConflict("mapping_conflict", str(conflict)) from None

    _line_set_sku(line=line, sku=sku, actor=user, reason=reason)
    # Other held orders waiting on the same channel identifier are settled by this mapping.
    others = []
    if mapping is not None:
        others = [
            other.pk
            for other in review_items_resolve_by_mappings(
                mappings=[mapping],
                actor=user,
                cause=f"mapping created in review item #{item.pk}",
                exclude_item_id=item.pk,
            )
        ]
    return {
        "line": line.position,
        "sku_id": sku.pk,
        "sku": sku.code,
        "mapping_id": mapping.pk if mapping else None,
        "also_resolves": others,
    }


def _line_identifier(line: OrderLine) -> tuple[str, str] | None:
    """The channel identifier a new mapping should use: the channel SKU, else the variant."""
    if line.channel_sku:
        return ExternalIdKind.SKU, line.channel_sku
    if line.channel_variant_id:
        return ExternalIdKind.SHOPIFY_VARIANT, line.channel_variant_id
    return None


def _line_set_sku(
    *, line: OrderLine, sku: Sku, actor: AbstractBaseUser | None, reason: str
) -> None:
    before = line.sku.code if line.sku_id else None
    line.sku = sku
    line.save(update_fields=["sku"])
    audit_record(
        action="order_line.sku_set",
        target_type="order_line",
        target_id=line.pk,
        actor=actor,
        system_label="" if actor else "mapping resolution",
        reason=reason,
        before={"sku": before},
        after={"sku": sku.code},
    )


def _item_close(
    *,
    item: ReviewItem,
    status: str,
    user: AbstractBaseUser | None,
    decision: dict,
    note: str,
) -> None:
    item.status = status
    item.decided_by = user if status != ReviewStatus.RESOLVED else None
    item.decided_at = timezone.now()
    item.decision = decision
    item.decision_note = note
    item.save(update_fields=["status", "decided_by", "decided_at", "decision", "decision_note"])

    verb = {
        ReviewStatus.ACCEPTED: "accepted",
        ReviewStatus.REJECTED: "rejected",
        ReviewStatus.RESOLVED: "resolved",
    }[status]
    who = user.get_username() if user is not None else "the system"
    message = f"Review item #{item.pk} {verb} by {who}."
    if status == ReviewStatus.RESOLVED:
        message = f"Review item #{item.pk} resolved: {note}."
    if item.order_id is not None:
        order_event_add(
            order=item.order,
            kind=f"review.{verb}",
            message=message,
            actor=item.decided_by,
            data={"review_item": item.pk, "decision": decision},
        )
    audit_record(
        action=f"review_item.{verb}",
        target_type="review_item",
        target_id=item.pk,
        actor=user,
        system_label="" if user else "automatic resolution",
        reason=note or f"{item.get_kind_display()} {verb}",
        before={"status": ReviewStatus.OPEN, "proposal": item.proposal},
        after={"status": status, "decision": decision},
    )
    logger.info(
        "review item closed",
        extra={"review_item": item.pk, "status": status, "order": item.order_id},
    )


def _accept_delivery_replay(
    *, item: ReviewItem, order: Order | None, user: AbstractBaseUser
) -> dict:
    """Process the unprocessable delivery again, e.g. after its channel or mapping was fixed."""
    from orders.services import DeliveryNotReplayable, delivery_replay

    try:
        delivery_replay(
            delivery_id=item.delivery_id,
            actor=user,
            reason=f"Accepted in review item #{item.pk}",
            resolve_review_items=False,
        )
    except DeliveryNotReplayable as error:
        raise ReviewConflict("not_replayable", str(error)) from None
    return {"replayed": True, "delivery": item.delivery_id}


def accept_handler(kind: str) -> AcceptHandler | None:
    """The accept handler for a kind of item.

    Handlers that live in other modules are imported here, at call time, because those
    modules import this one for ReviewError and the item helpers.
    """
    from guardrails.services import decision_review_accept
    from inventory.out_of_stock import accept_out_of_stock
    from orders.carriers import carrier_code_accept
    from orders.hygiene.address import address_accept

    handlers: dict[str, AcceptHandler] = {
        ReviewKind.UNMAPPED_SKU: _accept_unmapped_sku,
        ReviewKind.OUT_OF_STOCK: accept_out_of_stock,
        ReviewKind.ADDRESS: address_accept,
        ReviewKind.CARRIER_CODE: carrier_code_accept,
        ReviewKind.DELIVERY_FAILED: _accept_delivery_replay,
        ReviewKind.SUBSTITUTION: decision_review_accept,
        ReviewKind.ROUTING: decision_review_accept,
        ReviewKind.AI_ACTION: decision_review_accept,
    }
    return handlers.get(kind)
