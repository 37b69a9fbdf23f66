"""The routing check reads a channel's latest orders through order_channel_recent_idx.

Without the index PostgreSQL read and sorted every order of the channel for each new order
(7.7 ms per order at 3,030 orders, 29 ms at 6,000). The planner picks a sequential scan on a
small test table whatever the indexes, so the plan is taken with scans and sorts that need no
index switched off: it then shows whether an index can serve the query.
"""

import json

import pytest
from django.db import connection

from orders.hygiene.escalation import ROUTING_COUNTS_SQL, ROUTING_HISTORY

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="The plan is PostgreSQL's; SQLite has none."
    ),
]

PLANNER_OFF = ("enable_seqscan", "enable_bitmapscan", "enable_sort")


def _plan(sql: str, params: dict) -> str:
    with connection.cursor() as cursor:
        for setting in PLANNER_OFF:
            cursor.execute(f"SET LOCAL {setting} = off")
        cursor.execute(f"EXPLAIN SELECT {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_routing_counts_read_the_channel_recent_index():
    params = {"channel": 1, "order": 1, "country": json.dumps("US"), "history": ROUTING_HISTORY}

    plan = _plan(ROUTING_COUNTS_SQL, params)

    assert "order_channel_recent_idx" in plan, plan
    assert "Sort" not in plan, plan
