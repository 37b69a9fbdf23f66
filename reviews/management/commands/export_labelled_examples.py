"""Write the labelled examples as JSONL, for retraining or prompt revision."""

import os
from collections.abc import Iterator
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reviews.export import ExportError, day_range, labelled_examples_jsonl

USAGE_ERROR = 2


class Command(BaseCommand):
    help = (
        "Write one JSON line per error label on an AI decision: the input the AI saw, its "
        "proposal, the human decision and the label. The input contains order data such as "
        "addresses: store and share the file as personal data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since", help="First day of labels to include, YYYY-MM-DD (UTC, inclusive)."
        )
        parser.add_argument(
            "--until", help="Last day of labels to include, YYYY-MM-DD (UTC, inclusive)."
        )
        parser.add_argument("--action", help="Only this action type code, e.g. substitute_sku.")
        parser.add_argument("--output", type=Path, help="File to write; default: standard output.")

    def handle(
        self,
        *args,
        since: str | None,
        until: str | None,
        action: str | None,
        output: Path | None,
        **options,
    ) -> None:
        try:
            start, end = day_range(since, until, since_field="--since", until_field="--until")
            lines = labelled_examples_jsonl(since=start, until=end, action_code=action)
        except ExportError as error:
            raise CommandError(f"{error.field}: {error.message}", returncode=USAGE_ERROR) from None

        if output is None:
            for line in lines:
                self.stdout.write(line, ending="")
            return
        count = self._write_file(lines, output)
        self.stderr.write(f"Wrote {count} labelled examples to {output}.")

    def _write_file(self, lines: Iterator[str], output: Path) -> int:
        # Written beside the target and renamed at the end, so a failed export never leaves a
        # truncated file under the requested name.
        partial = output.with_name(output.name + ".partial")
        try:
            count = 0
            with partial.open("w", encoding="utf-8") as stream:
                for line in lines:
                    stream.write(line)
                    count += 1
            os.replace(partial, output)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise CommandError(f"Could not write {output}: {error}") from None
        return count
