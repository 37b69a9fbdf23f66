"""Django cursors on the default PostgreSQL connection that bind parameters one chosen way,
whatever OPTIONS["server_side_binding"] (DB_PREPARED_STATEMENTS) sets for the connection.

Both are wrapped as connection.cursor() wraps its own, so execute wrappers, query logging and
the translation of database errors still apply. PostgreSQL only: on another backend they
would wrap the wrong driver connection, so callers check connection.vendor first.

NOTE: unlike connection.cursor(), they do not register Django's time zone on the cursor when
it differs from the connection's. Today's callers read back only integer keys.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.utils import CursorWrapper


def server_binding_cursor() -> CursorWrapper:
    """Open a cursor that sends parameters apart from the SQL (extended query protocol).

    Without server_side_binding, Django's psycopg 3 cursors merge the parameters into the SQL
    text on the client. For the webhook delivery INSERT that means a hex literal twice the
    size of the body, which PostgreSQL then parses and decodes. Sent as parameters, the body
    travels as binary bytea: 14.5 kB instead of 28.4 kB for the 13.7 kB Shopify sample. Over
    1,500 such inserts in a row, PostgreSQL 15 spent about 0.06 to 0.1 ms less CPU per insert
    (an estimate from a shared 2-core virtual machine).

    psycopg prepares the statement under a name when the connection's prepare_threshold
    allows it, which is after five runs with the settings' default. With
    DB_PREPARED_STATEMENTS=0, Django sets prepare_threshold to None, so nothing is prepared and
    no prepared statement is left for a transaction pooler such as PgBouncer to mix up.
    """
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    _connection_ready()
    with connection.wrap_database_errors:
        if is_psycopg3:
            from django.db.backends.postgresql.base import ServerBindingCursor

            driver_cursor = ServerBindingCursor(connection.connection)
        else:
            # psycopg2 always binds on the client.
            driver_cursor = connection.create_cursor()
    return _wrapped(driver_cursor)


def client_binding_cursor() -> CursorWrapper:
    """Open a cursor that merges the parameters into the SQL text on the client.

    Only such a cursor can send several statements with parameters in one query: PostgreSQL's
    extended query protocol takes one statement per query.
    """
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    _connection_ready()
    with connection.wrap_database_errors:
        if is_psycopg3:
            from django.db.backends.postgresql.base import Cursor

            driver_cursor = Cursor(connection.connection)
        else:
            driver_cursor = connection.create_cursor()
    return _wrapped(driver_cursor)


def _connection_ready() -> None:
    connection.close_if_health_check_failed()
    connection.ensure_connection()


def _wrapped(driver_cursor) -> CursorWrapper:
    connection.validate_thread_sharing()
    if connection.queries_logged:
        return connection.make_debug_cursor(driver_cursor)
    return connection.make_cursor(driver_cursor)


@contextmanager
def statements_unprepared(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run the block without preparing statements on the connection of `using`.

    PostgreSQL gives a statement prepared on a connection a generic plan after a few runs when
    that plan looks no costlier than the custom ones. For the KPI reports' aggregates over date
    ranges the generic plans were slower. With prepared statements the 91-day rollup refresh in
    bench/dashboard.py took 108 s instead of 85 s, and the KPI detail page's p95 was 271 ms
    instead of 245 ms (2-core virtual machine, PostgreSQL 15). Parameters are still bound
    on the server. A connection opened inside the block prepares as configured.
    """
    database = connections[using]
    if database.vendor != "postgresql":
        yield
        return
    database.ensure_connection()
    driver_connection = database.connection
    previous = getattr(driver_connection, "prepare_threshold", None)
    if previous is None:
        # psycopg2, or preparing is off already (DB_PREPARED_STATEMENTS=0).
        yield
        return
    driver_connection.prepare_threshold = None
    try:
        yield
    finally:
        if database.connection is driver_connection:
            driver_connection.prepare_threshold = previous
