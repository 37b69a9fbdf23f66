"""Reads for the guardrail engine: the policy that judges an action, and the settings row."""

import copy
import functools
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from django.db import connection
from django.db.models import Q

from catalog.models import Channel, Sku
from orders.models import Order

from .config_cache import STAMP_TOKEN_SQL, config_cached, stamp_token
from .models import ActionType, Decision, GuardrailSettings, Policy, PolicyBand, PolicyVersion

# Inside `reads_shared()`: the values read so far in the block, by key.
_shared_reads: ContextVar[dict[Hashable, Any] | None] = ContextVar("reads_shared", default=None)

# Bands of published versions, per process, by (version id, version created_at). A stored
# version and its bands never change: PolicyVersion.save() rejects a change of its rules,
# bands are created with their version, and the admin cannot add, change or delete the bands
# of a stored version. The creation time is part of the key because SQLite can hand a rolled
# back version's id to the next version.
_BANDS_CACHE: dict[tuple[int, datetime], tuple[PolicyBand, ...]] = {}
# Versions are few (a handful per policy), so the cache is simply emptied when it reaches this.
BANDS_CACHE_MAX = 1024


def guardrail_settings() -> GuardrailSettings:
    """The editable engine settings; the row is created with its defaults on first use.

    Inside `reads_shared()`, every call after the first returns the same row, a copy of the
    one in the per-thread configuration cache.
    """
    if _shared_reads.get() is None:
        return _settings_read()
    return shared_read(
        "guardrail_settings", lambda: copy.copy(shared_config_read("settings_row", _settings_read))
    )


@contextmanager
def reads_shared() -> Iterator[None]:
    """Make each `shared_read` key read the database at most once in the block.

    Wrap work such as one decision, whose steps read the same rows (the engine settings,
    carrier services) one after another and never change them. A change saved inside the
    block is not seen by the block's later reads of that key. Nested blocks share the outer
    block's values.
    """
    if _shared_reads.get() is not None:
        yield
        return
    token = _shared_reads.set({})
    try:
        yield
    finally:
        _shared_reads.reset(token)


def reads_shared_active() -> bool:
    """Return whether the caller runs inside a `reads_shared()` block."""
    return _shared_reads.get() is not None


def shared_read(key: Hashable, read: Callable[[], Any]) -> Any:
    """Return `read()`, or inside `reads_shared()` the value an earlier call stored for `key`."""
    values = _shared_reads.get()
    if values is None:
        return read()
    if key not in values:
        values[key] = read()
    return values[key]


def shared_config_read(key: Hashable, read: Callable[[], Any]) -> Any:
    """Like `shared_read`, and inside `reads_shared()` also through the configuration cache.

    Use it only for reads of the tables `config_cache.WATCHED_MODELS` lists, and never change
    the object it returns: later decisions of the thread share it.
    """
    if _shared_reads.get() is None:
        return read()
    token = shared_read("config_stamp", stamp_token)
    return shared_read(key, lambda: config_cached(key, read, token=token))


def _settings_read() -> GuardrailSettings:
    settings_row, _ = GuardrailSettings.objects.get_or_create(pk=1)
    return settings_row


def action_get(*, code: str) -> ActionType | None:
    def read() -> ActionType | None:
        return ActionType.objects.filter(code=code, is_active=True).first()

    return shared_config_read(("action", code), read)


def policy_for(*, action: ActionType, channel: Channel | None) -> Policy | None:
    """The channel's own policy for the action, else the policy for all channels."""
    policies = Policy.objects.filter(action=action, live_version__isnull=False)
    if channel is not None:
        own = policies.filter(channel=channel).first()
        if own is not None:
            return own
    return policies.filter(channel__isnull=True).first()


def policy_version_live_for(*, action: ActionType, channel: Channel | None) -> PolicyVersion | None:
    """The live version that judges the action on the channel, with what evaluation reads.

    One query reads the policy rows (the channel's own and the all-channels one) with their
    live version and its groups. Inside `reads_shared()` the version comes from the
    configuration cache, whose stamp changes with every publication, so a newly published
    version still judges the very next decision in every process. The version's bands come
    from a per-process cache, because they never change once stored.
    """
    channel_id = channel.pk if channel is not None else None
    return shared_config_read(
        ("live_version", action.pk, channel_id),
        lambda: _policy_version_live_read(action=action, channel=channel),
    )


def _policy_version_live_read(
    *, action: ActionType, channel: Channel | None
) -> PolicyVersion | None:
    in_channel = Q(channel__isnull=True)
    if channel is not None:
        in_channel |= Q(channel=channel)
    policies = list(
        Policy.objects.filter(in_channel, action=action, live_version__isnull=False).select_related(
            "action",
            "channel",
            "live_version__approver_group",
            "live_version__escalation_group",
        )
    )
    # The channel's own policy wins over the all-channels one.
    policies.sort(key=lambda policy: policy.channel_id is None)
    if not policies:
        return None
    policy = policies[0]
    version = policy.live_version
    version.policy = policy
    _bands_attach(version)
    return version


def _bands_attach(version: PolicyVersion) -> None:
    """Set the version's bands as if prefetched, from the cache or one query."""
    key = (version.pk, version.created_at)
    bands = _BANDS_CACHE.get(key)
    if bands is None:
        bands = tuple(PolicyBand.objects.filter(version=version).order_by("position", "id"))
        if len(_BANDS_CACHE) >= BANDS_CACHE_MAX:
            _BANDS_CACHE.clear()
        _BANDS_CACHE[key] = bands
    queryset = version.bands.all()
    queryset._result_cache = list(bands)
    queryset._prefetch_done = True
    version._prefetched_objects_cache = {"bands": queryset}


# --- What a proposal reads about its locked order ------------------------------------------


@dataclass(frozen=True)
class ProposalReads:
    """The rows a proposal reads about its order once the order is locked."""

    # (decision id, review item id) of a proposal of the same action waiting for review.
    pending: tuple[int, int] | None
    # Whether the channel's priority customer list names the order's customer id or email.
    priority_listed: bool
    # (unit price, quantity, SKU cost, SKU currency) of each line, as `margin_rate` reads them.
    line_costs: list[tuple[Decimal, int, Decimal | None, str | None]]
    # On PostgreSQL, an id taken from the decision table's sequence for the decision this
    # proposal stores, so its INSERT can go in one statement with the audit entry and event
    # that name it. A proposal that stores no decision leaves a gap in the ids. None elsewhere.
    decision_id: int | None = None


def proposal_reads(*, order: Order, action: ActionType) -> ProposalReads:
    """Read the pending proposal, the priority listing and the line costs in one query.

    On PostgreSQL one hand-written statement replaces the three ORM queries below, which
    other databases still run (a test compares both), and takes the next decision id.
    """
    if connection.vendor != "postgresql":
        return ProposalReads(
            pending=decision_pending(order=order, action=action),
            priority_listed=priority_listed(order),
            line_costs=order_line_costs(order),
        )
    parameters = {
        "order": order.pk,
        "action": action.pk,
        "channel": order.channel_id,
        # NULL matches no row, as the ORM skips the test of an empty customer id or email.
        "customer": order.customer_id or None,
        "email": order.customer_email or None,
    }
    with connection.cursor() as cursor:
        cursor.execute(_proposal_reads_sql(), parameters)
        rows = cursor.fetchall()
    decision_id, pending_id, pending_item, listed = rows[0][:4]
    return ProposalReads(
        pending=(pending_id, pending_item) if pending_id is not None else None,
        priority_listed=listed,
        # The LEFT JOIN gives one row of NULLs for an order without lines.
        line_costs=[tuple(row[4:]) for row in rows if row[4] is not None],
        decision_id=decision_id,
    )


@functools.cache
def _proposal_reads_sql() -> str:
    from orders.models import OrderLine, PriorityCustomer
    from reviews.models import ReviewItem, ReviewKind, ReviewStatus

    # The pending proposal is ordered as Decision's default ordering orders `.first()`.
    # nextval() sits in the one-row `base` subquery, which PostgreSQL does not merge into the
    # outer query because of the volatile function, so an order with several lines still takes
    # one id.
    return (
        "SELECT base.decision_id, pending.id, pending.review_item_id, EXISTS ("  # noqa: S608
        f"  SELECT 1 FROM {PriorityCustomer._meta.db_table} listed"
        "   WHERE listed.channel_id = %(channel)s AND (listed.customer_id = %(customer)s"
        "   OR UPPER(listed.email::text) = UPPER(%(email)s))"
        "), line.unit_price, line.quantity, sku.cost, sku.currency "
        "FROM (SELECT nextval(pg_get_serial_sequence("
        f"'{Decision._meta.db_table}', '{Decision._meta.pk.column}')) AS decision_id) AS base "
        "LEFT JOIN LATERAL ("
        f"  SELECT decision.id, decision.review_item_id FROM {Decision._meta.db_table} decision"
        f"  JOIN {ReviewItem._meta.db_table} item ON item.id = decision.review_item_id"
        "   WHERE decision.order_id = %(order)s AND decision.action_id = %(action)s"
        f"  AND item.status = '{ReviewStatus.OPEN}' AND item.kind <> '{ReviewKind.AUDIT_SAMPLE}'"
        "   ORDER BY decision.created_at DESC, decision.id DESC LIMIT 1"
        ") AS pending ON TRUE "
        f"LEFT JOIN {OrderLine._meta.db_table} line ON line.order_id = %(order)s "
        f"LEFT JOIN {Sku._meta.db_table} sku ON sku.id = line.sku_id"
    )


def decision_pending(*, order: Order, action: ActionType) -> tuple[int, int] | None:
    """Return (decision id, review item id) of a proposal of `action` waiting for review."""
    from reviews.models import ReviewKind, ReviewStatus

    return (
        Decision.objects.filter(order=order, action=action, review_item__status=ReviewStatus.OPEN)
        # An audit sample reviews a change already applied; it does not wait for a decision.
        .exclude(review_item__kind=ReviewKind.AUDIT_SAMPLE)
        .values_list("pk", "review_item_id")
        .first()
    )


def priority_listed(order: Order) -> bool:
    """Return whether the channel's priority customers include the order's id or email."""
    from orders.models import PriorityCustomer

    customers = PriorityCustomer.objects.filter(channel_id=order.channel_id)
    if order.customer_id and customers.filter(customer_id=order.customer_id).exists():
        return True
    return (
        bool(order.customer_email) and customers.filter(email__iexact=order.customer_email).exists()
    )


def order_line_costs(order: Order) -> list[tuple[Decimal, int, Decimal | None, str | None]]:
    """Return (unit price, quantity, SKU cost, SKU currency) of each line of the order."""
    # Plain values: only these four fields are read, and building the line and SKU models
    # cost more than the query itself.
    return list(order.lines.values_list("unit_price", "quantity", "sku__cost", "sku__currency"))


# The range of the order id column (bigint). The ORM returns no row for an id outside it;
# SQLite's driver would raise OverflowError on it (PostgreSQL compares it as numeric).
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


class ChannelGrant(NamedTuple):
    """An order's channel, whether a user has an API grant for it, and the stamp token."""

    channel_code: str
    granted: bool
    # The configuration stamp token (`config_cache.stamp_token`), read in the same statement.
    stamp_token: str | None


def order_channel_grant(*, order_id: int, user_id: int | None) -> ChannelGrant | None:
    """Return the order's channel code, whether `user_id` has an API grant for it, and the
    configuration stamp token, or None for an unknown order.

    One plain statement, built once: the equivalent ORM query (an `Exists` annotation) cost
    more Python time than running it (a test compares both). The token comes along so that
    the decision that follows needs no query of its own for it (`stamp_token_share`).
    """
    if not _BIGINT_MIN <= order_id <= _BIGINT_MAX:
        return None
    with connection.cursor() as cursor:
        cursor.execute(_order_channel_grant_sql(), [user_id, order_id])
        row = cursor.fetchone()
    if row is None:
        return None
    return ChannelGrant(channel_code=row[0], granted=bool(row[1]), stamp_token=row[2])


def stamp_token_share(token: str | None) -> None:
    """Use `token`, read by the caller, as the configuration stamp of the `reads_shared()` block.

    The caller must have read it in this block before any configuration row, as
    `config_cache` requires. A block that has read the token already keeps its own.
    """
    shared_read("config_stamp", lambda: token)


@functools.cache
def _order_channel_grant_sql() -> str:
    from orders.models import ChannelApiGrant

    return (
        "SELECT channel.code, EXISTS ("  # noqa: S608 - names from model metadata
        f"  SELECT 1 FROM {ChannelApiGrant._meta.db_table} grant_row"
        "   WHERE grant_row.channel_id = placed.channel_id AND grant_row.user_id = %s"
        f"), ({STAMP_TOKEN_SQL})"
        f" FROM {Order._meta.db_table} placed"
        f" JOIN {Channel._meta.db_table} channel ON channel.id = placed.channel_id"
        " WHERE placed.id = %s"
    )


class _CompiledOrderLock(NamedTuple):
    """The SQL of `orders.services.order_lock` and how to turn its row into an Order."""

    sql: str
    order_attnames: tuple[str, ...]
    channel_attnames: tuple[str, ...]
    # (column position, its converters, the expression they expect), as Django applies them.
    converters: tuple[tuple[int, tuple[Callable, ...], Any], ...]


def order_lock_compiled(*, order_id: int) -> Order:
    """Lock one order row for the rest of the transaction and return it with its channel.

    Runs the statement of `orders.services.order_lock`, compiled by the ORM once per process
    instead of on every call. Compiling it cost about 0.5 ms of CPU, several times the cost of
    running it (measured in-process on PostgreSQL). The order and its channel are built as the
    ORM builds them (converters, `from_db`), and a test compares both. Anything but an int in
    the bigint range goes to `order_lock` itself, so odd input raises what it raised before.
    Call inside a transaction.
    """
    from orders.services import order_lock

    if type(order_id) is not int or not _BIGINT_MIN <= order_id <= _BIGINT_MAX:
        return order_lock(order_id=order_id)
    compiled = _order_lock_compile(connection.alias)
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, [order_id])
        row = cursor.fetchone()
    if row is None:
        raise Order.DoesNotExist(f"{Order._meta.object_name} matching query does not exist.")

    values = list(row)
    for position, converters, expression in compiled.converters:
        value = values[position]
        for converter in converters:
            value = converter(value, expression, connection)
        values[position] = value
    order_count = len(compiled.order_attnames)
    order = Order.from_db(connection.alias, compiled.order_attnames, values[:order_count])
    channel = Channel.from_db(connection.alias, compiled.channel_attnames, values[order_count:])
    Order._meta.get_field("channel").set_cached_value(order, channel)
    return order


@functools.cache
def _order_lock_compile(alias: str) -> _CompiledOrderLock:
    """Compile `order_lock`'s query for the database `alias`; it needs an open transaction."""
    queryset = Order.objects.select_for_update(of=("self",)).select_related("channel")
    # Without the model's ordering, as get() drops it.
    compiler = queryset.filter(pk=0).order_by().query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    if list(params) != [0]:
        raise RuntimeError(f"order_lock's query has parameters {params!r}; expected the id only.")

    klass_info = compiler.klass_info
    (channel_info,) = klass_info["related_klass_infos"]
    order_positions, channel_positions = klass_info["select_fields"], channel_info["select_fields"]
    if [*order_positions, *channel_positions] != list(range(compiler.col_count)):
        raise RuntimeError(
            "order_lock's query selects columns other than the order's, then the channel's."
        )
    order_attnames = tuple(compiler.select[i][0].target.attname for i in order_positions)
    channel_attnames = tuple(compiler.select[i][0].target.attname for i in channel_positions)
    selected = [column[0] for column in compiler.select[: compiler.col_count]]
    converters = tuple(
        (position, tuple(functions), expression)
        for position, (functions, expression) in compiler.get_converters(selected).items()
    )
    return _CompiledOrderLock(sql, order_attnames, channel_attnames, converters)
