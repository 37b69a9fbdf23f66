"""WooCommerce and Square webhooks: verify, record durably, acknowledge."""

import json
import logging
import re
from datetime import datetime

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from catalog.models import Channel, ChannelKind
from catalog.selectors import channel_get_active
from omsguard.ratelimit import webhook_rate_limited

from .adapters import square, woocommerce
from .canonical import AdapterError
from .channel_ingest import square_delivery_record, woocommerce_ping_record
from .services import delivery_record
from .square_client import SquareFetchError, square_order_fetch
from .webhook_channels import ChannelChanged, channel_acknowledge
from .webhooks import _parse_timestamp, _read_body, delivery_age_check, error_response

logger = logging.getLogger(__name__)

WOOCOMMERCE_TOPICS = ("order.created", "order.updated")
WOOCOMMERCE_KEPT_HEADERS = (
    "X-WC-Webhook-Topic",
    "X-WC-Webhook-Resource",
    "X-WC-Webhook-Event",
    "X-WC-Webhook-ID",
    "X-WC-Webhook-Delivery-ID",
    "X-WC-Webhook-Source",
)
SQUARE_KEPT_HEADERS = (
    "Square-Initial-Delivery-Timestamp",
    "Square-Retry-Number",
    "Square-Retry-Reason",
    "Square-Environment",
)
PING_BODY = re.compile(rb"webhook_id=(\d{1,20})")
SQUARE_RETRY_AFTER_SECONDS = 60


# WooCommerce sends no delivery timestamp, because its X-WC-Webhook-* headers carry only ids,
# topic, resource, event and source. Its deliveries get no age check, but repeats are still
# recognised by the delivery id.
@csrf_exempt
@require_POST
@webhook_rate_limited
def woocommerce_webhook(request: HttpRequest, channel_code: str) -> JsonResponse:
    response = channel_acknowledge(
        kind=ChannelKind.WOOCOMMERCE,
        code=channel_code,
        acknowledge=lambda channel, version: _woocommerce_acknowledge(
            request, channel, channel_version=version
        ),
    )
    if response is None:
        return error_response(
            404, "unknown_channel", f"No active WooCommerce channel {channel_code!r}."
        )
    return response


def _woocommerce_acknowledge(
    request: HttpRequest, channel: Channel, *, channel_version: str | None
) -> JsonResponse:
    """Check, record and acknowledge a delivery or ping to `channel`.

    With `channel_version`, `channel` comes from the cache. A ping, a signature that fails
    against the cached secret and a channel row that changed raise ChannelChanged with
    nothing stored, so that the caller runs it again with the row read afresh. A ping is
    stored without the insert's version check, so it always uses the row read afresh.
    """
    body = _read_body(request)
    if body is None:
        return error_response(413, "too_large", "Request body is too large.")

    signature = request.headers.get("X-WC-Webhook-Signature")
    ping = PING_BODY.fullmatch(body.strip())
    if signature is None and ping and request.content_type == "application/x-www-form-urlencoded":
        if channel_version is not None:
            raise ChannelChanged("a ping is recorded with the channel row read afresh")
        delivery = woocommerce_ping_record(
            channel=channel, webhook_id=ping.group(1).decode("ascii"), body=body
        )
        return JsonResponse({"status": "ping", "delivery": delivery.pk}, status=200)

    if not woocommerce.signature_is_valid(body, channel.webhook_secret, signature):
        if channel_version is not None:
            # The secret may have been changed since the channel was cached.
            raise ChannelChanged(f"signature rejected by the cached channel {channel.code}")
        _signature_failure_note(channel, "X-WC-Webhook-Signature missing or invalid")
        return error_response(
            401, "invalid_signature", "Missing or invalid X-WC-Webhook-Signature signature."
        )

    topic = request.headers.get("X-WC-Webhook-Topic", "").strip()
    if topic not in WOOCOMMERCE_TOPICS:
        return error_response(
            400,
            "unsupported_topic",
            f"Topic {topic!r} is not supported; expected order.created or order.updated.",
        )
    try:
        delivery_id = woocommerce.delivery_key(json.loads(body))
    # ValueError covers invalid UTF-8, invalid JSON and integers longer than Python's
    # int-from-string limit (4,300 digits).
    except (ValueError, RecursionError):
        return error_response(400, "invalid_json", "Request body is not valid JSON.")
    except AdapterError as error:
        return error_response(400, "invalid_order", f"{error.field}: {error.reason}")

    delivery, created = delivery_record(
        channel=channel,
        delivery_id=delivery_id,
        topic=topic,
        body=body,
        headers=_kept_headers(request, WOOCOMMERCE_KEPT_HEADERS),
        event_id=request.headers.get("X-WC-Webhook-Delivery-ID", "")[:200],
        channel_version=channel_version,
    )
    return JsonResponse(
        {"status": "accepted" if created else "duplicate", "delivery": delivery.pk}, status=200
    )


@csrf_exempt
@require_POST
@webhook_rate_limited
def square_webhook(request: HttpRequest, channel_code: str) -> JsonResponse:
    channel = channel_get_active(kind=ChannelKind.SQUARE, code=channel_code)
    if channel is None:
        return error_response(404, "unknown_channel", f"No active Square channel {channel_code!r}.")
    body = _read_body(request)
    if body is None:
        return error_response(413, "too_large", "Request body is too large.")

    signature = request.headers.get("X-Square-HmacSha256-Signature")
    if not square.signature_is_valid(
        channel.notification_url, body, channel.webhook_secret, signature
    ):
        _square_signature_failure(request, channel, signature_present=bool(signature))
        return error_response(
            401,
            "invalid_signature",
            "Missing or invalid x-square-hmacsha256-signature signature.",
        )

    try:
        event = json.loads(body)
        order_id = square.event_order_id(event)
    except (ValueError, RecursionError):
        return error_response(400, "invalid_json", "Request body is not valid JSON.")
    except AdapterError as error:
        return error_response(400, "invalid_event", f"{error.field}: {error.reason}")
    event_id = event.get("event_id")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 200:
        return error_response(400, "invalid_event", "event_id: missing or longer than 200.")
    stale = delivery_age_check(
        channel=channel, sent_at=_square_created_at(event, channel), source="created_at"
    )
    if stale is not None:
        return stale

    existing = channel.deliveries.filter(delivery_id=event_id).first()
    if existing is not None:
        # A retry of a recorded event: no need to fetch the order again.
        return JsonResponse({"status": "duplicate", "delivery": existing.pk}, status=200)

    try:
        order = square_order_fetch(order_id=order_id)
    except SquareFetchError as error:
        logger.warning(
            "square webhook deferred: order fetch failed",
            extra={"channel": channel.code, "event_id": event_id, "error": str(error)},
        )
        response = error_response(
            503, "order_fetch_failed", "Could not fetch the order from Square; retry later."
        )
        response["Retry-After"] = str(SQUARE_RETRY_AFTER_SECONDS)
        return response

    delivery, created = square_delivery_record(
        channel=channel,
        event=event,
        order=order,
        headers=_kept_headers(request, SQUARE_KEPT_HEADERS),
    )
    return JsonResponse(
        {"status": "accepted" if created else "duplicate", "delivery": delivery.pk}, status=200
    )


def _square_created_at(event: dict, channel: Channel) -> datetime | None:
    """Return the event's signed created_at, or None when absent or unreadable (not checked)."""
    value = event.get("created_at")
    parsed = _parse_timestamp(value) if isinstance(value, str) else None
    if value is not None and parsed is None:
        # Accepted like an absent field rather than losing an order to a format change.
        logger.warning(
            "webhook timestamp unreadable",
            extra={"channel": channel.code, "timestamp_source": "created_at"},
        )
    return parsed


def _square_signature_failure(
    request: HttpRequest, channel: Channel, *, signature_present: bool
) -> None:
    """Log a rejected Square signature and say on the channel whether the URL differs.

    Square signs the URL it calls; behind a proxy or with a changed domain, the configured
    notification URL no longer matches and every signature fails.
    """
    requested_url = request.build_absolute_uri()
    if not channel.notification_url:
        reason = "the channel has no notification URL configured"
    elif requested_url != channel.notification_url:
        reason = (
            f"request URL {requested_url} differs from the configured notification URL "
            f"{channel.notification_url}; they must match exactly"
        )
    else:
        reason = "signature missing or invalid (check the signature key)"
    logger.warning(
        "square webhook signature rejected",
        extra={
            "channel": channel.code,
            "signature_present": signature_present,
            "url_matches": requested_url == channel.notification_url,
        },
    )
    _signature_failure_note(channel, reason)


def _signature_failure_note(channel: Channel, reason: str) -> None:
    logger.warning("webhook signature rejected", extra={"channel": channel.code})
    note = f"{timezone.now().isoformat(timespec='seconds')}: {reason}"
    Channel.objects.filter(pk=channel.pk).update(last_signature_failure=note[:2000])


def _kept_headers(request: HttpRequest, names: tuple[str, ...]) -> dict[str, str]:
    return {name: request.headers[name] for name in names if name in request.headers}
