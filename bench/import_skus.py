"""Benchmark the SKU import against the configured database, with a raw-insert baseline.

Generates a CSV of new SKUs, each with a channel SKU mapping, in a temporary directory. Imports
it with catalog.services.import_job_run, the code path of the Celery task and the command, and
then a second time, when every row is unchanged. Loads the same rows into a scratch table with
psycopg COPY on PostgreSQL or executemany on SQLite as the baseline. Prints rows per second
for each phase and the ratio of the import to the baseline.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/omsguard_dev \\
        .venv/bin/python bench/import_skus.py [--rows 100000] [--keep] [--profile]

Run `manage.py migrate` on that database first. The bench writes real SKUs with codes starting
"BENCH-<run id>-" on a new channel and deletes them again unless --keep is given.
"""

import argparse
import cProfile
import csv
import os
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omsguard.settings")
# DEBUG would keep every SQL statement in memory, so the bench runs with DEBUG off.
os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
# The uploaded copies of the generated file go to a directory the bench deletes afterwards.
MEDIA_ROOT = tempfile.mkdtemp(prefix="bench-import-media-")
os.environ["MEDIA_ROOT"] = MEDIA_ROOT

import django  # noqa: E402

django.setup()

from django.core.files import File  # noqa: E402
from django.db import connection  # noqa: E402

from catalog.models import Channel, ChannelKind, ImportJob, ImportStatus, Sku  # noqa: E402
from catalog.services import import_job_create, import_job_run  # noqa: E402
from catalog.sku_import.reader import COLUMNS  # noqa: E402

COLOURS = ["Black", "White", "Navy Blue", "Grey", "Red", "Olive"]
SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
# Typed like the real Sku columns, so the baseline pays for the same conversions.
SCRATCH_COLUMNS = {
    "code": "varchar(64)",
    "title": "varchar(300)",
    "category": "varchar(200)",
    "price": "numeric(14,3)",
    "cost": "numeric(14,3)",
    "currency": "varchar(3)",
    "weight_grams": "integer",
    "length_mm": "integer",
    "width_mm": "integer",
    "height_mm": "integer",
    "attributes": "text",
    "active": "boolean",
    "channel": "varchar(64)",
    "id_kind": "varchar(32)",
    "external_id": "varchar(200)",
}


def main() -> None:
    arguments = _arguments()
    run = uuid.uuid4().hex[:8]
    channel = Channel.objects.create(kind=ChannelKind.SHOPIFY, code=f"bench-{run}")
    print(f"database   {connection.vendor} {connection.settings_dict['NAME']}")
    print(f"rows       {arguments.rows} (run {run}, channel {channel.code})")

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"bench-{run}.csv"
        started = time.monotonic()
        _write_csv(path, rows=arguments.rows, run=run, channel=channel.code)
        print(
            f"generate   {time.monotonic() - started:6.2f} s  ({path.stat().st_size / 1e6:.1f} MB)"
        )

        jobs = []
        try:
            first = _import(path, profile=arguments.profile)
            jobs.append(first)
            _report("import", first, arguments.rows)
            again = _import(path, profile=False)
            jobs.append(again)
            _report("reimport", again, arguments.rows)
            baseline = _baseline(path)
        finally:
            if not arguments.keep:
                _clean_up(channel, run, jobs)
            shutil.rmtree(MEDIA_ROOT, ignore_errors=True)

    total = first.validation_seconds + first.apply_seconds
    print(
        f"baseline   {baseline:6.2f} s  {arguments.rows / baseline:9.0f} rows/s  "
        f"({'COPY' if connection.vendor == 'postgresql' else 'executemany'} into a scratch table)"
    )
    print(f"ratio      import is {total / baseline:.1f}x the baseline time")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="Rows to generate.")
    parser.add_argument("--keep", action="store_true", help="Keep the imported SKUs.")
    parser.add_argument(
        "--profile", action="store_true", help="Print the 25 costliest functions of the import."
    )
    return parser.parse_args()


def _write_csv(path: Path, *, rows: int, run: str, channel: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for index in range(rows):
            colour, size = COLOURS[index % len(COLOURS)], SIZES[index // len(COLOURS) % len(SIZES)]
            code = f"BENCH-{run}-{index:07d}"
            writer.writerow(
                [
                    code,
                    f"Bench Tee {index // 36} - {colour} / {size}",
                    "Tops",
                    f"{10 + index % 90}.99",
                    f"{4 + index % 40}.25",
                    "USD",
                    150 + index % 200,
                    300,
                    200,
                    20 + index % 5,
                    f"colour={colour};size={size}",
                    "true",
                    channel,
                    "sku",
                    code,
                ]
            )


def _import(path: Path, *, profile: bool) -> ImportJob:
    with path.open("rb") as handle:
        job = import_job_create(
            file=File(handle), file_name=path.name, created_by=None, queue=False
        )

    profiler = cProfile.Profile() if profile else None
    started = time.monotonic()
    if profiler:
        profiler.enable()
    finished = import_job_run(job_id=job.pk)
    if profiler:
        profiler.disable()
    finished.wall_seconds = time.monotonic() - started
    if finished.status != ImportStatus.SUCCEEDED:
        raise SystemExit(f"import failed: {finished.failure_message}")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return finished


def _report(label: str, job: ImportJob, rows: int) -> None:
    validate, apply = job.validation_seconds, job.apply_seconds
    print(
        f"{label:<10} validate {validate:6.2f} s {rows / validate:9.0f} rows/s | "
        f"apply {apply:6.2f} s {rows / max(apply, 1e-9):9.0f} rows/s | "
        f"total {job.wall_seconds:6.2f} s {rows / job.wall_seconds:9.0f} rows/s | "
        f"created {job.created_count} unchanged {job.unchanged_count} errors {job.error_count}"
    )


def _baseline(path: Path) -> float:
    """Seconds to load the same file into a typed scratch table without any checks."""
    table = "bench_import_scratch"
    definition = ", ".join(f"{name} {kind}" for name, kind in SCRATCH_COLUMNS.items())
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(f"CREATE TABLE {table} ({definition})")
    try:
        started = time.monotonic()
        if connection.vendor == "postgresql":
            _copy_postgresql(path, table)
        else:
            _executemany(path, table)
        return time.monotonic() - started
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE {table}")


def _copy_postgresql(path: Path, table: str) -> None:
    raw = connection.connection  # the psycopg 3 connection under Django's wrapper
    statement = f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)"
    with (
        raw.transaction(),
        raw.cursor() as cursor,
        path.open("rb") as handle,
        cursor.copy(statement) as copy,
    ):
        while block := handle.read(1 << 20):
            copy.write(block)


def _executemany(path: Path, table: str) -> None:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        placeholders = ", ".join("?" * len(SCRATCH_COLUMNS))
        # Django opens SQLite in autocommit mode; one explicit transaction avoids a commit per row.
        raw = connection.connection
        raw.execute("BEGIN")
        raw.executemany(f"INSERT INTO {table} VALUES ({placeholders})", reader)
        raw.execute("COMMIT")


def _clean_up(channel: Channel, run: str, jobs: list[ImportJob]) -> None:
    channel.mappings.all().delete()
    Sku.objects.filter(code__startswith=f"BENCH-{run}-").delete()
    for job in jobs:
        job.file.delete(save=False)
        job.delete()
    channel.delete()


if __name__ == "__main__":
    main()
