"""The PostgreSQL write path of the SKU import (COPY and INSERT ... ON CONFLICT), committed
for real: transactional tests, skipped on other databases."""

from decimal import Decimal

import pytest
from django.db import connection

from catalog import services
from catalog.models import ChannelSkuMapping, ImportStatus, Sku
from orders.models import Order, OrderStatus
from tests.catalog.conftest import csv_bytes, row_errors
from tests.conftest import as_body, order_payload

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROWS = [
    "TEE-1,Tee One - Gray / XL,Tops,10.005,1.2345,USD,100,1,2,3,"
    "colour=Grey;size=XL,true,shop,sku,T1",
    "TEE-1,,,,,,,,,,,,shop,shopify_variant,44000000000001",
    "TEE-2,Tee Two,Tops,12,,EUR,,,,,,false,shop,sku,T2",
    "TEE-3,Tee Three,Tops,bad,,EUR,,,,,,,shop,sku,T3",
]


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("exercises the PostgreSQL COPY path")


def test_copy_path_writes_skus_and_mappings(channel, run_import):
    job = run_import(csv_bytes(*ROWS))

    assert job.status == ImportStatus.SUCCEEDED
    assert (job.created_count, job.error_count, job.mappings_created_count) == (3, 1, 3)
    assert job.applied_rows == job.rows_to_apply == 5
    one = Sku.objects.get(code="TEE-1")
    assert (one.normalized_title, one.price, one.cost) == (
        "tee one grey xl",
        Decimal("10.01"),
        Decimal("1.235"),
    )
    assert one.attributes == {"colour": "Grey", "size": "XL"}
    assert one.created_at is not None and one.updated_at is not None
    assert Sku.objects.get(code="TEE-2").is_active is False
    assert set(ChannelSkuMapping.objects.values_list("external_id", "sku__code")) == {
        ("T1", "TEE-1"),
        ("44000000000001", "TEE-1"),
        ("T2", "TEE-2"),
    }


def test_copy_path_reimport_is_idempotent_and_updates(channel, run_import):
    run_import(csv_bytes(*ROWS))
    created_at = Sku.objects.get(code="TEE-2").created_at

    same = run_import(csv_bytes(*ROWS))
    changed = run_import(csv_bytes(ROWS[2].replace("Tee Two", "Tee Two Renamed")))

    assert (same.created_count, same.updated_count, same.unchanged_count) == (0, 0, 3)
    assert (changed.created_count, changed.updated_count) == (0, 1)
    two = Sku.objects.get(code="TEE-2")
    assert (two.title, two.normalized_title, two.created_at) == (
        "Tee Two Renamed",
        "tee two renamed",
        created_at,
    )
    assert Sku.objects.count() == 2
    assert ChannelSkuMapping.objects.count() == 3


def test_copy_path_crash_commits_nothing(channel, run_import, monkeypatch):
    real_apply = services.apply_rows

    def apply_then_crash(**kwargs):
        real_apply(**kwargs)
        raise RuntimeError("worker killed")

    monkeypatch.setattr(services, "apply_rows", apply_then_crash)

    job = run_import(csv_bytes(*ROWS))

    assert job.status == ImportStatus.FAILED
    assert not Sku.objects.exists()
    assert not ChannelSkuMapping.objects.exists()


def test_copy_path_mapping_taken_after_validation_fails_the_job(
    channel, catalog, run_import, monkeypatch
):
    monkeypatch.setattr("catalog.sku_import.validate._existing_mappings", lambda keys: {})

    job = run_import(csv_bytes("NEW,New,,5,,USD,,,,,,,shop,sku,TEE-CLASSIC-BLK-M"))

    assert job.status == ImportStatus.FAILED
    assert job.failure_message.startswith("A SKU or mapping in this file was changed")
    assert not Sku.objects.filter(code="NEW").exists()


def test_copy_path_releases_held_orders(channel, catalog, ops, post_webhook, run_import):
    line = order_payload()["line_items"][0] | {"sku": "TSHIRT-BLACK-MED"}
    post_webhook(as_body(order_payload(lines=[line])))

    job = run_import(csv_bytes("TEE-CLASSIC-BLK-M,,,,,,,,,,,,shop,sku,TSHIRT-BLACK-MED"), user=ops)

    assert row_errors(job) == []
    assert job.review_items_resolved_count == 1
    assert Order.objects.get().status == OrderStatus.READY
