"""Writes for deliveries and orders: recording inbound deliveries, order state and timeline."""

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import Channel
from guardrails.services import audit_record

from .models import ActorKind, Delivery, DeliveryOutcome, Order, OrderEvent, OrderStatus

logger = logging.getLogger(__name__)


def delivery_record(
    *,
    channel: Channel,
    delivery_id: str,
    topic: str,
    body: bytes,
    headers: dict[str, str],
    event_id: str = "",
    triggered_at: Any = None,
) -> tuple[Delivery, bool]:
    """Store an inbound delivery durably and queue its processing once the row is committed.

    Returns (delivery, created). A delivery id already recorded for the channel is not stored
    or queued again; this holds for concurrent copies too, because the second insert waits on
    the unique index and then fails.
    """
    try:
        with transaction.atomic():
            delivery = Delivery.objects.create(
                channel=channel,
                delivery_id=delivery_id,
                topic=topic,
                event_id=event_id,
                triggered_at=triggered_at,
                headers=headers,
                body=body,
                signature_valid=True,
            )
            transaction.on_commit(lambda: _enqueue_processing(delivery.pk))
    except IntegrityError:
        existing = Delivery.objects.get(channel=channel, delivery_id=delivery_id)
        logger.info(
            "duplicate delivery acknowledged",
            extra={"channel": channel.code, "delivery_id": delivery_id, "delivery": existing.pk},
        )
        return existing, False

    logger.info(
        "delivery recorded",
        extra={"channel": channel.code, "delivery_id": delivery_id, "delivery": delivery.pk},
    )
    return delivery, True


def _enqueue_processing(delivery_pk: int) -> None:
    from .tasks import process_delivery

    try:
        process_delivery.delay(delivery_pk)
    except Exception:
        # The delivery is committed with outcome "received"; it is not lost, and it can be
        # processed later with `manage.py process_deliveries`.
        logger.exception("could not queue delivery processing", extra={"delivery": delivery_pk})


def delivery_finish(*, delivery: Delivery, outcome: str, worker: str, error: str = "") -> Delivery:
    """Mark a locked delivery as processed with its outcome. Call inside its transaction."""
    delivery.outcome = outcome
    delivery.error = error
    delivery.processed_at = timezone.now()
    delivery.processed_by = worker
    delivery.save(update_fields=["outcome", "error", "processed_at", "processed_by", "attempts"])
    return delivery


def delivery_mark_failed(*, delivery_id: int, worker: str, error: str) -> Delivery:
    """Mark a delivery failed in a fresh transaction, after its processing transaction failed."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.outcome != DeliveryOutcome.RECEIVED:
            return delivery
        delivery.attempts += 1
        return delivery_finish(
            delivery=delivery, outcome=DeliveryOutcome.FAILED, worker=worker, error=error
        )


def order_event_add(
    *,
    order: Order,
    kind: str,
    message: str,
    actor: AbstractBaseUser | None = None,
    data: dict | None = None,
) -> OrderEvent:
    return OrderEvent.objects.create(
        order=order,
        kind=kind,
        message=message,
        actor_kind=ActorKind.USER if actor is not None else ActorKind.SYSTEM,
        actor=actor,
        data=data or {},
    )


def order_lock(*, order_id: int) -> Order:
    """Lock one order row for the rest of the transaction and return it freshly read."""
    return Order.objects.select_for_update(of=("self",)).select_related("channel").get(pk=order_id)


def order_hold(
    *, order: Order, reasons: list[dict], actor: AbstractBaseUser | None = None
) -> Order:
    """Put an order on hold with the given reasons. Call inside a transaction, order locked."""
    before = {"status": order.status, "hold_reasons": order.hold_reasons}
    order.status = OrderStatus.ON_HOLD
    order.hold_reasons = reasons
    order.save(update_fields=["status", "hold_reasons", "updated_at"])

    summary = "; ".join(reason["message"] for reason in reasons)
    order_event_add(order=order, kind="order.held", message=f"Held: {summary}", actor=actor)
    audit_record(
        action="order.held",
        target_type="order",
        target_id=order.pk,
        actor=actor,
        system_label="" if actor else "ingestion hygiene",
        reason=summary,
        before=before,
        after={"status": order.status, "hold_reasons": reasons},
    )
    logger.info(
        "order held",
        extra={"order": order.pk, "reasons": [reason["code"] for reason in reasons]},
    )
    return order


def order_flag(*, order: Order, flags: list[dict]) -> Order:
    """Record findings that need a person's eye but hold nothing. Call with the order locked."""
    order.flags = [*order.flags, *flags]
    order.save(update_fields=["flags", "updated_at"])
    for finding in flags:
        order_event_add(order=order, kind="order.flagged", message=finding["message"], data=finding)
    logger.info("order flagged", extra={"order": order.pk, "flags": [f["code"] for f in flags]})
    return order


def order_mark_ready(*, order: Order, actor: AbstractBaseUser | None = None) -> Order:
    """Mark an order ready for fulfilment. Call inside a transaction, order locked."""
    before = {"status": order.status, "hold_reasons": order.hold_reasons}
    was_held = order.status == OrderStatus.ON_HOLD
    order.status = OrderStatus.READY
    order.hold_reasons = []
    order.save(update_fields=["status", "hold_reasons", "updated_at"])

    message = "Hold released; ready for fulfilment." if was_held else "Ready for fulfilment."
    order_event_add(order=order, kind="order.ready", message=message, actor=actor)
    audit_record(
        action="order.released" if was_held else "order.ready",
        target_type="order",
        target_id=order.pk,
        actor=actor,
        system_label="" if actor else "ingestion hygiene",
        before=before,
        after={"status": order.status, "hold_reasons": []},
    )
    return order


def order_update_hold_reasons(
    *, order: Order, reasons: list[dict], actor: AbstractBaseUser | None = None
) -> Order:
    """Replace an order's hold reasons, releasing the hold when none are left.

    Call inside a transaction with the order locked.
    """
    if not reasons:
        return order_mark_ready(order=order, actor=actor)
    if reasons == order.hold_reasons and order.status == OrderStatus.ON_HOLD:
        return order
    return order_hold(order=order, reasons=reasons, actor=actor)
