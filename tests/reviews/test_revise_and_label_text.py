"""Review items and error labels: a lone surrogate in a revision's keys or text, and a label
note that is not a JSON string, are 400s naming the field."""

import json

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from guardrails.models import AuditEntry
from reviews.models import ErrorLabel, ReviewStatus
from tests.conftest import make_user
from tests.guardrails.breaker_fixtures import decisions_create, order_fixture  # noqa: F401
from tests.label_fixtures import label_taxonomy_fixture  # noqa: F401
from tests.reviews.conftest import GOOD_ADDRESS

pytestmark = pytest.mark.django_db

LABELS_URL = "/api/v1/error-labels/"


def api_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- POST /api/v1/review-items/<id>/revise/ -----------------------------------------------------


@pytest.mark.parametrize(
    "revision",
    [
        {"\ud800": 1},
        {**GOOD_ADDRESS, "line1": "12 Birch\udc00 Ln"},
        {**GOOD_ADDRESS, "extra": {"\ud800": ["x"]}},
    ],
)
def test_revise_surrogate_is_invalid_revision(address_item, cs_manager, revision):
    response = api_for(cs_manager).post(
        f"/api/v1/review-items/{address_item.pk}/revise/",
        json.dumps({"revision": revision}),
        content_type="application/json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_revision"
    assert list(error["fields"]) == ["revision"]
    assert "lone surrogate (U+D" in error["fields"]["revision"][0]
    address_item.refresh_from_db()
    assert address_item.status == ReviewStatus.OPEN
    assert not AuditEntry.objects.filter(action="review_item.revised").exists()


# --- POST /api/v1/error-labels/ -----------------------------------------------------------------


@pytest.mark.parametrize("note", [123, 1.5, True, ["a"], {"a": 1}])
def test_label_note_must_be_json_string(order, label_taxonomy, note):
    decision = decisions_create(order, 1)[0]
    body = {
        "decision": decision.pk,
        "cause": label_taxonomy["cause"]["stale_stock"].pk,
        "impact": label_taxonomy["impact"]["customer_delay"].pk,
        "corrective_action": label_taxonomy["corrective_action"]["fix_channel_data"].pk,
        "note": note,
    }

    response = api_for(make_user("morgan", "cs_manager")).post(LABELS_URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert response.json()["error"]["fields"] == {"note": ["A JSON string is required."]}
    assert not ErrorLabel.objects.exists()
