"""Post a fresh count of every demo stock level, standing in for the warehouse feed the demo lacks.

A stock count is stale once it is older than OMSGUARD_STOCK_TTL_SECONDS (300 s by default), and
an order reserved on a stale count gets a `stale_stock` flag. Substitutions also stop running on
their own, because the guardrails' `stock_fresh` rule fails. In production the locations' feeds
keep the counts fresh. The demo's counts are posted once, by seed_demo, so five minutes later
every new demo order is flagged. This command posts the counts again with the current time.
"""

import time
from argparse import ArgumentTypeError

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from inventory.models import StockEventKind, StockEventOutcome, StockLevel
from inventory.services import StockEventInput, stock_event_record
from orders.demo import DEMO_LOCATIONS

# The stock events' source, which sets the refreshes apart from the seed's events in the admin.
DEMO_REFRESH_SOURCE = "demo-refresh"
# Number of stock levels locked and refreshed in each transaction.
REFRESH_BATCH_SIZE = 100
# Exit status after Ctrl-C: 128 + SIGINT (2), as a shell reports for a program SIGINT stopped.
INTERRUPTED_EXIT_STATUS = 130


def _seconds(value: str) -> int:
    """Parse --every: a whole number of seconds, 1 or more."""
    try:
        seconds = int(value)
    except ValueError:
        raise ArgumentTypeError(f"must be a whole number of seconds, got {value!r}") from None
    if seconds < 1:
        raise ArgumentTypeError(f"must be 1 second or more, got {seconds}")
    return seconds


def demo_stock_refresh() -> dict[str, int]:
    """Post each demo stock level's on-hand count again as an absolute event, stamped now.

    Each event carries the level's next version, so it applies through the same service and
    audit trail as a location's feed, and changes the count time only. The levels are locked
    in id order, as reservations lock them, so an order being processed waits rather than
    deadlocks. They are locked in batches, so such an order waits for one batch at most.
    Returns how many events had each outcome.
    """
    codes = [code for code, *_ in DEMO_LOCATIONS]
    level_ids = list(
        StockLevel.objects.filter(
            location__code__in=codes, location__is_active=True, sku__is_active=True
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    # One id per run, so each run's events are new and a rerun does not replay them.
    run_id = timezone.now().strftime("%Y%m%dT%H%M%S.%fZ")
    outcomes: dict[str, int] = {}
    for start in range(0, len(level_ids), REFRESH_BATCH_SIZE):
        batch = level_ids[start : start + REFRESH_BATCH_SIZE]
        # One transaction per batch, because SQLite commits one by one are slow.
        with transaction.atomic():
            levels = (
                StockLevel.objects.select_for_update(of=("self",))
                .select_related("sku", "location")
                .filter(pk__in=batch)
                .order_by("pk")
            )
            for level in levels:
                result = stock_event_record(
                    data=StockEventInput(
                        source=DEMO_REFRESH_SOURCE,
                        event_id=f"{level.sku.code}@{level.location.code}@{run_id}",
                        sku=level.sku,
                        location=level.location,
                        kind=StockEventKind.ABSOLUTE,
                        quantity=level.on_hand,
                        version=level.version + 1,
                    )
                )
                outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    return outcomes


class Command(BaseCommand):
    help = (
        "Post the demo's stock counts again, unchanged but stamped now, so that demo orders "
        "are not flagged stale_stock. The demo has no warehouse feed, and its counts are "
        "stale OMSGUARD_STOCK_TTL_SECONDS (300 by default) after seed_demo posted them. Runs "
        "only with DEBUG=1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--every",
            type=_seconds,
            metavar="SECONDS",
            help="Post the counts again every SECONDS seconds until interrupted (Ctrl-C).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG off. The counts it posts were never counted, so only "
            "on a throwaway database.",
        )

    def handle(self, *args, every: int | None, force: bool, **options) -> None:
        if not settings.DEBUG and not force:
            raise CommandError(
                "refresh_demo_stock posts stock counts that were never counted, so it runs "
                "only with DEBUG=1 (or with --force on a throwaway database)."
            )
        try:
            self._refresh_until_stopped(every)
        except KeyboardInterrupt:
            # Ctrl-C is how --every is meant to stop, so it gets one line and no traceback. A
            # batch it cuts short is rolled back with its transaction.
            self.stdout.write("Stopped.")
            raise SystemExit(INTERRUPTED_EXIT_STATUS) from None

    def _refresh_until_stopped(self, every: int | None) -> None:
        while True:
            outcomes = demo_stock_refresh()
            self._report(outcomes)
            if every is None:
                return
            time.sleep(every)

    def _report(self, outcomes: dict[str, int]) -> None:
        applied = outcomes.get(StockEventOutcome.APPLIED, 0)
        if not outcomes:
            raise CommandError(
                "No demo stock levels found at "
                f"{', '.join(code for code, *_ in DEMO_LOCATIONS)}; run seed_demo first."
            )
        others = ", ".join(
            f"{count} {outcome}"
            for outcome, count in sorted(outcomes.items())
            if outcome != StockEventOutcome.APPLIED
        )
        ttl = settings.OMSGUARD_STOCK_TTL_SECONDS
        self.stdout.write(
            f"{timezone.now():%H:%M:%S} Refreshed {applied} demo stock counts"
            f"{f' ({others} not applied)' if others else ''}; they are fresh for {ttl} s."
        )
