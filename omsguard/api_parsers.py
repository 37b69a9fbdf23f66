"""The REST API's parsers: DRF's, with clear 400s for input the database cannot take.

PostgreSQL cannot store the NUL character in a text or jsonb column, and a query that
compares a column with a string containing it fails with a DataError, a 500. DRF's CharField
rejects NUL on its own, but a slug lookup, a JSONField or a view that reads the parsed data
itself would pass it on. So every parser here rejects a body with NUL in any key or string,
naming where it is.
"""

from collections.abc import Iterator

from django.http import QueryDict
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

NUL = "\x00"
MALFORMED_JSON = "malformed_json"
NUL_MESSAGE = "Contains a NUL character (\\u0000), which the database cannot store."


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with clear 400s for deep nesting and for NUL characters.

    Python's json module recurses once per nesting level, so a body of 100,000 `[` raises
    RecursionError, which would otherwise become a 500.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        # The code is the one POST /api/v1/orders/ gives a body it cannot decode itself, so a
        # client sees one code for invalid JSON on every endpoint (DRF's is "parse_error").
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(
                "JSON parse error: the document is nested too deeply.", code=MALFORMED_JSON
            ) from None
        except ParseError as error:
            # str(): the detail is an ErrorDetail that carries DRF's own code, which would win.
            raise ParseError(str(error.detail), code=MALFORMED_JSON) from None
        check_no_nul(data)
        return data


class FormParser(parsers.FormParser):
    """DRF's form parser, with a clear 400 for NUL characters."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        check_no_nul(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, with a clear 400 for NUL characters in the form fields."""

    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        check_no_nul(parsed.data)
        return parsed


def check_no_nul(data: object) -> None:
    """Raise ValidationError naming every field whose name or text contains a NUL character."""
    fields = nul_fields(data)
    if fields:
        raise ValidationError(fields)


def nul_fields(data: object) -> dict[str, list[str]]:
    """Return {field path: [message]} for every key or string in `data` with a NUL character."""
    return {path: [NUL_MESSAGE] for path in _nul_paths(data, "")}


def _nul_paths(node: object, path: str) -> Iterator[str]:
    """Yield the path of every string with a NUL, as the API names fields: "lines[0].sku"."""
    if isinstance(node, str):
        if NUL in node:
            yield path or "body"
    elif isinstance(node, QueryDict):
        for key, values in node.lists():
            if any(NUL in text for text in (key, *values)):
                yield _printable(key)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _nul_paths(item, f"{path}[{index}]")
    elif isinstance(node, dict):
        for key, value in node.items():
            name = f"{path}.{key}" if path else str(key)
            if NUL in name:
                yield _printable(name)
            else:
                yield from _nul_paths(value, name)


def _printable(name: str) -> str:
    return name.replace(NUL, "\\u0000")
