"""The OpenAPI schema gives every id filter the type the API accepts: an integer, 1 to MAX_ID."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

from omsguard.api_filters import MAX_ID

pytestmark = pytest.mark.django_db

ID_FILTERS = [
    ("/api/v1/decisions/", "order"),
    ("/api/v1/review-items/", "order"),
    ("/api/v1/shipments/", "order"),
    ("/api/v1/error-labels/", "decision"),
    ("/api/v1/error-labels/", "review_item"),
    ("/api/v1/fulfilment-exceptions/", "order"),
]


@pytest.fixture
def schema(db) -> dict:
    user = User.objects.create_superuser("root", password="pw-root")
    client = Client(headers={"Authorization": f"Token {Token.objects.create(user=user).key}"})
    return client.get("/api/schema/?format=json").json()


@pytest.mark.parametrize(("path", "name"), ID_FILTERS)
def test_id_filter_schema_is_bounded_integer(schema, path, name):
    parameters = schema["paths"][path]["get"]["parameters"]
    parameter = next(each for each in parameters if each["name"] == name)

    assert parameter["schema"]["type"] == "integer"
    assert parameter["schema"]["minimum"] == 1
    assert parameter["schema"]["maximum"] == MAX_ID
