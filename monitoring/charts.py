"""Server-side SVG line charts for the KPI dashboard, and KPI values formatted for people.

A chart is one inline `<svg>`: no JavaScript and nothing fetched from elsewhere. Each point
carries a `<title>` that browsers show on hover, and the chart's `aria-label` summarises the
series for screen readers. Colours and line widths live in static/css/dashboard.css.
"""

from collections.abc import Sequence
from datetime import date
from decimal import ROUND_CEILING, Decimal
from typing import NamedTuple

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .kpis import Unit

# Room around the plot for the y tick labels (left) and the first and last dates (bottom).
MARGIN_LEFT = 58
MARGIN_RIGHT = 10
MARGIN_TOP = 10
MARGIN_BOTTOM = 22
# About this many intervals between y ticks; the nice step may give one or two fewer.
TICK_INTERVALS = 4
POINT_RADIUS = 2.5

SECONDS_PER = {"s": 1, "min": 60, "h": 3600, "days": 86400}


class Scale(NamedTuple):
    """Display rule of a unit: raw values are multiplied by `factor`, then `suffix` appended."""

    factor: Decimal
    suffix: str
    decimals: int  # the minimum decimals shown, e.g. 2 for percent
    whole_steps: bool  # ticks only at whole numbers (counts)


def value_format(value: Decimal | None, unit: str) -> str:
    """Format a KPI value with its unit: "0.25 %", "12.3 per 1,000 orders", "4 min"."""
    if value is None:
        return "no data"
    if unit == Unit.SECONDS:
        return duration_format(value)
    if unit == Unit.PERCENT:
        return f"{value:.2f} %"
    if unit == Unit.SHARE:
        return f"{value * 100:.1f} %"
    if unit in (Unit.PER_1000_ORDERS, Unit.PER_10K_ORDERS):
        return f"{value:,.1f} {unit}"
    return f"{value:,.0f}"


def duration_format(seconds: Decimal) -> str:
    """Format seconds in the largest unit that keeps the number readable: "45 s", "2.5 h"."""
    if seconds < 60:
        return f"{_trim(seconds, 0)} s"
    if seconds < 3600:
        minutes = seconds / 60
        return f"{_trim(minutes, 1 if minutes < 10 else 0)} min"
    if seconds < 2 * 86400:
        return f"{_trim(seconds / 3600, 1)} h"
    return f"{_trim(seconds / 86400, 1)} days"


def line_chart_svg(
    points: Sequence[tuple[date, Decimal | None]],
    *,
    target: Decimal | None,
    unit: str,
    width: int = 320,
    height: int = 120,
    label: str = "",
) -> SafeString:
    """Draw the points, in date order, as a line with y ticks and an optional target line.

    A point whose value is None is a gap: the line stops before it and starts again after
    it. The y axis starts at zero, because every KPI is a count, a rate or a duration.
    `label` names the series in the accessible summary.
    """
    values = [value for _day, value in points if value is not None]
    top_raw = max([*values, target or Decimal("0"), Decimal("0")])
    scale = _scale(unit, top_raw)
    ticks, top = _ticks(top_raw * scale.factor, scale)
    plot = _Plot(width=width, height=height, top=top, factor=scale.factor, points=points)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(_summary(points, target=target, unit=unit, label=label))}">'
    ]
    parts += _axes(plot, ticks, scale)
    if not values:
        parts.append(
            f'<text class="chart-empty" x="{_n((plot.left + plot.right) / 2)}" '
            f'y="{_n((plot.top + plot.bottom) / 2)}" text-anchor="middle">No data</text>'
        )
    if target is not None:
        y = plot.y(target)
        parts.append(
            f'<line class="chart-target" x1="{_n(plot.left)}" y1="{_n(y)}" '
            f'x2="{_n(plot.right)}" y2="{_n(y)}" stroke-dasharray="5 4">'
            f"<title>{escape('Target: ' + value_format(target, unit))}</title></line>"
        )
    parts += _lines(plot, points)
    parts += _markers(plot, points, unit)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above went through escape()


class _Plot:
    """Maps dates and raw values to coordinates inside the margins."""

    def __init__(self, *, width, height, top: Decimal, factor: Decimal, points) -> None:
        self.left = MARGIN_LEFT
        self.right = width - MARGIN_RIGHT
        self.top = MARGIN_TOP
        self.bottom = height - MARGIN_BOTTOM
        self._top_value = top
        self._factor = factor
        self.first = points[0][0] if points else None
        self.last = points[-1][0] if points else None

    def x(self, day: date) -> float:
        span = (self.last - self.first).days
        if span == 0:
            return (self.left + self.right) / 2
        return self.left + (day - self.first).days / span * (self.right - self.left)

    def y(self, raw: Decimal) -> float:
        return self.y_display(raw * self._factor)

    def y_display(self, shown: Decimal) -> float:
        return self.bottom - float(shown / self._top_value) * (self.bottom - self.top)


def _axes(plot: _Plot, ticks: list[Decimal], scale: Scale) -> list[str]:
    step_decimals = _decimals_of(ticks[1] - ticks[0]) if len(ticks) > 1 else 0
    # Small values keep the unit's usual decimals (0.20 %); from 10 up, "40 %" reads better
    # than "40.00 %".
    decimals = step_decimals if ticks[-1] >= 10 else max(scale.decimals, step_decimals)
    parts = ['<g class="chart-axis">']
    for tick in ticks:
        y = _n(plot.y_display(tick))
        text = escape(f"{tick:,.{decimals}f}{scale.suffix}")
        parts.append(
            f'<line x1="{_n(plot.left)}" y1="{y}" x2="{_n(plot.right)}" y2="{y}"/>'
            f'<text x="{_n(plot.left - 6)}" y="{y}" dy="0.32em" text-anchor="end">{text}</text>'
        )
    if plot.first is not None:
        baseline = _n(plot.bottom + 15)
        parts.append(
            f'<text x="{_n(plot.left)}" y="{baseline}">{escape(_day_label(plot.first))}</text>'
        )
        if plot.last != plot.first:
            parts.append(
                f'<text x="{_n(plot.right)}" y="{baseline}" text-anchor="end">'
                f"{escape(_day_label(plot.last))}</text>"
            )
    parts.append("</g>")
    return parts


def _lines(plot: _Plot, points) -> list[str]:
    """Draw one path per run of days that have a value, so a day without one leaves a gap."""
    runs: list[list[tuple[date, Decimal]]] = [[]]
    for day, value in points:
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append((day, value))

    parts = []
    for run in runs:
        if len(run) < 2:
            continue  # A lone day shows as its marker only.
        steps = " ".join(
            f"{'M' if index == 0 else 'L'}{_n(plot.x(day))},{_n(plot.y(value))}"
            for index, (day, value) in enumerate(run)
        )
        parts.append(f'<path class="chart-line" d="{steps}" fill="none"/>')
    return parts


def _markers(plot: _Plot, points, unit: str) -> list[str]:
    parts = []
    for day, value in points:
        if value is None:
            continue
        hover = escape(f"{day.isoformat()}: {value_format(value, unit)}")
        parts.append(
            f'<circle class="chart-point" cx="{_n(plot.x(day))}" cy="{_n(plot.y(value))}" '
            f'r="{POINT_RADIUS}"><title>{hover}</title></circle>'
        )
    return parts


def _summary(points, *, target: Decimal | None, unit: str, label: str) -> str:
    """Describe the chart in words: span, latest, lowest and highest values, and gaps."""
    prefix = f"{label}: " if label else ""
    known = [(day, value) for day, value in points if value is not None]
    if not known:
        return f"{prefix}no data." if label else "No data."

    first, last = points[0][0], points[-1][0]
    latest_day, latest = known[-1]
    values = [value for _day, value in known]
    text = (
        f"{prefix}{len(points)} days from {first.isoformat()} to {last.isoformat()}; "
        f"latest {value_format(latest, unit)} on {latest_day.isoformat()}, "
        f"lowest {value_format(min(values), unit)}, highest {value_format(max(values), unit)}"
    )
    missing = len(points) - len(known)
    if missing:
        text += f"; {missing} {'day' if missing == 1 else 'days'} without data"
    if target is not None:
        text += f"; target {value_format(target, unit)}"
    return text + "."


def _scale(unit: str, top_raw: Decimal) -> Scale:
    if unit == Unit.SECONDS:
        for suffix, limit in (("s", 120), ("min", 7200), ("h", 2 * 86400)):
            if top_raw < limit:
                return Scale(Decimal(1) / SECONDS_PER[suffix], f" {suffix}", 0, False)
        return Scale(Decimal(1) / SECONDS_PER["days"], " days", 0, False)
    if unit == Unit.PERCENT:
        return Scale(Decimal(1), " %", 2, False)
    if unit == Unit.SHARE:
        return Scale(Decimal(100), " %", 0, False)
    if unit in (Unit.PER_1000_ORDERS, Unit.PER_10K_ORDERS):
        return Scale(Decimal(1), "", 1, False)
    return Scale(Decimal(1), "", 0, True)


def _ticks(top_shown: Decimal, scale: Scale) -> tuple[list[Decimal], Decimal]:
    """Tick values from zero to just above `top_shown`, at a step of 1, 2 or 5 times 10^n."""
    if top_shown <= 0:
        top_shown = Decimal(1)
    raw_step = top_shown / TICK_INTERVALS
    magnitude = Decimal(1).scaleb(raw_step.adjusted())
    step = next(magnitude * m for m in (1, 2, 5, 10) if magnitude * m >= raw_step)
    if scale.whole_steps:
        step = max(step, Decimal(1))
    intervals = int((top_shown / step).to_integral_value(rounding=ROUND_CEILING))
    ticks = [step * index for index in range(intervals + 1)]
    return ticks, ticks[-1]


def _decimals_of(step: Decimal) -> int:
    return max(0, -step.normalize().as_tuple().exponent)


def _trim(value: Decimal, decimals: int) -> str:
    """Format the value with at most `decimals` decimals and no trailing zeros: 2.50 -> "2.5"."""
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _day_label(day: date) -> str:
    return f"{day.day} {day:%b}"


def _n(number: float) -> str:
    """Format a coordinate with at most one decimal, so the markup stays short and stable."""
    text = f"{number:.1f}"
    return text[:-2] if text.endswith(".0") else text
