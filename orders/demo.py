"""Demo data: the sample catalog, and replaying sample Shopify deliveries through the webhook."""

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import Channel, ChannelSkuMapping, ExternalIdKind, Sku

from .adapters import shopify
from .carrier_codes import normalize_carrier_code
from .carrier_reference import carrier_reference_load
from .models import CarrierCodeMapping, CarrierService

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
    """Map every SKU code as a channel SKU of `channel` (the demo store uses our codes).

    The demo store's shipping rate names are mapped to carrier services too, so only the
    samples meant to stop (unmapped SKUs, short stock) are held. Returns the SKU count.
    """
    demo_carrier_mappings_create(channel=channel)
    mappings = [
        ChannelSkuMapping(
            channel=channel, id_kind=ExternalIdKind.SKU, external_id=sku.code, sku=sku
        )
        for sku in Sku.objects.all()
    ]
    ChannelSkuMapping.objects.bulk_create(mappings, ignore_conflicts=True)
    return len(mappings)


# The demo store's own rate names: (code, destination country or "", carrier, service).
# Reference data has no such names because each shop picks its own. "Standard" ships with
# Yamato in the store's Japan zone and with USPS everywhere else.
DEMO_CARRIER_CODES = [
    ("Standard", "", "usps", "ground_advantage"),
    ("Standard", "JP", "yamato", "ta_q_bin"),
    ("International Standard", "", "dhl_express", "express_worldwide"),
    ("Priority", "", "usps", "priority_mail"),
]
# Amazon's ship service levels name a speed, not a carrier, so the seller decides. The demo
# sends "Std US D2D Dom" (standard domestic door to door) with USPS, on every channel.
DEMO_ANY_CHANNEL_CODES = [("Std US D2D Dom", "", "usps", "ground_advantage")]


def demo_carrier_mappings_create(*, channel: Channel) -> int:
    """Load the reference carriers and map the demo store's rate names. Returns the count."""
    carrier_reference_load()
    scoped = [(channel, *entry) for entry in DEMO_CARRIER_CODES]
    scoped += [(None, *entry) for entry in DEMO_ANY_CHANNEL_CODES]
    with transaction.atomic():
        for scope, code, country, carrier, service in scoped:
            CarrierCodeMapping.objects.get_or_create(
                channel=scope,
                destination_country=country,
                normalized_code=normalize_carrier_code(code),
                defaults={
                    "code": code,
                    "service": CarrierService.objects.get(carrier__code=carrier, code=service),
                },
            )
    return len(scoped)


# (code, name, kind, units of every SKU there). The warehouse's 30 units cover the largest
# sample line (18 hoodies), so every sample order reserves, apart from DEMO_SHORT_STOCK.
DEMO_LOCATIONS = [
    ("WH-MAIN", "Main warehouse", "warehouse", 30),
    ("STORE-SOHO", "SoHo store", "store", 6),
    ("3PL-EAST", "East coast 3PL", "3pl", 12),
]
# Sample order #1007 orders 10 of this SKU and no location has 10, so the demo shows an
# out-of-stock item in the queue.
DEMO_SHORT_STOCK = {"HOODIE-PULLOVER-FRS-XL": {"WH-MAIN": 6, "STORE-SOHO": 1, "3PL-EAST": 0}}
DEMO_STOCK_SOURCE = "demo-seed"


def demo_stock_load() -> int:
    """Create the demo locations and post an absolute stock event per SKU and location.

    The events go through the real stock service, so running this again only replays them
    as duplicates. Returns how many events were applied now.
    """
    from inventory.models import Location, StockEventKind, StockEventOutcome
    from inventory.services import StockEventInput, stock_event_record

    locations = []
    for code, name, kind, units in DEMO_LOCATIONS:
        location, _ = Location.objects.get_or_create(
            code=code, defaults={"name": name, "kind": kind}
        )
        locations.append((location, units))

    applied = 0
    # One transaction for all events, because SQLite commits one by one are slow.
    with transaction.atomic():
        for sku in Sku.objects.filter(is_active=True).order_by("code"):
            for location, units in locations:
                quantity = DEMO_SHORT_STOCK.get(sku.code, {}).get(location.code, units)
                result = stock_event_record(
                    data=StockEventInput(
                        source=DEMO_STOCK_SOURCE,
                        event_id=f"{sku.code}@{location.code}",
                        sku=sku,
                        location=location,
                        kind=StockEventKind.ABSOLUTE,
                        quantity=quantity,
                        version=1,
                    )
                )
                applied += result.outcome == StockEventOutcome.APPLIED
    return applied


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
    host = host or demo_host()

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
                # A replay is triggered now: the times recorded in the manifest are older than
                # OMSGUARD_WEBHOOK_MAX_AGE_SECONDS, so the webhook would reject them as stale.
                "X-Shopify-Triggered-At": timezone.now().isoformat(),
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


def demo_host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host not in ("*",) and not host.startswith("."):
            return host
    return "localhost"
