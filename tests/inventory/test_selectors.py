"""stock_availability: numbers per location or summed, with the snapshot's age."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from inventory.models import StockLevel
from inventory.selectors import stock_availability
from tests.inventory.conftest import MUG, TEE

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_one_location_within_ttl_is_fresh(catalog, locations, set_stock, settings):
    settings.OMSGUARD_STOCK_TTL_SECONDS = 60
    with time_machine.travel(NOW, tick=False):
        set_stock(TEE, "WH", 7)
    StockLevel.objects.filter(sku__code=TEE).update(reserved=2)

    with time_machine.travel(NOW + timedelta(seconds=60), tick=False):
        availability = stock_availability(sku=catalog[0], location=locations["WH"])

    assert availability.as_dict() == {
        "sku": TEE,
        "location": "WH",
        "on_hand": 7,
        "reserved": 2,
        "available": 5,
        "as_of": "2025-03-01T12:00:00+00:00",
        "is_stale": False,
    }
    assert availability.tracked is True


def test_snapshot_past_ttl_is_stale(catalog, locations, set_stock, settings):
    settings.OMSGUARD_STOCK_TTL_SECONDS = 60
    with time_machine.travel(NOW, tick=False):
        set_stock(TEE, "WH", 7)

    with time_machine.travel(NOW + timedelta(seconds=61), tick=False):
        availability = stock_availability(sku=catalog[0], location=locations["WH"])

    assert availability.is_stale is True
    assert availability.as_of == NOW


def test_sum_uses_active_locations_and_oldest_snapshot(catalog, locations, set_stock, settings):
    settings.OMSGUARD_STOCK_TTL_SECONDS = 300
    with time_machine.travel(NOW, tick=False):
        set_stock(TEE, "WH", 4)
    with time_machine.travel(NOW + timedelta(seconds=200), tick=False):
        set_stock(TEE, "STORE", 3)
        set_stock(TEE, "TPL", 50)
    locations["TPL"].is_active = False
    locations["TPL"].save()

    with time_machine.travel(NOW + timedelta(seconds=301), tick=False):
        availability = stock_availability(sku=catalog[0])

    assert (availability.location, availability.on_hand, availability.available) == (None, 7, 7)
    assert availability.as_of == NOW
    assert availability.is_stale is True


def test_untracked_sku_has_nothing_and_is_stale(catalog, locations):
    availability = stock_availability(sku=catalog[2])

    assert availability.sku == MUG
    assert availability.tracked is False
    assert (availability.on_hand, availability.available, availability.as_of) == (0, 0, None)
    assert availability.is_stale is True


def test_level_never_counted_is_stale(catalog, locations):
    StockLevel.objects.create(sku=catalog[0], location=locations["WH"])

    availability = stock_availability(sku=catalog[0], location=locations["WH"])

    assert availability.tracked is True
    assert availability.as_of is None
    assert availability.is_stale is True
