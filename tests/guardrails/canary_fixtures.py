"""Canary test helpers: model versions, ready orders placed in a chosen arm, carrier proposals.

Orders are placed in an arm by searching for channel order ids whose bucket, under the
canary's salt, falls on the wanted side of the share. The search only hashes and never
touches the database.
"""

from decimal import Decimal
from itertools import count

from catalog.models import Channel, Sku
from guardrails import rollouts
from guardrails.appliers import carrier_service_by_code
from guardrails.models import Canary, CanaryArm, Decision, Version
from guardrails.rollout_selectors import bucket_for, candidate_bucket_limit
from guardrails.services import decision_propose
from orders.models import Delivery, Order, OrderLine, OrderStatus

MODEL = "gpt-carrier"
CARRIER_CHANGE = ({"carrier_service": "ups/ground"}, {"carrier_service": "fedex/ground"})

_numbers = count(1)


def model_versions(user, *, subject: str = MODEL, active: str = "v1", candidate: str = "v2"):
    """Return (active, draft candidate) versions of a model; the first is activated."""
    control = rollouts.version_create(
        kind="model", subject=subject, label=active, changelog="First version.", user=user
    )
    rollouts.version_activate(version_id=control.pk, user=user, note="First version goes live.")
    draft = rollouts.version_create(
        kind="model",
        subject=subject,
        label=candidate,
        changelog="Weighs carrier reliability higher.",
        user=user,
    )
    control.refresh_from_db()
    return control, draft


def canary_of(user, candidate: Version, **settings) -> Canary:
    settings.setdefault("min_orders_per_arm", 2)
    return rollouts.canary_start(candidate_id=candidate.pk, user=user, **settings)


def ready_order(channel: Channel, channel_order_id: str, *, sku_code: str = "TEE-CLASSIC-BLK-M"):
    """A ready order of one 19.99 line shipped by UPS Ground."""
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id=f"wh-canary-{channel_order_id}",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
    )
    order = Order.objects.create(
        channel=channel,
        channel_order_id=channel_order_id,
        order_number=f"#{channel_order_id}",
        delivery=delivery,
        status=OrderStatus.READY,
        currency="USD",
        subtotal=Decimal("19.99"),
        shipping_total=Decimal("5"),
        tax_total=Decimal("0"),
        discount_total=Decimal("0"),
        total=Decimal("24.99"),
        shipping_address={"name": "Ada Quill", "city": "Austin", "country_code": "US"},
        carrier_service=carrier_service_by_code("ups/ground"),
    )
    OrderLine.objects.create(
        order=order,
        position=1,
        title="Classic Cotton T-Shirt - Black / M",
        quantity=1,
        unit_price=Decimal("19.99"),
        sku=Sku.objects.get(code=sku_code),
        raw={"sku": sku_code},
    )
    return order


def order_ids_in_arm(canary: Canary, arm: str, how_many: int, *, channel_code: str = "shop"):
    """Return channel order ids whose bucket puts them in `arm` at the canary's share."""
    limit = candidate_bucket_limit(canary.share)
    found = []
    while len(found) < how_many:
        channel_order_id = str(9_000_000 + next(_numbers))
        bucket = bucket_for(f"{channel_code}:{channel_order_id}", canary.salt)
        if (bucket < limit) == (arm == CanaryArm.CANDIDATE):
            found.append(channel_order_id)
    return found


def orders_in_arm(canary: Canary, channel: Channel, arm: str, how_many: int, **fields):
    return [
        ready_order(channel, channel_order_id, **fields)
        for channel_order_id in order_ids_in_arm(canary, arm, how_many, channel_code=channel.code)
    ]


def propose_carrier(order: Order, model_version: str, *, model_name: str = MODEL) -> Decision:
    """Propose UPS Ground -> FedEx Ground with 0.95 confidence: applied under the defaults."""
    return decision_propose(
        order_id=order.pk,
        action_code="select_carrier",
        before=CARRIER_CHANGE[0],
        after=CARRIER_CHANGE[1],
        confidence=Decimal("0.95"),
        model_name=model_name,
        model_version=model_version,
    )
