"""The KPI dashboard: card values from KpiRollup rows, targets, trends, 90-day goals, filters,
permissions and a query count that does not grow with the data."""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.models import Channel, ChannelKind
from monitoring.dashboard import GROUPS, GoalStatus, Trend, baseline_read
from monitoring.kpis import COUNTERS, KPIS, histogram_empty
from monitoring.models import Granularity, KpiRollup, MonitoringSettings
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

# 31 March 2025, 12:30 UTC. The 30-day period runs from 2 March 00:00 to now (the 12:00 hour
# counted whole), the period of the same length before it from 31 January 11:00 to 2 March,
# and the last 30 days of the goals are the same days.
NOW = datetime(2025, 3, 31, 12, 30, tzinfo=UTC)
TODAY = NOW.date()
URL = "/dashboard/"


@pytest.fixture(autouse=True)
def frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def channels(db) -> list[Channel]:
    return [
        Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop", name="Web shop"),
        Channel.objects.create(kind=ChannelKind.AMAZON, code="market", name="Marketplace"),
    ]


def dashboard_user(username: str = "lena"):
    user = make_user(username, None)
    user.user_permissions.add(Permission.objects.get(codename="view_dashboard"))
    return user


@pytest.fixture
def viewer_client(client, channels):
    client.force_login(dashboard_user())
    return client


def rollup(
    counter: str,
    day: date,
    count: int,
    *,
    channel: str = "shop",
    dimension: str = "",
    total: str = "0",
    hour: int | None = None,
) -> KpiRollup:
    """A day row, or an hour row of `day` when `hour` is given (today is read from hours)."""
    if not COUNTERS[counter].per_channel:
        channel = ""
    start = datetime(day.year, day.month, day.day, hour or 0, tzinfo=UTC)
    return KpiRollup.objects.create(
        counter=counter,
        granularity=Granularity.HOUR if hour is not None else Granularity.DAY,
        bucket_start=start,
        channel=channel,
        dimension=dimension,
        count=count,
        total=Decimal(total),
    )


def card_html(response, slug: str) -> str:
    html = response.content.decode()
    match = re.search(
        rf'<article class="card kpi-card" data-kpi="{slug}">(.*?)</article>', html, re.S
    )
    assert match, f"no card for {slug}"
    return match.group(1)


def goal_html(response, slug: str) -> str:
    html = response.content.decode()
    match = re.search(rf'<tr class="goal goal-(\w+)" data-kpi="{slug}">(.*?)</tr>', html, re.S)
    assert match, f"no goal row for {slug}"
    return match.group(1) + " " + match.group(2)


def cards(response) -> dict:
    return {
        card.kpi.slug: card
        for group in response.context["dashboard"].groups
        for card in group.cards
    }


def order_rows() -> None:
    """Orders and errors: 30 errors per 10,000 orders now, 100 in the previous 30 days."""
    rollup("orders_received", date(2025, 3, 2), 400)
    rollup("orders_received", date(2025, 3, 15), 600)
    rollup("order_errors", date(2025, 3, 15), 3)
    rollup("orders_received", TODAY, 1000, hour=10)
    rollup("orders_received", date(2025, 2, 10), 500)
    rollup("order_errors", date(2025, 2, 10), 5)
    # Outside both periods: never counted.
    rollup("order_errors", date(2025, 1, 20), 50)


# --- Card values ---------------------------------------------------------------------------


def test_card_value_from_rollups(viewer_client):
    order_rows()

    response = viewer_client.get(URL)

    assert response.status_code == 200
    card = cards(response)["order_error_rate"]
    # 3 errors over 400 + 600 + 1,000 orders (today's from its hour row), per 10,000.
    assert card.current.value == Decimal("15")
    assert card.previous.value == Decimal("100")
    assert "15.0 per 10,000 orders" in card_html(response, "order_error_rate")


def test_card_series_per_day(viewer_client):
    order_rows()

    series = cards(viewer_client.get(URL))["order_error_rate"].series

    assert len(series) == 30
    assert series[0] == (date(2025, 3, 2), Decimal("0"))
    assert series[13] == (date(2025, 3, 15), Decimal("50"))  # 3 per 600 orders
    assert series[1] == (date(2025, 3, 3), None)  # no orders that day: a gap
    assert series[-1] == (TODAY, Decimal("0"))


def test_card_chart_drawn_from_series(viewer_client):
    order_rows()

    html = card_html(viewer_client.get(URL), "order_error_rate")

    assert 'role="img"' in html
    assert "<title>2025-03-15: 50.0 per 10,000 orders</title>" in html
    assert html.count('class="chart-point"') == 3


def test_trend_down_is_better_for_error_rate(viewer_client):
    order_rows()

    response = viewer_client.get(URL)

    card = cards(response)["order_error_rate"]
    assert card.trend == Trend.DOWN
    assert card.trend_is_better is True
    assert "trend trend-down better" in card_html(response, "order_error_rate")


def test_trend_up_is_worse_for_error_rate(viewer_client):
    rollup("shipments", date(2025, 3, 10), 1000, dimension="ups")
    rollup("fulfilment_exceptions", date(2025, 3, 10), 3, dimension="pick")
    rollup("shipments", date(2025, 2, 10), 1000, dimension="ups")
    rollup("fulfilment_exceptions", date(2025, 2, 10), 1, dimension="pick")

    response = viewer_client.get(URL)

    card = cards(response)["fulfilment_error_rate"]
    assert (card.current.value, card.previous.value) == (Decimal("0.3"), Decimal("0.1"))
    assert card.trend == Trend.UP
    assert card.trend_is_better is False
    assert "trend trend-up worse" in card_html(response, "fulfilment_error_rate")


def test_trend_up_is_better_for_acceptance_rate(viewer_client):
    rollup("substitutions_resolved", date(2025, 3, 10), 10)
    rollup("substitutions_accepted", date(2025, 3, 10), 9)
    rollup("substitutions_resolved", date(2025, 2, 10), 10)
    rollup("substitutions_accepted", date(2025, 2, 10), 5)

    card = cards(viewer_client.get(URL))["substitution_acceptance_rate"]

    assert card.current.value == Decimal("90")
    assert card.trend == Trend.UP
    assert card.trend_is_better is True


def steady_exceptions(first: date, last_hour: datetime) -> None:
    """One fulfilment exception every hour from `first` 00:00 up to `last_hour`.

    Whole days get their day row as well, as the rollup refresh writes them.
    """
    rows = []
    moment = datetime(first.year, first.month, first.day, tzinfo=UTC)
    while moment <= last_hour:
        rows.append(
            KpiRollup(
                counter="fulfilment_exceptions",
                granularity=Granularity.HOUR,
                bucket_start=moment,
                channel="shop",
                dimension="pick",
                count=1,
            )
        )
        if moment.hour == 0 and moment + timedelta(hours=23) <= last_hour:
            rows.append(
                KpiRollup(
                    counter="fulfilment_exceptions",
                    granularity=Granularity.DAY,
                    bucket_start=moment,
                    channel="shop",
                    dimension="pick",
                    count=24,
                )
            )
        moment += timedelta(hours=1)
    KpiRollup.objects.bulk_create(rows)


def test_steady_count_trend_is_flat(viewer_client):
    steady_exceptions(date(2025, 3, 10), NOW.replace(minute=0))

    card = cards(viewer_client.get(URL, {"days": "7"}))["fulfilment_exceptions"]

    # 25 March 00:00 to the 12:00 hour on 31 March: 6 days and 13 hours, the same length
    # before it from 18 March 11:00.
    assert card.current.value == Decimal(6 * 24 + 13)
    assert card.previous.value == Decimal(6 * 24 + 13)
    assert card.trend == Trend.FLAT


def test_previous_period_ends_where_current_starts(viewer_client):
    rollup("fulfilment_exceptions", date(2025, 3, 18), 7, dimension="pick", hour=10)
    rollup("fulfilment_exceptions", date(2025, 3, 18), 3, dimension="pick", hour=11)
    rollup("fulfilment_exceptions", date(2025, 3, 18), 10, dimension="pick")  # their day row
    rollup("fulfilment_exceptions", date(2025, 3, 24), 5, dimension="pick")
    rollup("fulfilment_exceptions", date(2025, 3, 25), 2, dimension="pick")

    card = cards(viewer_client.get(URL, {"days": "7"}))["fulfilment_exceptions"]

    # 18 March 11:00 to 25 March 00:00: the 11:00 hour and 24 March, not 10:00.
    assert card.previous.value == Decimal("8")
    assert card.current.value == Decimal("2")


def test_no_trend_without_previous_value(viewer_client):
    rollup("shipments", date(2025, 3, 10), 1000, dimension="ups")

    response = viewer_client.get(URL)

    assert cards(response)["fulfilment_error_rate"].trend is None
    assert "trend-" not in card_html(response, "fulfilment_error_rate")


def test_mean_in_seconds_formatted(viewer_client):
    rollup("ai_errors_detected", date(2025, 3, 10), 2, dimension="substitute_sku", total="480")

    response = viewer_client.get(URL)

    assert cards(response)["ai_error_mttd"].current.value == Decimal("240")
    assert "4 min" in card_html(response, "ai_error_mttd")


def test_queue_snapshot_is_the_latest(viewer_client):
    rollup("queue_open", date(2025, 3, 29), 9, dimension="address", total="60")
    rollup("queue_open", TODAY, 2, dimension="address", total="600", hour=9)
    rollup("queue_open", TODAY, 3, dimension="substitution", total="5400", hour=9)

    response = viewer_client.get(URL)

    by_slug = cards(response)
    assert by_slug["queue_size"].current.value == 5
    assert by_slug["queue_oldest_age"].current.value == Decimal("5400")
    assert "1.5 h" in card_html(response, "queue_oldest_age")


def test_carrier_mix_follows_largest_carrier(viewer_client):
    rollup("shipments", date(2025, 3, 10), 30, dimension="ups")
    rollup("shipments", date(2025, 3, 10), 10, dimension="dhl")
    rollup("shipments", date(2025, 3, 11), 5, dimension="dhl")

    response = viewer_client.get(URL)

    card = cards(response)["carrier_mix"]
    assert card.series_key == "ups"
    assert card.current.value == Decimal(30) / 45
    series = dict(card.series)
    assert series[date(2025, 3, 10)] == Decimal("0.75")
    assert series[date(2025, 3, 11)] == Decimal("0")  # shipments, none by UPS
    assert series[date(2025, 3, 12)] is None  # no shipments at all
    assert card.shares == [("ups", "66.7 %"), ("dhl", "33.3 %")]


def test_carrier_mix_trend_is_neither_better_nor_worse(viewer_client):
    rollup("shipments", date(2025, 3, 10), 30, dimension="ups")
    rollup("shipments", date(2025, 2, 10), 10, dimension="ups")
    rollup("shipments", date(2025, 2, 10), 10, dimension="dhl")

    card = cards(viewer_client.get(URL))["carrier_mix"]

    assert card.trend == Trend.UP
    assert card.trend_is_better is None


def test_every_kpi_has_a_card_in_a_group(viewer_client):
    response = viewer_client.get(URL)

    groups = response.context["dashboard"].groups
    assert [group.slug for group in groups] == [slug for slug, _title, _kpis in GROUPS]
    assert sorted(cards(response)) == sorted(KPIS)
    html = response.content.decode()
    for slug in KPIS:
        assert f'href="/dashboard/kpi/{slug}/?days=30"' in html


def test_empty_dashboard_says_no_data(viewer_client):
    response = viewer_client.get(URL)

    assert response.status_code == 200
    assert "no data" in card_html(response, "order_error_rate")
    assert "There are no KPI rollups yet." in response.content.decode()


# --- Targets -------------------------------------------------------------------------------


def test_fixed_target_met_and_not_met(viewer_client):
    rollup("shipments", date(2025, 3, 10), 1000, dimension="ups")
    rollup("fulfilment_exceptions", date(2025, 3, 10), 3, dimension="pick")
    rollup("reviewed_decisions", date(2025, 3, 10), 100, dimension="substitute_sku")
    rollup("disagreements", date(2025, 3, 10), 1, dimension="substitute_sku")

    response = viewer_client.get(URL)

    by_slug = cards(response)
    assert by_slug["fulfilment_error_rate"].target == Decimal("0.2")
    assert by_slug["fulfilment_error_rate"].meets_target is False
    assert "Not met" in card_html(response, "fulfilment_error_rate")
    assert by_slug["disagreement_rate"].current.value == Decimal("1")
    assert by_slug["disagreement_rate"].meets_target is True
    assert "Met" in card_html(response, "disagreement_rate")


def test_fixed_target_must_be_beaten(viewer_client):
    rollup("reviewed_decisions", date(2025, 3, 10), 50, dimension="substitute_sku")
    rollup("disagreements", date(2025, 3, 10), 1, dimension="substitute_sku")

    card = cards(viewer_client.get(URL))["disagreement_rate"]

    assert card.current.value == Decimal("2")  # "under 2 %": exactly 2 is not under
    assert card.meets_target is False


def test_target_line_on_the_chart(viewer_client):
    rollup("shipments", date(2025, 3, 10), 1000, dimension="ups")

    html = card_html(viewer_client.get(URL), "fulfilment_error_rate")

    assert 'class="chart-target"' in html
    assert "<title>Target: 0.20 %</title>" in html


def test_baseline_target_on_card(viewer_client):
    MonitoringSettings.objects.create(
        baseline_start=date(2025, 1, 1), baseline_end=date(2025, 1, 30)
    )
    baseline_rows()
    recent_rows()

    response = viewer_client.get(URL)

    card = cards(response)["manual_cleanups_rate"]
    # 40 % of the baseline's 50 per 1,000 orders.
    assert card.target == Decimal("20")
    assert card.meets_target is True
    assert "60–80 % below the baseline: 20.0 per 1,000 orders" in card_html(
        response, "manual_cleanups_rate"
    )


# --- 90-day goals ----------------------------------------------------------------------------


def baseline_rows(start: date = date(2025, 1, 10)) -> None:
    """Baseline: 50 clean-ups per 1,000 orders, 0.5 % fulfilment errors, 2 % returns."""
    rollup("orders_received", start, 2000)
    rollup("review_decided", start, 100, dimension="address")
    rollup("shipments", start, 1000, dimension="ups")
    rollup("fulfilment_exceptions", start, 5, dimension="pick")
    rollup("returns", start, 20, dimension="fulfilment")
    rollup("returns", start, 80, dimension="customer")


def recent_rows() -> None:
    """Last 30 days: 15 clean-ups per 1,000 orders, 0.3 % fulfilment errors, 1.2 % returns."""
    rollup("orders_received", date(2025, 3, 5), 1000)
    rollup("orders_received", TODAY, 1000, hour=11)
    rollup("review_decided", date(2025, 3, 5), 30, dimension="address")
    rollup("shipments", date(2025, 3, 5), 1000, dimension="ups")
    rollup("fulfilment_exceptions", date(2025, 3, 5), 3, dimension="pack")
    rollup("returns", date(2025, 3, 5), 12, dimension="fulfilment")


def goals(response) -> dict:
    return {goal.kpi.slug: goal for goal in response.context["dashboard"].goals}


def test_goals_against_configured_baseline(viewer_client):
    MonitoringSettings.objects.create(
        baseline_start=date(2025, 1, 1), baseline_end=date(2025, 1, 30)
    )
    baseline_rows()
    recent_rows()

    response = viewer_client.get(URL)

    by_slug = goals(response)
    assert sorted(by_slug) == [
        "fulfilment_error_rate",
        "fulfilment_return_rate",
        "manual_cleanups_rate",
    ]
    cleanups = by_slug["manual_cleanups_rate"]
    assert (cleanups.baseline.value, cleanups.recent.value) == (Decimal("50"), Decimal("15"))
    assert cleanups.change_percent == Decimal("-70")
    assert cleanups.status == GoalStatus.MET
    errors = by_slug["fulfilment_error_rate"]
    assert (errors.baseline.value, errors.recent.value) == (Decimal("0.5"), Decimal("0.3"))
    assert errors.status == GoalStatus.NOT_MET
    returns = by_slug["fulfilment_return_rate"]
    assert (returns.baseline.value, returns.recent.value) == (Decimal("2"), Decimal("1.2"))
    assert returns.target == Decimal("1")
    assert returns.status == GoalStatus.NOT_MET


def test_goal_rows_rendered(viewer_client):
    MonitoringSettings.objects.create(
        baseline_start=date(2025, 1, 1), baseline_end=date(2025, 1, 30)
    )
    baseline_rows()
    recent_rows()

    response = viewer_client.get(URL)

    cleanups = goal_html(response, "manual_cleanups_rate")
    assert cleanups.startswith("met ")
    assert "50.0 per 1,000 orders" in cleanups
    assert "15.0 per 1,000 orders" in cleanups
    assert "-70 %" in cleanups
    assert "60–80 % below the baseline" in cleanups
    errors = goal_html(response, "fulfilment_error_rate")
    assert errors.startswith("not_met ")
    assert "Not met" in errors
    assert "under 0.2 %" in errors
    assert "Baseline 1 Jan 2025 to 30 Jan 2025 (set in Monitoring settings)" in (
        response.content.decode()
    )


def test_goal_met_when_halved(viewer_client):
    MonitoringSettings.objects.create(
        baseline_start=date(2025, 1, 1), baseline_end=date(2025, 1, 30)
    )
    baseline_rows()
    rollup("shipments", date(2025, 3, 5), 1000, dimension="ups")
    rollup("returns", date(2025, 3, 5), 10, dimension="fulfilment")

    goal = goals(viewer_client.get(URL))["fulfilment_return_rate"]

    assert goal.recent.value == Decimal("1")  # exactly half the baseline's 2 %
    assert goal.status == GoalStatus.MET


def test_default_baseline_is_first_30_days_with_rows(viewer_client):
    baseline_rows(start=date(2025, 1, 10))
    recent_rows()

    response = viewer_client.get(URL)

    baseline = response.context["dashboard"].baseline
    assert (baseline.start, baseline.end) == (date(2025, 1, 10), date(2025, 2, 8))
    assert baseline.is_configured is False
    assert goals(response)["manual_cleanups_rate"].status == GoalStatus.MET
    assert "the first 30 days with data" in response.content.decode()


def test_default_baseline_excludes_later_rows(viewer_client):
    baseline_rows(start=date(2025, 1, 10))
    # 9 February is the 31st day: not part of the baseline.
    rollup("review_decided", date(2025, 2, 9), 1000, dimension="address")
    recent_rows()

    goal = goals(viewer_client.get(URL))["manual_cleanups_rate"]

    assert goal.baseline.value == Decimal("50")


def test_goals_need_baseline_before_recent_days(viewer_client):
    # Data since 15 February: the first 30 days overlap the last 30.
    baseline_rows(start=date(2025, 2, 15))
    recent_rows()

    response = viewer_client.get(URL)

    for goal in goals(response).values():
        assert goal.status == GoalStatus.NO_DATA
        assert "overlap the baseline period" in goal.reason
    assert "Not enough data" in goal_html(response, "manual_cleanups_rate")


def test_goals_without_any_rollups(viewer_client):
    response = viewer_client.get(URL)

    for goal in goals(response).values():
        assert goal.status == GoalStatus.NO_DATA
        assert goal.reason == "There are no KPI rollups yet."


def test_goal_without_baseline_data_for_kpi(viewer_client):
    MonitoringSettings.objects.create(
        baseline_start=date(2025, 1, 1), baseline_end=date(2025, 1, 30)
    )
    rollup("orders_received", date(2025, 1, 10), 2000)  # no shipments in the baseline
    recent_rows()

    goal = goals(viewer_client.get(URL))["fulfilment_error_rate"]

    assert goal.status == GoalStatus.NO_DATA
    assert goal.reason == "The baseline period has no data for this KPI."


def test_baseline_still_running_is_not_used(viewer_client):
    MonitoringSettings.objects.create(baseline_start=date(2025, 3, 1), baseline_end=TODAY)
    recent_rows()

    response = viewer_client.get(URL)

    assert goals(response)["manual_cleanups_rate"].status == GoalStatus.NO_DATA
    assert cards(response)["manual_cleanups_rate"].target is None
    assert "goals are judged after it ends" in response.content.decode()


def test_inverted_baseline_period_explained(viewer_client):
    MonitoringSettings.objects.create(
        baseline_start=date(2025, 1, 30), baseline_end=date(2025, 1, 1)
    )

    response = viewer_client.get(URL)

    assert response.status_code == 200
    assert "ends (2025-01-01) before it starts (2025-01-30)" in response.content.decode()


# --- Period and channel --------------------------------------------------------------------


def test_period_switch_to_7_days(viewer_client):
    order_rows()

    response = viewer_client.get(URL, {"days": "7"})

    card = cards(response)["order_error_rate"]
    assert response.context["days"] == 7
    assert len(card.series) == 7
    assert card.series[0][0] == date(2025, 3, 25)
    # Only today's 1,000 orders and no errors; nothing in the 7 days before.
    assert card.current.value == Decimal("0")
    assert card.previous.value is None
    assert 'href="?days=7" aria-current="page"' in response.content.decode()


def test_period_switch_to_90_days(viewer_client):
    order_rows()

    card = cards(viewer_client.get(URL, {"days": "90"}))["order_error_rate"]

    assert len(card.series) == 90
    # 1 January to today: 58 errors (20 January included) over 2,500 orders.
    assert card.current.value == Decimal("232")
    assert card.previous.value is None


def test_channel_switch(viewer_client):
    order_rows()
    rollup("orders_received", date(2025, 3, 15), 1000, channel="market")
    rollup("order_errors", date(2025, 3, 15), 10, channel="market")

    all_channels = cards(viewer_client.get(URL))["order_error_rate"].current.value
    market = viewer_client.get(URL, {"channel": "market"})
    shop = cards(viewer_client.get(URL, {"channel": "shop"}))["order_error_rate"].current.value

    assert all_channels == Decimal(13 * 10000) / 3000
    assert cards(market)["order_error_rate"].current.value == Decimal("100")
    assert shop == Decimal("15")
    assert '<option value="market" selected>' in market.content.decode()


def test_channel_switch_keeps_counters_kept_for_all_channels(viewer_client):
    rollup("stock_counts", date(2025, 3, 10), 200)
    rollup("stock_discrepancies", date(2025, 3, 10), 5)

    response = viewer_client.get(URL, {"channel": "market"})

    card = cards(response)["inventory_discrepancy_rate"]
    assert card.current.value == Decimal("2.5")
    assert card.all_channels is True
    assert "not kept per channel" in card_html(response, "inventory_discrepancy_rate")


def test_htmx_request_gets_cards_area_only(viewer_client):
    response = viewer_client.get(
        URL, {"days": "7"}, headers={"HX-Request": "true", "HX-Target": "dashboard-body"}
    )

    html = response.content.decode()
    assert html.startswith('<div id="dashboard-body"')
    assert "<html" not in html


@pytest.mark.parametrize(
    ("params", "notice"),
    [
        ({"days": "abc"}, "Invalid period &#x27;abc&#x27;"),
        ({"days": "8"}, "Invalid period &#x27;8&#x27;"),
        ({"days": "-7"}, "Invalid period &#x27;-7&#x27;"),
        ({"days": "٣"}, "Invalid period"),
        ({"days": "9" * 40}, "Invalid period"),
        ({"channel": "nope"}, "There is no channel &#x27;nope&#x27;"),
        ({"channel": "<b>x</b>"}, "There is no channel &#x27;&lt;b&gt;x&lt;/b&gt;&#x27;"),
    ],
)
def test_bad_parameters_fall_back_to_defaults(viewer_client, params, notice):
    response = viewer_client.get(URL, params)

    assert response.status_code == 200
    assert response.context["days"] == 30
    assert response.context["channel"] is None
    assert notice in response.content.decode()


# --- Access ----------------------------------------------------------------------------------


def test_agent_gets_403(client, agent):
    client.force_login(agent)

    response = client.get(URL)

    assert response.status_code == 403
    assert "may not view the KPI dashboard" in response.content.decode()


def test_anonymous_goes_to_login(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={URL}"


def test_nav_links_follow_permissions(client, channels, agent):
    client.force_login(agent)
    agent_html = client.get(reverse("reviews:queue")).content.decode()
    leader = dashboard_user("dana")
    leader.user_permissions.add(Permission.objects.get(codename="view_alert"))
    client.force_login(leader)
    leader_html = client.get(URL).content.decode()

    assert '">Review queue</a>' in agent_html
    assert '">Dashboard</a>' not in agent_html
    assert f'href="{reverse("dashboard:index")}">Dashboard</a>' in leader_html
    assert f'href="{reverse("alerts:list")}">Alerts</a>' in leader_html
    assert '">Review queue</a>' not in leader_html  # it would only answer 403


def test_only_get(viewer_client):
    assert viewer_client.post(URL).status_code == 405


# --- Query count -----------------------------------------------------------------------------


@pytest.mark.postgres
def test_first_rollup_query_reads_bucket_index(viewer_client):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's query planner")
    KpiRollup.objects.bulk_create(rows_for(30, ["shop", "market"]))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE monitoring_kpirollup")

    with CaptureQueriesContext(connection) as queries:
        baseline = baseline_read(counters=set(), channel=None, now=NOW)

    assert baseline.start == TODAY - timedelta(days=30)
    (first,) = [query["sql"] for query in queries.captured_queries if "MIN(" in query["sql"]]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + first)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Only Scan using kpi_rollup_bucket" in plan, plan


def rows_for(days: int, channel_codes: list[str]) -> list[KpiRollup]:
    """Day rows of every counter on each of the `days` days before today, per channel."""
    rows = []
    for offset in range(1, days + 1):
        start = datetime.combine(TODAY - timedelta(days=offset), datetime.min.time(), UTC)
        for slug, counter in COUNTERS.items():
            codes = channel_codes if counter.per_channel else [""]
            dimensions = ["a", "b"] if counter.dimension else [""]
            for code in codes:
                for dimension in dimensions:
                    histogram = histogram_empty() if counter.has_histogram else []
                    if histogram:
                        histogram[offset % len(histogram)] = 3
                    rows.append(
                        KpiRollup(
                            counter=slug,
                            granularity=Granularity.DAY,
                            bucket_start=start,
                            channel=code,
                            dimension=dimension,
                            count=offset + 1,
                            total=Decimal(offset * 60),
                            histogram=histogram,
                        )
                    )
    return rows


def count_queries(client, params: dict) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, params)
    assert response.status_code == 200
    return len(queries.captured_queries)


@pytest.mark.parametrize("params", [{"days": "90"}, {"days": "90", "channel": "shop"}])
def test_query_count_flat(viewer_client, params):
    for code in ["c3", "c4"]:
        Channel.objects.create(kind=ChannelKind.SHOPIFY, code=code)
    MonitoringSettings.objects.create(
        baseline_start=date(2025, 1, 1), baseline_end=date(2025, 1, 30)
    )
    KpiRollup.objects.bulk_create(rows_for(3, ["shop"]))
    few = count_queries(viewer_client, params)

    KpiRollup.objects.all().delete()
    KpiRollup.objects.bulk_create(rows_for(90, ["shop", "market", "c3", "c4"]))
    many = count_queries(viewer_client, params)

    assert many == few
    assert KpiRollup.objects.count() > 10_000


def test_query_count_same_for_every_period(viewer_client):
    KpiRollup.objects.bulk_create(rows_for(90, ["shop", "market"]))

    counts = {days: count_queries(viewer_client, {"days": str(days)}) for days in (7, 30, 90)}

    assert len(set(counts.values())) == 1, counts
