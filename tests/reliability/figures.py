"""Figures the reliability suites measure, for the terminal summary and docs/reliability.md.

Every suite calls `figure()` for what it counted (deliveries sent, orders created, requests
that got a 5xx, seconds until recovery). The figures are printed at the end of the pytest run
and, when OMSGUARD_RELIABILITY_FIGURES names a file, appended to it as JSON lines, which
`make reliability` turns into the tables of docs/reliability.md.

Under pytest-xdist a worker records the figure, but the controller prints the summary: each
figure travels to it in the user_properties of the next test report. tests/conftest.py
registers this module as the plugin that attaches, collects and prints them.

OMSGUARD_RELIABILITY_SCALE chooses the size of each suite: "full" for `make reliability`, and
the smaller "ci" (the default) inside `make test`, so CI stays within its time budget.
"""

import json
import os
from collections.abc import Generator
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

import pytest

SCALES = ("ci", "full")


@dataclass(frozen=True)
class Figure:
    suite: str
    name: str
    value: int | float | str
    unit: str
    scale: str


# The figures of every test report this process received: the whole run's in a serial run or
# in the xdist controller, the worker's own share in an xdist worker.
recorded: list[Figure] = []
# Figures recorded in this process that no test report carries yet.
_unreported: list[Figure] = []
USER_PROPERTY = "reliability_figure"


def scale() -> str:
    value = os.environ.get("OMSGUARD_RELIABILITY_SCALE", "ci").strip().lower() or "ci"
    if value not in SCALES:
        raise ValueError(f"OMSGUARD_RELIABILITY_SCALE must be one of {SCALES}, got {value!r}.")
    return value


def sized(*, full: int | float, ci: int | float) -> int | float:
    """The suite parameter for the current scale: `full` for make reliability, `ci` otherwise."""
    return full if scale() == "full" else ci


def figure(suite: str, name: str, value: int | float | Decimal | str, unit: str = "") -> None:
    """Record one measured figure of a suite, e.g. figure("duplicates", "orders lost", 0)."""
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float):
        value = round(value, 3)
    entry = Figure(suite=suite, name=name, value=value, unit=unit, scale=scale())
    _unreported.append(entry)

    target = os.environ.get("OMSGUARD_RELIABILITY_FIGURES")
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(entry)) + "\n")


# --- Plugin hooks (registered by tests/conftest.py) -------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator:
    # The report of the phase that recorded a figure carries it. A module fixture records its
    # figures at teardown, so the teardown report of the module's last test carries them.
    report = yield
    report.user_properties.extend((USER_PROPERTY, asdict(entry)) for entry in _unreported)
    _unreported.clear()
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == USER_PROPERTY:
            recorded.append(Figure(**value))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not recorded:
        return
    terminalreporter.section("reliability figures")
    for entry in recorded:
        unit = f" {entry.unit}" if entry.unit else ""
        terminalreporter.write_line(
            f"{entry.suite:<14} {entry.name:<52} {entry.value}{unit}  [{entry.scale}]"
        )
