"""Ops managers set the dashboard baseline on a fresh install, without the add permission."""

from datetime import date

import pytest
import time_machine
from django.test import Client

from guardrails.models import AuditEntry
from monitoring.admin import MonitoringSettingsForm
from monitoring.models import MonitoringSettings
from monitoring.services import monitoring_settings_get_or_create
from tests.guardrails.conftest import make_staff_user

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/monitoring/monitoringsettings/"
NOW = "2026-12-05 12:00:00+00:00"


@pytest.fixture
def olivia_client() -> Client:
    client = Client()
    client.force_login(make_staff_user("olivia", "ops_manager"))
    return client


def form_errors(start: str, end: str) -> dict:
    form = MonitoringSettingsForm(data={"baseline_start": start, "baseline_end": end})
    form.is_valid()
    return form.errors


def test_ops_opens_settings_on_fresh_install(olivia_client):
    assert not MonitoringSettings.objects.exists()

    response = olivia_client.get(CHANGELIST)

    row = MonitoringSettings.objects.get()
    assert (row.baseline_start, row.baseline_end) == (None, None)
    assert response.status_code == 302
    assert response["Location"] == f"{CHANGELIST}{row.pk}/change/"
    assert olivia_client.get(response["Location"]).status_code == 200


def test_ops_sets_baseline_without_add_permission(olivia_client):
    user = make_staff_user("oscar", "ops_manager")
    change_url = olivia_client.get(CHANGELIST)["Location"]

    saved = olivia_client.post(
        change_url, {"baseline_start": "2026-03-01", "baseline_end": "2026-03-31"}
    )

    assert saved.status_code == 302, saved.content[:2000]
    row = MonitoringSettings.objects.get()
    assert (row.baseline_start, row.baseline_end) == (date(2026, 3, 1), date(2026, 3, 31))
    assert AuditEntry.objects.filter(action="monitoring_settings.updated").count() == 1
    assert not user.has_perm("monitoring.add_monitoringsettings")
    assert not user.has_perm("monitoring.delete_monitoringsettings")
    assert olivia_client.get(f"{CHANGELIST}add/").status_code == 403


def test_settings_opened_twice_one_row(olivia_client):
    first = olivia_client.get(CHANGELIST)
    second = olivia_client.get(CHANGELIST)

    assert first["Location"] == second["Location"]
    assert MonitoringSettings.objects.count() == 1


def test_existing_row_kept():
    existing = MonitoringSettings.objects.create(baseline_start=date(2026, 1, 1))

    assert monitoring_settings_get_or_create() == existing
    assert MonitoringSettings.objects.count() == 1


def test_no_row_created_without_permission():
    client = Client()
    client.force_login(make_staff_user("cora", "cs_agent"))

    response = client.get(CHANGELIST)

    assert response.status_code == 403
    assert not MonitoringSettings.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_one_day_baseline_accepted(olivia_client):
    change_url = olivia_client.get(CHANGELIST)["Location"]

    saved = olivia_client.post(
        change_url, {"baseline_start": "2026-06-01", "baseline_end": "2026-06-01"}
    )

    assert saved.status_code == 302, saved.content[:2000]
    row = MonitoringSettings.objects.get()
    assert (row.baseline_start, row.baseline_end) == (date(2026, 6, 1), date(2026, 6, 1))


@time_machine.travel(NOW, tick=False)
def test_end_before_start_rejected():
    errors = form_errors("2026-06-02", "2026-06-01")

    assert errors["baseline_end"] == ["The baseline cannot end before it starts."]


@time_machine.travel(NOW, tick=False)
def test_future_baseline_rejected():
    errors = form_errors("2027-01-01", "2027-01-31")

    assert list(errors) == ["baseline_start"]
    assert errors["baseline_start"][0].startswith(
        "The baseline must start on or before today (2026-12-05, UTC)"
    )


@time_machine.travel(NOW, tick=False)
def test_baseline_starting_today_accepted():
    assert form_errors("2026-12-05", "2026-12-31") == {}
