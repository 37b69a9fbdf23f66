"""Reading KPI values from the rollups: any period, channel or dimension, never the raw tables.

Periods are measured in whole hours: `start` is rounded down and `end` rounded up to the
hour, so "the last 60 minutes" at 10:05 covers 09:00 to 11:00 (the current hour so far).
Whole days inside the period are read from the day rows, the hours at either end from the
hour rows.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Q, Sum
from django.utils import timezone

from omsguard.databases import reporting_database

from .kpis import (
    COUNTERS,
    Kind,
    Kpi,
    histogram_empty,
    histogram_merge,
    histogram_percentile,
    kpi_get,
)
from .models import Granularity, KpiRollup

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class KpiValue:
    """A KPI's value over a period, with the figures behind it.

    `value` is None when there is nothing to divide by (no orders, no reviews) or no data.
    `sample` is the number of events the value rests on (the denominator for a ratio).
    """

    kpi: Kpi
    value: Decimal | None
    numerator: Decimal
    denominator: Decimal | None
    sample: int
    shares: dict[str, Decimal] | None = None  # MIX KPIs: each dimension value's share


@dataclass(frozen=True)
class Sums:
    count: int
    total: Decimal
    histogram: list[int]


def hour_floor(moment: datetime) -> datetime:
    """Round down to the hour in UTC, the time zone the rollup buckets are kept in."""
    return _utc(moment).replace(minute=0, second=0, microsecond=0)


def hour_ceil(moment: datetime) -> datetime:
    floor = hour_floor(moment)
    return floor if floor == moment else floor + HOUR


def day_floor(moment: datetime) -> datetime:
    """Round down to midnight UTC."""
    return _utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)


def day_ceil(moment: datetime) -> datetime:
    floor = day_floor(moment)
    return floor if floor == moment else floor + DAY


def _utc(moment: datetime) -> datetime:
    # An hour in a zone such as +05:30 does not start on a UTC hour, so round in UTC.
    if timezone.is_naive(moment):
        raise ValueError(f"Use an aware datetime for KPI periods, got the naive {moment}.")
    return moment.astimezone(UTC)


def period_filter(start: datetime, end: datetime) -> Q:
    """Rows covering [start, end): day rows for whole days, hour rows for the ends."""
    start, end = hour_floor(start), hour_ceil(end)
    first_day, last_day = day_ceil(start), day_floor(end)
    if first_day >= last_day:
        return Q(granularity=Granularity.HOUR, bucket_start__gte=start, bucket_start__lt=end)

    days = Q(granularity=Granularity.DAY, bucket_start__gte=first_day, bucket_start__lt=last_day)
    head = Q(granularity=Granularity.HOUR, bucket_start__gte=start, bucket_start__lt=first_day)
    tail = Q(granularity=Granularity.HOUR, bucket_start__gte=last_day, bucket_start__lt=end)
    return days | head | tail


def _scope(counters: set[str], channel: str | None) -> Q:
    scope = Q(counter__in=sorted(counters))
    if channel:
        scope &= Q(channel=channel)
    return scope


def kpi_counters(slug: str) -> set[str]:
    """Return the counters a KPI reads."""
    kpi = kpi_get(slug)
    return {kpi.numerator, kpi.denominator} - {""}


RollupRow = tuple[str, str, datetime, int, Decimal, list[int]]
RollupTable = dict[str, dict[str, Sums]]


def rollup_rows(
    counters: set[str], *, start: datetime, end: datetime, channel: str | None = None
) -> list[RollupRow]:
    """Fetch the rollup rows of the counters covering [start, end), in one query.

    Each row is (counter, dimension, bucket_start, count, total, histogram); rows of every
    channel are returned unless `channel` is given.
    """
    return list(
        KpiRollup.objects.using(reporting_database())
        .filter(period_filter(start, end), _scope(counters, channel))
        .order_by("bucket_start")
        .values_list("counter", "dimension", "bucket_start", "count", "total", "histogram")
    )


def rollup_rows_summed(
    counters: set[str], *, start: datetime, end: datetime, channel: str | None = None
) -> list[RollupRow]:
    """Fetch the rows of the counters covering [start, end), summed over channels in SQL.

    Gives the same rollup_table as rollup_rows from fewer rows, because a counter's rows of
    one bucket and dimension value come back as one row with the channels' counts and
    totals added up. Histograms cannot be added in portable SQL, and rollup_table keeps a gauge's
    largest total rather than the sum, so those counters' rows are fetched as they are, in
    a second query. Rows come ordered by bucket_start, as rollup_table needs.
    """
    raw = {slug for slug in counters if COUNTERS[slug].has_histogram or COUNTERS[slug].is_gauge}
    summed = counters - raw
    rows: list[RollupRow] = []
    if summed:
        rows += [
            (counter, dimension, bucket_start, count, total, [])
            for counter, dimension, bucket_start, count, total in (
                KpiRollup.objects.using(reporting_database())
                .filter(period_filter(start, end), _scope(summed, channel))
                .values("counter", "dimension", "bucket_start")
                .annotate(summed_count=Sum("count"), summed_total=Sum("total"))
                .order_by()
                .values_list("counter", "dimension", "bucket_start", "summed_count", "summed_total")
            )
        ]
    if raw:
        rows += rollup_rows(raw, start=start, end=end, channel=channel)
    rows.sort(key=lambda row: row[2])
    return rows


def _hour_rows(
    counters: set[str], *, start: datetime, end: datetime, channel: str | None
) -> list[RollupRow]:
    hours = Q(
        granularity=Granularity.HOUR,
        bucket_start__gte=hour_floor(start),
        bucket_start__lt=hour_ceil(end),
    )
    return list(
        KpiRollup.objects.using(reporting_database())
        .filter(hours, _scope(counters, channel))
        .order_by("bucket_start")
        .values_list("counter", "dimension", "bucket_start", "count", "total", "histogram")
    )


def rollup_table(rows: list[RollupRow]) -> RollupTable:
    """Sum rows per counter and dimension value; gauges keep their latest snapshot instead.

    The rows must come ordered by bucket_start (rollup_rows does that).
    """
    counts: dict[tuple[str, str], int] = defaultdict(int)
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    histograms: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
    latest: dict[str, datetime] = {}

    for counter, dimension, bucket_start, count, total, histogram in rows:
        if COUNTERS[counter].is_gauge:
            # A later snapshot replaces the earlier ones of every dimension value.
            if latest.get(counter) != bucket_start:
                for key in [key for key in counts if key[0] == counter]:
                    del counts[key], totals[key]
                latest[counter] = bucket_start
            counts[counter, dimension] += count
            totals[counter, dimension] = max(totals[counter, dimension], Decimal(total))
            continue
        counts[counter, dimension] += count
        totals[counter, dimension] += Decimal(total)
        if histogram:
            histograms[counter, dimension].append(histogram)

    table: RollupTable = defaultdict(dict)
    for key, count in counts.items():
        counter, dimension = key
        merged = histograms.get(key)
        table[counter][dimension] = Sums(
            count=count,
            total=totals[key],
            histogram=histogram_merge(merged) if merged else histogram_empty(),
        )
    return dict(table)


def table_sums(
    table: RollupTable, counter: str, dimension: str | None = None, *, histogram: bool = True
) -> Sums:
    """Sum one counter, for one dimension value or for all of them together.

    With histogram=False the sums carry an empty histogram list instead of the merged one,
    because merging is most of the cost and only percentiles need it.
    """
    per_dimension = table.get(counter, {})
    if dimension:
        return per_dimension.get(dimension, Sums(0, Decimal("0"), histogram_empty()))
    sums = per_dimension.values()
    return Sums(
        count=sum(one.count for one in sums),
        total=sum((one.total for one in sums), Decimal("0")),
        histogram=histogram_merge([one.histogram for one in sums]) if histogram else [],
    )


def kpi_compute(slug: str, table: RollupTable, *, dimension: str | None = None) -> KpiValue:
    """Compute the KPI's value from summed rollups; all KPI arithmetic lives here."""
    kpi = kpi_get(slug)
    numerator = table_sums(
        table,
        kpi.numerator,
        kpi.numerator_dimension or dimension,
        histogram=kpi.kind == Kind.PERCENTILE,
    )

    if kpi.kind == Kind.COUNT:
        count = Decimal(numerator.count)
        return KpiValue(kpi, count, count, None, numerator.count)
    if kpi.kind == Kind.MEAN:
        value = numerator.total / numerator.count if numerator.count else None
        return KpiValue(kpi, value, numerator.total, Decimal(numerator.count), numerator.count)
    if kpi.kind == Kind.PERCENTILE:
        value = histogram_percentile(numerator.histogram, kpi.percentile or Decimal("0.5"))
        return KpiValue(kpi, value, Decimal(numerator.count), None, numerator.count)
    if kpi.kind == Kind.GAUGE_SUM:
        if kpi.numerator not in table:
            return KpiValue(kpi, None, Decimal("0"), None, 0)
        return KpiValue(
            kpi, Decimal(numerator.count), Decimal(numerator.count), None, numerator.count
        )
    if kpi.kind == Kind.GAUGE_MAX:
        snapshot = table.get(kpi.numerator, {})
        if dimension:
            snapshot = {key: sums for key, sums in snapshot.items() if key == dimension}
        if not snapshot:
            return KpiValue(kpi, None, Decimal("0"), None, 0)
        oldest = max(sums.total for sums in snapshot.values())
        return KpiValue(kpi, oldest, oldest, None, numerator.count)
    if kpi.kind == Kind.MIX:
        return _mix_value(kpi, table.get(kpi.numerator, {}))

    # A ratio's denominator keeps the caller's dimension only when it splits the same way
    # (disagreements per action over reviews per action). Orders have no dimension, and
    # shipments split by carrier, not by the stage of a fulfilment exception.
    splits_alike = COUNTERS[kpi.denominator].dimension == COUNTERS[kpi.numerator].dimension
    denominator_dimension = dimension if splits_alike else None
    denominator = table_sums(table, kpi.denominator, denominator_dimension, histogram=False)
    value = Decimal(numerator.count) * kpi.scale / denominator.count if denominator.count else None
    return KpiValue(
        kpi, value, Decimal(numerator.count), Decimal(denominator.count), denominator.count
    )


def kpi_value(
    slug: str,
    *,
    start: datetime,
    end: datetime,
    channel: str | None = None,
    dimension: str | None = None,
) -> KpiValue:
    """Return the KPI's value over [start, end), for one channel and dimension value if given."""
    rows = rollup_rows(kpi_counters(slug), start=start, end=end, channel=channel)
    return kpi_compute(slug, rollup_table(rows), dimension=dimension)


def kpi_series(
    slug: str,
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
    channel: str | None = None,
    dimension: str | None = None,
) -> list[tuple[datetime, KpiValue]]:
    """Return the KPI's value per step (an hour or a day) from `start` to `end`.

    One query fetches the whole series, and each point is computed from the rows in its step.
    Day rows are read only when every step starts at midnight and spans whole days, because
    otherwise a day row would land in the one step that contains its midnight.
    """
    start = hour_floor(start)
    whole_days = step % DAY == timedelta(0) and start == day_floor(start)
    if whole_days:
        rows = rollup_rows(kpi_counters(slug), start=start, end=end, channel=channel)
    else:
        rows = _hour_rows(kpi_counters(slug), start=start, end=end, channel=channel)
    points = []
    moment = start
    while moment < end:
        point_end = min(moment + step, end)
        in_step = [row for row in rows if moment <= row[2] < point_end]
        points.append((moment, kpi_compute(slug, rollup_table(in_step), dimension=dimension)))
        moment += step
    return points


# Only carriers with at least this share of shipments, in the baseline or in the window, are
# judged, because binomial noise alone moves a small share by a large relative amount. At 500
# shipments a day, one standard deviation of a 4 % carrier's daily share is 22 % of that
# share, so a 30 % rule would fire on ordinary days.
MIX_MIN_SHARE = Decimal("0.10")


@dataclass(frozen=True)
class MixShift:
    """The largest relative change of one share of a mix, e.g. fedex from 0.20 to 0.54.

    `percent` is the change in percent of the baseline share (170 for 0.20 to 0.54). `key` is
    None when no value of the mix reaches MIX_MIN_SHARE on either side.
    """

    key: str | None
    before: Decimal
    now: Decimal
    percent: Decimal


def mix_shift(
    recent: dict[str, Decimal], baseline: dict[str, Decimal], *, min_share: Decimal = MIX_MIN_SHARE
) -> MixShift | None:
    """Find the share that moved most from its baseline among the shares of `min_share` or more.

    A carrier at 40 % in the baseline and 52 % now has moved 30 %. A carrier absent from the
    baseline that now has at least `min_share` counts as a 100 % move. Returns None when the
    baseline is empty.
    """
    if not baseline:
        return None
    largest = MixShift(None, Decimal("0"), Decimal("0"), Decimal("0"))
    for key in sorted(set(recent) | set(baseline)):
        before = baseline.get(key, Decimal("0"))
        now = recent.get(key, Decimal("0"))
        if max(before, now) < min_share:
            continue
        percent = abs(now - before) / before * 100 if before else Decimal("100")
        if largest.key is None or percent > largest.percent:
            largest = MixShift(key, before, now, percent)
    return largest


def mix_deviation(
    recent: dict[str, Decimal], baseline: dict[str, Decimal], *, min_share: Decimal = MIX_MIN_SHARE
) -> Decimal | None:
    """Return how far a mix moved from its baseline, in percent: see mix_shift."""
    shift = mix_shift(recent, baseline, min_share=min_share)
    return None if shift is None else shift.percent


def _mix_value(kpi: Kpi, per_key: dict[str, Sums]) -> KpiValue:
    total = sum(sums.count for sums in per_key.values())
    if not total:
        return KpiValue(kpi, None, Decimal("0"), None, 0, shares={})
    shares = {key: Decimal(sums.count) / total for key, sums in per_key.items() if sums.count}
    top = max(shares.values())
    return KpiValue(kpi, top, Decimal(total), Decimal(total), total, shares=shares)
