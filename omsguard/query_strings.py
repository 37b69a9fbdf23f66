"""Reject a query string that carries a NUL character with 400, naming the parameter.

PostgreSQL text cannot contain NUL (U+0000), and psycopg rejects such a value with DataError.
A view or admin changelist that passed the parameter to a filter therefore failed with a 500.
No page or endpoint takes a NUL, so the request stops here, before any view runs. SQLite can
store NUL, so there the guard only keeps the response the same on both databases.
"""

import logging
from collections.abc import Callable
from urllib.parse import unquote_plus

from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
NAME_SHOWN_MAX = 100


def nul_parameter(query_string: str) -> str | None:
    """Return the name of the first parameter whose name or value contains a NUL, else None.

    Reads the raw query string, so it neither parses nor counts the fields; Django's own
    limit on their number still applies when a view reads request.GET.
    """
    if "%00" not in query_string and "\x00" not in query_string:
        return None
    for pair in query_string.split("&"):
        raw_name, _, raw_value = pair.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "\\x00")[:NAME_SHOWN_MAX]
    return None


class NulQueryParameterMiddleware:
    """Reject a request whose query string contains a NUL character with 400 naming it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = nul_parameter(request.META.get("QUERY_STRING", ""))
        if name is None:
            return self.get_response(request)

        logger.info(
            "query parameter with a NUL character rejected",
            extra={"path": request.path[:200], "parameter": name},
        )
        message = f"Query parameter {name!r} contains a NUL character, which no parameter takes."
        if request.path.startswith(API_PREFIX):
            body = {
                "error": {
                    "code": "invalid",
                    "message": message,
                    "fields": {name: ["Contains a NUL character."]},
                }
            }
            return JsonResponse(body, status=400)
        return HttpResponse(message + "\n", status=400, content_type="text/plain; charset=utf-8")
