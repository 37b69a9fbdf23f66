from django.core.management.base import BaseCommand, CommandParser

from guardrails.coverage import policy_coverage

SOURCE_LABELS = {"channel": "channel policy", "default": "all channels", "none": "NO POLICY"}


class Command(BaseCommand):
    help = (
        "List every active action and active channel with the policy that judges it: the "
        "channel's own, the policy for all channels, or none."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--missing-only",
            action="store_true",
            help="Only list the pairs without a policy of their own.",
        )

    def handle(self, *args, missing_only: bool = False, **options) -> None:
        rows = policy_coverage(missing_only=missing_only)
        table = [("ACTION", "CHANNEL", "JUDGED BY", "VERSION", "MODE")]
        for row in rows:
            table.append(
                (
                    row.action.code,
                    row.channel.code,
                    SOURCE_LABELS[row.source],
                    f"v{row.version.number}" if row.version else "-",
                    row.version.mode if row.version else "-",
                )
            )

        widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
        for line in table:
            self.stdout.write(
                "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            )
        explicit = sum(row.is_explicit for row in rows)
        self.stdout.write(f"{len(rows)} row(s), {explicit} with a channel policy.")
