"""Per-thread cache of the configuration rows every decision reads, checked against a stamp row.

Each decision reads the same few rows: its action type, the live policy version, the running
canaries and model versions, the engine settings, the autonomy gate, the breakers that are
not closed, the sampling state and carrier services. They change rarely, but through many
paths: the admin, services, management commands, bulk `update()` calls, migrations and other
processes. So no Python code keeps this cache right. Instead, database triggers on every
watched table (`WATCHED_MODELS`) write a new random token into the single row of
`guardrails_configstamp`, in the same transaction as the change. A decision reads the token
once, and uses a cached row only if it was read under that same token.

Why a decision never uses a row older than the token it read:

- The token is read before the rows, so a row cached under a token is never older than it.
- Rows read inside a transaction enter the cache only when it commits (`on_commit`). A
  transaction that changed a watched row and then rolled back leaves nothing behind.
- The token is random, not a counter. A counter could repeat a value after a rollback, and
  then name two different states of the rows.
- Without the stamp row (Django's flush empties every table with TRUNCATE on PostgreSQL),
  nothing is cached until the next write to a watched table creates the row again.

The cache only works inside `selectors.reads_shared()`, the block of one decision. Elsewhere
`shared_config_read` reads the database as before. Cached objects are shared by the later
decisions of the thread, so callers must treat them as read-only.

NOTE: only the tables listed here renew the token. A cached read that touches another table
needs that table added here and its triggers created by a new migration.
"""

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, connections, transaction

T = TypeVar("T")

# (app label, model name) of the tables whose rows decisions cache, and
# ("guardrails", "version", "policy_versions") for the many-to-many table of rule sets.
WATCHED_MODELS = (
    ("guardrails", "actiontype"),
    ("guardrails", "policy"),
    ("guardrails", "policyversion"),
    ("guardrails", "policyband"),
    ("guardrails", "guardrailsettings"),
    ("guardrails", "autonomygate"),
    ("guardrails", "breaker"),
    ("guardrails", "samplingstate"),
    ("guardrails", "version"),
    ("guardrails", "canary"),
    # Names shown in a decision's reasons and its review item: the approver groups and the
    # channel of a channel's own policy. The applier of carrier choices reads the services.
    ("auth", "group"),
    ("catalog", "channel"),
    ("orders", "carrier"),
    ("orders", "carrierservice"),
)
WATCHED_MANY_TO_MANY = (("guardrails", "version", "policy_versions"),)
STAMP_TABLE = "guardrails_configstamp"
# The one-row read of the token; `selectors.order_channel_grant` embeds it as a subquery.
STAMP_TOKEN_SQL = f"SELECT token FROM {STAMP_TABLE} WHERE id = 1"  # noqa: S608 - no input
# Distinct keys are few (action types, policies, model versions); the cache is emptied when
# a thread has stored this many.
MAX_ENTRIES = 4096

_local = threading.local()


@dataclass
class _Snapshot:
    token: str
    values: dict[Hashable, Any] = field(default_factory=dict)


def config_cached(key: Hashable, load: Callable[[], T], *, token: str | None) -> T:
    """Return the value cached for `key` under `token`, else `load()` (cached on commit).

    `token` must have been read with `stamp_token()` before `load` runs; None disables the
    cache.
    """
    if token is None:
        return load()
    snapshot = getattr(_local, "snapshot", None)
    if snapshot is not None and snapshot.token == token and key in snapshot.values:
        return snapshot.values[key]

    value = load()
    transaction.on_commit(partial(_store, token, key, value), using=DEFAULT_DB_ALIAS)
    return value


def stamp_token() -> str | None:
    """Return the current token, or None when the stamp row is missing."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(STAMP_TOKEN_SQL)
        row = cursor.fetchone()
    return row[0] if row is not None else None


def config_cache_clear() -> None:
    """Forget this thread's cached rows. Tests use it, because the token alone keeps them right."""
    _local.snapshot = None


def _store(token: str, key: Hashable, value: Any) -> None:
    snapshot = getattr(_local, "snapshot", None)
    if snapshot is None or snapshot.token != token:
        snapshot = _local.snapshot = _Snapshot(token)
    if len(snapshot.values) >= MAX_ENTRIES:
        snapshot.values.clear()
    snapshot.values[key] = value


# --- Triggers --------------------------------------------------------------------------------


def watched_tables(apps=global_apps) -> list[str]:
    """Return the database tables whose changes renew the token (`apps` of a migration too)."""
    tables = [apps.get_model(app, model)._meta.db_table for app, model in WATCHED_MODELS]
    for app, model, field_name in WATCHED_MANY_TO_MANY:
        through = apps.get_model(app, model)._meta.get_field(field_name).remote_field.through
        tables.append(through._meta.db_table)
    return tables


def stamp_triggers_install(schema_editor, tables: list[str]) -> None:
    """Create or replace the triggers that renew the token on every change of `tables`."""
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = [_PG_FUNCTION, *(_pg_trigger(table) for table in tables)]
    elif vendor == "sqlite":
        statements = [_sqlite_trigger(table, event) for table in tables for event in _EVENTS]
    else:
        raise NotImplementedError(f"No configuration stamp triggers for {vendor}.")
    for statement in statements:
        schema_editor.execute(statement, params=None)


def stamp_triggers_remove(schema_editor, tables: list[str]) -> None:
    """Drop the triggers `stamp_triggers_install` created."""
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        statements = [f'DROP TRIGGER IF EXISTS {_TRIGGER} ON "{table}"' for table in tables]
        statements.append(f"DROP FUNCTION IF EXISTS {_TRIGGER}()")
    else:
        statements = [
            f'DROP TRIGGER IF EXISTS "{_sqlite_trigger_name(table, event)}"'
            for table in tables
            for event in _EVENTS
        ]
    for statement in statements:
        schema_editor.execute(statement, params=None)


def stamp_triggers_reinstall(sender, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """Install the SQLite triggers again after `migrate` (a post_migrate receiver).

    A migration that alters a table on SQLite copies it into a new table, and the copy has no
    triggers. PostgreSQL keeps a table's triggers through ALTER TABLE, so it is left alone.
    """
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    if STAMP_TABLE not in connection.introspection.table_names():
        return
    with connection.schema_editor() as schema_editor:
        stamp_triggers_install(schema_editor, watched_tables())


_TRIGGER = "guardrails_configstamp_renew"
_EVENTS = ("INSERT", "UPDATE", "DELETE")
# Table names come from the models, never from input.
_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {_TRIGGER}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {STAMP_TABLE} (id, token) VALUES (1, gen_random_uuid()::text)
        ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token;
    RETURN NULL;
END;
$$
"""  # noqa: S608


def _pg_trigger(table: str) -> str:
    # One renewal per statement, so a bulk update of many rows writes the stamp row once.
    return (
        f"CREATE OR REPLACE TRIGGER {_TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
        f'ON "{table}" FOR EACH STATEMENT EXECUTE FUNCTION {_TRIGGER}()'
    )


def _sqlite_trigger_name(table: str, event: str) -> str:
    return f"{_TRIGGER}_{table}_{event.lower()}"


def _sqlite_trigger(table: str, event: str) -> str:
    # SQLite has row triggers only, and no TRUNCATE.
    name = _sqlite_trigger_name(table, event)
    return f"""
CREATE TRIGGER IF NOT EXISTS "{name}" AFTER {event} ON "{table}" FOR EACH ROW BEGIN
    INSERT OR REPLACE INTO {STAMP_TABLE} (id, token) VALUES (1, lower(hex(randomblob(16))));
END
"""  # noqa: S608
