"""Reading import files: CSV (UTF-8, comma, semicolon or tab separated) and XLSX."""

import csv
import io
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import IO

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

SKU_COLUMNS = (
    "title",
    "category",
    "price",
    "cost",
    "currency",
    "weight_grams",
    "length_mm",
    "width_mm",
    "height_mm",
    "attributes",
    "active",
)
MAPPING_COLUMNS = ("channel", "id_kind", "external_id")
COLUMNS = ("code", *SKU_COLUMNS, *MAPPING_COLUMNS)

_ZIP_MAGIC = b"PK\x03\x04"
_DELIMITERS = (",", ";", "\t")


class ImportFileError(Exception):
    """The file as a whole cannot be imported; `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(slots=True)
class RawRow:
    """One data row: its spreadsheet number (header = 1) and its cells, stripped."""

    number: int
    cells: dict[str, str]
    extra_cells: list[str] = field(default_factory=list)


@dataclass
class Table:
    columns: list[str]
    _rows: Iterator[tuple[int, list[str]]]

    def rows(self) -> Iterator[RawRow]:
        """Yield the data rows; rows whose cells are all empty are skipped."""
        width = len(self.columns)
        for number, values in self._rows:
            if not any(values):
                continue
            padded = values[:width] + [""] * (width - len(values))
            yield RawRow(
                number=number,
                cells=dict(zip(self.columns, padded, strict=True)),
                extra_cells=[value for value in values[width:] if value],
            )


@contextmanager
def open_table(file: IO[bytes]) -> Iterator[Table]:
    """Open an uploaded file as a table; the format comes from its content, not its name."""
    head = file.read(len(_ZIP_MAGIC))
    file.seek(0)
    if head == _ZIP_MAGIC:
        with _open_xlsx(file) as table:
            yield table
    else:
        yield _open_csv(file)


def _open_csv(file: IO[bytes]) -> Table:
    text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
    try:
        header_line = text.readline()
    except UnicodeDecodeError:
        raise _not_utf8() from None
    if not header_line.strip():
        raise ImportFileError("empty_file", "The file is empty; it needs a header row.")
    reader = csv.reader(_chain_first(header_line, text), delimiter=_delimiter_for(header_line))
    return Table(columns=check_header(next(reader)), _rows=_csv_rows(reader))


def _csv_rows(reader) -> Iterator[tuple[int, list[str]]]:
    number = 1
    try:
        for values in reader:
            number += 1
            yield number, [value.strip() for value in values]
    except UnicodeDecodeError:
        raise _not_utf8() from None
    except csv.Error as error:
        raise ImportFileError(
            "invalid_csv", f"Row {number + 1} is not valid CSV: {error}. Fix the quoting."
        ) from None


def _chain_first(first: str, rest: IO[str]) -> Iterator[str]:
    yield first
    yield from rest


def _delimiter_for(header_line: str) -> str:
    """Return the delimiter that splits the header into a `code` column, or a comma."""
    for delimiter in _DELIMITERS:
        names = [name.strip().strip('"').lower() for name in header_line.split(delimiter)]
        if "code" in names:
            return delimiter
    return ","


@contextmanager
def _open_xlsx(file: IO[bytes]) -> Iterator[Table]:
    try:
        workbook = load_workbook(file, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise ImportFileError(
            "invalid_xlsx", f"The file is not a readable XLSX workbook ({error})."
        ) from None
    try:
        sheet = workbook.worksheets[0]
        values = sheet.iter_rows(values_only=True)
        header = next(values, None)
        if header is None:
            raise ImportFileError("empty_file", "The first worksheet is empty; it needs a header.")
        columns = check_header([cell_text(cell) for cell in header])
        yield Table(columns=columns, _rows=_xlsx_rows(values))
    finally:
        workbook.close()


def _xlsx_rows(values) -> Iterator[tuple[int, list[str]]]:
    for number, row in enumerate(values, start=2):
        yield number, [cell_text(cell) for cell in row]


def cell_text(value: object) -> str:
    """Convert an XLSX cell to the text a person would have typed into a CSV file."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # repr gives the shortest text that reads back as the same float: 19.99, not 19.989999.
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value).strip()


def check_header(header: list[str]) -> list[str]:
    """Normalise the header names and reject unknown, repeated or missing columns."""
    columns = [name.strip().lower().replace(" ", "_") for name in header]
    while columns and not columns[-1]:
        columns.pop()

    if "" in columns:
        raise ImportFileError(
            "missing_column_name",
            f"Column {columns.index('') + 1} of the header has no name. Name it or delete it.",
        )
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown:
        raise ImportFileError(
            "unknown_column",
            f"Unknown column {unknown[0]!r} in the header. Known columns: {', '.join(COLUMNS)}.",
        )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise ImportFileError(
            "repeated_column", f"Column {repeated[0]!r} appears more than once in the header."
        )
    if "code" not in columns:
        raise ImportFileError(
            "missing_column", "The header has no 'code' column; every row needs a SKU code."
        )
    if "title" not in columns and "external_id" not in columns:
        raise ImportFileError(
            "missing_column",
            "The header needs a 'title' column (to create or change SKUs) or an "
            "'external_id' column (to map channel identifiers).",
        )
    return columns


def _not_utf8() -> ImportFileError:
    # No row number: the text is decoded in blocks, ahead of the row being parsed.
    return ImportFileError(
        "not_utf8", "The file is not UTF-8 text. Save it as 'CSV UTF-8' or as an XLSX workbook."
    )
