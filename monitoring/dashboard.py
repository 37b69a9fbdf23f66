"""Selectors of the KPI dashboard: each KPI over a period with its target, trend and daily
series, one KPI split by channel and by dimension, and the 90-day goals against the baseline.

Every figure comes from the rollups. A page reads the rows of all the counters it needs for
the period and the period before it at once, splits them per day in Python and computes
each KPI from those sums with `kpi_compute`. So the number of queries does not grow with
the days, KPIs, channels or rows. The database sums the rows of all channels first
(`rollup_rows_summed`), except those of the histogram and gauge counters, so Python
receives about one row per counter, dimension value and day.

A period of N days is N whole UTC days ending with today so far: on 31 March at 12:30, the
7-day period runs from 25 March 00:00 to 31 March 12:30. The trend compares it with the
previous period of the same length, 18 March 11:00 to 25 March 00:00, so a count does not
look better in the morning only because today has just begun.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from django.db.models import Min
from django.utils import timezone
from django.utils.safestring import SafeString

from omsguard.databases import reporting_database

from .charts import line_chart_svg, value_format
from .kpis import COUNTERS, KPIS, Kind, Kpi
from .models import KpiRollup, MonitoringSettings
from .selectors import (
    KpiValue,
    RollupRow,
    RollupTable,
    hour_ceil,
    kpi_compute,
    kpi_counters,
    period_filter,
    rollup_rows_summed,
    rollup_table,
)

PERIOD_DAYS = (7, 30, 90)
DEFAULT_PERIOD_DAYS = 30
# The goals compare the last 30 days with the baseline period.
GOAL_RECENT_DAYS = 30
# Without dates in MonitoringSettings, the baseline is the first 30 days that have rollups.
BASELINE_DEFAULT_DAYS = 30
DAY = timedelta(days=1)

# The dashboard's card groups, in page order. A KPI missing here shows under "Other KPIs".
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "orders",
        "Orders and fulfilment",
        (
            "order_error_rate",
            "fulfilment_exceptions",
            "fulfilment_error_rate",
            "fulfilment_return_rate",
            "duplicate_shipment_rate",
            "inventory_discrepancy_rate",
            "decision_latency_p50",
            "decision_latency_p95",
            "carrier_mix",
        ),
    ),
    ("ai", "AI decisions", ("disagreement_rate", "ai_error_mttd", "ai_error_mttr")),
    (
        "queues",
        "Review queues",
        (
            "queue_size",
            "queue_oldest_age",
            "time_to_approve_p50",
            "time_to_approve_p95",
            "manual_cleanups_rate",
        ),
    ),
    (
        "playbooks",
        "Playbooks",
        (
            "substitution_acceptance_rate",
            "substitution_return_rate",
            "address_shipping_error_rate",
        ),
    ),
    ("marketplace", "Marketplace signals", ("cancellation_rate", "chargeback_rate")),
)


@dataclass(frozen=True)
class Period:
    """`days` whole UTC days ending now: [start, end), where `end` is the current time."""

    days: int
    start: datetime
    end: datetime

    @property
    def dates(self) -> list[date]:
        first = self.start.date()
        return [first + index * DAY for index in range(self.days)]

    def previous(self) -> "Period":
        """Return the period of the same length that ends where this one starts.

        The length counts the current hour as a whole hour, because rollups are kept per
        hour: at 12:30 a 7-day period and its previous period both span 6 days and 13 hours.
        """
        length = hour_ceil(self.end) - self.start
        return Period(days=self.days, start=self.start - length, end=self.start)


def period_ending_now(days: int, *, now: datetime | None = None) -> Period:
    """Return the period of `days` UTC days whose last day is today."""
    now = now or timezone.now()
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Period(days=days, start=today - (days - 1) * DAY, end=now)


class Trend(StrEnum):
    UP = "up"
    DOWN = "down"
    FLAT = "flat"


@dataclass(frozen=True)
class KpiCard:
    """One KPI over a period: value, target, the previous period's value and a daily series.

    `all_channels` is true when a channel was chosen but the KPI's counters are kept for all
    channels together (stock counts, queue snapshots), so the card shows every channel.
    For a carrier mix, `value` is the largest share and the series follows that carrier.
    """

    kpi: Kpi
    current: KpiValue
    previous: KpiValue
    target: Decimal | None
    meets_target: bool | None
    series: list[tuple[date, Decimal | None]]
    all_channels: bool = False
    series_key: str = ""

    @property
    def trend(self) -> Trend | None:
        now, before = self.current.value, self.previous.value
        if now is None or before is None:
            return None
        if now > before:
            return Trend.UP
        return Trend.DOWN if now < before else Trend.FLAT

    @property
    def trend_is_better(self) -> bool | None:
        """Whether the value improved on the previous period; None when flat or unknown.

        A mix has no better direction: a carrier's share going up is neither good nor bad.
        """
        if self.trend in (None, Trend.FLAT) or self.kpi.kind == Kind.MIX:
            return None
        return (self.trend == Trend.DOWN) == self.kpi.lower_is_better

    @property
    def value_display(self) -> str:
        return value_format(self.current.value, self.kpi.unit)

    @property
    def previous_display(self) -> str:
        return value_format(self.previous.value, self.kpi.unit)

    @property
    def target_display(self) -> str:
        return value_format(self.target, self.kpi.unit) if self.target is not None else ""

    @property
    def shares(self) -> list[tuple[str, str]]:
        """A mix's shares, largest first, formatted: [("ups", "52.0 %"), ...]."""
        shares = self.current.shares or {}
        ordered = sorted(shares.items(), key=lambda item: (-item[1], item[0]))
        return [(key, value_format(share, self.kpi.unit)) for key, share in ordered]

    def chart(self, *, width: int = 320, height: int = 110) -> SafeString:
        label = self.kpi.name + (f", share of {self.series_key}" if self.series_key else "")
        return line_chart_svg(
            self.series,
            target=self.target,
            unit=self.kpi.unit,
            width=width,
            height=height,
            label=label,
        )

    @property
    def chart_svg(self) -> SafeString:
        return self.chart()

    @property
    def chart_wide_svg(self) -> SafeString:
        return self.chart(width=560, height=200)


@dataclass(frozen=True)
class CardGroup:
    slug: str
    title: str
    cards: list[KpiCard]


class GoalStatus(StrEnum):
    MET = "met"
    NOT_MET = "not_met"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class Baseline:
    """The period the 90-day goals are measured against, with the sums of its rollups.

    `start` and `end` are inclusive UTC dates, None before any rollup exists. `problem`
    explains why the baseline cannot be used yet, and is empty when it can.
    """

    start: date | None
    end: date | None
    is_configured: bool
    table: RollupTable
    problem: str = ""

    @property
    def usable(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class Goal:
    """A 90-day goal: the baseline's value, the last 30 days' value and whether it is met."""

    kpi: Kpi
    baseline: KpiValue | None
    recent: KpiValue
    target: Decimal | None
    status: GoalStatus
    reason: str = ""  # why there is not enough data

    @property
    def change_percent(self) -> Decimal | None:
        """The change from the baseline to the last 30 days, in percent of the baseline."""
        if self.baseline is None or not self.baseline.value or self.recent.value is None:
            return None
        return (self.recent.value - self.baseline.value) / self.baseline.value * 100

    @property
    def baseline_display(self) -> str:
        value = self.baseline.value if self.baseline else None
        return value_format(value, self.kpi.unit)

    @property
    def recent_display(self) -> str:
        return value_format(self.recent.value, self.kpi.unit)

    @property
    def change_display(self) -> str:
        change = self.change_percent
        return "" if change is None else f"{change:+.0f} %"


@dataclass(frozen=True)
class Dashboard:
    period: Period
    channel: str | None
    groups: list[CardGroup]
    goals: list[Goal]
    baseline: Baseline
    recent: Period


@dataclass(frozen=True)
class Breakdown:
    """One KPI for the drill-down page: its card, and its value per channel and dimension.

    `by_channel` is None when the KPI's counters are kept for all channels together.
    """

    period: Period
    card: KpiCard
    by_channel: list[tuple[str, KpiValue]] | None
    by_dimension: list[tuple[str, KpiValue]]


@dataclass(frozen=True)
class _Tables:
    """Summed rollups of a period, of the period before it, and of each day of the period."""

    current: RollupTable
    previous: RollupTable
    days: dict[date, RollupTable]


# --- The dashboard page -------------------------------------------------------------------


def dashboard_read(*, days: int, channel: str | None, now: datetime | None = None) -> Dashboard:
    """Build every card and goal of the dashboard for a period and, if given, one channel."""
    now = now or timezone.now()
    period = period_ending_now(days, now=now)
    counters = _counters_of(KPIS.values())
    rows = rollup_rows_read(
        counters, start=period.previous().start, end=period.end, channel=channel
    )
    tables = _tables_split(rows, period)

    baseline = baseline_read(counters=_baseline_counters(), channel=channel, now=now)
    recent = period_ending_now(GOAL_RECENT_DAYS, now=now)
    goal_kpis = [kpi for kpi in KPIS.values() if kpi.is_ninety_day_goal]
    recent_rows = rollup_rows_read(
        _counters_of(goal_kpis), start=recent.start, end=recent.end, channel=channel
    )
    recent_table = rollup_table(recent_rows)

    cards = {kpi.slug: _card_build(kpi, tables, baseline, channel=channel) for kpi in KPIS.values()}
    goals = [goal_evaluate(kpi, baseline, recent_table, recent) for kpi in goal_kpis]
    return Dashboard(
        period=period,
        channel=channel,
        groups=_groups(cards),
        goals=goals,
        baseline=baseline,
        recent=recent,
    )


def rollup_rows_read(
    counters: set[str], *, start: datetime, end: datetime, channel: str | None
) -> list[RollupRow]:
    """Read all rollup rows of the counters over [start, end), ordered by bucket_start.

    Counters kept for all channels together (stock counts, queue snapshots) have no rows
    per channel, so with a channel given they are read for all channels in a second query.
    """
    if not counters:
        return []
    if channel is None:
        return rollup_rows_summed(counters, start=start, end=end)

    per_channel = {counter for counter in counters if COUNTERS[counter].per_channel}
    rows: list[RollupRow] = []
    if per_channel:
        rows += rollup_rows_summed(per_channel, start=start, end=end, channel=channel)
    if counters - per_channel:
        rows += rollup_rows_summed(counters - per_channel, start=start, end=end)
    # rollup_table keeps the latest gauge snapshot, so it needs the rows in bucket order.
    rows.sort(key=lambda row: row[2])
    return rows


def kpi_is_per_channel(kpi: Kpi) -> bool:
    """Return True when every counter the KPI reads is kept per channel."""
    return all(COUNTERS[counter].per_channel for counter in kpi_counters(kpi.slug))


def kpi_target(kpi: Kpi, baseline: Baseline) -> Decimal | None:
    """Return the KPI's target value: fixed, or its baseline value times the target's factor."""
    if kpi.target is None:
        return None
    if kpi.target.value is not None:
        return kpi.target.value
    if kpi.target.baseline_factor is None or not baseline.usable:
        return None
    base = kpi_compute(kpi.slug, baseline.table).value
    return None if base is None else base * kpi.target.baseline_factor


def target_met(kpi: Kpi, value: Decimal | None, target: Decimal | None) -> bool | None:
    """Return whether the value meets the target, or None without a value or a target.

    A fixed target ("under 0.2 %") must be beaten. A baseline target ("half the baseline")
    is met once it is reached.
    """
    if value is None or target is None or kpi.target is None:
        return None
    must_beat = kpi.target.value is not None
    if kpi.lower_is_better:
        return value < target if must_beat else value <= target
    return value > target if must_beat else value >= target


def kpi_formula(kpi: Kpi) -> str:
    """Describe in one line how the KPI is computed from its counters."""
    numerator = kpi.numerator + (f" ({kpi.numerator_dimension})" if kpi.numerator_dimension else "")
    if kpi.kind == Kind.RATIO:
        return f"{numerator} ÷ {kpi.denominator} × {kpi.scale:,}, each summed over the period"
    if kpi.kind == Kind.COUNT:
        return f"{numerator} summed over the period"
    if kpi.kind == Kind.MEAN:
        return f"Seconds summed over {numerator} ÷ the number of {numerator}"
    if kpi.kind == Kind.PERCENTILE:
        share = (kpi.percentile or Decimal("0.5")) * 100
        return (
            f"{share:.0f}th percentile of {numerator}, from hourly histograms, interpolated "
            "inside the bucket that holds it"
        )
    if kpi.kind == Kind.GAUGE_SUM:
        return f"Open items in the period's latest {numerator} snapshot, all queues together"
    if kpi.kind == Kind.GAUGE_MAX:
        return f"Age of the oldest item in the period's latest {numerator} snapshot"
    return f"Each {kpi.dimension_label}'s share of {numerator}; the card shows the largest"


def _card_build(kpi: Kpi, tables: _Tables, baseline: Baseline, *, channel: str | None) -> KpiCard:
    current = kpi_compute(kpi.slug, tables.current)
    previous = kpi_compute(kpi.slug, tables.previous)
    target = kpi_target(kpi, baseline)

    series_key = ""
    if kpi.kind == Kind.MIX:
        # A mix has no single daily value, so the chart follows the period's largest share.
        shares = current.shares or {}
        series_key = max(shares, key=lambda key: (shares[key], key)) if shares else ""
        series = []
        for day, table in tables.days.items():
            day_shares = kpi_compute(kpi.slug, table).shares
            # A day with shipments but none by this carrier is 0 %; a day without any, a gap.
            share = day_shares.get(series_key, Decimal("0")) if day_shares else None
            series.append((day, share))
    else:
        series = [(day, kpi_compute(kpi.slug, table).value) for day, table in tables.days.items()]

    return KpiCard(
        kpi=kpi,
        current=current,
        previous=previous,
        target=target,
        meets_target=target_met(kpi, current.value, target),
        series=series,
        all_channels=channel is not None and not kpi_is_per_channel(kpi),
        series_key=series_key,
    )


def _tables_split(rows: list[RollupRow], period: Period) -> _Tables:
    """Sum the rows of the period, of the period before it, and of each day of the period."""
    current: list[RollupRow] = []
    previous: list[RollupRow] = []
    by_day: dict[date, list[RollupRow]] = defaultdict(list)
    for row in rows:
        if row[2] < period.start:
            previous.append(row)
            continue
        current.append(row)
        by_day[_utc_date(row[2])].append(row)

    return _Tables(
        current=rollup_table(current),
        previous=rollup_table(previous),
        days={day: rollup_table(by_day.get(day, [])) for day in period.dates},
    )


def _groups(cards: dict[str, KpiCard]) -> list[CardGroup]:
    groups = []
    placed: set[str] = set()
    for slug, title, kpi_slugs in GROUPS:
        present = [cards[kpi_slug] for kpi_slug in kpi_slugs if kpi_slug in cards]
        placed.update(kpi_slugs)
        groups.append(CardGroup(slug=slug, title=title, cards=present))
    others = [card for slug, card in cards.items() if slug not in placed]
    if others:
        groups.append(CardGroup(slug="other", title="Other KPIs", cards=others))
    return groups


def _counters_of(kpis: Iterable[Kpi]) -> set[str]:
    counters: set[str] = set()
    for kpi in kpis:
        counters |= kpi_counters(kpi.slug)
    return counters


def _utc_date(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


# --- Baseline and the 90-day goals ------------------------------------------------------------


def baseline_read(*, counters: set[str], channel: str | None, now: datetime) -> Baseline:
    """Read the baseline period (the admin's dates, else the first 30 days with rollups).

    The baseline can be used once it has ended before today, so a goal never compares a
    period with itself while data is still arriving.
    """
    start, end, is_configured = _baseline_dates()
    today = _utc_date(now)
    problem = ""
    if start is None or end is None:
        problem = "There are no KPI rollups yet."
    elif end < start:
        problem = (
            f"The baseline period ends ({end}) before it starts ({start}); "
            "correct it in the admin under Monitoring settings."
        )
    elif end >= today:
        problem = f"The baseline period runs until {end}; goals are judged after it ends."

    if problem:
        return Baseline(start, end, is_configured, table={}, problem=problem)
    rows = rollup_rows_read(
        counters,
        start=_day_start(start),
        end=_day_start(end) + DAY,
        channel=channel,
    )
    return Baseline(start, end, is_configured, table=rollup_table(rows))


def goal_evaluate(kpi: Kpi, baseline: Baseline, recent_table: RollupTable, recent: Period) -> Goal:
    """Judge one 90-day goal: the last 30 days against the target the baseline sets."""
    recent_value = kpi_compute(kpi.slug, recent_table)
    if not baseline.usable:
        return Goal(kpi, None, recent_value, None, GoalStatus.NO_DATA, baseline.problem)

    base = kpi_compute(kpi.slug, baseline.table)
    target = kpi_target(kpi, baseline)
    reason = ""
    if baseline.end is not None and _day_start(baseline.end) + DAY > recent.start:
        reason = (
            f"The last {recent.days} days overlap the baseline period, "
            f"which ends on {baseline.end}."
        )
    elif base.value is None:
        reason = "The baseline period has no data for this KPI."
    elif recent_value.value is None:
        reason = f"The last {recent.days} days have no data for this KPI."
    elif target is None:
        reason = "The KPI has no target."
    if reason:
        return Goal(kpi, base, recent_value, target, GoalStatus.NO_DATA, reason)

    met = target_met(kpi, recent_value.value, target)
    status = GoalStatus.MET if met else GoalStatus.NOT_MET
    return Goal(kpi, base, recent_value, target, status)


def _baseline_dates() -> tuple[date | None, date | None, bool]:
    database = reporting_database()
    settings_row = MonitoringSettings.objects.using(database).order_by("pk").first()
    if settings_row is not None and settings_row.baseline_start is not None:
        start = settings_row.baseline_start
        end = settings_row.baseline_end or start + (BASELINE_DEFAULT_DAYS - 1) * DAY
        return start, end, True

    first = KpiRollup.objects.using(database).aggregate(first=Min("bucket_start"))["first"]
    if first is None:
        return None, None, False
    start = _utc_date(first)
    return start, start + (BASELINE_DEFAULT_DAYS - 1) * DAY, False


def _baseline_counters() -> set[str]:
    """Collect the counters of the goals and of every KPI whose target depends on the baseline."""
    return _counters_of(
        kpi
        for kpi in KPIS.values()
        if kpi.is_ninety_day_goal or (kpi.target and kpi.target.baseline_factor is not None)
    )


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# --- One KPI, for the drill-down page -------------------------------------------------------


def kpi_breakdown(
    kpi: Kpi, *, days: int, channel: str | None, now: datetime | None = None
) -> Breakdown:
    """Build one KPI's card, and its value over the period per channel and dimension value."""
    now = now or timezone.now()
    period = period_ending_now(days, now=now)
    counters = kpi_counters(kpi.slug)
    per_channel = kpi_is_per_channel(kpi)

    # One query with the channel column: the split by channel comes from the same rows.
    labelled = list(
        KpiRollup.objects.using(reporting_database())
        .filter(period_filter(period.previous().start, period.end), counter__in=sorted(counters))
        .order_by("bucket_start")
        .values_list(
            "channel", "counter", "dimension", "bucket_start", "count", "total", "histogram"
        )
    )
    rows = [
        row[1:]
        for row in labelled
        if channel is None or not COUNTERS[row[1]].per_channel or row[0] == channel
    ]
    tables = _tables_split(rows, period)
    baseline = baseline_read(counters=counters, channel=channel, now=now)
    card = _card_build(kpi, tables, baseline, channel=channel)

    by_channel = None
    if per_channel:
        by_channel = _values_by_channel(kpi, labelled, period)
    return Breakdown(
        period=period,
        card=card,
        by_channel=by_channel,
        by_dimension=_values_by_dimension(kpi, tables.current),
    )


def _values_by_channel(kpi: Kpi, labelled: list, period: Period) -> list[tuple[str, KpiValue]]:
    per_channel: dict[str, list[RollupRow]] = defaultdict(list)
    for row in labelled:
        if row[3] >= period.start:
            per_channel[row[0]].append(row[1:])
    values = [
        (code, kpi_compute(kpi.slug, rollup_table(rows))) for code, rows in per_channel.items()
    ]
    return sorted(values, key=lambda item: item[0])


def _values_by_dimension(kpi: Kpi, table: RollupTable) -> list[tuple[str, KpiValue]]:
    """Compute the KPI per value of its dimension (action, queue, carrier or stage)."""
    if not kpi.dimension_label:
        return []
    found = set(table.get(kpi.numerator, {}))
    numerator_split = COUNTERS[kpi.numerator].dimension
    if kpi.denominator and COUNTERS[kpi.denominator].dimension == numerator_split:
        # An action reviewed without a single disagreement still gets its row of 0 %.
        found |= set(table.get(kpi.denominator, {}))
    keys = sorted(key for key in found if key)
    if kpi.kind == Kind.MIX:
        whole = kpi_compute(kpi.slug, table)
        shares = whole.shares or {}
        counts = {key: sums.count for key, sums in table.get(kpi.numerator, {}).items()}
        return [
            (
                key,
                KpiValue(
                    kpi, shares.get(key), Decimal(counts[key]), whole.denominator, counts[key]
                ),
            )
            for key in keys
        ]
    return [(key, kpi_compute(kpi.slug, table, dimension=key)) for key in keys]
