"""Figures the reliability suites measure, for the terminal summary and docs/reliability.md.

Every suite calls `figure()` for what it counted (deliveries sent, orders created, requests
that got a 5xx, seconds until recovery). The figures are printed at the end of the pytest run
and, when OMSGUARD_RELIABILITY_FIGURES names a file, appended to it as JSON lines, which
`make reliability` turns into the tables of docs/reliability.md.

OMSGUARD_RELIABILITY_SCALE chooses the size of each suite: "full" for `make reliability`, and
the smaller "ci" (the default) inside `make test`, so CI stays within its time budget.
"""

import json
import os
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

SCALES = ("ci", "full")


@dataclass(frozen=True)
class Figure:
    suite: str
    name: str
    value: int | float | str
    unit: str
    scale: str


recorded: list[Figure] = []


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
    recorded.append(entry)

    target = os.environ.get("OMSGUARD_RELIABILITY_FIGURES")
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(entry)) + "\n")
