"""Demo AI proposals, sent through the real decisions API by `seed_demo`.

Each sample in samples/decisions/proposals.json names an order by channel and order number
and the proposed `after` state. Like a real agent, the replay reads the order's current state
for `before`, then posts the proposal with the demo integration user's token.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from orders.demo import demo_host
from orders.models import Order

from .appliers import applier_for
from .models import Decision

DEMO_MODEL_NAME = "demo-agent"
DEMO_MODEL_VERSION = "2026-11"
PROPOSALS_FILE = Path(settings.BASE_DIR) / "samples" / "decisions" / "proposals.json"


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
