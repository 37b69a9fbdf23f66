"""Policy editing in the Django admin: only ops managers add versions, and every save is one."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from guardrails.models import ActionType, AuditEntry, Policy

pytestmark = pytest.mark.django_db

ADD_URL = "admin:guardrails_policyversion_add"


@pytest.fixture
def substitution_policy() -> Policy:
    return Policy.objects.get(action__code="substitute_sku", channel__isnull=True)


def _band(prefix: int, **values) -> dict:
    fields = {
        "name": "",
        "order_value_from": "",
        "order_value_to": "",
        "customer_tier": "any",
        "margin_rate_from": "",
        "mode": "",
        "item_price_under": "",
        "confidence_above": "",
    }
    fields.update(values)
    return {f"bands-{prefix}-{name}": value for name, value in fields.items()}


def _version_post(policy: Policy, bands: list[dict] | None = None, **overrides) -> dict:
    """The add form as an ops manager submits it: the substitution defaults, changed a little."""
    cs_agent = Group.objects.get(name="cs_agent").pk
    cs_manager = Group.objects.get(name="cs_manager").pk
    data = {
        "policy": policy.pk,
        "mode": "autonomous",
        "approver_group": cs_agent,
        "limits_currency": "USD",
        "order_value_under": "",
        "item_price_under": "20",
        "confidence_above": "0.95",
        "require_fresh_stock": "on",
        "review_sla_minutes": "60",
        "on_sla_breach": "escalate",
        "escalation_group": cs_manager,
        "changelog": "Tighter substitution limits for the holiday peak.",
        "publish_now": "on",
    }
    data.update(overrides)
    data = {key: value for key, value in data.items() if value is not None}
    bands = bands or []
    data.update(
        {
            "bands-TOTAL_FORMS": str(len(bands)),
            "bands-INITIAL_FORMS": "0",
            "bands-MIN_NUM_FORMS": "0",
            "bands-MAX_NUM_FORMS": "1000",
        }
    )
    for index, band in enumerate(bands):
        data.update(_band(index, **band))
    return data


def test_cs_manager_cannot_open_add_page(client, manager, substitution_policy):
    client.force_login(manager)

    response = client.get(reverse(ADD_URL) + f"?policy={substitution_policy.pk}")

    assert response.status_code == 403


def test_cs_manager_cannot_post_version(client, manager, substitution_policy):
    client.force_login(manager)

    response = client.post(reverse(ADD_URL), _version_post(substitution_policy))

    assert response.status_code == 403
    assert substitution_policy.versions.count() == 1


def test_ops_add_page_prefilled_from_latest(client, ops, substitution_policy):
    client.force_login(ops)

    response = client.get(reverse(ADD_URL) + f"?policy={substitution_policy.pk}")

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.initial["mode"] == "autonomous"
    assert str(form.initial["item_price_under"]) == "25.000"
    band_formset = response.context["inline_admin_formsets"][0].formset
    assert [f.initial["name"] for f in band_formset.forms if f.initial] == [
        "Priority customers",
        "Order value 1000 USD and over",
    ]


def test_ops_save_creates_next_version(client, ops, substitution_policy):
    client.force_login(ops)
    bands = [
        {"name": "Priority customers", "customer_tier": "priority", "mode": "needs_approval"},
        {"name": "Large orders", "order_value_from": "500", "mode": "needs_approval"},
    ]

    response = client.post(reverse(ADD_URL), _version_post(substitution_policy, bands))

    assert response.status_code == 302
    substitution_policy.refresh_from_db()
    version = substitution_policy.live_version
    assert version.number == 2
    assert version.created_by == ops
    assert version.published_by == ops
    assert version.published_at is not None
    assert version.changelog == "Tighter substitution limits for the holiday peak."
    assert str(version.item_price_under) == "20.000"
    assert [band.name for band in version.bands.order_by("position")] == [
        "Priority customers",
        "Large orders",
    ]
    assert AuditEntry.objects.filter(
        action="policy_version.created", actor=ops, target_id=str(substitution_policy.pk)
    ).exists()


def test_ops_save_as_draft_keeps_live(client, ops, substitution_policy):
    client.force_login(ops)

    response = client.post(reverse(ADD_URL), _version_post(substitution_policy, publish_now=None))

    assert response.status_code == 302
    substitution_policy.refresh_from_db()
    assert substitution_policy.live_version.number == 1
    draft = substitution_policy.versions.get(number=2)
    assert draft.published_at is None


CONTRADICTIONS = [
    ("hard block with limits", {"mode": "hard_block"}, [], "item_price_under"),
    ("autonomous without approver", {"approver_group": ""}, [], "approver_group"),
    ("confidence above one", {"confidence_above": "1.5"}, [], "confidence_above"),
    ("negative item price", {"item_price_under": "-3"}, [], "item_price_under"),
    ("escalate without group", {"escalation_group": ""}, [], "escalation_group"),
    ("unknown currency", {"limits_currency": "XXY"}, [], "limits_currency"),
]


@pytest.mark.parametrize(
    "case,overrides,bands,field", CONTRADICTIONS, ids=[case[0] for case in CONTRADICTIONS]
)
def test_contradictory_form_shows_error(
    client, ops, substitution_policy, case, overrides, bands, field
):
    client.force_login(ops)

    response = client.post(reverse(ADD_URL), _version_post(substitution_policy, bands, **overrides))

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert substitution_policy.versions.count() == 1


def test_band_from_after_to_shows_band_error(client, ops, substitution_policy):
    client.force_login(ops)
    bands = [
        {
            "name": "Upside down",
            "order_value_from": "500",
            "order_value_to": "100",
            "mode": "needs_approval",
        }
    ]

    response = client.post(reverse(ADD_URL), _version_post(substitution_policy, bands))

    assert response.status_code == 200
    band_form = response.context["inline_admin_formsets"][0].formset.forms[0]
    assert "order_value_to" in band_form.errors
    assert substitution_policy.versions.count() == 1


def test_shadowed_band_shows_band_error(client, ops, substitution_policy):
    client.force_login(ops)
    bands = [
        {"name": "Over 100", "order_value_from": "100", "mode": "needs_approval"},
        {"name": "Over 1000", "order_value_from": "1000", "mode": "hard_block"},
    ]

    response = client.post(reverse(ADD_URL), _version_post(substitution_policy, bands))

    assert response.status_code == 200
    band_form = response.context["inline_admin_formsets"][0].formset.forms[1]
    assert "never reached" in str(band_form.errors["order_value_from"])
    assert substitution_policy.versions.count() == 1


def test_stored_version_is_read_only(client, ops, substitution_policy):
    client.force_login(ops)
    version = substitution_policy.live_version
    url = reverse("admin:guardrails_policyversion_change", args=[version.pk])

    view = client.get(url)
    post = client.post(url, _version_post(substitution_policy, mode="hard_block"))
    delete = client.get(reverse("admin:guardrails_policyversion_delete", args=[version.pk]))

    assert view.status_code == 200
    assert post.status_code == 403
    assert delete.status_code == 403
    version.refresh_from_db()
    assert version.mode == "autonomous"


def test_policy_list_shows_live_version(client, ops):
    client.force_login(ops)

    response = client.get(reverse("admin:guardrails_policy_changelist"))

    assert response.status_code == 200
    assert b"Substitute SKU" in response.content
    assert b"item &lt; USD 25.00," in response.content


def test_ops_changes_risk_tier_only(client, ops):
    client.force_login(ops)
    action = ActionType.objects.get(code="select_carrier")
    url = reverse("admin:guardrails_actiontype_change", args=[action.pk])

    response = client.post(
        url, {"risk_tier": "medium", "is_active": "on", "has_applier": "", "code": "hacked"}
    )

    assert response.status_code == 302
    action.refresh_from_db()
    assert action.risk_tier == "medium"
    assert action.code == "select_carrier"
    assert action.has_applier is True


def test_settings_admin_has_no_add(client, ops):
    client.force_login(ops)

    add = client.get(reverse("admin:guardrails_guardrailsettings_add"))
    listing = client.get(reverse("admin:guardrails_guardrailsettings_changelist"))

    assert add.status_code == 403
    assert listing.status_code == 302
