"""import_skus: import SKUs and channel mappings from a CSV or XLSX file, in this process."""

import csv
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.models import Channel, ImportJob, ImportStatus
from catalog.selectors import (
    IMPORT_ERROR_CSV_HEADER,
    import_row_errors,
    import_row_errors_csv_rows,
)
from catalog.services import import_job_create, import_job_run

# Exit statuses: 0 every row imported; 1 the job failed and nothing was applied (or the
# arguments were wrong); 3 the valid rows were applied and some rows were rejected.
EXIT_ROWS_REJECTED = 3
ERRORS_PRINTED = 50


class Command(BaseCommand):
    help = (
        "Import SKUs and channel mappings from a CSV or XLSX file. Exits 0 when every row was "
        "imported, 3 when some rows were rejected (the others were applied), and 1 when the "
        "job failed and nothing was applied."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", help="The .csv or .xlsx file to import.")
        parser.add_argument(
            "--channel", help="Channel code for mapping rows whose channel cell is empty."
        )
        parser.add_argument(
            "--user", help="Username recorded as the uploader (default: the command itself)."
        )
        parser.add_argument("--errors-csv", help="Also write every row error to this CSV file.")
        parser.add_argument(
            "--job",
            help="Run an existing queued job by id instead of a new file, e.g. one "
            "whose task could not be queued.",
        )

    def handle(self, *args, file, channel, user, errors_csv, job, **options) -> None:
        if bool(file) == bool(job):
            raise CommandError("Give either a FILE to import or --job ID, not both or neither.")

        job_id = job or self._create_job(Path(file), channel, user).pk
        finished = import_job_run(job_id=job_id)
        if finished is None:
            raise CommandError(f"Import job {job_id} does not exist or is not queued.")

        self._print_summary(finished)
        if errors_csv:
            _write_errors_csv(finished, Path(errors_csv))
            self.stdout.write(f"All row errors written to {errors_csv}.")

        if finished.status == ImportStatus.FAILED:
            raise CommandError(f"Import failed, nothing was applied: {finished.failure_message}")
        if finished.error_count:
            raise CommandError(
                f"Rows rejected: {finished.error_count}; the other rows were applied.",
                returncode=EXIT_ROWS_REJECTED,
            )

    def _create_job(self, path: Path, channel_code: str | None, username: str | None) -> ImportJob:
        if not path.is_file():
            raise CommandError(f"File {path} does not exist.")
        if path.suffix.lower() not in (".csv", ".xlsx"):
            raise CommandError(f"{path.name} is not a .csv or .xlsx file.")

        channel = None
        if channel_code:
            channel = Channel.objects.filter(code=channel_code).first()
            if channel is None:
                raise CommandError(f"Channel {channel_code!r} does not exist.")
        uploader = None
        if username:
            uploader = get_user_model().objects.filter(username=username).first()
            if uploader is None:
                raise CommandError(f"User {username!r} does not exist.")

        with path.open("rb") as handle:
            return import_job_create(
                file=File(handle),
                file_name=path.name,
                created_by=uploader,
                default_channel=channel,
                queue=False,
            )

    def _print_summary(self, job: ImportJob) -> None:
        self.stdout.write(f"Import job {job.pk}: {job.get_status_display().lower()}")
        self.stdout.write(f"  file       {job.file_name} (sha256 {job.file_sha256})")
        self.stdout.write(f"  rows       {job.total_rows}")
        if job.status == ImportStatus.SUCCEEDED:
            self.stdout.write(f"  created    {job.created_count}")
            self.stdout.write(f"  updated    {job.updated_count}")
            self.stdout.write(f"  unchanged  {job.unchanged_count}")
            self.stdout.write(f"  mappings   {job.mappings_created_count} created")
            self.stdout.write(
                f"  held lines {job.review_items_resolved_count} settled by new mappings"
            )
        self.stdout.write(f"  errors     {job.error_count} rejected rows")
        if job.status == ImportStatus.SUCCEEDED:
            self.stdout.write(
                f"  time       validation {job.validation_seconds:.1f} s, "
                f"apply {job.apply_seconds:.1f} s"
            )

        errors = import_row_errors(job=job)
        for error in errors[:ERRORS_PRINTED]:
            column = error.column or "-"
            self.stdout.write(
                f"row {error.row_number}, {column}: {error.reason} (value {error.value!r})"
            )
        if errors.count() > ERRORS_PRINTED:
            self.stdout.write(
                f"Only the first {ERRORS_PRINTED} errors are shown; use --errors-csv FILE for all."
            )


def _write_errors_csv(job: ImportJob, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(IMPORT_ERROR_CSV_HEADER)
        writer.writerows(import_row_errors_csv_rows(job=job))
