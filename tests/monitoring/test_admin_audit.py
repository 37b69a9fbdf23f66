"""Alert rules, notification targets and the monitoring settings edited in the admin leave
audit entries with the changed values, except a notification address, which stays hidden."""

import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from guardrails.models import ActorKind, AuditEntry
from monitoring.models import AlertRule, MonitoringSettings, NotificationKind, NotificationTarget
from tests.guardrails.conftest import make_staff_user
from tests.monitoring.test_alert_rules import make_rule, rule_form_data

pytestmark = pytest.mark.django_db

SECRET_HOOK = "https://hooks.example.com/services/T000/B000/secret-token-123"


@pytest.fixture
def olivia_client() -> Client:
    client = Client()
    client.force_login(make_staff_user("olivia", "ops_manager"))
    return client


def only_entry(action: str) -> AuditEntry:
    entries = list(AuditEntry.objects.filter(action=action))
    assert len(entries) == 1, [entry.action for entry in AuditEntry.objects.all()]
    return entries[0]


def posted(client: Client, url: str, data: dict) -> None:
    response = client.post(url, data)
    assert response.status_code == 302, response.content[:2000]


def target_form_data(**overrides) -> dict:
    owner, _ = Group.objects.get_or_create(name="ops_manager")
    data = {
        "name": "Ops chat",
        "kind": NotificationKind.WEBHOOK,
        "address": SECRET_HOOK,
        "min_severity": "actionable",
        "owner_group": str(owner.pk),
        "notify_on_resolve": "on",
        "is_enabled": "on",
    }
    return data | overrides


def test_rule_added_records_its_values(olivia_client):
    posted(olivia_client, "/admin/monitoring/alertrule/add/", rule_form_data())

    entry = only_entry("alert_rule.created")
    rule = AlertRule.objects.get(name="Disagreement on carriers")

    assert (entry.actor_kind, entry.actor_label) == (ActorKind.USER, "olivia")
    assert (entry.target_type, entry.target_id) == ("alert_rule", str(rule.pk))
    assert entry.before is None
    assert Decimal(entry.after["threshold"]) == 2
    assert entry.after["kpi"] == "disagreement_rate"


def test_rule_change_records_before_and_after(olivia_client):
    rule = make_rule(name="Carrier disagreement", kpi="disagreement_rate", threshold=Decimal("5"))
    data = rule_form_data(name=rule.name, threshold="9")

    posted(olivia_client, f"/admin/monitoring/alertrule/{rule.pk}/change/", data)

    entry = only_entry("alert_rule.updated")
    assert entry.reason == "Edited in the admin."
    assert Decimal(entry.before["threshold"]) == 5
    assert Decimal(entry.after["threshold"]) == 9
    assert "name" not in entry.before


def test_rule_deleted_records_what_it_was(admin_client):
    # Only a superuser may delete a rule. Ops managers disable rules instead.
    rule = make_rule(name="Old rule")

    posted(admin_client, f"/admin/monitoring/alertrule/{rule.pk}/delete/", {"post": "yes"})

    entry = only_entry("alert_rule.deleted")
    assert not AlertRule.objects.filter(pk=rule.pk).exists()
    assert (entry.actor_label, entry.target_id) == ("admin", str(rule.pk))
    assert entry.before["name"] == "Old rule"
    assert entry.before["kpi"] == "order_error_rate"


def test_target_address_never_reaches_the_log(olivia_client):
    posted(olivia_client, "/admin/monitoring/notificationtarget/add/", target_form_data())
    target = NotificationTarget.objects.get(name="Ops chat")
    changed = target_form_data(address=SECRET_HOOK.replace("123", "456"), min_severity="critical")

    posted(olivia_client, f"/admin/monitoring/notificationtarget/{target.pk}/change/", changed)

    entry = only_entry("notification_target.updated")
    assert entry.before == {"address": "(hidden)", "min_severity": "actionable"}
    assert entry.after["address"] == "(hidden)"
    assert entry.after["min_severity"] == "critical"
    logged = json.dumps([(row.before, row.after) for row in AuditEntry.objects.all()])
    assert "secret-token" not in logged


def test_settings_change_records_the_baseline(olivia_client):
    row = MonitoringSettings.objects.create()

    posted(
        olivia_client,
        f"/admin/monitoring/monitoringsettings/{row.pk}/change/",
        {"baseline_start": "2026-01-01", "baseline_end": "2026-02-01"},
    )

    entry = only_entry("monitoring_settings.updated")
    assert entry.before == {"baseline_start": None, "baseline_end": None}
    assert entry.after["baseline_start"] == "2026-01-01"
    assert entry.after["baseline_end"] == "2026-02-01"
