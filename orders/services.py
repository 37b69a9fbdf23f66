"""Writes for deliveries and orders: recording inbound deliveries, order state and timeline."""

import functools
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    connections,
    router,
    transaction,
)
from django.db.models import Model, signals
from django.db.models.sql import InsertQuery, UpdateQuery
from django.db.models.sql.compiler import SQLInsertCompiler
from django.utils import timezone

from catalog.models import Channel, Sku
from catalog.sql_rows import instances_insert
from guardrails.models import AuditEntry
from guardrails.services import audit_entry_build, audit_record, audit_record_with_event
from omsguard.db_cursors import client_binding_cursor

from .models import (
    ActorKind,
    CarrierService,
    Delivery,
    DeliveryOutcome,
    IdempotencyKey,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
)

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
    channel_version: str | None = None,
) -> tuple[Delivery, bool]:
    """Store an inbound delivery durably and queue its processing once the row is committed.

    Returns (delivery, created). A delivery id already recorded for the channel is not stored
    or queued again; this holds for concurrent copies too, because the second insert waits on
    the unique index and then inserts nothing.

    Outside a transaction (a webhook request) the one INSERT commits by itself: a single round
    trip to the database, with no BEGIN, savepoint or COMMIT of its own.

    With `channel_version` (a channel from orders.webhook_channels' cache), the INSERT writes
    only while the channel row still has that version; otherwise it raises ChannelChanged
    and nothing is stored.
    """
    delivery = Delivery(
        channel=channel,
        delivery_id=delivery_id,
        topic=topic,
        event_id=event_id,
        triggered_at=triggered_at,
        headers=headers,
        body=body,
        signature_valid=True,
    )
    if channel_version is None:
        inserted = insert_unless_duplicate(delivery)
    else:
        from .webhook_channels import delivery_insert_if_channel_unchanged

        inserted = delivery_insert_if_channel_unchanged(delivery, channel_version)
    if not inserted:
        existing = Delivery.objects.get(channel=channel, delivery_id=delivery_id)
        logger.info(
            "duplicate delivery acknowledged",
            extra={"channel": channel.code, "delivery_id": delivery_id, "delivery": existing.pk},
        )
        return existing, False

    transaction.on_commit(lambda: _enqueue_processing(delivery.pk))
    logger.info(
        "delivery recorded",
        extra={"channel": channel.code, "delivery_id": delivery_id, "delivery": delivery.pk},
    )
    return delivery, True


def insert_unless_duplicate(instance: Model) -> bool:
    """INSERT a new model instance with ON CONFLICT DO NOTHING; True when its row was inserted.

    On success the instance gets its primary key, as save() would give it. When a row with
    the same unique values exists, nothing is written and False is returned, without the
    IntegrityError that would abort the surrounding transaction. So no savepoint is needed
    around it, which saves two round trips per insert on PostgreSQL. The statement is built
    once per model: the insert then takes about 340 Python function calls, where the ORM,
    which builds it on every call, took about 570 (cProfile of the webhook view).

    NOTE: Django has no public API for ON CONFLICT DO NOTHING that returns the new key, so
    this writes the statement itself (PostgreSQL and SQLite 3.35+ syntax). It sends no
    pre_save or post_save signals (Delivery and Order have no receivers), and any unique
    constraint of the table counts as a duplicate, not only the one the caller has in mind.
    """
    model = type(instance)
    connection = connections[router.db_for_write(model)]
    statement, fields = _insert_statement(model, connection.alias)
    values = [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection=connection)
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(statement, values)
        row = cursor.fetchone()
    if row is None:
        return False
    setattr(instance, model._meta.pk.attname, row[0])
    instance._state.adding = False
    instance._state.db = connection.alias
    return True


@functools.cache
def _insert_statement(model: type[Model], alias: str) -> tuple[str, list]:
    meta = model._meta
    quote = connections[alias].ops.quote_name
    fields = [
        field
        for field in meta.local_concrete_fields
        if not field.generated and field is not meta.auto_field
    ]
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    statement = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders}) "  # noqa: S608
        f"ON CONFLICT DO NOTHING RETURNING {quote(meta.pk.column)}"
    )
    return statement, fields


def _enqueue_processing(delivery_pk: int) -> None:
    from .tasks import process_delivery

    try:
        process_delivery.delay(delivery_pk)
    except Exception as error:
        # The delivery is committed with outcome "received"; it is not lost: the sweep queues
        # it again, or `manage.py process_deliveries` processes it. A warning without the
        # traceback, because a broker outage fails every publish the same way.
        logger.warning(
            "could not queue delivery processing",
            extra={"delivery": delivery_pk, "error": type(error).__name__},
        )


def delivery_finish(*, delivery: Delivery, outcome: str, worker: str, error: str = "") -> Delivery:
    """Mark a locked delivery as processed with its outcome. Call inside its transaction."""
    delivery.outcome = outcome
    delivery.error = error
    delivery.processed_at = timezone.now()
    delivery.processed_by = worker
    _save_or_defer(delivery, ["outcome", "error", "processed_at", "processed_by", "attempts"])
    if outcome in (DeliveryOutcome.FAILED, DeliveryOutcome.DEAD_LETTER):
        # Imported here because reviews.services imports this module.
        from reviews.services import review_item_open_delivery_failed

        review_item_open_delivery_failed(delivery=delivery)
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


def delivery_mark_dead_letter(*, delivery_id: int, worker: str, error: str) -> Delivery:
    """Put a delivery in the dead letter state in a fresh transaction, after its run failed.

    A dead letter waits for a person: the admin lists it with its error and replays it.
    """
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.outcome != DeliveryOutcome.RECEIVED:
            return delivery
        delivery.attempts += 1
        delivery = delivery_finish(
            delivery=delivery, outcome=DeliveryOutcome.DEAD_LETTER, worker=worker, error=error
        )
    logger.error("delivery dead-lettered", extra={"delivery": delivery_id, "worker": worker})
    return delivery


REPLAYABLE_OUTCOMES = (DeliveryOutcome.DEAD_LETTER, DeliveryOutcome.FAILED)


class DeliveryNotReplayable(Exception):
    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        super().__init__(
            f"Delivery {delivery.pk} has outcome {delivery.outcome!r}; only dead-lettered or "
            "failed deliveries can be replayed."
        )


def delivery_replay(
    *,
    delivery_id: int,
    actor: AbstractBaseUser | None,
    reason: str,
    resolve_review_items: bool = True,
) -> Delivery:
    """Reset a dead-lettered or failed delivery to "received" and queue it again.

    Its open exception items are resolved, unless the caller is deciding one of them.
    """
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.outcome not in REPLAYABLE_OUTCOMES:
            raise DeliveryNotReplayable(delivery)
        before = {"outcome": delivery.outcome, "error": delivery.error}
        delivery.outcome = DeliveryOutcome.RECEIVED
        delivery.error = ""
        delivery.processed_at = None
        delivery.processed_by = ""
        delivery.save(update_fields=["outcome", "error", "processed_at", "processed_by"])
        audit_record(
            action="delivery.replayed",
            target_type="delivery",
            target_id=delivery.pk,
            actor=actor,
            system_label="" if actor else "delivery replay",
            reason=reason,
            before=before,
            after={"outcome": delivery.outcome},
        )
        if resolve_review_items:
            from reviews.services import review_items_resolve_for_replay

            review_items_resolve_for_replay(delivery=delivery, actor=actor)
        transaction.on_commit(lambda: _enqueue_processing(delivery.pk))
    logger.info("delivery replayed", extra={"delivery": delivery.pk})
    return delivery


def deliveries_sweep(*, older_than_seconds: int, limit: int = 500) -> list[int]:
    """Queue again the deliveries still "received" after older_than_seconds; return their ids.

    Covers a publish that failed (broker down) and a task that was lost. Queueing one twice
    is harmless because processing locks the delivery and skips it once it has an outcome.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        Delivery.objects.filter(outcome=DeliveryOutcome.RECEIVED, received_at__lt=cutoff)
        .order_by("received_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    for delivery_pk in ids:
        _enqueue_processing(delivery_pk)
    if ids:
        logger.warning("unprocessed deliveries queued again", extra={"count": len(ids)})
    return ids


# While order_events_batched() runs, the events order_event_add makes wait here.
_batched_events: ContextVar[list[OrderEvent] | None] = ContextVar("batched_events", default=None)


def order_event_add(
    *,
    order: Order,
    kind: str,
    message: str,
    actor: AbstractBaseUser | None = None,
    data: dict | None = None,
) -> OrderEvent:
    """Add an entry to the order's timeline.

    Inside order_events_batched() the event is inserted when that block ends, so the returned
    event has no primary key until then.
    """
    event = _order_event_build(order=order, kind=kind, message=message, actor=actor, data=data)
    batch = _batched_events.get()
    if batch is not None:
        batch.append(event)
    else:
        event.save(force_insert=True)
    return event


@contextmanager
def order_events_batched() -> Iterator[None]:
    """Insert the timeline events added inside this block with one INSERT when it ends.

    Processing an order adds three to six events; one statement instead of one each saves
    round trips. Call inside the transaction that writes them: when the block raises, its
    events are dropped with the transaction. Each event's created_at is the time of that
    INSERT, so their order by (created_at, id) stays the order they were added in. A nested
    block adds to the outer one's batch.
    """
    if _batched_events.get() is not None:
        yield
        return
    batch: list[OrderEvent] = []
    token = _batched_events.set(batch)
    try:
        yield
    finally:
        _batched_events.reset(token)
    if batch:
        instances_insert(batch)


# While order_writes_deferred() runs: the writes queued to be sent when it ends.
_deferred_writes: ContextVar[list["_DeferredWrite"] | None] = ContextVar(
    "deferred_writes", default=None
)


def order_events_batch_active() -> bool:
    """Return whether this code runs inside order_events_batched()."""
    return _batched_events.get() is not None


def order_writes_deferred_active() -> bool:
    """Return whether this code runs inside order_writes_deferred()."""
    return _deferred_writes.get() is not None


@dataclass(frozen=True)
class _DeferredWrite:
    sql: str
    params: Sequence[Any]
    # An INSERT's new instances, which get their primary keys from its RETURNING rows.
    inserted: Sequence[Model] = ()
    # An UPDATE's instance, whose row it must find, as save(update_fields=...) checks.
    updated: Model | None = None


@contextmanager
def order_writes_deferred() -> Iterator[None]:
    """Send the last writes of processing an order in one round trip when the block ends.

    Inside the block, order_hold, order_flag and order_mark_ready queue their UPDATE of the
    order and their automated audit entry, and delivery_finish its UPDATE of the delivery.
    When the block ends, those statements and the INSERT of the enclosing
    order_events_batched() block's events go to PostgreSQL as one query of several
    statements, in the order they were queued. Each statement carries the values of the
    moment it was queued, and an UPDATE that finds no row raises DatabaseError as save()
    does. When the block raises, nothing queued is sent.

    Only for the end of a piece of work: the block must not read back, or write by any
    other path, the rows whose writes it queued. Several statements in one query need
    psycopg's client-side binding, so they go through a client-binding cursor whatever the
    connection's own binding. On other databases, when the order's database is not the
    default one, or when a model has pre_save or post_save receivers, writes run at once.
    """
    connection = connections[router.db_for_write(Order)]
    if _deferred_writes.get() is not None or not _deferrable(connection):
        yield
        return
    writes: list[_DeferredWrite] = []
    token = _deferred_writes.set(writes)
    try:
        yield
    finally:
        _deferred_writes.reset(token)
    events = _batched_events.get()
    if events:
        writes.append(_insert_write(list(events), connection))
        events.clear()
    if writes:
        _writes_send(writes, connection)


def _deferrable(connection: Any) -> bool:
    # client_binding_cursor() opens its cursor on the default connection.
    return connection.vendor == "postgresql" and connection.alias == DEFAULT_DB_ALIAS


def _save_or_defer(instance: Model, update_fields: list[str]) -> None:
    """save(update_fields=...) now, or queued inside order_writes_deferred()."""
    writes = _deferred_writes.get()
    model = type(instance)
    if writes is None or _has_save_receivers(model):
        instance.save(update_fields=update_fields)
        return
    connection = connections[router.db_for_write(model)]
    # save() takes update_fields as a set; one UPDATE must not set a column twice.
    fields = [model._meta.get_field(name) for name in dict.fromkeys(update_fields)]
    query = UpdateQuery(model)
    # What Model._save_table passes to the UPDATE: pre_save sets auto_now fields.
    query.add_update_fields([(field, None, field.pre_save(instance, False)) for field in fields])
    query.add_filter("pk", instance.pk)
    sql, params = query.get_compiler(connection=connection).as_sql()
    writes.append(_DeferredWrite(sql=sql, params=params, updated=instance))


def _audit_record_or_defer(
    *, actor: AbstractBaseUser | None = None, system_label: str = "", **audit: Any
) -> None:
    """audit_record now, or queued inside order_writes_deferred() for an automated entry."""
    writes = _deferred_writes.get()
    if writes is None or actor is not None or not system_label or _has_save_receivers(AuditEntry):
        audit_record(actor=actor, system_label=system_label, **audit)
        return
    entry = audit_entry_build(actor=None, system_label=system_label, **audit)
    writes.append(_insert_write([entry], connections[router.db_for_write(AuditEntry)]))


def _has_save_receivers(model: type[Model]) -> bool:
    return signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model)


def _insert_write(instances: list[Model], connection: Any) -> _DeferredWrite:
    """Build one multi-row INSERT ... RETURNING of new instances of one model."""
    opts = instances[0]._meta
    fields = [
        field
        for field in opts.concrete_fields
        if not field.generated and field is not opts.auto_field
    ]
    query = InsertQuery(type(instances[0]))
    query.insert_values(fields, instances)
    # The generic compiler, as instances_insert uses: VALUES rows instead of UNNEST arrays.
    compiler = SQLInsertCompiler(query, connection, connection.alias)
    compiler.returning_fields = opts.db_returning_fields
    ((sql, params),) = compiler.as_sql()
    return _DeferredWrite(sql=sql, params=params, inserted=instances)


def _writes_send(writes: list[_DeferredWrite], connection: Any) -> None:
    sql = ";\n".join(write.sql for write in writes)
    params = [param for write in writes for param in write.params]
    with client_binding_cursor() as cursor:
        cursor.execute(sql, params)
        for index, write in enumerate(writes):
            if index:
                cursor.nextset()
            _write_result_apply(write, cursor, connection)


def _write_result_apply(write: _DeferredWrite, cursor: Any, connection: Any) -> None:
    if write.updated is not None and cursor.rowcount != 1:
        raise DatabaseError(
            f"Deferred update of {type(write.updated).__name__} {write.updated.pk} failed: "
            f"it matched {cursor.rowcount} rows instead of 1."
        )
    if not write.inserted:
        return
    rows = cursor.fetchall()
    returning = write.inserted[0]._meta.db_returning_fields
    for instance, row in zip(write.inserted, rows, strict=True):
        for value, field in zip(row, returning, strict=True):
            setattr(instance, field.attname, value)
        instance._state.adding = False
        instance._state.db = connection.alias


def order_event_unsaved(
    *,
    order: Order,
    kind: str,
    message: str,
    actor: AbstractBaseUser | None = None,
    data: dict | None = None,
) -> OrderEvent | None:
    """Build the event order_event_add would insert, for a caller that inserts it itself.

    Returns None inside order_events_batched(), where the caller must use order_event_add
    instead, so the batch keeps its events in the order they were added.
    """
    if _batched_events.get() is not None:
        return None
    return _order_event_build(order=order, kind=kind, message=message, actor=actor, data=data)


def _order_event_build(
    *, order: Order, kind: str, message: str, actor: AbstractBaseUser | None, data: dict | None
) -> OrderEvent:
    return OrderEvent(
        order=order,
        kind=kind,
        message=message,
        actor_kind=ActorKind.USER if actor is not None else ActorKind.SYSTEM,
        actor=actor,
        data=data or {},
    )


def order_version_bump(order: Order, *, reason: str, update_fields: tuple[str, ...] = ()) -> Order:
    """Count a material change of the order, so review approvals given before it are stale.

    Call inside the caller's transaction. The increment runs in the database, so two changes
    in concurrent transactions both count; the field on `order` is read back afterwards.
    `update_fields` are written from `order` in the same UPDATE, with the values
    save(update_fields=...) would write (auto_now fields get the current time).
    Hold reason and status changes the review flow makes are not material and must not call
    this, or the item that caused them would turn stale.
    """
    # One statement: Django's update() cannot return the new value, and reading it back would
    # cost a second round trip. Order has no save receivers, so skipping save() loses none.
    connection = connections[router.db_for_write(Order)]
    quote = connection.ops.quote_name
    table, column = quote(Order._meta.db_table), quote(Order._meta.get_field("version").column)
    fields = [Order._meta.get_field(name) for name in update_fields]
    assignments = [f"{quote(field.column)} = %s" for field in fields]
    values = [field.get_db_prep_save(field.pre_save(order, False), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {', '.join([*assignments, f'{column} = {column} + 1'])} "  # noqa: S608
            f"WHERE {quote('id')} = %s RETURNING {column}",
            [*values, order.pk],
        )
        row = cursor.fetchone()
    if row is None:
        raise Order.DoesNotExist(f"Order {order.pk} does not exist.")
    order.version = row[0]
    logger.info(
        "order version bumped",
        extra={"order": order.pk, "version": order.version, "reason": reason},
    )
    return order


def order_lock(*, order_id: int) -> Order:
    """Lock one order row for the rest of the transaction and return it freshly read."""
    return Order.objects.select_for_update(of=("self",)).select_related("channel").get(pk=order_id)


def order_hold(
    *,
    order: Order,
    reasons: list[dict],
    actor: AbstractBaseUser | None = None,
    also_save: Sequence[str] = (),
) -> Order:
    """Put an order on hold with the given reasons. Call inside a transaction, order locked.

    `also_save` names more fields the caller changed, written in the same UPDATE.
    """
    before = {"status": order.status, "hold_reasons": order.hold_reasons}
    order.status = OrderStatus.ON_HOLD
    order.hold_reasons = reasons
    _save_or_defer(order, ["status", "hold_reasons", *also_save, "updated_at"])

    summary = "; ".join(reason["message"] for reason in reasons)
    order_event_add(order=order, kind="order.held", message=f"Held: {summary}", actor=actor)
    _audit_record_or_defer(
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


def order_flag(*, order: Order, flags: list[dict], also_save: Sequence[str] = ()) -> Order:
    """Record findings that need a person's eye but hold nothing. Call with the order locked.

    `also_save` names more fields the caller changed, written in the same UPDATE.
    """
    order.flags = [*order.flags, *flags]
    _save_or_defer(order, ["flags", *also_save, "updated_at"])
    for finding in flags:
        order_event_add(order=order, kind="order.flagged", message=finding["message"], data=finding)
    logger.info("order flagged", extra={"order": order.pk, "flags": [f["code"] for f in flags]})
    return order


def order_mark_ready(
    *,
    order: Order,
    actor: AbstractBaseUser | None = None,
    also_save: Sequence[str] = (),
) -> Order:
    """Mark an order ready for fulfilment. Call inside a transaction, order locked.

    `also_save` names more fields the caller changed, written in the same UPDATE.
    """
    before = {"status": order.status, "hold_reasons": order.hold_reasons}
    was_held = order.status == OrderStatus.ON_HOLD
    order.status = OrderStatus.READY
    order.hold_reasons = []
    _save_or_defer(order, ["status", "hold_reasons", *also_save, "updated_at"])

    message = "Hold released; ready for fulfilment." if was_held else "Ready for fulfilment."
    order_event_add(order=order, kind="order.ready", message=message, actor=actor)
    _audit_record_or_defer(
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


def order_hold_incomplete(*, order: Order) -> Order:
    """Hold an order the channel has not completed yet; a complete update runs the checks."""
    # Imported here because orders.channel_holds imports this module.
    from .channel_holds import channel_hold_reasons

    return order_hold(
        order=order,
        reasons=[
            {
                "severity": "hold",
                "code": "incomplete",
                "message": "The channel has not sent the complete order yet",
            },
            *channel_hold_reasons(order.channel),
        ],
    )


def order_cancel(*, order: Order, delivery: Delivery) -> Order:
    """Cancel an order the channel cancelled: close its review items and free its stock.

    Call inside a transaction with the order locked.
    """
    note = f"Order cancelled by the channel (delivery {delivery.delivery_id})"
    order_resolve_open_review_items(order=order, note=note, data={"delivery": delivery.pk})
    order_release_reservations(order=order, reason=note)

    before = {"status": order.status, "hold_reasons": order.hold_reasons}
    order.status = OrderStatus.CANCELLED
    order.hold_reasons = []
    order.save(update_fields=["status", "hold_reasons", "updated_at"])
    order_version_bump(order, reason="cancelled by the channel")
    order_event_add(
        order=order, kind="order.cancelled", message=f"{note}.", data={"delivery": delivery.pk}
    )
    audit_record(
        action="order.cancelled",
        target_type="order",
        target_id=order.pk,
        system_label="channel update",
        reason=note,
        before=before,
        after={"status": order.status, "hold_reasons": []},
    )
    logger.info("order cancelled", extra={"order": order.pk, "delivery": delivery.pk})
    return order


def order_resolve_open_review_items(
    *,
    order: Order,
    note: str,
    data: dict,
    exclude_item_id: int | None = None,
    keep_ai_proposals: bool = False,
) -> list[int]:
    """Close the order's open review items as resolved (no person decided); return their ids.

    `exclude_item_id` is the item a person is deciding right now, which they close themselves.
    With `keep_ai_proposals`, items of queued AI proposals stay open: after a channel update
    they go stale (the order version moved on) and a reviewer rejects them.
    """
    from reviews.models import ReviewItem, ReviewStatus

    items = (
        ReviewItem.objects.select_for_update(of=("self",))
        .filter(order=order, status=ReviewStatus.OPEN)
        .exclude(pk=exclude_item_id)
        .order_by("pk")
    )
    if keep_ai_proposals:
        # One query for all items: those a Decision links to are AI proposals.
        items = items.filter(ai_decision__isnull=True)
    items = list(items)
    for item in items:
        item.status = ReviewStatus.RESOLVED
        item.decided_by = None
        item.decided_at = timezone.now()
        item.decision = {"no_longer_applies": True, **data}
        item.decision_note = note
        item.save(update_fields=["status", "decided_by", "decided_at", "decision", "decision_note"])
        order_event_add(
            order=order,
            kind="review.resolved",
            message=f"Review item #{item.pk} resolved: {note}.",
            data={"review_item": item.pk, "decision": item.decision},
        )
        audit_record(
            action="review_item.resolved",
            target_type="review_item",
            target_id=item.pk,
            system_label="channel update",
            reason=note,
            before={"status": ReviewStatus.OPEN, "proposal": item.proposal},
            after={"status": item.status, "decision": item.decision},
        )
    return [item.pk for item in items]


def order_release_reservations(*, order: Order, reason: str) -> int:
    """Release the order's active stock reservations; return how many were released."""
    from inventory.models import Reservation, ReservationStatus
    from inventory.reservations import reservation_release

    ids = list(
        Reservation.objects.filter(order=order, status=ReservationStatus.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for reservation_id in ids:
        reservation_release(reservation_id=reservation_id, actor=None, reason=reason)
    return len(ids)


class IdempotencyKeyTaken(Exception):
    """Another request already used the key; `existing` is its row."""

    def __init__(self, existing: IdempotencyKey) -> None:
        self.existing = existing
        super().__init__(f"Idempotency key {existing.key!r} is already used.")


# Response status stored while the first request with a key is still running.
IDEMPOTENCY_IN_PROGRESS = 0


def canonical_order_record(
    *,
    user: AbstractBaseUser,
    channel: Channel,
    key: str,
    request_sha256: str,
    body: bytes,
) -> Delivery:
    """Reserve the idempotency key and record the order body as a delivery, in one commit.

    Raises IdempotencyKeyTaken when the key exists; a concurrent request with the same key
    waits on the unique index until this one commits, then raises it. Processing is queued
    on commit, so in eager mode the order exists when this returns.
    """
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(
                user=user,
                key=key,
                request_sha256=request_sha256,
                response_status=IDEMPOTENCY_IN_PROGRESS,
                response_body={},
            )
            delivery, _ = delivery_record(
                channel=channel,
                delivery_id=f"api:{user.pk}:{key}",
                topic="api/orders",
                body=body,
                headers={"Idempotency-Key": key, "User": user.get_username()},
            )
    except IntegrityError:
        existing = IdempotencyKey.objects.filter(user=user, key=key).first()
        if existing is None:
            raise
        raise IdempotencyKeyTaken(existing) from None
    return delivery


def idempotency_key_complete(*, user: AbstractBaseUser, key: str, status: int, body: dict) -> None:
    """Store the response of the request that reserved the key, for its retries."""
    IdempotencyKey.objects.filter(user=user, key=key).update(
        response_status=status, response_body=body
    )


# --- Changes the guardrail engine's appliers make, for an AI decision or its reviewer ---------
# Each takes `actor` (a person) or `system_label` (e.g. "ai:gpt-sub/2024-06"), as audit_record
# does, and must run inside a transaction with the order locked.


def order_line_sku_substitute(
    *,
    line: OrderLine,
    sku: Sku,
    actor: AbstractBaseUser | None,
    system_label: str = "",
    reason: str,
) -> OrderLine:
    """Ship another SKU on a line. The caller moves the line's stock reservation."""
    before = line.sku.code if line.sku_id else None
    line.sku = sku
    line.save(update_fields=["sku"])
    order_version_bump(line.order, reason="line SKU substituted")

    audit_record(
        action="order_line.sku_substituted",
        target_type="order_line",
        target_id=line.pk,
        actor=actor,
        system_label=system_label,
        reason=reason,
        before={"sku": before},
        after={"sku": sku.code},
    )
    order_event_add(
        order=line.order,
        kind="order.sku_substituted",
        message=f"Line {line.position}: {before or 'no SKU'} substituted by {sku.code}: {reason}.",
        actor=actor,
        data={"line": line.position, "before": before, "after": sku.code},
    )
    return line


ADDRESS_FIELDS = ("shipping_address", "billing_address")


def order_address_set(
    *,
    order: Order,
    field: str,
    address: dict | None,
    actor: AbstractBaseUser | None,
    system_label: str = "",
    reason: str,
) -> Order:
    """Replace the order's shipping or billing address; a shipping address is scored again."""
    from .addresses import address_validate

    if field not in ADDRESS_FIELDS:
        raise ValueError(f"{field!r} is not an address field; use one of {ADDRESS_FIELDS}.")
    before = getattr(order, field)
    setattr(order, field, address)
    update_fields = [field, "updated_at"]
    after: dict[str, Any] = {field: address}
    if field == "shipping_address" and address is not None:
        result = address_validate(address)
        order.address_score = result.score
        order.address_reasons = result.reasons_as_dicts()
        update_fields += ["address_score", "address_reasons"]
        after["address_score"] = str(result.score)
    order.save(update_fields=update_fields)
    order_version_bump(order, reason=f"{field} changed")

    audit_record(
        action=f"order.{field}_changed",
        target_type="order",
        target_id=order.pk,
        actor=actor,
        system_label=system_label,
        reason=reason,
        before={field: before},
        after=after,
    )
    label = field.replace("_", " ").capitalize()
    # Addresses stay out of the timeline text; the audit entry has them.
    order_event_add(
        order=order,
        kind=f"order.{field}_changed",
        message=f"{label} changed: {reason}.",
        actor=actor,
        data={"field": field, "address_score": after.get("address_score")},
    )
    return order


def order_carrier_service_change(
    *,
    order: Order,
    service: CarrierService | None,
    actor: AbstractBaseUser | None,
    system_label: str = "",
    reason: str,
) -> Order:
    """Set the order's canonical carrier service, or clear it with None."""
    before = str(order.carrier_service) if order.carrier_service_id else None
    order.carrier_service = service
    # The service and the version in one UPDATE, the audit entry and its event in one INSERT.
    order_version_bump(
        order, reason="carrier service changed", update_fields=("carrier_service", "updated_at")
    )

    after = str(service) if service else None
    audit_record_with_event(
        audit={
            "action": "order.carrier_service_changed",
            "target_type": "order",
            "target_id": order.pk,
            "actor": actor,
            "system_label": system_label,
            "reason": reason,
            "before": {"carrier_service": before},
            "after": {"carrier_service": after},
        },
        event={
            "order": order,
            "kind": "order.carrier_set",
            "message": (
                f"Carrier service changed from {before or 'none'} to {after or 'none'}: {reason}."
            ),
            "actor": actor,
            "data": {"carrier_service": service.pk if service else None},
        },
    )
    return order


def order_pickup_set(
    *,
    order: Order,
    in_store_pickup: bool,
    actor: AbstractBaseUser | None,
    system_label: str = "",
    reason: str,
) -> Order:
    """Switch an order between in-store pickup and shipping."""
    if order.in_store_pickup == in_store_pickup:
        return order
    before = order.in_store_pickup
    order.in_store_pickup = in_store_pickup
    order.save(update_fields=["in_store_pickup", "updated_at"])
    order_version_bump(order, reason="pickup changed")

    audit_record(
        action="order.pickup_changed",
        target_type="order",
        target_id=order.pk,
        actor=actor,
        system_label=system_label,
        reason=reason,
        before={"in_store_pickup": before},
        after={"in_store_pickup": in_store_pickup},
    )
    mode = "in-store pickup" if in_store_pickup else "shipping"
    order_event_add(
        order=order,
        kind="order.pickup_changed",
        message=f"Fulfilment changed to {mode}: {reason}.",
        actor=actor,
        data={"in_store_pickup": in_store_pickup},
    )
    return order


def order_cancel_by_decision(
    *,
    order: Order,
    actor: AbstractBaseUser | None,
    system_label: str = "",
    reason: str,
    keep_review_item: int | None = None,
) -> Order:
    """Cancel an order on an approved or autonomous decision; free its stock and close its items.

    `keep_review_item` is the item being accepted right now, which its reviewer closes.
    """
    order_resolve_open_review_items(
        order=order, note=reason, data={"cancelled": True}, exclude_item_id=keep_review_item
    )
    order_release_reservations(order=order, reason=reason)

    before = {"status": order.status, "hold_reasons": order.hold_reasons}
    order.status = OrderStatus.CANCELLED
    order.hold_reasons = []
    order.save(update_fields=["status", "hold_reasons", "updated_at"])
    order_version_bump(order, reason="cancelled by a decision")

    order_event_add(
        order=order, kind="order.cancelled", message=f"Cancelled: {reason}.", actor=actor
    )
    audit_record(
        action="order.cancelled",
        target_type="order",
        target_id=order.pk,
        actor=actor,
        system_label=system_label,
        reason=reason,
        before=before,
        after={"status": order.status, "hold_reasons": []},
    )
    return order


def order_reinstate(
    *, order: Order, status: str, hold_reasons: list[dict], actor: AbstractBaseUser, reason: str
) -> Order:
    """Give a cancelled order back a status, e.g. when a person reverts a cancellation."""
    before = {"status": order.status, "hold_reasons": order.hold_reasons}
    order.status = status
    order.hold_reasons = hold_reasons
    order.save(update_fields=["status", "hold_reasons", "updated_at"])
    order_version_bump(order, reason="reinstated")

    order_event_add(
        order=order,
        kind="order.reinstated",
        message=f"Reinstated as {order.get_status_display().lower()}: {reason}.",
        actor=actor,
    )
    audit_record(
        action="order.reinstated",
        target_type="order",
        target_id=order.pk,
        actor=actor,
        reason=reason,
        before=before,
        after={"status": status, "hold_reasons": hold_reasons},
    )
    return order
