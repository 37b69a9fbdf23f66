"""Evaluating alert rules against the KPI rollups: fire, keep firing, or resolve.

Each enabled rule is judged once per scope: all channels together, each channel with data
in the window, or the rule's one channel. When the rule's dimension is "*", each value of
the KPI's dimension (each action, queue or carrier) is judged on its own as well. A scope
that fires raises the alert `rule:<rule id>:<scope>`; a scope that no longer fires resolves
it.

Windows are whole hours because the rollups are: a 60-minute window evaluated at 10:05
covers 09:00 to 11:00, that is the last full hour and the current one so far. The baseline
is the `baseline_days` right before the window.

Too little data changes nothing: when the window has fewer events than the rule's
`min_sample`, or there is no baseline to compare with, an open alert stays open and a
closed one stays closed, and nothing is recorded. A scope with no events in the window at
all is no longer judged, so its open alert is resolved ("no events in the window"). So is
an open alert whose scope the rule no longer covers after an edit, and every open alert of
a disabled rule.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.utils import timezone

from .kpis import COUNTERS, Kind, Kpi, Unit, kpi_get
from .models import (
    Alert,
    AlertRule,
    AlertRuleKind,
    AlertScope,
    AlertStatus,
    Comparison,
)
from .selectors import (
    HOUR,
    MIX_MIN_SHARE,
    KpiValue,
    RollupRow,
    RollupTable,
    hour_ceil,
    hour_floor,
    kpi_compute,
    kpi_counters,
    mix_shift,
    period_filter,
    rollup_table,
)
from .services import alert_raise, alert_resolve

logger = logging.getLogger(__name__)

SOURCE = "alert_rules"
# A rule's dimension that requests one alert per value of the KPI's dimension.
EACH_DIMENSION = "*"
ORDERS_COUNTER = "orders_received"
GAUGE_KINDS = frozenset({Kind.GAUGE_SUM, Kind.GAUGE_MAX})
# KPIs whose value is a volume, not a rate: min_sample does not apply, and their baseline is
# scaled to the window's length.
VOLUME_KINDS = frozenset({Kind.COUNT}) | GAUGE_KINDS
# The change from a baseline of zero to any value above it.
INFINITE_CHANGE = Decimal("Infinity")
RULE_DISABLED = "Rule disabled."
SCOPE_DROPPED = "Rule changed: it no longer covers this scope."
NO_EVENTS = "No events in the window."


class RuleConfigError(ValueError):
    """A rule that cannot be evaluated as configured; `field` names the setting to fix."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass
class EvaluationSummary:
    """The outcome of one evaluation run, for the task's log and the tests."""

    evaluated_at: datetime
    rules: int = 0
    scopes: int = 0
    opened: list[int] = field(default_factory=list)
    raised_again: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    too_little_data: int = 0
    failed_rules: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Scope:
    channel: str | None
    dimension_label: str
    dimension: str | None

    def key(self) -> str:
        """Return the scope as the dedup key shows it, e.g. "channel=shop,action=select_carrier"."""
        parts = []
        if self.channel:
            parts.append(f"channel={self.channel}")
        if self.dimension:
            parts.append(f"{self.dimension_label or 'dimension'}={self.dimension}")
        return ",".join(parts) or "all"

    def label(self) -> str:
        parts = []
        if self.dimension:
            parts.append(f"{self.dimension_label or 'dimension'} {self.dimension}")
        if self.channel:
            parts.append(f"channel {self.channel}")
        return " on ".join(parts)

    def as_data(self) -> dict:
        return {
            "channel": self.channel or "",
            "dimension_label": self.dimension_label,
            "dimension": self.dimension or "",
        }


@dataclass(frozen=True)
class Judgement:
    """The outcome for one scope: `fires` is None when there is too little data to judge."""

    fires: bool | None
    value: Decimal | None = None
    sample: int = 0
    figures: dict = field(default_factory=dict)
    summary: str = ""


# --- Running every rule ----------------------------------------------------------------------


def alert_rules_evaluate(*, now: datetime | None = None) -> EvaluationSummary:
    """Evaluate every enabled rule at `now`; a broken rule is logged and skipped.

    Open alerts of disabled rules are resolved first. Running it twice at the same `now`
    changes nothing the second time.
    """
    now = now or timezone.now()
    summary = EvaluationSummary(evaluated_at=now)
    _disabled_rules_resolve(now=now, summary=summary)

    rules = AlertRule.objects.filter(is_enabled=True).select_related("owner_group", "channel")
    for rule in rules.order_by("pk"):
        summary.rules += 1
        try:
            # A savepoint per rule, so a database error in one rule leaves the others intact.
            with transaction.atomic():
                alert_rule_evaluate(rule=rule, now=now, summary=summary)
        except Exception:
            summary.failed_rules.append(rule.pk)
            logger.exception(
                "alert rule evaluation failed", extra={"rule": rule.pk, "rule_name": rule.name}
            )
    logger.info(
        "alert rules evaluated",
        extra={
            "rules": summary.rules,
            "scopes": summary.scopes,
            "opened": len(summary.opened),
            "resolved": len(summary.resolved),
            "failed": len(summary.failed_rules),
        },
    )
    return summary


def alert_rule_evaluate(
    *, rule: AlertRule, now: datetime, summary: EvaluationSummary | None = None
) -> EvaluationSummary:
    """Evaluate one rule in every scope it covers; raise RuleConfigError when misconfigured.

    Open alerts of the rule whose scope was not judged this time are resolved: their scope had
    no events in the window, or the rule no longer covers it.
    """
    summary = summary or EvaluationSummary(evaluated_at=now)
    alert_rule_check(rule)
    kpi = kpi_get(rule.kpi)

    window_start, window_end = (
        hour_floor(now - timedelta(minutes=rule.window_minutes)),
        hour_ceil(now),
    )
    counters = _counters_for(rule, kpi)
    window = _rows_by_channel(counters, start=window_start, end=window_end)
    baseline = None
    if rule.kind == AlertRuleKind.BASELINE_DEVIATION:
        baseline_start = window_start - timedelta(days=rule.baseline_days)
        baseline = _rows_by_channel(counters, start=baseline_start, end=window_start)

    period = {
        "evaluated_at": now.isoformat(),
        "window_start": window_start.isoformat(),
        "window_end": window_end.isoformat(),
        "window_hours": str(_hours(now - window_start)),
    }
    if baseline is not None:
        period |= {
            "baseline_start": baseline_start.isoformat(),
            "baseline_days": rule.baseline_days,
        }

    open_alerts = {
        alert.dedup_key: alert for alert in Alert.objects.filter(rule=rule, status=AlertStatus.OPEN)
    }
    judged: set[str] = set()
    for channel in _channels_for(rule, kpi, window):
        window_table = _table(window, channel)
        for scope in _scopes_for(rule, kpi, channel, window_table):
            summary.scopes += 1
            judged.add(_dedup_key(rule, scope))
            baseline_table = _table(baseline, channel) if baseline is not None else None
            judgement = _judge(
                rule, kpi, scope, window_table, baseline_table, elapsed=now - window_start
            )
            _act(rule, kpi, scope, judgement, period, open_alerts, summary)

    for dedup_key, alert in open_alerts.items():
        if dedup_key not in judged:
            _unjudged_resolve(rule, kpi, alert, period, summary)
    return summary


def _disabled_rules_resolve(*, now: datetime, summary: EvaluationSummary) -> None:
    stale = Alert.objects.filter(status=AlertStatus.OPEN, rule__is_enabled=False).order_by("pk")
    for alert in stale.values("dedup_key", "rule_id"):
        resolved = alert_resolve(
            dedup_key=alert["dedup_key"],
            resolution=RULE_DISABLED,
            data={"rule": alert["rule_id"], "evaluated_at": now.isoformat(), "rule_enabled": False},
        )
        if resolved is not None:
            summary.resolved.append(resolved.pk)


def _unjudged_resolve(
    rule: AlertRule, kpi: Kpi, alert: Alert, period: dict, summary: EvaluationSummary
) -> None:
    scope = (alert.data or {}).get("scope") or {}
    resolution = NO_EVENTS if _covers(rule, scope) else SCOPE_DROPPED
    data = period | {"scope": scope, "rule": rule.pk, "kpi": kpi.slug, "sample": 0}
    resolved = alert_resolve(dedup_key=alert.dedup_key, resolution=resolution, data=data)
    if resolved is not None:
        summary.resolved.append(resolved.pk)


def _covers(rule: AlertRule, scope: dict) -> bool:
    """Return whether the rule as configured now would judge the scope an alert was raised for."""
    channel, dimension = scope.get("channel") or "", scope.get("dimension") or ""
    if rule.channel_id is not None:
        channel_fits = channel == rule.channel.code
    elif rule.scope == AlertScope.PER_CHANNEL:
        channel_fits = bool(channel)
    else:
        channel_fits = not channel
    if rule.dimension == EACH_DIMENSION:
        return channel_fits and bool(dimension)
    return channel_fits and dimension == rule.dimension


# --- Checking a rule's configuration ---------------------------------------------------------


MIN_WINDOW_MINUTES = 60
MAX_WINDOW_MINUTES = 90 * 24 * 60
MAX_BASELINE_DAYS = 90


def alert_rule_check(rule: AlertRule) -> None:
    """Raise RuleConfigError when the rule's KPI, kind, dimension or scope do not fit together."""
    try:
        kpi = kpi_get(rule.kpi)
    except KeyError as error:
        raise RuleConfigError(str(error.args[0]), "kpi") from None
    numerator = COUNTERS[kpi.numerator]

    if rule.kind not in AlertRuleKind.values:
        raise RuleConfigError(f"Unknown rule kind {rule.kind!r}.", "kind")
    if kpi.kind == Kind.MIX and rule.kind == AlertRuleKind.THRESHOLD:
        raise RuleConfigError(
            f"{kpi.name} is a set of shares with no single value; use a baseline deviation rule.",
            "kind",
        )
    if not MIN_WINDOW_MINUTES <= rule.window_minutes <= MAX_WINDOW_MINUTES:
        raise RuleConfigError(
            f"The window must be between {MIN_WINDOW_MINUTES} minutes and "
            f"{MAX_WINDOW_MINUTES // (24 * 60)} days.",
            "window_minutes",
        )
    if rule.window_minutes % 60:
        raise RuleConfigError(
            "KPIs are counted per hour, so the window must be whole hours (60, 120, 1440...).",
            "window_minutes",
        )
    if rule.baseline_days > MAX_BASELINE_DAYS:
        raise RuleConfigError(
            f"The baseline can reach back at most {MAX_BASELINE_DAYS} days.", "baseline_days"
        )

    # A rate per 1,000 orders needs a count of events; means, percentiles and shares have none.
    counts_events = (
        not numerator.is_gauge
        and kpi.numerator != ORDERS_COUNTER
        and kpi.kind in {Kind.RATIO, Kind.COUNT}
    )
    if rule.kind == AlertRuleKind.RATE_PER_1000 and not counts_events:
        raise RuleConfigError(
            f"{kpi.name} does not count events, so it has no rate per 1,000 orders; use a "
            "threshold rule.",
            "kind",
        )
    if kpi.kind == Kind.MIX and rule.dimension:
        raise RuleConfigError(
            f"{kpi.name} compares every {numerator.dimension or 'value'} at once; leave the "
            "dimension empty.",
            "dimension",
        )
    if rule.dimension and not numerator.dimension:
        raise RuleConfigError(f"{kpi.name} has no dimension; leave it empty.", "dimension")
    if rule.dimension and kpi.numerator_dimension:
        raise RuleConfigError(
            f"{kpi.name} always counts {numerator.dimension} {kpi.numerator_dimension!r}; leave "
            "the dimension empty.",
            "dimension",
        )

    per_channel = rule.scope == AlertScope.PER_CHANNEL or rule.channel_id is not None
    if per_channel and not _splits_by_channel(rule, kpi):
        raise RuleConfigError(
            f"{kpi.name} is not counted per channel; use the scope 'all channels together' "
            "and no channel.",
            "scope",
        )


def _splits_by_channel(rule: AlertRule, kpi: Kpi) -> bool:
    counters = {kpi.numerator}
    if rule.kind != AlertRuleKind.RATE_PER_1000 and kpi.denominator:
        counters.add(kpi.denominator)
    return all(COUNTERS[counter].per_channel for counter in counters)


# --- Reading the rollups ---------------------------------------------------------------------


RowsByChannel = dict[str, list[RollupRow]]


def _counters_for(rule: AlertRule, kpi: Kpi) -> set[str]:
    counters = kpi_counters(kpi.slug)
    if rule.kind == AlertRuleKind.RATE_PER_1000:
        counters = {kpi.numerator, ORDERS_COUNTER}
    return counters


def _rows_by_channel(counters: set[str], *, start: datetime, end: datetime) -> RowsByChannel:
    """Read the counters' rollup rows of [start, end) per channel, in one query."""
    from .models import KpiRollup

    rows: RowsByChannel = defaultdict(list)
    queryset = (
        KpiRollup.objects.filter(period_filter(start, end), counter__in=sorted(counters))
        .order_by("bucket_start")
        .values_list(
            "channel", "counter", "dimension", "bucket_start", "count", "total", "histogram"
        )
    )
    for channel, *row in queryset:
        rows[channel].append(tuple(row))
    return dict(rows)


def _table(rows: RowsByChannel, channel: str | None) -> RollupTable:
    if channel is not None:
        return rollup_table(rows.get(channel, []))
    merged = sorted(
        (row for per_channel in rows.values() for row in per_channel), key=lambda row: row[2]
    )
    return rollup_table(merged)


def _channels_for(rule: AlertRule, kpi: Kpi, window: RowsByChannel) -> list[str | None]:
    if rule.channel_id is not None:
        return [rule.channel.code]
    if rule.scope == AlertScope.PER_CHANNEL:
        return sorted(channel for channel in window if channel)
    return [None]


def _scopes_for(rule: AlertRule, kpi: Kpi, channel: str | None, table: RollupTable) -> list[Scope]:
    label = COUNTERS[kpi.numerator].dimension
    if rule.dimension != EACH_DIMENSION:
        return [Scope(channel, label, rule.dimension or None)]

    values = set(table.get(kpi.numerator, {}))
    if kpi.denominator and COUNTERS[kpi.denominator].dimension == label:
        values |= set(table.get(kpi.denominator, {}))
    return [Scope(channel, label, value) for value in sorted(values - {""})]


# --- Judging one scope -----------------------------------------------------------------------


def _judge(
    rule: AlertRule,
    kpi: Kpi,
    scope: Scope,
    window: RollupTable,
    baseline: RollupTable | None,
    *,
    elapsed: timedelta,
) -> Judgement:
    if rule.kind == AlertRuleKind.RATE_PER_1000:
        return _judge_rate(rule, kpi, scope, window)
    if rule.kind == AlertRuleKind.BASELINE_DEVIATION:
        return _judge_baseline(rule, kpi, scope, window, baseline or {}, elapsed=elapsed)
    return _judge_threshold(rule, kpi, scope, window)


def _judge_threshold(rule: AlertRule, kpi: Kpi, scope: Scope, window: RollupTable) -> Judgement:
    current = _kpi_value(kpi, scope, window)
    if current.value is None or not _enough(rule, kpi, current.sample):
        return Judgement(None)

    fires = _crosses(current.value, rule.threshold, rule.comparison)
    side = rule.comparison if fires else _opposite(rule.comparison)
    value_text = _format(current.value, kpi.unit)
    return Judgement(
        fires,
        current.value,
        current.sample,
        figures={
            "value": _decimal_text(current.value),
            "unit": kpi.unit.value,
            "threshold": _decimal_text(rule.threshold),
            "comparison": rule.comparison,
            "sample": current.sample,
        },
        summary=f"{value_text}, {side} {_format(rule.threshold, kpi.unit)}",
    )


def _judge_rate(rule: AlertRule, kpi: Kpi, scope: Scope, window: RollupTable) -> Judgement:
    from .selectors import table_sums

    events = table_sums(window, kpi.numerator, kpi.numerator_dimension or scope.dimension).count
    orders = table_sums(window, ORDERS_COUNTER).count
    if not orders or orders < rule.min_sample:
        return Judgement(None)

    rate = Decimal(events) * 1000 / orders
    fires = _crosses(rate, rule.threshold, rule.comparison)
    side = rule.comparison if fires else _opposite(rule.comparison)
    unit = Unit.PER_1000_ORDERS
    return Judgement(
        fires,
        rate,
        orders,
        figures={
            "value": _decimal_text(rate),
            "unit": unit.value,
            "threshold": _decimal_text(rule.threshold),
            "comparison": rule.comparison,
            "events": events,
            "sample": orders,
        },
        summary=f"{_format(rate, unit)} ({events} in {orders} orders), {side} "
        f"{_format(rule.threshold, unit)}",
    )


def _judge_baseline(
    rule: AlertRule,
    kpi: Kpi,
    scope: Scope,
    window: RollupTable,
    baseline: RollupTable,
    *,
    elapsed: timedelta,
) -> Judgement:
    current = _kpi_value(kpi, scope, window)
    before = _kpi_value(kpi, scope, baseline)
    if current.value is None or before.value is None:
        return Judgement(None)
    if not (_enough(rule, kpi, current.sample) and _enough(rule, kpi, before.sample)):
        return Judgement(None)
    if kpi.kind == Kind.MIX:
        return _judge_mix(rule, current, before)

    reference = before.value
    if kpi.kind == Kind.COUNT:
        # A count grows with the period, so compare with the baseline's count per window.
        reference = before.value * _hours(elapsed) / (rule.baseline_days * 24)
    if reference:
        change = (current.value - reference) / reference * 100
    elif not current.value:
        change = Decimal("0")
    elif current.sample >= rule.min_sample:
        # Rare events such as chargebacks often have a baseline of zero; any rate above it is
        # an unbounded rise.
        change = INFINITE_CHANGE
    else:
        return Judgement(None)  # a zero baseline and a handful of events

    # A baseline rule watches one direction, so a drop in cancellations opens nothing.
    moved = -change if rule.comparison == Comparison.BELOW else change
    fires = moved > rule.threshold
    return Judgement(
        fires,
        change,
        current.sample,
        figures={
            "value": _decimal_text(current.value),
            "unit": kpi.unit.value,
            "baseline": _decimal_text(reference),
            "change_percent": _decimal_text(change),
            "comparison": rule.comparison,
            "threshold": _decimal_text(rule.threshold),
            "sample": current.sample,
        },
        summary=f"{_change_text(rule, kpi, current.value, reference, change)}, "
        f"{_limit_text(rule, fires)}",
    )


def _judge_mix(rule: AlertRule, current: KpiValue, before: KpiValue) -> Judgement:
    """Judge a mix by the share that moved most; a mix has no direction, so both ways count."""
    shift = mix_shift(current.shares or {}, before.shares or {})
    if shift is None:
        return Judgement(None)

    fires = shift.percent > rule.threshold
    if shift.key is None:
        moved = f"no carrier has {_format(MIX_MIN_SHARE, Unit.SHARE)} of the mix"
    else:
        moved = (
            f"{shift.key} at {_format(shift.now, Unit.SHARE)} against "
            f"{_format(shift.before, Unit.SHARE)} over its {rule.baseline_days}-day baseline, "
            f"{_format(shift.percent, Unit.PERCENT)} off"
        )
    limit = f"{'more' if fires else 'not more'} than {_format(rule.threshold, Unit.PERCENT)}"
    return Judgement(
        fires,
        shift.percent,
        current.sample,
        figures={
            "shares": _shares_text(current.shares),
            "baseline_shares": _shares_text(before.shares),
            "moved": shift.key or "",
            "min_share": _decimal_text(MIX_MIN_SHARE),
            "deviation_percent": _decimal_text(shift.percent),
            "threshold": _decimal_text(rule.threshold),
            "sample": current.sample,
        },
        summary=f"{moved}, {limit}",
    )


def _change_text(
    rule: AlertRule, kpi: Kpi, value: Decimal, reference: Decimal, change: Decimal
) -> str:
    """Describe the change, e.g. "20 per 1,000 orders, up 100 % on its 7-day baseline of 10"."""
    days = rule.baseline_days
    if change == INFINITE_CHANGE:
        return f"{_format(value, kpi.unit)}, up from 0 over its {days}-day baseline"
    if change > 0:
        direction = f"up {_format(change, Unit.PERCENT)}"
    elif change < 0:
        direction = f"down {_format(-change, Unit.PERCENT)}"
    else:
        direction = "unchanged"
    return (
        f"{_format(value, kpi.unit)}, {direction} on its {days}-day baseline of "
        f"{_format(reference, kpi.unit)}"
    )


def _limit_text(rule: AlertRule, fires: bool) -> str:
    """Return e.g. "a rise of more than 50 %" or "not a drop of more than 50 %"."""
    movement = "drop" if rule.comparison == Comparison.BELOW else "rise"
    limit = f"a {movement} of more than {_format(rule.threshold, Unit.PERCENT)}"
    return limit if fires else f"not {limit}"


def _kpi_value(kpi: Kpi, scope: Scope, table: RollupTable) -> KpiValue:
    value = kpi_compute(kpi.slug, table, dimension=scope.dimension)
    if value.value is None and kpi.kind in GAUGE_KINDS and kpi.numerator in table:
        # The latest snapshot lists no open item for this dimension value: the queue is empty.
        return KpiValue(kpi, Decimal("0"), Decimal("0"), None, 0)
    return value


def _enough(rule: AlertRule, kpi: Kpi, sample: int) -> bool:
    # A count or a snapshot is a fact in itself; min_sample guards rates, means and mixes.
    return kpi.kind in VOLUME_KINDS or sample >= rule.min_sample


def _crosses(value: Decimal, threshold: Decimal, comparison: str) -> bool:
    return value < threshold if comparison == Comparison.BELOW else value > threshold


def _opposite(comparison: str) -> str:
    return "not below" if comparison == Comparison.BELOW else "not above"


# --- Raising and resolving -------------------------------------------------------------------


def _act(
    rule: AlertRule,
    kpi: Kpi,
    scope: Scope,
    judgement: Judgement,
    period: dict,
    open_alerts: dict[str, Alert],
    summary: EvaluationSummary,
) -> None:
    dedup_key = _dedup_key(rule, scope)
    current = open_alerts.get(dedup_key)
    if judgement.fires is None:
        summary.too_little_data += 1
        return

    data = judgement.figures | period | {"scope": scope.as_data(), "rule": rule.pk, "kpi": kpi.slug}
    if not judgement.fires:
        if current is not None:
            resolved = alert_resolve(
                dedup_key=dedup_key, resolution=f"Cleared: {judgement.summary}.", data=data
            )
            if resolved is not None:
                summary.resolved.append(resolved.pk)
        return

    if current is not None and current.data.get("evaluated_at") == period["evaluated_at"]:
        return  # already raised by an evaluation at this same moment
    on = f" ({scope.label()})" if scope.label() else ""
    alert = alert_raise(
        severity=rule.severity,
        source=SOURCE,
        dedup_key=dedup_key,
        title=f"{kpi.name}{on}: {judgement.summary}"[:300],
        detail=_detail(rule, period),
        owner_group=rule.owner_group.name,
        runbook=rule.runbook,
        data=data,
        rule=rule,
        scope=scope.key(),
    )
    (summary.opened if alert.occurrences == 1 else summary.raised_again).append(alert.pk)


def _dedup_key(rule: AlertRule, scope: Scope) -> str:
    return f"rule:{rule.pk}:{scope.key()}"


def _detail(rule: AlertRule, period: dict) -> str:
    text = f"Rule {rule.name!r}, measured over {period['window_hours']} hours up to now."
    if rule.description:
        text = f"{rule.description}\n\n{text}"
    return text


# --- Formatting ------------------------------------------------------------------------------


def _format(value: Decimal, unit: Unit) -> str:
    """Format a value for a title: "3.1 per 1,000 orders", "0.45 %", "41 min"."""
    if unit == Unit.SECONDS:
        if value >= 120:
            return f"{_number(value / 60, places=0)} min"
        return f"{_number(value, places=0)} s"
    if unit == Unit.SHARE:
        return f"{_number(value * 100)} %"
    if unit == Unit.COUNT:
        return _number(value)
    if unit == Unit.PERCENT:
        return f"{_number(value)} %"
    return f"{_number(value)} {unit.value}"


def _number(value: Decimal, *, places: int = 2) -> str:
    """Round to `places` decimals and drop trailing zeros: 3.10 -> "3.1", 1200 -> "1,200"."""
    rounded = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{rounded:,.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _decimal_text(value: Decimal) -> str:
    if value.is_infinite():
        return str(value)  # "Infinity", which Decimal() and float() read back
    return _number(value, places=4).replace(",", "")


def _shares_text(shares: dict[str, Decimal] | None) -> dict[str, str]:
    return {key: _decimal_text(share) for key, share in sorted((shares or {}).items())}


def _hours(span: timedelta) -> Decimal:
    return (Decimal(span.total_seconds()) / Decimal(HOUR.total_seconds())).quantize(Decimal("0.01"))
