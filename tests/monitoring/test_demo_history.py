"""The demo history: 120 days across the demo channels, loaded once, improving after a baseline."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from unittest import mock

import pytest
import time_machine
from django.core.management import call_command
from django.db import transaction
from django.db.models import Count, Max, Min
from django.db.models.functions import TruncDate

from catalog.models import Channel, ChannelKind
from guardrails.autonomy import autonomy_gates_recompute
from guardrails.defaults import default_policies_load
from guardrails.models import AutonomyGate, Breaker, Decision
from inventory.models import InventoryDiscrepancy, Location, StockEvent
from monitoring.demo import (
    BASELINE_DAYS,
    HISTORY_MARK,
    HISTORY_MODEL_NAME,
    HistoryResult,
    HistoryStaff,
    demo_history_load,
)
from monitoring.kpis import KPIS
from monitoring.models import Granularity, KpiRollup
from monitoring.selectors import kpi_value, mix_deviation
from omsguard.celery import app as celery_app
from orders.carrier_reference import carrier_reference_load
from orders.demo import demo_catalog_load
from orders.models import (
    Chargeback,
    Delivery,
    FulfilmentException,
    Order,
    OrderEvent,
    OrderReturn,
    OrderStatus,
    Shipment,
)
from reviews.models import ReviewItem, ReviewStatus
from tests.conftest import _CertainOnlyDraw, ensure_role_groups, make_user

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 5, 10, 30, tzinfo=UTC)
END = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
START = datetime(2026, 8, 7, tzinfo=UTC)  # midnight 120 days before END's day


def world_create() -> HistoryStaff:
    """The rows the history refers to: two demo channels, the catalog, carriers, policies."""
    ensure_role_groups()
    default_policies_load()
    carrier_reference_load()
    demo_catalog_load()
    Channel.objects.create(kind=ChannelKind.SHOPIFY, code="demo-shop", webhook_secret="s")
    Channel.objects.create(kind=ChannelKind.AMAZON, code="demo-amazon")
    Location.objects.create(code="WH-MAIN", name="Main warehouse", kind="warehouse")
    return HistoryStaff(
        agent=make_user("agent", "cs_agent"),
        manager=make_user("manager", "cs_manager"),
        ops=make_user("ops", "ops_manager"),
    )


@pytest.fixture
def world(db) -> HistoryStaff:
    """The rows the history refers to, for one test (tests/reviews imports this fixture)."""
    return world_create()


def small_history(staff: HistoryStaff) -> HistoryResult:
    return demo_history_load(staff=staff, now=NOW, daily_orders=(8, 12))


@dataclass(frozen=True)
class LoadedHistory:
    staff: HistoryStaff
    result: HistoryResult


@pytest.fixture(scope="class")
def loaded(django_db_setup, django_db_blocker) -> Iterator[LoadedHistory]:
    """One small history for the class, in a transaction rolled back after its last test.

    Each test only reads the history or changes it inside its own transaction, which nests
    in this one as a savepoint. A class, not the module, bounds it: the transactional test
    below must not run inside this transaction. The class scope comes before the autouse
    fixtures of tests/conftest.py, so the load applies their eager tasks and draws itself.
    """
    with django_db_blocker.unblock():
        atomic = transaction.atomic()
        atomic.__enter__()
        eager = celery_app.conf.task_always_eager
        celery_app.conf.task_always_eager = True
        try:
            with (
                mock.patch("guardrails.sampling.random", _CertainOnlyDraw()),
                mock.patch("reviews.known_answers.random", _CertainOnlyDraw()),
            ):
                staff = world_create()
                result = small_history(staff)
            yield LoadedHistory(staff=staff, result=result)
        finally:
            celery_app.conf.task_always_eager = eager
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


class TestSmallHistory:
    def test_history_covers_every_day(self, loaded):
        result = loaded.result

        assert result.created
        assert (result.start, result.end) == (START, END)
        days = Order.objects.annotate(day=TruncDate("created_at")).values("day").distinct()
        assert days.count() == 121  # 120 whole days and the hours of END's day
        span = Order.objects.aggregate(first=Min("created_at"), last=Max("created_at"))
        assert START <= span["first"] < START + timedelta(days=1)
        assert END - timedelta(hours=12) < span["last"] < END
        assert set(Order.objects.values_list("channel__code", flat=True)) == {
            "demo-shop",
            "demo-amazon",
        }

    def test_history_writes_every_kind_of_fact(self, loaded):
        result = loaded.result

        assert result.counts["orders"] == Order.objects.count()
        assert Shipment.objects.count() > 0.8 * Order.objects.count()
        assert (
            Shipment.objects.filter(is_duplicate=False).values("carrier_code").distinct().count()
            >= 3
        )
        assert OrderReturn.objects.exists()
        assert FulfilmentException.objects.exists()
        assert Decision.objects.filter(review_outcome="disagreed").exists()
        assert Decision.objects.filter(outcome="error", reverted_at__isnull=False).exists()
        assert OrderEvent.objects.filter(kind="order.held").exists()
        assert InventoryDiscrepancy.objects.exclude(difference=0).exists()
        assert Order.objects.filter(status=OrderStatus.CANCELLED).exists()
        # Every review item was decided by a person; none waits in a queue.
        assert not ReviewItem.objects.filter(status=ReviewStatus.OPEN).exists()
        assert not ReviewItem.objects.filter(decided_by__isnull=True).exists()

    def test_history_rows_carry_timestamps_not_now(self, loaded):
        for model, field in [
            (Order, "created_at"),
            (Delivery, "received_at"),
            (OrderEvent, "created_at"),
            (ReviewItem, "created_at"),
            (Decision, "created_at"),
            (InventoryDiscrepancy, "created_at"),
        ]:
            latest = model.objects.aggregate(latest=Max(field))["latest"]
            assert latest < END, model.__name__
        assert Order._meta.get_field("created_at").auto_now_add

    def test_history_rows_are_marked(self, loaded):
        assert set(Order.objects.values_list("source_name", flat=True)) == {HISTORY_MARK}
        assert set(Delivery.objects.values_list("processed_by", flat=True)) == {HISTORY_MARK}
        assert set(Decision.objects.values_list("model_name", flat=True)) == {HISTORY_MODEL_NAME}
        assert set(Shipment.objects.values_list("order__source_name", flat=True)) == {HISTORY_MARK}
        assert set(StockEvent.objects.values_list("source", flat=True)) == {HISTORY_MARK}
        assert set(OrderReturn.objects.values_list("note", flat=True)) == {HISTORY_MARK}
        assert set(ReviewItem.objects.values_list("decision_note", flat=True)) == {HISTORY_MARK}

    def test_history_loads_once(self, loaded):
        counts = [
            model.objects.count()
            for model in (Order, Delivery, Shipment, Decision, ReviewItem, InventoryDiscrepancy)
        ]

        again = small_history(loaded.staff)

        assert loaded.result.created
        assert not again.created
        assert again.counts == {}
        assert [
            model.objects.count()
            for model in (Order, Delivery, Shipment, Decision, ReviewItem, InventoryDiscrepancy)
        ] == counts


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def demo_state() -> dict:
    """The live demo: open review items and the sample proposals with their verdicts.

    Known-answer items are left out: the feedback demo seeds one, and it has no order.
    """
    open_items = ReviewItem.objects.filter(status=ReviewStatus.OPEN, known_answer__isnull=True)
    return {
        "open_items": sorted(open_items.values_list("kind", "order_id")),
        "proposals": sorted(
            Decision.objects.filter(model_name="demo-agent").values_list(
                "action__code", "verdict", "order_id"
            )
        ),
    }


# Transactional, so that tasks queued on commit run at once, as in a real seed_demo run: the
# sample proposals then find the orders their deliveries create.
@pytest.mark.django_db(transaction=True)
def test_seed_demo_history_meets_goals(settings):
    settings.DEBUG = True
    # A transactional test before this one may have flushed the data migrations' rows.
    ensure_role_groups()
    default_policies_load()
    with time_machine.travel(NOW):
        seed("--no-history")
        before = demo_state()

        output = seed()
        gates_recomputed = autonomy_gates_recompute()

    assert "History: 2026-08-07 to 2026-12-05 10:00" in output
    assert "KPI rollups: " in output

    # The demo proposals and the open queue are as they were; no gate or breaker tripped.
    assert demo_state() == before
    assert len(before["proposals"]) == 6
    assert gates_recomputed > 0
    assert not AutonomyGate.objects.filter(suspended=True).exists()
    assert not Breaker.objects.exclude(state="closed").exists()

    # Rollups cover the whole history, day rows and hour rows.
    assert KpiRollup.objects.filter(
        counter="orders_received", granularity=Granularity.DAY, bucket_start=START
    ).exists()
    assert KpiRollup.objects.filter(
        counter="orders_received",
        granularity=Granularity.HOUR,
        bucket_start__gte=END - timedelta(hours=6),
    ).exists()

    baseline = (START, START + timedelta(days=BASELINE_DAYS))
    last_30 = (END - timedelta(days=30), END)
    for slug, kpi in KPIS.items():
        if not kpi.is_ninety_day_goal:
            continue
        before_value = kpi_value(slug, start=baseline[0], end=baseline[1]).value
        after_value = kpi_value(slug, start=last_30[0], end=last_30[1]).value
        assert before_value is not None, slug
        assert after_value is not None, slug
        assert after_value < before_value, slug
    # The goals themselves: 60-80 % fewer clean-ups, errors under 0.2 %, returns halved.
    cleanups = [
        kpi_value("manual_cleanups_rate", start=a, end=b).value for a, b in (baseline, last_30)
    ]
    assert cleanups[1] <= cleanups[0] * Decimal("0.4")
    error_rate = kpi_value("fulfilment_error_rate", start=last_30[0], end=last_30[1]).value
    assert error_rate < Decimal("0.2")
    returns = [
        kpi_value("fulfilment_return_rate", start=a, end=b).value for a, b in (baseline, last_30)
    ]
    assert returns[1] <= returns[0] / 2

    # The carrier mix of the last day moved more than 30 % from the week before.
    recent = kpi_value("carrier_mix", start=END - timedelta(days=1), end=END).shares
    week = kpi_value("carrier_mix", start=END - timedelta(days=8), end=END - timedelta(days=1))
    assert mix_deviation(recent, week.shares) > 30

    # 60-150 orders a day, 20 % fewer at weekends.
    per_day = (
        Order.objects.filter(source_name=HISTORY_MARK, created_at__lt=END.replace(hour=0))
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(orders=Count("id"))
    )
    assert len(per_day) == 120
    assert min(row["orders"] for row in per_day) >= 48
    assert max(row["orders"] for row in per_day) <= 150
    assert Chargeback.objects.exists()

    history_orders = Order.objects.filter(source_name=HISTORY_MARK).count()
    again = seed()
    assert "History: already loaded." in again
    assert Order.objects.filter(source_name=HISTORY_MARK).count() == history_orders
