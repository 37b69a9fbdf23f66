"""Demo AI proposals, sent through the real decisions API by `seed_demo`, and demo carrier rates.

Each sample in samples/decisions/proposals.json names an order by channel and order number
and the proposed `after` state. Like a real agent, the replay reads the order's current state
for `before`, then posts the proposal with the demo integration user's token.
"""

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from orders.demo import demo_host
from orders.models import CarrierRate, CarrierRateStatus, CarrierService, Order

from .appliers import applier_for
from .models import Decision
from .services import audit_record

DEMO_MODEL_NAME = "demo-agent"
DEMO_MODEL_VERSION = "2026-11"
PROPOSALS_FILE = Path(settings.BASE_DIR) / "samples" / "decisions" / "proposals.json"


# Invented USD rates for the carrier recommender, so that
# POST /api/v1/orders/<id>/carrier-recommendation/ has candidates on the demo. Each entry is
# (carrier, service, destination country or "" for any, weight limit in grams or None, price).
# Every lane has a rate up to 1 kg and a dearer one for any weight. The prices are invented
# for the demo and come from no carrier's price list or contract.
DEMO_CARRIER_RATES = [
    ("usps", "ground_advantage", "US", 1000, "7.50"),
    ("usps", "ground_advantage", "US", None, "12.40"),
    ("usps", "priority_mail", "US", 1000, "10.40"),
    ("usps", "priority_mail", "US", None, "17.60"),
    ("usps", "priority_mail_express", "US", 1000, "31.00"),
    ("usps", "priority_mail_express", "US", None, "45.00"),
    ("ups", "ground", "US", 1000, "11.20"),
    ("ups", "ground", "US", None, "16.80"),
    ("ups", "2nd_day_air", "US", 1000, "24.50"),
    ("ups", "2nd_day_air", "US", None, "36.90"),
    ("ups", "next_day_air", "US", 1000, "58.00"),
    ("ups", "next_day_air", "US", None, "79.00"),
    ("fedex", "ground", "US", 1000, "10.90"),
    ("fedex", "ground", "US", None, "16.40"),
    ("fedex", "2day", "US", 1000, "25.10"),
    ("fedex", "2day", "US", None, "37.50"),
    ("fedex", "standard_overnight", "US", 1000, "55.40"),
    ("fedex", "standard_overnight", "US", None, "76.80"),
    ("dhl_express", "express_worldwide", "", 1000, "48.00"),
    ("dhl_express", "express_worldwide", "", None, "72.00"),
]
DEMO_RATE_CURRENCY = "USD"
DEMO_RATE_NOTE = "Invented demo rate."


def demo_carrier_rates_load() -> int:
    """Add the demo's carrier rates as active rates; return how many were added.

    A lane that already has a rate of any status is left alone, so running seed_demo again
    adds nothing and never replaces a rate someone entered. The rates skip
    carrier_rate_change's sign-off replay on purpose: on a demo database that already has
    orders, the first rate of a lane changes every recommendation and would wait for sign-off.
    Each rate still gets the `carrier_rate.activated` audit entry that function writes.
    """
    services = {
        (service.carrier.code, service.code): service
        for service in CarrierService.objects.select_related("carrier")
    }
    added = 0
    for carrier, code, country, max_weight, price in DEMO_CARRIER_RATES:
        service = services[(carrier, code)]
        lane = CarrierRate.objects.filter(
            service=service, destination_country=country, max_weight_grams=max_weight
        )
        if lane.exists():
            continue
        with transaction.atomic():
            rate = CarrierRate.objects.create(
                service=service,
                destination_country=country,
                max_weight_grams=max_weight,
                price=Decimal(price),
                currency=DEMO_RATE_CURRENCY,
                status=CarrierRateStatus.ACTIVE,
                approved_at=timezone.now(),
                note=DEMO_RATE_NOTE,
            )
            audit_record(
                action="carrier_rate.activated",
                target_type="carrier_rate",
                target_id=rate.pk,
                system_label="demo seed",
                reason=DEMO_RATE_NOTE,
                after={
                    "service": service.pk,
                    "destination_country": country,
                    "max_weight_grams": max_weight,
                    "price": price,
                    "currency": DEMO_RATE_CURRENCY,
                    "status": CarrierRateStatus.ACTIVE,
                },
            )
        added += 1
    return added


@dataclass
class ProposalResult:
    action: str
    order_number: str
    status_code: int
    verdict: str
    note: str


def demo_decisions_replay(*, token: Token, path: Path = PROPOSALS_FILE) -> list[ProposalResult]:
    """POST each sample proposal to /api/v1/decisions/.

    Does nothing once demo decisions exist, so seed_demo stays safe to run again.
    """
    if Decision.objects.filter(model_name=DEMO_MODEL_NAME).exists():
        return []

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    results = []
    for sample in json.loads(path.read_text("utf-8")):
        order = Order.objects.filter(
            channel__code=sample["order"]["channel"],
            order_number=sample["order"]["order_number"],
        ).first()
        if order is None:
            # With a real broker the worker may not have built the order yet.
            results.append(
                ProposalResult(
                    action=sample["action"],
                    order_number=sample["order"]["order_number"],
                    status_code=0,
                    verdict="skipped",
                    note="the order is not processed yet; run seed_demo again later",
                )
            )
            continue
        response = client.post(
            "/api/v1/decisions/",
            {
                "action": sample["action"],
                "order": order.pk,
                "before": _current_state(order, sample["action"]),
                "after": sample["after"],
                "confidence": sample["confidence"],
                "model_name": DEMO_MODEL_NAME,
                "model_version": DEMO_MODEL_VERSION,
                "rationale": sample["rationale"],
            },
            format="json",
            secure=settings.SECURE_SSL_REDIRECT,
            headers={"Host": demo_host()},
        )
        body = response.json()
        results.append(
            ProposalResult(
                action=sample["action"],
                order_number=order.order_number,
                status_code=response.status_code,
                verdict=body.get("verdict") or body.get("error", {}).get("code", "error"),
                note=sample.get("note", ""),
            )
        )
    return results


def _current_state(order: Order, action_code: str) -> dict:
    """Read the order's state in the action's proposal shape, as an agent does first."""
    applier = applier_for(action_code)
    if applier is None:
        return {}
    return applier.current(order, {})
