"""Celery tasks of monitoring: the KPI rollup refresh and the alert rule evaluation.

Celery beat runs both; their schedules are rows in the admin under Periodic tasks.
"""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from .rollups import kpi_rollups_refresh

logger = logging.getLogger(__name__)


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
