"""The REST API's JSON parser."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a clear 400 for documents nested too deeply to decode.

    Python's json module recurses once per nesting level, so a body of 100,000 `[` raises
    RecursionError, which would otherwise become a 500.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error: the document is nested too deeply.") from None
