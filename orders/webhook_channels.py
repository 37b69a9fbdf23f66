"""Per-thread cache of the channels that webhooks post to, checked by the delivery insert.

Without the cache, every webhook reads its channel row before it checks the signature: one
more PostgreSQL round trip per acknowledgement than the delivery insert alone. With it, the
webhook checks the signature against the cached row, and the delivery INSERT itself goes
ahead only while the channel row is still the version that was cached. That check runs in
the same statement as the insert, so a delivery is never recorded against a channel that was
deactivated, renamed or given a new secret in the meantime, in this process or any other.
When the row changed, the insert writes nothing, the caller forgets the entry and runs the
webhook again with the row read afresh.

The row version is PostgreSQL's `xmin` (the transaction that wrote the row) with its `ctid`
(where that version is stored). Every UPDATE makes a new row version with a new ctid, and a
committed change always has a new xmin, so no change can leave both as they were. Other
databases have neither column, and there every webhook reads its channel (no cache).

Only active channels that exist are cached, so requests for unknown codes cannot fill the
cache. Saving or deleting a channel in this process clears every thread's cache at once.
Other processes find out from the insert's check.
"""

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, models
from django.db.models.signals import post_delete, post_save
from django.http import HttpResponse

from catalog.models import Channel
from omsguard.db_cursors import server_binding_cursor

from .models import Delivery

# A row version as PostgreSQL reports it, such as "25876:(0,1)".
ROW_VERSION_SQL = "xmin::text || ':' || ctid::text"
TYPE_MODIFIER = re.compile(r"\(.*\)")


class ChannelChanged(Exception):
    """The cached channel cannot be used for this request: read its row again and retry.

    Raised when the row changed since it was cached, and by webhooks for requests that must
    be checked against the stored row (a signature the cached secret rejects, for example).
    """


@dataclass(frozen=True)
class CachedChannel:
    """An active channel as read from the database, with the version of its row."""

    channel: Channel
    version: str


class _ThreadCache(threading.local):
    def __init__(self) -> None:
        self.generation = -1
        self.channels: dict[tuple[str, str], CachedChannel] = {}


_cache = _ThreadCache()
# Incremented when a channel is saved or deleted in this process. Each thread's cache starts
# again empty when the counter has changed, so a lost increment of two racing threads is harmless.
_generation = 0


def channel_acknowledge(
    *, kind: str, code: str, acknowledge: Callable[[Channel, str | None], HttpResponse]
) -> HttpResponse | None:
    """Run `acknowledge(channel, channel_version)` for the active channel of this kind and code.

    Returns None when there is no such channel. A cached channel goes first, with its row
    version. When that raises ChannelChanged, the entry is dropped and `acknowledge` runs
    again with the row read afresh and version None.
    """
    cached = channel_cached(kind=kind, code=code)
    if cached is not None:
        try:
            return acknowledge(cached.channel, cached.version)
        except ChannelChanged:
            channel_forget(kind=kind, code=code)

    channel = channel_read_and_cache(kind=kind, code=code)
    if channel is None:
        return None
    return acknowledge(channel, None)


def channel_cache_enabled() -> bool:
    return connection.vendor == "postgresql"


def channel_cached(*, kind: str, code: str) -> CachedChannel | None:
    """Return the cached active channel of this kind and code, without a query, or None."""
    return _current_channels().get((kind, code))


def channel_forget(*, kind: str, code: str) -> None:
    _current_channels().pop((kind, code), None)


def _current_channels() -> dict[tuple[str, str], CachedChannel]:
    if _cache.generation != _generation:
        _cache.channels = {}
        _cache.generation = _generation
    return _cache.channels


def channel_read_and_cache(*, kind: str, code: str) -> Channel | None:
    """Read the active channel of this kind and code in one query and cache it, or return None.

    On databases other than PostgreSQL this is catalog.selectors.channel_get_active.
    """
    from catalog.selectors import channel_active_read, channel_get_active

    if not channel_cache_enabled():
        return channel_get_active(kind=kind, code=code)

    generation = _generation
    read = channel_active_read(kind=kind, code=code, leading=ROW_VERSION_SQL)
    if read is None:
        return None

    (version,), channel = read
    # A channel saved in this process while the query ran may have been read in its old
    # version, so it is not cached. The insert's check catches changes made elsewhere.
    if generation == _generation:
        _current_channels()[(kind, code)] = CachedChannel(channel=channel, version=version)
    return channel


def delivery_insert_if_channel_unchanged(delivery: Delivery, channel_version: str) -> bool:
    """INSERT the delivery only while its channel row has `channel_version`, in one statement.

    Returns True when the row was inserted and False when a delivery with the same unique
    values exists (ON CONFLICT DO NOTHING, as orders.services.insert_unless_duplicate).
    Raises ChannelChanged when the channel row is gone or has another version; then nothing
    is written.
    """
    statement, plan = _guarded_insert_statement()
    values = delivery_insert_values(delivery, plan)
    with server_binding_cursor() as cursor:
        cursor.execute(statement, [delivery.channel_id, *values, channel_version])
        inserted_id, current_version = cursor.fetchone()

    if current_version != channel_version:
        raise ChannelChanged(f"channel {delivery.channel_id} changed since it was cached")
    if inserted_id is None:
        return False
    delivery.pk = inserted_id
    delivery._state.adding = False
    delivery._state.db = connection.alias
    return True


# Values of these exact types, and None, that field.get_db_prep_save returns unchanged on
# PostgreSQL (Django 5.2), keyed by the exact field class. A ForeignKey's value is its target's
# integer key. Integer fields are not listed, because Django wraps their values in psycopg's
# Int4 or Int8. tests/ingestion/test_ack_insert_values.py compares the results with Django's.
UNCHANGED_VALUE_TYPES: dict[type[models.Field], tuple[type, ...]] = {
    models.ForeignKey: (int,),
    models.CharField: (str,),
    models.TextField: (str,),
    models.BooleanField: (bool,),
    models.DateTimeField: (datetime,),
}


ValuePlan = list[tuple[models.Field, tuple[type, ...] | None]]


def delivery_insert_values(delivery: Delivery, plan: ValuePlan) -> list:
    """Return the database values of the plan's fields for inserting `delivery`, as the ORM would.

    Calling pre_save and get_db_prep_save for every field took about 230 of the 2,200 Python
    function calls of an acknowledgement (cProfile). A value that its field would return
    unchanged is used as it is. Every other value, every naive datetime and every field with
    auto_now or auto_now_add goes through pre_save and get_db_prep_save.
    """
    values = []
    for field, kept_types in plan:
        if kept_types is None:
            value = field.get_db_prep_save(field.pre_save(delivery, add=True), connection)
        else:
            value = getattr(delivery, field.attname)
            if not (value is None or type(value) in kept_types) or (
                # Django warns about a naive datetime and gives it the default time zone.
                type(value) is datetime and value.utcoffset() is None
            ):
                value = field.get_db_prep_save(value, connection=connection)
        values.append(value)
    return values


def delivery_value_plan(fields: list[models.Field]) -> ValuePlan:
    """Pair each field with the value types it keeps, or None when it needs pre_save."""
    plan = []
    for field in fields:
        kept_types = UNCHANGED_VALUE_TYPES.get(type(field))
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            kept_types = None
        plan.append((field, kept_types))
    return plan


_guarded_insert: tuple[str, ValuePlan] | None = None


def _guarded_insert_statement() -> tuple[str, ValuePlan]:
    """Build the INSERT ... SELECT that depends on the channel row's version.

    The values are selected, not listed in VALUES, so each needs an explicit cast to its
    column's type. The cast leaves out the length, because `::varchar(200)` would cut a long
    value short silently, where a plain INSERT fails on it.
    """
    global _guarded_insert

    if _guarded_insert is None:
        quote = connection.ops.quote_name
        meta = Delivery._meta
        fields = [
            field
            for field in meta.local_concrete_fields
            if not field.generated and field is not meta.auto_field
        ]
        columns = ", ".join(quote(field.column) for field in fields)
        casts = ", ".join(f"%s::{_type_without_length(field)}" for field in fields)
        channel_table = quote(Channel._meta.db_table)
        statement = (
            f"WITH channel_row AS (SELECT {ROW_VERSION_SQL} AS version "  # noqa: S608 - no input
            f"FROM {channel_table} WHERE id = %s), "
            f"inserted AS (INSERT INTO {quote(meta.db_table)} ({columns}) "
            f"SELECT {casts} FROM channel_row WHERE channel_row.version = %s "
            f"ON CONFLICT DO NOTHING RETURNING {quote(meta.pk.column)}) "
            "SELECT (SELECT * FROM inserted), (SELECT version FROM channel_row)"
        )
        _guarded_insert = (statement, delivery_value_plan(fields))
    return _guarded_insert


def _type_without_length(field) -> str:
    """Return the column type of `field` without its modifier: "varchar" for "varchar(200)"."""
    return TYPE_MODIFIER.sub("", field.db_type(connection))


def _cache_clear_all(sender: type[Channel], **kwargs) -> None:
    global _generation

    _generation += 1


post_save.connect(_cache_clear_all, sender=Channel, dispatch_uid="orders.webhook_channels.save")
post_delete.connect(_cache_clear_all, sender=Channel, dispatch_uid="orders.webhook_channels.delete")
