"""Reading KPI values from the rollups: any period, channel or dimension, never the raw tables.

Periods are measured in whole hours: `start` is rounded down and `end` rounded up to the
hour, so "the last 60 minutes" at 10:05 covers 09:00 to 11:00 (the current hour so far).
Whole days inside the period are read from the day rows, the hours at either end from the
hour rows.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q, Sum

from .kpis import COUNTERS, Kind, Kpi, histogram_merge, histogram_percentile, kpi_get
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
    return moment.replace(minute=0, second=0, microsecond=0)


def hour_ceil(moment: datetime) -> datetime:
    floor = hour_floor(moment)
    return floor if floor == moment else floor + HOUR


def day_floor(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def day_ceil(moment: datetime) -> datetime:
    floor = day_floor(moment)
    return floor if floor == moment else floor + DAY


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


def _scope(counter: str, channel: str | None, dimension: str | None) -> Q:
    scope = Q(counter=counter)
    if channel:
        scope &= Q(channel=channel)
    if dimension:
        scope &= Q(dimension=dimension)
    return scope


def counter_sums(
    counter: str,
    *,
    start: datetime,
    end: datetime,
    channel: str | None = None,
    dimension: str | None = None,
    with_histogram: bool = False,
) -> Sums:
    """Sum one counter over the period, optionally for one channel and dimension value."""
    rows = KpiRollup.objects.filter(period_filter(start, end), _scope(counter, channel, dimension))
    totals = rows.aggregate(count=Sum("count"), total=Sum("total"))
    histogram = (
        histogram_merge(list(rows.values_list("histogram", flat=True))) if with_histogram else []
    )
    return Sums(
        count=int(totals["count"] or 0),
        total=Decimal(totals["total"] or 0),
        histogram=histogram,
    )


def counter_sums_by(
    counter: str,
    *,
    by: str,
    start: datetime,
    end: datetime,
    channel: str | None = None,
    dimension: str | None = None,
) -> dict[str, Sums]:
    """Sum one counter per channel (`by="channel"`) or per dimension value (`by="dimension"`)."""
    if by not in {"channel", "dimension"}:
        raise ValueError(f"Cannot split by {by!r}; use channel or dimension.")

    rows = KpiRollup.objects.filter(period_filter(start, end), _scope(counter, channel, dimension))
    histograms: dict[str, list[list[int]]] = defaultdict(list)
    if COUNTERS[counter].has_histogram:
        for key, histogram in rows.values_list(by, "histogram"):
            histograms[key].append(histogram)
    return {
        row[by]: Sums(
            count=int(row["count"] or 0),
            total=Decimal(row["total"] or 0),
            histogram=histogram_merge(histograms[row[by]]),
        )
        for row in rows.values(by).annotate(count=Sum("count"), total=Sum("total")).order_by(by)
    }


def gauge_latest(
    counter: str, *, start: datetime, end: datetime, dimension: str | None = None
) -> dict[str, Sums]:
    """The latest snapshot of a gauge counter in the period, per dimension value."""
    start, end = hour_floor(start), hour_ceil(end)
    rows = KpiRollup.objects.filter(
        _scope(counter, None, dimension),
        granularity=Granularity.HOUR,
        bucket_start__gte=start,
        bucket_start__lt=end,
    )
    latest_bucket = rows.order_by("-bucket_start").values_list("bucket_start", flat=True).first()
    if latest_bucket is None:
        return {}
    return {
        row.dimension: Sums(count=row.count, total=row.total, histogram=[])
        for row in rows.filter(bucket_start=latest_bucket)
    }


def kpi_value(
    slug: str,
    *,
    start: datetime,
    end: datetime,
    channel: str | None = None,
    dimension: str | None = None,
) -> KpiValue:
    """The KPI's value over [start, end), for one channel and dimension value if given."""
    kpi = kpi_get(slug)
    numerator_dimension = kpi.numerator_dimension or dimension

    if kpi.kind in {Kind.GAUGE_SUM, Kind.GAUGE_MAX}:
        return _gauge_value(kpi, start=start, end=end, dimension=dimension)
    if kpi.kind == Kind.MIX:
        return _mix_value(kpi, start=start, end=end, channel=channel)

    numerator = counter_sums(
        kpi.numerator,
        start=start,
        end=end,
        channel=channel,
        dimension=numerator_dimension,
        with_histogram=kpi.kind == Kind.PERCENTILE,
    )
    if kpi.kind == Kind.COUNT:
        return KpiValue(
            kpi, Decimal(numerator.count), Decimal(numerator.count), None, numerator.count
        )
    if kpi.kind == Kind.MEAN:
        value = numerator.total / numerator.count if numerator.count else None
        return KpiValue(kpi, value, numerator.total, Decimal(numerator.count), numerator.count)
    if kpi.kind == Kind.PERCENTILE:
        value = histogram_percentile(numerator.histogram, kpi.percentile or Decimal("0.5"))
        return KpiValue(kpi, value, Decimal(numerator.count), None, numerator.count)

    # A ratio's denominator keeps the caller's dimension only when it splits the same way
    # (disagreements per action over reviews per action); orders have no dimension.
    denominator_dimension = dimension if COUNTERS[kpi.denominator].dimension else None
    denominator = counter_sums(
        kpi.denominator,
        start=start,
        end=end,
        channel=channel,
        dimension=denominator_dimension,
    )
    value = Decimal(numerator.count) * kpi.scale / denominator.count if denominator.count else None
    return KpiValue(
        kpi, value, Decimal(numerator.count), Decimal(denominator.count), denominator.count
    )


def kpi_series(
    slug: str,
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
    channel: str | None = None,
    dimension: str | None = None,
) -> list[tuple[datetime, KpiValue]]:
    """The KPI's value per step (an hour or a day) from `start` to `end`.

    One query per point; a 90-day chart at one point per day is 90 small indexed queries.
    """
    points = []
    moment = hour_floor(start)
    while moment < end:
        point_end = min(moment + step, end)
        value = kpi_value(slug, start=moment, end=point_end, channel=channel, dimension=dimension)
        points.append((moment, value))
        moment += step
    return points


def mix_deviation(recent: dict[str, Decimal], baseline: dict[str, Decimal]) -> Decimal | None:
    """How far a mix moved from its baseline: the largest relative change of one share.

    A carrier at 40 % in the baseline and 52 % now has moved 30 %. A carrier absent from the
    baseline that now has a share counts as a 100 % move. None when the baseline is empty.
    """
    if not baseline:
        return None
    deviations = []
    for key in set(recent) | set(baseline):
        before = baseline.get(key, Decimal("0"))
        now = recent.get(key, Decimal("0"))
        if before:
            deviations.append(abs(now - before) / before * 100)
        elif now:
            deviations.append(Decimal("100"))
    return max(deviations, default=Decimal("0"))


def _gauge_value(kpi: Kpi, *, start: datetime, end: datetime, dimension: str | None) -> KpiValue:
    snapshot = gauge_latest(kpi.numerator, start=start, end=end, dimension=dimension)
    if not snapshot:
        return KpiValue(kpi, None, Decimal("0"), None, 0)
    size = sum(sums.count for sums in snapshot.values())
    if kpi.kind == Kind.GAUGE_SUM:
        return KpiValue(kpi, Decimal(size), Decimal(size), None, size)
    oldest = max(sums.total for sums in snapshot.values())
    return KpiValue(kpi, oldest, oldest, None, size)


def _mix_value(kpi: Kpi, *, start: datetime, end: datetime, channel: str | None) -> KpiValue:
    per_key = counter_sums_by(kpi.numerator, by="dimension", start=start, end=end, channel=channel)
    total = sum(sums.count for sums in per_key.values())
    if not total:
        return KpiValue(kpi, None, Decimal("0"), None, 0, shares={})
    shares = {key: Decimal(sums.count) / total for key, sums in per_key.items() if sums.count}
    top = max(shares.values())
    return KpiValue(kpi, top, Decimal(total), Decimal(total), total, shares=shares)
