"""Celery tasks of monitoring: the KPI rollup refreshes and the alert rule evaluation.

Celery beat runs them; their schedules are rows in the admin under Periodic tasks.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from .rollups import kpi_rollups_refresh

logger = logging.getLogger(__name__)

# How far back the daily refresh recomputes by default: the 30 days the dashboard and the
# 90-day goals read, plus 5 days for returns and chargebacks that are reported late.
LATE_FACTS_DAYS = 35


@shared_task(autoretry_for=(OperationalError,), max_retries=3, retry_backoff=True)
def kpi_rollups_refresh_recent() -> int:
    """Recompute the last OMSGUARD_KPI_REFRESH_HOURS hours of KPI rollups; beat runs it.

    Returns the number of rollup rows written.
    """
    now = timezone.now()
    hours = settings.OMSGUARD_KPI_REFRESH_HOURS
    rows = kpi_rollups_refresh(since=now - timedelta(hours=hours), until=now, now=now)
    logger.info("kpi rollup task finished", extra={"hours": hours, "rows": rows})
    return rows


@shared_task(autoretry_for=(OperationalError,), max_retries=3, retry_backoff=True)
def kpi_rollups_refresh_days(days: int = LATE_FACTS_DAYS) -> int:
    """Recompute the last `days` days of KPI rollups; beat runs it once a day.

    The 5-minute refresh reaches back only OMSGUARD_KPI_REFRESH_HOURS. This run counts the
    facts that arrive or change later than that, such as a chargeback dated three weeks
    back or a shipment that failed delivery a week after it shipped. Returns the number of
    rollup rows written.
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(
            f"days must be a whole number of 1 or more, got {days!r}; fix the task's keyword "
            'arguments in the admin, for example {"days": 35}.'
        )
    now = timezone.now()
    rows = kpi_rollups_refresh(since=now - timedelta(days=days), until=now, now=now)
    logger.info("kpi rollup task finished", extra={"days": days, "rows": rows})
    return rows


@shared_task
def alert_rules_evaluate() -> dict[str, int]:
    """Evaluate every enabled alert rule against the rollups; beat runs it every minute.

    Returns the counts of the run: rules evaluated, alerts opened and resolved, rules failed.
    """
    # Imported here so that a worker still starts when the alerting module fails to import.
    # Only this task fails then, with the error in its log.
    from .alerting import alert_rules_evaluate as evaluate

    summary = evaluate()
    counts = {
        "rules": summary.rules,
        "opened": len(summary.opened),
        "resolved": len(summary.resolved),
        "failed": len(summary.failed_rules),
    }
    logger.info("alert rule task finished", extra=counts)
    return counts
