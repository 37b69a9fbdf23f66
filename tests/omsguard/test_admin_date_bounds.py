"""Admin date drill-downs at the edge of the calendar redirect with ?e=1 instead of failing."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

DATED_ADMINS = [
    model_admin for model_admin in admin.site._registry.values() if model_admin.date_hierarchy
]
LAST_YEAR_LOOKUPS = [
    {"__year": "9999"},
    {"__year": "9999", "__month": "12"},
    {"__year": "9999", "__month": "12", "__day": "31"},
]


@pytest.fixture
def superuser_client(db) -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "root-pass-1")
    client = Client()
    client.force_login(user)
    return client


def _changelist_url(model_admin: admin.ModelAdmin) -> str:
    meta = model_admin.model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")


def test_registry_has_dated_admins():
    assert len(DATED_ADMINS) >= 10


@pytest.mark.parametrize(
    "model_admin", DATED_ADMINS, ids=lambda model_admin: model_admin.model._meta.label_lower
)
@pytest.mark.parametrize("lookup", LAST_YEAR_LOOKUPS, ids=lambda lookup: "-".join(lookup))
def test_changelist_last_year_redirects(superuser_client, model_admin, lookup):
    field = model_admin.date_hierarchy
    params = {f"{field}{suffix}": value for suffix, value in lookup.items()}

    response = superuser_client.get(_changelist_url(model_admin), params)

    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize(
    "model_admin", DATED_ADMINS, ids=lambda model_admin: model_admin.model._meta.label_lower
)
def test_changelist_ordinary_year_filters(superuser_client, model_admin):
    response = superuser_client.get(
        _changelist_url(model_admin), {f"{model_admin.date_hierarchy}__year": "2026"}
    )

    assert response.status_code == 200
