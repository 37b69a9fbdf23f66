"""The SKU import service: validation, row errors, idempotency, conflicts and failures."""

from decimal import Decimal

import pytest
from django.core.cache import cache

from catalog import services
from catalog.models import (
    ChannelSkuMapping,
    ImportJob,
    ImportPhase,
    ImportRowError,
    ImportStatus,
    Sku,
)
from catalog.selectors import import_job_applied_rows, import_progress_cache_key
from catalog.services import import_job_create, import_job_run
from guardrails.models import AuditEntry
from orders.models import Order, OrderStatus
from reviews.models import ReviewItem, ReviewStatus
from tests.catalog.conftest import csv_bytes, row_errors, xlsx_bytes
from tests.conftest import as_body, order_payload

pytestmark = pytest.mark.django_db

MIXED_ROWS = [
    # 2: a new SKU with a channel SKU mapping
    "TEE-BLK-M,Classic Tee - Black / M,Tops,19.999,7.1234,usd,180,300,200,20,"
    "colour=Black;size=M,true,shop,sku,TEE-BLK-M",
    # 3: a second mapping for the SKU row 2 defines
    "TEE-BLK-M,,,,,,,,,,,,amz-us,amazon_asin,B08N5WRWNW",
    # 4-12: one or more problems each
    "TEE-WHT-M,Classic Tee - White / M,Tops,abc,,USD,,,,,,,shop,sku,TEE-WHT-M",
    "MUG,Camp Mug,Home,14,,JPY,-5,,,,,maybe,,,",
    "SOCK,Wool Socks,,5,,XXX,,,,,,,,,",
    'HAT,Wool Hat,,12,,EUR,,,,,"{""colour"": ""Red""",,amz-us,amazon_asin,b0000',
    "CAP,Cap,,9,,EUR,,,,,,,shop,amazon_asin,B000000001",
    "GLOVE,,,,,,,,,,,,,sku,GLOVE-1",
    "SCARF,,,,,,,,,,,,shop,sku,SCARF-1",
    "TEE-BLK-M,Classic Tee again,Tops,1,,USD,,,,,,,,,",
    "BELT,Belt,,10,,USD,,,,,,,nowhere,sku,BELT",
    # 13: blank, skipped
    ",,,,,,,,,,,,,,",
]
MIXED_ERRORS = [
    (4, "price", "invalid_number", "not a number; write it like 19.99"),
    (5, "weight_grams", "out_of_range", "must be from 0 to 2147483647"),
    (5, "active", "invalid_boolean", "use true or false (or yes/no, 1/0)"),
    (6, "currency", "invalid_currency", "not an ISO 4217 currency code such as USD"),
    (
        7,
        "attributes",
        "invalid_attributes",
        "not valid JSON: Expecting ',' delimiter at character 17",
    ),
    (
        7,
        "external_id",
        "invalid_external_id",
        "not a valid Amazon ASIN: expected 10 upper-case letters and digits, e.g. B08N5WRWNW",
    ),
    (
        8,
        "id_kind",
        "id_kind_not_used",
        "Shopify channels do not use amazon_asin; use one of: shopify_variant, sku",
    ),
    (9, "channel", "missing", "missing: give a channel code or a default channel"),
    (
        10,
        "code",
        "unknown_sku",
        "SKU SCARF is not in the catalog or in this file; add a row with its title",
    ),
    (
        11,
        "code",
        "duplicate_sku_row",
        "SKU TEE-BLK-M is already defined in row 2; put its mappings in rows without a title",
    ),
    (12, "channel", "unknown_channel", "no channel has this code"),
]


def test_csv_import_applies_good_rows_and_reports_bad_ones(channel, amazon, ops, run_import):
    job = run_import(csv_bytes(*MIXED_ROWS), user=ops)

    assert job.status == ImportStatus.SUCCEEDED
    assert job.phase == ImportPhase.DONE
    assert job.total_rows == 11
    assert job.validated_rows == 11
    assert (job.created_count, job.updated_count, job.unchanged_count) == (2, 0, 0)
    assert job.error_count == 9
    assert job.mappings_created_count == 2
    assert row_errors(job) == MIXED_ERRORS
    assert list(Sku.objects.values_list("code", flat=True)) == ["TEE-BLK-M"]

    sku = Sku.objects.get(code="TEE-BLK-M")
    assert sku.title == "Classic Tee - Black / M"
    assert sku.normalized_title == "classic tee black m"
    assert sku.category == "Tops"
    assert sku.price == Decimal("20.00")
    assert sku.cost == Decimal("7.123")
    assert sku.currency == "USD"
    assert (sku.weight_grams, sku.length_mm, sku.width_mm, sku.height_mm) == (180, 300, 200, 20)
    assert sku.attributes == {"colour": "Black", "size": "M"}
    assert sku.is_active is True
    assert set(
        ChannelSkuMapping.objects.values_list(
            "channel__code", "id_kind", "external_id", "sku__code"
        )
    ) == {
        ("shop", "sku", "TEE-BLK-M", "TEE-BLK-M"),
        ("amz-us", "amazon_asin", "B08N5WRWNW", "TEE-BLK-M"),
    }


def test_import_writes_one_audit_entry_per_job(channel, amazon, ops, run_import):
    job = run_import(csv_bytes(*MIXED_ROWS), name="spring.csv", user=ops)

    entry = AuditEntry.objects.get(target_type="import_job")
    assert entry.action == "sku_import.applied"
    assert entry.target_id == str(job.pk)
    assert entry.actor == ops
    assert entry.after == {
        "file_name": "spring.csv",
        "sha256": job.file_sha256,
        "total_rows": 11,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "errors": 9,
        "mappings_created": 2,
        "review_items_resolved": 0,
    }
    assert not AuditEntry.objects.filter(action="mapping.created").exists()


def test_xlsx_import_reads_typed_cells(channel, run_import):
    header = [
        "code",
        "title",
        "category",
        "price",
        "cost",
        "currency",
        "weight_grams",
        "active",
        "channel",
        "id_kind",
        "external_id",
    ]
    content = xlsx_bytes(
        [
            header,
            ["MUG-1", "Camp Mug", "Home", 14.5, 3, "EUR", 350, True, "shop", "sku", "MUG-1"],
            [
                "MUG-2",
                "Camp Mug Large",
                "Home",
                "cheap",
                None,
                "EUR",
                350.0,
                None,
                None,
                None,
                None,
            ],
            ["MUG-3", "Camp Mug XL", "Home", 16, None, "EUR", 12.5, False, None, None, None],
            [None, None, None, None, None, None, None, None, None, None, None],
            ["MUG-4", "Camp Mug Tiny", "Home", 9.99, None, "EUR", 80.0, False, None, None, None],
        ]
    )

    job = run_import(content, name="mugs.xlsx")

    assert job.status == ImportStatus.SUCCEEDED
    assert job.total_rows == 4
    assert row_errors(job) == [
        (3, "price", "invalid_number", "not a number; write it like 19.99"),
        (4, "weight_grams", "invalid_number", "not a whole number"),
    ]
    mug = Sku.objects.get(code="MUG-1")
    assert (mug.price, mug.cost, mug.weight_grams, mug.is_active) == (
        Decimal("14.50"),
        Decimal("3.000"),
        350,
        True,
    )
    tiny = Sku.objects.get(code="MUG-4")
    assert (tiny.price, tiny.weight_grams, tiny.is_active) == (Decimal("9.99"), 80, False)
    assert ChannelSkuMapping.objects.get().external_id == "MUG-1"


def test_reimport_of_the_same_file_changes_nothing(channel, amazon, run_import):
    first = run_import(csv_bytes(*MIXED_ROWS))
    stamps = dict(Sku.objects.values_list("code", "updated_at"))

    second = run_import(csv_bytes(*MIXED_ROWS))

    assert second.status == ImportStatus.SUCCEEDED
    assert (second.created_count, second.updated_count, second.unchanged_count) == (0, 0, 2)
    assert second.mappings_created_count == 0
    assert row_errors(second) == row_errors(first)
    assert Sku.objects.count() == 1
    assert ChannelSkuMapping.objects.count() == 2
    assert dict(Sku.objects.values_list("code", "updated_at")) == stamps
    assert second.file_sha256 == first.file_sha256


def test_reimport_with_a_changed_price_counts_one_update(channel, run_import):
    rows = [
        "TEE-1,Tee One,Tops,10,,USD,,,,,,,shop,sku,TEE-1",
        "TEE-2,Tee Two,Tops,12,,USD,,,,,,,shop,sku,TEE-2",
    ]
    run_import(csv_bytes(*rows))

    job = run_import(csv_bytes(rows[0], rows[1].replace(",12,", ",12.50,")))

    assert (job.created_count, job.updated_count, job.unchanged_count) == (0, 1, 1)
    assert Sku.objects.get(code="TEE-2").price == Decimal("12.50")
    assert ChannelSkuMapping.objects.count() == 2


def test_mapping_to_another_sku_is_a_row_error(channel, catalog, run_import):
    taken = "TEE-CLASSIC-BLK-M"  # the catalog fixture maps this channel SKU to its own code
    job = run_import(
        csv_bytes(
            f"NEW-TEE,New Tee,Tops,15,,USD,,,,,,,shop,sku,{taken}",
            "TEE-CLASSIC-WHT-M,,,,,,,,,,,,shop,sku,MUG-ENAMEL-NVY-OS",
        )
    )

    assert job.status == ImportStatus.SUCCEEDED
    assert row_errors(job) == [
        (
            2,
            "external_id",
            "mapping_conflict",
            "Channel SKU 'TEE-CLASSIC-BLK-M' on channel shop is already mapped to "
            "TEE-CLASSIC-BLK-M, not NEW-TEE; change or delete that mapping first",
        ),
        (
            3,
            "external_id",
            "mapping_conflict",
            "Channel SKU 'MUG-ENAMEL-NVY-OS' on channel shop is already mapped to "
            "MUG-ENAMEL-NVY-OS, not TEE-CLASSIC-WHT-M; change or delete that mapping first",
        ),
    ]
    assert not Sku.objects.filter(code="NEW-TEE").exists()
    assert ChannelSkuMapping.objects.get(external_id=taken).sku.code == taken


def test_mapping_claimed_twice_in_one_file_is_a_row_error(channel, run_import):
    job = run_import(
        csv_bytes(
            "A,Tee A,,10,,USD,,,,,,,shop,sku,SHARED",
            "B,Tee B,,10,,USD,,,,,,,shop,sku,SHARED",
            "A,,,,,,,,,,,,shop,sku,SHARED",
        )
    )

    assert row_errors(job) == [
        (
            3,
            "external_id",
            "mapping_conflict",
            "Channel SKU 'SHARED' on channel shop is mapped to A in row 2; one identifier maps "
            "to one SKU per channel",
        )
    ]
    assert (job.created_count, job.unchanged_count) == (1, 1)
    assert ChannelSkuMapping.objects.get().sku.code == "A"
    assert not Sku.objects.filter(code="B").exists()


def test_existing_mapping_to_the_same_sku_is_unchanged(channel, catalog, run_import):
    job = run_import(csv_bytes("TEE-CLASSIC-BLK-M,,,,,,,,,,,,shop,sku,TEE-CLASSIC-BLK-M"))

    assert (job.created_count, job.updated_count, job.unchanged_count) == (0, 0, 1)
    assert job.error_count == 0
    assert ChannelSkuMapping.objects.count() == 3


def test_mapping_row_for_a_failed_sku_row_is_an_error(channel, run_import):
    job = run_import(
        csv_bytes(
            "NEW,,,,,,,,,,,,shop,sku,NEW-1",
            "NEW,New thing,,not-a-price,,USD,,,,,,,,,",
        )
    )

    assert row_errors(job) == [
        (
            2,
            "code",
            "sku_row_invalid",
            "SKU NEW is not in the catalog, and row 3, which defines it, has errors",
        ),
        (3, "price", "invalid_number", "not a number; write it like 19.99"),
    ]
    assert not ChannelSkuMapping.objects.exists()


def test_mapping_row_before_its_sku_row_in_a_later_chunk(settings, channel, run_import):
    settings.OMSGUARD_IMPORT_CHUNK_SIZE = 2
    job = run_import(
        csv_bytes(
            "LATE,,,,,,,,,,,,shop,sku,LATE-1",
            "OTHER,Other,,5,,USD,,,,,,,,,",
            "FILL,Fill,,5,,USD,,,,,,,,,",
            "LATE,Late Tee,,8,,USD,,,,,,,,,",
        )
    )

    assert job.error_count == 0
    assert job.validated_rows == 4
    assert job.created_count == 4
    assert ChannelSkuMapping.objects.get().sku.code == "LATE"


def test_header_subset_updates_only_those_columns(channel, run_import):
    run_import(csv_bytes("TEE,Tee,Tops,10,2,USD,100,,,,colour=Red,true,shop,sku,TEE"))

    job = run_import(csv_bytes("TEE,Tee Renamed,11", "NEW,New Tee,5", header="code,title,price"))

    assert row_errors(job) == [
        (3, "currency", "missing", "missing: a SKU needs a currency"),
    ]
    sku = Sku.objects.get(code="TEE")
    assert (sku.title, sku.normalized_title, sku.price) == ("Tee Renamed", "tee renamed", 11)
    assert (sku.category, sku.cost, sku.weight_grams) == ("Tops", Decimal("2.000"), 100)
    assert sku.attributes == {"colour": "Red"}
    assert job.updated_count == 1


def test_default_channel_applies_to_rows_without_one(channel, amazon, run_import):
    job = run_import(
        csv_bytes("SKU-1,Thing,,5,,USD,,,,,,,,amazon_asin,B000000001"), default_channel=amazon
    )

    assert job.error_count == 0
    assert ChannelSkuMapping.objects.get().channel == amazon


def test_semicolon_csv_with_bom_is_read(channel, run_import):
    content = "\ufeffcode;title;price;currency\nTEE;Tee;10,5;EUR\nMUG;Mug;7;EUR\n".encode()

    job = run_import(content)

    assert row_errors(job) == [(2, "price", "invalid_number", "not a number; write it like 19.99")]
    assert Sku.objects.get().code == "MUG"


def test_extra_cells_are_a_row_error(channel, run_import):
    job = run_import(csv_bytes("TEE,Tee,10,USD,oops", header="code,title,price,currency"))

    assert row_errors(job) == [
        (2, "", "extra_cells", "the row has 1 more filled cells than the header has columns")
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"code,title,colour\nTEE,Tee,Red\n",
            "Unknown column 'colour' in the header. Known columns: code, title, category, "
            "price, cost, currency, weight_grams, length_mm, width_mm, height_mm, attributes, "
            "active, channel, id_kind, external_id.",
        ),
        (b"title,price\nTee,10\n", "The header has no 'code' column; every row needs a SKU code."),
        (
            b"code,title,title\nTEE,Tee,Tee\n",
            "Column 'title' appears more than once in the header.",
        ),
        (
            b"code,category\nTEE,Tops\n",
            "The header needs a 'title' column (to create or change SKUs) or an 'external_id' "
            "column (to map channel identifiers).",
        ),
        (b"", "The file is empty; it needs a header row."),
        (
            "code,title\nTEE,Caf\u00e9\n".encode("latin-1"),
            "The file is not UTF-8 text. Save it as 'CSV UTF-8' or as an XLSX workbook.",
        ),
        (
            b"PK\x03\x04not really a workbook",
            "The file is not a readable XLSX workbook (File is not a zip file).",
        ),
    ],
)
def test_unreadable_file_fails_the_job(channel, ops, run_import, content, message):
    job = run_import(content, user=ops)

    assert job.status == ImportStatus.FAILED
    assert job.failure_message == message
    assert not Sku.objects.exists()
    entry = AuditEntry.objects.get(target_type="import_job")
    assert (entry.action, entry.reason, entry.actor) == ("sku_import.failed", message, ops)


def test_file_over_the_row_limit_fails(settings, channel, run_import):
    settings.OMSGUARD_IMPORT_MAX_ROWS = 2

    job = run_import(csv_bytes("A,A,1,,USD,,,,,,,,,", "B,B,1,,USD,,,,,,,,,", "C,C,1,,USD,,,,,,,,,"))

    assert job.status == ImportStatus.FAILED
    assert job.failure_message == (
        "The file has 3 rows; the limit is 2 (OMSGUARD_IMPORT_MAX_ROWS). Split it into smaller "
        "files."
    )


def test_crash_during_apply_leaves_nothing_applied(channel, ops, run_import, monkeypatch):
    real_apply = services.apply_rows

    def apply_then_crash(**kwargs):
        real_apply(**kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "apply_rows", apply_then_crash)

    job = run_import(csv_bytes(*MIXED_ROWS[:2]).replace(b"amz-us", b"shop"), user=ops)

    assert job.status == ImportStatus.FAILED
    assert job.phase == ImportPhase.DONE
    assert job.failure_message == (
        "The import stopped on an unexpected error (RuntimeError), so nothing was applied. The "
        "server log has the details under this job's id."
    )
    assert not Sku.objects.exists()
    assert not ChannelSkuMapping.objects.exists()
    assert list(
        AuditEntry.objects.filter(target_type="import_job").values_list("action", flat=True)
    ) == ["sku_import.failed"]


def test_constraint_violation_at_apply_rolls_back_every_row(
    channel, catalog, run_import, monkeypatch
):
    # A mapping created after validation (simulated by hiding it from the validator) makes the
    # insert fail on the unique constraint; the SKUs of the same file must not stay behind.
    monkeypatch.setattr("catalog.sku_import.validate._existing_mappings", lambda keys: {})

    job = run_import(
        csv_bytes(
            "FRESH-1,Fresh One,,5,,USD,,,,,,,,,",
            "FRESH-2,Fresh Two,,5,,USD,,,,,,,shop,sku,TEE-CLASSIC-BLK-M",
        )
    )

    assert job.status == ImportStatus.FAILED
    assert job.failure_message == (
        "A SKU or mapping in this file was changed by someone else while the import ran, so "
        "nothing was applied. Upload the file again."
    )
    assert not Sku.objects.filter(code__startswith="FRESH").exists()
    assert ChannelSkuMapping.objects.get(external_id="TEE-CLASSIC-BLK-M").sku.code == (
        "TEE-CLASSIC-BLK-M"
    )


UNMAPPED_LINE = {
    "id": 13571113171999,
    "variant_id": 44012345670000,
    "sku": "TSHIRT-CLASSIC-BLACK-MED",
    "title": "Classic Cotton Tee",
    "name": "Classic Cotton Tee - Black / M",
    "quantity": 1,
    "price": "19.99",
}


def test_imported_mapping_releases_held_orders(channel, catalog, ops, post_webhook, run_import):
    post_webhook(as_body(order_payload(lines=[UNMAPPED_LINE])))
    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD

    job = run_import(
        csv_bytes("TEE-CLASSIC-BLK-M,,,,,,,,,,,,shop,sku,TSHIRT-CLASSIC-BLACK-MED"), user=ops
    )

    assert job.review_items_resolved_count == 1
    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []
    assert order.lines.get().sku.code == "TEE-CLASSIC-BLK-M"
    item = ReviewItem.objects.get()
    assert item.status == ReviewStatus.RESOLVED
    assert item.decision_note == f"mapping imported in job {job.pk}"


def test_queued_job_runs_once(channel, run_import):
    job = run_import(csv_bytes("TEE,Tee,,10,,USD,,,,,,,,,"))

    assert import_job_run(job_id=job.pk) is None
    assert ImportJob.objects.get().status == ImportStatus.SUCCEEDED


def test_running_job_is_left_alone_until_stale(settings, channel):
    from django.core.files.base import ContentFile
    from django.utils import timezone

    job = import_job_create(
        file=ContentFile(csv_bytes("TEE,Tee,,10,,USD,,,,,,,,,")),
        file_name="skus.csv",
        created_by=None,
        queue=False,
    )
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.RUNNING)

    assert import_job_run(job_id=job.pk) is None

    settings.OMSGUARD_IMPORT_STALE_SECONDS = 60
    ImportJob.objects.filter(pk=job.pk).update(
        updated_at=timezone.now() - timezone.timedelta(seconds=61)
    )
    ImportRowError.objects.create(job=job, row_number=9, code="missing", reason="old run")
    ImportJob.objects.filter(pk=job.pk).update(validated_rows=7, error_count=1)

    finished = import_job_run(job_id=job.pk)

    assert finished.status == ImportStatus.SUCCEEDED
    assert not finished.row_errors.exists()
    assert (finished.total_rows, finished.validated_rows, finished.error_count) == (1, 1, 0)
    assert Sku.objects.get().code == "TEE"


def test_applied_rows_come_from_the_cache_while_applying(channel):
    job = ImportJob.objects.create(
        file_name="x.csv", file_sha256="0" * 64, phase=ImportPhase.APPLYING, rows_to_apply=10
    )
    cache.set(import_progress_cache_key(job), 4)

    assert import_job_applied_rows(job=job) == 4

    job.phase = ImportPhase.DONE
    job.applied_rows = 10
    assert import_job_applied_rows(job=job) == 10


def test_upload_queues_the_task_on_commit(channel, ops, django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = import_job_create(
            file=ContentFile(csv_bytes("TEE,Tee,,10,,USD,,,,,,,,,")),
            file_name="../../etc/skus.csv",
            created_by=ops,
        )

    assert job.status == ImportStatus.QUEUED
    assert job.file_name == "skus.csv"
    assert job.file.name == f"imports/{job.pk}/skus.csv"
    assert len(callbacks) == 1

    callbacks[0]()

    job.refresh_from_db()
    assert job.status == ImportStatus.SUCCEEDED
    assert Sku.objects.get().code == "TEE"


def test_missing_upload_fails_with_a_hint(channel):
    from django.core.files.base import ContentFile

    job = import_job_create(
        file=ContentFile(csv_bytes("TEE,Tee,,10,,USD,,,,,,,,,")),
        file_name="skus.csv",
        created_by=None,
        queue=False,
    )
    job.file.storage.delete(job.file.name)

    finished = import_job_run(job_id=job.pk)

    assert finished.status == ImportStatus.FAILED
    assert finished.failure_message == (
        f"The uploaded file imports/{job.pk}/skus.csv is missing from MEDIA_ROOT. The web "
        "server and the Celery worker must share that directory; upload the file again."
    )


def test_code_starting_like_a_formula_is_rejected(channel, run_import):
    job = run_import(
        csv_bytes(
            "\"=CMD|' /C calc'!A0\",Evil,Tops,15,,USD,,,,,,,,,",
            "OK-TEE,Fine Tee,Tops,15,,USD,,,,,,,,,",
        )
    )

    assert row_errors(job) == [
        (
            2,
            "code",
            "invalid_text",
            "must not start with =, +, -, @ or a tab (spreadsheets run such cells as formulas)",
        )
    ]
    assert list(Sku.objects.values_list("code", flat=True)) == ["OK-TEE"]
