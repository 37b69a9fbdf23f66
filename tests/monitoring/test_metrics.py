"""/metrics: access by token or network, the KPI and queue gauges, and a fixed query count."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from guardrails.models import Breaker
from monitoring.metrics import METRICS_QUERY_COUNT, rollup_freshness_metrics
from monitoring.models import Alert, Granularity, KpiRollup
from reviews.models import ReviewItem, ReviewStatus

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 5, 10, 30, tzinfo=UTC)
TOKEN = "scrape-token-0123456789"  # noqa: S105 - a test value
OUTSIDE = "203.0.113.9"  # TEST-NET-3, in no allowed network


@pytest.fixture(autouse=True)
def _frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    """Allow the test client's 127.0.0.1, the network path; production allows no network."""
    settings.OMSGUARD_METRICS_ALLOWED_NETWORKS = ["127.0.0.1/32"]


@pytest.fixture
def token(settings) -> str:
    settings.OMSGUARD_METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client, **extra) -> dict[tuple[str, tuple], float]:
    """GET /metrics; return {(sample name, sorted labels): value} as prometheus_client parses it."""
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content[:200]
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def kpi(samples: dict, slug: str, window: str) -> float | None:
    return samples.get(("omsguard_kpi", (("kpi", slug), ("window", window))))


def rollup(counter: str, hours_ago: int, count: int, *, channel="shop", dimension="", total=0):
    bucket = NOW.replace(minute=0) - timedelta(hours=hours_ago)
    return KpiRollup.objects.create(
        counter=counter,
        granularity=Granularity.HOUR,
        bucket_start=bucket,
        channel=channel,
        dimension=dimension,
        count=count,
        total=Decimal(total),
    )


def open_item(kind: str, age: timedelta) -> ReviewItem:
    item = ReviewItem.objects.create(kind=kind, reason="test", source_data={})
    ReviewItem.objects.filter(pk=item.pk).update(created_at=NOW - age)
    return item


def test_scrape_with_token_from_outside(client, token):
    samples = scrape(client, REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert samples[("omsguard_alerts_open", (("severity", "critical"),))] == 0


def test_scrape_from_allowed_network(client, settings):
    settings.OMSGUARD_METRICS_ALLOWED_NETWORKS = ["10.20.0.0/16"]

    samples = scrape(client, REMOTE_ADDR="10.20.3.4")

    assert ("omsguard_alerts_open", (("severity", "critical"),)) in samples


def test_scrape_from_ipv4_mapped_address(client, settings):
    settings.OMSGUARD_METRICS_ALLOWED_NETWORKS = ["10.20.0.0/16"]

    response = client.get("/metrics", REMOTE_ADDR="::ffff:10.20.3.4")

    assert response.status_code == 200


def test_outside_without_token_gets_404(client, token):
    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE)

    assert response.status_code == 404


def test_wrong_token_gets_404(client, token):
    response = client.get(
        "/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Bearer {token}-wrong"
    )

    assert response.status_code == 404


def test_token_needs_bearer_scheme(client, token):
    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 404


def test_empty_token_setting_accepts_no_token(client, settings):
    settings.OMSGUARD_METRICS_TOKEN = ""

    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer ")

    assert response.status_code == 404


def test_forwarded_for_is_ignored(client):
    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_X_FORWARDED_FOR="127.0.0.1")

    assert response.status_code == 404


def default_networks(debug: str) -> list[str]:
    """OMSGUARD_METRICS_ALLOWED_NETWORKS as a fresh process computes it with DEBUG=`debug`."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTEST_VERSION", "OMSGUARD_METRICS_ALLOWED_NETWORKS"}
    }
    environment |= {
        "DEBUG": debug,
        "SECRET_KEY": "x" * 50,
        "DJANGO_SETTINGS_MODULE": "omsguard.settings",
    }
    script = (
        "import json; from django.conf import settings; "
        "print(json.dumps(settings.OMSGUARD_METRICS_ALLOWED_NETWORKS))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=django_settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_no_network_allowed_by_default_in_production():
    assert default_networks("0") == []


def test_loopback_allowed_by_default_under_debug():
    assert default_networks("1") == ["127.0.0.1/32", "::1/128"]


def test_proxy_on_same_host_needs_token(client, settings, token):
    # A reverse proxy on the same host: every client arrives from 127.0.0.1.
    settings.OMSGUARD_METRICS_ALLOWED_NETWORKS = []

    without_token = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    with_token = client.get(
        "/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}"
    )

    assert without_token.status_code == 404
    assert with_token.status_code == 200


def test_post_from_allowed_network_not_allowed(client):
    response = client.post("/metrics")

    assert response.status_code == 405


def test_post_with_csrf_checks_on_is_still_405():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/metrics")

    assert response.status_code == 405


def test_post_from_outside_gets_404(client):
    response = client.post("/metrics", REMOTE_ADDR=OUTSIDE)

    assert response.status_code == 404


def test_bad_network_setting_raises_at_ready(settings):
    settings.OMSGUARD_METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8", "10.1.2.3/8"]

    with pytest.raises(ImproperlyConfigured, match=r"contains '10\.1\.2\.3/8'"):
        apps.get_app_config("monitoring").ready()


def test_bad_network_setting_stops_manage_py():
    environment = {
        **os.environ,
        "DEBUG": "1",
        "OMSGUARD_METRICS_ALLOWED_NETWORKS": "127.0.0.1/32,not-a-network",
    }
    environment.pop("PYTEST_VERSION", None)

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=django_settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "OMSGUARD_METRICS_ALLOWED_NETWORKS contains 'not-a-network'" in result.stderr


def test_kpi_gauges_carry_rollup_values(client):
    # The current hour (10:00) and the previous one make the 1h window; 5 hours ago is only
    # in the 24h window, and 30 hours ago in neither.
    rollup("orders_received", 0, 150)
    rollup("orders_received", 1, 50)
    rollup("order_errors", 0, 3)
    rollup("orders_received", 5, 400)
    rollup("order_errors", 5, 10)
    rollup("orders_received", 30, 1000)
    rollup("order_errors", 30, 500)
    rollup("shipments", 0, 30, dimension="ups")
    rollup("shipments", 0, 10, dimension="fedex")
    rollup("duplicate_shipments", 5, 2)

    samples = scrape(client)

    assert kpi(samples, "order_error_rate", "1h") == 150.0  # 3 / 200 * 10,000
    assert kpi(samples, "order_error_rate", "24h") == pytest.approx(13 / 600 * 10_000)
    sample_size = ("omsguard_kpi_sample_size", (("kpi", "order_error_rate"), ("window", "1h")))
    assert samples[sample_size] == 200
    assert kpi(samples, "duplicate_shipment_rate", "1h") == 0.0
    assert kpi(samples, "duplicate_shipment_rate", "24h") == pytest.approx(2 / 600 * 1000)
    share = ("omsguard_kpi_share", (("key", "ups"), ("kpi", "carrier_mix"), ("window", "24h")))
    assert samples[share] == 0.75
    # Nothing to divide by: no value rather than a misleading 0.
    assert kpi(samples, "disagreement_rate", "1h") is None


def test_kpi_info_names_units(client):
    samples = scrape(client)

    info = [labels for name, labels in samples if name == "omsguard_kpi_info"]
    assert (
        ("kpi", "order_error_rate"),
        ("lower_is_better", "true"),
        ("name", "Order processing error rate"),
        ("unit", "per 10,000 orders"),
    ) in info


def test_queue_gauges_count_open_items(client):
    open_item("address", timedelta(minutes=45))
    open_item("address", timedelta(minutes=5))
    open_item("unmapped_sku", timedelta(hours=3))
    decided = open_item("address", timedelta(days=2))
    ReviewItem.objects.filter(pk=decided.pk).update(status=ReviewStatus.ACCEPTED)

    samples = scrape(client)

    assert samples[("omsguard_review_queue_open", (("queue", "address"),))] == 2
    assert samples[("omsguard_review_queue_open", (("queue", "unmapped_sku"),))] == 1
    assert samples[("omsguard_review_queue_open", (("queue", "substitution"),))] == 0
    oldest = "omsguard_review_queue_oldest_age_seconds"
    assert samples[(oldest, (("queue", "address"),))] == 45 * 60
    assert samples[(oldest, (("queue", "unmapped_sku"),))] == 3 * 3600
    assert samples[(oldest, (("queue", "substitution"),))] == 0


def test_queue_gauges_leave_out_known_answer_items(client):
    """Known-answer items test reviewers; they are not work waiting in the queue."""
    from reviews.models import KnownAnswer

    open_item("address", timedelta(minutes=5))
    case = KnownAnswer.objects.create(
        kind="address", reason="test", source_data={}, expected="reject", explanation="test"
    )
    check = open_item("address", timedelta(hours=6))
    ReviewItem.objects.filter(pk=check.pk).update(known_answer=case)

    samples = scrape(client)

    assert samples[("omsguard_review_queue_open", (("queue", "address"),))] == 1
    oldest = "omsguard_review_queue_oldest_age_seconds"
    assert samples[(oldest, (("queue", "address"),))] == 5 * 60


def test_alert_and_breaker_gauges(client):
    for index, severity in enumerate(["critical", "critical", "informational"]):
        Alert.objects.create(
            severity=severity,
            source="test",
            dedup_key=f"test:{index}",
            title="Test",
            owner_group="ops_manager",
            runbook="1. Open the breaker.",
        )
    Alert.objects.create(
        severity="actionable",
        source="test",
        dedup_key="test:resolved",
        title="Test",
        owner_group="ops_manager",
        runbook="1. Open the breaker.",
        status="resolved",
    )
    Breaker.objects.create(scope="action", key="select_carrier", state="open")
    Breaker.objects.create(scope="channel", key="shop", state="half_open")
    Breaker.objects.create(scope="model", key="m", state="closed")

    samples = scrape(client)

    assert samples[("omsguard_alerts_open", (("severity", "critical"),))] == 2
    assert samples[("omsguard_alerts_open", (("severity", "actionable"),))] == 0
    assert samples[("omsguard_alerts_open", (("severity", "informational"),))] == 1
    assert samples[("omsguard_breakers", (("scope", "action"), ("state", "open")))] == 1
    assert samples[("omsguard_breakers", (("scope", "channel"), ("state", "half_open")))] == 1
    assert samples[("omsguard_breakers", (("scope", "channel"), ("state", "open")))] == 0


def test_rollup_freshness_gauge(client):
    name = ("omsguard_kpi_rollup_last_computed_timestamp_seconds", ())
    assert name not in scrape(client)

    rollup("orders_received", 0, 1)

    assert scrape(client)[name] == NOW.timestamp()


def query_plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.postgres
def test_freshness_query_reads_computed_at_index():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's query planner")
    KpiRollup.objects.bulk_create(
        KpiRollup(
            counter="orders_received",
            granularity=Granularity.HOUR,
            bucket_start=NOW - timedelta(hours=hours_ago),
            channel=channel,
            count=1,
        )
        for hours_ago in range(1000)
        for channel in ["shop", "woo", "pos"]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE monitoring_kpirollup")

    with CaptureQueriesContext(connection) as queries:
        rollup_freshness_metrics()

    (query,) = queries.captured_queries
    plan = query_plan(query["sql"])
    assert "Index Only Scan Backward using kpi_rollup_computed" in plan, plan


def test_request_metrics_from_django_prometheus(client):
    client.get("/healthz")

    samples = scrape(client)

    assert any(name.startswith("django_http_requests_total") for name, _ in samples)


def _scrape_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/metrics").status_code == 200
    return len(queries)


def test_scrape_query_count_constant(client):
    rollup("orders_received", 0, 10, channel="pos")
    open_item("address", timedelta(minutes=1))
    small = _scrape_queries(client)

    channels = ["shop", "woo", "amazon", "ebay"]
    for hours_ago in range(24):
        for channel in channels:
            rollup("orders_received", hours_ago, 100, channel=channel)
            rollup("order_errors", hours_ago, 2, channel=channel)
            for carrier in ["ups", "fedex", "usps"]:
                rollup("shipments", hours_ago, 30, channel=channel, dimension=carrier)
    for kind in ["address", "unmapped_sku", "substitution", "routing"]:
        for minutes in range(5):
            open_item(kind, timedelta(minutes=minutes))
    Breaker.objects.create(scope="action", key="select_carrier", state="open")
    large = _scrape_queries(client)

    assert small == METRICS_QUERY_COUNT
    assert large == METRICS_QUERY_COUNT
