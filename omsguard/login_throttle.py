"""The hooks django-axes calls for login throttling: the client address and the lockout page.

The throttling rule itself is configured in settings (AXES_*); docs/security/headers-and-login.md
explains it and how to lift a lockout.
"""

import ipaddress
import logging
import math
from datetime import timedelta

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from django.db.models import Max
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from omsguard.ratelimit import client_ip

logger = logging.getLogger(__name__)

LOCKOUT_TEMPLATE = "registration/locked_out.html"


def client_ip_address(request: HttpRequest) -> str | None:
    """Return the client's IP address as the API rate limits see it, or None without one.

    Axes stores the address in a GenericIPAddressField, so a value that is not an address
    (REMOTE_ADDR is empty on some Unix-socket servers) becomes None instead of an insert error.
    """
    address = client_ip(request)
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def lockout_response(request: HttpRequest, *_args: object) -> HttpResponse:
    """Render the 429 lockout page, with Retry-After set to the seconds until the lock ends.

    Axes calls this with (request, original_response, credentials) and, on its async path,
    with (request, credentials); the credentials are read from the request in both cases.
    """
    credentials = getattr(request, "axes_credentials", None)
    username = get_client_username(request, credentials) or ""
    remaining = lockout_remaining(request, credentials)
    # Axes still counts an attempt exactly one cool-off old, so the first whole second at which
    # a retry succeeds comes after the remaining time, not at its end.
    retry_after = max(0, math.floor(remaining.total_seconds())) + 1

    logger.warning(
        "login locked out",
        extra={"username": username, "path": request.path, "retry_after_seconds": retry_after},
    )
    context = {
        "username": username,
        "failure_limit": get_failure_limit(request, credentials),
        "cooloff_minutes": math.ceil(get_cool_off(request).total_seconds() / 60),
        "minutes_left": max(1, math.ceil(remaining.total_seconds() / 60)),
        "unlocks_at": timezone.now() + remaining,
    }
    response = TemplateResponse(request, LOCKOUT_TEMPLATE, context, status=429)
    response["Retry-After"] = str(retry_after)
    return response.render()


def lockout_remaining(request: HttpRequest, credentials: dict | None) -> timedelta:
    """Return how long the request's lockout lasts from now.

    The lock ends one cool-off after the latest failed attempt that counts towards it. When no
    such attempt is left, the lock has just been lifted and zero is returned. Either an ops
    manager deleted the attempts, or axes deleted them as expired within this request: its
    clean-up includes an attempt exactly one cool-off old, which its lockout check counted.
    """
    cool_off = get_cool_off(request)
    attempts = AxesProxyHandler.get_implementation().get_user_attempts(request, credentials)
    latest_times = [
        queryset.aggregate(latest=Max("attempt_time"))["latest"] for queryset in attempts
    ]
    latest_times = [latest for latest in latest_times if latest is not None]
    if not latest_times:
        return timedelta(0)

    return max(timedelta(0), max(latest_times) + cool_off - timezone.now())
