"""Admin fixes: guardrail settings validation and audit, and the action messages."""

from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from guardrails.backtest import shadow_start
from guardrails.forms import GuardrailSettingsForm
from guardrails.models import AuditEntry, Breaker, BreakerScope, BreakerState, GuardrailSettings

from .backtest_fixtures import live_version, version_copy

pytestmark = pytest.mark.django_db

SETTINGS_URL = "admin:guardrails_guardrailsettings_change"
VERSIONS_URL = "admin:guardrails_policyversion_changelist"


@pytest.fixture
def settings_row(default_policies) -> GuardrailSettings:
    return GuardrailSettings.objects.get_or_create(pk=1)[0]


@pytest.fixture
def draft(default_policies):
    return version_copy(live_version("substitute_sku"), item_price_under=Decimal("20"))


def settings_post(row: GuardrailSettings, **changes) -> dict:
    data = {name: getattr(row, name) for name in GuardrailSettingsForm.Meta.fields}
    data.update(changes)
    return {key: str(value) for key, value in data.items()}


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


# --- Guardrail settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("breaker_error_rate", "1.5"),
        ("breaker_error_rate", "-1"),
        ("breaker_error_rate", "0"),
        ("breaker_min_decisions", "0"),
        ("breaker_window_minutes", "0"),
        ("breaker_trial_decisions", "0"),
        ("breaker_cool_down_minutes", "0"),
        ("mix_drift_factor", "0"),
        ("mix_drift_factor", "-2"),
        ("mix_drift_factor", "1"),
        ("confidence_collapse_drop", "2"),
        ("confidence_collapse_drop", "1"),
        ("confidence_collapse_drop", "-0.1"),
        ("autonomy_max_error_rate", "1.1"),
        ("autonomy_max_error_rate", "0"),
        ("autonomy_window_days", "0"),
        ("mix_baseline_days", "0"),
        ("audit_sample_start_rate", "1.5"),
        ("audit_sample_floor_rate", "-0.1"),
        ("audit_sample_floor_rate", "0.5"),
        ("audit_sample_target_disagreement", "0"),
        ("claim_minutes", "0"),
        ("review_default_sla_minutes", "0"),
        ("address_confirmation_hours", "0"),
    ],
)
def test_settings_nonsense_is_a_field_error(client, ops, settings_row, field, value):
    client.force_login(ops)

    response = client.post(
        reverse(SETTINGS_URL, args=[1]), settings_post(settings_row, **{field: value})
    )

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert list(form.errors) == [field]
    stored = GuardrailSettings.objects.get(pk=1)
    assert getattr(stored, field) == getattr(settings_row, field)
    assert not AuditEntry.objects.filter(action="guardrail_settings.changed").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("breaker_error_rate", "1"),
        ("confidence_collapse_drop", "0"),
        ("mix_drift_factor", "1.01"),
        ("breaker_min_decisions", "1"),
    ],
)
def test_settings_edge_values_are_accepted(client, ops, settings_row, field, value):
    client.force_login(ops)

    response = client.post(
        reverse(SETTINGS_URL, args=[1]), settings_post(settings_row, **{field: value})
    )

    assert response.status_code == 302
    assert Decimal(str(getattr(GuardrailSettings.objects.get(pk=1), field))) == Decimal(value)


def test_settings_save_audits_changed_fields(client, ops, settings_row):
    client.force_login(ops)

    response = client.post(
        reverse(SETTINGS_URL, args=[1]),
        settings_post(settings_row, breaker_error_rate="0.1", autonomy_window_days="14"),
    )

    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="guardrail_settings.changed")
    assert entry.actor == ops
    assert entry.target_type == "guardrail_settings"
    assert entry.target_id == "1"
    assert entry.before == {"breaker_error_rate": "0.0500", "autonomy_window_days": 30}
    assert entry.after == {"breaker_error_rate": "0.1", "autonomy_window_days": 14}


def test_settings_save_without_changes_audits_empty(client, ops, settings_row):
    client.force_login(ops)

    client.post(reverse(SETTINGS_URL, args=[1]), settings_post(settings_row))

    entry = AuditEntry.objects.get(action="guardrail_settings.changed")
    assert entry.before == {}
    assert entry.after == {}


# --- Policy version actions -------------------------------------------------------------------


def post_version_action(client, action: str, version):
    return client.post(
        reverse(VERSIONS_URL), {"action": action, "_selected_action": [version.pk]}, follow=True
    )


def test_publish_drafts_names_skipped_published_version(client, ops, default_policies):
    live = live_version("substitute_sku")
    client.force_login(ops)

    response = post_version_action(client, "publish_drafts", live)

    assert messages_of(response) == [
        f"Skipped 1 version already published: {live}.",
    ]


def test_publish_drafts_names_published_drafts(client, ops, draft):
    client.force_login(ops)

    response = post_version_action(client, "publish_drafts", draft)

    draft.refresh_from_db()
    assert draft.published_at is not None
    assert messages_of(response) == [f"Published 1 draft: {draft}."]


def test_publish_drafts_refuses_draft_held_by_canary(client, ops, draft):
    from guardrails import rollouts

    rule_set = rollouts.version_create(
        kind="rule_set",
        subject="substitution rules",
        label="2",
        changelog="Stricter substitutions.",
        user=ops,
        policy_versions=[draft],
    )
    rollouts.canary_start(candidate_id=rule_set.pk, user=ops, name="Substitution canary")
    client.force_login(ops)

    response = post_version_action(client, "publish_drafts", draft)

    assert response.status_code == 200
    draft.refresh_from_db()
    assert draft.published_at is None
    [message] = messages_of(response)
    assert message.startswith(f"{draft} not published: ")
    assert "canary Substitution canary" in message


def test_shadow_messages_keep_the_code_lowercase(client, ops, draft):
    client.force_login(ops)

    started = post_version_action(client, "run_in_shadow", draft)
    stopped = post_version_action(client, "stop_shadow", draft)

    # The admin capitalizes the first letter of a message, which would change the code.
    for response in (started, stopped):
        page = response.content.decode()
        assert "Substitute_sku" not in page
        assert "substitute_sku (all channels)" in page


def test_run_in_shadow_again_changes_nothing(client, ops, draft):
    shadow_start(version=draft, user=ops)
    client.force_login(ops)

    response = post_version_action(client, "run_in_shadow", draft)

    assert AuditEntry.objects.filter(action="policy.shadow_start").count() == 1
    assert messages_of(response) == [f"Nothing changed: {draft} already runs in shadow."]


def test_shadow_start_service_is_idempotent(ops, draft):
    shadow_start(version=draft, user=ops)
    shadow_start(version=draft, user=ops)

    assert AuditEntry.objects.filter(action="policy.shadow_start").count() == 1


# --- Breakers ---------------------------------------------------------------------------------


def test_close_by_hand_counts_only_changed_breakers(client, ops, default_policies):
    closed = Breaker.objects.create(scope=BreakerScope.ACTION, key="select_carrier")
    opened = Breaker.objects.create(
        scope=BreakerScope.ACTION, key="substitute_sku", state=BreakerState.OPEN
    )
    client.force_login(ops)

    response = client.post(
        reverse("admin:guardrails_breaker_changelist"),
        {
            "action": "close_by_hand",
            "_selected_action": [closed.pk, opened.pk],
            "reason": "Carrier API is back.",
        },
        follow=True,
    )

    opened.refresh_from_db()
    assert opened.state == BreakerState.CLOSED
    assert messages_of(response) == [
        "Closed 1 breaker by hand.",
        "Already closed, left as they were: action select_carrier.",
    ]
