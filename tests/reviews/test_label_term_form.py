"""Label terms admin: the code alphabet, the warning when the worst-error weight moves, and
the weight shown only for impacts."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from reviews.models import LabelTerm
from tests.guardrails.conftest import make_staff_user
from tests.label_fixtures import label_taxonomy_fixture  # noqa: F401

pytestmark = pytest.mark.django_db

ADD_URL = "admin:reviews_labelterm_add"


@pytest.fixture
def ops_admin() -> Client:
    client = Client()
    client.force_login(make_staff_user("olivia", "ops_manager"))
    return client


def term_form(**overrides) -> dict:
    return {
        "kind": "impact",
        "code": "recall",
        "name": "Recall",
        "description": "",
        "weight": "6",
        "position": "70",
        "is_active": "on",
    } | overrides


def warnings_of(response) -> list[str]:
    return [
        str(message)
        for message in get_messages(response.wsgi_request)
        if message.level_tag == "warning"
    ]


@pytest.mark.parametrize("code", ["UPPER", "Recall", "two words", "dot.ted", "café"])
def test_add_rejects_code_outside_alphabet(ops_admin, label_taxonomy, code):
    response = ops_admin.post(reverse(ADD_URL), term_form(code=code))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["code"] == [
        "Invalid code: use lowercase letters, digits, _ and - only, e.g. wrong_carrier."
    ]
    assert not LabelTerm.objects.filter(name="Recall").exists()


def test_add_accepts_code_in_alphabet(ops_admin, label_taxonomy):
    response = ops_admin.post(reverse(ADD_URL), term_form(code="recall_2-b", weight="1"))

    assert response.status_code == 302
    assert LabelTerm.objects.filter(code="recall_2-b").exists()


def test_heavier_impact_warns_after_save(ops_admin, label_taxonomy):
    response = ops_admin.post(reverse(ADD_URL), term_form(), follow=True)

    warnings = warnings_of(response)
    assert LabelTerm.objects.filter(code="recall", weight=6).exists()
    assert len(warnings) == 1
    assert "heaviest active impact weight changed from 5 to 6" in warnings[0]
    assert "impact weight of 6 or more as worst errors (was 5 or more)" in warnings[0]


def test_lighter_impact_saves_without_warning(ops_admin, label_taxonomy):
    response = ops_admin.post(reverse(ADD_URL), term_form(weight="3"), follow=True)

    assert LabelTerm.objects.filter(code="recall").exists()
    assert warnings_of(response) == []


def test_switching_off_heaviest_impact_warns(ops_admin, label_taxonomy):
    chargeback = label_taxonomy["impact"]["chargeback"]

    response = ops_admin.post(
        reverse("admin:reviews_labelterm_changelist"),
        {"action": "switch_off", "_selected_action": [chargeback.pk]},
        follow=True,
    )

    warnings = warnings_of(response)
    assert len(warnings) == 1
    assert "changed from 5 to 4" in warnings[0]


def test_reweighting_heaviest_impact_warns(ops_admin, label_taxonomy):
    chargeback = label_taxonomy["impact"]["chargeback"]

    response = ops_admin.post(
        reverse("admin:reviews_labelterm_change", args=[chargeback.pk]),
        term_form(name="Chargeback", weight="8", position="60"),
        follow=True,
    )

    chargeback.refresh_from_db()
    assert chargeback.weight == 8
    assert "changed from 5 to 8" in warnings_of(response)[0]


def test_cause_change_page_hides_weight(ops_admin, label_taxonomy):
    cause = label_taxonomy["cause"]["policy_gap"]
    impact = label_taxonomy["impact"]["chargeback"]

    cause_page = ops_admin.get(reverse("admin:reviews_labelterm_change", args=[cause.pk]))
    impact_page = ops_admin.get(reverse("admin:reviews_labelterm_change", args=[impact.pk]))

    assert 'name="weight"' not in cause_page.text
    assert 'name="weight"' in impact_page.text


def test_add_page_says_causes_ignore_weight(ops_admin, label_taxonomy):
    response = ops_admin.get(reverse(ADD_URL))

    assert "Causes and corrective actions ignore it." in response.text
