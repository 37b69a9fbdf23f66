"""The KPI rollup refresh: idempotent, late facts, day rows, gauges, the command, the tasks and
the periodic schedules that run them."""

import importlib
import json
import threading
from collections import defaultdict
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.apps import apps as django_apps
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from monitoring.kpis import COUNTERS, KPIS, histogram_merge
from monitoring.models import AlertRule, Granularity, KpiRollup
from monitoring.rollups import kpi_rollups_refresh
from monitoring.selectors import (
    HOUR,
    kpi_compute,
    kpi_series,
    kpi_value,
    period_filter,
    rollup_table,
)
from monitoring.tasks import (
    alert_rules_evaluate,
    kpi_rollups_refresh_days,
    kpi_rollups_refresh_recent,
)
from orders.fulfilment import shipment_status_set
from orders.models import Chargeback, Delivery, DeliveryOutcome, OrderEvent, ShipmentStatus
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.guardrails.conftest import make_staff_user
from tests.monitoring.test_kpi_arithmetic import (
    DAY,
    at,
    failed_delivery,
    hold,
    make_channel,
    order_at,
    release,
    review_item_at,
    ship,
)

pytestmark = pytest.mark.django_db

NEXT_DAY = DAY + timedelta(days=1)
periodic_tasks_migration = importlib.import_module("monitoring.migrations.0005_periodic_tasks")


def stored_rows() -> list[tuple]:
    return sorted(
        KpiRollup.objects.values_list(
            "counter",
            "granularity",
            "bucket_start",
            "channel",
            "dimension",
            "count",
            "total",
            "histogram",
        )
    )


def refresh_two_days(now: datetime | None = None) -> int:
    return kpi_rollups_refresh(
        since=DAY, until=NEXT_DAY + timedelta(days=1), now=now or NEXT_DAY.replace(hour=12)
    )


@pytest.fixture
def two_days(channel, agent, carriers) -> None:
    """Orders, holds, decisions, shipments and decided review items over two days."""
    amazon = make_channel("amz")
    for day, count in [(DAY, 4), (NEXT_DAY, 3)]:
        for number in range(count):
            order = order_at(
                channel if number % 2 else amazon,
                day.replace(hour=9 + number),
                delivered_at=day.replace(hour=9 + number),
            )
            release(order, day.replace(hour=9 + number, minute=5 + number))
            if number == 0:
                hold(order, day.replace(hour=15))
            ship(order, day.replace(hour=16), carrier_code="UPS" if number % 2 else "")
            review_item_at(
                order,
                ReviewKind.ADDRESS if number % 2 else ReviewKind.UNMAPPED_SKU,
                day.replace(hour=10),
                status=ReviewStatus.ACCEPTED,
                decided_by=agent,
                decided_at=day.replace(hour=10, minute=number + 1),
            )
    review_item_at(order, ReviewKind.ADDRESS, NEXT_DAY.replace(hour=11))
    failed_delivery(channel, DAY.replace(hour=23, minute=59), DeliveryOutcome.FAILED)


# --- Refreshing ------------------------------------------------------------------------------


def test_refresh_twice_gives_same_rows(two_days):
    first_count = refresh_two_days()
    first = stored_rows()

    second_count = refresh_two_days()

    assert second_count == first_count
    assert stored_rows() == first
    assert first_count == len(first)


def test_late_fact_counted_after_next_refresh(two_days):
    refresh_two_days()
    order = order_at(make_channel("late"), DAY.replace(hour=8))
    assert kpi_value("chargeback_rate", start=DAY, end=NEXT_DAY).numerator == 0

    # Reported a day late, dated the day before.
    Chargeback.objects.create(
        order=order,
        channel=order.channel,
        chargeback_id="cb-late",
        amount=Decimal("10"),
        currency="USD",
        received_at=DAY.replace(hour=20),
    )
    refresh_two_days()

    late = kpi_value("chargeback_rate", start=DAY, end=NEXT_DAY)
    assert late.numerator == 1
    # 5 orders that day (4 + the late channel's) -> 200 per 1,000.
    assert late.value == Decimal("200")


def test_count_dropping_to_zero_removes_its_row(two_days):
    refresh_two_days()
    errors = KpiRollup.objects.filter(counter="order_errors", channel="shop")
    assert errors.filter(bucket_start=DAY.replace(hour=23)).get().count == 1
    day_row = errors.filter(granularity=Granularity.DAY, bucket_start=DAY)
    # 2 address items at 10:00 and the failed delivery at 23:59.
    assert day_row.get().count == 3

    # The failed delivery was replayed and processed.
    Delivery.objects.filter(outcome=DeliveryOutcome.FAILED).update(
        outcome=DeliveryOutcome.PROCESSED
    )
    refresh_two_days()

    assert not errors.filter(bucket_start=DAY.replace(hour=23)).exists()
    assert day_row.get().count == 2


def test_refresh_leaves_hours_outside_window(two_days):
    refresh_two_days()
    before = KpiRollup.objects.filter(granularity=Granularity.HOUR, bucket_start__lt=NEXT_DAY)
    kept = sorted(before.exclude(counter="queue_open").values_list("pk", flat=True))
    OrderEvent.objects.all().delete()

    kpi_rollups_refresh(since=NEXT_DAY, until=NEXT_DAY + timedelta(days=1))

    assert sorted(before.exclude(counter="queue_open").values_list("pk", flat=True)) == kept


def test_hour_rows_sum_to_day_rows(two_days):
    refresh_two_days()

    sums: dict[tuple, list] = defaultdict(lambda: [0, Decimal("0"), []])
    hour_rows = KpiRollup.objects.filter(granularity=Granularity.HOUR).exclude(counter="queue_open")
    for row in hour_rows:
        key = (row.counter, row.bucket_start.replace(hour=0), row.channel, row.dimension)
        sums[key][0] += row.count
        sums[key][1] += row.total
        if row.histogram:
            sums[key][2] = histogram_merge([sums[key][2], row.histogram])
    day_rows = {
        (row.counter, row.bucket_start, row.channel, row.dimension): [
            row.count,
            row.total,
            row.histogram,
        ]
        for row in KpiRollup.objects.filter(granularity=Granularity.DAY).exclude(
            counter="queue_open"
        )
    }

    assert day_rows == dict(sums)
    assert day_rows["orders_received", DAY, "amz", ""][0] == 2
    assert sum(day_rows["decision_latency", NEXT_DAY, "amz", ""][2]) == 2


def test_mixed_day_and_hour_rows_equal_hour_rows(two_days):
    refresh_two_days()
    # 20:00 on the first day to the end of the second: 4 hour rows, then 1 day row.
    start, end = DAY.replace(hour=20), NEXT_DAY + timedelta(days=1)
    assert KpiRollup.objects.filter(period_filter(start, end), granularity="day").exists()

    for slug in KPIS:
        mixed = kpi_value(slug, start=start, end=end)
        hour_rows = KpiRollup.objects.filter(
            granularity=Granularity.HOUR,
            bucket_start__gte=start,
            bucket_start__lt=end,
            counter__in={KPIS[slug].numerator, KPIS[slug].denominator} - {""},
        ).order_by("bucket_start")
        rows = list(
            hour_rows.values_list(
                "counter", "dimension", "bucket_start", "count", "total", "histogram"
            )
        )
        from_hours = kpi_compute(slug, rollup_table(rows))
        assert (slug, mixed.value, mixed.sample) == (slug, from_hours.value, from_hours.sample)


def test_hourly_series_over_whole_days_reads_hour_rows(two_days):
    refresh_two_days()

    series = kpi_series("manual_cleanups_rate", start=DAY, end=NEXT_DAY, step=HOUR)

    by_hour = {moment.hour: point.numerator for moment, point in series}
    # Four items decided at 10:01-10:04, none at midnight.
    assert by_hour[10] == Decimal("4")
    assert by_hour[0] == Decimal("0")
    assert len(series) == 24


def test_daily_series_matches_day_values(two_days):
    refresh_two_days()

    series = kpi_series(
        "decision_latency_p50", start=DAY, end=NEXT_DAY + timedelta(days=1), step=timedelta(days=1)
    )

    assert [moment for moment, _ in series] == [DAY, NEXT_DAY]
    for moment, point in series:
        whole_day = kpi_value("decision_latency_p50", start=moment, end=moment + timedelta(days=1))
        assert point.value == whole_day.value
        assert point.sample == whole_day.sample


def test_refresh_rejects_bad_periods():
    with pytest.raises(ValueError, match="before since"):
        kpi_rollups_refresh(since=NEXT_DAY, until=DAY)
    with pytest.raises(ValueError, match="aware datetime"):
        kpi_rollups_refresh(since=datetime(2026, 3, 2), until=datetime(2026, 3, 3))


def test_periods_round_to_utc_hours(channel):
    order_at(channel, at(9, 40))
    kpi_rollups_refresh(since=at(9), until=at(10), now=at(12))
    india = dt_timezone(timedelta(hours=5, minutes=30))

    # 15:10 in India is 09:40 UTC: the period covers the UTC hour 09:00-10:00.
    start = at(9, 40).astimezone(india)
    result = kpi_value("order_error_rate", start=start, end=start + timedelta(minutes=5))

    assert result.sample == 1


# --- Gauges ------------------------------------------------------------------------------


def test_gauge_keeps_latest_snapshot(channel):
    order = order_at(channel, at(8))
    items = [review_item_at(order, ReviewKind.ADDRESS, at(9)) for _ in range(3)]
    kpi_rollups_refresh(since=at(9), until=at(10), now=at(9, 30))

    ReviewItem.objects.filter(pk=items[0].pk).update(status=ReviewStatus.ACCEPTED)
    kpi_rollups_refresh(since=at(9), until=at(11), now=at(10, 45))

    # The 10:00 snapshot is the latest of the day: 2 open, the oldest 1 h 45 min old.
    assert kpi_value("queue_size", start=DAY, end=NEXT_DAY).value == Decimal("2")
    assert kpi_value("queue_oldest_age", start=DAY, end=NEXT_DAY).value == Decimal("6300")
    # The 09:00 hour keeps its own snapshot: 3 open then.
    assert kpi_value("queue_size", start=at(9), end=at(10)).value == Decimal("3")
    # Every queue kind has a row, 0 when empty.
    snapshot = KpiRollup.objects.filter(counter="queue_open", bucket_start=at(10))
    assert snapshot.count() == len(ReviewKind.values)
    assert snapshot.get(dimension="unmapped_sku").count == 0


def test_gauge_snapshot_replaced_within_hour(channel):
    order = order_at(channel, at(8))
    item = review_item_at(order, ReviewKind.ADDRESS, at(9))
    kpi_rollups_refresh(since=at(9), until=at(10), now=at(9, 10))

    ReviewItem.objects.filter(pk=item.pk).update(status=ReviewStatus.REJECTED)
    kpi_rollups_refresh(since=at(9), until=at(10), now=at(9, 50))

    assert kpi_value("queue_size", start=at(9), end=at(10)).value == Decimal("0")
    day_row = KpiRollup.objects.get(
        counter="queue_open", granularity=Granularity.DAY, dimension="address"
    )
    assert day_row.count == 0


# --- Query count -------------------------------------------------------------------------


def busy_hour(channel, agent, orders: int) -> None:
    for number in range(orders):
        order = order_at(channel, at(9, number % 60), delivered_at=at(9))
        release(order, at(9, number % 60, 30))
        hold(order, at(10))
        ship(order, at(11), carrier_code="UPS")
        review_item_at(
            order,
            ReviewKind.ADDRESS,
            at(9),
            status=ReviewStatus.ACCEPTED,
            decided_by=agent,
            decided_at=at(9, 59),
        )


def refresh_queries() -> int:
    with CaptureQueriesContext(connection) as queries:
        kpi_rollups_refresh(since=DAY, until=NEXT_DAY, now=at(12))
    return len(queries)


def test_refresh_query_count_flat(channel, agent, carriers):
    busy_hour(channel, agent, 10)
    few = refresh_queries()
    assert KpiRollup.objects.get(counter="orders_received", granularity="day").count == 10

    busy_hour(channel, agent, 190)
    many = refresh_queries()

    assert KpiRollup.objects.get(counter="orders_received", granularity="day").count == 200
    assert many == few


# --- Command, tasks and schedules ----------------------------------------------------------


def test_command_refreshes_period(channel):
    order_at(channel, at(9))
    output = StringIO()

    call_command(
        "rollup_kpis",
        "--since",
        "2026-03-02T00:00:00Z",
        "--until",
        "2026-03-03T00:00:00+00:00",
        stdout=output,
    )

    assert output.getvalue().startswith("Wrote ")
    assert "rollup rows for 2026-03-02T00:00:00+00:00 to 2026-03-03T00:00:00+00:00 in " in (
        output.getvalue()
    )
    assert KpiRollup.objects.get(counter="orders_received", granularity="hour").count == 1


def test_command_days_default_week(channel):
    with time_machine.travel(NEXT_DAY.replace(hour=12), tick=False):
        order_at(channel, DAY - timedelta(days=5))
        order_at(channel, DAY - timedelta(days=8))
        call_command("rollup_kpis", stdout=StringIO())

    rows = KpiRollup.objects.filter(counter="orders_received", granularity="day")
    assert list(rows.values_list("bucket_start", flat=True)) == [DAY - timedelta(days=5)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--days", "2", "--since", "2026-03-01"], "either --days or --since/--until"),
        (["--until", "2026-03-01"], "--until needs --since"),
        (["--since", "2026-03-02", "--until", "2026-03-01"], "is before --since"),
    ],
)
def test_command_rejects_bad_options(arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("rollup_kpis", *arguments, stdout=StringIO())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["--days", "0"], "must be 1 or more"), (["--since", "yesterday"], "invalid date")],
)
def test_command_rejects_bad_values(arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("rollup_kpis", *arguments, stdout=StringIO())


def test_refresh_task_covers_recent_hours(channel, settings):
    settings.OMSGUARD_KPI_REFRESH_HOURS = 3
    order_at(channel, at(10, 15))
    order_at(channel, at(8, 50))

    with time_machine.travel(at(12, 30), tick=False):
        rows = kpi_rollups_refresh_recent.delay().get()

    assert rows > 0
    hours = KpiRollup.objects.filter(counter="orders_received", granularity="hour")
    # 09:30 back to 12:30 covers the hours 09:00-12:00: the 10:15 order, not the 08:50 one.
    assert list(hours.values_list("bucket_start", flat=True)) == [at(10)]


# --- Facts that arrive or change after the refresh window ---------------------------------


def refresh_recent_at(moment: datetime) -> None:
    with time_machine.travel(moment, tick=False):
        kpi_rollups_refresh_recent.delay().get()


def status_set(shipment, status: str, moment: datetime) -> None:
    with time_machine.travel(moment, tick=False):
        shipment_status_set(shipment=shipment, status=status, user=None, changed_at=moment)


def address_error_rate(days: int) -> Decimal | None:
    return kpi_value("address_shipping_error_rate", start=DAY, end=DAY + timedelta(days=days)).value


def test_shipping_error_counted_once_after_later_change(channel, settings):
    settings.OMSGUARD_KPI_REFRESH_HOURS = 48
    shipment = ship(order_at(channel, at(8)), at(9), address_corrected=True)
    status_set(shipment, ShipmentStatus.DELIVERY_FAILED, at(20))
    refresh_recent_at(at(21))
    assert address_error_rate(1) == Decimal("100")

    # Four days later, after day 1 left the 48-hour window, the parcel goes back.
    status_set(shipment, ShipmentStatus.RETURNED_TO_SENDER, at(10) + timedelta(days=4))
    refresh_recent_at(at(12) + timedelta(days=4))

    # One failed shipment of one: 100 %, not 200 %.
    assert address_error_rate(5) == Decimal("100")
    errors = KpiRollup.objects.filter(
        counter="corrected_address_shipping_errors", granularity=Granularity.HOUR
    )
    assert list(errors.values_list("bucket_start", "count")) == [(at(9), 1)]


def test_daily_refresh_counts_late_chargeback(channel):
    order = order_at(channel, at(8))
    refresh_recent_at(at(12))
    Chargeback.objects.create(
        order=order,
        channel=channel,
        chargeback_id="cb-late",
        amount=Decimal("10"),
        currency="USD",
        received_at=at(20),
    )
    ten_days_later = at(3, 30) + timedelta(days=10)
    refresh_recent_at(ten_days_later)
    assert kpi_value("chargeback_rate", start=DAY, end=NEXT_DAY).numerator == 0

    with time_machine.travel(ten_days_later, tick=False):
        rows = kpi_rollups_refresh_days.delay(days=35).get()

    assert rows > 0
    assert kpi_value("chargeback_rate", start=DAY, end=NEXT_DAY).value == Decimal("1000")


def test_daily_refresh_clears_stale_shipping_error(channel):
    shipment = ship(order_at(channel, at(8)), at(9), address_corrected=True)
    status_set(shipment, ShipmentStatus.DELIVERY_FAILED, at(20))
    refresh_recent_at(at(21))
    # Delivered at the second attempt, a week later.
    status_set(shipment, ShipmentStatus.DELIVERED, at(10) + timedelta(days=7))
    refresh_recent_at(at(12) + timedelta(days=7))
    assert address_error_rate(8) == Decimal("100")

    with time_machine.travel(at(3, 30) + timedelta(days=8), tick=False):
        kpi_rollups_refresh_days.delay().get()

    assert address_error_rate(9) == Decimal("0")


def test_daily_refresh_stops_at_its_days(channel):
    order_at(channel, at(8))
    order_at(channel, at(8) - timedelta(days=3))

    with time_machine.travel(at(12), tick=False):
        kpi_rollups_refresh_days.delay(days=2).get()

    rows = KpiRollup.objects.filter(counter="orders_received", granularity=Granularity.DAY)
    assert list(rows.values_list("bucket_start", flat=True)) == [DAY]


@pytest.mark.parametrize("days", [0, -1, "35", 2.5, True, None])
def test_daily_refresh_rejects_bad_days(days):
    with pytest.raises(
        ValueError, match=r'days must be a whole number of 1 or more.*\{"days": 35\}'
    ):
        kpi_rollups_refresh_days(days=days)


def test_alert_task_returns_counts():
    result = alert_rules_evaluate.delay().get()

    assert result == {
        "rules": AlertRule.objects.filter(is_enabled=True).count(),
        "opened": 0,
        "resolved": 0,
        "failed": 0,
    }


SCHEDULED = {
    "guardrails-breakers-sweep": ("guardrails.tasks.breakers_sweep", 1),
    "guardrails-autonomy-gates-recompute": ("guardrails.tasks.autonomy_gates_recompute", 10),
    "guardrails-sampling-rates-recompute": ("guardrails.tasks.sampling_rates_recompute", 10),
    "reviews-sla-sweep": ("reviews.tasks.review_items_sla_sweep", 1),
    "reviews-address-confirmations-send": (
        "reviews.confirmation_tasks.address_confirmations_send_due",
        1,
    ),
    "monitoring-kpi-rollups-refresh": ("monitoring.tasks.kpi_rollups_refresh_recent", 5),
    "monitoring-alert-rules-evaluate": ("monitoring.tasks.alert_rules_evaluate", 1),
}


DAILY = "monitoring-kpi-rollups-refresh-daily"


def test_periodic_tasks_exist_after_migrate():
    for name, (task, minutes) in SCHEDULED.items():
        entry = PeriodicTask.objects.get(name=name)
        assert (entry.task, entry.enabled) == (task, True)
        assert (entry.interval.every, entry.interval.period) == (minutes, "minutes")


def test_daily_refresh_scheduled_at_0330_utc():
    entry = PeriodicTask.objects.get(name=DAILY)

    assert (entry.task, entry.enabled) == ("monitoring.tasks.kpi_rollups_refresh_days", True)
    assert entry.interval is None
    crontab = entry.crontab
    assert (crontab.minute, crontab.hour) == ("30", "3")
    assert (crontab.day_of_week, crontab.day_of_month, crontab.month_of_year) == ("*", "*", "*")
    assert str(crontab.timezone) == "UTC"
    assert json.loads(entry.kwargs) == {"days": 35}


def test_beat_reads_schedules_from_database():
    assert django_settings.CELERY_BEAT_SCHEDULER == (
        "django_celery_beat.schedulers:DatabaseScheduler"
    )
    # Beat would write these entries over the admin's rows on every start.
    assert not django_settings.CELERY_BEAT_SCHEDULE


def test_admin_edits_survive_rerun():
    entry = PeriodicTask.objects.get(name="monitoring-kpi-rollups-refresh")
    entry.interval = IntervalSchedule.objects.create(every=15, period="minutes")
    entry.save()
    PeriodicTask.objects.filter(name="reviews-sla-sweep").update(enabled=False)

    periodic_tasks_migration.schedule_periodic_tasks(django_apps, None)

    entry.refresh_from_db()
    assert (entry.interval.every, entry.interval.period) == (15, "minutes")
    assert not PeriodicTask.objects.get(name="reviews-sla-sweep").enabled
    assert PeriodicTask.objects.filter(name__in=SCHEDULED).count() == len(SCHEDULED)


def test_daily_refresh_edits_survive_rerun():
    PeriodicTask.objects.filter(name=DAILY).update(kwargs=json.dumps({"days": 60}))
    crontabs = CrontabSchedule.objects.count()

    periodic_tasks_migration.schedule_periodic_tasks(django_apps, None)

    assert json.loads(PeriodicTask.objects.get(name=DAILY).kwargs) == {"days": 60}
    assert CrontabSchedule.objects.count() == crontabs


def test_migration_reverse_removes_schedules():
    periodic_tasks_migration.unschedule_periodic_tasks(django_apps, None)

    assert not PeriodicTask.objects.filter(name__in=[*SCHEDULED, DAILY]).exists()
    # The delivery sweep belongs to the orders migration and stays.
    assert PeriodicTask.objects.filter(task="orders.tasks.sweep_deliveries").exists()

    periodic_tasks_migration.schedule_periodic_tasks(django_apps, None)
    assert PeriodicTask.objects.filter(name__in=SCHEDULED).count() == len(SCHEDULED)
    assert PeriodicTask.objects.get(name=DAILY).crontab.hour == "3"


def test_every_counter_has_source():
    from monitoring.rollups import counter_sources

    gauges = {slug for slug, counter in COUNTERS.items() if counter.is_gauge}
    assert set(counter_sources()) | gauges == set(COUNTERS)


def test_ops_manager_edits_interval_in_admin(client):
    ops = make_staff_user("olivia", "ops_manager")
    entry = PeriodicTask.objects.get(name="monitoring-kpi-rollups-refresh")
    every_quarter_hour = IntervalSchedule.objects.create(every=15, period="minutes")
    client.force_login(ops)
    url = reverse("admin:django_celery_beat_periodictask_change", args=[entry.pk])

    form = client.get(url).context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is None or value is False:
            continue
        data[name] = value
    data["interval"] = every_quarter_hour.pk
    response = client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    entry.refresh_from_db()
    assert entry.interval == every_quarter_hour
    assert entry.task == "monitoring.tasks.kpi_rollups_refresh_recent"


# --- Races -----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_write_once(channel):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for concurrent transactions")
    for hour in range(24):
        order_at(channel, at(hour, 30))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            kpi_rollups_refresh(since=DAY, until=NEXT_DAY, now=at(12))
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    orders = KpiRollup.objects.filter(counter="orders_received")
    assert orders.filter(granularity=Granularity.HOUR).count() == 24
    assert orders.get(granularity=Granularity.DAY).count == 24
