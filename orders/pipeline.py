"""Processing of one recorded delivery: adapter, order creation, hygiene checks, order state."""

import json
import logging
import time
from decimal import Decimal

from django.conf import settings
from django.db import OperationalError, transaction

from catalog.models import Channel, Sku
from catalog.selectors import mappings_find_skus
from catalog.sql_rows import instances_insert
from guardrails.services import audit_record
from omsguard.money import is_currency, money_round

from .adapters import adapter_for
from .adapters.canonical import CATALOG_SKU
from .canonical import (
    AdapterError,
    CanonicalOrder,
    check_order_limits,
    check_storable_json,
    json_may_be_unstorable,
)
from .channel_holds import channel_hold_reasons, delivery_lock_with_channel
from .hygiene import CHECKED_FIELDS, order_lines_shared, order_run_hygiene
from .models import Delivery, DeliveryOutcome, Order, OrderLine, OrderStatus
from .services import (
    delivery_finish,
    delivery_mark_dead_letter,
    insert_unless_duplicate,
    order_cancel,
    order_event_add,
    order_events_batched,
    order_flag,
    order_hold,
    order_hold_incomplete,
    order_mark_ready,
    order_release_reservations,
    order_resolve_open_review_items,
    order_version_bump,
    order_writes_deferred,
)

ORDER_STATE_CANCELLED = "cancelled"
ORDER_STATE_INCOMPLETE = "incomplete"

logger = logging.getLogger(__name__)


def delivery_process(*, delivery_id: int, worker: str) -> Delivery:
    """Process a recorded delivery exactly once.

    The delivery row is locked for the whole run, so two workers that get the same delivery
    (a redelivered task) run one after the other, and the second sees it already processed.
    A payload that cannot become an order marks the delivery failed with the reason; it never
    raises, so a bad payload is not retried forever. Database outages (OperationalError) do
    raise, so the task retries them; any other unexpected error puts the delivery in the dead
    letter state, with the error, and is logged with its traceback.
    """
    try:
        return _delivery_process_locked(delivery_id=delivery_id, worker=worker)
    except OperationalError:
        raise
    except Exception as error:
        logger.exception("delivery processing failed", extra={"delivery": delivery_id})
        return delivery_mark_dead_letter(
            delivery_id=delivery_id,
            worker=worker,
            error=f"unexpected {type(error).__name__}: {error}"[:2000],
        )


def _delivery_process_locked(*, delivery_id: int, worker: str) -> Delivery:
    with transaction.atomic():
        # One query locks the delivery and reads the channel's hold state under a share lock,
        # before any order row is locked.
        delivery = delivery_lock_with_channel(
            delivery_id=delivery_id, commit_without_flush=_may_commit_without_flush()
        )
        if delivery.outcome != DeliveryOutcome.RECEIVED:
            logger.info("delivery already processed", extra={"delivery": delivery.pk})
            return delivery
        delivery = _delivery_apply(delivery=delivery, worker=worker)
        _commit_with_flush_if_callbacks_queued()
    return delivery


def _delivery_apply(*, delivery: Delivery, worker: str) -> Delivery:
    """Turn the locked, unprocessed delivery into an order or an update, and record the outcome."""
    delivery.attempts += 1
    _slow_down_for_tests()

    try:
        payload = _decode_json(delivery)
        if json_may_be_unstorable(bytes(delivery.body)):
            check_storable_json(payload)
        canonical = adapter_for(delivery.channel.kind).parse_order(payload)
        check_order_limits(canonical)
    except AdapterError as error:
        logger.warning(
            "delivery payload rejected",
            extra={"delivery": delivery.pk, "field": error.field, "reason": error.reason},
        )
        return delivery_finish(
            delivery=delivery, outcome=DeliveryOutcome.FAILED, worker=worker, error=str(error)
        )

    with order_events_batched():
        created = _order_create(delivery=delivery, canonical=canonical)
        if created is None:
            outcome, error = order_apply_update(delivery=delivery, canonical=canonical)
            return delivery_finish(delivery=delivery, outcome=outcome, worker=worker, error=error)

        order, lines = created
        if canonical.state == ORDER_STATE_CANCELLED:
            order_cancel(order=order, delivery=delivery)
        elif canonical.state == ORDER_STATE_INCOMPLETE:
            order_hold_incomplete(order=order)
        else:
            # The checks end by writing the order, its audit entry and its events, and then the
            # delivery is finished. Those writes go to PostgreSQL in one round trip.
            with order_writes_deferred():
                order_check_hygiene(order=order, lines=lines)
                return delivery_finish(
                    delivery=delivery, outcome=DeliveryOutcome.PROCESSED, worker=worker
                )
    return delivery_finish(delivery=delivery, outcome=DeliveryOutcome.PROCESSED, worker=worker)


def _may_commit_without_flush() -> bool:
    """Return whether processing may commit without waiting for PostgreSQL's WAL flush.

    Only the outermost transaction may, so that no caller's writes share the commit.
    _commit_with_flush_if_callbacks_queued restores the flush when the transaction queued an
    on_commit callback (a Celery task, an email, a cache clear). A PostgreSQL crash within
    three times wal_writer_delay (600 ms by default) of a commit without flush undoes the
    whole processing, so the delivery is "received" again and the sweep queues it again
    (docs/reliability.md, "Processing commits").
    """
    connection = transaction.get_connection()
    return (
        settings.OMSGUARD_PROCESSING_ASYNC_COMMIT
        and connection.vendor == "postgresql"
        and len(connection.atomic_blocks) == 1
    )


def _commit_with_flush_if_callbacks_queued() -> None:
    connection = transaction.get_connection()
    if connection.run_on_commit and _may_commit_without_flush():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = on")


def _slow_down_for_tests() -> None:
    # Lets the worker tests kill a worker while it has a delivery locked; 0 outside tests.
    delay = settings.OMSGUARD_TEST_PROCESSING_DELAY_SECONDS
    if delay > 0:
        time.sleep(delay)


def _decode_json(delivery: Delivery) -> object:
    try:
        return json.loads(bytes(delivery.body))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AdapterError("body", f"not valid JSON ({error})") from None
    except RecursionError:
        raise AdapterError("body", "JSON nested too deeply") from None


def order_fields(canonical: CanonicalOrder) -> dict:
    """Return the Order column values a canonical order sets, amounts rounded to its currency."""
    fields = {
        name: getattr(canonical, name)
        for name in (
            "taxes_included",
            "order_number",
            "source_name",
            "marketplace",
            "pos_register",
            "event_version",
            "currency",
            "presentment_currency",
            "customer_email",
            "customer_name",
            "shipping_address",
            "billing_address",
            "shipping_method",
            "shipping_lines",
            "placed_at",
            "source_updated_at",
            "customer_id",
            "in_store_pickup",
        )
    }
    currency = canonical.currency
    for name in ("subtotal", "shipping_total", "tax_total", "discount_total", "total"):
        fields[name] = money_round(getattr(canonical, name), currency)
    fields["presentment_total"] = _presentment_total(canonical)
    return fields


def _order_create(
    *, delivery: Delivery, canonical: CanonicalOrder
) -> tuple[Order, list[OrderLine]] | None:
    """Create the order and its lines; None when the channel order already exists.

    The insert skips an existing (channel, channel order id) instead of failing, so no
    savepoint is needed to carry on in the same transaction.
    """
    fields = order_fields(canonical)
    currency = canonical.currency
    order = Order(
        channel=delivery.channel,
        channel_order_id=canonical.channel_order_id,
        delivery=delivery,
        status=OrderStatus.RECEIVED,
        **fields,
    )
    if not insert_unless_duplicate(order):
        logger.info(
            "order already exists; delivery not applied",
            extra={"delivery": delivery.pk, "channel_order_id": canonical.channel_order_id},
        )
        return None

    skus = lines_find_skus(
        channel=delivery.channel, identifier_lists=[line.identifiers for line in canonical.lines]
    )
    lines = instances_insert(
        [
            OrderLine(
                order=order,
                position=line.position,
                channel_line_id=line.channel_line_id,
                channel_sku=line.channel_sku,
                channel_variant_id=line.channel_variant_id,
                title=line.title,
                quantity=line.quantity,
                unit_price=money_round(line.unit_price, currency),
                sku=sku,
                raw=line.raw,
            )
            for line, sku in zip(canonical.lines, skus, strict=True)
        ]
    )
    order_event_add(
        order=order,
        kind="order.received",
        message=f"Received from {delivery.channel} ({delivery.topic}).",
        data={"delivery": delivery.pk, "delivery_id": delivery.delivery_id},
    )
    return order, sorted(lines, key=lambda line: line.position)


def _presentment_total(canonical: CanonicalOrder) -> Decimal | None:
    if canonical.presentment_total is None:
        return None
    if not is_currency(canonical.presentment_currency):
        return canonical.presentment_total
    return money_round(canonical.presentment_total, canonical.presentment_currency)


def order_check_hygiene(*, order: Order, lines: list[OrderLine] | None = None) -> None:
    """Run the hygiene checks, record their flags, and hold the order or mark it ready.

    `lines` are the order's lines with their SKUs, in position order, when the caller has
    them because it just inserted them in this transaction. The stock check then skips
    reading their reservations, because none can exist yet. Otherwise they are read here.
    The checks share them instead of each reading them again.

    The order passes through "validated" in memory only: its status, with the fields the
    checks set (CHECKED_FIELDS), is written once at the end, inside the same transaction,
    so no other transaction could have seen the intermediate write.
    """
    order.status = OrderStatus.VALIDATED
    with order_lines_shared(order, lines, lines_new=lines is not None), order_events_batched():
        findings = order_run_hygiene(order=order)
        holds = [finding for finding in findings if finding["severity"] == "hold"]
        flags = [finding for finding in findings if finding["severity"] == "flag"]
        order_event_add(
            order=order,
            kind="order.validated",
            message=f"Hygiene checks: {len(holds)} holds, {len(flags)} flags.",
            data={"codes": [finding["code"] for finding in findings]},
        )

        # Open AI proposals keep the order on hold, and the hygiene checks do not see them.
        holds = [*_open_proposal_holds(order), *holds, *channel_hold_reasons(order.channel)]
        unsaved = ["status", *CHECKED_FIELDS]
        if flags:
            order_flag(order=order, flags=flags, also_save=unsaved)
        if holds:
            order_hold(order=order, reasons=holds, also_save=unsaved)
        else:
            order_mark_ready(order=order, also_save=unsaved)


def lines_find_skus(
    *, channel: Channel, identifier_lists: list[list[tuple[str, str]]]
) -> list[Sku | None]:
    """line_find_sku for each line's identifiers, with at most two queries for all of them."""
    by_code: dict[str, Sku] = {}
    catalog_codes = [
        next((value for kind, value in pairs if kind == CATALOG_SKU and value), None)
        for pairs in identifier_lists
    ]
    wanted_codes = {code for code in catalog_codes if code is not None}
    if wanted_codes:
        # Codes are unique, so this finds what .first() on one code would.
        active = Sku.objects.filter(code__in=wanted_codes, is_active=True)
        by_code = {sku.code: sku for sku in active}

    found: list[Sku | None] = [by_code.get(code) if code else None for code in catalog_codes]
    # A line that names a catalog SKU is decided by it; the others go by the channel mappings.
    mapped = [index for index, code in enumerate(catalog_codes) if code is None]
    skus = mappings_find_skus(
        channel=channel, identifier_lists=[identifier_lists[index] for index in mapped]
    )
    for index, sku in zip(mapped, skus, strict=True):
        found[index] = sku
    return found


def line_find_sku(*, channel: Channel, identifiers: list[tuple[str, str]]) -> Sku | None:
    """Find the line's SKU: the catalog SKU code it names, else the channel's mapping."""
    return lines_find_skus(channel=channel, identifier_lists=[identifiers])[0]


def order_apply_update(*, delivery: Delivery, canonical: CanonicalOrder) -> tuple[str, str]:
    """Apply a delivery for an order that already exists; return its (outcome, note).

    Only a delivery whose source_updated_at is newer than the stored order's changes it, so
    a retried or reordered delivery carrying an older copy of the order changes nothing.
    """
    order = (
        Order.objects.select_for_update(of=("self",))
        .select_related("channel")
        .get(channel=delivery.channel, channel_order_id=canonical.channel_order_id)
    )
    incoming = canonical.source_updated_at
    stored = order.source_updated_at
    if incoming is None:
        logger.info(
            "order already exists; delivery not applied",
            extra={"delivery": delivery.pk, "order": order.pk},
        )
        return DeliveryOutcome.DUPLICATE_ORDER, ""
    if stored is not None and incoming <= stored:
        if incoming == stored and _is_create_topic(delivery.topic):
            return DeliveryOutcome.DUPLICATE_ORDER, ""
        note = f"order {order.pk} was updated at {stored.isoformat()}, this copy at {incoming}"
        logger.info(
            "stale order update ignored", extra={"delivery": delivery.pk, "order": order.pk}
        )
        return DeliveryOutcome.STALE_UPDATE, note
    if order.status == OrderStatus.CANCELLED:
        note = f"order {order.pk} is cancelled; a cancelled order is not changed again"
        logger.info("update of cancelled order ignored", extra={"delivery": delivery.pk})
        return DeliveryOutcome.STALE_UPDATE, note

    if canonical.state == ORDER_STATE_CANCELLED:
        order.source_updated_at = incoming
        order.save(update_fields=["source_updated_at", "updated_at"])
        order_cancel(order=order, delivery=delivery)
        return DeliveryOutcome.PROCESSED, ""

    _order_replace(order=order, delivery=delivery, canonical=canonical)
    if canonical.state == ORDER_STATE_INCOMPLETE:
        order_hold_incomplete(order=order)
    else:
        order_check_hygiene(order=order)
    return DeliveryOutcome.PROCESSED, ""


def _open_proposal_holds(order: Order) -> list[dict]:
    """Return the order's hold reasons that belong to AI proposals still waiting for review."""
    from reviews.models import ReviewItem, ReviewStatus

    reasons = [r for r in order.hold_reasons if r.get("code") == "ai_decision"]
    if not reasons:
        return []
    open_ids = set(
        ReviewItem.objects.filter(
            pk__in=[r.get("review_item") for r in reasons], status=ReviewStatus.OPEN
        ).values_list("pk", flat=True)
    )
    return [r for r in reasons if r.get("review_item") in open_ids]


def _is_create_topic(topic: str) -> bool:
    return topic.endswith("create") or topic.endswith("created")


def _order_replace(*, order: Order, delivery: Delivery, canonical: CanonicalOrder) -> None:
    """Write a newer version of the order: fields and lines; findings are checked again."""
    note = (
        f"Order updated by the channel (delivery {delivery.delivery_id}); "
        "the checks ran again on the new version"
    )
    order_resolve_open_review_items(
        order=order, note=note, data={"delivery": delivery.pk}, keep_ai_proposals=True
    )
    order_release_reservations(order=order, reason=note)
    proposal_holds = _open_proposal_holds(order)

    before = _order_summary(order)
    for name, value in order_fields(canonical).items():
        setattr(order, name, value)
    # Hygiene sets these again from the new version.
    order.flags = []
    order.hold_reasons = proposal_holds
    order.carrier_service = None
    order.address_score = None
    order.address_reasons = []
    order.save()
    _lines_replace(order=order, canonical=canonical)
    # After the full save, which would otherwise write the old version back.
    order_version_bump(order, reason="updated by the channel")

    after = _order_summary(order)
    order_event_add(
        order=order,
        kind="order.updated",
        message=f"Updated from {delivery.channel} ({delivery.topic}).",
        data={"delivery": delivery.pk, "before": before, "after": after},
    )
    audit_record(
        action="order.updated",
        target_type="order",
        target_id=order.pk,
        system_label="channel update",
        reason=note,
        before=before,
        after=after,
    )


def _lines_replace(*, order: Order, canonical: CanonicalOrder) -> None:
    """Update lines in place by position, add new ones and delete those the update dropped."""
    currency = canonical.currency
    existing = {line.position: line for line in order.lines.all()}
    skus = lines_find_skus(
        channel=order.channel, identifier_lists=[line.identifiers for line in canonical.lines]
    )
    for line, sku in zip(canonical.lines, skus, strict=True):
        values = {
            "channel_line_id": line.channel_line_id,
            "channel_sku": line.channel_sku,
            "channel_variant_id": line.channel_variant_id,
            "title": line.title,
            "quantity": line.quantity,
            "unit_price": money_round(line.unit_price, currency),
            "sku": sku,
            "raw": line.raw,
        }
        stored = existing.pop(line.position, None)
        if stored is None:
            OrderLine.objects.create(order=order, position=line.position, **values)
            continue
        for name, value in values.items():
            setattr(stored, name, value)
        stored.save()

    dropped = list(existing.values())
    if not dropped:
        return
    from inventory.models import Reservation
    from reviews.models import ReviewItem

    # NOTE: reservations keep their order line (on_delete=PROTECT), so a dropped line that
    # ever had stock reserved stays on the order with its old values.
    reserved = set(
        Reservation.objects.filter(order_line__in=dropped).values_list("order_line", flat=True)
    )
    removable = [line for line in dropped if line.pk not in reserved]
    # Closed review items stay as history, detached from the deleted line.
    ReviewItem.objects.filter(order_line__in=removable).update(order_line=None)
    OrderLine.objects.filter(pk__in=[line.pk for line in removable]).delete()


def _order_summary(order: Order) -> dict:
    return {
        "status": order.status,
        "total": str(order.total),
        "currency": order.currency,
        "lines": order.lines.count(),
        "source_updated_at": (
            order.source_updated_at.isoformat() if order.source_updated_at else None
        ),
    }
