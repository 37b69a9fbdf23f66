"""A repeated `format` parameter is a 400 naming it, rendered as JSON."""

import pytest
from rest_framework.test import APIClient

from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops_api() -> APIClient:
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
