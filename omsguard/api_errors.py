"""The one error response shape of the REST API."""

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Render every API error as {"error": {"code", "message", "fields"}}.

    DRF's own handler decides the status; this only reshapes its body so integrations can
    read one stable format. Unknown exceptions still propagate (and are logged by Django).
    """
    if isinstance(exc, RequestDataTooBig):
        # Django raises this while DRF reads the body; left alone it becomes an HTML 400.
        return Response(
            {
                "error": {
                    "code": "request_too_large",
                    "message": (
                        f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} "
                        "bytes."
                    ),
                    "fields": {},
                }
            },
            status=413,
        )
    if isinstance(exc, TooManyFieldsSent):
        # Django raises this while DRF first reads the query string or the form.
        return Response(
            {
                "error": {
                    "code": "too_many_fields",
                    "message": (
                        f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} "
                        "query or form fields."
                    ),
                    "fields": {},
                }
            },
            status=400,
        )
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
    # DRF's handler turns Django's Http404 and PermissionDenied into its own exceptions but
    # passes the original here, which has no code of its own.
    if isinstance(exc, Http404):
        return "not_found"
    if isinstance(exc, PermissionDenied):
        return "permission_denied"
    codes = getattr(exc, "get_codes", lambda: None)()
    if isinstance(codes, str):
        return codes
    return getattr(exc, "default_code", "error")


# Exempt, so a POST to a mistyped URL gets this JSON 404 rather than the HTML CSRF page; the
# view reads and changes nothing.
@csrf_exempt
def api_not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    """JSON 404 for any path under /api/ that no endpoint matches."""
    return JsonResponse(
        {
            "error": {
                "code": "not_found",
                "message": f"No API endpoint at {request.path}.",
                "fields": {},
            }
        },
        status=404,
    )


def _as_messages(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, dict):
        return [f"{key}: {item}" for key, item in value.items()]
    return [str(value)]
