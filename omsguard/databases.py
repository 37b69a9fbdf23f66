"""Database routing for reads: the primary, or the read replica for reporting reads."""

from django.conf import settings

REPLICA = "replica"


def reporting_database() -> str:
    """Return the database alias for dashboard and KPI reads: the replica when configured.

    A replica lags the primary by its replication delay, so only reads that tolerate slightly
    old data use it: the KPI dashboard, its drill-down lists and the KPI rollups behind
    /metrics. A page that shows what the user has just changed reads the primary.
    """
    return REPLICA if REPLICA in settings.DATABASES else "default"
