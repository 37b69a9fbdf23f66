"""A shipped order's address must score at least the threshold to be confirmed automatically.

Below it the order is held and an address review item opens with the parsed fields, the
reasons and the normalised address as the proposed correction. A disputed address is never
rejected outright: a person decides.
"""

import logging

from django.contrib.auth.models import AbstractBaseUser

from guardrails.services import audit_record

from ..addresses import (
    AddressReason,
    ReasonCode,
    Severity,
    address_min_score,
    address_validate,
)
from ..carriers import order_needs_delivery
from ..models import Order
from ..services import order_event_add, order_version_bump
from . import Finding, hold

logger = logging.getLogger(__name__)


def check_shipping_address(*, order: Order) -> list[Finding]:
    """Score the shipping address, and hold the order when it scores below the threshold.

    Run after the carrier check: an order without an address is fine when its first
    shipping line maps to a pickup service, or when it has no shipping lines at all
    (digital goods, a sale at the till). Any other order without an address is held.
    """
    if order.shipping_address is None:
        if not order_needs_delivery(order):
            return []
        return [_hold_missing_address(order)]

    result = address_validate(order.shipping_address)
    # Both saved by order_check_hygiene with the status (CHECKED_FIELDS).
    order.address_score = result.score
    order.address_reasons = result.reasons_as_dicts()

    threshold = address_min_score()
    if result.score >= threshold:
        return []

    item = review_item_open_address(
        order=order,
        proposal={
            "score": str(result.score),
            "threshold": str(threshold),
            "reasons": result.reasons_as_dicts(),
            "parsed": result.parsed,
            "normalized": result.normalized,
            "changed_fields": result.changed_fields,
            "comparison": result.comparison(),
        },
        reason=(
            f"Shipping address scored {result.score}, below {threshold}: "
            + "; ".join(reason.message for reason in result.reasons)
        ),
    )
    logger.info(
        "order held for its address",
        extra={
            "order": order.pk,
            "score": str(result.score),
            "reasons": [reason.code for reason in result.reasons],
        },
    )
    return [
        hold(
            "address_low_score",
            f"Shipping address scored {result.score} (minimum {threshold})",
            review_item=item.pk,
            data={"score": str(result.score), "reasons": [r.code for r in result.reasons]},
        )
    ]


def _hold_missing_address(order: Order) -> Finding:
    reason = AddressReason(
        code=ReasonCode.ADDRESS_MISSING,
        field="shipping_address",
        message="The order has shipping lines but no shipping address.",
        severity=Severity.ERROR,
    )
    # Both saved by order_check_hygiene with the status (CHECKED_FIELDS).
    order.address_score = 0
    order.address_reasons = [reason.as_dict()]
    # No correction can be proposed, so the reviewer rejects the item and fixes the order.
    item = review_item_open_address(
        order=order,
        proposal={
            "score": "0.00",
            "threshold": str(address_min_score()),
            "reasons": [reason.as_dict()],
        },
        reason=f"{reason.message} It needs an address before it can ship.",
    )
    return hold("address_missing", reason.message, review_item=item.pk)


def review_item_open_address(*, order: Order, proposal: dict, reason: str):
    from reviews.models import ReviewItem, ReviewKind

    item = ReviewItem.objects.create(
        kind=ReviewKind.ADDRESS,
        order=order,
        reason=reason,
        source_data={"shipping_address": order.shipping_address},
        proposal=proposal,
    )
    order_event_add(
        order=order,
        kind="review.opened",
        message=f"Review item #{item.pk} opened: shipping address needs a check.",
        data={"review_item": item.pk},
    )
    return item


def address_accept(*, item, order: Order, user: AbstractBaseUser) -> dict:
    """Accept handler for address items: apply the proposed correction to the order.

    The reviewer vouches for the corrected address, so the hold is settled even when the
    corrected address still has reasons, such as an invalid postcode that no rule can fix.
    Its new score and reasons are stored for the record.
    """
    from reviews.services import ReviewConflict, ReviewError

    corrected = item.proposal.get("normalized")
    if corrected is None:
        raise ReviewError(
            "no_correction",
            "There is no address to apply. Reject the item and fix the order at the channel.",
        )
    if order.shipping_address != item.source_data.get("shipping_address"):
        raise ReviewConflict(
            "address_changed",
            "The order's shipping address changed after this item opened; reload the queue.",
        )

    before = order.shipping_address
    changed = [
        key for key in sorted(set(before) | set(corrected)) if before.get(key) != corrected.get(key)
    ]
    result = address_validate(corrected)
    order.shipping_address = corrected
    order.address_score = result.score
    order.address_reasons = result.reasons_as_dicts()
    order.save(update_fields=["shipping_address", "address_score", "address_reasons", "updated_at"])
    order_version_bump(order, reason=f"address accepted in review item #{item.pk}")

    reason = f"Accepted in review item #{item.pk}"
    audit_record(
        action="order.address_corrected" if changed else "order.address_confirmed",
        target_type="order",
        target_id=order.pk,
        actor=user,
        reason=reason,
        before={"shipping_address": before},
        after={"shipping_address": corrected, "address_score": str(result.score)},
    )
    message = (
        f"Shipping address corrected in review item #{item.pk}: {', '.join(changed)}."
        if changed
        else f"Shipping address confirmed as received in review item #{item.pk}."
    )
    order_event_add(
        order=order,
        kind="order.address_corrected" if changed else "order.address_confirmed",
        message=message,
        actor=user,
        data={"review_item": item.pk, "changed_fields": changed},
    )
    decision = {
        "address": "corrected" if changed else "confirmed",
        "changed_fields": changed,
        "address_score": str(result.score),
    }
    resolved = _other_address_items_resolve(order=order, item=item)
    if resolved:
        decision["resolved"] = resolved
    return decision


def _other_address_items_resolve(*, order: Order, item) -> list[int]:
    """Close the order's other address items, such as an AI's proposed correction: they were
    about the address this decision replaced."""
    from reviews.models import ReviewKind
    from reviews.services import review_items_resolve_moot

    others = review_items_resolve_moot(
        order=order,
        kinds=[ReviewKind.ADDRESS],
        note=f"the shipping address was settled in review item #{item.pk}",
        data={"settled_by_item": item.pk},
        exclude_item_id=item.pk,
    )
    return [other.pk for other in others]
