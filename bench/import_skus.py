"""Benchmark the SKU import: 100,000 new SKUs with channel mappings, against a bare COPY.

    .venv/bin/python bench/import_skus.py [--quick] [--rows N] [--profile]

Creates the database omsguard_bench_import_skus as a clone of the migrated bench template
(bench/harness.py) and drops it at the end, also when the run fails. Generates a CSV of new
SKUs, each with a channel SKU mapping, in a temporary directory, and imports it with
catalog.services.import_job_run in this process: the code the Celery task and the
`import_skus` command run, without the broker. Then it imports the same file again, when
every row is unchanged. As the baseline it loads the same file into a typed scratch table
with psycopg COPY, which is the least work PostgreSQL can do to store those rows.

Figures: the first import's wall time (target under 30 s for 100,000 rows), with the COPY's
time as its baseline; the re-import's time; rows per second of both. The first figure's detail
gives the bench process's CPU time and its time waiting for a CPU, which tells a loaded machine
from a slow import. Full size is 100,000 rows; `--quick` is 5,000 rows. `--profile` prints the
25 costliest functions of the first import.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

PART = "import_skus"
DATABASE_NAME = harness.part_database("import_skus")
FULL_ROWS = 100_000
QUICK_ROWS = 5_000
LIMIT_SECONDS = 30
BASELINE = "COPY into a scratch table"

sys.path.insert(0, str(harness.REPO_ROOT))
# Set before Django loads its settings: the bench database, no Redis (the import runs in this
# process, not in a worker), and DEBUG off so no SQL statement piles up in memory.
os.environ["DATABASE_URL"] = harness.database_url(DATABASE_NAME)
os.environ.pop("REDIS_URL", None)
os.environ["DEBUG"] = "0"
os.environ["LOG_LEVEL"] = "WARNING"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omsguard.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
# The stored copies of the uploaded file go to a directory the bench deletes afterwards.
MEDIA_ROOT = tempfile.mkdtemp(prefix="bench-import-media-")
os.environ["MEDIA_ROOT"] = MEDIA_ROOT

COLOURS = ["Black", "White", "Navy Blue", "Grey", "Red", "Olive"]
SIZES = ["XS", "S", "M", "L", "XL", "XXL"]
# Typed like the real Sku and mapping columns, so the baseline pays for the same conversions.
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
    try:
        harness.database_create(DATABASE_NAME)
        import django

        django.setup()
        figures = _run(rows=arguments.rows, profile=arguments.profile)
    finally:
        _close_connections()
        harness.database_drop(DATABASE_NAME)
        shutil.rmtree(MEDIA_ROOT, ignore_errors=True)
    harness.emit(figures)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows (CI size).")
    parser.add_argument(
        "--rows", type=int, help=f"Rows in the generated file (default {FULL_ROWS:,})."
    )
    parser.add_argument(
        "--profile", action="store_true", help="Print the 25 costliest functions of the import."
    )
    arguments = parser.parse_args()
    if arguments.rows is None:
        arguments.rows = QUICK_ROWS if harness.quick_mode() else FULL_ROWS
    if arguments.rows < 1:
        parser.error("--rows must be at least 1")
    return arguments


def _run(*, rows: int, profile: bool) -> list[harness.Figure]:
    from catalog.models import Channel, ChannelKind

    channel = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="bench")
    print(f"database   postgresql {DATABASE_NAME} ({os.cpu_count()} CPUs)")

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench-skus.csv"
        started = time.monotonic()
        _write_csv(path, rows=rows, channel=channel.code)
        megabytes = path.stat().st_size / 1e6
        print(f"generate   {rows:,} rows, {megabytes:.1f} MB in {time.monotonic() - started:.1f} s")

        first, first_seconds = _import(path, profile=profile)
        print(_summary("import", first, first_seconds, rows))
        again, again_seconds = _import(path, profile=False)
        print(_summary("reimport", again, again_seconds, rows))
        baseline_seconds = _baseline(path)
        print(f"baseline   {baseline_seconds:6.2f} s  ({BASELINE})")

    if first.created_count != rows or again.unchanged_count != rows:
        raise SystemExit(
            f"import did not store every row: first created {first.created_count}, second "
            f"found {again.unchanged_count} unchanged, of {rows}"
        )
    size = f"{rows:,} rows"
    detail = (
        f"validate {first.validation_seconds:.1f} s, apply {first.apply_seconds:.1f} s, "
        f"{first.cpu_seconds:.1f} s CPU in the bench process, which waited "
        f"{first.cpu_wait_seconds:.1f} s for a CPU; {megabytes:.1f} MB CSV"
    )
    if rows != FULL_ROWS:
        detail += f"; the {LIMIT_SECONDS} s target is for {FULL_ROWS:,} rows"
    return [
        harness.at_most(
            PART,
            f"SKU import, first, {size}",
            first_seconds,
            "s",
            limit=LIMIT_SECONDS,
            baseline_name=BASELINE,
            baseline_value=baseline_seconds,
            detail=detail,
        ),
        harness.info(PART, f"SKU import, unchanged file again, {size}", again_seconds, "s"),
        harness.info(
            PART,
            "SKU import, first, rows/s",
            rows / first_seconds,
            "rows/s",
            baseline_name=BASELINE,
            baseline_value=rows / baseline_seconds,
        ),
        harness.info(
            PART, "SKU import, unchanged file again, rows/s", rows / again_seconds, "rows/s"
        ),
    ]


def _write_csv(path: Path, *, rows: int, channel: str) -> None:
    from catalog.sku_import.reader import COLUMNS

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for index in range(rows):
            colour, size = COLOURS[index % len(COLOURS)], SIZES[index // len(COLOURS) % len(SIZES)]
            code = f"BENCH-{index:07d}"
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


def _import(path: Path, *, profile: bool):
    """Store the file as an import job and run it; return the finished job and its wall time."""
    from django.core.files import File

    from catalog.models import ImportStatus
    from catalog.services import import_job_create, import_job_run

    with path.open("rb") as handle:
        job = import_job_create(
            file=File(handle), file_name=path.name, created_by=None, queue=False
        )

    profiler = cProfile.Profile() if profile else None
    started, cpu_started, waited_before = time.monotonic(), time.process_time(), _cpu_wait()
    if profiler:
        profiler.enable()
    finished = import_job_run(job_id=job.pk)
    if profiler:
        profiler.disable()
    seconds = time.monotonic() - started
    # On a loaded machine the wall time includes waiting for a CPU. This process's own CPU
    # time (PostgreSQL's is not in it) and its time in the run queue show how much.
    finished.cpu_seconds = time.process_time() - cpu_started
    finished.cpu_wait_seconds = _cpu_wait() - waited_before
    if finished is None or finished.status != ImportStatus.SUCCEEDED:
        reason = finished.failure_message if finished else "the job was not found"
        raise SystemExit(f"import failed: {reason}")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return finished, seconds


def _cpu_wait() -> float:
    """Seconds this process has waited in the scheduler's run queue (Linux), else 0."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _summary(label: str, job, seconds: float, rows: int) -> str:
    return (
        f"{label:<10} {seconds:6.2f} s {rows / seconds:9,.0f} rows/s | "
        f"validate {job.validation_seconds:6.2f} s | apply {job.apply_seconds:6.2f} s | "
        f"CPU {job.cpu_seconds:6.2f} s, waited {job.cpu_wait_seconds:6.2f} s | "
        f"created {job.created_count} unchanged {job.unchanged_count} errors {job.error_count}"
    )


def _baseline(path: Path) -> float:
    """Seconds to COPY the same file into a typed scratch table, without any checks."""
    from django.db import connection

    table = "bench_import_scratch"
    definition = ", ".join(f"{name} {kind}" for name, kind in SCRATCH_COLUMNS.items())
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(f"CREATE TABLE {table} ({definition})")
    connection.ensure_connection()
    raw = connection.connection  # the psycopg 3 connection under Django's wrapper
    statement = f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)"
    started = time.monotonic()
    with (
        raw.transaction(),
        raw.cursor() as cursor,
        path.open("rb") as handle,
        cursor.copy(statement) as copy,
    ):
        while block := handle.read(1 << 20):
            copy.write(block)
    return time.monotonic() - started


def _close_connections() -> None:
    # The database is dropped next; Django's connection to it must be gone first.
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


if __name__ == "__main__":
    main()
