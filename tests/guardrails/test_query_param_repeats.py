"""A one-value query parameter given twice is a 400 naming it, never its last value.

QueryDict.get() and a DRF serializer reading query_params both take the last value of
`?days=7&days=30`, so the response would cover 30 days while the client also asked for 7.
"""

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from guardrails.models import CanaryAssignment
from tests.conftest import make_user
from tests.guardrails.canary_fixtures import canary_of, model_versions, orders_in_arm

pytestmark = pytest.mark.django_db

DISAGREEMENT = "/api/v1/decisions/disagreement/"
ASSIGNMENT = "/api/v1/canaries/assignment/"
CANARIES = "/api/v1/canaries/"


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _fields(response) -> dict:
    return response.json()["error"]["fields"]


@pytest.fixture
def ops() -> User:
    return make_user("olivia", "ops_manager")


@pytest.fixture
def canary(ops, default_policies, catalog):
    return canary_of(ops, model_versions(ops)[1], name="Carrier v2")


@pytest.fixture
def bot_api(channel) -> APIClient:
    user = make_user("agent-bot", "integration")
    user.channel_api_grants.create(channel=channel)
    return api_for(user)


# --- Disagreement rates ----------------------------------------------------------------------


def test_disagreement_repeated_days(manager):
    response = api_for(manager).get(f"{DISAGREEMENT}?days=7&days=30")

    assert response.status_code == 400
    assert _fields(response) == {
        "days": ["days takes one value but was given 2 times. Give it once."]
    }


def test_disagreement_repeated_same_days(manager):
    response = api_for(manager).get(f"{DISAGREEMENT}?days=30&days=30&days=30")

    assert response.status_code == 400
    assert _fields(response) == {
        "days": ["days takes one value but was given 3 times. Give it once."]
    }


# --- Canary assignment -----------------------------------------------------------------------


def test_assignment_repeated_order(bot_api, canary, channel):
    first, second = orders_in_arm(canary, channel, "candidate", 2)

    response = bot_api.get(
        f"{ASSIGNMENT}?order={first.pk}&order={second.pk}&action=select_carrier&model=gpt-carrier"
    )

    assert response.status_code == 400
    assert _fields(response) == {
        "order": ["order takes one value but was given 2 times. Give it once."]
    }
    assert not CanaryAssignment.objects.exists()


def test_assignment_repeats_with_other_errors(bot_api, canary):
    response = bot_api.get(f"{ASSIGNMENT}?order=abc&order=1&action=a&action=b")

    assert response.status_code == 400
    assert _fields(response) == {
        "order": ["order takes one value but was given 2 times. Give it once."],
        "action": ["action takes one value but was given 2 times. Give it once."],
        "model": ["This field is required."],
    }


# --- Lists filtered by django-filter ---------------------------------------------------------


def test_list_repeated_single_value_filter(ops, canary):
    response = api_for(ops).get(f"{CANARIES}?candidate={canary.candidate_id}&candidate=99")

    assert response.status_code == 400
    assert _fields(response) == {
        "candidate": ["candidate takes one value but was given 2 times. Give it once."]
    }
