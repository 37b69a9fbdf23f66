"""Customer address confirmation: the customer confirms or corrects a doubtful shipping address.

When an address review item opens (a low address score at ingestion, or an AI address
correction waiting for approval) and the order has a customer email, an AddressConfirmation
is created and emailed after the transaction commits. The email links to
`/confirm/address/<token>/`, where the token is the confirmation's nonce signed with
`TimestampSigner(salt=SIGNER_SALT)`. The link works until `expires_at`
(`GuardrailSettings.address_confirmation_hours`) and only once.

- Confirm applies the proposed address to the order and resolves the item.
- Correct validates the customer's address. At or above the score threshold it is applied and
  the item is resolved. Below it, the item stays open with the customer's address as its
  proposal, for a person to decide.

A send that fails, or never ran because the broker was down, is tried again by the periodic
`address_confirmations_send_due`, up to OMSGUARD_ADDRESS_CONFIRMATION_MAX_ATTEMPTS attempts.
Logs carry ids only, never an address or an email address.
"""

import dataclasses
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from guardrails.services import audit_record
from orders.addresses import AddressResult, address_min_score, address_validate
from orders.canonical import address_reasons_named
from orders.hygiene.address import parsed_named
from orders.masking import mask_email, mask_text
from orders.models import Order, OrderStatus
from orders.services import order_address_set, order_event_add, order_update_hold_reasons

from .models import AddressConfirmation, ConfirmationAnswer, ReviewItem, ReviewKind, ReviewStatus

logger = logging.getLogger(__name__)

SIGNER_SALT = "omsguard.address-confirmation"
# A confirmation never tried is left this long to its send at commit before the periodic job
# takes it, so the two rarely race (the row lock settles it when they do).
SEND_GRACE = timedelta(minutes=1)
SEND_BATCH = 500
# Keys of a channel address that the fields of the correction form make stale.
DERIVED_KEYS = frozenset(
    {"province", "country", "country_name", "first_name", "last_name", "latitude", "longitude"}
)


class ConfirmationState:
    OPEN = "open"
    ANSWERED = "answered"
    EXPIRED = "expired"
    # The review item was decided by a person, or the order's address changed, first.
    SETTLED = "settled"


class ConfirmationInvalid(Exception):
    """The token is tampered with, malformed or names no confirmation."""


class ConfirmationNeedsCorrection(Exception):
    """The proposed address fails validation, so only a correction is accepted."""


def proposal_is_valid(confirmation: AddressConfirmation) -> bool:
    """Return whether the proposed address scores at least the threshold, so it may be confirmed."""
    return address_validate(confirmation.proposed_address).score >= address_min_score()


class ConfirmationClosed(Exception):
    """The confirmation can no longer be answered; `state` says why."""

    def __init__(self, state: str) -> None:
        self.state = state
        super().__init__(state)


@dataclass(frozen=True)
class CorrectionOutcome:
    confirmation: AddressConfirmation
    # True when the customer's address was applied and the item resolved; False when it
    # scored below the threshold and the item waits for a person.
    applied: bool
    score: str


# --- Requesting a confirmation -------------------------------------------------------------


@receiver(post_save, sender=ReviewItem, dispatch_uid="reviews.address_confirmation_request")
def address_confirmation_on_item_open(
    sender, instance: ReviewItem, created: bool, raw: bool = False, **kwargs
) -> None:
    if raw or not created or instance.kind != ReviewKind.ADDRESS or instance.order_id is None:
        return
    try:
        # A savepoint: a failed request must never cost the review item or the ingestion.
        with transaction.atomic():
            address_confirmation_request(item=instance)
    except Exception:
        logger.exception(
            "address confirmation request failed",
            extra={"review_item": instance.pk, "order": instance.order_id},
        )


def address_confirmation_request(*, item: ReviewItem) -> AddressConfirmation | None:
    """Create the item's confirmation and send it after commit; None when there is nothing to ask.

    Nothing is asked when the order has no customer email, the item proposes no address, or
    the customer already has an unanswered link for the order that still works.
    """
    from guardrails.selectors import guardrail_settings

    order = item.order
    proposed = proposed_address_for(item)
    if not order.customer_email or proposed is None:
        return None
    now = timezone.now()
    if _pending_for_order(order, now).exists():
        logger.info(
            "address confirmation already pending",
            extra={"review_item": item.pk, "order": order.pk},
        )
        return None

    hours = guardrail_settings().address_confirmation_hours
    confirmation = AddressConfirmation.objects.create(
        review_item=item,
        order=order,
        email=order.customer_email,
        proposed_address=proposed,
        nonce=secrets.token_urlsafe(32),
        expires_at=now + timedelta(hours=hours),
    )
    order_event_add(
        order=order,
        kind="address_confirmation.requested",
        message=(
            f"The customer is asked to confirm the shipping address of review item #{item.pk}; "
            f"the link works for {hours} hours."
        ),
        data={"review_item": item.pk, "confirmation": confirmation.pk},
    )
    transaction.on_commit(lambda: _send_enqueue(confirmation.pk))
    logger.info(
        "address confirmation requested",
        extra={"confirmation": confirmation.pk, "review_item": item.pk, "order": order.pk},
    )
    return confirmation


def proposed_address_for(item: ReviewItem) -> dict | None:
    """Return the address an address item proposes: the hygiene check's or the AI's correction."""
    proposal = item.proposal or {}
    if isinstance(proposal.get("normalized"), dict):
        return proposal["normalized"]
    after = proposal.get("after")
    if isinstance(after, dict) and isinstance(after.get("shipping_address"), dict):
        return after["shipping_address"]
    return None


def entered_address_for(item: ReviewItem) -> dict | None:
    """Return the shipping address the order had when the item opened."""
    source = item.source_data or {}
    if "shipping_address" in source:
        return source["shipping_address"]
    before = source.get("before")
    if isinstance(before, dict):
        return before.get("shipping_address")
    return None


# --- Sending --------------------------------------------------------------------------------


def address_confirmation_send(*, confirmation_id: int) -> bool:
    """Email one confirmation unless it was sent, answered, expired or its item closed.

    Returns True when this call sent it. A failure is counted in `send_attempts` and kept in
    `last_error` (email addresses masked) for the periodic job to try again.
    """
    max_attempts = settings.OMSGUARD_ADDRESS_CONFIRMATION_MAX_ATTEMPTS
    with transaction.atomic():
        confirmation = (
            AddressConfirmation.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("order", "review_item")
            .filter(pk=confirmation_id, sent_at__isnull=True)
            .first()
        )
        if confirmation is None or confirmation.send_attempts >= max_attempts:
            return False
        if confirmation_state(confirmation) != ConfirmationState.OPEN:
            return False

        confirmation.send_attempts += 1
        try:
            _email_send(confirmation)
        except Exception as error:
            confirmation.last_error = mask_text(f"{type(error).__name__}: {error}")[:2000]
            confirmation.save(update_fields=["send_attempts", "last_error"])
            logger.warning(
                "address confirmation email failed",
                extra={
                    "confirmation": confirmation.pk,
                    "order": confirmation.order_id,
                    "attempt": confirmation.send_attempts,
                    "max_attempts": max_attempts,
                    "error": type(error).__name__,
                },
            )
            return False

        confirmation.sent_at = timezone.now()
        confirmation.last_error = ""
        confirmation.save(update_fields=["send_attempts", "sent_at", "last_error"])
        order_event_add(
            order=confirmation.order,
            kind="address_confirmation.sent",
            message="Address confirmation emailed to the customer.",
            data={"confirmation": confirmation.pk, "attempt": confirmation.send_attempts},
        )
    logger.info(
        "address confirmation sent",
        extra={"confirmation": confirmation.pk, "order": confirmation.order_id},
    )
    return True


def address_confirmations_send_due(*, now: datetime | None = None) -> list[int]:
    """Send every confirmation still unsent and still wanted; return the ids sent now.

    Picks up sends that failed (each run is one more attempt) and sends that never ran, e.g.
    because the broker was down at commit.
    """
    now = now or timezone.now()
    due = list(
        AddressConfirmation.objects.filter(
            sent_at__isnull=True,
            answered_at__isnull=True,
            expires_at__gt=now,
            send_attempts__lt=settings.OMSGUARD_ADDRESS_CONFIRMATION_MAX_ATTEMPTS,
            review_item__status=ReviewStatus.OPEN,
        )
        .filter(Q(send_attempts__gt=0) | Q(created_at__lte=now - SEND_GRACE))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)[:SEND_BATCH]
    )
    sent = [pk for pk in due if address_confirmation_send(confirmation_id=pk)]
    if due:
        logger.info(
            "address confirmations sent by the periodic job",
            extra={"due": len(due), "sent": len(sent)},
        )
    return sent


def address_confirmation_token(confirmation: AddressConfirmation) -> str:
    return signing.TimestampSigner(salt=SIGNER_SALT).sign(confirmation.nonce)


def address_confirmation_url(confirmation: AddressConfirmation) -> str:
    """Build the absolute link for the email, on OMSGUARD_PUBLIC_URL."""
    path = reverse("confirm:address", args=[address_confirmation_token(confirmation)])
    return f"{settings.OMSGUARD_PUBLIC_URL}{path}"


def _email_send(confirmation: AddressConfirmation) -> None:
    order = confirmation.order
    context = {
        "order_number": order.order_number or str(order.pk),
        "url": address_confirmation_url(confirmation),
        "proposed_lines": address_lines(confirmation.proposed_address),
        "expires_at": confirmation.expires_at,
    }
    message = EmailMultiAlternatives(
        subject=f"Please confirm the delivery address of order {context['order_number']}",
        body=render_to_string("reviews/confirm/email.txt", context),
        to=[confirmation.email],
    )
    message.attach_alternative(render_to_string("reviews/confirm/email.html", context), "text/html")
    message.send()


def _send_enqueue(confirmation_id: int) -> None:
    from .confirmation_tasks import address_confirmation_send_task

    try:
        address_confirmation_send_task.delay(confirmation_id)
    except Exception:
        # The periodic job sends it within a few minutes.
        logger.exception(
            "could not queue the address confirmation email",
            extra={"confirmation": confirmation_id},
        )


# --- Answering ------------------------------------------------------------------------------


def address_confirmation_for_token(token: str) -> AddressConfirmation:
    """Return the confirmation a link names; raises ConfirmationInvalid for a bad token."""
    nonce = _nonce_from_token(token)
    confirmation = (
        AddressConfirmation.objects.select_related("order", "review_item")
        .filter(nonce=nonce)
        .first()
    )
    if confirmation is None:
        raise ConfirmationInvalid("unknown nonce")
    return confirmation


def confirmation_state(confirmation: AddressConfirmation, *, now: datetime | None = None) -> str:
    """Return whether the link may still be answered. An answer outranks expiry and settlement."""
    now = now or timezone.now()
    if confirmation.answered_at is not None:
        return ConfirmationState.ANSWERED
    if now >= confirmation.expires_at:
        return ConfirmationState.EXPIRED
    item = confirmation.review_item
    if not item.is_open or confirmation.order.shipping_address != entered_address_for(item):
        return ConfirmationState.SETTLED
    return ConfirmationState.OPEN


def address_confirmation_confirm(*, token: str) -> AddressConfirmation:
    """Apply the proposed address, resolve the item as decided by the customer, release the hold.

    Raises ConfirmationInvalid, ConfirmationClosed (answered, expired or settled), or
    ConfirmationNeedsCorrection when the proposed address itself fails validation.
    """
    with transaction.atomic():
        confirmation, item, order = _lock_open(token)
        if not proposal_is_valid(confirmation):
            # Confirming an address known to fail validation would ship to it; ask for the fix.
            raise ConfirmationNeedsCorrection()
        label = customer_label(confirmation)
        order_address_set(
            order=order,
            field="shipping_address",
            address=confirmation.proposed_address,
            actor=None,
            system_label=label,
            reason=f"Confirmed by the customer for review item #{item.pk}",
        )
        _answer_record(confirmation, ConfirmationAnswer.CONFIRMED)
        _item_resolve_by_customer(
            item, order, confirmation, label=label, score=str(order.address_score)
        )
    logger.info(
        "address confirmed by the customer",
        extra={"confirmation": confirmation.pk, "order": order.pk, "review_item": item.pk},
    )
    return confirmation


def address_confirmation_correct(*, token: str, address: dict) -> CorrectionOutcome:
    """Record the customer's address; apply it when it scores at least the threshold.

    Below the threshold the order keeps its address and the item stays open with the
    customer's address as its proposal. Raises ConfirmationInvalid or ConfirmationClosed.
    """
    with transaction.atomic():
        confirmation, item, order = _lock_open(token)
        label = customer_label(confirmation)
        corrected = _address_merged(confirmation.proposed_address, address)
        result = address_validate(corrected)
        confirmation.corrected_address = corrected
        _answer_record(confirmation, ConfirmationAnswer.CORRECTED)

        applied = result.score >= address_min_score()
        if applied:
            order_address_set(
                order=order,
                field="shipping_address",
                address=result.normalized,
                actor=None,
                system_label=label,
                reason=f"Corrected by the customer for review item #{item.pk}",
            )
            _item_resolve_by_customer(
                item, order, confirmation, label=label, score=str(result.score)
            )
        else:
            _item_propose_customer_address(item, order, confirmation, result, label=label)
    logger.info(
        "address corrected by the customer",
        extra={
            "confirmation": confirmation.pk,
            "order": order.pk,
            "review_item": item.pk,
            "score": str(result.score),
            "applied": applied,
        },
    )
    return CorrectionOutcome(confirmation=confirmation, applied=applied, score=str(result.score))


def customer_label(confirmation: AddressConfirmation) -> str:
    """Return the audit actor of a customer's answer, e.g. "customer a***@example.com"."""
    return f"customer {mask_email(confirmation.email)}"


def time_to_answer(confirmation: AddressConfirmation) -> timedelta | None:
    """Return how long the customer took to answer, from the request; None while unanswered."""
    if confirmation.answered_at is None:
        return None
    return confirmation.answered_at - confirmation.created_at


def address_lines(address: dict | None) -> list[str]:
    """Format an address as the lines of a label, for emails and the confirmation page."""
    if not address:
        return []
    name = address.get("name") or " ".join(
        part for part in (address.get("first_name"), address.get("last_name")) if part
    )
    locality = " ".join(
        part
        for part in (
            address.get("city"),
            address.get("province_code") or address.get("province"),
            address.get("zip"),
        )
        if part
    )
    country = address.get("country_code") or address.get("country")
    lines = [name, address.get("company"), address.get("address1"), address.get("address2")]
    return [str(line) for line in [*lines, locality, country] if line]


# --- Steps ------------------------------------------------------------------------------------


def _nonce_from_token(token: str) -> str:
    try:
        return signing.TimestampSigner(salt=SIGNER_SALT).unsign(token)
    except signing.BadSignature:
        raise ConfirmationInvalid("bad signature") from None


def _pending_for_order(order: Order, now: datetime):
    return AddressConfirmation.objects.filter(
        order=order,
        answered_at__isnull=True,
        expires_at__gt=now,
        review_item__status=ReviewStatus.OPEN,
    )


def _lock_open(token: str) -> tuple[AddressConfirmation, ReviewItem, Order]:
    """Lock the confirmation, then its item, then its order (the review service's order)."""
    from orders.services import order_lock

    nonce = _nonce_from_token(token)
    confirmation = (
        AddressConfirmation.objects.select_for_update(of=("self",)).filter(nonce=nonce).first()
    )
    if confirmation is None:
        raise ConfirmationInvalid("unknown nonce")
    item = ReviewItem.objects.select_for_update(of=("self",)).get(pk=confirmation.review_item_id)
    order = order_lock(order_id=confirmation.order_id)
    item.order = order
    confirmation.review_item = item
    confirmation.order = order

    state = confirmation_state(confirmation)
    if state != ConfirmationState.OPEN:
        raise ConfirmationClosed(state)
    return confirmation, item, order


def _address_merged(proposed: dict, fields: dict) -> dict:
    """Lay the customer's fields over the proposed address, without the keys they make stale."""
    kept = {key: value for key, value in proposed.items() if key not in DERIVED_KEYS}
    return {**kept, **{key: value or None for key, value in fields.items()}}


def _answer_record(confirmation: AddressConfirmation, answer: str) -> None:
    confirmation.answer = answer
    confirmation.answered_at = timezone.now()
    confirmation.save(update_fields=["answer", "answered_at", "corrected_address"])


def _item_resolve_by_customer(
    item: ReviewItem, order: Order, confirmation: AddressConfirmation, *, label: str, score: str
) -> None:
    answer = confirmation.answer
    elapsed = time_to_answer(confirmation)
    decision = {
        "by": "customer",
        "answer": answer,
        "confirmation": confirmation.pk,
        "address_score": score,
        "time_to_answer_seconds": int(elapsed.total_seconds()),
    }
    note = f"the customer {answer} the address"
    item.status = ReviewStatus.RESOLVED
    item.decided_by = None
    item.decided_at = confirmation.answered_at
    item.decision = decision
    item.decision_note = note
    item.save(update_fields=["status", "decided_by", "decided_at", "decision", "decision_note"])
    _ai_decision_outcome_set(item, agreed=answer == ConfirmationAnswer.CONFIRMED)

    order_event_add(
        order=order,
        kind="review.resolved",
        message=f"Review item #{item.pk} resolved: {note}.",
        data={"review_item": item.pk, "decision": decision},
    )
    audit_record(
        action="review_item.resolved",
        target_type="review_item",
        target_id=item.pk,
        system_label=label,
        reason=f"Address {answer} by the customer",
        before={"status": ReviewStatus.OPEN},
        after={"status": ReviewStatus.RESOLVED, "decision": decision},
    )
    if order.status != OrderStatus.CANCELLED:
        remaining = [r for r in order.hold_reasons if r.get("review_item") != item.pk]
        order_update_hold_reasons(order=order, reasons=remaining)


def _item_propose_customer_address(
    item: ReviewItem,
    order: Order,
    confirmation: AddressConfirmation,
    result: AddressResult,
    *,
    label: str,
) -> None:
    """Keep the item open with the customer's address as the proposal a person decides on.

    An address item of the hygiene check applies `normalized` when accepted, so it becomes
    the customer's address. An AI correction's item applies its decision, so there the
    customer's address is shown beside it and a reviewer applies it by revising the item.
    """
    threshold = address_min_score()
    # Compare with the address on the order, which is what the item's reviewer changes.
    against_order = dataclasses.replace(result, original=order.shipping_address or {})
    customer = {
        "confirmation": confirmation.pk,
        "address": confirmation.corrected_address,
        "normalized": result.normalized,
        "score": str(result.score),
        "threshold": str(threshold),
        "reasons": address_reasons_named(result.reasons_as_dicts()),
        "answered_at": confirmation.answered_at.isoformat(),
    }
    before = item.proposal
    proposal = {**before, "customer_correction": customer}
    if "normalized" in before:
        proposal |= {
            "normalized": result.normalized,
            "parsed": parsed_named(result.parsed, confirmation.corrected_address),
            "changed_fields": against_order.changed_fields,
            "comparison": against_order.comparison(),
        }
    item.proposal = proposal
    item.save(update_fields=["proposal"])

    order_event_add(
        order=order,
        kind="address_confirmation.corrected",
        message=(
            f"The customer corrected the address, but it scores {result.score} (minimum "
            f"{threshold}); review item #{item.pk} waits for a person with their address."
        ),
        data={"review_item": item.pk, "confirmation": confirmation.pk, "score": str(result.score)},
    )
    audit_record(
        action="review_item.customer_corrected",
        target_type="review_item",
        target_id=item.pk,
        system_label=label,
        reason=f"The customer's address scores {result.score}, below {threshold}",
        before={"proposal": before},
        after={"proposal": proposal},
    )


def _ai_decision_outcome_set(item: ReviewItem, *, agreed: bool) -> None:
    """Mark an AI correction the customer confirmed as agreed, and a corrected one as disagreed."""
    from guardrails.models import Decision, ReviewOutcome

    Decision.objects.filter(review_item_id=item.pk).update(
        review_outcome=ReviewOutcome.AGREED if agreed else ReviewOutcome.DISAGREED,
        reviewed_at=timezone.now(),
    )
