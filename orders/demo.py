"""Demo data: the sample catalog, and replaying sample Shopify deliveries through the webhook."""

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.test import Client
from django.urls import reverse

from catalog.models import Channel, ChannelSkuMapping, ExternalIdKind, Sku

from .adapters import shopify

SAMPLES_DIR = Path(settings.BASE_DIR) / "samples"


@dataclass(frozen=True)
class ReplayResult:
    file: str
    webhook_id: str
    status_code: int
    response: dict


def demo_catalog_load(*, path: Path | None = None) -> int:
    """Create or update the demo SKUs from products.json; returns how many SKUs it holds."""
    bases = json.loads((path or SAMPLES_DIR / "catalog" / "products.json").read_text("utf-8"))
    count = 0
    with transaction.atomic():
        for base in bases:
            for colour in base["colours"]:
                for size in base["sizes"]:
                    Sku.objects.update_or_create(
                        code=f"{base['code']}-{colour['code']}-{size}",
                        defaults={
                            "title": f"{base['title']} - {colour['name']} / {size}",
                            "attributes": {"colour": colour["name"], "size": size},
                            "category": base["category"],
                            "price": Decimal(base["price"]),
                            "cost": Decimal(base["cost"]),
                            "currency": base["currency"],
                            "weight_grams": base.get("weight_grams"),
                            "is_active": True,
                        },
                    )
                    count += 1
    return count


def demo_mappings_create(*, channel: Channel) -> int:
    """Map every SKU code as a channel SKU of `channel` (the demo store uses our codes)."""
    mappings = [
        ChannelSkuMapping(
            channel=channel, id_kind=ExternalIdKind.SKU, external_id=sku.code, sku=sku
        )
        for sku in Sku.objects.all()
    ]
    ChannelSkuMapping.objects.bulk_create(mappings, ignore_conflicts=True)
    return len(mappings)


def shopify_samples_replay(
    *, channel: Channel, directory: Path | None = None, host: str | None = None
) -> list[ReplayResult]:
    """POST each delivery of the manifest to the channel's real webhook URL, signed.

    The raw bytes of each sample file are sent unchanged, so the signature covers exactly
    what is on disk.
    """
    directory = directory or SAMPLES_DIR / "shopify"
    manifest = json.loads((directory / "deliveries.json").read_text("utf-8"))
    client = Client()
    url = reverse("webhooks:shopify", kwargs={"channel_code": channel.code})
    host = host or _local_host()

    results = []
    for entry in manifest:
        body = (directory / entry["file"]).read_bytes()
        response = client.post(
            url,
            data=body,
            content_type="application/json",
            secure=settings.SECURE_SSL_REDIRECT,
            headers={
                "Host": host,
                "X-Shopify-Topic": entry["topic"],
                "X-Shopify-Hmac-Sha256": shopify.signature_for(body, channel.webhook_secret),
                "X-Shopify-Shop-Domain": f"{channel.code}.myshopify.com",
                "X-Shopify-Webhook-Id": entry["webhook_id"],
                "X-Shopify-Event-Id": entry.get("event_id", ""),
                "X-Shopify-Triggered-At": entry.get("triggered_at", ""),
                "X-Shopify-API-Version": entry.get("api_version", ""),
            },
        )
        results.append(
            ReplayResult(
                file=entry["file"],
                webhook_id=entry["webhook_id"],
                status_code=response.status_code,
                response=response.json(),
            )
        )
    return results


def _local_host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host not in ("*",) and not host.startswith("."):
            return host
    return "localhost"
