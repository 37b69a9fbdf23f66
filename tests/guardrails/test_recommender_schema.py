"""The schema lists every status the recommender endpoints return, 409 included."""

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    ["/api/v1/orders/{order_id}/shortages/", "/api/v1/orders/{order_id}/carrier-recommendation/"],
)
def test_recommender_schema_lists_statuses(path):
    user = User.objects.create_superuser("root", password="pw-root")
    client = Client(headers={"Authorization": f"Token {Token.objects.create(user=user).key}"})

    responses = client.get("/api/schema/?format=json").json()["paths"][path]["post"]["responses"]

    assert {"200", "400", "403", "404", "409"} <= set(responses)
