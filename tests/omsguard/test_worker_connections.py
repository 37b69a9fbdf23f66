"""A Celery worker keeps its database connection between tasks, and still drops a stale one.

Celery's Django support closes every connection before and after each task unless
CELERY_DB_REUSE_MAX is set. Opening a PostgreSQL connection per order cost about half of a
worker's throughput. omsguard.celery.database_connections_refresh applies CONN_MAX_AGE and the
health check before each task instead, and leaves the health check out for a connection the
previous task has just finished with.
"""

import time
from types import SimpleNamespace

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import DEFAULT_DB_ALIAS, connection, connections

from omsguard import celery as omsguard_celery
from omsguard.celery import app, database_connections_note_use, database_connections_refresh

pytestmark = pytest.mark.django_db(transaction=True)


def _task(*, eager: bool) -> SimpleNamespace:
    return SimpleNamespace(request=SimpleNamespace(is_eager=eager))


def _open_connection():
    connection.ensure_connection()
    return connection.connection


def test_celery_keeps_the_connection_around_a_task():
    opened = _open_connection()
    fixup = DjangoWorkerFixup(app)

    # What the fixup runs before and after each task in a worker.
    fixup.close_database()
    fixup.close_database()

    assert connection.connection is opened


def test_refresh_keeps_a_connection_within_its_age():
    opened = _open_connection()
    connection.close_at = time.monotonic() + 60

    database_connections_refresh(task=_task(eager=False))

    assert connection.connection is opened


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="Django never closes the in-memory SQLite test database"
)
def test_refresh_closes_a_connection_past_its_age():
    _open_connection()
    connection.close_at = time.monotonic() - 1

    database_connections_refresh(task=_task(eager=False))

    assert connection.connection is None


def test_refresh_skips_eager_task():
    opened = _open_connection()
    connection.close_at = time.monotonic() - 1

    database_connections_refresh(task=_task(eager=True))

    assert connection.connection is opened


def _health_checks_counted(monkeypatch) -> list[bool]:
    """Turn the health check on and record each check that runs, with its result."""
    checks: list[bool] = []
    # The wrapper itself: monkeypatch cannot restore attributes through the proxy.
    wrapper = connections[DEFAULT_DB_ALIAS]
    usable = wrapper.is_usable

    def counted() -> bool:
        checks.append(usable())
        return checks[-1]

    monkeypatch.setattr(wrapper, "health_check_enabled", True)
    monkeypatch.setattr(wrapper, "is_usable", counted)
    return checks


def test_refresh_skips_check_after_recent_task(monkeypatch):
    opened = _open_connection()
    checks = _health_checks_counted(monkeypatch)

    database_connections_note_use(task=_task(eager=False))
    database_connections_refresh(task=_task(eager=False))
    connection.ensure_connection()
    connection.close_if_health_check_failed()

    assert checks == []
    assert connection.connection is opened


def test_refresh_checks_after_idle_time(monkeypatch):
    _open_connection()
    checks = _health_checks_counted(monkeypatch)
    database_connections_note_use(task=_task(eager=False))
    monkeypatch.setattr(omsguard_celery, "HEALTH_CHECK_SKIP_SECONDS", 0.0)

    database_connections_refresh(task=_task(eager=False))
    connection.close_if_health_check_failed()

    assert checks == [True]


def test_refresh_checks_once_per_recorded_task(monkeypatch):
    _open_connection()
    checks = _health_checks_counted(monkeypatch)
    database_connections_note_use(task=_task(eager=False))
    database_connections_refresh(task=_task(eager=False))

    # A second task without a finished task in between is checked again.
    database_connections_refresh(task=_task(eager=False))
    connection.close_if_health_check_failed()

    assert checks == [True]


@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="Django never closes the in-memory SQLite test database"
)
def test_refresh_closes_connection_with_errors(monkeypatch):
    _open_connection()
    _health_checks_counted(monkeypatch)
    database_connections_note_use(task=_task(eager=False))
    connection.errors_occurred = True
    monkeypatch.setattr(connections[DEFAULT_DB_ALIAS], "is_usable", lambda: False)

    database_connections_refresh(task=_task(eager=False))

    assert connection.connection is None


def test_note_use_leaves_out_connection_with_errors(monkeypatch):
    _open_connection()
    checks = _health_checks_counted(monkeypatch)
    connection.errors_occurred = True

    database_connections_note_use(task=_task(eager=False))
    connection.errors_occurred = False
    database_connections_refresh(task=_task(eager=False))
    connection.close_if_health_check_failed()

    assert checks == [True]
