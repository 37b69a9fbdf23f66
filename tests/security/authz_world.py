"""The data the authorization matrix runs against, and one request and effect per row.

`world_build` creates users of every role, four channels and the objects the rows act on,
once per test module. `REQUESTS` builds the request of each row of
tests/security/authz_matrix.py. For a write, `EFFECTS` checks that the change happened,
because allowed requests must do it and denied requests must not. For a list, `LISTED`
checks whether the world's object is in the page.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponse
from django.test import Client, TestCase
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from catalog.models import (
    Channel,
    ChannelKind,
    ChannelSkuMapping,
    ExternalIdKind,
    ImportJob,
    Sku,
)
from guardrails import breakers, rollouts
from guardrails.defaults import default_policies_load
from guardrails.models import (
    Breaker,
    BreakerScope,
    BreakerState,
    Canary,
    CanaryStatus,
    Decision,
    DecisionOutcome,
    PolicyVersion,
    Version,
    VersionStatus,
)
from guardrails.selectors import guardrail_settings
from inventory.models import InventoryDiscrepancy, StockEvent
from monitoring.models import Alert, AlertRule, Severity
from monitoring.services import alert_raise, alert_silence
from orders.carrier_reference import carrier_reference_load
from orders.fulfilment import shipment_record
from orders.models import (
    ChannelApiGrant,
    Chargeback,
    Delivery,
    DeliveryOutcome,
    FulfilmentException,
    Order,
    OrderReturn,
    Shipment,
    ShipmentStatus,
)
from reviews import confirmations, fixes, labels
from reviews.models import (
    AddressConfirmation,
    ErrorLabel,
    FixItem,
    FixStatus,
    LabelKind,
    LabelTerm,
    ReviewItem,
    ReviewKind,
    ReviewStatus,
)
from tests.conftest import SECRET, as_body, ensure_role_groups, make_user, order_payload
from tests.conftest import signed_headers as shopify_headers
from tests.guardrails.backtest_fixtures import live_version, version_copy
from tests.guardrails.canary_fixtures import canary_of, model_versions, propose_carrier, ready_order
from tests.guardrails.recommender_fixtures import rate_create, sku_create, stock_set

from .authz_matrix import Role

SAMPLES = Path(settings.BASE_DIR) / "samples"
AGENT_MODEL = "authz-agent"
CANARY_MODEL = "authz-carrier"
BLACK_M = {"colour": "Black", "size": "M"}
# Austin, TX with a California ZIP code: the order is held and its address item opened.
WRONG_ZIP_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "94105",
    "country_code": "US",
}
GOOD_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
}
# 80 mugs at 14.00 and 5.00 shipping: above the USD 1,000 escalation limit.
HIGH_VALUE_TOTALS = {"subtotal_price": "1120.00", "total_price": "1125.00"}
MUG_LINE = {
    "id": 13571113171924,
    "variant_id": 44012345678902,
    "sku": "MUG-ENAMEL-NVY-OS",
    "title": "Enamel Camp Mug",
    "name": "Enamel Camp Mug - Navy / OS",
    "quantity": 80,
    "price": "14.00",
}
STAFF_ROLES = {Role.CS_MANAGER, Role.OPS_MANAGER}


@dataclass
class World:
    users: dict[Role, User]
    tokens: dict[Role, str]
    shop: Channel
    canonical: Channel
    amazon: Channel
    other: Channel
    mug: Sku
    order_ready: Order
    order_shipped: Order
    shipment: Shipment
    decision_applied: Decision
    decision_labelled: Decision
    item_high_value: ReviewItem
    item_address: ReviewItem
    item_claimed: ReviewItem
    confirmation_token: str
    canary_running: Canary
    canary_paused: Canary
    version_to_activate: Version
    version_for_canary: Version
    breaker_closed: Breaker
    breaker_degraded: Breaker
    alert_open: Alert
    alert_silenced: Alert
    fix: FixItem
    policy_draft: PolicyVersion
    delivery_failed: Delivery
    terms: dict[str, LabelTerm]
    week: str


def world_build() -> World:
    """Create the matrix's data. Call it inside a transaction that is rolled back afterwards."""
    ensure_role_groups()
    default_policies_load()
    _sampling_off()
    carrier_reference_load()
    users = _users()
    channels = _channels(users)
    mug = _catalog(channels["shop"])

    on_hold = _orders_on_hold(channels["shop"])
    ready = _ready_orders(channels["shop"], users)
    rollout = _rollouts(users[Role.OPS_MANAGER])
    monitoring = _monitoring(users)

    # The weekly review's fix form needs a labelled error of this week.
    terms = _label_terms()
    labels.error_label_add(
        user=users[Role.OPS_MANAGER],
        decision_id=ready["decision_labelled"].pk,
        cause_id=terms["cause"].pk,
        impact_id=terms["impact"].pk,
        corrective_action_id=terms["corrective_action"].pk,
    )
    year, week, _ = timezone.localdate().isocalendar()

    return World(
        users=users,
        tokens={role: Token.objects.create(user=user).key for role, user in users.items()},
        **channels,
        mug=mug,
        **on_hold,
        **ready,
        **rollout,
        **monitoring,
        fix=fixes.fix_item_create(
            user=users[Role.OPS_MANAGER], title="Carrier picks", cause=terms["cause"]
        ),
        policy_draft=version_copy(live_version("estimate_ship_date")),
        delivery_failed=Delivery.objects.create(
            channel=channels["shop"],
            delivery_id="authz-failed",
            topic="orders/create",
            body=b"{}",
            signature_valid=True,
            outcome=DeliveryOutcome.FAILED,
            error="Processing failed.",
        ),
        terms=terms,
        week=f"{year}-W{week:02d}",
    )


def _sampling_off() -> None:
    # Audit sampling would open review items at random on applied decisions.
    row = guardrail_settings()
    row.audit_sample_start_rate = Decimal("0")
    row.audit_sample_floor_rate = Decimal("0")
    row.save(update_fields=["audit_sample_start_rate", "audit_sample_floor_rate"])


def _users() -> dict[Role, User]:
    users = {}
    for role in Role:
        if role is Role.ANONYMOUS:
            continue
        group = {Role.OUTSIDER: None, Role.INTEGRATION_OTHER: "integration"}.get(role, role.value)
        user = make_user(f"authz-{role.value}", group)
        if role in STAFF_ROLES:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        users[role] = user
    return users


def _channels(users: dict[Role, User]) -> dict[str, Channel]:
    channels = {
        "shop": Channel.objects.create(
            kind=ChannelKind.SHOPIFY, code="authz-shop", webhook_secret=SECRET
        ),
        "canonical": Channel.objects.create(kind=ChannelKind.CANONICAL, code="authz-canonical"),
        "amazon": Channel.objects.create(kind=ChannelKind.AMAZON, code="authz-amazon"),
        "other": Channel.objects.create(
            kind=ChannelKind.SHOPIFY, code="authz-other", webhook_secret=SECRET
        ),
    }
    for name in ("shop", "canonical", "amazon"):
        ChannelApiGrant.objects.create(user=users[Role.INTEGRATION], channel=channels[name])
    ChannelApiGrant.objects.create(user=users[Role.INTEGRATION_OTHER], channel=channels["other"])
    return channels


def _catalog(shop: Channel) -> Sku:
    """Two black tees (the ordered one out of stock) and a mug, mapped on the shop."""
    ordered = sku_create(
        "TEE-CLASSIC-BLK-M", "Classic Cotton T-Shirt - Black / M", attributes=BLACK_M
    )
    similar = sku_create(
        "TEE-PREMIUM-BLK-M",
        "Premium Cotton T-Shirt - Black / M",
        price="21.99",
        cost="9.00",
        attributes=BLACK_M,
    )
    mug = sku_create(
        "MUG-ENAMEL-NVY-OS",
        "Enamel Camp Mug - Navy / OS",
        price="14.00",
        cost="4.00",
        attributes={"colour": "Navy"},
        category="Mugs",
    )
    for sku in (ordered, similar, mug):
        ChannelSkuMapping.objects.create(
            channel=shop, id_kind=ExternalIdKind.SKU, external_id=sku.code, sku=sku
        )
    stock_set(ordered, 0)
    stock_set(similar, 10)
    # FedEx Ground is cheaper and as fast, so the carrier recommender proposes a change.
    rate_create("ups/ground", "10.00")
    rate_create("fedex/ground", "6.00")
    return mug


def _orders_on_hold(shop: Channel) -> dict:
    """A high-value order and one with a wrong ZIP code, through the Shopify webhook."""
    _webhook_post(order_payload(order_id=4001, lines=[MUG_LINE], **HIGH_VALUE_TOTALS), "hv")
    _webhook_post(
        order_payload(order_id=4002, lines=[MUG_LINE | {"quantity": 1}], **_address_totals()),
        "address",
    )
    high_value = ReviewItem.objects.get(
        order__channel=shop, order__channel_order_id="4001", kind=ReviewKind.HIGH_VALUE
    )
    address = ReviewItem.objects.get(
        order__channel=shop, order__channel_order_id="4002", kind=ReviewKind.ADDRESS
    )
    confirmation = AddressConfirmation.objects.get(review_item=address)
    return {
        "item_high_value": high_value,
        "item_address": address,
        "item_claimed": _claimed_item_expired(high_value),
        "confirmation_token": confirmations.address_confirmation_token(confirmation),
    }


def _address_totals() -> dict:
    return {
        "subtotal_price": "14.00",
        "total_price": "19.00",
        "shipping_address": WRONG_ZIP_ADDRESS,
    }


def _webhook_post(payload: dict, webhook_id: str) -> None:
    body = as_body(payload)
    url = reverse("webhooks:shopify", kwargs={"channel_code": "authz-shop"})
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = Client().post(
            url,
            data=body,
            content_type="application/json",
            headers=shopify_headers(body, webhook_id=f"authz-{webhook_id}"),
            secure=True,
        )
    assert response.status_code == 200, response.content


def _claimed_item_expired(item: ReviewItem) -> ReviewItem:
    """An item on `item`'s order that someone claimed and left before the claim ran out."""
    claimer = make_user("authz-claimer", "cs_agent")
    return ReviewItem.objects.create(
        kind=ReviewKind.PRIORITY_CUSTOMER,
        order=item.order,
        reason="Priority customer; claimed and left.",
        source_data={},
        proposal=item.proposal,
        assignee=claimer,
        claimed_until=timezone.now() - timedelta(minutes=1),
    )


def _ready_orders(shop: Channel, users: dict[Role, User]) -> dict:
    order_ready = ready_order(shop, "5001")
    order_shipped = ready_order(shop, "5002")
    shipment, _ = shipment_record(
        order=order_shipped, shipment_id="PKG-1", user=users[Role.INTEGRATION]
    )
    decided = ready_order(shop, "5003")
    labelled = ready_order(shop, "5004")
    return {
        "order_ready": order_ready,
        "order_shipped": order_shipped,
        "shipment": shipment,
        "decision_applied": propose_carrier(decided, "1", model_name=AGENT_MODEL),
        "decision_labelled": propose_carrier(labelled, "1", model_name=AGENT_MODEL),
    }


def _rollouts(ops: User) -> dict:
    _, running_candidate = model_versions(ops, subject=CANARY_MODEL)
    _, paused_candidate = model_versions(ops, subject="authz-paused")
    paused = canary_of(ops, paused_candidate)
    rollouts.canary_pause(canary_id=paused.pk, user=ops, reason="Paused for the matrix.")
    _, next_candidate = model_versions(ops, subject="authz-next")
    return {
        "canary_running": canary_of(ops, running_candidate),
        "canary_paused": paused,
        "version_for_canary": next_candidate,
        "version_to_activate": rollouts.version_create(
            kind="model", subject="authz-activate", label="v1", changelog="First.", user=ops
        ),
    }


def _monitoring(users: dict[Role, User]) -> dict:
    rule = AlertRule.objects.create(
        name="Authz carrier mix",
        kpi="carrier_mix",
        kind="baseline_deviation",
        threshold=Decimal("30"),
        severity=Severity.ACTIONABLE,
        owner_group=users[Role.OPS_MANAGER].groups.get(),
        runbook="1. Open the carrier selection breaker.",
        remediation="open_breaker",
        remediation_target="select_carrier",
    )
    alerts = [
        alert_raise(
            severity=Severity.ACTIONABLE,
            source="alert_rules",
            dedup_key=f"rule:{rule.pk}:{key}",
            title=f"Carrier mix {key}",
            owner_group="ops_manager",
            runbook=rule.runbook,
            rule=rule,
            scope=key,
        )
        for key in ("open", "silenced")
    ]
    alert_silence(
        alert_id=alerts[1].pk,
        user=users[Role.OPS_MANAGER],
        until=timezone.now() + timedelta(hours=1),
    )
    degraded = breakers.breaker_report_degradation(
        scope=BreakerScope.CHANNEL,
        key="authz-amazon",
        detail="The marketplace API answers 503.",
        user=users[Role.INTEGRATION],
    )
    return {
        "alert_open": alerts[0],
        "alert_silenced": alerts[1],
        "breaker_closed": Breaker.objects.create(
            scope=BreakerScope.ACTION, key="estimate_ship_date"
        ),
        "breaker_degraded": degraded,
    }


def _label_terms() -> dict[str, LabelTerm]:
    active = LabelTerm.objects.filter(is_active=True).order_by("position", "pk")
    return {
        "cause": active.filter(kind=LabelKind.CAUSE).first(),
        "impact": active.filter(kind=LabelKind.IMPACT).first(),
        "corrective_action": active.filter(kind=LabelKind.CORRECTIVE_ACTION).first(),
    }


# --- Requests -----------------------------------------------------------------------------


@dataclass
class Call:
    path: str
    body: dict | list | None = None
    # Form-encoded (pages and admin) instead of JSON (API).
    form: bool = False
    headers: dict = field(default_factory=dict)


def _json(name: str) -> dict | list:
    return json.loads((SAMPLES / name).read_text("utf-8"))


def _canonical_order(world: World) -> Call:
    body = _json("canonical/01-normal.json") | {"channel": world.canonical.code}
    return Call(reverse("order-list"), body, headers={"Idempotency-Key": "authz-order-1"})


def _fact(world: World, **fields) -> dict:
    return {"order": world.order_ready.pk, **fields}


def _label_form(world: World, prefix: str) -> dict:
    return {
        f"{prefix}-cause": world.terms["cause"].pk,
        f"{prefix}-impact": world.terms["impact"].pk,
        f"{prefix}-corrective_action": world.terms["corrective_action"].pk,
        f"{prefix}-note": "Matrix label.",
    }


def _admin_action(world: World, url_name: str, action: str, pk: int, **extra) -> Call:
    body = {"action": action, "_selected_action": [pk], "index": "0", **extra}
    return Call(reverse(url_name), body, form=True)


def _item_path(url_name: str, item: ReviewItem) -> str:
    return reverse(url_name, kwargs={"item_id": item.pk})


def _canary_path(url_name: str, canary: Canary) -> str:
    return reverse(url_name, kwargs={"canary_id": canary.pk})


def _alert_path(url_name: str, alert: Alert) -> str:
    return reverse(url_name, kwargs={"alert_id": alert.pk})


Builder = Callable[[World], Call]

REQUESTS: dict[str, Builder] = {
    # API: ingestion and fulfilment facts
    "api.order.create": _canonical_order,
    "api.marketplace.ingest": lambda w: Call(
        reverse("marketplace-orders", kwargs={"channel_code": w.amazon.code}),
        _json("amazon/01-prime.json"),
    ),
    "api.shipment.create": lambda w: Call(
        reverse("shipment-list"), _fact(w, shipment_id="PKG-9", carrier_code="ups/ground")
    ),
    "api.shipment.status": lambda w: Call(
        reverse("shipment-detail", kwargs={"pk": w.shipment.pk}), {"status": "delivered"}
    ),
    "api.fulfilment_exception.create": lambda w: Call(
        reverse("fulfilment-exception-list"), _fact(w, stage="pick", reason="wrong_item")
    ),
    "api.return.create": lambda w: Call(
        reverse("return-list"), _fact(w, return_id="RMA-1", reason="damaged_in_transit")
    ),
    "api.chargeback.create": lambda w: Call(
        reverse("chargeback-list"),
        _fact(w, chargeback_id="CB-1", amount="24.99", currency="USD"),
    ),
    "api.stock_event.create": lambda w: Call(
        reverse("stock-event-list"),
        {
            "source": "authz",
            "event_id": "authz-1",
            "sku": w.mug.code,
            "location": "wh-east",
            "kind": "delta",
            "quantity": 5,
            "version": 100,
        },
    ),
    "api.discrepancy.create": lambda w: Call(
        reverse("inventory-discrepancy-list"),
        {"sku": w.mug.code, "location": "wh-east", "counted": 3},
    ),
    # API: AI agents
    "api.decision.propose": lambda w: Call(
        reverse("decision-list"),
        {
            "action": "select_carrier",
            "order": w.order_ready.pk,
            "before": {"carrier_service": "ups/ground"},
            "after": {"carrier_service": "fedex/ground"},
            "confidence": "0.95",
            "model_name": AGENT_MODEL,
            "model_version": "2",
        },
    ),
    "api.order.shortage": lambda w: Call(
        reverse("order-shortages", kwargs={"order_id": w.order_ready.pk}),
        {"line": 1, "quantity_short": 1},
    ),
    "api.order.carrier_recommendation": lambda w: Call(
        reverse("order-carrier-recommendation", kwargs={"order_id": w.order_ready.pk}), {}
    ),
    "api.breaker.report_degradation": lambda w: Call(
        reverse("breaker-report-degradation"),
        {"scope": "channel", "key": w.shop.code, "detail": "Shopify answers 503."},
    ),
    "api.breaker.report_recovery": lambda w: Call(
        reverse("breaker-report-recovery"),
        {"scope": "channel", "key": w.amazon.code, "detail": "Healthy again."},
    ),
    # API: people
    "api.decision.revert": lambda w: Call(
        reverse("decision-revert", kwargs={"pk": w.decision_applied.pk}), {"note": "Wrong."}
    ),
    "api.decision.label": lambda w: Call(
        reverse("decision-label", kwargs={"pk": w.decision_applied.pk}), {"outcome": "correct"}
    ),
    "api.error_label.create": lambda w: Call(
        reverse("error-label-list"),
        {
            "review_item": w.item_high_value.pk,
            "cause": w.terms["cause"].pk,
            "impact": w.terms["impact"].pk,
            "corrective_action": w.terms["corrective_action"].pk,
        },
    ),
    "api.review_item.accept": lambda w: Call(
        reverse("review-item-accept", kwargs={"pk": w.item_high_value.pk}), {"note": "Fine."}
    ),
    "api.review_item.reject": lambda w: Call(
        reverse("review-item-reject", kwargs={"pk": w.item_high_value.pk}), {"note": "No."}
    ),
    "api.review_item.revise": lambda w: Call(
        reverse("review-item-revise", kwargs={"pk": w.item_address.pk}),
        {"revision": GOOD_ADDRESS, "note": "Customer called."},
    ),
    "api.review_item.claim": lambda w: Call(
        reverse("review-item-claim", kwargs={"pk": w.item_high_value.pk}), {}
    ),
    "api.review_item.release": lambda w: Call(
        reverse("review-item-release", kwargs={"pk": w.item_claimed.pk}), {}
    ),
    "api.breaker.open": lambda w: Call(
        reverse("breaker-open", kwargs={"pk": w.breaker_closed.pk}), {"detail": "By hand."}
    ),
    "api.breaker.close": lambda w: Call(
        reverse("breaker-close", kwargs={"pk": w.breaker_degraded.pk}), {"detail": "By hand."}
    ),
    "api.version.create": lambda w: Call(
        reverse("version-list"),
        {"kind": "model", "subject": "authz-new", "label": "v1", "changelog": "First."},
    ),
    "api.version.activate": lambda w: Call(
        reverse("version-activate", kwargs={"pk": w.version_to_activate.pk}), {"note": "Live."}
    ),
    "api.canary.create": lambda w: Call(
        reverse("canary-list"), {"candidate": w.version_for_canary.pk, "share": "0.02"}
    ),
    "api.canary.share": lambda w: Call(
        reverse("canary-share", kwargs={"pk": w.canary_running.pk}), {"share": "0.02"}
    ),
    "api.canary.pause": lambda w: Call(
        reverse("canary-pause", kwargs={"pk": w.canary_running.pk}), {"reason": "Look first."}
    ),
    "api.canary.resume": lambda w: Call(
        reverse("canary-resume", kwargs={"pk": w.canary_paused.pk}), {"note": "Go on."}
    ),
    "api.canary.stop": lambda w: Call(
        reverse("canary-stop", kwargs={"pk": w.canary_running.pk}), {"note": "Enough."}
    ),
    "api.canary.promote": lambda w: Call(
        reverse("canary-promote", kwargs={"pk": w.canary_running.pk}), {"note": "Better."}
    ),
    # API: reads of channel data
    "api.order.detail": lambda w: Call(reverse("order-detail", kwargs={"pk": w.order_ready.pk})),
    "api.order.list": lambda w: Call(reverse("order-list") + "?page_size=500"),
    "api.delivery.detail": lambda w: Call(
        reverse("delivery-detail", kwargs={"pk": w.order_ready.delivery_id})
    ),
    "api.delivery.list": lambda w: Call(reverse("delivery-list") + "?page_size=500"),
    "api.decision.detail": lambda w: Call(
        reverse("decision-detail", kwargs={"pk": w.decision_applied.pk})
    ),
    "api.decision.list": lambda w: Call(reverse("decision-list") + "?page_size=500"),
    "api.review_item.detail": lambda w: Call(
        reverse("review-item-detail", kwargs={"pk": w.item_high_value.pk})
    ),
    "api.review_item.list": lambda w: Call(reverse("review-item-list") + "?page_size=500"),
    "api.shipment.detail": lambda w: Call(reverse("shipment-detail", kwargs={"pk": w.shipment.pk})),
    "api.shipment.list": lambda w: Call(reverse("shipment-list") + "?page_size=500"),
    "api.breaker.list": lambda w: Call(reverse("breaker-list") + "?page_size=500"),
    "api.canary.assignment": lambda w: Call(
        reverse("canary-assignment")
        + f"?order={w.order_ready.pk}&action=select_carrier&model={CANARY_MODEL}"
    ),
    # Pages
    "ui.review.accept": lambda w: Call(
        _item_path("reviews:accept", w.item_high_value), {"note": "Fine."}, form=True
    ),
    "ui.review.reject": lambda w: Call(
        _item_path("reviews:reject", w.item_high_value), {"note": "No."}, form=True
    ),
    "ui.review.revise": lambda w: Call(
        _item_path("reviews:revise", w.item_address), GOOD_ADDRESS, form=True
    ),
    "ui.review.claim": lambda w: Call(_item_path("reviews:claim", w.item_high_value), form=True),
    "ui.review.release": lambda w: Call(_item_path("reviews:release", w.item_claimed), form=True),
    "ui.label.item": lambda w: Call(
        _item_path("labels:item_add", w.item_high_value),
        _label_form(w, f"item-{w.item_high_value.pk}"),
        form=True,
    ),
    "ui.label.decision": lambda w: Call(
        reverse("labels:decision_add", kwargs={"decision_id": w.decision_applied.pk}),
        _label_form(w, f"decision-{w.decision_applied.pk}"),
        form=True,
    ),
    "ui.fix.create": lambda w: Call(
        reverse("feedback:fix-create"),
        {
            "week": w.week,
            "cause": w.terms["cause"].pk,
            "action": "select_carrier",
            "model_name": AGENT_MODEL,
            "model_version": "1",
            "title": "Matrix fix",
        },
        form=True,
    ),
    "ui.fix.update": lambda w: Call(
        reverse("feedback:fix-update", kwargs={"fix_id": w.fix.pk}),
        {"status": FixStatus.IN_PROGRESS},
        form=True,
    ),
    "ui.order.revert": lambda w: Call(
        reverse(
            "orders:history-revert",
            kwargs={"order_id": w.decision_applied.order_id, "decision_id": w.decision_applied.pk},
        ),
        {"note": "Wrong carrier."},
        form=True,
    ),
    "ui.canary.share": lambda w: Call(
        _canary_path("rollouts:share", w.canary_running), {"share": "0.02"}, form=True
    ),
    "ui.canary.pause": lambda w: Call(
        _canary_path("rollouts:pause", w.canary_running), {"reason": "Look first."}, form=True
    ),
    "ui.canary.resume": lambda w: Call(
        _canary_path("rollouts:resume", w.canary_paused), {"note": "Go on."}, form=True
    ),
    "ui.canary.stop": lambda w: Call(
        _canary_path("rollouts:stop", w.canary_running), {"note": "Enough."}, form=True
    ),
    "ui.canary.promote": lambda w: Call(
        _canary_path("rollouts:promote", w.canary_running), {"note": "Better."}, form=True
    ),
    "ui.calibration.draft": lambda w: Call(
        reverse("guardrails:calibration_draft"),
        {"action": "substitute_sku", "channel": ""},
        form=True,
    ),
    "ui.alert.acknowledge": lambda w: Call(
        _alert_path("alerts:acknowledge", w.alert_open), {"note": "On it."}, form=True
    ),
    "ui.alert.silence": lambda w: Call(
        _alert_path("alerts:silence", w.alert_open), {"hours": "1"}, form=True
    ),
    "ui.alert.unsilence": lambda w: Call(
        _alert_path("alerts:unsilence", w.alert_silenced), form=True
    ),
    "ui.alert.remediate": lambda w: Call(_alert_path("alerts:remediate", w.alert_open), form=True),
    "public.address_confirm": lambda w: Call(
        reverse("confirm:address", kwargs={"token": w.confirmation_token}),
        {"action": "correct", **GOOD_ADDRESS},
        form=True,
    ),
    # Admin
    "admin.policy.publish": lambda w: _admin_action(
        w, "admin:guardrails_policyversion_changelist", "publish_drafts", w.policy_draft.pk
    ),
    "admin.delivery.replay": lambda w: Call(
        reverse("admin:orders_delivery_replay", kwargs={"delivery_pk": w.delivery_failed.pk}),
        {},
        form=True,
    ),
    "admin.channel.edit": lambda w: Call(
        reverse("admin:catalog_channel_change", args=[w.shop.pk]),
        {
            "kind": w.shop.kind,
            "code": w.shop.code,
            "name": "Renamed by the matrix",
            "webhook_secret": "",
            "notification_url": "",
            "is_active": "on",
            "_save": "Save",
        },
        form=True,
    ),
    "admin.channel.hold": lambda w: _admin_action(
        w, "admin:catalog_channel_changelist", "hold_orders", w.shop.pk, reason="Matrix hold."
    ),
    "admin.breaker.close": lambda w: _admin_action(
        w,
        "admin:guardrails_breaker_changelist",
        "close_by_hand",
        w.breaker_degraded.pk,
        reason="Matrix close.",
    ),
    "admin.mapping.add": lambda w: Call(
        reverse("admin:catalog_channelskumapping_add"),
        {
            "channel": w.shop.pk,
            "id_kind": ExternalIdKind.SKU,
            "external_id": "AUTHZ-NEW-ID",
            "sku": w.mug.pk,
            "_save": "Save",
        },
        form=True,
    ),
    "admin.sku.import": lambda w: Call(
        reverse("admin:catalog_sku_import"),
        {
            "file": SimpleUploadedFile(
                "skus.csv", b"code,title,price,currency\nAUTHZ-1,Matrix SKU,1.00,USD\n"
            ),
            "channel": "",
        },
        form=True,
    ),
}


# --- Effects ------------------------------------------------------------------------------

Effect = Callable[[World, HttpResponse, User | None], bool]


def _order_facts(model, **filters) -> Callable[[World, HttpResponse, User | None], bool]:
    return lambda w, response, user: model.objects.filter(order=w.order_ready, **filters).exists()


def _item_status(item_attribute: str, status: str) -> Effect:
    def effect(w: World, response: HttpResponse, user: User | None) -> bool:
        item = getattr(w, item_attribute)
        return ReviewItem.objects.filter(pk=item.pk, status=status).exists()

    return effect


def _claimed_by_user(w: World, response: HttpResponse, user: User | None) -> bool:
    item = ReviewItem.objects.get(pk=w.item_high_value.pk)
    return user is not None and item.assignee_id == user.pk


def _claim_released(w: World, response: HttpResponse, user: User | None) -> bool:
    return ReviewItem.objects.get(pk=w.item_claimed.pk).assignee_id is None


def _canary_status(attribute: str, status: str) -> Effect:
    def effect(w: World, response: HttpResponse, user: User | None) -> bool:
        return Canary.objects.filter(pk=getattr(w, attribute).pk, status=status).exists()

    return effect


def _canary_share_changed(w: World, response: HttpResponse, user: User | None) -> bool:
    return Canary.objects.get(pk=w.canary_running.pk).share == Decimal("0.02")


def _breaker_state(attribute: str, state: str) -> Effect:
    def effect(w: World, response: HttpResponse, user: User | None) -> bool:
        return Breaker.objects.get(pk=getattr(w, attribute).pk).state == state

    return effect


def _decision_reverted(w: World, response: HttpResponse, user: User | None) -> bool:
    return Decision.objects.get(pk=w.decision_applied.pk).reverted_at is not None


def _decision_labelled_correct(w: World, response: HttpResponse, user: User | None) -> bool:
    return Decision.objects.get(pk=w.decision_applied.pk).outcome == DecisionOutcome.CORRECT


def _alert_acknowledged(w: World, response: HttpResponse, user: User | None) -> bool:
    return Alert.objects.get(pk=w.alert_open.pk).acknowledged_at is not None


def _alert_silenced(w: World, response: HttpResponse, user: User | None) -> bool:
    return Alert.objects.get(pk=w.alert_open.pk).silenced_until is not None


def _alert_unsilenced(w: World, response: HttpResponse, user: User | None) -> bool:
    return Alert.objects.get(pk=w.alert_silenced.pk).silenced_until is None


def _recommended(w: World, response: HttpResponse, user: User | None) -> bool:
    return response.status_code == 200 and response.json()["decision"] is not None


EFFECTS: dict[str, Effect] = {
    "api.order.create": lambda w, r, u: Delivery.objects.filter(channel=w.canonical).exists(),
    "api.marketplace.ingest": lambda w, r, u: Delivery.objects.filter(channel=w.amazon).exists(),
    "api.shipment.create": _order_facts(Shipment, shipment_id="PKG-9"),
    "api.shipment.status": lambda w, r, u: (
        Shipment.objects.get(pk=w.shipment.pk).status == ShipmentStatus.DELIVERED
    ),
    "api.fulfilment_exception.create": _order_facts(FulfilmentException),
    "api.return.create": _order_facts(OrderReturn, return_id="RMA-1"),
    "api.chargeback.create": _order_facts(Chargeback, chargeback_id="CB-1"),
    "api.stock_event.create": lambda w, r, u: StockEvent.objects.filter(source="authz").exists(),
    "api.discrepancy.create": lambda w, r, u: InventoryDiscrepancy.objects.filter(
        sku=w.mug
    ).exists(),
    "api.decision.propose": lambda w, r, u: Decision.objects.filter(
        order=w.order_ready, model_name=AGENT_MODEL
    ).exists(),
    "api.order.shortage": _recommended,
    "api.order.carrier_recommendation": _recommended,
    "api.breaker.report_degradation": lambda w, r, u: Breaker.objects.filter(
        scope=BreakerScope.CHANNEL, key=w.shop.code, state=BreakerState.OPEN
    ).exists(),
    "api.breaker.report_recovery": _breaker_state("breaker_degraded", BreakerState.HALF_OPEN),
    "api.decision.revert": _decision_reverted,
    "api.decision.label": _decision_labelled_correct,
    "api.error_label.create": lambda w, r, u: ErrorLabel.objects.filter(
        review_item=w.item_high_value
    ).exists(),
    "api.review_item.accept": _item_status("item_high_value", ReviewStatus.ACCEPTED),
    "api.review_item.reject": _item_status("item_high_value", ReviewStatus.REJECTED),
    "api.review_item.revise": _item_status("item_address", ReviewStatus.ACCEPTED),
    "api.review_item.claim": _claimed_by_user,
    "api.review_item.release": _claim_released,
    "api.breaker.open": _breaker_state("breaker_closed", BreakerState.OPEN),
    "api.breaker.close": _breaker_state("breaker_degraded", BreakerState.CLOSED),
    "api.version.create": lambda w, r, u: Version.objects.filter(subject="authz-new").exists(),
    "api.version.activate": lambda w, r, u: (
        Version.objects.get(pk=w.version_to_activate.pk).status == VersionStatus.ACTIVE
    ),
    "api.canary.create": lambda w, r, u: Canary.objects.filter(
        candidate=w.version_for_canary
    ).exists(),
    "api.canary.share": _canary_share_changed,
    "api.canary.pause": _canary_status("canary_running", CanaryStatus.PAUSED),
    "api.canary.resume": _canary_status("canary_paused", CanaryStatus.RUNNING),
    "api.canary.stop": _canary_status("canary_running", CanaryStatus.STOPPED),
    "api.canary.promote": _canary_status("canary_running", CanaryStatus.PROMOTED),
    "ui.review.accept": _item_status("item_high_value", ReviewStatus.ACCEPTED),
    "ui.review.reject": _item_status("item_high_value", ReviewStatus.REJECTED),
    "ui.review.revise": _item_status("item_address", ReviewStatus.ACCEPTED),
    "ui.review.claim": _claimed_by_user,
    "ui.review.release": _claim_released,
    "ui.label.item": lambda w, r, u: ErrorLabel.objects.filter(
        review_item=w.item_high_value
    ).exists(),
    "ui.label.decision": lambda w, r, u: ErrorLabel.objects.filter(
        decision=w.decision_applied
    ).exists(),
    "ui.fix.create": lambda w, r, u: FixItem.objects.filter(title="Matrix fix").exists(),
    "ui.fix.update": lambda w, r, u: (
        FixItem.objects.get(pk=w.fix.pk).status == FixStatus.IN_PROGRESS
    ),
    "ui.order.revert": _decision_reverted,
    "ui.canary.share": _canary_share_changed,
    "ui.canary.pause": _canary_status("canary_running", CanaryStatus.PAUSED),
    "ui.canary.resume": _canary_status("canary_paused", CanaryStatus.RUNNING),
    "ui.canary.stop": _canary_status("canary_running", CanaryStatus.STOPPED),
    "ui.canary.promote": _canary_status("canary_running", CanaryStatus.PROMOTED),
    "ui.alert.acknowledge": _alert_acknowledged,
    "ui.alert.silence": _alert_silenced,
    "ui.alert.unsilence": _alert_unsilenced,
    "ui.alert.remediate": _alert_acknowledged,
    "public.address_confirm": lambda w, r, u: AddressConfirmation.objects.filter(
        review_item=w.item_address, answered_at__isnull=False
    ).exists(),
    "admin.policy.publish": lambda w, r, u: (
        PolicyVersion.objects.get(pk=w.policy_draft.pk).published_at is not None
    ),
    "admin.delivery.replay": lambda w, r, u: (
        Delivery.objects.get(pk=w.delivery_failed.pk).outcome == DeliveryOutcome.RECEIVED
    ),
    "admin.channel.edit": lambda w, r, u: (
        Channel.objects.get(pk=w.shop.pk).name == "Renamed by the matrix"
    ),
    "admin.channel.hold": lambda w, r, u: Channel.objects.get(pk=w.shop.pk).orders_held,
    "admin.breaker.close": _breaker_state("breaker_degraded", BreakerState.CLOSED),
    "admin.mapping.add": lambda w, r, u: ChannelSkuMapping.objects.filter(
        external_id="AUTHZ-NEW-ID"
    ).exists(),
    "admin.sku.import": lambda w, r, u: ImportJob.objects.filter(file_name="skus.csv").exists(),
}


def _results_ids(response: HttpResponse) -> set[int]:
    return {row["id"] for row in response.json()["results"]}


Listed = Callable[[World, HttpResponse], bool]

LISTED: dict[str, Listed] = {
    "api.order.list": lambda w, r: w.order_ready.pk in _results_ids(r),
    "api.delivery.list": lambda w, r: w.order_ready.delivery_id in _results_ids(r),
    "api.decision.list": lambda w, r: w.decision_applied.pk in _results_ids(r),
    "api.review_item.list": lambda w, r: w.item_high_value.pk in _results_ids(r),
    "api.shipment.list": lambda w, r: w.shipment.pk in _results_ids(r),
    "api.breaker.list": lambda w, r: w.breaker_degraded.pk in _results_ids(r),
}
