"""Shared pieces of the OpenAPI schema: the error body, and the error responses of every operation.

Every API error has one body, {"error": {"code", "message", "fields"}} (omsguard.api_errors).
Views declare the responses of their own domain, such as 201, or 409 for a state conflict.
The responses that DRF itself gives for any operation are added here once, by a
drf-spectacular postprocessing hook, so no view has to repeat them.
"""

from drf_spectacular.utils import OpenApiParameter
from rest_framework.settings import api_settings

ERROR_COMPONENT = "Error"
ERROR_REFERENCE = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
ERROR_SCHEMA = {
    "type": "object",
    "description": "The body of every API error.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Stable machine-readable code, e.g. invalid or not_found.",
                },
                "message": {"type": "string", "description": "One sentence for a person."},
                "fields": {
                    "type": "object",
                    "description": "Messages per invalid field; empty when no field is at fault.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "required": ["code", "message", "fields"],
        }
    },
    "required": ["error"],
}

DESCRIPTIONS = {
    400: "Invalid input: `fields` names each invalid field and the reason.",
    401: "No credentials, or an unknown token.",
    403: "The user lacks the permission, or the record's channel is not granted to the user.",
    404: "No such record visible to the user, or a page beyond the last.",
    413: "The request body is larger than the server accepts.",
    415: "The request body's Content-Type is not one this operation accepts.",
    429: "Too many requests from this user; retry after the seconds in Retry-After.",
}
RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds until the rate limit's window ends.",
        "required": True,
        "schema": {"type": "integer"},
    }
}
HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}


def error_responses_add(result: dict, generator, request, public) -> dict:
    """Add the error responses DRF may give to every operation, all with the error body.

    A drf-spectacular postprocessing hook. An operation keeps any response it declares
    itself; a declared 4xx response without a body gets the error body.
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(ERROR_COMPONENT, ERROR_SCHEMA)
    throttled = bool(api_settings.DEFAULT_THROTTLE_CLASSES)

    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status in operation_error_statuses(operation, throttled=throttled):
                responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
            for status, response in responses.items():
                _error_body_add(status, response)
    return result


def operation_error_statuses(operation: dict, *, throttled: bool) -> list[int]:
    """Return the error statuses DRF may respond to this operation with, whatever its view does.

    400: a body or query parameter failed validation. 401 and 403: authentication and
    permission checks. 404: an unknown id in the path, or a page number past the last.
    413 and 415: a body too large or of a media type no parser reads. 429: a throttle.
    """
    parameters = operation.get("parameters", [])
    locations = {parameter.get("in") for parameter in parameters}
    names = {parameter.get("name") for parameter in parameters}
    has_body = "requestBody" in operation

    statuses = []
    if has_body or locations & {"query", "header"}:
        statuses.append(400)
    if {} not in operation.get("security", [{}]):
        statuses += [401, 403]
    if "path" in locations or "page" in names:
        statuses.append(404)
    if has_body:
        statuses += [413, 415]
    if throttled:
        statuses.append(429)
    return statuses


def _error_body_add(status: str, response: dict) -> None:
    if not status.startswith("4"):
        return
    response.setdefault("content", {"application/json": {"schema": ERROR_REFERENCE}})
    if status == "429":
        response.setdefault("headers", RETRY_AFTER_HEADER)


def idempotency_key_parameter(
    *, required: bool, max_length: int, description: str
) -> OpenApiParameter:
    """Build the Idempotency-Key request header as the views check it: visible ASCII, trimmed."""
    return OpenApiParameter(
        "Idempotency-Key",
        {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            # Printable, with no space at either end (the views strip the value).
            "pattern": r"^[!-~]([ -~]*[!-~])?$",
        },
        OpenApiParameter.HEADER,
        required=required,
        description=description,
    )
