"""A repeated `format` parameter is a 400 naming it, rendered as JSON."""

import pytest
from rest_framework.test import APIClient
from rest_framework.views import APIView

from omsguard.query_params import ContentNegotiation
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops_api(monkeypatch) -> APIClient:
    # Patched in, so the test does not depend on the REST_FRAMEWORK setting that names it.
    monkeypatch.setattr(APIView, "content_negotiation_class", ContentNegotiation)
    client = APIClient()
    client.force_authenticate(make_user("olivia", "ops_manager"))
    return client


def test_list_repeated_format(ops_api):
    single = ops_api.get("/api/v1/canaries/?format=json")
    repeated = ops_api.get("/api/v1/canaries/?format=api&format=json")

    assert single.status_code == 200
    assert repeated.status_code == 400
    assert repeated["Content-Type"] == "application/json"
    assert repeated.json()["error"]["fields"] == {
        "format": ["format takes one value but was given 2 times. Give it once."]
    }
