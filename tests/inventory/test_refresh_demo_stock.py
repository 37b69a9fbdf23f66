"""refresh_demo_stock: the demo's stock counts made fresh again, so new orders are not flagged."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from guardrails.models import AuditEntry
from inventory.models import StockEvent, StockEventOutcome, StockLevel
from orders.demo import DEMO_LOCATIONS, demo_stock_load
from orders.management.commands.refresh_demo_stock import DEMO_REFRESH_SOURCE
from orders.models import Order
from tests.conftest import as_body, order_payload, signed_headers

pytestmark = pytest.mark.django_db

SEEDED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _place(post_webhook, number: int) -> Order:
    body = as_body(order_payload(order_id=7_000 + number))
    post_webhook(body, headers=signed_headers(body, webhook_id=f"demo-stock-{number}"))
    return Order.objects.get(channel_order_id=str(7_000 + number))


def _flag_codes(order: Order) -> list[str]:
    return [flag["code"] for flag in order.flags]


@pytest.fixture
def seeded(catalog, settings) -> None:
    settings.DEBUG = True
    settings.OMSGUARD_STOCK_TTL_SECONDS = 300
    with time_machine.travel(SEEDED, tick=False):
        demo_stock_load()


def test_refresh_ends_stale_stock_flag(seeded, channel, post_webhook):
    later = SEEDED + timedelta(seconds=301)
    with time_machine.travel(later, tick=False):
        before = _place(post_webhook, 1)
        call_command("refresh_demo_stock", stdout=StringIO())
    with time_machine.travel(later + timedelta(seconds=1), tick=False):
        after = _place(post_webhook, 2)

    assert "stale_stock" in _flag_codes(before)
    assert "stale_stock" not in _flag_codes(after)


def test_refresh_keeps_counts_and_stamps_now(seeded):
    levels = {level.pk: level for level in StockLevel.objects.all()}
    later = SEEDED + timedelta(minutes=10)

    with time_machine.travel(later, tick=False):
        call_command("refresh_demo_stock", stdout=StringIO())

    assert len(levels) == 3 * len(DEMO_LOCATIONS)
    for level in StockLevel.objects.all():
        assert level.counted_at == later
        assert level.on_hand == levels[level.pk].on_hand
        assert level.reserved == levels[level.pk].reserved
        assert level.version == levels[level.pk].version + 1
    events = StockEvent.objects.filter(source=DEMO_REFRESH_SOURCE)
    assert events.count() == len(levels)
    assert set(events.values_list("outcome", flat=True)) == {StockEventOutcome.APPLIED}
    audited = AuditEntry.objects.filter(action="stock.event_applied", created_at__gte=later)
    assert audited.count() == len(levels)


def test_second_refresh_posts_new_events(seeded, capsys):
    with time_machine.travel(SEEDED + timedelta(minutes=10), tick=False):
        call_command("refresh_demo_stock")
    with time_machine.travel(SEEDED + timedelta(minutes=20), tick=False):
        call_command("refresh_demo_stock")

    assert StockEvent.objects.filter(source=DEMO_REFRESH_SOURCE).count() == 2 * 9
    output = capsys.readouterr().out
    assert output.count("Refreshed 9 demo stock counts; they are fresh for 300 s.") == 2


def test_refresh_without_debug_rejected(seeded, settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="runs only with DEBUG=1"):
        call_command("refresh_demo_stock")

    assert not StockEvent.objects.filter(source=DEMO_REFRESH_SOURCE).exists()


def test_refresh_without_demo_stock_fails(catalog, settings):
    settings.DEBUG = True

    with pytest.raises(CommandError, match="run seed_demo first"):
        call_command("refresh_demo_stock")
