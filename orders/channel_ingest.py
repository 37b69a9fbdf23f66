"""Recording WooCommerce, Square, Amazon and eBay deliveries; processing stays in the pipeline."""

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from catalog.models import Channel, ChannelKind

from .adapters import amazon, ebay
from .canonical import AdapterError
from .models import Delivery, DeliveryOutcome
from .services import delivery_finish, delivery_record

logger = logging.getLogger(__name__)

PING_TOPIC = "ping"
FILE_KINDS = (ChannelKind.AMAZON, ChannelKind.EBAY)


def woocommerce_ping_record(*, channel: Channel, webhook_id: str, body: bytes) -> Delivery:
    """Record WooCommerce's unsigned ping as an already finished delivery.

    The ping proves only that the URL answers, so it is stored with signature_valid=False
    and outcome processed, and never reaches the order pipeline. A repeated ping for the
    same webhook returns the first one.
    """
    delivery_id = f"ping-{webhook_id}"
    try:
        with transaction.atomic():
            delivery = Delivery.objects.create(
                channel=channel,
                delivery_id=delivery_id,
                topic=PING_TOPIC,
                headers={},
                body=body,
                signature_valid=False,
            )
            delivery_finish(delivery=delivery, outcome=DeliveryOutcome.PROCESSED, worker="webhook")
    except IntegrityError:
        return Delivery.objects.get(channel=channel, delivery_id=delivery_id)
    logger.info(
        "woocommerce ping recorded", extra={"channel": channel.code, "delivery": delivery.pk}
    )
    return delivery


def square_delivery_record(
    *, channel: Channel, event: dict, order: dict, headers: dict[str, str]
) -> tuple[Delivery, bool]:
    """Record a Square event with the order fetched for it, as {"event": ..., "order": ...}.

    The delivery id is Square's event_id, which stays the same on retries.
    """
    body = json.dumps({"event": event, "order": order}, ensure_ascii=False).encode("utf-8")
    return delivery_record(
        channel=channel,
        delivery_id=str(event.get("event_id", ""))[:200],
        topic=str(event.get("type", ""))[:100],
        body=body,
        headers=headers,
        event_id=str(event.get("event_id", ""))[:200],
        triggered_at=_timestamp(event.get("created_at")),
    )


@dataclass(frozen=True)
class FileEntryResult:
    delivery_id: str
    delivery: int
    created: bool


def channel_file_entries(*, channel: Channel, data: Any) -> list[Any]:
    """Split one decoded file into its orders, or raise AdapterError naming the problem.

    Amazon files hold one {"order", "items"} object, a list of them, or a getOrders response
    page ({"payload": {"Orders": [...]}}, whose orders have no items and are rejected by the
    adapter). eBay files hold one getOrder object, a list, or a getOrders page ({"orders"}).
    """
    if channel.kind == ChannelKind.AMAZON:
        if isinstance(data, dict) and isinstance(data.get("payload"), dict):
            orders = data["payload"].get("Orders")
            if not isinstance(orders, list):
                raise AdapterError("payload.Orders", "expected a JSON array")
            # An entry that is no object is left for the adapter to reject, naming it.
            return [
                {"order": order, "items": order.get("OrderItems")}
                if isinstance(order, dict)
                else {"order": order}
                for order in orders
            ]
    elif isinstance(data, dict) and isinstance(data.get("orders"), list):
        return data["orders"]
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        return [data]
    raise AdapterError("file", "expected a JSON object or array")


def channel_file_ingest(*, channel: Channel, data: Any, source: str) -> list[FileEntryResult]:
    """Record one delivery per order in a decoded Amazon or eBay file.

    The delivery id is the order id plus its last-update time, so loading the same file
    again records nothing new. Raises AdapterError (field names the entry) before recording
    anything when an entry has no order id or update time.
    """
    if channel.kind not in FILE_KINDS:
        raise ValueError(
            f"Channel {channel.code!r} is a {channel.kind} channel, not amazon or ebay."
        )
    key_for = amazon.order_key if channel.kind == ChannelKind.AMAZON else ebay.order_key
    entries = channel_file_entries(channel=channel, data=data)
    keyed = []
    for index, entry in enumerate(entries):
        try:
            keyed.append((key_for(entry)[:200], entry))
        except AdapterError as error:
            raise AdapterError(f"[{index}].{error.field}", error.reason) from None

    results = []
    with transaction.atomic():
        for delivery_id, entry in keyed:
            delivery, created = delivery_record(
                channel=channel,
                delivery_id=delivery_id,
                topic="order.file",
                body=json.dumps(entry, ensure_ascii=False).encode("utf-8"),
                headers={"source": source[:200]},
            )
            results.append(FileEntryResult(delivery_id, delivery.pk, created))
    return results


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return None
    return parsed if parsed is not None and timezone.is_aware(parsed) else None
