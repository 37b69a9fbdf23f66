"""The dashboard reads from the read replica when one is configured, and nothing writes there.

The "replica" alias here points at the test database itself, as TEST MIRROR does in a test
run with OMSGUARD_REPLICA_DATABASE_URL set, but through a connection of its own. So the
queries each alias runs can be told apart, and the tests commit their rows (transaction=True)
so that the second connection sees them.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import connections
from django.test.utils import CaptureQueriesContext

from catalog.models import Channel, ChannelKind
from monitoring.kpis import COUNTERS, KPIS, histogram_empty
from monitoring.models import Granularity, KpiRollup
from monitoring.rollups import kpi_rollups_refresh
from omsguard.databases import REPLICA, reporting_database
from orders.models import Delivery
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2025, 3, 31, 12, 30, tzinfo=UTC)
TODAY = NOW.date()
WRITES = ("INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE")


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def replica(monkeypatch):
    """Configure the "replica" alias as a mirror of the test database, then remove it.

    connections.settings is the settings.DATABASES dict itself, so reporting_database()
    sees the alias too.
    """
    mirror = {**connections["default"].settings_dict, "TEST": {"MIRROR": "default"}}
    monkeypatch.setitem(connections.settings, REPLICA, mirror)
    # The test case allows only the aliases it knew at its start. Its check guards only
    # connections not yet open, so a connection opened here passes it.
    connections[REPLICA].connect()
    try:
        yield connections[REPLICA]
    finally:
        connections[REPLICA].close()
        del connections[REPLICA]


@pytest.fixture
def viewer_client(client):
    Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop", name="Web shop")
    user = make_user("lena", None)
    user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(user)
    return client


def day_row(counter: str, day: date, count: int) -> KpiRollup:
    channel = "shop" if COUNTERS[counter].per_channel else ""
    return KpiRollup(
        counter=counter,
        granularity=Granularity.DAY,
        bucket_start=datetime(day.year, day.month, day.day, tzinfo=UTC),
        channel=channel,
        count=count,
        total=Decimal("0"),
        histogram=histogram_empty() if COUNTERS[counter].has_histogram else [],
    )


def seed_orders() -> None:
    """400 orders and 3 errors two weeks ago: 75 errors per 10,000 orders."""
    day = TODAY - timedelta(days=14)
    KpiRollup.objects.bulk_create([day_row("orders_received", day, 400)])
    KpiRollup.objects.bulk_create([day_row("order_errors", day, 3)])


def statements(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries]


def test_reporting_database_is_the_replica_only_when_configured(replica):
    assert reporting_database() == REPLICA
    del connections.settings[REPLICA]
    assert reporting_database() == "default"
    connections.settings[REPLICA] = replica.settings_dict


def test_dashboard_reads_rollups_from_the_replica(replica, viewer_client):
    seed_orders()

    with (
        CaptureQueriesContext(connections["default"]) as primary,
        CaptureQueriesContext(replica) as mirrored,
    ):
        response = viewer_client.get("/dashboard/", {"days": "30"})

    assert response.status_code == 200
    cards = {
        card.kpi.slug: card
        for group in response.context["dashboard"].groups
        for card in group.cards
    }
    # The value proves the replica connection read the committed rows.
    assert cards["order_error_rate"].current.value == Decimal("75")
    assert any("monitoring_kpirollup" in sql for sql in statements(mirrored))
    assert any("catalog_channel" in sql for sql in statements(mirrored))
    # The primary serves only the session and the user: no rollup or channel read.
    assert not any("monitoring_kpirollup" in sql for sql in statements(primary))
    assert not any("catalog_channel" in sql for sql in statements(primary))
    assert all(sql.lstrip().upper().startswith("SELECT") for sql in statements(mirrored))


@pytest.mark.parametrize("slug", ["order_error_rate", "decision_latency_p95", "queue_size"])
def test_kpi_page_reads_rollups_and_records_from_the_replica(replica, viewer_client, slug):
    seed_orders()
    delivery = Delivery.objects.create(
        channel=Channel.objects.get(code="shop"),
        delivery_id="failed-1",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
        outcome="failed",
    )
    # A period ends now, exclusive; received_at would be exactly now.
    Delivery.objects.filter(pk=delivery.pk).update(received_at=NOW - timedelta(days=2))

    with (
        CaptureQueriesContext(connections["default"]) as primary,
        CaptureQueriesContext(replica) as mirrored,
    ):
        response = viewer_client.get(f"/dashboard/kpi/{slug}/", {"days": "30"})

    assert response.status_code == 200
    assert response.context["kpi"] == KPIS[slug]
    reporting_tables = ("monitoring_", "orders_", "reviews_", "guardrails_", "catalog_channel")
    assert any("monitoring_kpirollup" in sql for sql in statements(mirrored))
    assert not any(table in sql for sql in statements(primary) for table in reporting_tables)
    assert all(sql.lstrip().upper().startswith("SELECT") for sql in statements(mirrored))
    if slug == "order_error_rate":
        # The failed delivery is listed under the records behind the number.
        assert "failed-1" in response.content.decode()


def test_rollup_refresh_never_touches_the_replica(replica):
    seed_orders()

    with CaptureQueriesContext(replica) as mirrored:
        written = kpi_rollups_refresh(since=NOW - timedelta(days=2), until=NOW, now=NOW)

    assert written > 0
    assert statements(mirrored) == []
    assert KpiRollup.objects.filter(counter="queue_open").exists()
    assert not any(sql.lstrip().upper().startswith(WRITES) for sql in statements(mirrored))
