"""/metrics: Prometheus text with django-prometheus's request metrics and the KPI gauges.

Only a request with the bearer token OMSGUARD_METRICS_TOKEN, or one whose REMOTE_ADDR is in
OMSGUARD_METRICS_ALLOWED_NETWORKS, gets the metrics. Every other request gets the site's
ordinary 404, so the endpoint does not reveal that it exists. X-Forwarded-For is never read:
behind a proxy, REMOTE_ADDR is the proxy's address, so scrape with the token there. For the
same reason the networks are empty by default unless DEBUG is on (omsguard/settings.py).

One scrape runs METRICS_QUERY_COUNT queries, however many KPIs, rollup rows or review items
there are; KPI values come from the rollups, never from the raw tables.
"""

import hmac
import ipaddress
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

import prometheus_client
from django.conf import settings
from django.db.models import Count, Max, Min
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from guardrails.models import Breaker, BreakerScope, BreakerState
from reviews.models import ReviewItem, ReviewKind, ReviewStatus

from .kpis import COUNTERS, KPIS, Kind
from .models import Alert, AlertStatus, KpiRollup, Severity
from .networks import Network, networks_parse
from .selectors import RollupRow, hour_floor, kpi_compute, rollup_rows, rollup_table

# The label values of the `window` label: how far back each KPI value reaches.
WINDOWS: dict[str, timedelta] = {"1h": timedelta(hours=1), "24h": timedelta(hours=24)}
# Rollup rows, open review items, open alerts, breakers, latest rollup time.
METRICS_QUERY_COUNT = 5


def metrics_networks_parse(values: Iterable[str]) -> tuple[Network, ...]:
    """Parse OMSGUARD_METRICS_ALLOWED_NETWORKS; raise ImproperlyConfigured on a bad entry.

    A bare address counts as a one-address network. An entry with host bits set, such as
    10.1.2.3/8, is rejected rather than widened, because it is most likely a typo.
    """
    return networks_parse("OMSGUARD_METRICS_ALLOWED_NETWORKS", values)


def metrics_access_allowed(request: HttpRequest) -> bool:
    """Check whether the request carries the metrics token or comes from an allowed network."""
    return _has_metrics_token(request) or _from_allowed_network(request)


def _has_metrics_token(request: HttpRequest) -> bool:
    expected = settings.OMSGUARD_METRICS_TOKEN
    if not expected:
        return False
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), expected.encode())


def _from_allowed_network(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    # A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    networks = metrics_networks_parse(settings.OMSGUARD_METRICS_ALLOWED_NETWORKS)
    return any(address in network for network in networks)


class KpiCollector(Collector):
    """The OMS Guard gauges, computed fresh on every scrape in METRICS_QUERY_COUNT queries."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from kpi_metrics(now)
        yield from queue_metrics(now)
        yield from alert_metrics()
        yield from breaker_metrics()
        yield from rollup_freshness_metrics()


def kpi_metrics(now: datetime) -> list[Metric]:
    """Compute each KPI over the last hour and the last 24 hours from one query of rollup rows.

    Windows follow monitoring.selectors: whole hours, the current one included. A KPI
    without a value (nothing to divide by, no data) is left out rather than exported as 0.
    """
    values = GaugeMetricFamily(
        "omsguard_kpi",
        "KPI value over the window, in the unit omsguard_kpi_info gives.",
        labels=["kpi", "window"],
    )
    samples = GaugeMetricFamily(
        "omsguard_kpi_sample_size",
        "Events the KPI value rests on, e.g. the orders a rate divides by.",
        labels=["kpi", "window"],
    )
    shares = GaugeMetricFamily(
        "omsguard_kpi_share",
        "Share (0 to 1) of one dimension value in a mix KPI, e.g. one carrier's shipments.",
        labels=["kpi", "window", "key"],
    )

    widest = max(WINDOWS.values())
    rows = rollup_rows(set(COUNTERS), start=now - widest, end=now)
    for window, length in WINDOWS.items():
        table = rollup_table(_rows_since(rows, hour_floor(now - length)))
        for slug, kpi in KPIS.items():
            result = kpi_compute(slug, table)
            if result.value is None:
                continue
            values.add_metric([slug, window], float(result.value))
            samples.add_metric([slug, window], result.sample)
            if kpi.kind == Kind.MIX:
                for key, share in sorted((result.shares or {}).items()):
                    shares.add_metric([slug, window, key], float(share))
    return [_kpi_info(), values, samples, shares]


def _rows_since(rows: list[RollupRow], start: datetime) -> list[RollupRow]:
    return [row for row in rows if row[2] >= start]


def _kpi_info() -> Metric:
    info = GaugeMetricFamily(
        "omsguard_kpi_info",
        "Always 1; the labels name each KPI, its unit and which direction is better.",
        labels=["kpi", "name", "unit", "lower_is_better"],
    )
    for slug, kpi in KPIS.items():
        info.add_metric([slug, kpi.name, str(kpi.unit), str(kpi.lower_is_better).lower()], 1)
    return info


def queue_metrics(now: datetime) -> list[Metric]:
    """Count open review items and the oldest one's age per queue, live from the items."""
    size = GaugeMetricFamily(
        "omsguard_review_queue_open", "Open review items in the queue.", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "omsguard_review_queue_oldest_age_seconds",
        "Age of the queue's oldest open review item; 0 when the queue is empty.",
        labels=["queue"],
    )
    per_kind = {
        row["kind"]: row
        for row in ReviewItem.objects.filter(status=ReviewStatus.OPEN, known_answer__isnull=True)
        .values("kind")
        .annotate(open=Count("id"), oldest=Min("created_at"))
        .order_by()
    }
    for kind in ReviewKind.values:
        row = per_kind.get(kind)
        size.add_metric([kind], row["open"] if row else 0)
        age = (now - row["oldest"]).total_seconds() if row else 0.0
        oldest.add_metric([kind], max(age, 0.0))
    return [size, oldest]


def alert_metrics() -> list[Metric]:
    """Count open alerts per severity."""
    gauge = GaugeMetricFamily("omsguard_alerts_open", "Open alerts.", labels=["severity"])
    counts = dict(
        Alert.objects.filter(status=AlertStatus.OPEN)
        .values_list("severity")
        .annotate(Count("id"))
        .order_by()
    )
    for severity in Severity.values:
        gauge.add_metric([severity], counts.get(severity, 0))
    return [gauge]


def breaker_metrics() -> list[Metric]:
    """Count breakers per scope and state; state="open" counts those pausing autonomy now."""
    gauge = GaugeMetricFamily(
        "omsguard_breakers", "Circuit breakers in each state.", labels=["scope", "state"]
    )
    counts = {
        (scope, state): count
        for scope, state, count in Breaker.objects.values_list("scope", "state")
        .annotate(Count("id"))
        .order_by()
    }
    for scope in BreakerScope.values:
        for state in BreakerState.values:
            gauge.add_metric([scope, state], counts.get((scope, state), 0))
    return [gauge]


def rollup_freshness_metrics() -> list[Metric]:
    """Report when the KPI rollup job last wrote a row; nothing until it has written one."""
    latest = KpiRollup.objects.aggregate(latest=Max("computed_at"))["latest"]
    if latest is None:
        return []
    gauge = GaugeMetricFamily(
        "omsguard_kpi_rollup_last_computed_timestamp_seconds",
        "Unix time of the most recent KPI rollup write; a stale value means the job stopped.",
    )
    gauge.add_metric([], latest.timestamp())
    return [gauge]


# Registered once, at import. It is kept apart from prometheus_client's global registry so
# that nothing else that exports the global registry runs these database queries.
KPI_REGISTRY = CollectorRegistry(auto_describe=False)
KPI_REGISTRY.register(KpiCollector())


def _request_registry() -> CollectorRegistry:
    """django-prometheus's request metrics: this process's, or every worker's in multiprocess mode.

    Without PROMETHEUS_MULTIPROC_DIR each process counts on its own, so a scrape behind
    several gunicorn workers shows only the counters of the worker that responded.
    """
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return prometheus_client.REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


# Exempt so a POST gets the 405 below rather than a CSRF 403; the view never writes.
@csrf_exempt
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Serve the metrics in the Prometheus text format 0.0.4, or a 404 to everyone else."""
    if not metrics_access_allowed(request):
        raise Http404
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])

    # Two registries, one text body: the classic text format allows concatenating families
    # as long as their names differ (OpenMetrics would not, because of its # EOF line).
    body = prometheus_client.generate_latest(_request_registry())
    body += prometheus_client.generate_latest(KPI_REGISTRY)
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_PLAIN_0_0_4)
