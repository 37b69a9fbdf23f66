"""The action catalog and the default policies OMS Guard ships, loaded by a data migration.

Substitutions run on their own only under USD 25 and above 92 % confidence. Address
corrections need a CS manager within 30 minutes. Billing address changes, splits across
carriers and shipping downgrades are hard-blocked.
Rerouting an in-store pickup to shipping is blocked by an engine safety rule, not by a policy.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from django.apps import apps as global_apps
from django.db import transaction
from django.utils import timezone

DEFAULTS_CHANGELOG = "Defaults shipped with OMS Guard"


@dataclass(frozen=True)
class ActionData:
    code: str
    name: str
    description: str
    risk_tier: str
    review_kind: str
    has_applier: bool
    holds_order_while_queued: bool = True


@dataclass(frozen=True)
class BandData:
    name: str
    mode: str
    order_value_from: Decimal | None = None
    customer_tier: str = "any"


@dataclass(frozen=True)
class PolicyData:
    mode: str
    approver_group: str | None = None
    order_value_under: Decimal | None = None
    item_price_under: Decimal | None = None
    confidence_above: Decimal | None = None
    require_fresh_stock: bool = False
    review_sla_minutes: int = 60
    on_sla_breach: str = "hold_order"
    escalation_group: str | None = None
    bands: tuple[BandData, ...] = field(default_factory=tuple)


ACTIONS = (
    ActionData(
        "substitute_sku",
        "Substitute SKU",
        "Replace a line's SKU with another one when the ordered item is out of stock.",
        "medium",
        "substitution",
        has_applier=True,
    ),
    ActionData(
        "correct_shipping_address",
        "Correct shipping address",
        "Replace the shipping address with a corrected one.",
        "high",
        "address",
        has_applier=True,
    ),
    ActionData(
        "change_billing_address",
        "Change billing address",
        "Replace the billing address.",
        "critical",
        "ai_action",
        has_applier=True,
    ),
    ActionData(
        "select_carrier",
        "Select or swap carrier",
        "Choose the carrier service an order ships with, or swap it for another.",
        "low",
        "routing",
        has_applier=True,
    ),
    ActionData(
        "split_order_carriers",
        "Split order across carriers",
        "Ship the order's lines in several shipments with different carriers.",
        "high",
        "routing",
        has_applier=False,
    ),
    ActionData(
        "downgrade_shipping_service",
        "Downgrade shipping service",
        "Move the order to a slower (cheaper) shipping service than the one chosen.",
        "high",
        "routing",
        has_applier=True,
    ),
    ActionData(
        "reroute_fulfilment",
        "Reroute fulfilment",
        "Fulfil the order from another location, or ship an order meant for pickup.",
        "high",
        "routing",
        has_applier=True,
    ),
    ActionData(
        "estimate_ship_date",
        "Estimate ship date",
        "Estimate when the order will ship.",
        "low",
        "ai_action",
        has_applier=False,
        holds_order_while_queued=False,
    ),
    ActionData(
        "suggest_packaging",
        "Suggest packaging",
        "Suggest the package the order should be packed in.",
        "low",
        "ai_action",
        has_applier=False,
        holds_order_while_queued=False,
    ),
    ActionData(
        "cancel_order",
        "Cancel order",
        "Cancel the order.",
        "critical",
        "ai_action",
        has_applier=True,
    ),
)

DEFAULT_POLICIES = {
    "substitute_sku": PolicyData(
        mode="autonomous",
        approver_group="cs_agent",
        item_price_under=Decimal("25"),
        confidence_above=Decimal("0.92"),
        require_fresh_stock=True,
        review_sla_minutes=60,
        on_sla_breach="escalate",
        escalation_group="cs_manager",
        bands=(
            BandData("Priority customers", "needs_approval", customer_tier="priority"),
            BandData("Order value 1000 USD and over", "needs_approval", Decimal("1000")),
        ),
    ),
    "correct_shipping_address": PolicyData(
        mode="needs_approval", approver_group="cs_manager", review_sla_minutes=30
    ),
    "change_billing_address": PolicyData(mode="hard_block"),
    "select_carrier": PolicyData(
        mode="autonomous",
        approver_group="cs_agent",
        order_value_under=Decimal("1000"),
        confidence_above=Decimal("0.85"),
        review_sla_minutes=60,
        on_sla_breach="escalate",
        escalation_group="cs_manager",
    ),
    "split_order_carriers": PolicyData(mode="hard_block"),
    "downgrade_shipping_service": PolicyData(mode="hard_block"),
    "reroute_fulfilment": PolicyData(mode="needs_approval", approver_group="cs_manager"),
    "estimate_ship_date": PolicyData(mode="recommend_only"),
    "suggest_packaging": PolicyData(mode="recommend_only"),
    "cancel_order": PolicyData(mode="needs_approval", approver_group="cs_manager"),
}


class RoleGroupsMissing(LookupError):
    """The role groups the defaults name do not exist yet."""


def default_policies_load(*, apps=global_apps) -> dict[str, int]:
    """Create the action types, default policies, settings row and autonomy gates that are missing.

    Existing rows are left as they are, so an ops manager's versions survive a reload. A
    default policy gets version 1 only when it has no version at all. `apps` is a migration's
    app registry or the live one. The role groups must exist first (tests whose data was
    flushed call `ensure_role_groups()` before this). Returns how many rows of each kind
    were created.
    """
    created = {"actions": 0, "policies": 0, "versions": 0, "gates": 0, "settings": 0}
    groups = _role_groups(apps)

    with transaction.atomic():
        for action_data in ACTIONS:
            action = _action_load(apps, action_data, created)
            _default_policy_load(apps, action, DEFAULT_POLICIES[action.code], groups, created)
            _, new = apps.get_model("guardrails", "AutonomyGate").objects.get_or_create(
                action=action
            )
            created["gates"] += new

        _, new = apps.get_model("guardrails", "GuardrailSettings").objects.get_or_create(pk=1)
        created["settings"] += new
    return created


def _role_groups(apps) -> dict:
    names = {
        name
        for data in DEFAULT_POLICIES.values()
        for name in (data.approver_group, data.escalation_group)
        if name
    }
    groups = {
        group.name: group
        for group in apps.get_model("auth", "Group").objects.filter(name__in=names)
    }
    missing = sorted(names - set(groups))
    if missing:
        raise RoleGroupsMissing(
            f"Role groups {', '.join(missing)} are missing; run the role migrations "
            "(in tests, call ensure_role_groups()) before loading the default policies."
        )
    return groups


def _action_load(apps, action_data: ActionData, created: dict[str, int]):
    action, new = apps.get_model("guardrails", "ActionType").objects.get_or_create(
        code=action_data.code,
        defaults={
            "name": action_data.name,
            "description": action_data.description,
            "risk_tier": action_data.risk_tier,
            "review_kind": action_data.review_kind,
            "has_applier": action_data.has_applier,
            "holds_order_while_queued": action_data.holds_order_while_queued,
        },
    )
    created["actions"] += new
    return action


def _default_policy_load(apps, action, data: PolicyData, groups: dict, created: dict[str, int]):
    policy_model = apps.get_model("guardrails", "Policy")
    version_model = apps.get_model("guardrails", "PolicyVersion")

    policy, new = policy_model.objects.get_or_create(action=action, channel=None)
    created["policies"] += new
    if version_model.objects.filter(policy=policy).exists():
        return

    # Migration models lack PolicyVersion.save()'s guard; this path only ever inserts.
    version = version_model.objects.create(
        policy=policy,
        number=1,
        mode=data.mode,
        approver_group=groups.get(data.approver_group),
        limits_currency="USD",
        order_value_under=data.order_value_under,
        item_price_under=data.item_price_under,
        confidence_above=data.confidence_above,
        require_fresh_stock=data.require_fresh_stock,
        review_sla_minutes=data.review_sla_minutes,
        on_sla_breach=data.on_sla_breach,
        escalation_group=groups.get(data.escalation_group),
        changelog=DEFAULTS_CHANGELOG,
        published_at=timezone.now(),
    )
    band_model = apps.get_model("guardrails", "PolicyBand")
    for position, band in enumerate(data.bands):
        band_model.objects.create(
            version=version,
            position=position,
            name=band.name,
            order_value_from=band.order_value_from,
            customer_tier=band.customer_tier,
            mode=band.mode,
        )
    created["versions"] += 1

    policy.live_version = version
    policy.save(update_fields=["live_version"])
