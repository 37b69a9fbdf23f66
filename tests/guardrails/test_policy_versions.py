"""Policy versions: validation, numbering, publishing, shadowing and immutability."""

from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError

from guardrails.models import ActionType, AuditEntry, Decision, Policy, PolicyVersion
from guardrails.policies import (
    policy_rules_problems,
    policy_version_create,
    policy_version_publish,
    policy_version_set_shadow,
)
from orders.models import Delivery, Order, OrderStatus

pytestmark = pytest.mark.django_db

SUBSTITUTION_RULES = {
    "mode": "autonomous",
    "approver_group": "cs_agent",
    "limits_currency": "USD",
    "item_price_under": Decimal("25"),
    "confidence_above": Decimal("0.92"),
    "require_fresh_stock": True,
    "review_sla_minutes": 60,
    "on_sla_breach": "escalate",
    "escalation_group": "cs_manager",
}


@pytest.fixture
def policy() -> Policy:
    return Policy.objects.get(action__code="substitute_sku", channel__isnull=True)


def _problems(code: str, bands=(), **changes) -> dict[str, list[str]]:
    rules = {**SUBSTITUTION_RULES, **changes}
    return policy_rules_problems(action=ActionType.objects.get(code=code), rules=rules, bands=bands)


def test_default_substitution_rules_are_valid():
    bands = [
        {"name": "Priority customers", "customer_tier": "priority", "mode": "needs_approval"},
        {"name": "Large orders", "order_value_from": Decimal("1000"), "mode": "needs_approval"},
    ]

    assert _problems("substitute_sku", bands) == {}


# (case, action, rule changes, bands, field expected to carry the problem)
CONTRADICTIONS = [
    ("autonomous without applier", "split_order_carriers", {}, [], "mode"),
    (
        "autonomous without approver",
        "substitute_sku",
        {"approver_group": None},
        [],
        "approver_group",
    ),
    (
        "needs approval without approver",
        "cancel_order",
        {"mode": "needs_approval", "approver_group": None},
        [],
        "approver_group",
    ),
    ("hard block with limits", "substitute_sku", {"mode": "hard_block"}, [], "item_price_under"),
    (
        "recommend only with limits",
        "estimate_ship_date",
        {"mode": "recommend_only"},
        [],
        "confidence_above",
    ),
    (
        "confidence above 1",
        "substitute_sku",
        {"confidence_above": Decimal("1.2")},
        [],
        "confidence_above",
    ),
    (
        "confidence negative",
        "substitute_sku",
        {"confidence_above": Decimal("-0.1")},
        [],
        "confidence_above",
    ),
    (
        "confidence exactly 1",
        "substitute_sku",
        {"confidence_above": Decimal("1")},
        [],
        "confidence_above",
    ),
    (
        "negative order value",
        "substitute_sku",
        {"order_value_under": Decimal("-5")},
        [],
        "order_value_under",
    ),
    (
        "negative item price",
        "substitute_sku",
        {"item_price_under": Decimal("-1")},
        [],
        "item_price_under",
    ),
    (
        "escalate without group",
        "substitute_sku",
        {"escalation_group": None},
        [],
        "escalation_group",
    ),
    ("unknown currency", "substitute_sku", {"limits_currency": "ABC"}, [], "limits_currency"),
    ("zero SLA", "substitute_sku", {"review_sla_minutes": 0}, [], "review_sla_minutes"),
    (
        "band from after to",
        "substitute_sku",
        {},
        [
            {
                "name": "Odd",
                "order_value_from": Decimal("100"),
                "order_value_to": Decimal("50"),
                "mode": "needs_approval",
            }
        ],
        "bands.0.order_value_to",
    ),
    (
        "band from equals to",
        "substitute_sku",
        {},
        [
            {
                "name": "Empty",
                "order_value_from": Decimal("100"),
                "order_value_to": Decimal("100"),
                "mode": "needs_approval",
            }
        ],
        "bands.0.order_value_to",
    ),
    (
        "band shadowed by earlier",
        "substitute_sku",
        {},
        [
            {"name": "Any priority", "customer_tier": "priority", "mode": "needs_approval"},
            {
                "name": "Big priority",
                "customer_tier": "priority",
                "order_value_from": Decimal("500"),
                "mode": "hard_block",
            },
        ],
        "bands.1.order_value_from",
    ),
    (
        "band autonomous under hard block",
        "substitute_sku",
        {
            "mode": "hard_block",
            "item_price_under": None,
            "confidence_above": None,
            "require_fresh_stock": False,
        },
        [{"name": "Small orders", "order_value_to": Decimal("50"), "mode": "autonomous"}],
        "bands.0.mode",
    ),
    (
        "band autonomous without applier",
        "split_order_carriers",
        {
            "mode": "needs_approval",
            "item_price_under": None,
            "confidence_above": None,
            "require_fresh_stock": False,
        },
        [{"name": "Small orders", "order_value_to": Decimal("50"), "mode": "autonomous"}],
        "bands.0.mode",
    ),
    (
        "band limits under recommend only",
        "substitute_sku",
        {},
        [
            {
                "name": "Suggest",
                "customer_tier": "standard",
                "mode": "recommend_only",
                "confidence_above": Decimal("0.99"),
            }
        ],
        "bands.0.confidence_above",
    ),
    (
        "band changes nothing",
        "substitute_sku",
        {},
        [{"name": "No-op", "order_value_from": Decimal("10")}],
        "bands.0.mode",
    ),
    (
        "band margin outside 0 to 1",
        "substitute_sku",
        {},
        [{"name": "Margin", "margin_rate_from": Decimal("30"), "mode": "needs_approval"}],
        "bands.0.margin_rate_from",
    ),
]


@pytest.mark.parametrize(
    "case,code,changes,bands,field", CONTRADICTIONS, ids=[row[0] for row in CONTRADICTIONS]
)
def test_contradiction_rejected(case, code, changes, bands, field):
    problems = _problems(code, bands, **changes)

    assert field in problems, problems


def test_band_reachable_other_tier():
    bands = [
        {
            "name": "Standard big",
            "customer_tier": "standard",
            "order_value_from": Decimal("500"),
            "mode": "needs_approval",
        },
        {"name": "Any big", "order_value_from": Decimal("500"), "mode": "hard_block"},
    ]

    assert _problems("substitute_sku", bands) == {}


def test_recommend_only_limits_allowed_when_band_switches_mode():
    bands = [{"name": "Tiny orders", "order_value_to": Decimal("10"), "mode": "autonomous"}]

    problems = _problems("substitute_sku", bands, mode="recommend_only")

    assert problems == {}


def test_create_rejects_contradiction_and_stores_nothing(policy, ops):
    with pytest.raises(ValidationError) as error:
        policy_version_create(
            policy=policy,
            user=ops,
            changelog="Try hard block",
            **{**SUBSTITUTION_RULES, "mode": "hard_block"},
        )

    assert "item_price_under" in error.value.message_dict
    assert policy.versions.count() == 1


def test_create_requires_changelog(policy, ops):
    with pytest.raises(ValidationError) as error:
        policy_version_create(policy=policy, user=ops, changelog="  ", **SUBSTITUTION_RULES)

    assert "changelog" in error.value.message_dict


def test_create_rejects_unknown_group(policy, ops):
    with pytest.raises(ValidationError) as error:
        policy_version_create(
            policy=policy,
            user=ops,
            changelog="Wrong group",
            **{**SUBSTITUTION_RULES, "approver_group": "nobody"},
        )

    assert "approver_group" in error.value.message_dict


def test_cs_manager_cannot_create_version(policy, manager):
    with pytest.raises(PermissionDenied):
        policy_version_create(policy=policy, user=manager, changelog="x", **SUBSTITUTION_RULES)

    assert policy.versions.count() == 1


def test_version_numbers_increase(policy, ops):
    second = policy_version_create(
        policy=policy, user=ops, changelog="Second", **SUBSTITUTION_RULES
    )
    third = policy_version_create(policy=policy, user=ops, changelog="Third", **SUBSTITUTION_RULES)

    assert (second.number, third.number) == (2, 3)
    assert second.published_at is None
    assert second.created_by == ops
    policy.refresh_from_db()
    assert policy.live_version.number == 1


def test_create_stores_bands_in_order(policy, ops):
    bands = [
        {"name": "Priority customers", "customer_tier": "priority", "mode": "needs_approval"},
        {"name": "Large orders", "order_value_from": Decimal("400"), "mode": "needs_approval"},
    ]

    version = policy_version_create(
        policy=policy,
        user=ops,
        changelog="Lower the large order band",
        bands=bands,
        **SUBSTITUTION_RULES,
    )

    stored = list(version.bands.order_by("position"))
    assert [(band.position, band.name) for band in stored] == [
        (0, "Priority customers"),
        (1, "Large orders"),
    ]
    assert stored[1].order_value_from == Decimal("400")


def test_create_writes_audit_entry(policy, ops):
    version = policy_version_create(
        policy=policy, user=ops, changelog="Raise the price limit", **SUBSTITUTION_RULES
    )

    entry = AuditEntry.objects.get(action="policy_version.created")
    assert entry.actor == ops
    assert entry.target_id == str(policy.pk)
    assert entry.after["number"] == version.number
    assert entry.after["item_price_under"] == "25"
    assert "Raise the price limit" in entry.reason


def test_stored_version_is_immutable(policy):
    version = policy.live_version
    version.mode = "hard_block"

    with pytest.raises(TypeError):
        version.save()
    with pytest.raises(TypeError):
        version.save(update_fields=["mode"])

    version.refresh_from_db()
    assert version.mode == "autonomous"


@time_machine.travel("2026-12-01 10:00:00Z", tick=False)
def test_publish_makes_draft_live(policy, ops):
    draft = policy_version_create(policy=policy, user=ops, changelog="Next", **SUBSTITUTION_RULES)

    published = policy_version_publish(version=draft, user=ops)

    policy.refresh_from_db()
    assert policy.live_version == published
    assert published.published_by == ops
    assert published.published_at.isoformat() == "2026-12-01T10:00:00+00:00"
    entry = AuditEntry.objects.get(action="policy_version.published")
    assert entry.before == {"live_version": 1}
    assert entry.after == {"live_version": 2}


def test_publish_rejects_published_version(policy, ops):
    with pytest.raises(ValidationError):
        policy_version_publish(version=policy.live_version, user=ops)


def test_publish_needs_permission(policy, ops, manager):
    draft = policy_version_create(policy=policy, user=ops, changelog="Next", **SUBSTITUTION_RULES)

    with pytest.raises(PermissionDenied):
        policy_version_publish(version=draft, user=manager)

    policy.refresh_from_db()
    assert policy.live_version.number == 1


def test_publish_rejects_draft_held_by_canary(policy, ops):
    from guardrails import rollouts
    from guardrails.models import CanaryStatus

    draft = policy_version_create(policy=policy, user=ops, changelog="Try", **SUBSTITUTION_RULES)
    rule_set = rollouts.version_create(
        kind="rule_set",
        subject="substitution rules",
        label="2",
        changelog="Stricter substitutions.",
        user=ops,
        policy_versions=[draft],
    )
    canary = rollouts.canary_start(candidate_id=rule_set.pk, user=ops, name="Substitution canary")

    with pytest.raises(ValidationError) as running:
        policy_version_publish(version=draft, user=ops)
    rollouts.canary_pause(canary_id=canary.pk, user=ops, reason="Peak week.")
    with pytest.raises(ValidationError) as paused:
        policy_version_publish(version=draft, user=ops)

    assert running.value.message_dict == {
        "version": [
            f"{draft} belongs to the candidate of canary Substitution canary, which is "
            "running; promote or stop that canary instead of publishing the draft."
        ]
    }
    assert "which is paused" in paused.value.message_dict["version"][0]
    policy.refresh_from_db()
    draft.refresh_from_db()
    assert policy.live_version.number == 1
    assert draft.published_at is None
    assert not AuditEntry.objects.filter(action="policy_version.published").exists()

    # The canary's own promotion publishes the draft.
    rollouts.canary_promote(canary_id=canary.pk, user=ops, note="Fewer bad substitutions.")
    policy.refresh_from_db()
    assert policy.live_version == draft
    assert rule_set.canaries.get().status == CanaryStatus.PROMOTED


def test_publish_allowed_after_canary_stopped(policy, ops):
    from guardrails import rollouts

    draft = policy_version_create(policy=policy, user=ops, changelog="Try", **SUBSTITUTION_RULES)
    rule_set = rollouts.version_create(
        kind="rule_set",
        subject="substitution rules",
        label="2",
        changelog="Stricter substitutions.",
        user=ops,
        policy_versions=[draft],
    )
    canary = rollouts.canary_start(candidate_id=rule_set.pk, user=ops)
    rollouts.canary_stop(canary_id=canary.pk, user=ops, note="Publishing by hand instead.")

    published = policy_version_publish(version=draft, user=ops)

    policy.refresh_from_db()
    assert policy.live_version == published


def test_shadow_accepts_drafts_only(policy, ops):
    draft = policy_version_create(policy=policy, user=ops, changelog="Try", **SUBSTITUTION_RULES)
    other = Policy.objects.get(action__code="select_carrier")

    policy_version_set_shadow(policy=policy, version=draft, user=ops)
    policy.refresh_from_db()
    assert policy.shadow_version == draft

    with pytest.raises(ValidationError):
        policy_version_set_shadow(policy=policy, version=policy.live_version, user=ops)
    with pytest.raises(ValidationError):
        policy_version_set_shadow(policy=other, version=draft, user=ops)


def test_publishing_shadow_clears_it(policy, ops):
    draft = policy_version_create(policy=policy, user=ops, changelog="Try", **SUBSTITUTION_RULES)
    policy_version_set_shadow(policy=policy, version=draft, user=ops)

    policy_version_publish(version=draft, user=ops)

    policy.refresh_from_db()
    assert policy.live_version == draft
    assert policy.shadow_version is None


def test_decision_keeps_its_version(policy, ops, channel):
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id="wh-policies",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
    )
    order = Order.objects.create(
        channel=channel,
        channel_order_id="7001",
        delivery=delivery,
        status=OrderStatus.ON_HOLD,
        currency="USD",
        subtotal=Decimal("40"),
        shipping_total=Decimal("0"),
        tax_total=Decimal("0"),
        discount_total=Decimal("0"),
        total=Decimal("40"),
    )
    first = policy.live_version
    decision = Decision.objects.create(
        action=policy.action,
        order=order,
        channel=channel,
        model_name="gpt-sub",
        model_version="1",
        before={},
        after={},
        confidence=Decimal("0.95"),
        verdict="applied",
        policy_version=first,
        facts={},
    )

    draft = policy_version_create(policy=policy, user=ops, changelog="Next", **SUBSTITUTION_RULES)
    policy_version_publish(version=draft, user=ops)

    decision.refresh_from_db()
    assert decision.policy_version == first
    assert PolicyVersion.objects.get(pk=first.pk).mode == "autonomous"


@pytest.mark.parametrize(("minutes", "refused"), [(525_600, False), (525_601, True)])
def test_review_sla_over_a_year(policy, ops, minutes, refused):
    """A new user saved 99,999,999,999 minutes; the next queued decision failed with a 500."""
    rules = {**SUBSTITUTION_RULES, "review_sla_minutes": minutes}

    if not refused:
        policy_version_create(policy=policy, user=ops, changelog="Long SLA", **rules)
        return
    with pytest.raises(ValidationError) as error:
        policy_version_create(policy=policy, user=ops, changelog="Long SLA", **rules)

    assert error.value.message_dict["review_sla_minutes"] == [
        "The review SLA must be at most 525,600 minutes (365 days)."
    ]
