"""A Celery worker keeps its database connection between tasks, and still drops a stale one.

Celery's Django support closes every connection before and after each task unless
CELERY_DB_REUSE_MAX is set. Opening a PostgreSQL connection per order cost about half of a
worker's throughput. omsguard.celery.database_connections_refresh applies CONN_MAX_AGE and the
health check before each task instead.
"""

import time
from types import SimpleNamespace

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from omsguard.celery import app, database_connections_refresh

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
