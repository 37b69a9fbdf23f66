"""The monitoring commands: rollup_kpis limits and progress, evaluate_alerts, and the alerts
seed_demo raises from its history."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from monitoring.models import Alert, AlertRule, AlertStatus, KpiRollup
from monitoring.rollups import kpi_rollups_refresh
from tests.monitoring.test_alert_rules import HOUR_9, make_rule, rollup
from tests.monitoring.test_alert_rules import NOW as RULES_NOW
from tests.monitoring.test_kpi_arithmetic import make_channel, order_at

pytestmark = pytest.mark.django_db

# Evaluations and refreshes run as at this time, so "now" and "the future" are fixed.
NOW = datetime(2026, 12, 5, 10, 30, tzinfo=UTC)


def run(*arguments: str) -> str:
    out = StringIO()
    call_command(*arguments, stdout=out)
    return out.getvalue()


def stored_rows() -> list[tuple]:
    return sorted(
        KpiRollup.objects.values_list(
            "counter", "granularity", "bucket_start", "channel", "dimension", "count", "total"
        )
    )


# --- rollup_kpis ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--days", "401"], "must be at most 400, not 401"),
        (["--days", "100000"], "must be at most 400, not 100000"),
        (["--since", "0001-01-01"], r"is before 2000-01-01, the earliest start"),
        (["--since", "1999-12-31T23:59:59Z"], r"is before 2000-01-01, the earliest start"),
        (["--since", "2026-12-06"], r"--since \(2026-12-06T00:00:00\+00:00\) is after now"),
        (
            ["--since", "2025-10-31T10:29:00Z"],
            "is longer than 400 days; split it into several runs",
        ),
        (
            ["--since", "2024-01-01", "--until", "2025-06-01"],
            "is longer than 400 days; split it into several runs",
        ),
    ],
)
def test_rollup_kpis_rejects_out_of_range(arguments, message):
    with time_machine.travel(NOW, tick=False), pytest.raises(CommandError, match=message):
        run("rollup_kpis", *arguments)

    assert not KpiRollup.objects.exists()


def test_rollup_kpis_accepts_400_days_back():
    # 400 days of nothing to count: quick, and the limit itself is allowed.
    with time_machine.travel(NOW, tick=False):
        output = run("rollup_kpis", "--since", "2025-10-31T10:30:00Z")

    assert output.splitlines()[-1].startswith("Wrote ")


def test_rollup_kpis_prints_each_step():
    channel = make_channel("shop")
    for days_back in (1, 12, 24):
        order_at(channel, NOW - timedelta(days=days_back))

    with time_machine.travel(NOW, tick=False):
        output = run("rollup_kpis", "--days", "25")

    lines = output.splitlines()
    # 25 days from 2026-11-10 10:30 end at midnight UTC of 11-20 and 11-30, then at now.
    assert [line.split(":")[0] for line in lines[:3]] == [
        "Step 1 of 3",
        "Step 2 of 3",
        "Step 3 of 3",
    ]
    assert "refreshed up to 2026-11-20T00:00:00+00:00" in lines[0]
    assert "refreshed up to 2026-11-30T00:00:00+00:00" in lines[1]
    assert "refreshed up to 2026-12-05T10:30:00+00:00" in lines[2]
    rows = int(lines[2].split(", ")[1].split()[0])
    assert lines[3].startswith(f"Wrote {rows} rollup rows for 2026-11-10T10:30:00+00:00 to ")
    assert len(lines) == 4


def test_rollup_kpis_steps_match_one_refresh():
    channel = make_channel("shop")
    for days_back in (1, 9, 10, 11, 24):
        order_at(channel, NOW - timedelta(days=days_back, hours=3))
    with time_machine.travel(NOW, tick=False):
        run("rollup_kpis", "--days", "25")
    stepped = stored_rows()

    KpiRollup.objects.all().delete()
    kpi_rollups_refresh(since=NOW - timedelta(days=25), until=NOW, now=NOW)

    assert stepped == stored_rows()
    assert sum(row[5] for row in stepped if row[:2] == ("orders_received", "day")) == 5


def test_rollup_kpis_short_period_prints_total_only():
    with time_machine.travel(NOW, tick=False):
        output = run("rollup_kpis", "--days", "2")

    assert len(output.splitlines()) == 1
    assert output.startswith("Wrote ")


# --- evaluate_alerts -----------------------------------------------------------------------


@pytest.fixture
def only_test_rules(db) -> None:
    AlertRule.objects.update(is_enabled=False)


def test_evaluate_alerts_opens_and_prints(only_test_rules):
    make_rule()
    rollup("orders_received", HOUR_9, 100, channel="shop")
    rollup("order_errors", HOUR_9, 3, channel="shop")

    output = run("evaluate_alerts", "--at", RULES_NOW.isoformat())

    alert = Alert.objects.get()
    assert alert.status == AlertStatus.OPEN
    assert output.splitlines() == [
        "Evaluated 1 alert rules at 2026-03-10T10:05:00+00:00. Scopes judged: 1 (0 with too "
        "little data). Alerts opened: 1, raised again: 0, resolved: 0. Rules failed: 0.",
        f"  opened #{alert.pk} [actionable] Order processing error rate: 300 per 10,000 "
        "orders, above 100 per 10,000 orders",
    ]


def test_evaluate_alerts_resolves_when_quiet(only_test_rules):
    make_rule()
    rollup("orders_received", HOUR_9, 100)
    rollup("order_errors", HOUR_9, 3)
    run("evaluate_alerts", "--at", RULES_NOW.isoformat())
    rollup("orders_received", HOUR_9 + timedelta(hours=3), 100)

    output = run("evaluate_alerts", "--at", (RULES_NOW + timedelta(hours=3)).isoformat())

    assert "Alerts opened: 0, raised again: 0, resolved: 1." in output
    assert Alert.objects.get().status == AlertStatus.RESOLVED


def test_evaluate_alerts_failed_rule_errors(only_test_rules):
    broken = make_rule(name="Broken", kpi="no_such_kpi")
    out = StringIO()

    with pytest.raises(CommandError, match=f"Alert rules {broken.pk} failed to evaluate"):
        call_command("evaluate_alerts", "--at", RULES_NOW.isoformat(), stdout=out)

    assert "Rules failed: 1." in out.getvalue()


def test_evaluate_alerts_rejects_future(only_test_rules):
    with time_machine.travel(NOW, tick=False), pytest.raises(CommandError, match="in the future"):
        run("evaluate_alerts", "--at", "2026-12-05T11:00:00Z")


def test_evaluate_alerts_rejects_bad_time():
    with pytest.raises(CommandError, match="invalid date or time"):
        run("evaluate_alerts", "--at", "yesterday")


# --- seed_demo -----------------------------------------------------------------------------


def test_seed_demo_opens_carrier_mix_alert(settings):
    settings.DEBUG = True

    with time_machine.travel(NOW):
        output = run("seed_demo")

    carrier_mix = Alert.objects.get(rule__kpi="carrier_mix")
    assert carrier_mix.status == AlertStatus.OPEN
    assert f"  opened #{carrier_mix.pk} [actionable] Carrier mix: " in output
    assert "Alerts opened: 1," in output
    # The evaluation follows the history's rollups.
    assert output.index("KPI rollups: ") < output.index("Evaluated ")
