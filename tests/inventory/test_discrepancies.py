"""Counted stock against the stock held: the record, the correction event, API and admin."""

import pytest
from django.test import Client

from guardrails.models import AuditEntry
from inventory.models import InventoryDiscrepancy, StockEvent, StockLevel
from inventory.services import discrepancy_record
from tests.inventory.conftest import TEE, api_client, make_inventory_user

pytestmark = pytest.mark.django_db

URL = "/api/v1/inventory-discrepancies/"


@pytest.fixture
def ops(db):
    return make_inventory_user("olga", "ops_manager")


def level() -> StockLevel:
    return StockLevel.objects.get(sku__code=TEE, location__code="WH")


def test_count_records_difference_and_corrects(catalog, locations, set_stock, ops):
    set_stock(TEE, "WH", 10)

    discrepancy = discrepancy_record(
        sku=catalog[0], location=locations["WH"], counted=7, reported_by=ops, note="cycle count"
    )

    assert (discrepancy.expected, discrepancy.counted, discrepancy.difference) == (10, 7, -3)
    correction = discrepancy.correction
    assert (correction.source, correction.event_id) == (
        "stock-count",
        f"discrepancy-{discrepancy.pk}",
    )
    assert (correction.kind, correction.quantity, correction.outcome) == ("absolute", 7, "applied")
    assert (level().on_hand, level().version) == (7, 1)
    audit = AuditEntry.objects.get(action="stock.discrepancy_recorded")
    assert audit.actor == ops
    assert audit.reason == "cycle count"
    assert audit.after == {"counted": 7, "on_hand": 7, "correction": "applied"}


def test_correction_keeps_the_source_version_sequence(catalog, locations, set_stock, ops):
    set_stock(TEE, "WH", 10)
    discrepancy_record(sku=catalog[0], location=locations["WH"], counted=7, reported_by=ops)

    after = set_stock(TEE, "WH", 12)

    assert (after.on_hand, after.version) == (12, 2)


def test_matching_count_is_recorded_without_event(catalog, locations, set_stock, ops):
    set_stock(TEE, "WH", 10)

    discrepancy = discrepancy_record(
        sku=catalog[0], location=locations["WH"], counted=10, reported_by=ops
    )

    assert discrepancy.difference == 0
    assert discrepancy.correction is None
    assert StockEvent.objects.filter(source="stock-count").count() == 0


def test_count_without_correction_leaves_stock(catalog, locations, set_stock, ops):
    set_stock(TEE, "WH", 10)

    discrepancy = discrepancy_record(
        sku=catalog[0], location=locations["WH"], counted=4, reported_by=ops, correct=False
    )

    assert discrepancy.difference == -6
    assert discrepancy.correction is None
    assert level().on_hand == 10


def test_count_below_reserved_records_rejected_correction(catalog, locations, set_stock, ops):
    set_stock(TEE, "WH", 10)
    StockLevel.objects.filter(pk=level().pk).update(reserved=5)

    discrepancy = discrepancy_record(
        sku=catalog[0], location=locations["WH"], counted=3, reported_by=ops
    )

    assert discrepancy.correction.outcome == "rejected"
    assert level().on_hand == 10


def test_count_at_untracked_location_starts_tracking(catalog, locations, ops):
    discrepancy = discrepancy_record(
        sku=catalog[0], location=locations["STORE"], counted=2, reported_by=ops
    )

    assert (discrepancy.expected, discrepancy.difference) == (0, 2)
    assert StockLevel.objects.get(sku=catalog[0], location=locations["STORE"]).on_hand == 2


def test_api_records_discrepancy(catalog, locations, set_stock, ops):
    set_stock(TEE, "WH", 10)

    response = api_client(ops).post(
        URL, {"sku": TEE, "location": "WH", "counted": 8, "note": "shelf B"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["expected"], body["counted"], body["difference"]) == (10, 8, -2)
    assert body["reported_by"] == "olga"
    assert body["correction"]["outcome"] == "applied"
    assert level().on_hand == 8


def test_api_rejects_negative_count(catalog, locations, ops):
    response = api_client(ops).post(
        URL, {"sku": TEE, "location": "WH", "counted": -1}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "counted": ["Ensure this value is greater than or equal to 0."]
    }


def test_cs_agent_may_not_record_discrepancy(catalog, locations):
    client = api_client(make_inventory_user("alice", "cs_agent"))

    response = client.post(URL, {"sku": TEE, "location": "WH", "counted": 1}, format="json")

    assert response.status_code == 403
    assert InventoryDiscrepancy.objects.count() == 0


def test_admin_add_records_through_service(catalog, locations, set_stock, ops):
    ops.is_staff = True
    ops.save()
    set_stock(TEE, "WH", 10)
    client = Client()
    client.force_login(ops)

    response = client.post(
        "/admin/inventory/inventorydiscrepancy/add/",
        {
            "sku": catalog[0].pk,
            "location": locations["WH"].pk,
            "counted": 9,
            "correct": "on",
            "note": "spot check",
        },
    )

    assert response.status_code == 302
    discrepancy = InventoryDiscrepancy.objects.get()
    assert (discrepancy.expected, discrepancy.difference) == (10, -1)
    assert discrepancy.reported_by == ops
    assert discrepancy.correction.outcome == "applied"
    assert level().on_hand == 9
