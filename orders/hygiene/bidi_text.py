"""Channel text that CS agents read must not contain Unicode bidirectional controls.

Embeddings, overrides and isolates (omsguard.json_fields.BIDI_CONTROLS) change the order in
which the text after them is displayed, so a customer name or a line title can read
differently on the queue page from what the channel stored. The shipping address has its own
check (orders.hygiene.address). This one covers the customer name, the billing address, the
line titles and the shipping method.

A channel's customer typed the text, so the order is held rather than rejected: a
`bidi_text` review item lists each field with the code points found. Accepting it removes
the controls from those fields and releases the hold; rejecting it keeps the order on hold.
The raw payload and each line's `raw` keep the text as the channel sent it.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser

from guardrails.services import audit_record
from omsguard.json_fields import BIDI_CONTROLS, bidi_controls_in

from ..canonical import address_field_name
from ..models import Order, OrderLine
from ..services import order_event_add, order_version_bump
from . import Finding, hold

logger = logging.getLogger(__name__)

# BIDI_TEXT is both the review item kind and the code of the hold that names the item.
# REMOVE_PROPOSAL is the action the item proposes.
BIDI_TEXT = "bidi_text"
REMOVE_PROPOSAL = "remove_bidi_controls"


@dataclass(frozen=True)
class BidiField:
    """A text field with bidirectional controls, named as the canonical order format names it."""

    field: str
    value: str
    controls: list[str]

    def as_dict(self) -> dict:
        return {
            "field": self.field,
            "value": self.value,
            # What the queue page displays: each control as its code point, so that nothing
            # on the page changes the display order.
            "shown": BIDI_CONTROLS.sub(lambda match: f"[U+{ord(match.group()):04X}]", self.value),
            "cleaned": BIDI_CONTROLS.sub("", self.value),
            "controls": self.controls,
        }


def check_bidi_text(*, order: Order) -> list[Finding]:
    """Open a review item and return a hold when the order's customer name, billing address,
    line titles or shipping method contain bidirectional controls.

    The item names each field and the code points found in it.
    """
    found = bidi_fields_find(order)
    if not found:
        return []

    names = [entry.field for entry in found]
    item = _review_item_open(order, found)
    logger.info(
        "order held for bidirectional controls",
        extra={"order": order.pk, "review_item": item.pk, "fields": names},
    )
    return [
        hold(
            BIDI_TEXT,
            f"Bidirectional control characters in {', '.join(names)} wait for review item "
            f"#{item.pk}",
            review_item=item.pk,
            data={"fields": names},
        )
    ]


def bidi_fields_find(order: Order) -> list[BidiField]:
    """Return the order's checked text fields that contain bidirectional controls."""
    found = []
    for name, value in _display_texts(order):
        controls = bidi_controls_in(value)
        if controls:
            found.append(BidiField(field=name, value=value, controls=controls))
    return found


def _display_texts(order: Order) -> Iterator[tuple[str, str]]:
    """Yield (canonical field name, text) for each checked field of the order."""
    yield "customer.name", order.customer_name
    for key, value in (order.billing_address or {}).items():
        if isinstance(value, str):
            yield f"billing_address.{address_field_name(key)}", value
    yield "shipping.method", order.shipping_method
    for line in order.lines.all():
        yield _line_field(line), line.title


def _line_field(line: OrderLine) -> str:
    # The canonical format counts lines from 0; positions start at 1.
    return f"lines[{line.position - 1}].title"


def _review_item_open(order: Order, found: list[BidiField]):
    from reviews.models import ReviewItem

    messages = [
        f"{entry.field} contains Unicode bidirectional control characters "
        f"({', '.join(entry.controls)}), which can make it display in another order."
        for entry in found
    ]
    item = ReviewItem.objects.create(
        kind=BIDI_TEXT,
        order=order,
        reason=" ".join(messages) + " Accepting removes them.",
        source_data={"fields": {entry.field: entry.value for entry in found}},
        proposal={"action": REMOVE_PROPOSAL, "fields": [entry.as_dict() for entry in found]},
    )
    order_event_add(
        order=order,
        kind="review.opened",
        message=(
            f"Review item #{item.pk} opened: bidirectional control characters in "
            f"{', '.join(entry.field for entry in found)}."
        ),
        data={"review_item": item.pk},
    )
    return item


def bidi_text_accept(*, item, order: Order, user: AbstractBaseUser) -> dict:
    """Remove the controls from the fields a bidi_text item lists, as its accept handler.

    The review flow rejects the accept when the order changed after the item opened (its
    version), so the fields that still have controls are the ones the item lists. The flow
    also removes the item's hold reason afterwards.
    """
    from reviews.services import ReviewError

    if item.proposal.get("action") != REMOVE_PROPOSAL:
        raise ReviewError(
            "unsupported_proposal",
            f"Review item #{item.pk} proposes no change; reject it and handle the order.",
        )

    before, after = _controls_remove(order)
    if after:
        order_version_bump(
            order,
            reason=f"bidirectional controls removed in review item #{item.pk}",
            update_fields=("customer_name", "billing_address", "shipping_method", "updated_at"),
        )
    fields = sorted(after)
    audit_record(
        action="order.bidi_controls_removed",
        target_type="order",
        target_id=order.pk,
        actor=user,
        reason=f"Accepted in review item #{item.pk}",
        before=before,
        after=after,
    )
    order_event_add(
        order=order,
        kind="order.bidi_controls_removed",
        message=(
            f"Bidirectional control characters removed in review item #{item.pk}: "
            f"{', '.join(fields) or 'none were left'}."
        ),
        actor=user,
        data={"review_item": item.pk, "fields": fields},
    )
    logger.info(
        "bidirectional controls removed",
        extra={"order": order.pk, "review_item": item.pk, "fields": fields},
    )
    return {"action": REMOVE_PROPOSAL, "fields": fields}


def _controls_remove(order: Order) -> tuple[dict, dict]:
    """Remove the controls from every checked field of the order, and save the changed lines.

    Returns the changed fields' values before and after, keyed by canonical field name. The
    order's own columns are left for the caller to save.
    """
    before: dict[str, str] = {}
    after: dict[str, str] = {}

    def cleaned(name: str, value: str) -> str:
        without = BIDI_CONTROLS.sub("", value)
        if without != value:
            before[name], after[name] = value, without
        return without

    order.customer_name = cleaned("customer.name", order.customer_name)
    order.shipping_method = cleaned("shipping.method", order.shipping_method)
    if order.billing_address:
        order.billing_address = {
            key: cleaned(f"billing_address.{address_field_name(key)}", value)
            if isinstance(value, str)
            else value
            for key, value in order.billing_address.items()
        }
    for line in order.lines.all():
        title = cleaned(_line_field(line), line.title)
        if title != line.title:
            line.title = title
            line.save(update_fields=["title"])
    return before, after
