"""The dashboard's SVG line charts: geometry, gaps, target line, summary and escaping."""

import xml.etree.ElementTree as ET
from datetime import date, timedelta
from decimal import Decimal

import pytest

from monitoring.charts import (
    MARGIN_BOTTOM,
    MARGIN_LEFT,
    MARGIN_RIGHT,
    MARGIN_TOP,
    line_chart_svg,
    value_format,
)
from monitoring.kpis import Unit

SVG = "{http://www.w3.org/2000/svg}"
WIDTH, HEIGHT = 200, 100
LEFT, RIGHT = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
TOP, BOTTOM = MARGIN_TOP, HEIGHT - MARGIN_BOTTOM
FIRST = date(2025, 3, 1)


def chart(points, *, target=None, unit=Unit.COUNT, label="") -> ET.Element:
    markup = line_chart_svg(
        points, target=target, unit=unit, width=WIDTH, height=HEIGHT, label=label
    )
    return ET.fromstring(str(markup))  # noqa: S314 - markup the chart code generated


def days(*values) -> list[tuple[date, Decimal | None]]:
    return [
        (FIRST + timedelta(days=index), None if value is None else Decimal(value))
        for index, value in enumerate(values)
    ]


def paths(svg: ET.Element) -> list[str]:
    return [path.get("d") for path in svg.iter(f"{SVG}path")]


def markers(svg: ET.Element) -> list[tuple[float, float, str]]:
    return [
        (float(circle.get("cx")), float(circle.get("cy")), circle.find(f"{SVG}title").text)
        for circle in svg.iter(f"{SVG}circle")
    ]


def test_known_points_geometry():
    svg = chart(days("0", "5", "10"))

    assert svg.get("viewBox") == f"0 0 {WIDTH} {HEIGHT}"
    assert svg.get("role") == "img"
    # The y axis runs from 0 at the bottom to the top tick, 10, at the top margin.
    middle_x = (LEFT + RIGHT) / 2
    middle_y = (TOP + BOTTOM) / 2
    assert paths(svg) == [f"M{LEFT},{BOTTOM} L{middle_x:g},{middle_y:g} L{RIGHT},{TOP}"]
    assert markers(svg) == [
        (LEFT, BOTTOM, "2025-03-01: 0"),
        (middle_x, middle_y, "2025-03-02: 5"),
        (RIGHT, TOP, "2025-03-03: 10"),
    ]


def test_y_ticks_of_counts_are_whole_numbers():
    svg = chart(days("0", "5", "10"))

    texts = [text.text for text in svg.find(f"{SVG}g").iter(f"{SVG}text")]
    assert texts[:3] == ["0", "5", "10"]
    assert texts[3:] == ["1 Mar", "3 Mar"]


@pytest.mark.parametrize(
    ("unit", "values", "ticks"),
    [
        (Unit.PERCENT, ("0.1", "0.2"), ["0.00 %", "0.05 %", "0.10 %", "0.15 %", "0.20 %"]),
        (Unit.PER_1000_ORDERS, ("3", "7.5"), ["0.0", "2.0", "4.0", "6.0", "8.0"]),
        (Unit.SECONDS, ("90", "9000"), ["0 h", "1 h", "2 h", "3 h"]),
        (Unit.SECONDS, ("100", "240"), ["0 min", "1 min", "2 min", "3 min", "4 min"]),
        (Unit.SHARE, ("0.25", "0.5"), ["0 %", "20 %", "40 %", "60 %"]),
    ],
)
def test_y_ticks_in_the_unit(unit, values, ticks):
    svg = chart(days(*values), unit=unit)

    texts = [text.text for text in svg.find(f"{SVG}g").iter(f"{SVG}text")]
    assert texts[: len(ticks)] == ticks


def test_empty_series():
    svg = chart([])

    assert paths(svg) == []
    assert markers(svg) == []
    assert svg.get("aria-label") == "No data."
    assert [text.text for text in svg.iter(f"{SVG}text")][-1] == "No data"


def test_series_without_values_says_no_data():
    svg = chart(days(None, None), label="Chargebacks")

    assert markers(svg) == []
    assert svg.get("aria-label") == "Chargebacks: no data."
    assert "No data" in [text.text for text in svg.iter(f"{SVG}text")]


def test_one_point_sits_in_the_middle():
    svg = chart(days("4"))

    assert paths(svg) == []  # A single day has no line, only its marker.
    assert markers(svg) == [((LEFT + RIGHT) / 2, TOP, "2025-03-01: 4")]


def test_gap_splits_the_line():
    svg = chart(days("2", "4", None, "4", "2"))

    assert len(paths(svg)) == 2
    first, second = paths(svg)
    assert first.startswith(f"M{LEFT},")
    assert first.count("L") == 1
    assert second.endswith(f"L{RIGHT},{(TOP + BOTTOM) / 2:g}")
    assert [title for _x, _y, title in markers(svg)] == [
        "2025-03-01: 2",
        "2025-03-02: 4",
        "2025-03-04: 4",
        "2025-03-05: 2",
    ]
    assert "1 day without data" in svg.get("aria-label")


def test_lone_days_between_gaps_have_markers_only():
    svg = chart(days("1", None, "3", None))

    assert paths(svg) == []
    assert len(markers(svg)) == 2
    assert "2 days without data" in svg.get("aria-label")


def test_target_line_is_dashed_at_its_value():
    svg = chart(days("0.1", "0.1"), target=Decimal("0.2"), unit=Unit.PERCENT)

    (line,) = [line for line in svg.iter(f"{SVG}line") if line.get("class") == "chart-target"]
    # The target is the highest value, so the axis tops out at it.
    assert (line.get("y1"), line.get("y2")) == (str(TOP), str(TOP))
    assert (line.get("x1"), line.get("x2")) == (str(LEFT), str(RIGHT))
    assert line.get("stroke-dasharray")
    assert line.find(f"{SVG}title").text == "Target: 0.20 %"
    assert markers(svg)[0][1] == (TOP + BOTTOM) / 2


def test_no_target_line_without_target():
    svg = chart(days("1", "2"))

    assert [line for line in svg.iter(f"{SVG}line") if line.get("class") == "chart-target"] == []


def test_summary_names_span_latest_extremes_and_target():
    svg = chart(
        days("0.3", "0.1", "0.25"),
        target=Decimal("0.2"),
        unit=Unit.PERCENT,
        label="Fulfilment error rate",
    )

    assert svg.get("aria-label") == (
        "Fulfilment error rate: 3 days from 2025-03-01 to 2025-03-03; latest 0.25 % on "
        "2025-03-03, lowest 0.10 %, highest 0.30 %; target 0.20 %."
    )


def test_every_text_is_escaped():
    hostile = "<script>alert(\"x\")</script> & 'quotes'"
    markup = str(line_chart_svg(days("1", "2"), target=None, unit=hostile, label=hostile))

    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    svg = ET.fromstring(markup)  # noqa: S314 - still well-formed XML
    assert svg.get("aria-label").startswith(hostile + ": 2 days")


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (None, Unit.PERCENT, "no data"),
        (Decimal("45"), Unit.SECONDS, "45 s"),
        (Decimal("240"), Unit.SECONDS, "4 min"),
        (Decimal("270"), Unit.SECONDS, "4.5 min"),
        (Decimal("2700"), Unit.SECONDS, "45 min"),
        (Decimal("9000"), Unit.SECONDS, "2.5 h"),
        (Decimal("259200"), Unit.SECONDS, "3 days"),
        (Decimal("0.254"), Unit.PERCENT, "0.25 %"),
        (Decimal("2"), Unit.PERCENT, "2.00 %"),
        (Decimal("1.26"), Unit.PER_1000_ORDERS, "1.3 per 1,000 orders"),
        (Decimal("12345.6"), Unit.PER_10K_ORDERS, "12,345.6 per 10,000 orders"),
        (Decimal("0.523"), Unit.SHARE, "52.3 %"),
        (Decimal("1234"), Unit.COUNT, "1,234"),
    ],
)
def test_value_format(value, unit, text):
    assert value_format(value, unit) == text
