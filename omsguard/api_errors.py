"""The one error response shape of the REST API."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Render every API error as {"error": {"code", "message", "fields"}}.

    DRF's own handler decides the status; this only reshapes its body so integrations can
    read one stable format. Unknown exceptions still propagate (and are logged by Django).
    """
    response = drf_exception_handler(exc, context)
    if response is None:
        return None

    detail = getattr(exc, "detail", None)
    code = _error_code(exc)
    if isinstance(detail, dict):
        message = "Invalid input."
        fields = {key: _as_messages(value) for key, value in detail.items()}
    elif isinstance(detail, list):
        message = " ".join(str(item) for item in detail)
        fields = {}
    else:
        message = str(detail) if detail is not None else response.reason_phrase
        fields = {}

    response.data = {"error": {"code": code, "message": message, "fields": fields}}
    return response


def _error_code(exc: Exception) -> str:
    codes = getattr(exc, "get_codes", lambda: None)()
    if isinstance(codes, str):
        return codes
    return getattr(exc, "default_code", "error")


def _as_messages(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, dict):
        return [f"{key}: {item}" for key, item in value.items()]
    return [str(value)]
