from datetime import datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from monitoring.alerting import EvaluationSummary, alert_rules_evaluate
from monitoring.management.commands.rollup_kpis import moment
from monitoring.models import Alert


def evaluation_report(summary: EvaluationSummary) -> list[str]:
    """Describe an evaluation run in lines for a terminal: the counts, then each alert opened."""
    lines = [
        f"Evaluated {summary.rules} alert rules at {summary.evaluated_at.isoformat()}. "
        f"Scopes judged: {summary.scopes} ({summary.too_little_data} with too little data). "
        f"Alerts opened: {len(summary.opened)}, raised again: {len(summary.raised_again)}, "
        f"resolved: {len(summary.resolved)}. Rules failed: {len(summary.failed_rules)}."
    ]
    opened = Alert.objects.filter(pk__in=summary.opened).order_by("pk")
    for alert in opened:
        lines.append(f"  opened #{alert.pk} [{alert.severity}] {alert.title}")
    return lines


class Command(BaseCommand):
    help = (
        "Evaluate every enabled alert rule once against the KPI rollups, as Celery beat does "
        "every minute, and print what opened and resolved. Run rollup_kpis first when the "
        "rollups may be stale."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--at",
            type=moment,
            help="Evaluate as at this time, ISO 8601, e.g. 2025-03-01T12:00:00Z (default: now).",
        )

    def handle(self, *args, at: datetime | None, **options) -> None:
        now = timezone.now()
        if at is not None and at > now:
            # The windows of a future time hold no data yet, so open alerts would resolve.
            raise CommandError(f"--at ({at.isoformat()}) is in the future.")

        summary = alert_rules_evaluate(now=at or now)
        for line in evaluation_report(summary):
            self.stdout.write(line)
        if summary.failed_rules:
            ids = ", ".join(str(pk) for pk in summary.failed_rules)
            raise CommandError(
                f"Alert rules {ids} failed to evaluate; each error is in the log. Fix the rule "
                "in the admin under Alert rules."
            )
