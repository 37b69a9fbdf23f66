"""Parsing one import row into SKU field values and a mapping, without touching the database."""

import json
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from omsguard.money import is_currency

from ..identifiers import external_id_problem, id_kind_problem
from ..models import MAX_INTEGER, Channel, ExternalIdKind
from .reader import SKU_COLUMNS, RawRow

_CODE_LENGTH = 64
_TEXT_LENGTHS = {"title": 300, "category": 200}
# The Sku price and cost columns hold 14 digits, 3 of them after the decimal point.
_MAX_AMOUNT = Decimal(10) ** 11
_COST_PLACES = Decimal("0.001")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}
_ID_KINDS = frozenset(ExternalIdKind.values)
# Import column -> Sku field, where the names differ.
FIELD_FOR_COLUMN = {"active": "is_active"}


class RowErrorCode(StrEnum):
    MISSING = "missing"
    TOO_LONG = "too_long"
    INVALID_TEXT = "invalid_text"
    INVALID_NUMBER = "invalid_number"
    OUT_OF_RANGE = "out_of_range"
    INVALID_CURRENCY = "invalid_currency"
    INVALID_ATTRIBUTES = "invalid_attributes"
    INVALID_BOOLEAN = "invalid_boolean"
    UNKNOWN_CHANNEL = "unknown_channel"
    UNKNOWN_ID_KIND = "unknown_id_kind"
    ID_KIND_NOT_USED = "id_kind_not_used"
    INVALID_EXTERNAL_ID = "invalid_external_id"
    EXTRA_CELLS = "extra_cells"
    DUPLICATE_SKU_ROW = "duplicate_sku_row"
    UNKNOWN_SKU = "unknown_sku"
    SKU_ROW_INVALID = "sku_row_invalid"
    MAPPING_CONFLICT = "mapping_conflict"


@dataclass(slots=True)
class RowError:
    row: int
    column: str
    value: str
    code: RowErrorCode
    reason: str


@dataclass(slots=True)
class ParsedRow:
    """A row whose cells are all well-formed.

    `fields` contains Sku field values for the SKU columns in the header, or None when the row
    only carries a mapping. `mapping` is (channel, id_kind, external_id) or None.
    """

    number: int
    code: str
    fields: dict[str, Any] | None
    mapping: tuple[Channel, str, str] | None


class _Cells:
    """A row's cells plus the errors found while converting them."""

    def __init__(self, row: RawRow) -> None:
        self.row = row
        self.errors: list[RowError] = []

    def get(self, column: str) -> str:
        return self.row.cells.get(column, "")

    def error(self, column: str, code: RowErrorCode, reason: str) -> None:
        self.errors.append(RowError(self.row.number, column, self.get(column), code, reason))


def parse_row(
    row: RawRow, *, channels: dict[str, Channel], default_channel: Channel | None
) -> ParsedRow | list[RowError]:
    """Convert a row's cells, or return every problem found in it."""
    cells = _Cells(row)
    if row.extra_cells:
        cells.errors.append(
            RowError(
                row.number,
                "",
                row.extra_cells[0],
                RowErrorCode.EXTRA_CELLS,
                f"the row has {len(row.extra_cells)} more filled cells than the header has columns",
            )
        )

    code = _text(cells, "code", _CODE_LENGTH, required=True)
    # A code starting with one of these runs as a formula when a spreadsheet opens an export.
    if code and code[0] in _FORMULA_STARTS:
        cells.error(
            "code",
            RowErrorCode.INVALID_TEXT,
            "must not start with =, +, -, @ or a tab (spreadsheets run such cells as formulas)",
        )
    fields = _sku_fields(cells)
    mapping = _mapping(cells, channels=channels, default_channel=default_channel)
    if fields is None and mapping is None and not cells.errors:
        cells.error(
            "title",
            RowErrorCode.MISSING,
            "missing: a row needs a title to create or change a SKU, or an external_id to map",
        )

    if cells.errors:
        return cells.errors
    return ParsedRow(number=row.number, code=code, fields=fields, mapping=mapping)


def _sku_fields(cells: _Cells) -> dict[str, Any] | None:
    present = [column for column in SKU_COLUMNS if column in cells.row.cells]
    if not cells.get("title"):
        filled = [column for column in present if cells.get(column)]
        if filled:
            cells.error(
                "title",
                RowErrorCode.MISSING,
                f"missing: the row sets {filled[0]}, and rows that change a SKU need its title",
            )
        return None

    fields: dict[str, Any] = {}
    for column in present:
        fields[FIELD_FOR_COLUMN.get(column, column)] = _CONVERTERS[column](cells, column)
    return fields


_FORMULA_STARTS = frozenset("=+-@\t")


def _text(cells: _Cells, column: str, max_length: int, *, required: bool = False) -> str:
    value = cells.get(column)
    if required and not value:
        cells.error(column, RowErrorCode.MISSING, "missing")
    elif len(value) > max_length:
        cells.error(column, RowErrorCode.TOO_LONG, f"longer than {max_length} characters")
    elif _CONTROL_CHARACTERS.search(value):
        cells.error(column, RowErrorCode.INVALID_TEXT, "contains control characters")
    return value


def _decimal(cells: _Cells, column: str) -> Decimal | None:
    value = cells.get(column)
    if not value:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        cells.error(column, RowErrorCode.INVALID_NUMBER, "not a number; write it like 19.99")
        return None
    if not number.is_finite():
        cells.error(column, RowErrorCode.INVALID_NUMBER, "not a number; write it like 19.99")
        return None
    if number < 0 or number >= _MAX_AMOUNT:
        cells.error(column, RowErrorCode.OUT_OF_RANGE, f"must be from 0 to below {_MAX_AMOUNT}")
        return None
    return number


def _price(cells: _Cells, column: str) -> Decimal | None:
    # Rounded to the currency's minor unit later, once the currency is known.
    return _decimal(cells, column)


def _cost(cells: _Cells, column: str) -> Decimal | None:
    number = _decimal(cells, column)
    return number.quantize(_COST_PLACES, rounding=ROUND_HALF_UP) if number is not None else None


def _integer(cells: _Cells, column: str) -> int | None:
    value = cells.get(column)
    if not value:
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number != number.to_integral_value():
        cells.error(column, RowErrorCode.INVALID_NUMBER, "not a whole number")
        return None
    if not 0 <= number <= MAX_INTEGER:
        cells.error(column, RowErrorCode.OUT_OF_RANGE, f"must be from 0 to {MAX_INTEGER}")
        return None
    return int(number)


def _currency(cells: _Cells, column: str) -> str:
    value = cells.get(column).upper()
    if value and not is_currency(value):
        cells.error(
            column, RowErrorCode.INVALID_CURRENCY, "not an ISO 4217 currency code such as USD"
        )
    return value


def _attributes(cells: _Cells, column: str) -> dict[str, Any]:
    value = cells.get(column)
    if not value:
        return {}
    try:
        attributes = _parse_json_attributes(value) if value.startswith("{") else None
        if attributes is None:
            attributes = _parse_pair_attributes(value)
    except ValueError as error:
        cells.error(column, RowErrorCode.INVALID_ATTRIBUTES, str(error))
        return {}
    return attributes


def _parse_json_attributes(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON: {error.msg} at character {error.pos + 1}") from None
    if not isinstance(parsed, dict):
        raise ValueError('must be a JSON object such as {"colour": "Black"}')
    for key, item in parsed.items():
        if not key.strip():
            raise ValueError("an attribute name is empty")
        if isinstance(item, dict | list) or item is None:
            raise ValueError(f"attribute {key!r} must be text, a number or true/false")
    return {key.strip(): item for key, item in parsed.items()}


def _parse_pair_attributes(value: str) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for pair in value.split(";"):
        if not pair.strip():
            continue
        key, separator, item = pair.partition("=")
        key, item = key.strip(), item.strip()
        if not separator or not key:
            raise ValueError(f"{pair.strip()!r} is not name=value; write colour=Black;size=M")
        if key in attributes:
            raise ValueError(f"attribute {key!r} appears twice")
        attributes[key] = item
    return attributes


def _active(cells: _Cells, column: str) -> bool:
    value = cells.get(column).lower()
    if not value or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    cells.error(column, RowErrorCode.INVALID_BOOLEAN, "use true or false (or yes/no, 1/0)")
    return True


_CONVERTERS = {
    "title": lambda cells, column: _text(cells, column, _TEXT_LENGTHS["title"]),
    "category": lambda cells, column: _text(cells, column, _TEXT_LENGTHS["category"]),
    "price": _price,
    "cost": _cost,
    "currency": _currency,
    "weight_grams": _integer,
    "length_mm": _integer,
    "width_mm": _integer,
    "height_mm": _integer,
    "attributes": _attributes,
    "active": _active,
}


def _mapping(
    cells: _Cells, *, channels: dict[str, Channel], default_channel: Channel | None
) -> tuple[Channel, str, str] | None:
    external_id = cells.get("external_id")
    if not external_id:
        for column in ("channel", "id_kind"):
            if cells.get(column):
                cells.error(
                    "external_id", RowErrorCode.MISSING, f"missing: the row names a {column}"
                )
                break
        return None

    channel_code = cells.get("channel")
    channel = channels.get(channel_code) if channel_code else default_channel
    if channel is None:
        if channel_code:
            cells.error("channel", RowErrorCode.UNKNOWN_CHANNEL, "no channel has this code")
        else:
            cells.error(
                "channel", RowErrorCode.MISSING, "missing: give a channel code or a default channel"
            )

    id_kind = cells.get("id_kind").lower()
    if not id_kind:
        cells.error("id_kind", RowErrorCode.MISSING, "missing")
    elif id_kind not in _ID_KINDS:
        cells.error(
            "id_kind",
            RowErrorCode.UNKNOWN_ID_KIND,
            f"unknown; use one of: {', '.join(ExternalIdKind.values)}",
        )
    else:
        problem = external_id_problem(id_kind=id_kind, external_id=external_id)
        if problem:
            cells.error("external_id", RowErrorCode.INVALID_EXTERNAL_ID, problem)
        if channel is not None:
            problem = id_kind_problem(channel_kind=channel.kind, id_kind=id_kind)
            if problem:
                cells.error("id_kind", RowErrorCode.ID_KIND_NOT_USED, problem)

    if channel is None or cells.errors:
        return None
    return channel, id_kind, external_id
