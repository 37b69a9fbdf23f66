"""`page` and `page_size` given more than once are a 400 naming them."""

import pytest
from rest_framework.test import APIClient

from tests.conftest import make_user

pytestmark = pytest.mark.django_db

MESSAGE = "{} takes one value but was given 2 times. Give it once."


@pytest.fixture
def ops_api() -> APIClient:
    client = APIClient()
    client.force_authenticate(make_user("olivia", "ops_manager"))
    return client


@pytest.mark.parametrize("name", ["page", "page_size"])
def test_list_repeated_page_parameter(ops_api, name):
    response = ops_api.get(f"/api/v1/canaries/?{name}=1&{name}=2")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {name: [MESSAGE.format(name)]}
