import argparse
import time
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from monitoring.rollups import kpi_rollups_refresh
from monitoring.selectors import day_floor

# About 13 months. A longer period must be split into several runs, so a typo such as
# --days 100000 fails at once instead of running for hours.
MAX_DAYS = 400
# No channel is expected to send orders from before 2000, so an earlier --since is a typo.
EARLIEST_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
# The period is refreshed and reported in steps of this many days.
STEP_DAYS = 10


def day_count(value: str) -> int:
    """Parse --days: a whole number of days from 1 to MAX_DAYS."""
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of days: {value!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {days}")
    if days > MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_DAYS}, not {days}; use --since and --until for older periods"
        )
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
        f"the hours from --since to --until, at most {MAX_DAYS} days. Use it to backfill "
        f"after an import or a fix. Prints progress every {STEP_DAYS} days."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=day_count,
            help=f"How many days back from now to recompute, 1 to {MAX_DAYS} (default 7).",
        )
        parser.add_argument(
            "--since",
            type=moment,
            help="Start of the period, ISO 8601, e.g. 2025-03-01; from 2000-01-01 to now.",
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
        if since > now:
            raise CommandError(
                f"--since ({since.isoformat()}) is after now ({now.isoformat()}); "
                "give a start in the past."
            )
        until = until or now
        if until < since:
            raise CommandError(
                f"--until ({until.isoformat()}) is before --since ({since.isoformat()})."
            )

        if since < EARLIEST_SINCE:
            raise CommandError(
                f"--since ({since.isoformat()}) is before {EARLIEST_SINCE.date().isoformat()}, "
                "the earliest start this command accepts."
            )
        if until - since > timedelta(days=MAX_DAYS):
            raise CommandError(
                f"The period from {since.isoformat()} to {until.isoformat()} is longer than "
                f"{MAX_DAYS} days; split it into several runs."
            )

        begun = time.monotonic()
        rows = self._refresh_in_steps(since=since, until=until, now=now)
        seconds = time.monotonic() - begun
        self.stdout.write(
            f"Wrote {rows} rollup rows for {since.isoformat()} to {until.isoformat()} "
            f"in {seconds:.1f} s."
        )

    def _refresh_in_steps(self, *, since: datetime, until: datetime, now: datetime) -> int:
        """Refresh STEP_DAYS days at a time, printing a line after each step when there are several.

        Each step also replaces the snapshot of open review items in now's hour, so the
        returned row count includes that snapshot once per step.
        """
        steps = []
        step_start = since
        while step_start < until:
            # Steps end at midnight UTC, so no hour or day is refreshed twice.
            step_end = min(day_floor(step_start) + timedelta(days=STEP_DAYS), until)
            steps.append((step_start, step_end))
            step_start = step_end
        if not steps:
            # An empty period still writes the snapshot of open review items.
            return kpi_rollups_refresh(since=since, until=until, now=now)

        rows = 0
        for number, (step_start, step_end) in enumerate(steps, start=1):
            rows += kpi_rollups_refresh(since=step_start, until=step_end, now=now)
            if len(steps) > 1:
                self.stdout.write(
                    f"Step {number} of {len(steps)}: refreshed up to {step_end.isoformat()}, "
                    f"{rows} rows so far."
                )
        return rows
