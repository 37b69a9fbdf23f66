"""Order history as JSON and CSV for auditors, with customer personal data masked on request.

The date-range export streams: rows are formatted as the selector yields them, so a month of
history never sits in memory at once.
"""

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from .masking import mask_personal_data, mask_text
from .selectors import HistoryEntry

EXPORT_MAX_DAYS = 31
EXPORT_FORMATS = ("csv", "json")

CSV_COLUMNS = [
    "at",
    "order_id",
    "source",
    "action",
    "target",
    "actor_kind",
    "actor",
    "summary",
    "decision_id",
    "action_code",
    "policy_version",
    "verdict",
    "confidence",
    "model",
    "review_item_id",
    "reviewed_by",
    "reviewed_at",
    "review_outcome",
    "applied",
    "reverted_by",
    "reverted_at",
    "before",
    "after",
    "facts",
    "data",
]
JSON_COLUMNS = ("before", "after", "facts", "data")
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class HistoryRangeError(Exception):
    """Invalid export parameters; `errors` maps each parameter to its reasons."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{key}: {' '.join(value)}" for key, value in errors.items()))


@dataclass(frozen=True)
class HistoryRange:
    start: datetime
    end: datetime
    format: str

    @property
    def filename(self) -> str:
        last_day = (self.end - timedelta(days=1)).date()
        return f"order-history-{self.start.date()}-to-{last_day}.{self.format}"


def history_range_parse(params) -> HistoryRange:
    """Read `from`, `to` (inclusive dates, UTC) and `format` from the query parameters.

    Raises HistoryRangeError for a missing or invalid date, `to` before `from`, a range of
    more than EXPORT_MAX_DAYS days, or a format other than csv and json.
    """
    errors: dict[str, list[str]] = {}
    first = _date_param(params, "from", errors)
    last = _date_param(params, "to", errors)
    export_format = params.get("format", "csv")
    if export_format not in EXPORT_FORMATS:
        errors["format"] = [f"{export_format!r} is not a supported format; use csv or json."]
    if last and last >= date.max - timedelta(days=1):
        # The range ends at midnight after `to`, which must still be a date.
        errors["to"] = [f"Must be before {date.max.isoformat()}."]
    elif first and last and last < first:
        errors["to"] = [f"Must be on or after from ({first.isoformat()})."]
    elif first and last and (last - first).days + 1 > EXPORT_MAX_DAYS:
        days = (last - first).days + 1
        errors["to"] = [
            f"The range covers {days} days; at most {EXPORT_MAX_DAYS} days per request, so "
            "export it in parts."
        ]
    if errors:
        raise HistoryRangeError(errors)
    return HistoryRange(
        start=datetime.combine(first, time.min, tzinfo=UTC),
        end=datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC),
        format=export_format,
    )


def _date_param(params, name: str, errors: dict) -> date | None:
    value = params.get(name, "")
    if not value:
        errors[name] = ["Required, as YYYY-MM-DD."]
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[name] = [f"{value!r} is not a valid date; use YYYY-MM-DD."]
        return None


def history_entry_as_dict(entry: HistoryEntry, *, mask: bool) -> dict[str, Any]:
    """Return the entry as JSON-ready data, with customer personal data masked if `mask`."""
    row = {column: getattr(entry, column) for column in CSV_COLUMNS}
    if mask:
        row["summary"] = mask_text(row["summary"])
        for column in JSON_COLUMNS:
            row[column] = mask_personal_data(row[column])
    return json.loads(json.dumps(row, cls=DjangoJSONEncoder))


def history_csv_lines(entries: Iterable[HistoryEntry], *, mask: bool) -> Iterator[str]:
    """Yield the CSV text line by line, header first. JSON columns contain compact JSON."""
    buffer = _LineBuffer()
    writer = csv.writer(buffer)
    yield writer.writerow(CSV_COLUMNS)
    for entry in entries:
        row = history_entry_as_dict(entry, mask=mask)
        yield writer.writerow([_csv_cell(column, row[column]) for column in CSV_COLUMNS])


def history_json_chunks(
    entries: Iterable[HistoryEntry], *, mask: bool, header: dict
) -> Iterator[str]:
    """Yield one JSON object `{...header, "entries": [...]}` in pieces, an entry per piece."""
    opening = json.dumps(header, cls=DjangoJSONEncoder)[:-1]
    yield f'{opening}{", " if header else ""}"entries": ['
    separator = ""
    for entry in entries:
        yield separator + json.dumps(history_entry_as_dict(entry, mask=mask))
        separator = ",\n"
    yield "]}\n"


def _csv_cell(column: str, value: Any) -> str:
    if column in JSON_COLUMNS:
        return "" if value is None else json.dumps(value, separators=(",", ":"))
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


class _LineBuffer:
    """A file-like object whose write returns the text, so csv.writer can feed a generator."""

    def write(self, text: str) -> str:
        return text
