"""Applying stock events: deltas, counts, replays, stale versions and the stock rules."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from catalog.models import Sku
from guardrails.models import AuditEntry
from inventory.models import StockEvent, StockEventKind, StockLevel
from inventory.services import StockEventConflict, StockEventInput, stock_event_record
from tests.inventory.conftest import TEE

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def record(catalog, locations):
    def record(event_id: str, kind: str, quantity: int, version: int, **extra):
        return stock_event_record(
            data=StockEventInput(
                source=extra.pop("source", "pos"),
                event_id=event_id,
                sku=Sku.objects.get(code=extra.pop("sku", TEE)),
                location=locations[extra.pop("location", "WH")],
                kind=kind,
                quantity=quantity,
                version=version,
                **extra,
            )
        )

    return record


def level() -> StockLevel:
    return StockLevel.objects.get(sku__code=TEE, location__code="WH")


def test_absolute_sets_on_hand_and_version(record):
    result = record("e1", StockEventKind.ABSOLUTE, 12, 3)

    assert result.outcome == "applied"
    assert result.duplicate is False
    assert (level().on_hand, level().reserved, level().version) == (12, 0, 3)
    assert (result.event.on_hand_before, result.event.on_hand_after) == (0, 12)


def test_delta_adds_and_removes(record):
    record("e1", StockEventKind.ABSOLUTE, 10, 1)

    record("e2", StockEventKind.DELTA, 5, 2)
    assert level().on_hand == 15

    result = record("e3", StockEventKind.DELTA, -7, 3)
    assert result.outcome == "applied"
    assert (level().on_hand, level().version) == (8, 3)


def test_replay_applies_once_and_returns_first_result(record):
    first = record("e1", StockEventKind.DELTA, 4, 1)

    replay = record("e1", StockEventKind.DELTA, 4, 1)

    assert replay.duplicate is True
    assert replay.outcome == "duplicate"
    assert replay.event.pk == first.event.pk
    assert replay.event.outcome == "applied"
    assert level().on_hand == 4
    assert StockEvent.objects.count() == 1


def test_event_id_scoped_per_source(record):
    record("e1", StockEventKind.DELTA, 4, 1, source="pos")

    other = record("e1", StockEventKind.DELTA, 4, 2, source="wms")

    assert other.outcome == "applied"
    assert level().on_hand == 8


def test_reused_event_id_with_other_content_conflicts(record):
    record("e1", StockEventKind.DELTA, 4, 1)

    with pytest.raises(StockEventConflict) as raised:
        record("e1", StockEventKind.DELTA, 5, 1)

    assert raised.value.code == "event_id_reused"
    assert str(raised.value) == (
        "Event 'e1' from 'pos' was already received with different content (delta 4 of "
        "TEE-CLASSIC-BLK-M at WH, version 1). Send a new event id."
    )
    assert level().on_hand == 4


@pytest.mark.parametrize("version", [4, 5], ids=["lower", "equal"])
def test_stale_version_is_recorded_not_applied(record, version):
    record("e1", StockEventKind.ABSOLUTE, 10, 5)

    result = record("e2", StockEventKind.ABSOLUTE, 99, version)

    assert result.outcome == "stale"
    assert result.event.reason == f"Version {version} is not newer than the applied version 5."
    assert (level().on_hand, level().version) == (10, 5)
    assert (result.event.on_hand_before, result.event.on_hand_after) == (10, 10)


def test_late_delta_keeps_newer_count(record):
    record("count", StockEventKind.ABSOLUTE, 20, 7)

    late = record("sale", StockEventKind.DELTA, -3, 6)

    assert late.outcome == "stale"
    assert level().on_hand == 20


def test_delta_below_zero_is_rejected(record):
    record("e1", StockEventKind.ABSOLUTE, 2, 1)

    result = record("e2", StockEventKind.DELTA, -3, 2)

    assert result.outcome == "rejected"
    assert result.event.reason == (
        "A delta of -3 would make on hand negative (2 on hand, -1 after)."
    )
    assert (level().on_hand, level().version) == (2, 1)


def test_drop_below_reserved_is_rejected(record):
    record("e1", StockEventKind.ABSOLUTE, 5, 1)
    StockLevel.objects.filter(pk=level().pk).update(reserved=4)

    delta = record("e2", StockEventKind.DELTA, -2, 2)
    count = record("e3", StockEventKind.ABSOLUTE, 3, 3)

    expected_reason = (
        "On hand would drop to 3, below the 4 units reserved for orders. "
        "Release reservations first."
    )
    assert (delta.outcome, delta.event.reason) == ("rejected", expected_reason)
    assert (count.outcome, count.event.reason) == ("rejected", expected_reason)
    assert (level().on_hand, level().reserved) == (5, 4)


def test_rejected_event_does_not_advance_version(record):
    record("e1", StockEventKind.ABSOLUTE, 1, 1)
    record("e2", StockEventKind.DELTA, -5, 2)

    result = record("e3", StockEventKind.DELTA, -1, 2)

    assert result.outcome == "applied"
    assert (level().on_hand, level().version) == (0, 2)


def test_counted_at_capped_at_now(record):
    with time_machine.travel(NOW, tick=False):
        record("e1", StockEventKind.ABSOLUTE, 1, 1, occurred_at=NOW - timedelta(seconds=40))
        assert level().counted_at == NOW - timedelta(seconds=40)

        record("e2", StockEventKind.ABSOLUTE, 1, 2, occurred_at=NOW + timedelta(hours=1))
        assert level().counted_at == NOW

        record("e3", StockEventKind.ABSOLUTE, 1, 3)
        assert level().counted_at == NOW


def test_applied_event_is_audited(record):
    record("e1", StockEventKind.ABSOLUTE, 10, 1)

    audit = AuditEntry.objects.get(action="stock.event_applied")
    assert audit.actor_label == "stock event from pos"
    assert audit.target_id == str(level().pk)
    assert audit.before == {"on_hand": 0, "reserved": 0, "version": 0}
    assert audit.after == {"on_hand": 10, "reserved": 0, "version": 1}
    assert audit.reason == "Absolute (the counted quantity) 10 (event pos:e1, version 1)"


def test_stale_and_rejected_events_write_no_audit(record):
    record("e1", StockEventKind.ABSOLUTE, 1, 2)
    record("e2", StockEventKind.ABSOLUTE, 1, 1)
    record("e3", StockEventKind.DELTA, -9, 3)

    assert AuditEntry.objects.filter(action="stock.event_applied").count() == 1
