"""Writes for stock: applying stock events, and recording counted discrepancies.

A stock event is applied at most once per (source, event id), and only when its version is
newer than the version of the last event applied to that SKU and location. The corrections
that discrepancy_record posts are the exception: they skip the version check. The stock level
row is locked while an event is decided and applied, so events for one SKU and location apply
one at a time.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.models import Sku
from guardrails.services import audit_record
from reviews.models import ReviewItem, ReviewKind, ReviewStatus

from .models import (
    InventoryDiscrepancy,
    Location,
    StockEvent,
    StockEventKind,
    StockEventOutcome,
    StockLevel,
)

logger = logging.getLogger(__name__)

# The largest on-hand count a stock level column (a PostgreSQL integer) can store.
MAX_ON_HAND = 2**31 - 1
# The source name of the absolute events that discrepancy records post as corrections.
COUNT_SOURCE = "stock-count"
LEVEL_CREATE_ATTEMPTS = 3


@dataclass(frozen=True)
class StockEventInput:
    source: str
    event_id: str
    sku: Sku
    location: Location
    kind: str
    quantity: int
    version: int
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class StockEventResult:
    """The stored event, and whether this request was a replay of it."""

    event: StockEvent
    duplicate: bool

    @property
    def outcome(self) -> str:
        return StockEventOutcome.DUPLICATE if self.duplicate else self.event.outcome


class StockEventConflict(Exception):
    """An event id that the source already used for a different stock change."""

    code = "event_id_reused"

    def __init__(self, event: StockEvent) -> None:
        self.event = event
        super().__init__(
            f"Event {event.event_id!r} from {event.source!r} was already received with different "
            f"content ({event.kind} {event.quantity} of {event.sku.code} at "
            f"{event.location.code}, version {event.version}). Send a new event id."
        )


def stock_event_record(
    *, data: StockEventInput, posted_by: AbstractBaseUser | None = None
) -> StockEventResult:
    """Record one stock event and apply it unless it is stale or would break the stock rules.

    A replay of a recorded (source, event id) changes nothing and returns the first record
    with `duplicate` set. Concurrent copies behave the same, because the second insert waits
    on the unique index and then fails. Raises StockEventConflict when the replay carries a
    different change.
    """
    existing = _event_find(source=data.source, event_id=data.event_id)
    if existing is not None:
        return _duplicate(existing, data)

    try:
        with transaction.atomic():
            level = stock_level_lock(sku=data.sku, location=data.location)
            event = _event_apply(level=level, data=data, posted_by=posted_by, check_version=True)
    except IntegrityError:
        existing = _event_find(source=data.source, event_id=data.event_id)
        if existing is None:
            raise
        return _duplicate(existing, data)

    extra = {"stock_event": event.pk, "source": event.source, "outcome": event.outcome}
    if event.outcome == StockEventOutcome.REJECTED:
        logger.warning("stock event rejected", extra={**extra, "reason": event.reason})
    else:
        logger.info("stock event recorded", extra=extra)
    return StockEventResult(event=event, duplicate=False)


def stock_level_lock(*, sku: Sku, location: Location) -> StockLevel:
    """Lock the stock level of `sku` at `location`, creating it (empty) when missing.

    Call inside a transaction. A level that two transactions create at once is inserted by one
    of them. The other's insert fails on the unique constraint, and it then locks that row.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("stock_level_lock() must run inside transaction.atomic().")

    for _attempt in range(LEVEL_CREATE_ATTEMPTS):
        level = (
            StockLevel.objects.select_for_update(of=("self",))
            .select_related("sku", "location")
            .filter(sku=sku, location=location)
            .first()
        )
        if level is not None:
            return level
        try:
            with transaction.atomic():
                return StockLevel.objects.create(sku=sku, location=location)
        except IntegrityError:
            continue
    raise RuntimeError(
        f"Could not lock or create the stock level of {sku.code} at {location.code}."
    )


def discrepancy_record(
    *,
    sku: Sku,
    location: Location,
    counted: int,
    reported_by: AbstractBaseUser,
    note: str = "",
    correct: bool = True,
) -> InventoryDiscrepancy:
    """Record a physical count against the on-hand stock we hold, and optionally correct it.

    Every count is recorded, also one that matches (difference 0), so that the discrepancy
    rate has its denominator. With `correct`, a differing count posts an absolute event from
    source "stock-count" that sets on hand to the count. That event skips the version check
    and keeps the level's version, so the location's own feed goes on with its numbering.
    """
    if counted < 0:
        raise ValueError(f"counted must be 0 or more, got {counted}.")

    with transaction.atomic():
        level = stock_level_lock(sku=sku, location=location)
        expected = level.on_hand
        discrepancy = InventoryDiscrepancy.objects.create(
            sku=sku,
            location=location,
            expected=expected,
            counted=counted,
            difference=counted - expected,
            reported_by=reported_by,
            note=note,
        )

        if correct and counted != expected:
            correction = StockEventInput(
                source=COUNT_SOURCE,
                event_id=f"discrepancy-{discrepancy.pk}",
                sku=sku,
                location=location,
                kind=StockEventKind.ABSOLUTE,
                quantity=counted,
                version=level.version,
            )
            discrepancy.correction = _event_apply(
                level=level, data=correction, posted_by=reported_by, check_version=False
            )
            discrepancy.save(update_fields=["correction"])

        audit_record(
            action="stock.discrepancy_recorded",
            target_type="stock_level",
            target_id=level.pk,
            actor=reported_by,
            reason=note or f"Counted {counted} of {sku.code} at {location.code}",
            before={"on_hand": expected},
            after={
                "counted": counted,
                "on_hand": level.on_hand,
                "correction": discrepancy.correction.outcome if discrepancy.correction else None,
            },
        )

    logger.info(
        "inventory discrepancy recorded",
        extra={"discrepancy": discrepancy.pk, "stock_level": level.pk},
    )
    return discrepancy


def _event_find(*, source: str, event_id: str) -> StockEvent | None:
    return (
        StockEvent.objects.select_related("sku", "location")
        .filter(source=source, event_id=event_id)
        .first()
    )


def _duplicate(event: StockEvent, data: StockEventInput) -> StockEventResult:
    sent = (data.sku.pk, data.location.pk, data.kind, data.quantity, data.version)
    stored = (event.sku_id, event.location_id, event.kind, event.quantity, event.version)
    if sent != stored:
        raise StockEventConflict(event)
    logger.info("duplicate stock event acknowledged", extra={"stock_event": event.pk})
    return StockEventResult(event=event, duplicate=True)


def _event_apply(
    *,
    level: StockLevel,
    data: StockEventInput,
    posted_by: AbstractBaseUser | None,
    check_version: bool,
) -> StockEvent:
    """Decide the event's outcome against the locked level, apply it, and store the event."""
    before = {"on_hand": level.on_hand, "reserved": level.reserved, "version": level.version}
    outcome, reason, on_hand = _event_decide(level=level, data=data, check_version=check_version)

    if outcome == StockEventOutcome.APPLIED:
        level.on_hand = on_hand
        level.version = data.version
        level.counted_at = _snapshot_time(data.occurred_at)
        level.save(update_fields=["on_hand", "version", "counted_at", "updated_at"])

    event = StockEvent.objects.create(
        source=data.source,
        event_id=data.event_id,
        sku=data.sku,
        location=data.location,
        kind=data.kind,
        quantity=data.quantity,
        version=data.version,
        occurred_at=data.occurred_at,
        outcome=outcome,
        reason=reason,
        on_hand_before=before["on_hand"],
        on_hand_after=level.on_hand,
        posted_by=posted_by,
    )

    if outcome == StockEventOutcome.APPLIED:
        _audit_applied(event=event, level=level, before=before, posted_by=posted_by)
        if level.on_hand > before["on_hand"]:
            stock_increase_notify(sku_id=level.sku_id)
    return event


def _event_decide(
    *, level: StockLevel, data: StockEventInput, check_version: bool
) -> tuple[str, str, int]:
    """Return (outcome, reason, resulting on hand) for the event against the locked level."""
    if check_version and data.version <= level.version:
        return (
            StockEventOutcome.STALE,
            f"Version {data.version} is not newer than the applied version {level.version}.",
            level.on_hand,
        )

    is_delta = data.kind == StockEventKind.DELTA
    on_hand = level.on_hand + data.quantity if is_delta else data.quantity

    if on_hand < 0:
        reason = (
            f"A delta of {data.quantity} would make on hand negative "
            f"({level.on_hand} on hand, {on_hand} after)."
        )
    elif on_hand < level.reserved:
        reason = (
            f"On hand would drop to {on_hand}, below the {level.reserved} units reserved for "
            "orders. Release reservations first."
        )
    elif on_hand > MAX_ON_HAND:
        reason = f"On hand would be {on_hand}, above the maximum of {MAX_ON_HAND}."
    else:
        return StockEventOutcome.APPLIED, "", on_hand
    return StockEventOutcome.REJECTED, reason, level.on_hand


def _snapshot_time(occurred_at: datetime | None) -> datetime:
    """When the source counted: its own time, but never later than now (clock skew)."""
    now = timezone.now()
    if occurred_at is None or occurred_at > now:
        return now
    return occurred_at


def _audit_applied(
    *, event: StockEvent, level: StockLevel, before: dict, posted_by: AbstractBaseUser | None
) -> None:
    audit_record(
        action="stock.event_applied",
        target_type="stock_level",
        target_id=level.pk,
        actor=posted_by,
        system_label="" if posted_by else f"stock event from {event.source}",
        reason=(
            f"{event.get_kind_display()} {event.quantity} "
            f"(event {event.source}:{event.event_id}, version {event.version})"
        ),
        before=before,
        after={"on_hand": level.on_hand, "reserved": level.reserved, "version": level.version},
    )


def stock_increase_notify(*, sku_id: int) -> None:
    """Queue a retry of the orders held out of stock on this SKU once the change commits."""
    # Most increases concern SKUs that no open item waits on, and those queue no task.
    waiting = ReviewItem.objects.filter(
        kind=ReviewKind.OUT_OF_STOCK, status=ReviewStatus.OPEN, order_line__sku_id=sku_id
    ).exists()
    if waiting:
        transaction.on_commit(lambda: _enqueue_out_of_stock_retry(sku_id))


def _enqueue_out_of_stock_retry(sku_id: int) -> None:
    from .tasks import retry_out_of_stock

    try:
        retry_out_of_stock.delay(sku_id)
    except Exception:
        # The held orders stay held; accepting their review items retries them by hand.
        logger.exception("could not queue the out-of-stock retry", extra={"sku": sku_id})


def stock_level_version_reset(*, level_id: int, actor: AbstractBaseUser, reason: str) -> StockLevel:
    """Set a stock level's applied version back to 0 so the source's events apply again.

    For a source that sent a wrong, far too high version: until the reset, every later event
    of that SKU and location is stale. Counts stay as they are.
    """
    with transaction.atomic():
        level = StockLevel.objects.select_for_update(of=("self",)).get(pk=level_id)
        before = level.version
        level.version = 0
        level.save(update_fields=["version"])
        audit_record(
            action="stock.version_reset",
            target_type="stock_level",
            target_id=level.pk,
            actor=actor,
            reason=reason,
            before={"version": before},
            after={"version": 0},
        )
    logger.info("stock level version reset", extra={"stock_level": level.pk, "before": before})
    return level
