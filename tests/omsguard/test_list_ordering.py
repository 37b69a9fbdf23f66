"""`?ordering=` on the REST API lists: an unknown field is a 400, not a silent default order."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

from tests.omsguard.test_page_size import orders  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(db) -> Client:
    user = User.objects.create_superuser("root", password="pw-root")
    return Client(headers={"Authorization": f"Token {Token.objects.create(user=user).key}"})


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["channel_order_id"] for row in response.json()["results"]]


def test_known_field_sorts_both_ways(client, orders):  # noqa: F811
    ascending = _ids(client.get("/api/v1/orders/?ordering=created_at"))
    descending = _ids(client.get("/api/v1/orders/?ordering=-created_at"))

    assert ascending == ["1", "2", "3"]
    assert descending == ["3", "2", "1"]


@pytest.mark.parametrize("value", ["-totl", "created_at,colour", "--created_at", "password"])
def test_unknown_field_is_400_naming_ordering(client, orders, value):  # noqa: F811
    response = client.get("/api/v1/orders/", {"ordering": value})

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert list(fields) == ["ordering"]
    assert (
        "is not a field this list can be sorted by. Use one of: created_at, total"
        in (fields["ordering"][0])
    )


def test_empty_ordering_keeps_the_default(client, orders):  # noqa: F811
    assert _ids(client.get("/api/v1/orders/?ordering=")) == ["3", "2", "1"]


def test_schema_lists_the_sort_keys(client):
    schema = client.get("/api/schema/?format=json").json()

    parameters = schema["paths"]["/api/v1/orders/"]["get"]["parameters"]
    ordering = next(parameter for parameter in parameters if parameter["name"] == "ordering")
    assert ordering["description"].endswith("One of: created_at, -created_at, total, -total.")


def test_total_sorts_within_a_currency_filter(client, orders):  # noqa: F811
    euro = orders[1]
    euro.currency, euro.total = "EUR", "5.00"
    euro.save()

    usd = _ids(client.get("/api/v1/orders/?currency=usd&ordering=total"))
    eur = _ids(client.get("/api/v1/orders/?currency=EUR&ordering=total"))

    assert sorted(usd) == ["1", "3"]
    assert eur == ["2"]


def test_repeated_single_value_filter_is_400(client, orders):  # noqa: F811
    response = client.get("/api/v1/orders/?currency=USD&currency=EUR&status=ready&status=on_hold")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "currency": ["currency takes one value but was given 2 times. Give it once."]
    }


def test_repeated_ordering_is_400(client, orders):  # noqa: F811
    response = client.get("/api/v1/orders/?ordering=total&ordering=-created_at")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "ordering": ["Give ordering once, with its fields separated by commas."]
    }


def test_schema_lists_name_sort_keys(client):
    schema = client.get("/api/schema/?format=json").json()

    orderings = {
        path: parameter
        for path, operations in schema["paths"].items()
        for parameter in operations.get("get", {}).get("parameters", [])
        if parameter["name"] == "ordering"
    }
    assert "/api/v1/deliveries/" in orderings
    assert "/api/v1/inventory-discrepancies/" in orderings
    for path, parameter in orderings.items():
        assert "One of:" in parameter.get("description", ""), path
        assert "pattern" in parameter["schema"], path


@pytest.mark.parametrize("value", ["error", "orders", "-error"])
def test_deliveries_internal_field_is_400(client, value):
    response = client.get("/api/v1/deliveries/", {"ordering": value})

    assert response.status_code == 400
    assert "Use one of: received_at" in response.json()["error"]["fields"]["ordering"][0]


def test_schema_pattern_matches_sort_keys(client):
    schema = client.get("/api/schema/?format=json").json()
    parameters = schema["paths"]["/api/v1/orders/"]["get"]["parameters"]
    ordering = next(parameter for parameter in parameters if parameter["name"] == "ordering")
    pattern = ordering["schema"]["pattern"]

    assert re.fullmatch(pattern, "created_at")
    assert re.fullmatch(pattern, "-total,created_at")
    assert not re.fullmatch(pattern, "totl")
    assert not re.fullmatch(pattern, "created_at,")
