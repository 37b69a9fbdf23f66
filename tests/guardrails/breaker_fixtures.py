"""Decision rows for the breaker and autonomy gate tests, written directly for the statistics."""

from datetime import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from guardrails.models import ActionType, Decision, DecisionOutcome, Verdict
from orders.models import Delivery, Order, OrderStatus

MODEL = "gpt-sub"


@pytest.fixture(name="order")
def order_fixture(db, default_policies, channel) -> Order:
    """One order on the "shop" channel; the statistics only need decisions to point at one."""
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id="wh-breakers",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
    )
    return Order.objects.create(
        channel=channel,
        channel_order_id="5000001",
        order_number="#1001",
        delivery=delivery,
        status=OrderStatus.ON_HOLD,
        currency="USD",
        subtotal=Decimal("39.98"),
        shipping_total=Decimal("5"),
        tax_total=Decimal("0"),
        discount_total=Decimal("0"),
        total=Decimal("44.98"),
    )


def decisions_create(
    order: Order,
    count: int,
    *,
    action: str = "substitute_sku",
    verdict: str = Verdict.APPLIED,
    applied: bool = True,
    errors: int = 0,
    apply_errors: int = 0,
    confidence: str = "0.95",
    model: str = MODEL,
    at: datetime | None = None,
) -> list[Decision]:
    """Create `count` decisions; the first `errors` are labelled errors, the next
    `apply_errors` failed to apply. `at` backdates them (created_at is set on insert)."""
    action_type = ActionType.objects.get(code=action)
    now = timezone.now()
    rows = []
    for index in range(count):
        is_label_error = index < errors
        is_apply_error = errors <= index < errors + apply_errors
        rows.append(
            Decision(
                action=action_type,
                order=order,
                channel=order.channel,
                model_name=model,
                model_version="2024-06",
                before={"line": 1, "sku": "TEE-CLASSIC-BLK-M"},
                after={"line": 1, "sku": "TEE-CLASSIC-WHT-M"},
                confidence=Decimal(confidence),
                verdict=verdict,
                facts={},
                applied_at=now if applied and not is_apply_error else None,
                apply_error="carrier API refused the change" if is_apply_error else "",
                outcome=DecisionOutcome.ERROR if is_label_error else DecisionOutcome.UNLABELLED,
            )
        )
    created = Decision.objects.bulk_create(rows)
    if at is not None:
        Decision.objects.filter(pk__in=[row.pk for row in created]).update(created_at=at)
    return list(Decision.objects.filter(pk__in=[row.pk for row in created]).order_by("id"))
