"""Writes for review items: opening them, claiming them, and accepting, revising or rejecting.

Every open item settles one hold reason of its order (the reason carries the item's id).
Accepting an item runs the handler of its kind, removes that hold reason and releases the
order when no reason is left. Revising applies the reviewer's corrected value instead of the
proposal through the same handlers, then closes the item as accepted. Rejecting replaces the
reason with "needs manual handling".

Only a user with the decide permission who holds the item's approver role (or the role it was
escalated to) may decide it, and an item whose order changed after it opened may no longer be
accepted or revised, only rejected.
"""

import copy
import inspect
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from catalog.models import ChannelSkuMapping, ExternalIdKind, Sku
from catalog.services import MappingConflict, mapping_create
from guardrails.services import audit_record
from omsguard.json_fields import bidi_controls_in
from orders.models import Delivery, Order, OrderLine, OrderStatus
from orders.services import (
    order_event_add,
    order_lock,
    order_update_hold_reasons,
    order_version_bump,
)

from .display import mid_sentence, role_label
from .known_answers import ANSWER_REVISE, known_answer_item_decide
from .models import ReviewItem, ReviewKind, ReviewStatus
from .selectors import review_queue_summary_forget

logger = logging.getLogger(__name__)

DECIDE_PERMISSION = "reviews.decide_reviewitem"


class ReviewError(Exception):
    """A decision that cannot be made; `code` is stable, `message` is for the reviewer.

    `field` names the input at fault, for 400s about a revision.
    """

    status = 400

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        self.code = code
        self.message = message
        self.field = field
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
    transaction.on_commit(review_queue_summary_forget)
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
    item = ReviewItem.objects.create(
        kind=ReviewKind.DELIVERY_FAILED,
        delivery=delivery,
        reason=(
            f"Delivery {delivery.delivery_id} ({delivery.topic}) from channel "
            f"{delivery.channel.code} could not be processed: {delivery.error}"
        )[:2000],
        source_data={"delivery": delivery.pk, "outcome": delivery.outcome},
        proposal={"action": "replay"},
    )
    transaction.on_commit(review_queue_summary_forget)
    return item


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
    """Accept an item. `choice` contains the kind's options, e.g. `sku_id` for an unmapped SKU.

    Raises ReviewForbidden for a user who may not decide the item, and ReviewConflict
    (`stale_order`) when the order changed after the item opened.
    """
    _check_may_decide(user)

    with transaction.atomic():
        transaction.on_commit(review_queue_summary_forget)
        item, order = _item_and_order_lock(item_id)
        _check_item_may_decide(item, user)
        if item.known_answer_id is not None:
            # A known-answer item tests the reviewer: no handler runs and no order changes.
            _check_choice_applies(accept_handler(item.kind), item, choice)
            return known_answer_item_decide(item=item, user=user, answer="accept", note=note)
        _check_not_stale(item, order)
        handler = _ai_decision_handler(item) or accept_handler(item.kind)
        if handler is None:
            raise ReviewError("unsupported_kind", f"Items of kind {item.kind} cannot be accepted.")
        _check_choice_applies(handler, item, choice)

        decision = handler(item=item, order=order, user=user, **choice)
        _items_rebase_after_decision(order, item)
        _review_outcome_mark(item, agreed=True)
        _item_close(
            item=item, status=ReviewStatus.ACCEPTED, user=user, decision=decision, note=note
        )
        _order_release_item(order, item, user)
    return item


def review_item_revise(
    *, item_id: int, user: AbstractBaseUser, revision: dict, note: str = ""
) -> ReviewItem:
    """Apply the reviewer's corrected value instead of the proposal and close the item.

    The revision is validated for the item's kind (ReviewError `invalid_revision` with the
    field at fault; `revise_not_supported` for kinds that take none), stored beside the
    proposal and applied through the kind's own handler or the AI action's applier. The item
    closes as accepted with `{"revised": true, ...}`; an AI decision is marked "disagreed".
    """
    _check_may_decide(user)
    if not isinstance(revision, dict) or not revision:
        raise ReviewError("invalid_revision", "Must be a JSON object.", field="revision")
    _revision_check_surrogates(revision)

    with transaction.atomic():
        transaction.on_commit(review_queue_summary_forget)
        item, order = _item_and_order_lock(item_id)
        _check_item_may_decide(item, user)
        if item.known_answer_id is not None:
            return known_answer_item_decide(
                item=item, user=user, answer=ANSWER_REVISE, note=note, revision=revision
            )
        reviser = _reviser_for(item)
        _check_not_stale(item, order)

        cleaned = reviser.clean(item, order, revision)
        result = reviser.apply(item, order, user, cleaned)
        _items_rebase_after_decision(order, item)
        item.revision = cleaned
        _review_outcome_mark(item, agreed=False)
        _item_close(
            item=item,
            status=ReviewStatus.ACCEPTED,
            user=user,
            decision={"revised": True, **result},
            note=note,
        )
        audit_record(
            action="review_item.revised",
            target_type="review_item",
            target_id=item.pk,
            actor=user,
            reason=note or f"{item.get_kind_display()} revised",
            before={"proposal": item.proposal},
            after={"revision": cleaned, "result": result},
        )
        _order_release_item(order, item, user)
    logger.info("review item revised", extra={"review_item": item.pk, "order": item.order_id})
    return item


def review_item_may_decide(item: ReviewItem, user: AbstractBaseUser) -> bool:
    """Whether `user` may accept, revise or reject `item`.

    The user needs the decide permission and, when the item names an approver role, that
    role or the role the item was escalated to; superusers may always decide.
    """
    if not user.is_authenticated or not user.has_perm(DECIDE_PERMISSION):
        return False
    if user.is_superuser or not item.approver_group:
        return True
    roles = [role for role in (item.approver_group, item.escalated_to) if role]
    return user.groups.filter(name__in=roles).exists()


def review_item_check_may_decide(item: ReviewItem, user: AbstractBaseUser) -> None:
    """Raise ReviewForbidden naming the role when `user` may not decide `item`."""
    if review_item_may_decide(item, user):
        return
    if not user.has_perm(DECIDE_PERMISSION):
        raise ReviewForbidden("forbidden", "You do not have permission to decide review items.")
    roles = " or ".join(
        role_label(role) for role in (item.approver_group, item.escalated_to) if role
    )
    kind = mid_sentence(item.get_kind_display())
    raise ReviewForbidden(
        "not_approver", f"Only the {roles} role may decide {kind} items like #{item.pk}."
    )


def review_item_claim(*, item_id: int, user: AbstractBaseUser) -> ReviewItem:
    """Assign the item to `user` for GuardrailSettings.claim_minutes; claiming again extends it.

    Raises ReviewConflict (`claimed`) while someone else's claim runs.
    """
    from guardrails.selectors import guardrail_settings

    with transaction.atomic():
        item = _item_lock_open(item_id)
        review_item_check_may_decide(item, user)
        now = timezone.now()
        _check_not_claimed_by_other(item, user, now)

        before = _claim_state(item)
        item.assignee = user
        item.claimed_until = now + timedelta(minutes=guardrail_settings().claim_minutes)
        item.save(update_fields=["assignee", "claimed_until"])
        _claim_audit(item, user, "review_item.claimed", before)
    logger.info(
        "review item claimed",
        extra={"review_item": item.pk, "user": user.pk, "until": item.claimed_until.isoformat()},
    )
    return item


def review_item_release(*, item_id: int, user: AbstractBaseUser) -> ReviewItem:
    """Give up a claim. Releasing an unclaimed item, or a claim that ran out, changes nothing.

    Raises ReviewForbidden without the decide permission, and ReviewConflict (`claimed`) for
    someone else's running claim, unless the user is a superuser.
    """
    _check_may_decide(user)
    with transaction.atomic():
        item = _item_lock_open(item_id)
        if item.assignee_id is None:
            return item
        if not user.is_superuser:
            _check_not_claimed_by_other(item, user, timezone.now())

        before = _claim_state(item)
        item.assignee = None
        item.claimed_until = None
        item.save(update_fields=["assignee", "claimed_until"])
        _claim_audit(item, user, "review_item.released", before)
    logger.info("review item released", extra={"review_item": item.pk, "user": user.pk})
    return item


def review_item_reject(*, item_id: int, user: AbstractBaseUser, note: str = "") -> ReviewItem:
    """Reject an item's proposal.

    For a hygiene item the order stays on hold for manual handling. For an AI proposal the
    order goes on as it was: only the proposal's own hold is removed. A stale item may still
    be rejected: rejecting changes nothing the order's new state could contradict.
    """
    _check_may_decide(user)

    with transaction.atomic():
        transaction.on_commit(review_queue_summary_forget)
        item = _item_lock_open(item_id)
        _check_item_may_decide(item, user)
        if item.known_answer_id is not None:
            return known_answer_item_decide(item=item, user=user, answer="reject", note=note)
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
        _review_outcome_mark(item, agreed=False)
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
        _items_rebase_after_decision(order, item)
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
    """Items an AI decision opened apply that decision, whatever their kind.

    An audit sample's decision is applied already: accepting it records agreement only.
    """
    from guardrails.services import decision_for_review_item, decision_review_accept

    if decision_for_review_item(item) is None:
        return None
    if item.kind == ReviewKind.AUDIT_SAMPLE:
        from guardrails.sampling import audit_sample_accept

        return audit_sample_accept
    return decision_review_accept


def _ai_decision_reject(
    *, item: ReviewItem, order: Order, user: AbstractBaseUser, note: str
) -> int | None:
    """Record the rejection on the item's AI decision; return its id, or None without one."""
    from guardrails.services import decision_for_review_item, decision_review_reject

    if decision_for_review_item(item) is None:
        return None
    if item.kind == ReviewKind.AUDIT_SAMPLE:
        from guardrails.sampling import audit_sample_reject

        return audit_sample_reject(item=item, order=order, user=user, note=note).pk
    return decision_review_reject(item=item, order=order, user=user, note=note).pk


def _review_outcome_mark(item: ReviewItem, *, agreed: bool) -> None:
    """Record on the item's AI decision, if any, whether the reviewer agreed with it."""
    from guardrails.models import Decision, ReviewOutcome

    Decision.objects.filter(review_item_id=item.pk).update(
        review_outcome=ReviewOutcome.AGREED if agreed else ReviewOutcome.DISAGREED,
        reviewed_at=timezone.now(),
    )


def _items_rebase_after_decision(order: Order | None, item: ReviewItem) -> None:
    """Keep the order's other open items current after a change their queue itself made.

    Accepting one item may change the order (a line's SKU, the address), which raises its
    version. The order's other items were current just before; that change came through the
    queue and their own handlers check what they depend on (the address item that the
    address is the one it saw, an AI decision its `before`), so they move to the new version
    instead of turning stale. Changes from anywhere else still make them stale.
    """
    if order is None or item.order_version is None:
        return
    version = Order.objects.filter(pk=order.pk).values_list("version", flat=True).first()
    if version is None or version <= item.order_version:
        return
    order.version = version
    ReviewItem.objects.filter(
        order_id=order.pk, status=ReviewStatus.OPEN, order_version=item.order_version
    ).exclude(pk=item.pk).update(order_version=version)


def _order_release_item(order: Order | None, item: ReviewItem, user: AbstractBaseUser) -> None:
    """Remove the item's hold reason; the order is released when no other reason holds it."""
    if item.kind == ReviewKind.AUDIT_SAMPLE:
        # An audit sample puts no hold on its order, so deciding it must not touch the status.
        return
    # An accepted cancellation leaves the order cancelled, not released.
    if order is not None and order.status != OrderStatus.CANCELLED:
        order_update_hold_reasons(
            order=order, reasons=_reasons_without_item(order.hold_reasons, item), actor=user
        )


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


def _check_item_may_decide(item: ReviewItem, user: AbstractBaseUser) -> None:
    review_item_check_may_decide(item, user)


def _check_not_stale(item: ReviewItem, order: Order | None) -> None:
    """Refuse to apply anything to an order that changed after the item opened."""
    if item.kind == ReviewKind.AUDIT_SAMPLE:
        # Accepting an audit sample applies nothing; it judges the decision as it was made.
        return
    if order is None or item.order_version is None or order.version <= item.order_version:
        return
    raise ReviewConflict(
        "stale_order",
        f"Order {order.order_number or order.pk} changed after this item opened (version "
        f"{item.order_version}, now {order.version}); check the order and reject the item, "
        "or handle the order by hand.",
    )


def _claim_state(item: ReviewItem) -> dict:
    return {
        "assignee": item.assignee.get_username() if item.assignee_id else None,
        "claimed_until": item.claimed_until.isoformat() if item.claimed_until else None,
    }


def _claim_audit(item: ReviewItem, user: AbstractBaseUser, action: str, before: dict) -> None:
    audit_record(
        action=action,
        target_type="review_item",
        target_id=item.pk,
        actor=user,
        before=before,
        after=_claim_state(item),
    )


def _check_not_claimed_by_other(item: ReviewItem, user: AbstractBaseUser, now) -> None:
    if item.assignee_id in (None, user.pk) or item.claimed_until is None:
        return
    if item.claimed_until <= now:
        return
    until = timezone.localtime(item.claimed_until).strftime("%H:%M")
    raise ReviewConflict(
        "claimed",
        f"Review item #{item.pk} is claimed by {item.assignee.get_username()} until {until}.",
    )


def _item_and_order_lock(item_id: int) -> tuple[ReviewItem, Order | None]:
    """Lock the open item, then its order: the order every review decision locks in."""
    item = _item_lock_open(item_id)
    order = order_lock(order_id=item.order_id) if item.order_id else None
    # The fragment and events read item.order; make it the locked, up-to-date instance.
    item.order = order
    return item, order


def _item_lock_open(item_id: int) -> ReviewItem:
    item = (
        ReviewItem.objects.select_for_update(of=("self",))
        .select_related("order_line", "decided_by", "assignee")
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
    order_version_bump(line.order, reason="line SKU set")
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
    # A closed item is nobody's to work on any more.
    item.assignee = None
    item.claimed_until = None
    item.save(
        update_fields=[
            "status",
            "decided_by",
            "decided_at",
            "decision",
            "decision_note",
            "revision",
            "assignee",
            "claimed_until",
        ]
    )

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
    transaction.on_commit(review_queue_summary_forget)


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
    from orders.hygiene.bidi_text import bidi_text_accept
    from orders.hygiene.escalation import escalation_release_accept

    handlers: dict[str, AcceptHandler] = {
        ReviewKind.UNMAPPED_SKU: _accept_unmapped_sku,
        ReviewKind.OUT_OF_STOCK: accept_out_of_stock,
        ReviewKind.ADDRESS: address_accept,
        ReviewKind.CARRIER_CODE: carrier_code_accept,
        ReviewKind.DELIVERY_FAILED: _accept_delivery_replay,
        ReviewKind.SUBSTITUTION: decision_review_accept,
        # Routing items an AI decision opened take _ai_decision_handler before this registry.
        ReviewKind.ROUTING: escalation_release_accept,
        ReviewKind.HIGH_VALUE: escalation_release_accept,
        ReviewKind.PRIORITY_CUSTOMER: escalation_release_accept,
        ReviewKind.AI_ACTION: decision_review_accept,
        ReviewKind.BIDI_TEXT: bidi_text_accept,
    }
    return handlers.get(kind)


# --- Revisions: the reviewer's corrected value instead of the proposal -----------------------


class Reviser:
    """Validates a revision for one kind of item and applies it through the usual handler.

    `clean` returns the revision as stored; `apply` returns the decision data. Both run
    inside the decision's transaction with the item and its order locked.
    """

    keys: set[str] = set()

    def clean(self, item: ReviewItem, order: Order | None, revision: dict) -> dict:
        raise NotImplementedError

    def apply(
        self, item: ReviewItem, order: Order | None, user: AbstractBaseUser, revision: dict
    ) -> dict:
        raise NotImplementedError

    def check_keys(self, revision: dict) -> None:
        if set(revision) != self.keys:
            expected = ", ".join(sorted(self.keys))
            raise ReviewError(
                "invalid_revision",
                f"Expected exactly {expected}; got {', '.join(sorted(revision)) or 'nothing'}.",
                field="revision",
            )


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _revision_check_surrogates(node: object) -> None:
    """Raise ReviewError `invalid_revision` for a lone surrogate in any key or text of node.

    A lone surrogate (U+D800 to U+DFFF outside a pair) cannot be encoded as UTF-8. The
    revision's error messages repeat unknown keys, so such a key would make the error response
    fail to render. PostgreSQL cannot store the character in the item's JSON either.
    """
    texts = []
    if isinstance(node, str):
        texts = [node]
    elif isinstance(node, dict):
        texts = [str(key) for key in node]
        for value in node.values():
            _revision_check_surrogates(value)
    elif isinstance(node, list):
        for item in node:
            _revision_check_surrogates(item)
    for text in texts:
        match = _LONE_SURROGATE.search(text)
        if match is not None:
            raise ReviewError(
                "invalid_revision",
                f"Contains a lone surrogate (U+{ord(match.group()):04X}), which is not valid "
                "Unicode text. Send the whole character, as a surrogate pair or unescaped.",
                field="revision",
            )


# Maximum length of an address field in a revision: the revise form's limit.
ADDRESS_FIELD_MAX_LENGTH = 200


def _address_clean(revision: dict, received: dict | None) -> dict:
    """Build the full address from the revision and the received one, and check its country's rules.

    The revision must hold known text fields of at most ADDRESS_FIELD_MAX_LENGTH characters.
    Its fields replace the received ones, an empty one clears it, and the received address
    keeps the fields it does not name (see _address_revised).
    """
    from orders.addresses import TEXT_FIELDS, Severity, address_validate

    allowed = {*TEXT_FIELDS, "phone"}
    unknown = sorted(set(revision) - allowed)
    if unknown:
        raise ReviewError(
            "invalid_revision", f"Unknown address fields: {', '.join(unknown)}.", field="revision"
        )
    for name, value in revision.items():
        if value is not None and not isinstance(value, str):
            raise ReviewError("invalid_revision", "Address fields must be text.", field=name)
        if value is not None and len(value) > ADDRESS_FIELD_MAX_LENGTH:
            raise ReviewError(
                "invalid_revision",
                f"At most {ADDRESS_FIELD_MAX_LENGTH} characters; this one has {len(value)}.",
                field=name,
            )
        _address_field_check_bidi(name, value)
    cleaned = _address_revised(received, _address_fields_strip(revision))

    errors = [r for r in address_validate(cleaned).reasons if r.severity == Severity.ERROR]
    if errors:
        first = errors[0]
        raise ReviewError(
            "invalid_revision",
            " ".join(reason.message for reason in errors),
            field=_address_field_name(first.field),
        )
    return cleaned


def _address_field_check_bidi(name: str, value: str | None) -> None:
    """Raise ReviewError `invalid_revision` for bidirectional controls in an address field.

    A channel's address with them is held for review. A person's correction must not bring
    them back, because the applied address is not checked again.
    """
    controls = bidi_controls_in(value) if value else []
    if controls:
        raise ReviewError(
            "invalid_revision",
            f"Contains Unicode bidirectional control characters ({', '.join(controls)}), "
            "which can make the text display in another order. Remove them.",
            field=name,
        )


def _address_fields_strip(revision: dict) -> dict:
    """Strip the text fields and upper-case the country and province codes."""
    cleaned = {
        name: (value.strip() if isinstance(value, str) else value)
        for name, value in revision.items()
    }
    for name in ("country_code", "province_code"):
        if isinstance(cleaned.get(name), str):
            cleaned[name] = cleaned[name].upper()
    return cleaned


def _address_revised(received: dict | None, revision: dict) -> dict:
    """Lay the revision over the received address; fields it does not name keep their value.

    The form has only orders.addresses.REVISION_FIELDS, and an API client may send fewer, so
    replacing the whole address would drop the phone number and the names the channel sent.
    An empty field in the revision clears it. A kept field that describes a field the revision
    changed (the country name of a changed country code) is dropped rather than left
    contradicting it.
    """
    from orders.addresses import DESCRIBING_FIELDS

    received = received if isinstance(received, dict) else {}
    kept = {name: value for name, value in received.items() if name not in revision}
    for name, described in DESCRIBING_FIELDS.items():
        if (
            name in kept
            and described in revision
            and _casefolded(revision[described]) != _casefolded(received.get(described))
        ):
            del kept[name]
    merged = {**kept, **revision}
    return {name: value for name, value in merged.items() if value not in ("", None)}


def _casefolded(value: object) -> object:
    return value.strip().casefold() if isinstance(value, str) else value


def _address_field_name(field: str) -> str:
    """The Shopify field of an address reason, for the error's field name."""
    names = {
        "street_address": "address1",
        "postal_code": "zip",
        "country_area": "province_code",
        "country_code": "country_code",
        "city": "city",
        "name": "name",
    }
    return names.get(field, field or "revision")


class AddressReviser(Reviser):
    """A hygiene address item: the reviewer's address replaces the normalised proposal."""

    def clean(self, item, order, revision):
        return _address_clean(revision, order.shipping_address)

    def apply(self, item, order, user, revision):
        from orders.hygiene.address import address_accept

        # The accept handler applies the proposal's normalised address; hand it the revision.
        revised = copy.copy(item)
        revised.proposal = {**(item.proposal or {}), "normalized": revision}
        return address_accept(item=revised, order=order, user=user)


class UnmappedSkuReviser(Reviser):
    keys = {"sku_id"}

    def clean(self, item, order, revision):
        self.check_keys(revision)
        sku_id = revision["sku_id"]
        if not isinstance(sku_id, int) or isinstance(sku_id, bool) or sku_id < 1:
            raise ReviewError("invalid_revision", "Must be a SKU id.", field="sku_id")
        if not Sku.objects.filter(pk=sku_id, is_active=True).exists():
            raise ReviewError(
                "invalid_revision",
                f"SKU id {sku_id} does not exist or is inactive.",
                field="sku_id",
            )
        return {"sku_id": sku_id}

    def apply(self, item, order, user, revision):
        return _accept_unmapped_sku(item=item, order=order, user=user, sku_id=revision["sku_id"])


class CarrierCodeReviser(Reviser):
    keys = {"service_id"}

    def clean(self, item, order, revision):
        from orders.models import CarrierService

        self.check_keys(revision)
        service_id = revision["service_id"]
        if not isinstance(service_id, int) or isinstance(service_id, bool) or service_id < 1:
            raise ReviewError(
                "invalid_revision", "Must be a carrier service id.", field="service_id"
            )
        if not CarrierService.objects.filter(pk=service_id).exists():
            raise ReviewError(
                "invalid_revision",
                f"Carrier service id {service_id} does not exist.",
                field="service_id",
            )
        return {"service_id": service_id}

    def apply(self, item, order, user, revision):
        from orders.carriers import carrier_code_accept

        return carrier_code_accept(
            item=item, order=order, user=user, service_id=revision["service_id"]
        )


class DecisionReviser(Reviser):
    """An AI proposal: the revision replaces the decision's `after` and goes through its applier.

    `after_for` turns the reviewer's value into the action's `after` shape.
    """

    def __init__(self, keys: set[str] | None, after_for: Callable[[Any, dict], dict]) -> None:
        self.keys = keys or set()
        self.after_for = after_for

    def clean(self, item, order, revision):
        from guardrails.appliers import proposal_validate
        from guardrails.services import DecisionError, decision_for_review_item

        if self.keys:
            self.check_keys(revision)
            cleaned = dict(revision)
        else:
            cleaned = _address_clean(revision, order.shipping_address)
        decision = decision_for_review_item(item)
        after = self.after_for(decision, cleaned)
        try:
            proposal_validate(
                action_code=decision.action.code, order=order, before=decision.before, after=after
            )
        except DecisionError as error:
            raise ReviewError(
                "invalid_revision", error.message, field=_revision_field(cleaned)
            ) from None
        if after == decision.after:
            raise ReviewError(
                "invalid_revision",
                "The revision is the proposal itself; accept the item instead.",
                field=_revision_field(cleaned),
            )
        return cleaned

    def apply(self, item, order, user, revision):
        from guardrails.appliers import applier_for
        from guardrails.services import DecisionError, _decision_lock_for_item

        decision = _decision_lock_for_item(item)
        applier = applier_for(decision.action.code)
        if applier.checks_before_on_accept and applier.current(order, decision.before) != (
            decision.before
        ):
            raise ReviewConflict(
                "stale_state",
                "The order changed after the proposal; reject it and handle the order by hand.",
            )
        # Apply a copy: the stored decision keeps the AI's proposal for the disagreement record.
        revised = copy.copy(decision)
        revised.after = self.after_for(decision, revision)
        try:
            with transaction.atomic():
                result = applier.apply(order, revised, user.get_username(), user=user)
        except DecisionError as error:
            raise ReviewConflict(error.code, error.message) from None

        audit_record(
            action="decision.revised",
            target_type="decision",
            target_id=decision.pk,
            actor=user,
            reason=f"Revised in review item #{item.pk}",
            before=decision.after,
            after=revised.after,
        )
        order_event_add(
            order=order,
            kind="ai.revised",
            message=(
                f"{decision.action.name} by decision #{decision.pk} revised by "
                f"{user.get_username()} before it was applied."
            ),
            actor=user,
            data={"decision": decision.pk, "review_item": item.pk, "result": result},
        )
        return {"decision": decision.pk, "applied": True, **result}


def _revision_field(revision: dict) -> str:
    return next(iter(revision)) if len(revision) == 1 else "revision"


DECISION_REVISERS: dict[str, DecisionReviser] = {
    "substitute_sku": DecisionReviser(
        {"sku"},
        lambda decision, revision: {"line": decision.before["line"], "sku": revision["sku"]},
    ),
    "correct_shipping_address": DecisionReviser(
        None, lambda decision, revision: {"shipping_address": revision}
    ),
    "change_billing_address": DecisionReviser(
        None, lambda decision, revision: {"billing_address": revision}
    ),
    "select_carrier": DecisionReviser(
        {"carrier_service"}, lambda decision, revision: dict(revision)
    ),
    "downgrade_shipping_service": DecisionReviser(
        {"carrier_service"}, lambda decision, revision: dict(revision)
    ),
}
HYGIENE_REVISERS: dict[str, Reviser] = {
    ReviewKind.ADDRESS: AddressReviser(),
    ReviewKind.UNMAPPED_SKU: UnmappedSkuReviser(),
    ReviewKind.CARRIER_CODE: CarrierCodeReviser(),
}


def _reviser_for(item: ReviewItem) -> Reviser:
    from guardrails.services import decision_for_review_item

    decision = decision_for_review_item(item)
    if decision is not None:
        reviser = (
            DECISION_REVISERS.get(decision.action.code)
            if item.kind != ReviewKind.AUDIT_SAMPLE
            else None
        )
    else:
        reviser = HYGIENE_REVISERS.get(item.kind)
    if reviser is None:
        raise ReviewError(
            "revise_not_supported",
            f"{item.get_kind_display()} items cannot be revised; accept or reject them.",
        )
    return reviser
