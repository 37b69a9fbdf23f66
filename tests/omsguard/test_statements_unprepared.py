"""statements_unprepared: report queries run without prepared statements on PostgreSQL."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from monitoring.rollups import kpi_rollups_refresh
from omsguard.db_cursors import statements_unprepared

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's"
    ),
]

# More runs than psycopg's prepare_threshold (5) needs to prepare a statement.
RUNS = 8


def _run_probe(marker: int) -> None:
    with connection.cursor() as cursor:
        for _ in range(RUNS):
            cursor.execute(f"SELECT %s::int + {marker}", [1])


def _prepared_containing(text: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            [f"%{text}%"],
        )
        return cursor.fetchone()[0]


def test_block_prepares_nothing():
    with statements_unprepared():
        _run_probe(7001)

    assert _prepared_containing("+ 7001") == 0


def test_outside_block_prepares():
    _run_probe(7002)

    assert _prepared_containing("+ 7002") == 1


def test_threshold_restored_after_block():
    connection.ensure_connection()
    before = connection.connection.prepare_threshold

    with statements_unprepared():
        inside = connection.connection.prepare_threshold

    assert before == 5
    assert inside is None
    assert connection.connection.prepare_threshold == 5


def test_rollup_refresh_prepares_nothing():
    now = timezone.now()

    for _ in range(RUNS):
        kpi_rollups_refresh(since=now - timedelta(hours=2), until=now, now=now)

    assert _prepared_containing("monitoring_kpirollup") == 0
