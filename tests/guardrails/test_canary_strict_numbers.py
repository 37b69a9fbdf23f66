"""JSON types on the versions and canaries API: a number or boolean sent as text is a 400.

DRF's IntegerField reads "5" as 5 and its BooleanField reads "yes" as true, so a client with
a type bug would start a canary with a value it never meant to send.
"""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from guardrails.models import Canary, CanaryStatus, Version
from tests.conftest import make_user
from tests.guardrails.backtest_fixtures import live_version, version_copy
from tests.guardrails.canary_fixtures import canary_of, model_versions

pytestmark = pytest.mark.django_db

VERSIONS = "/api/v1/versions/"
CANARIES = "/api/v1/canaries/"
INTEGER_REQUIRED = "A JSON integer is required."
BOOLEAN_REQUIRED = "A JSON boolean (true or false) is required."


@pytest.fixture
def ops() -> User:
    return make_user("olivia", "ops_manager")


@pytest.fixture
def ops_api(ops) -> APIClient:
    client = APIClient()
    client.force_authenticate(ops)
    return client


@pytest.fixture
def versions(ops, default_policies, catalog) -> tuple[Version, Version]:
    """gpt-carrier v1 active and v2 a draft."""
    return model_versions(ops)


def _fields(response) -> dict:
    return response.json()["error"]["fields"]


def test_start_canary_rejects_days_as_text(ops_api, versions):
    response = ops_api.post(CANARIES, {"candidate": versions[1].pk, "days": "5"}, format="json")

    assert response.status_code == 400
    assert _fields(response) == {"days": [INTEGER_REQUIRED]}
    assert not Canary.objects.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"days": 5.0}, INTEGER_REQUIRED),
        ({"min_orders_per_arm": "1000"}, INTEGER_REQUIRED),
        ({"shadow": "true"}, BOOLEAN_REQUIRED),
        ({"shadow": 1}, BOOLEAN_REQUIRED),
        ({"exclude_priority_skus": "false"}, BOOLEAN_REQUIRED),
        ({"exclude_priority_skus": 0}, BOOLEAN_REQUIRED),
    ],
)
def test_start_canary_rejects_loose_types(ops_api, versions, change, message):
    response = ops_api.post(CANARIES, {"candidate": versions[1].pk} | change, format="json")

    assert response.status_code == 400
    assert _fields(response) == {next(iter(change)): [message]}
    assert not Canary.objects.exists()


def test_start_canary_rejects_candidate_as_text(ops_api, versions):
    response = ops_api.post(CANARIES, {"candidate": str(versions[1].pk)}, format="json")

    assert response.status_code == 400
    assert _fields(response) == {"candidate": [INTEGER_REQUIRED]}
    assert not Canary.objects.exists()


def test_resume_rejects_days_as_text(ops_api, ops, versions):
    canary = canary_of(ops, versions[1], name="Carrier v2")
    ops_api.post(f"{CANARIES}{canary.pk}/pause/", {"reason": "Peak."}, format="json")

    response = ops_api.post(f"{CANARIES}{canary.pk}/resume/", {"days": "3"}, format="json")

    assert response.status_code == 400
    assert _fields(response) == {"days": [INTEGER_REQUIRED]}
    assert Canary.objects.get(pk=canary.pk).status == CanaryStatus.PAUSED


def test_rule_set_policy_version_id_type(ops_api, default_policies, catalog):
    draft = version_copy(live_version("select_carrier"), confidence_above=Decimal("0.90"))
    body = {
        "kind": "rule_set",
        "subject": "carrier rules",
        "label": "2026-12",
        "changelog": "Carrier swaps need 90 % confidence.",
    }

    as_text = ops_api.post(VERSIONS, body | {"policy_versions": [str(draft.pk)]}, format="json")
    as_number = ops_api.post(VERSIONS, body | {"policy_versions": [draft.pk]}, format="json")

    assert as_text.status_code == 400
    assert _fields(as_text) == {"policy_versions": [INTEGER_REQUIRED]}
    assert as_number.status_code == 201
    assert as_number.json()["policy_versions"] == [draft.pk]
