"""Demo data for the WooCommerce, Square, Amazon and eBay channels, replayed from samples/."""

import json
from pathlib import Path

from django.conf import settings
from django.test import Client
from django.urls import reverse

from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind, Sku
from catalog.services import channel_upsert

from .adapters import woocommerce
from .channel_ingest import channel_file_ingest, square_delivery_record
from .demo import SAMPLES_DIR, ReplayResult, demo_host, demo_mappings_create

DEMO_WOO_SECRET = "demo-woocommerce-webhook-secret"  # noqa: S105 - demo value, printed
DEMO_SQUARE_SECRET = "demo-square-signature-key"  # noqa: S105 - demo value, printed


def demo_square_url() -> str:
    """Return the URL Square signs for the demo channel: this server's, so a demo on another port
    (`make demo PORT=8781`) verifies events signed for its own address."""
    return settings.OMSGUARD_PUBLIC_URL + reverse("webhooks:square", args=["demo-square"])


def demo_channels_load() -> dict[str, list[ReplayResult]]:
    """Create the four demo channels with their mappings and replay their sample orders.

    WooCommerce samples go through the real webhook, signed. Amazon and eBay files go through
    the service ingest_file uses. The demo has no Square server, so Square events are
    recorded through the service the webhook uses after its fetch, with the orders read from
    samples/square/orders/. Safe to run again: repeats are recorded as duplicates.
    """
    woo, _ = channel_upsert(
        kind=ChannelKind.WOOCOMMERCE,
        code="demo-woo",
        secret=DEMO_WOO_SECRET,
        name="Demo WooCommerce",
    )
    square_channel, _ = channel_upsert(
        kind=ChannelKind.SQUARE,
        code="demo-square",
        secret=DEMO_SQUARE_SECRET,
        name="Demo Square",
        notification_url=demo_square_url(),
    )
    amazon_channel, _ = channel_upsert(
        kind=ChannelKind.AMAZON, code="demo-amazon", secret=None, name="Demo Amazon"
    )
    ebay_channel, _ = channel_upsert(
        kind=ChannelKind.EBAY, code="demo-ebay", secret=None, name="Demo eBay"
    )

    for channel in (woo, amazon_channel, ebay_channel):
        demo_mappings_create(channel=channel)
    _mappings_from_file(
        square_channel, ExternalIdKind.POS_CATALOG_OBJECT, "square/catalog_objects.json"
    )
    _mappings_from_file(amazon_channel, ExternalIdKind.AMAZON_ASIN, "amazon/asin_map.json")
    _mappings_from_file(ebay_channel, ExternalIdKind.EBAY_LEGACY_ITEM, "ebay/legacy_items.json")

    return {
        woo.code: woocommerce_samples_replay(channel=woo),
        square_channel.code: square_samples_record(channel=square_channel),
        amazon_channel.code: _files_ingest(amazon_channel, SAMPLES_DIR / "amazon"),
        ebay_channel.code: _files_ingest(ebay_channel, SAMPLES_DIR / "ebay"),
    }


def _mappings_from_file(channel: Channel, kind: str, relative_path: str) -> int:
    """Create a mapping of `kind` for each {external id: SKU code} pair in a samples file."""
    pairs = json.loads((SAMPLES_DIR / relative_path).read_text("utf-8"))
    skus = Sku.objects.in_bulk(list(pairs.values()), field_name="code")
    mappings = [
        ChannelSkuMapping(channel=channel, id_kind=kind, external_id=external_id, sku=skus[code])
        for external_id, code in pairs.items()
        if code in skus
    ]
    ChannelSkuMapping.objects.bulk_create(mappings, ignore_conflicts=True)
    return len(mappings)


def woocommerce_samples_replay(
    *, channel: Channel, directory: Path | None = None
) -> list[ReplayResult]:
    """POST each manifest entry to the channel's WooCommerce webhook, signed when the entry is."""
    directory = directory or SAMPLES_DIR / "woocommerce"
    manifest = json.loads((directory / "deliveries.json").read_text("utf-8"))
    client = Client()
    url = reverse("webhooks:woocommerce", kwargs={"channel_code": channel.code})
    results = []
    for entry in manifest:
        body = (directory / entry["file"]).read_bytes()
        headers = {"Host": demo_host(), "User-Agent": entry.get("user_agent", "")}
        if entry["signed"]:
            headers.update(
                {
                    "X-WC-Webhook-Signature": woocommerce.signature_for(
                        body, channel.webhook_secret
                    ),
                    "X-WC-Webhook-Topic": entry["topic"],
                    "X-WC-Webhook-Resource": entry["resource"],
                    "X-WC-Webhook-Event": entry["event"],
                    "X-WC-Webhook-ID": str(entry["webhook_id"]),
                    "X-WC-Webhook-Delivery-ID": entry["delivery_id"],
                    "X-WC-Webhook-Source": entry["source"],
                }
            )
        response = client.post(
            url,
            data=body,
            content_type=entry["content_type"],
            secure=settings.SECURE_SSL_REDIRECT,
            headers=headers,
        )
        results.append(
            ReplayResult(
                file=entry["file"],
                webhook_id=str(entry.get("delivery_id") or entry["webhook_id"]),
                status_code=response.status_code,
                response=response.json(),
            )
        )
    return results


def square_samples_record(*, channel: Channel, directory: Path | None = None) -> list[ReplayResult]:
    """Record each Square manifest event with its order from samples/square/orders/."""
    directory = directory or SAMPLES_DIR / "square"
    manifest = json.loads((directory / "deliveries.json").read_text("utf-8"))
    results = []
    for entry in manifest:
        event = json.loads((directory / entry["file"]).read_text("utf-8"))
        order_file = directory / "orders" / f"{event['data']['id']}.json"
        order = json.loads(order_file.read_text("utf-8"))["order"]
        delivery, created = square_delivery_record(
            channel=channel,
            event=event,
            order=order,
            headers={
                "Square-Initial-Delivery-Timestamp": entry["initial_delivery_timestamp"],
                "Square-Retry-Number": str(entry["retry_number"]),
            },
        )
        results.append(
            ReplayResult(
                file=entry["file"],
                webhook_id=entry["event_id"],
                status_code=200,
                response={
                    "status": "accepted" if created else "duplicate",
                    "delivery": delivery.pk,
                },
            )
        )
    return results


def _files_ingest(channel: Channel, directory: Path) -> list[ReplayResult]:
    results = []
    for path in sorted(directory.glob("[0-9][0-9]-*.json")):
        entries = channel_file_ingest(
            channel=channel, data=json.loads(path.read_text("utf-8")), source=path.name
        )
        for entry in entries:
            results.append(
                ReplayResult(
                    file=path.name,
                    webhook_id=entry.delivery_id,
                    status_code=200,
                    response={
                        "status": "accepted" if entry.created else "duplicate",
                        "delivery": entry.delivery,
                    },
                )
            )
    return results
