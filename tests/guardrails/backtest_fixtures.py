"""Recorded decisions for the backtest and shadow tests, built as decision_propose stores them."""

from datetime import datetime
from decimal import Decimal

from django.db.models import Max

from catalog.models import Channel, ChannelKind
from guardrails.engine import evaluate, rules_from_version
from guardrails.models import ActionType, Decision, Policy, PolicyBand, PolicyVersion
from orders.models import Delivery, Order, OrderStatus

# Copied field by field into drafts; the test then changes one limit.
VERSION_FIELDS = [
    "mode",
    "approver_group",
    "limits_currency",
    "order_value_under",
    "item_price_under",
    "confidence_above",
    "require_fresh_stock",
    "review_sla_minutes",
    "on_sla_breach",
    "escalation_group",
]
BAND_FIELDS = [
    "position",
    "name",
    "order_value_from",
    "order_value_to",
    "customer_tier",
    "margin_rate_from",
    "mode",
    "item_price_under",
    "confidence_above",
]


def channel_create(code: str) -> Channel:
    return Channel.objects.create(kind=ChannelKind.SHOPIFY, code=code, webhook_secret="s")


def order_create(channel: Channel, number: int, *, total: str = "44.98") -> Order:
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id=f"wh-{channel.code}-{number}",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
    )
    return Order.objects.create(
        channel=channel,
        channel_order_id=str(5_000_000 + number),
        order_number=f"#{1000 + number}",
        delivery=delivery,
        status=OrderStatus.ON_HOLD,
        currency="USD",
        subtotal=Decimal(total) - Decimal("5"),
        shipping_total=Decimal("5"),
        tax_total=Decimal("0"),
        discount_total=Decimal("0"),
        total=Decimal(total),
    )


def live_version(action_code: str, channel: Channel | None = None) -> PolicyVersion:
    policy = Policy.objects.get(action__code=action_code, channel=channel)
    return policy_version_loaded(policy.live_version_id)


def policy_version_loaded(version_id: int) -> PolicyVersion:
    return (
        PolicyVersion.objects.select_related("policy__action", "approver_group", "escalation_group")
        .prefetch_related("bands")
        .get(pk=version_id)
    )


def version_copy(
    source: PolicyVersion, *, policy: Policy | None = None, publish: bool = False, **changes
) -> PolicyVersion:
    """A new version of `policy` (default: the source's) with the source's rules and bands."""
    policy = policy or source.policy
    number = (policy.versions.aggregate(number=Max("number"))["number"] or 0) + 1
    fields = {name: getattr(source, name) for name in VERSION_FIELDS} | changes
    version = PolicyVersion.objects.create(
        policy=policy,
        number=number,
        changelog=f"Copy of {source} for a test.",
        published_at=source.published_at if publish else None,
        **fields,
    )
    for band in source.bands.all():
        PolicyBand.objects.create(
            version=version, **{name: getattr(band, name) for name in BAND_FIELDS}
        )
    return policy_version_loaded(version.pk)


def channel_policy_create(action_code: str, channel: Channel) -> Policy:
    """A live policy of the channel's own, with the same rules as the all-channels one."""
    policy = Policy.objects.create(action=ActionType.objects.get(code=action_code), channel=channel)
    version = version_copy(live_version(action_code), policy=policy, publish=True)
    policy.live_version = version
    policy.save(update_fields=["live_version"])
    return policy


def substitution_facts(
    order: Order, *, item_price: str, confidence: str = "0.95", customer_tier: str = "standard"
) -> dict:
    return {
        "action": "substitute_sku",
        "channel": order.channel.code,
        "order": {
            "id": order.pk,
            "status": order.status,
            "currency": order.currency,
            "total": str(order.total),
            "customer_tier": customer_tier,
            "margin_rate": None,
            "in_store_pickup": False,
        },
        "item_price": item_price,
        "confidence": confidence,
        "model": {"name": "sub-ranker", "version": "2024-11"},
        "stock": {"checked": True, "fresh": True, "as_of": "2024-11-04T10:00:00+00:00"},
        "listing_forbids": False,
        "breakers": [],
        "autonomy": {
            "suspended": False,
            "error_rate": "0",
            "max_error_rate": "0.002",
            "window_days": 30,
        },
    }


def decision_record(
    *,
    order: Order,
    facts: dict,
    action_code: str = "substitute_sku",
    created_at: datetime | None = None,
) -> Decision:
    """Judge the facts under the live version, as decision_propose does, and store the result."""
    version = live_version(action_code, _own_channel(action_code, order.channel))
    evaluation = evaluate(rules=rules_from_version(version), facts=facts)
    decision = Decision.objects.create(
        action=version.policy.action,
        order=order,
        channel=order.channel,
        model_name=facts["model"]["name"],
        model_version=facts["model"]["version"],
        before={"line": 1, "sku": "TEE-BLK-M"},
        after={"line": 1, "sku": "TEE-BLK-L"},
        confidence=Decimal(facts["confidence"]),
        verdict=evaluation.verdict,
        reasons=evaluation.reasons,
        policy_version=version,
        facts=facts,
    )
    if created_at is not None:
        Decision.objects.filter(pk=decision.pk).update(created_at=created_at)
        decision.refresh_from_db()
    return decision


def _own_channel(action_code: str, channel: Channel) -> Channel | None:
    own = Policy.objects.filter(
        action__code=action_code, channel=channel, live_version__isnull=False
    ).exists()
    return channel if own else None
