"""503 with Retry-After while the database cannot be reached, and still 500 for a query bug.

The database fails for real. Each request that must not reach the database runs in a thread
of its own, because Django opens one connection per thread from the shared settings dict. A
thread started while those settings point at a closed port (PostgreSQL), or at a file that
cannot be opened or is locked (SQLite), fails to connect. The test's own connection, inside
the test's transaction, stays untouched.

This module is also the URLconf of its tests: the product's URLs plus a few views that fail
in places no product view does on demand (the session save after the view, the server
terminating the request's own connection, a query bug).
"""

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import psycopg.errors
import pytest
from django.db import IntegrityError, InterfaceError, OperationalError, connection, connections
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path

from omsguard.middleware import is_database_unavailable

# Nothing listens on port 1 (tcpmux) on an ordinary host, so connecting is refused at once.
CLOSED_PORT = 1
THREAD_TIMEOUT = 30
TRACEBACK_MARKERS = ("Traceback", 'File "', "OperationalError", "psycopg", "sqlite3")
MIDDLEWARE_LOGGER = "omsguard.middleware"
# A syntactically valid session key that no session row has: reading it needs the database.
SESSION_KEY = "abcdefghijklmnopqrstuvwxyz012345"


def _session_write(request: HttpRequest) -> HttpResponse:
    # Touches no table itself: the session is written by SessionMiddleware after the view.
    request.session["probe"] = "1"
    return HttpResponse("written")


def _own_connection_terminate(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    return HttpResponse("not reached")


def _query_bug(request: HttpRequest) -> HttpResponse:
    """Raise an OperationalError that is a fault in the query, not an outage."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # QueryCanceled (57014), an OperationalError subclass in psycopg.
            cursor.execute("SET LOCAL statement_timeout = 1")
            cursor.execute("SELECT pg_sleep(1)")
        else:
            cursor.execute("SELECT no_such_column FROM django_migrations")
    return HttpResponse("not reached")


urlpatterns = [
    path("test/session-write/", _session_write),
    path("test/own-connection-terminate/", _own_connection_terminate),
    path("test/query-bug/", _query_bug),
    path("", include("omsguard.urls")),
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@contextmanager
def _new_connections_use(**changes) -> Iterator[None]:
    """Change the settings that connections opened from now on read; restore them after."""
    settings_dict = connection.settings_dict
    saved = {key: settings_dict[key] for key in changes}
    settings_dict.update(changes)
    try:
        yield
    finally:
        settings_dict.update(saved)


@contextmanager
def _database_unreachable(tmp_path: Path) -> Iterator[None]:
    if connection.vendor == "postgresql":
        with _new_connections_use(HOST="127.0.0.1", PORT=CLOSED_PORT):
            yield
    else:
        # The directory does not exist, so SQLite cannot open the file (SQLITE_CANTOPEN).
        with _new_connections_use(NAME=str(tmp_path / "missing" / "omsguard.sqlite3")):
            yield


def _in_new_thread(send: Callable[[Client], HttpResponse]) -> HttpResponse:
    """Send a request from a new thread, so it opens a database connection of its own."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["response"] = send(Client(raise_request_exception=False))
        except BaseException as error:  # noqa: BLE001 - handed to the test thread below
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(THREAD_TIMEOUT)
    assert not thread.is_alive(), f"the request did not finish within {THREAD_TIMEOUT} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["response"]


def _post_webhook(client: Client) -> HttpResponse:
    return client.post("/webhooks/shopify/shop/", data=b"{}", content_type="application/json")


def _get_api_orders(client: Client) -> HttpResponse:
    return client.get("/api/v1/orders/", headers={"Authorization": "Token " + "0" * 40})


def _get_home_page(client: Client) -> HttpResponse:
    client.cookies["sessionid"] = SESSION_KEY
    return client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})


def _assert_no_traceback(response: HttpResponse) -> None:
    body = response.content.decode()
    for marker in TRACEBACK_MARKERS:
        assert marker not in body, f"{marker!r} in the 503 body: {body[:500]}"


def _assert_json_503(response: HttpResponse, *, retry_after: int = 5) -> None:
    assert response.status_code == 503, response.content[:500]
    assert response["Retry-After"] == str(retry_after)
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {
        "error": {
            "code": "database_unavailable",
            "message": f"The database is unavailable. Try again in {retry_after} seconds.",
            "fields": {},
        }
    }
    _assert_no_traceback(response)


def _assert_html_503(response: HttpResponse) -> None:
    assert response.status_code == 503, response.content[:500]
    assert response["Retry-After"] == "5"
    assert response["Content-Type"] == "text/html; charset=utf-8"
    body = response.content.decode()
    assert "<h1>Service unavailable</h1>" in body
    assert "Reload this page in 5 seconds." in body
    _assert_no_traceback(response)


def _unavailable_records(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == MIDDLEWARE_LOGGER]


def test_webhook_unreachable_database_gets_json_503(tmp_path, caplog):
    with _database_unreachable(tmp_path):
        response = _in_new_thread(_post_webhook)

    _assert_json_503(response)
    records = _unavailable_records(caplog)
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "database unavailable, returned 503"
    assert record.view == "webhooks:shopify"
    assert record.method == "POST"
    assert record.error_class == "OperationalError"
    assert record.retry_after == 5
    assert record.exc_info is None


def test_log_line_omits_database_address(tmp_path, caplog):
    with _database_unreachable(tmp_path):
        _in_new_thread(_post_webhook)

    # The driver's message names the host and port (or the file); the log line must not.
    logged = " ".join(str(value) for value in vars(_unavailable_records(caplog)[0]).values())
    assert "127.0.0.1" not in logged
    assert f"port {CLOSED_PORT}" not in logged
    assert str(tmp_path) not in logged


def test_api_unreachable_database_gets_json_503(tmp_path, caplog):
    # Token authentication queries the database inside DRF, whose exception handler returns
    # None for database errors; DRF raises them again and the middleware returns the 503.
    with _database_unreachable(tmp_path):
        response = _in_new_thread(_get_api_orders)

    _assert_json_503(response)
    assert [record.view for record in _unavailable_records(caplog)] == ["order-list"]


def test_page_session_lookup_gets_html_503(tmp_path, caplog):
    # login_required reads request.user, which loads the session row named by the cookie.
    with _database_unreachable(tmp_path):
        response = _in_new_thread(_get_home_page)

    _assert_html_503(response)
    assert [record.view for record in _unavailable_records(caplog)] == ["home"]


def test_page_accepting_only_json_gets_json_503(tmp_path):
    def get_home_as_json(client: Client) -> HttpResponse:
        client.cookies["sessionid"] = SESSION_KEY
        return client.get("/", headers={"Accept": "application/json"})

    with _database_unreachable(tmp_path):
        response = _in_new_thread(get_home_as_json)

    _assert_json_503(response)


def test_retry_after_follows_setting(tmp_path, settings):
    settings.OMSGUARD_DB_RETRY_AFTER_SECONDS = 17

    with _database_unreachable(tmp_path):
        response = _in_new_thread(_post_webhook)

    _assert_json_503(response, retry_after=17)


def test_session_save_in_middleware_gets_503(tmp_path, caplog):
    # The view succeeds; SessionMiddleware then fails to save the session. Django turns that
    # into a 500 inside the middleware chain, which the middleware replaces with the 503.
    with _database_unreachable(tmp_path):
        response = _in_new_thread(lambda client: client.get("/test/session-write/"))

    _assert_html_503(response)
    records = _unavailable_records(caplog)
    assert len(records) == 1
    assert records[0].view.endswith("._session_write")


@pytest.mark.postgres
def test_connection_terminated_by_server_gets_503(caplog):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL.")

    # The view's own backend is terminated, as `pg_ctl stop -m fast` or an operator would:
    # the server sends 57P01 admin_shutdown in the middle of the request.
    response = _in_new_thread(
        lambda client: client.get(
            "/test/own-connection-terminate/", headers={"Accept": "application/json"}
        )
    )

    _assert_json_503(response)
    records = _unavailable_records(caplog)
    assert [(record.error_class, record.sqlstate) for record in records] == [
        ("AdminShutdown", "57P01")
    ]


def test_sqlite_locked_database_gets_503(tmp_path, caplog):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's file lock; PostgreSQL has no equivalent here.")
    locked_file = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(locked_file, isolation_level=None)
    holder.execute("CREATE TABLE probe (id INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    options = connection.settings_dict["OPTIONS"] | {"timeout": 0.05}

    try:
        with _new_connections_use(NAME=str(locked_file), OPTIONS=options):
            response = _in_new_thread(_post_webhook)
    finally:
        holder.rollback()
        holder.close()

    _assert_json_503(response)
    assert [record.sqlstate for record in _unavailable_records(caplog)] == ["SQLITE_BUSY"]


def test_query_bug_stays_500(caplog):
    client = Client(raise_request_exception=False)

    response = client.get("/test/query-bug/")

    assert response.status_code == 500
    assert "Retry-After" not in response
    assert _unavailable_records(caplog) == []


def _raised(error_class: type[Exception], cause: BaseException) -> Exception:
    """Raise error_class from cause, as Django wraps a driver error, and return it."""
    try:
        raise error_class(*cause.args) from cause
    except error_class as error:
        return error


def _sqlite_error(statement: str, path: str = ":memory:") -> sqlite3.Error:
    try:
        sqlite3.connect(path).execute(statement)
    except sqlite3.Error as error:
        return error
    raise AssertionError(f"{statement!r} on {path} did not fail")


def _sqlite_locked_error(tmp_path: Path) -> sqlite3.Error:
    locked_file = tmp_path / "classify.sqlite3"
    holder = sqlite3.connect(locked_file, isolation_level=None)
    holder.execute("CREATE TABLE probe (id INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        reader = sqlite3.connect(locked_file, timeout=0)
        return _sqlite_error_from(reader, "SELECT * FROM probe")
    finally:
        holder.rollback()
        holder.close()


def _sqlite_error_from(database: sqlite3.Connection, statement: str) -> sqlite3.Error:
    try:
        database.execute(statement)
    except sqlite3.Error as error:
        return error
    finally:
        database.close()
    raise AssertionError(f"{statement!r} did not fail")


POSTGRESQL_CASES = [
    # (driver error, Django class, is an outage)
    (psycopg.OperationalError("connection failed: Connection refused"), OperationalError, True),
    (psycopg.OperationalError("the connection is closed"), OperationalError, True),
    (psycopg.errors.ConnectionFailure("server closed the connection"), OperationalError, True),
    (psycopg.errors.AdminShutdown("terminating connection"), OperationalError, True),
    (psycopg.errors.CrashShutdown("crash of another server process"), OperationalError, True),
    (psycopg.errors.CannotConnectNow("the database system is starting up"), OperationalError, True),
    (psycopg.errors.TooManyConnections("too many clients already"), OperationalError, True),
    (psycopg.errors.IdleSessionTimeout("idle-session timeout"), OperationalError, True),
    (psycopg.errors.QueryCanceled("statement timeout"), OperationalError, False),
    (psycopg.errors.DeadlockDetected("deadlock detected"), OperationalError, False),
    (psycopg.errors.LockNotAvailable("could not obtain lock"), OperationalError, False),
    (psycopg.InterfaceError("the cursor is closed"), InterfaceError, False),
    (psycopg.errors.UniqueViolation("duplicate key"), IntegrityError, False),
]


@pytest.mark.parametrize(
    ("driver_error", "django_class", "expected"),
    POSTGRESQL_CASES,
    ids=[f"{type(case[0]).__name__}-{case[0].sqlstate}" for case in POSTGRESQL_CASES],
)
def test_postgresql_error_classified(driver_error, django_class, expected):
    assert is_database_unavailable(_raised(django_class, driver_error)) is expected


def test_sqlite_errors_classified(tmp_path):
    cannot_open = _sqlite_error("SELECT 1", str(tmp_path / "missing" / "x.sqlite3"))
    no_such_column = _sqlite_error("SELECT no_such_column FROM sqlite_master")
    locked = _sqlite_locked_error(tmp_path)

    assert is_database_unavailable(_raised(OperationalError, cannot_open)) is True
    assert is_database_unavailable(_raised(OperationalError, locked)) is True
    assert is_database_unavailable(_raised(OperationalError, no_such_column)) is False


def test_non_database_errors_not_classified():
    assert is_database_unavailable(None) is False
    assert is_database_unavailable(ValueError("no database involved")) is False
    # A Django error without a driver cause, as raised by hand, is not judged an outage.
    assert is_database_unavailable(OperationalError("no cause")) is False
