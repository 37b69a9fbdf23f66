"""Writing validated rows with bulk upserts. The caller owns the transaction.

On PostgreSQL the rows go through COPY: SKUs into a temporary staging table and from there
into catalog_sku with one INSERT ... ON CONFLICT (code) DO UPDATE, mappings straight into their
table. Other databases use bulk_create(update_conflicts=True) per chunk. Both write the same
rows and update the same fields. COPY is used because building model instances and binding
parameters made the ORM path three to four times slower for 100,000 rows (bench/import_skus.py).
"""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from ..models import ChannelSkuMapping, Sku
from .validate import SKU_DATA_FIELDS, AcceptedRow


@dataclass(frozen=True)
class ApplyResult:
    skus_written: int
    # The new mappings, unsaved copies: their primary keys are not set on PostgreSQL.
    mappings: list[ChannelSkuMapping]


def rows_to_apply(rows: list[AcceptedRow]) -> int:
    """Count the writes `apply_rows` makes: one per SKU to upsert and one per new mapping."""
    return sum((row.sku_values is not None) + (row.new_mapping is not None) for row in rows)


def apply_rows(
    *,
    rows: list[AcceptedRow],
    update_fields: list[str],
    chunk_size: int,
    on_progress: Callable[[int], None],
) -> ApplyResult:
    """Upsert the rows' SKUs and insert their new mappings, reporting writes done per chunk.

    Call inside a transaction, so that a failure part-way leaves nothing written. A mapping
    that someone else created after validation makes the insert fail with IntegrityError
    instead of being overwritten.
    """
    progress = _Progress(on_progress)
    sku_rows = [row for row in rows if row.sku_values is not None]
    copy = connection.vendor == "postgresql"
    if copy:
        ids_by_code = _upsert_skus_by_copy(sku_rows, update_fields, chunk_size, progress)
    else:
        ids_by_code = _upsert_skus_by_bulk_create(sku_rows, update_fields, chunk_size, progress)

    mapping_rows = [row for row in rows if row.new_mapping is not None]
    _fill_missing_ids(
        ids_by_code, {row.code for row in mapping_rows if row.sku_id is None}, chunk_size
    )
    mappings = [_mapping_for(row, ids_by_code) for row in mapping_rows]
    if copy:
        _insert_mappings_by_copy(mappings, chunk_size, progress)
    else:
        for start in range(0, len(mappings), chunk_size):
            chunk = mappings[start : start + chunk_size]
            ChannelSkuMapping.objects.bulk_create(chunk)
            progress.add(len(chunk))
    return ApplyResult(skus_written=len(sku_rows), mappings=mappings)


class _Progress:
    def __init__(self, report: Callable[[int], None]) -> None:
        self.report = report
        self.done = 0

    def add(self, count: int) -> None:
        self.done += count
        self.report(self.done)


def _upsert_skus_by_bulk_create(
    rows: list[AcceptedRow], update_fields: list[str], chunk_size: int, progress: _Progress
) -> dict[str, int]:
    ids_by_code = {}
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start : start + chunk_size]
        # The values are final: the validator already normalised titles and rounded prices,
        # so this write skips Sku.set_derived_fields, as bulk writes do.
        skus = [Sku(code=row.code, **row.sku_values) for row in chunk]
        Sku.objects.bulk_create(
            skus, update_conflicts=True, unique_fields=["code"], update_fields=update_fields
        )
        ids_by_code.update((sku.code, sku.pk) for sku in skus if sku.pk is not None)
        progress.add(len(chunk))
    return ids_by_code


def _upsert_skus_by_copy(
    rows: list[AcceptedRow], update_fields: list[str], chunk_size: int, progress: _Progress
) -> dict[str, int]:
    if not rows:
        return {}
    # Every identifier in these statements comes from model metadata; the values go through
    # COPY, never into the SQL text.
    quote = connection.ops.quote_name
    table = quote(Sku._meta.db_table)
    stage = quote(f"sku_import_stage_{uuid.uuid4().hex}")
    columns = ", ".join(
        quote(name) for name in ["code", *SKU_DATA_FIELDS, "created_at", "updated_at"]
    )
    assignments = ", ".join(f"{quote(field)} = EXCLUDED.{quote(field)}" for field in update_fields)
    now = timezone.now()

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS "  # noqa: S608
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        copy_statement = f"COPY {stage} ({columns}) FROM STDIN"
        with connection.wrap_database_errors, cursor.cursor.copy(copy_statement) as copy:
            for index, row in enumerate(rows, start=1):
                copy.write_row([row.code, *_copy_values(row.sku_values), now, now])
                if index % chunk_size == 0:
                    progress.add(chunk_size)
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} "  # noqa: S608
            f"ON CONFLICT (code) DO UPDATE SET {assignments} RETURNING code, id"
        )
        ids_by_code = dict(cursor.fetchall())
        cursor.execute(f"DROP TABLE {stage}")
    progress.add(len(rows) % chunk_size)
    return ids_by_code


def _copy_values(values: dict) -> list:
    # COPY sends JSON as its text; every other value has a psycopg dumper.
    return [
        json.dumps(values[field]) if field == "attributes" else values[field]
        for field in SKU_DATA_FIELDS
    ]


def _insert_mappings_by_copy(
    mappings: list[ChannelSkuMapping], chunk_size: int, progress: _Progress
) -> None:
    if not mappings:
        return
    table = ChannelSkuMapping._meta.db_table
    now = timezone.now()
    with connection.cursor() as cursor, connection.wrap_database_errors:
        statement = (
            f"COPY {table} (channel_id, id_kind, external_id, sku_id, created_at) FROM STDIN"
        )
        with cursor.cursor.copy(statement) as copy:
            for index, mapping in enumerate(mappings, start=1):
                mapping.created_at = now
                copy.write_row(
                    [mapping.channel_id, mapping.id_kind, mapping.external_id, mapping.sku_id, now]
                )
                if index % chunk_size == 0:
                    progress.add(chunk_size)
    progress.add(len(mappings) % chunk_size)


def _fill_missing_ids(ids_by_code: dict[str, int], codes: set[str], chunk_size: int) -> None:
    """Look up the ids of existing SKUs that mapping rows refer to, and any the upsert did not
    return (databases without INSERT ... RETURNING)."""
    missing = sorted(codes - ids_by_code.keys())
    for start in range(0, len(missing), chunk_size):
        chunk = missing[start : start + chunk_size]
        ids_by_code.update(Sku.objects.filter(code__in=chunk).values_list("code", "id"))


def _mapping_for(row: AcceptedRow, ids_by_code: dict[str, int]) -> ChannelSkuMapping:
    channel_id, id_kind, external_id = row.new_mapping
    return ChannelSkuMapping(
        channel_id=channel_id,
        id_kind=id_kind,
        external_id=external_id,
        sku_id=row.sku_id or ids_by_code[row.code],
    )
