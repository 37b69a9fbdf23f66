"""Which database a read goes to: the primary, or the read replica for reporting reads."""

from django.conf import settings

REPLICA = "replica"


def reporting_database() -> str:
    """The database alias for dashboard and KPI reads: the replica when one is configured.

    A replica lags the primary by the replication delay (usually under a second), so only
    reads that tolerate slightly old data use it: dashboards, KPI charts, exports. A page that
    shows what the user has just changed reads the primary.
    """
    return REPLICA if REPLICA in settings.DATABASES else "default"
