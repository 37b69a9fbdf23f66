"""The labelled-examples download rejects a filter given more than once."""

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops_client() -> Client:
    client = Client()
    client.force_login(make_user("olivia", "ops_manager"))
    return client


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("since=2026-01-01&since=2026-02-01", "since"),
        ("until=2026-01-01&until=2026-02-01", "until"),
        ("action=substitute_sku&action=select_carrier", "action"),
    ],
)
def test_download_rejects_repeated_filter(ops_client, query, name):
    response = ops_client.get(f"{reverse('labels:export')}?{query}")

    assert response.status_code == 400
    assert response.text == f"{name}: {name} takes one value but was given 2 times. Give it once.\n"
