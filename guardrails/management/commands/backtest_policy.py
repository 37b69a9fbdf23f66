import argparse
import json

from django.core.management.base import BaseCommand, CommandError, CommandParser

from guardrails.backtest import MAX_DAYS, backtest_run, fired_summary
from guardrails.models import PolicyVersion

USAGE_ERROR = 2


def example_count(value: str) -> int:
    """Parse --examples: a whole number, 0 or more."""
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of examples: {value!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {count}")
    return count


def day_count(value: str) -> int:
    """Parse --days: a whole number of days from 1 to MAX_DAYS."""
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of days: {value!r}") from None
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_DAYS}, not {days}")
    return days


class Command(BaseCommand):
    help = (
        "Replay the recorded decisions of the last N days under a policy version (usually a "
        "draft) and report how many verdicts would change, by action, channel and value band."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        # --version names the policy version here, so it replaces Django's own --version.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--version", type=int, required=True, dest="version_id", help="Policy version id."
        )
        parser.add_argument(
            "--days",
            type=day_count,
            default=30,
            help=f"How many days of decisions to replay, 1 to {MAX_DAYS} (default 30).",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the report as JSON."
        )
        parser.add_argument(
            "--examples",
            type=example_count,
            default=5,
            help="Examples kept per verdict change, 0 or more (default 5).",
        )

    def handle(
        self, *args, version_id: int, days: int, as_json: bool, examples: int, **options
    ) -> None:
        version = PolicyVersion.objects.filter(pk=version_id).first()
        if version is None:
            raise CommandError(
                f"Policy version {version_id} not found; list the versions in the admin under "
                "Guardrails > Policy versions.",
                returncode=USAGE_ERROR,
            )

        run = backtest_run(version=version, days=days, example_limit=examples)

        if as_json:
            self.stdout.write(json.dumps({"backtest_run": run.pk} | run.report, indent=2))
        else:
            self.stdout.write("\n".join(report_lines(run.pk, run.report)))


def report_lines(run_id: int, report: dict) -> list[str]:
    """Render a backtest report as plain-text tables."""
    lines = [
        f"Backtest {run_id} of {report['version']['label']} over the last {report['days']} days",
        f"  decisions replayed  {report['decisions_replayed']}",
        f"  verdicts changed    {report['verdicts_changed']}",
    ]
    for title, key in (("action", "by_action"), ("channel", "by_channel"), ("band", "by_band")):
        lines += ["", f"{'by ' + title:<32} {'replayed':>9} {'changed':>9}"]
        for name, counts in report[key].items():
            lines.append(f"  {name:<30} {counts['replayed']:>9} {counts['changed']:>9}")

    lines += ["", f"{'verdict changes':<50} {'count':>9}"]
    if not report["by_transition"]:
        lines.append("  none")
    for transition, item in report["by_transition"].items():
        lines.append(f"  {transition:<48} {item['count']:>9}")
        for example in item["examples"]:
            fired = fired_summary(example["fired"]) or "no rule failed"
            lines.append(
                f"    decision {example['decision']} (order {example['order']}, "
                f"{example['channel']}): {fired}"
            )
    return lines
