"""Square Orders API client: fetches the full order a thin webhook event names."""

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://connect.squareup.com"
TIMEOUT_SECONDS = 5
SQUARE_VERSION = "2024-10-17"


class SquareFetchError(Exception):
    """The order could not be fetched now (network, timeout, 5xx, 401, or an invalid response)."""


def _base_url() -> str:
    return getattr(settings, "OMSGUARD_SQUARE_API_BASE_URL", None) or os.environ.get(
        "OMSGUARD_SQUARE_API_BASE_URL", DEFAULT_BASE_URL
    )


def _access_token() -> str:
    return getattr(settings, "OMSGUARD_SQUARE_ACCESS_TOKEN", None) or os.environ.get(
        "OMSGUARD_SQUARE_ACCESS_TOKEN", ""
    )


def square_order_fetch(*, order_id: str) -> dict[str, Any]:
    """Return the "order" object of GET /v2/orders/{order_id}, or raise SquareFetchError.

    The access token is sent as a bearer token and never logged.
    """
    token = _access_token()
    if not token:
        raise SquareFetchError("OMSGUARD_SQUARE_ACCESS_TOKEN is not set")
    base_url = _base_url().rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise SquareFetchError("OMSGUARD_SQUARE_API_BASE_URL must be an http(s) URL")
    url = f"{base_url}/v2/orders/{urllib.parse.quote(order_id, safe='')}"
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Square-Version": SQUARE_VERSION,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            body = response.read()
    except urllib.error.HTTPError as error:
        logger.warning(
            "square order fetch failed", extra={"order_id": order_id, "status": error.code}
        )
        raise SquareFetchError(f"Square's Orders API returned HTTP {error.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        logger.warning(
            "square order fetch failed", extra={"order_id": order_id, "error": str(error)}
        )
        raise SquareFetchError(f"Square Orders API unreachable: {error}") from None

    try:
        order = json.loads(body).get("order")
    except (ValueError, AttributeError):
        order = None
    if not isinstance(order, dict):
        logger.warning("square order fetch returned no order", extra={"order_id": order_id})
        raise SquareFetchError("Square's response has no order object")
    return order
