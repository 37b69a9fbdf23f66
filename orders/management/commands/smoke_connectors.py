import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders.smoke import SmokeChannelError, SmokeResult, connector_smoke_run, smoke_channels_list

# Exit codes: 0 every check passed, 1 a check failed, 2 the --channel argument is unusable.
EXIT_CHECK_FAILED = 1
EXIT_BAD_CHANNEL = 2
COLUMNS = ("CHANNEL", "CHECK", "RESULT", "MS", "DETAILS")


def smoke_report_lines(results: list[SmokeResult]) -> list[str]:
    """Format the results as a table for a terminal, one row per check, then a summary."""
    rows = [(r.channel, r.check, r.result, str(r.duration_ms), r.detail) for r in results]
    # Every column but the last (the details) is padded to its widest cell.
    widths = [max(len(row[i]) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS) - 1)]
    lines = []
    for row in [COLUMNS, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]))
    lines.append(smoke_summary(results))
    return lines


def smoke_summary(results: list[SmokeResult]) -> str:
    """Summarise the run in one line: checks passed and failed over how many channels."""
    channels = len({result.channel for result in results})
    failed = sum(not result.passed for result in results)
    return (
        f"{len(results) - failed} passed, {failed} failed: {len(results)} checks on "
        f"{channels} channel{'' if channels == 1 else 's'}. Nothing was kept: every channel's "
        "checks ran in a transaction that was rolled back."
    )


class Command(BaseCommand):
    help = (
        "Smoke-test channel connectors: per channel, send a synthetic order through the real "
        "webhook or API path (signed with the channel's secret), send it again (it must not "
        "duplicate), and post a stock delta with its replay (applied once). Everything runs "
        "in a transaction that is rolled back. Exit code 0 when all checks pass, 1 when one "
        "fails, 2 for an unknown or inactive --channel."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--channel",
            metavar="CODE",
            help="Test only the channel with this code (default: every active channel).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            dest="as_json",
            help="Print the results as one JSON object instead of a table.",
        )

    def handle(self, *args, channel: str | None, as_json: bool, **options) -> None:
        try:
            channels = smoke_channels_list(code=channel)
        except SmokeChannelError as error:
            raise CommandError(str(error), returncode=EXIT_BAD_CHANNEL) from None
        if not channels:
            self.stdout.write("No active channels: nothing to test.")
            return

        results = [result for item in channels for result in connector_smoke_run(channel=item)]
        failed = sum(not result.passed for result in results)
        if as_json:
            report = {
                "results": [result.as_dict() for result in results],
                "passed": len(results) - failed,
                "failed": failed,
            }
            self.stdout.write(json.dumps(report, indent=2))
        else:
            for line in smoke_report_lines(results):
                self.stdout.write(line)

        if failed:
            raise CommandError(
                f"{failed} of {len(results)} connector smoke checks failed; the FAIL rows say why.",
                returncode=EXIT_CHECK_FAILED,
            )
