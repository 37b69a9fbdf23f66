"""Recovering a stock level after a source sent a wrong, far too high version."""

import pytest
from django.urls import reverse

from catalog.models import Sku
from guardrails.models import AuditEntry
from inventory.models import StockEventKind, StockLevel
from inventory.services import StockEventInput, stock_event_record
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

HUGE = 2**63 - 1


def send(level_sku: str, location, version: int, quantity: int, event_id: str) -> str:
    result = stock_event_record(
        data=StockEventInput(
            source="wms",
            event_id=event_id,
            sku=Sku.objects.get(code=level_sku),
            location=location,
            kind=StockEventKind.ABSOLUTE,
            quantity=quantity,
            version=version,
        )
    )
    return result.event.outcome


def test_reset_lets_the_source_update_again(catalog, locations, client):
    send("TEE-CLASSIC-BLK-M", locations["WH"], HUGE, 5, "bad")
    assert send("TEE-CLASSIC-BLK-M", locations["WH"], 100, 7, "next") == "stale"
    level = StockLevel.objects.get()
    ops = make_user("olga", "ops_manager")
    ops.is_staff = True
    ops.save()
    client.force_login(ops)

    response = client.post(
        reverse("admin:inventory_stocklevel_changelist"),
        {"action": "reset_version", "_selected_action": [level.pk]},
    )

    assert response.status_code == 302
    level.refresh_from_db()
    assert level.version == 0
    assert level.on_hand == 5
    assert send("TEE-CLASSIC-BLK-M", locations["WH"], 101, 7, "after-reset") == "applied"
    entry = AuditEntry.objects.get(action="stock.version_reset")
    assert entry.actor == ops
    assert entry.before == {"version": HUGE}


def test_agents_cannot_reset_versions(catalog, locations, client):
    send("TEE-CLASSIC-BLK-M", locations["WH"], HUGE, 5, "bad")
    level = StockLevel.objects.get()
    manager = make_user("carol", "cs_manager")
    manager.is_staff = True
    manager.save()
    client.force_login(manager)

    client.post(
        reverse("admin:inventory_stocklevel_changelist"),
        {"action": "reset_version", "_selected_action": [level.pk]},
    )

    level.refresh_from_db()
    assert level.version == HUGE
