"""The action catalog, default policies and role permissions the data migrations ship."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from guardrails.defaults import DEFAULTS_CHANGELOG, default_policies_load
from guardrails.models import ActionType, AutonomyGate, GuardrailSettings, Policy, PolicyVersion

pytestmark = pytest.mark.django_db

# code: (risk tier, review kind, has applier)
CATALOG = {
    "substitute_sku": ("medium", "substitution", True),
    "correct_shipping_address": ("high", "address", True),
    "change_billing_address": ("critical", "ai_action", True),
    "select_carrier": ("low", "routing", True),
    "split_order_carriers": ("high", "routing", False),
    "downgrade_shipping_service": ("high", "routing", True),
    "reroute_fulfilment": ("high", "routing", True),
    "estimate_ship_date": ("low", "ai_action", False),
    "suggest_packaging": ("low", "ai_action", False),
    "cancel_order": ("critical", "ai_action", True),
}

# code: (mode, approver, order value under, item price under, confidence above,
#        fresh stock, SLA minutes, on SLA breach, escalation group)
DEFAULTS = {
    "substitute_sku": (
        "autonomous",
        "cs_agent",
        None,
        Decimal("25"),
        Decimal("0.92"),
        True,
        60,
        "escalate",
        "cs_manager",
    ),
    "correct_shipping_address": (
        "needs_approval",
        "cs_manager",
        None,
        None,
        None,
        False,
        30,
        "hold_order",
        None,
    ),
    "change_billing_address": ("hard_block", None, None, None, None, False, 60, "hold_order", None),
    "select_carrier": (
        "autonomous",
        "cs_agent",
        Decimal("1000"),
        None,
        Decimal("0.85"),
        False,
        60,
        "escalate",
        "cs_manager",
    ),
    "split_order_carriers": ("hard_block", None, None, None, None, False, 60, "hold_order", None),
    "downgrade_shipping_service": (
        "hard_block",
        None,
        None,
        None,
        None,
        False,
        60,
        "hold_order",
        None,
    ),
    "reroute_fulfilment": (
        "needs_approval",
        "cs_manager",
        None,
        None,
        None,
        False,
        60,
        "hold_order",
        None,
    ),
    "estimate_ship_date": ("recommend_only", None, None, None, None, False, 60, "hold_order", None),
    "suggest_packaging": ("recommend_only", None, None, None, None, False, 60, "hold_order", None),
    "cancel_order": (
        "needs_approval",
        "cs_manager",
        None,
        None,
        None,
        False,
        60,
        "hold_order",
        None,
    ),
}


def _group_name(group) -> str | None:
    return group.name if group is not None else None


@pytest.mark.parametrize("code", sorted(CATALOG))
def test_action_catalog_row(code):
    risk_tier, review_kind, has_applier = CATALOG[code]
    action = ActionType.objects.get(code=code)

    assert action.risk_tier == risk_tier
    assert action.review_kind == review_kind
    assert action.has_applier is has_applier
    assert action.is_active
    assert AutonomyGate.objects.filter(action=action, suspended=False).exists()


def test_catalog_has_exactly_the_shipped_actions():
    assert set(ActionType.objects.values_list("code", flat=True)) == set(CATALOG)


@pytest.mark.parametrize("code", sorted(DEFAULTS))
def test_default_policy_row(code):
    (
        mode,
        approver,
        order_value_under,
        item_price_under,
        confidence_above,
        fresh_stock,
        sla,
        on_breach,
        escalation,
    ) = DEFAULTS[code]
    policy = Policy.objects.get(action__code=code, channel__isnull=True)
    version = policy.live_version

    assert version is not None
    assert version.number == 1
    assert version.published_at is not None
    assert version.changelog == DEFAULTS_CHANGELOG
    assert version.mode == mode
    assert _group_name(version.approver_group) == approver
    assert version.limits_currency == "USD"
    assert version.order_value_under == order_value_under
    assert version.item_price_under == item_price_under
    assert version.confidence_above == confidence_above
    assert version.require_fresh_stock is fresh_stock
    assert version.review_sla_minutes == sla
    assert version.on_sla_breach == on_breach
    assert _group_name(version.escalation_group) == escalation


def test_substitution_default_bands():
    version = Policy.objects.get(action__code="substitute_sku").live_version
    bands = list(version.bands.order_by("position"))

    assert [band.name for band in bands] == ["Priority customers", "Order value 1000 USD and over"]
    assert bands[0].customer_tier == "priority"
    assert bands[0].mode == "needs_approval"
    assert bands[1].customer_tier == "any"
    assert bands[1].order_value_from == Decimal("1000")
    assert bands[1].order_value_to is None
    assert bands[1].mode == "needs_approval"


def test_other_default_policies_have_no_bands():
    versions = PolicyVersion.objects.exclude(policy__action__code="substitute_sku")

    assert versions.filter(bands__isnull=False).count() == 0


def test_settings_row_is_shipped():
    assert GuardrailSettings.objects.filter(pk=1).count() == 1


def test_reload_keeps_edited_policies():
    policy = Policy.objects.get(action__code="cancel_order")
    PolicyVersion.objects.create(
        policy=policy,
        number=2,
        mode="hard_block",
        changelog="Cancellations are blocked during the sale.",
    )

    created = default_policies_load()

    assert created == {"actions": 0, "policies": 0, "versions": 0, "gates": 0, "settings": 0}
    assert policy.versions.count() == 2


@pytest.mark.django_db(transaction=True)
def test_fixture_reloads_defaults_after_flush(default_policies):
    assert Policy.objects.filter(channel__isnull=True, live_version__isnull=False).count() == 10
    assert (
        Group.objects.get(name="ops_manager")
        .permissions.filter(codename="add_policyversion")
        .exists()
    )


# role: permissions it must have, permissions it must not have
ROLE_CHECKS = {
    "integration": (
        ["propose_decision", "view_decision", "view_breaker", "report_degradation"],
        ["add_policyversion", "revert_decision", "view_policy"],
    ),
    "cs_agent": (
        ["view_decision", "view_actiontype", "view_policy", "view_policyversion"],
        ["add_policyversion", "revert_decision", "propose_decision"],
    ),
    "cs_manager": (
        ["view_policy", "revert_decision", "label_decision", "view_breakerevent"],
        ["add_policyversion", "publish_policyversion", "operate_breaker", "add_policy"],
    ),
    "ops_manager": (
        [
            "add_policy",
            "add_policyversion",
            "publish_policyversion",
            "add_policyband",
            "change_actiontype",
            "change_guardrailsettings",
            "operate_breaker",
            "add_backtestrun",
        ],
        ["change_policyversion", "delete_policyversion", "delete_policy", "propose_decision"],
    ),
}


@pytest.mark.parametrize("role", sorted(ROLE_CHECKS))
def test_role_guardrail_permissions(role):
    granted, withheld = ROLE_CHECKS[role]
    codenames = set(
        Group.objects.get(name=role)
        .permissions.filter(content_type__app_label="guardrails")
        .values_list("codename", flat=True)
    )

    for codename in granted:
        assert codename in codenames, f"{role} lacks {codename}"
    for codename in withheld:
        assert codename not in codenames, f"{role} has {codename}"
