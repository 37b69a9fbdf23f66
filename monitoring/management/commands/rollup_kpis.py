import argparse
import time
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from monitoring.rollups import kpi_rollups_refresh


def day_count(value: str) -> int:
    """Parse --days: a whole number of days, 1 or more."""
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of days: {value!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {days}")
    return days


def moment(value: str) -> datetime:
    """Parse an ISO 8601 date or time; one without a time zone is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid date or time: {value!r}; use ISO 8601, e.g. 2025-03-01T00:00:00Z"
        ) from None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


class Command(BaseCommand):
    help = (
        "Recompute the KPI rollups from the recorded facts: the last N days (default 7), or "
        "the hours from --since to --until. Use it to backfill after an import or a fix."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=day_count, help="How many days back from now to recompute (default 7)."
        )
        parser.add_argument(
            "--since", type=moment, help="Start of the period, ISO 8601, e.g. 2025-03-01."
        )
        parser.add_argument(
            "--until", type=moment, help="End of the period, ISO 8601 (default: now)."
        )

    def handle(
        self,
        *args,
        days: int | None,
        since: datetime | None,
        until: datetime | None,
        **options,
    ) -> None:
        now = timezone.now()
        if days is not None and (since is not None or until is not None):
            raise CommandError("Give either --days or --since/--until, not both.")
        if since is None and until is not None:
            raise CommandError("--until needs --since.")
        if since is None:
            since = now - timedelta(days=days or 7)
        until = until or now
        if until < since:
            raise CommandError(
                f"--until ({until.isoformat()}) is before --since ({since.isoformat()})."
            )

        begun = time.monotonic()
        rows = kpi_rollups_refresh(since=since, until=until, now=now)
        seconds = time.monotonic() - begun
        self.stdout.write(
            f"Wrote {rows} rollup rows for {since.isoformat()} to {until.isoformat()} "
            f"in {seconds:.1f} s."
        )
