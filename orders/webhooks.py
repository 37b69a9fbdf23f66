"""Inbound channel webhooks: verify, record durably, acknowledge. Processing happens later."""

import logging
from datetime import datetime

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from catalog.models import Channel, ChannelKind
from omsguard.ratelimit import webhook_rate_limited

from .adapters import shopify
from .services import delivery_record
from .webhook_channels import ChannelChanged, channel_acknowledge

logger = logging.getLogger(__name__)

# Shopify headers kept with the delivery; the HMAC header is dropped because it is a secret.
SHOPIFY_KEPT_HEADERS = (
    "X-Shopify-Topic",
    "X-Shopify-Shop-Domain",
    "X-Shopify-Webhook-Id",
    "X-Shopify-Event-Id",
    "X-Shopify-Triggered-At",
    "X-Shopify-API-Version",
)
# request.META keys of the kept headers, as Django stores them (WSGI's HTTP_ prefix).
SHOPIFY_KEPT_HEADER_KEYS = tuple(
    (name, "HTTP_" + name.upper().replace("-", "_")) for name in SHOPIFY_KEPT_HEADERS
)
# Every order topic carries the full order; the pipeline tells them apart by the order's
# updated_at and cancelled_at, so a retried delivery of an old copy never overwrites a newer one.
SHOPIFY_ORDER_TOPICS = ("orders/create", "orders/updated", "orders/cancelled")


def error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@csrf_exempt
@require_POST
@webhook_rate_limited
def shopify_webhook(request: HttpRequest, channel_code: str) -> JsonResponse:
    response = channel_acknowledge(
        kind=ChannelKind.SHOPIFY,
        code=channel_code,
        acknowledge=lambda channel, version: _shopify_acknowledge(
            request, channel, channel_version=version
        ),
    )
    if response is None:
        return error_response(
            404, "unknown_channel", f"No active Shopify channel {channel_code!r}."
        )
    return response


def _shopify_acknowledge(
    request: HttpRequest, channel: Channel, *, channel_version: str | None
) -> JsonResponse:
    """Check, record and acknowledge a delivery to `channel`.

    With `channel_version`, `channel` comes from the cache: a signature that fails against
    its secret, or a channel row that changed, raises ChannelChanged with nothing stored, so
    that the caller runs it again with the row read afresh.
    NOTE: a warning about an unreadable X-Shopify-Triggered-At is then logged twice.
    """
    body = _read_body(request)
    if body is None:
        limit = settings.OMSGUARD_WEBHOOK_MAX_BYTES
        return error_response(413, "too_large", f"Request body is larger than {limit} bytes.")

    signature = _header(request, "X-Shopify-Hmac-Sha256")
    if not shopify.signature_is_valid(body, channel.webhook_secret, signature):
        if channel_version is not None:
            # The secret may have been changed since the channel was cached.
            raise ChannelChanged(f"signature rejected by the cached channel {channel.code}")
        logger.warning(
            "webhook signature rejected",
            extra={"channel": channel.code, "signature_present": bool(signature)},
        )
        return error_response(
            401, "invalid_signature", "Missing or invalid X-Shopify-Hmac-Sha256 signature."
        )
    triggered_at = _shopify_triggered_at(request, channel)
    stale = delivery_age_check(
        channel=channel, sent_at=triggered_at, source="X-Shopify-Triggered-At"
    )
    if stale is not None:
        return stale

    delivery_id = (_header(request, "X-Shopify-Webhook-Id") or "").strip()
    if not delivery_id:
        return error_response(400, "missing_header", "X-Shopify-Webhook-Id header is required.")
    # Django joins repeated headers with commas; a real webhook id never contains one.
    if "," in delivery_id or len(delivery_id) > 200:
        return error_response(
            400, "invalid_header", "X-Shopify-Webhook-Id must be one id of at most 200 characters."
        )
    topic = (_header(request, "X-Shopify-Topic") or "").strip()
    if topic not in SHOPIFY_ORDER_TOPICS:
        expected = ", ".join(SHOPIFY_ORDER_TOPICS)
        return error_response(
            400, "unsupported_topic", f"Topic {topic!r} is not supported; expected {expected}."
        )

    delivery, created = delivery_record(
        channel=channel,
        delivery_id=delivery_id,
        topic=topic,
        body=body,
        headers=_kept_headers(request),
        event_id=(_header(request, "X-Shopify-Event-Id") or "")[:200],
        triggered_at=triggered_at,
        channel_version=channel_version,
    )
    return JsonResponse(
        {"status": "accepted" if created else "duplicate", "delivery": delivery.pk}, status=200
    )


def delivery_age_check(
    *, channel: Channel, sent_at: datetime | None, source: str
) -> JsonResponse | None:
    """Return a 400 stale_delivery response when a signed delivery is too old or too far ahead.

    `source` names the header or field `sent_at` came from. Call it after the signature
    check, before anything is stored. A delivery without a timestamp passes: Shopify does not
    sign its header, so demanding it would stop no forger, and the id of every delivery is
    still checked for repeats.
    """
    max_age = settings.OMSGUARD_WEBHOOK_MAX_AGE_SECONDS
    if sent_at is None or max_age == 0:
        return None
    age = (timezone.now() - sent_at).total_seconds()
    max_future = settings.OMSGUARD_WEBHOOK_MAX_FUTURE_SECONDS
    if -max_future <= age <= max_age:
        return None

    logger.warning(
        "webhook rejected: stale delivery",
        extra={"channel": channel.code, "age_seconds": round(age), "timestamp_source": source},
    )
    if age > 0:
        message = (
            f"{source} is {round(age)} seconds old; deliveries older than {max_age} seconds "
            "are rejected."
        )
    else:
        message = (
            f"{source} is {round(-age)} seconds ahead of this server's clock; at most "
            f"{max_future} seconds are accepted."
        )
    return error_response(400, "stale_delivery", message)


def _shopify_triggered_at(request: HttpRequest, channel: Channel) -> datetime | None:
    value = _header(request, "X-Shopify-Triggered-At")
    triggered_at = _parse_timestamp(value)
    if value and triggered_at is None:
        # Accepted like an absent header rather than losing an order to a format change.
        logger.warning(
            "webhook timestamp unreadable",
            extra={"channel": channel.code, "timestamp_source": "X-Shopify-Triggered-At"},
        )
    return triggered_at


def _header(request: HttpRequest, name: str) -> str | None:
    """Return one request header, like request.headers.get(name).

    Reads request.META, because request.headers parses every header of the request when it
    is first used, about 90 Python function calls per webhook (cProfile, Django 5.2).
    """
    return request.META.get("HTTP_" + name.upper().replace("-", "_"))


def _kept_headers(request: HttpRequest) -> dict[str, str]:
    meta = request.META
    return {name: meta[key] for name, key in SHOPIFY_KEPT_HEADER_KEYS if key in meta}


def _read_body(request: HttpRequest) -> bytes | None:
    """The raw body, or None when it exceeds the configured limit."""
    limit = settings.OMSGUARD_WEBHOOK_MAX_BYTES
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None
    return body if len(body) <= limit else None


def _parse_timestamp(value: str | None) -> datetime | None:
    """An ISO 8601 header value with an offset, or None when absent or malformed."""
    if not value:
        return None
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed
