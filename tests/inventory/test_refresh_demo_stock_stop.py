"""refresh_demo_stock stopped with Ctrl-C: one line and exit status 130, never a traceback."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from inventory.models import StockEvent
from orders.demo import demo_stock_load
from orders.management.commands import refresh_demo_stock
from orders.management.commands.refresh_demo_stock import (
    DEMO_REFRESH_SOURCE,
    INTERRUPTED_EXIT_STATUS,
)

pytestmark = pytest.mark.django_db

SEEDED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def seeded(catalog, settings) -> None:
    settings.DEBUG = True
    with time_machine.travel(SEEDED, tick=False):
        demo_stock_load()


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def _exit_status(**options) -> int | str | None:
    """Run the command until it exits; an escaping KeyboardInterrupt fails the test only."""
    try:
        call_command("refresh_demo_stock", **options)
    except SystemExit as exit_info:
        return exit_info.code
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped refresh_demo_stock as a KeyboardInterrupt traceback")
    pytest.fail("refresh_demo_stock returned instead of exiting after Ctrl-C")


def test_interrupt_while_waiting_stops(seeded, monkeypatch):
    monkeypatch.setattr(refresh_demo_stock.time, "sleep", _interrupt)
    stdout, stderr = StringIO(), StringIO()

    with time_machine.travel(SEEDED + timedelta(minutes=10), tick=False):
        status = _exit_status(every=60, stdout=stdout, stderr=stderr)

    assert status == INTERRUPTED_EXIT_STATUS
    lines = stdout.getvalue().splitlines()
    assert len(lines) == 2
    assert "Refreshed 9 demo stock counts" in lines[0]
    assert lines[1] == "Stopped."
    assert stderr.getvalue() == ""


def test_interrupt_during_refresh_rolls_back_batch(seeded, monkeypatch):
    record = refresh_demo_stock.stock_event_record
    calls = []

    def record_then_interrupt(**kwargs):
        calls.append(kwargs)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return record(**kwargs)

    monkeypatch.setattr(refresh_demo_stock, "stock_event_record", record_then_interrupt)
    stdout = StringIO()

    with time_machine.travel(SEEDED + timedelta(minutes=10), tick=False):
        status = _exit_status(stdout=stdout)

    assert status == INTERRUPTED_EXIT_STATUS
    assert stdout.getvalue().splitlines() == ["Stopped."]
    # The two events recorded before Ctrl-C shared the interrupted batch's transaction.
    assert not StockEvent.objects.filter(source=DEMO_REFRESH_SOURCE).exists()
