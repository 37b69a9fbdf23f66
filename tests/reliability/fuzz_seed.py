"""A small, realistic database for the API fuzz suite.

Every API resource gets at least one row, built through the same services the product uses.
A generated request that names an existing id then reaches the code behind the lookup, such
as a decision to revert, an open review item to accept or a running canary to pause.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from django.apps import apps as django_apps
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind, Sku
from guardrails import breakers, rollouts
from guardrails.defaults import default_policies_load
from guardrails.models import Breaker, BreakerScope, Decision, Version
from guardrails.services import decision_propose
from inventory.models import Location, LocationKind, StockEventKind, StockLevel
from inventory.services import StockEventInput, discrepancy_record, stock_event_record
from orders import fulfilment
from orders.carrier_reference import carrier_reference_load
from orders.models import CarrierService, ChannelApiGrant, Delivery, Order
from reviews import labels
from reviews.models import LabelTerm, ReviewItem
from tests.conftest import (
    SECRET,
    as_body,
    ensure_role_groups,
    make_user,
    order_payload,
    signed_headers,
)
from tests.label_fixtures import _MIGRATION as LABEL_MIGRATION

SKU_CODES = ("TEE-CLASSIC-BLK-M", "TEE-CLASSIC-WHT-M", "MUG-ENAMEL-NVY-OS")
LOCATION_CODES = ("WH", "STORE")
SHOP = "shop"
CANONICAL = "canon"
AMAZON = "amazon-us"

# Austin, TX with a California ZIP code: the address check holds the order for review.
WRONG_ZIP_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "94105",
    "country_code": "US",
}


@dataclass
class FuzzWorld:
    """The seeded rows the fuzz suite sends requests about, and the tokens it sends them with.

    `ids` maps the first path segment after /api/v1/ ("orders", "review-items") to the ids
    that exist, so a generated path parameter can be swapped for one of them. `values` maps
    a body or query field name ("order", "sku", "channel") to existing values for it.
    """

    tokens: dict[str, str]
    ids: dict[str, list[int]] = field(default_factory=dict)
    values: dict[str, list[int | str]] = field(default_factory=dict)


def fuzz_world_create() -> FuzzWorld:
    """Create users with tokens, channels, SKUs, stock, orders and one row of each API resource.

    Call it inside a transactional test, because the webhook processing it relies on runs on
    commit.
    """
    # A transactional test before this one may have flushed the data migrations' rows.
    ensure_role_groups()
    default_policies_load()
    carrier_reference_load()
    LABEL_MIGRATION.load_label_taxonomy(django_apps, None)

    admin = User.objects.create_superuser("fuzz-admin", password="pw-fuzz-admin")
    ops = _staff(make_user("fuzz-ops", "ops_manager"))
    integration = make_user("fuzz-integration", "integration")
    channels = _channels()
    ChannelApiGrant.objects.create(user=integration, channel=channels[SHOP])
    ChannelApiGrant.objects.create(user=integration, channel=channels[CANONICAL])
    skus = _skus(channels[SHOP])
    locations = _stock(skus)

    orders = _orders()
    decisions = _decisions(orders, ops)
    breaker = breakers.breaker_report_degradation(
        scope=BreakerScope.CHANNEL, key=SHOP, detail="Fuzz seed: upstream slow.", user=ops
    )
    versions, canary = _rollout(ops)
    label = _label(decisions[0], ops)
    shipment = _fulfilment(orders[0], ops)
    discrepancy_record(sku=skus[0], location=locations[0], counted=7, reported_by=ops)

    world = FuzzWorld(
        tokens={
            "admin": Token.objects.create(user=admin).key,
            "ops": Token.objects.create(user=ops).key,
            "integration": Token.objects.create(user=integration).key,
        }
    )
    world.ids = {
        "orders": [order.pk for order in Order.objects.order_by("pk")],
        "deliveries": list(Delivery.objects.order_by("pk").values_list("pk", flat=True)),
        "review-items": list(ReviewItem.objects.order_by("pk").values_list("pk", flat=True)),
        "decisions": [decision.pk for decision in decisions],
        "breakers": [
            breaker.pk,
            *Breaker.objects.exclude(pk=breaker.pk).values_list("pk", flat=True),
        ],
        "versions": [version.pk for version in versions],
        "canaries": [canary.pk],
        "label-terms": list(LabelTerm.objects.order_by("pk").values_list("pk", flat=True)[:5]),
        "error-labels": [label.pk],
        "shipments": [shipment.pk],
        "stock-levels": list(StockLevel.objects.order_by("pk").values_list("pk", flat=True)),
    }
    world.values = _field_values(world, versions)
    return world


def _field_values(world: FuzzWorld, versions: list[Version]) -> dict[str, list[int | str]]:
    terms = LabelTerm.objects.order_by("pk")
    return {
        "order": world.ids["orders"],
        "decision": world.ids["decisions"],
        "review_item": world.ids["review-items"],
        "candidate": [versions[-1].pk],
        "policy_versions": [],
        "cause": [term.pk for term in terms if term.kind == "cause"][:3],
        "impact": [term.pk for term in terms if term.kind == "impact"][:3],
        "corrective_action": [term.pk for term in terms if term.kind == "corrective_action"][:3],
        "sku": list(SKU_CODES),
        "sku_id": list(Sku.objects.order_by("pk").values_list("pk", flat=True)),
        "service_id": list(CarrierService.objects.order_by("pk").values_list("pk", flat=True)[:3]),
        "location": list(LOCATION_CODES),
        "channel": [SHOP, CANONICAL, AMAZON],
        "channel_order_id": list(Order.objects.values_list("channel_order_id", flat=True)),
        "shipment_id": ["PARCEL-1"],
        "action": ["substitute_sku", "select_carrier"],
        "key": [SHOP, "substitute_sku"],
        "model": ["gpt-carrier"],
        "model_name": ["gpt-carrier", "gpt-sub"],
        "line": [1],
        # Free-text fields whose values the services check against a list.
        "outcome": ["correct", "error"],
        "currency": ["USD"],
        "share": ["0.02"],
        "amount": ["10.00"],
        "confidence": ["0.9"],
    }


def _staff(user: User) -> User:
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def _channels() -> dict[str, Channel]:
    return {
        SHOP: Channel.objects.create(kind=ChannelKind.SHOPIFY, code=SHOP, webhook_secret=SECRET),
        CANONICAL: Channel.objects.create(kind=ChannelKind.CANONICAL, code=CANONICAL),
        AMAZON: Channel.objects.create(kind=ChannelKind.AMAZON, code=AMAZON),
    }


def _skus(channel: Channel) -> list[Sku]:
    skus = [
        Sku.objects.create(code=code, title=code.title(), price="19.99", currency="USD")
        for code in SKU_CODES
    ]
    for sku in skus:
        ChannelSkuMapping.objects.create(
            channel=channel, id_kind=ExternalIdKind.SKU, external_id=sku.code, sku=sku
        )
    return skus


def _stock(skus: list[Sku]) -> list[Location]:
    locations = [
        Location.objects.create(code=code, name=code.title(), kind=LocationKind.WAREHOUSE)
        for code in LOCATION_CODES
    ]
    for sku in skus:
        for location in locations:
            stock_event_record(
                data=StockEventInput(
                    source="fuzz-seed",
                    event_id=f"{sku.code}@{location.code}",
                    sku=sku,
                    location=location,
                    kind=StockEventKind.ABSOLUTE,
                    quantity=20,
                    version=1,
                )
            )
    return locations


def _orders() -> list[Order]:
    """Post three Shopify orders through the signed webhook: two ready, one held for review."""
    client = Client()
    url = reverse("webhooks:shopify", kwargs={"channel_code": SHOP})
    for number, overrides in enumerate([{}, {"shipping_address": WRONG_ZIP_ADDRESS}, {}], start=1):
        body = as_body(
            order_payload(order_id=9_100_000_000_000 + number, name=f"#F{number}", **overrides)
        )
        response = client.post(
            url,
            data=body,
            content_type="application/json",
            headers=signed_headers(body, webhook_id=f"fuzz-{number}"),
        )
        assert response.status_code == 200, response.content
    return list(Order.objects.order_by("pk"))


def _decisions(orders: list[Order], ops: User) -> list[Decision]:
    substitution = decision_propose(
        order_id=orders[0].pk,
        action_code="substitute_sku",
        before={"line": 1, "sku": SKU_CODES[0]},
        after={"line": 1, "sku": SKU_CODES[1]},
        confidence=Decimal("0.97"),
        model_name="gpt-sub",
        model_version="2024-06",
        proposed_by=ops,
    )
    carrier = decision_propose(
        order_id=orders[2].pk,
        action_code="select_carrier",
        before={"carrier_service": "ups/ground"},
        after={"carrier_service": "fedex/ground"},
        confidence=Decimal("0.55"),
        model_name="gpt-carrier",
        model_version="v1",
        proposed_by=ops,
    )
    return [substitution, carrier]


def _rollout(ops: User) -> tuple[list[Version], object]:
    control = rollouts.version_create(
        kind="model", subject="gpt-carrier", label="v1", changelog="First.", user=ops
    )
    rollouts.version_activate(version_id=control.pk, user=ops, note="Goes live.")
    draft = rollouts.version_create(
        kind="model", subject="gpt-carrier", label="v2", changelog="Second.", user=ops
    )
    canary = rollouts.canary_start(candidate_id=draft.pk, user=ops, min_orders_per_arm=2)
    return [control, draft], canary


def _label(decision: Decision, ops: User):
    terms = {term.kind: term for term in LabelTerm.objects.order_by("pk")}
    return labels.error_label_add(
        user=ops,
        decision_id=decision.pk,
        cause_id=terms["cause"].pk,
        impact_id=terms["impact"].pk,
        corrective_action_id=terms["corrective_action"].pk,
        note="Fuzz seed.",
    )


def _fulfilment(order: Order, ops: User):
    shipment, _ = fulfilment.shipment_record(
        order=order,
        shipment_id="PARCEL-1",
        user=ops,
        lines=[{"sku": SKU_CODES[0], "quantity": 1}],
        carrier_code="UPS Ground",
        tracking_number="1Z999",
    )
    fulfilment.fulfilment_exception_record(
        order=order, stage="pick", reason="wrong_item", user=ops, note="Fuzz seed."
    )
    fulfilment.return_record(order=order, return_id="RMA-1", reason="damaged_in_transit", user=ops)
    fulfilment.chargeback_record(
        order=order, chargeback_id="CB-1", amount=Decimal("10.00"), currency="USD", user=ops
    )
    return shipment
