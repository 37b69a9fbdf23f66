"""Holding a channel's orders: while a channel is held, every new or updated order from it is
held for a person, and releasing the channel lets those orders go on.

Ingestion still runs every hygiene check on such orders; the hold adds one more hold reason,
`channel_held`, beside whatever the checks found. Releasing removes that reason again, so an
order with nothing else against it becomes ready, as ingestion would have made it.
"""

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone

from catalog.models import Channel
from catalog.sql_rows import column_list, instance_from_row
from guardrails.services import audit_record

from .models import Delivery, Order, OrderStatus
from .services import order_event_add, order_lock, order_mark_ready

logger = logging.getLogger(__name__)

HOLD_PERMISSION = "catalog.change_channel"
CHANNEL_HELD = "channel_held"
REASON_MAX_LENGTH = Channel._meta.get_field("orders_held_reason").max_length
# The audit log's actor when automation, not a person, holds or releases a channel.
SYSTEM_LABEL = "automation"
# Django's select_for_update has no FOR SHARE, so ingestion reads the hold with plain SQL.
HOLD_STATE_QUERY = "SELECT orders_held, orders_held_reason FROM catalog_channel WHERE id = %s"
# The delivery with its channel: FOR UPDATE OF the delivery and FOR SHARE OF the channel are
# added on PostgreSQL (delivery_lock_with_channel).
DELIVERY_WITH_CHANNEL_COLUMNS = f"{column_list(Delivery, 'd')}, {column_list(Channel, 'c')}"
DELIVERY_WITH_CHANNEL_FROM = (
    f'FROM "{Delivery._meta.db_table}" AS "d" '
    f'JOIN "{Channel._meta.db_table}" AS "c" ON "c"."id" = "d"."channel_id" '
    'WHERE "d"."id" = %s'
)
DELIVERY_WITH_CHANNEL_QUERY = f"SELECT {DELIVERY_WITH_CHANNEL_COLUMNS} {DELIVERY_WITH_CHANNEL_FROM}"
# An extra column of the same query that turns synchronous_commit off until the transaction
# ends, which saves the round trip of a separate SET LOCAL.
COMMIT_WITHOUT_FLUSH_COLUMN = "set_config('synchronous_commit', 'off', true)"


class ChannelHoldError(ValueError):
    """A hold or release that cannot be made; the message is written for the person who tried."""

    code = "channel_hold_error"


class ChannelAlreadyHeld(ChannelHoldError):
    code = "channel_already_held"


class ChannelNotHeld(ChannelHoldError):
    code = "channel_not_held"


def channel_orders_hold(*, channel: Channel, user: AbstractBaseUser | None, reason: str) -> Channel:
    """Hold every new or updated order of the channel until someone releases it.

    Orders that were ready before the hold stay ready. `user` None means automation.
    A reason longer than the field's 300 characters is cut to fit. Raises PermissionDenied
    unless the user may change channels, and ChannelAlreadyHeld when the channel is held.
    """
    _check_may_hold(user)
    reason = _reason_fit(reason)

    with transaction.atomic():
        locked = Channel.objects.select_for_update().get(pk=channel.pk)
        if locked.orders_held:
            raise ChannelAlreadyHeld(
                f"The orders of channel {locked.code} are already held: {locked.orders_held_reason}"
            )
        before = _hold_state(locked)
        locked.orders_held = True
        locked.orders_held_reason = reason
        locked.orders_held_at = timezone.now()
        locked.save(
            update_fields=["orders_held", "orders_held_reason", "orders_held_at", "updated_at"]
        )
        audit_record(
            action="channel.orders_held",
            target_type="channel",
            target_id=locked.pk,
            actor=user,
            system_label="" if user else SYSTEM_LABEL,
            reason=reason,
            before=before,
            after=_hold_state(locked),
        )

    logger.info("channel orders held", extra={"channel": locked.code, "user": _user_id(user)})
    return locked


def channel_orders_release(
    *, channel: Channel, user: AbstractBaseUser | None, note: str = ""
) -> Channel:
    """Stop holding the channel's orders and let the orders it held go on.

    Each order held for the channel loses that hold reason. An order with no other reason
    becomes ready; one with other reasons stays on hold for them. Every such order gets a
    timeline event. All of it happens in one transaction. Raises PermissionDenied unless
    the user may change channels, and ChannelNotHeld when the channel is not held.
    """
    _check_may_hold(user)

    with transaction.atomic():
        locked = Channel.objects.select_for_update().get(pk=channel.pk)
        if not locked.orders_held:
            raise ChannelNotHeld(f"The orders of channel {locked.code} are not held.")
        before = _hold_state(locked)
        locked.orders_held = False
        locked.orders_held_reason = ""
        locked.orders_held_at = None
        locked.save(
            update_fields=["orders_held", "orders_held_reason", "orders_held_at", "updated_at"]
        )
        audit_record(
            action="channel.orders_released",
            target_type="channel",
            target_id=locked.pk,
            actor=user,
            system_label="" if user else SYSTEM_LABEL,
            reason=note or "Channel released",
            before=before,
            after=_hold_state(locked),
        )
        released, still_held = _held_orders_release(channel=locked, user=user, note=note)

    logger.info(
        "channel orders released",
        extra={
            "channel": locked.code,
            "user": _user_id(user),
            "orders_ready": released,
            "orders_still_held": still_held,
        },
    )
    return locked


def channel_hold_reasons(channel: Channel) -> list[dict]:
    """Return the hold reason a held channel puts on its orders, or [] when it is not held."""
    if not channel.orders_held:
        return []
    return [
        {
            "severity": "hold",
            "code": CHANNEL_HELD,
            "message": (
                f"Orders from channel {channel.code} are held: {channel.orders_held_reason}"
            ),
        }
    ]


def channel_hold_state_read(channel: Channel) -> Channel:
    """Read the channel's hold fields again, under a share lock on PostgreSQL.

    Call at the start of an ingestion transaction, before any order row is locked. The
    share lock lets deliveries of one channel run side by side, but a hold or release waits
    until they commit. So a release always finds every order held for its channel.
    """
    query = HOLD_STATE_QUERY + (" FOR SHARE" if connection.vendor == "postgresql" else "")
    with connection.cursor() as cursor:
        cursor.execute(query, [channel.pk])
        channel.orders_held, channel.orders_held_reason = cursor.fetchone()
    return channel


def delivery_lock_with_channel(*, delivery_id: int, commit_without_flush: bool = False) -> Delivery:
    """Lock the delivery for processing and read its channel under a share lock, in one query.

    Call at the start of an ingestion transaction, before any order row is locked. The
    delivery is locked FOR UPDATE, as select_for_update would, so a redelivered task waits
    for the first run. The channel row, hold fields included, is read under the share lock
    that channel_hold_state_read takes. Raises Delivery.DoesNotExist for an unknown id.
    On PostgreSQL, `commit_without_flush` also sets synchronous_commit off for the rest of
    the transaction. Only the outermost transaction may ask for it.
    """
    query = DELIVERY_WITH_CHANNEL_QUERY
    if connection.vendor == "postgresql":
        columns = DELIVERY_WITH_CHANNEL_COLUMNS
        if commit_without_flush:
            columns += f", {COMMIT_WITHOUT_FLUSH_COLUMN}"
        query = f'SELECT {columns} {DELIVERY_WITH_CHANNEL_FROM} FOR UPDATE OF "d" FOR SHARE OF "c"'
    with connection.cursor() as cursor:
        cursor.execute(query, [delivery_id])
        row = cursor.fetchone()
    if row is None:
        raise Delivery.DoesNotExist(f"Delivery {delivery_id} does not exist.")
    split = len(Delivery._meta.concrete_fields)
    end = split + len(Channel._meta.concrete_fields)
    delivery = instance_from_row(Delivery, row[:split], using=connection.alias)
    channel = instance_from_row(Channel, row[split:end], using=connection.alias)
    Delivery._meta.get_field("channel").set_cached_value(delivery, channel)
    return delivery


def _held_orders_release(
    *, channel: Channel, user: AbstractBaseUser | None, note: str
) -> tuple[int, int]:
    """Remove the channel hold from each order; return (orders now ready, orders still held)."""
    candidates = (
        Order.objects.filter(channel=channel, status=OrderStatus.ON_HOLD)
        .order_by("pk")
        .values_list("pk", "hold_reasons")
    )
    # Hold reasons are filtered here because SQLite's JSON fields have no containment lookup.
    # NOTE: one transaction locks every such order until the last is released. A channel
    # with many thousands of held orders keeps its ingestion waiting for that long.
    order_ids = [pk for pk, reasons in candidates if _has_channel_hold(reasons)]
    released = still_held = 0
    for order_id in order_ids:
        order = order_lock(order_id=order_id)
        if order.status != OrderStatus.ON_HOLD or not _has_channel_hold(order.hold_reasons):
            continue
        remaining = [r for r in order.hold_reasons if r.get("code") != CHANNEL_HELD]
        order_event_add(
            order=order,
            kind="order.channel_hold_released",
            message=f"Channel {channel.code} released"
            + (f": {note.rstrip('.')}." if note else "."),
            actor=user,
            data={"channel": channel.code, "other_hold_reasons": len(remaining)},
        )
        if remaining:
            _hold_reason_remove(order=order, remaining=remaining, user=user, note=note)
            still_held += 1
        else:
            # The step ingestion takes for an order with no holds.
            order_mark_ready(order=order, actor=user)
            released += 1
    return released, still_held


def _hold_reason_remove(
    *, order: Order, remaining: list[dict], user: AbstractBaseUser | None, note: str
) -> None:
    # order_hold would record the order as held again, which the KPIs count as a new order
    # error. The order was held all along, so only its reasons change here.
    before = {"status": order.status, "hold_reasons": order.hold_reasons}
    order.hold_reasons = remaining
    order.save(update_fields=["hold_reasons", "updated_at"])
    audit_record(
        action="order.hold_reason_removed",
        target_type="order",
        target_id=order.pk,
        actor=user,
        system_label="" if user else SYSTEM_LABEL,
        reason=note or "Channel released",
        before=before,
        after={"status": order.status, "hold_reasons": remaining},
    )


def _has_channel_hold(reasons: object) -> bool:
    return isinstance(reasons, list) and any(
        isinstance(reason, dict) and reason.get("code") == CHANNEL_HELD for reason in reasons
    )


def _check_may_hold(user: AbstractBaseUser | None) -> None:
    if user is not None and not user.has_perm(HOLD_PERMISSION):
        raise PermissionDenied(
            f"Holding or releasing a channel's orders needs the {HOLD_PERMISSION} permission."
        )


def _reason_fit(reason: str) -> str:
    reason = " ".join(str(reason).split())
    if not reason:
        raise ChannelHoldError("Give a reason for holding the channel's orders.")
    if len(reason) > REASON_MAX_LENGTH:
        reason = reason[: REASON_MAX_LENGTH - 1] + "…"
    return reason


def _hold_state(channel: Channel) -> dict:
    return {
        "orders_held": channel.orders_held,
        "orders_held_reason": channel.orders_held_reason,
        "orders_held_at": channel.orders_held_at.isoformat() if channel.orders_held_at else None,
    }


def _user_id(user: AbstractBaseUser | None) -> int | None:
    return user.pk if user is not None else None
