"""What keeps the dashboard fast on large data: rollups summed over channels in SQL, records
lists counted up to a limit, slowest-first lists only while short, and flat query counts."""

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission

from catalog.models import Channel, ChannelKind
from monitoring import dashboard_views, drilldown
from monitoring.kpis import COUNTERS, histogram_empty, histogram_merge
from monitoring.models import Granularity, KpiRollup
from monitoring.selectors import rollup_rows, rollup_rows_summed, rollup_table
from orders.models import Delivery
from tests.conftest import make_user
from tests.monitoring.test_drilldown import (
    IN_PERIOD,
    event_at,
    kpi_url,
    order_create,
    problem_at,
    rows_of,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 31, 12, 30, tzinfo=UTC)
TODAY = NOW.date()
CHANNELS = ["shop", "market", "c3", "c4"]


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def shop(db) -> Channel:
    return Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop")


@pytest.fixture
def viewer_client(client, shop):
    user = make_user("lena", None)
    user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    client.force_login(user)
    return client


def random_rows(days: int, channels: list[str], seed: int = 7) -> list[KpiRollup]:
    """Day rows of every counter and hour rows of today, with random counts and histograms.

    Gauges get two snapshots today, so summing them instead of keeping the later one shows.
    """
    rng = random.Random(seed)  # noqa: S311 - test data
    rows = []
    starts = [
        (
            Granularity.DAY,
            datetime.combine(TODAY - timedelta(days=offset), datetime.min.time(), UTC),
        )
        for offset in range(1, days + 1)
    ]
    starts += [
        (Granularity.HOUR, datetime(TODAY.year, TODAY.month, TODAY.day, hour, tzinfo=UTC))
        for hour in (3, 9)
    ]
    for granularity, bucket_start in starts:
        for slug, counter in COUNTERS.items():
            codes = channels if counter.per_channel else [""]
            dimensions = ["a", "b"] if counter.dimension else [""]
            for code in codes:
                for dimension in dimensions:
                    histogram = []
                    if counter.has_histogram:
                        histogram = [rng.randint(0, 5) for _ in histogram_empty()]
                    rows.append(
                        KpiRollup(
                            counter=slug,
                            granularity=granularity,
                            bucket_start=bucket_start,
                            channel=code,
                            dimension=dimension,
                            count=rng.randint(0, 50),
                            total=Decimal(rng.randint(0, 10_000)) / 1000,
                            histogram=histogram,
                        )
                    )
    return rows


# --- Rollups summed in SQL --------------------------------------------------------------------


@pytest.mark.parametrize("channel", [None, "market"])
def test_summed_rows_give_same_table(channel):
    KpiRollup.objects.bulk_create(random_rows(10, CHANNELS))
    start, end = NOW - timedelta(days=8, hours=5), NOW
    counters = set(COUNTERS)

    summed = rollup_rows_summed(counters, start=start, end=end, channel=channel)
    plain = rollup_rows(counters, start=start, end=end, channel=channel)

    if channel is None:
        assert len(summed) < len(plain)
    assert rollup_table(summed) == rollup_table(plain)


def test_summed_rows_keep_latest_gauge_snapshot():
    KpiRollup.objects.bulk_create(random_rows(2, CHANNELS))
    start = datetime.combine(TODAY, datetime.min.time(), UTC)

    table = rollup_table(rollup_rows_summed({"queue_open"}, start=start, end=NOW))

    nine = KpiRollup.objects.filter(counter="queue_open", bucket_start__hour=9)
    assert table["queue_open"]["a"].count == nine.get(dimension="a").count


def test_histogram_merge_pads_and_truncates():
    size = len(histogram_empty())

    merged = histogram_merge([[1] * size, [2, 3], [1] * (size + 4), []])

    assert merged == [4, 5] + [2] * (size - 2)


# --- Query counts -----------------------------------------------------------------------------


def test_dashboard_queries_bounded(viewer_client, django_assert_max_num_queries):
    for code in CHANNELS[1:]:
        Channel.objects.create(kind=ChannelKind.SHOPIFY, code=code)
    KpiRollup.objects.bulk_create(random_rows(90, CHANNELS))

    # Session, user, channels, baseline settings and first rollup, and three rollup reads
    # of two queries each (summed counters, then histograms and gauges), with some slack.
    with django_assert_max_num_queries(16):
        response = viewer_client.get("/dashboard/", {"days": "90"})

    assert response.status_code == 200


def test_kpi_page_queries_bounded(viewer_client, shop, django_assert_max_num_queries):
    KpiRollup.objects.bulk_create(random_rows(90, ["shop"]))
    for number in range(40):
        problem_at(order_create(shop, f"#{number}"), IN_PERIOD + timedelta(minutes=number))

    with django_assert_max_num_queries(16):
        response = viewer_client.get(kpi_url("order_error_rate", days=90))

    assert response.status_code == 200


# --- Records lists on large periods -----------------------------------------------------------


def test_records_count_stops_at_limit(viewer_client, shop, monkeypatch):
    monkeypatch.setattr(dashboard_views, "RECORDS_COUNT_LIMIT", 30)
    for number in range(40):
        problem_at(order_create(shop, f"#{3000 + number}"), IN_PERIOD + timedelta(minutes=number))

    html = viewer_client.get(kpi_url("order_error_rate")).content.decode()
    last = viewer_client.get(kpi_url("order_error_rate", page=9)).content.decode()

    assert 'Review items <span class="muted">(more than 30)</span>' in html
    assert "Page 1 of 2, the first 2 pages only" in html
    # The last page ends at the 30th record, newest first: #3010, not #3000.
    assert len(rows_of(last, "Review items")) == 5
    assert "#3010" in rows_of(last, "Review items")[-1]


def test_records_count_exact_below_limit(viewer_client, shop):
    for number in range(3):
        problem_at(order_create(shop, f"#{number}"), IN_PERIOD)

    html = viewer_client.get(kpi_url("order_error_rate")).content.decode()

    assert 'Review items <span class="muted">(3)</span>' in html
    assert "more than" not in html


def latency_orders(shop: Channel) -> None:
    """Two orders: #S waited a day for its decision and came first, #Q two minutes, later."""
    for number, waited, at in (
        ("#S", timedelta(days=1), IN_PERIOD),
        ("#Q", timedelta(minutes=2), IN_PERIOD + timedelta(hours=1)),
    ):
        order = order_create(shop, number)
        Delivery.objects.filter(orders=order).update(received_at=at - waited)
        event_at(order, "order.ready", at)


def latency_rollup(count: int) -> None:
    KpiRollup.objects.create(
        counter="decision_latency",
        granularity=Granularity.DAY,
        bucket_start=datetime(2025, 3, 20, tzinfo=UTC),
        channel="shop",
        count=count,
        total=Decimal("0"),
        histogram=histogram_empty(),
    )


def test_latency_list_slowest_first_when_short(viewer_client, shop):
    latency_orders(shop)
    latency_rollup(drilldown.SLOWEST_FIRST_LIMIT)

    html = viewer_client.get(kpi_url("decision_latency_p95")).content.decode()

    rows = rows_of(html, "Order events")
    assert "#S" in rows[0]
    assert "#Q" in rows[1]
    assert "listed newest first" not in html


def test_latency_list_newest_first_when_long(viewer_client, shop):
    latency_orders(shop)
    latency_rollup(drilldown.SLOWEST_FIRST_LIMIT + 1)

    html = viewer_client.get(kpi_url("decision_latency_p95")).content.decode()

    rows = rows_of(html, "Order events")
    assert "#Q" in rows[0]
    assert "#S" in rows[1]
    assert "so they are listed newest first" in html


def test_drilldown_expected_none_keeps_slowest_first(shop):
    from monitoring.kpis import KPIS

    records = drilldown.drilldown_records(
        KPIS["decision_latency_p95"], start=NOW - timedelta(days=30), end=NOW
    )

    assert not records.newest_first_instead
    # Only the slowest-first order sorts by elapsed time, nulls last.
    assert "NULLS LAST" in str(records.sections[0].queryset.query).split("ORDER BY")[-1]


def test_random_rows_cover_every_counter():
    # Guards the fixture above: a counter missing from it would go untested.
    rows = random_rows(1, CHANNELS)

    assert {row.counter for row in rows} == set(COUNTERS)
    assert date(2025, 3, 30) in {row.bucket_start.date() for row in rows}
