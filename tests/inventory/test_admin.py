"""The inventory admin: every page renders, and stock can only change through services."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.inventory.conftest import TEE

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(catalog, set_stock, place_order) -> Client:
    set_stock(TEE, "WH", 5)
    place_order((TEE, 1))
    user = User.objects.create_superuser("root", password="pw-root")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "model", ["location", "stocklevel", "stockevent", "reservation", "inventorydiscrepancy"]
)
def test_changelist_renders(admin_client, model):
    response = admin_client.get(f"/admin/inventory/{model}/")

    assert response.status_code == 200


def test_stock_level_list_shows_available(admin_client):
    response = admin_client.get("/admin/inventory/stocklevel/")

    assert b'<th scope="col" class="column-available">' in response.content
    assert b'<td class="field-available">4</td>' in response.content


@pytest.mark.parametrize("model", ["stocklevel", "stockevent", "reservation"])
def test_stock_records_cannot_be_added(admin_client, model):
    response = admin_client.get(f"/admin/inventory/{model}/add/")

    assert response.status_code == 403


def test_discrepancy_add_form_renders(admin_client):
    response = admin_client.get("/admin/inventory/inventorydiscrepancy/add/")

    assert response.status_code == 200
    assert b'name="correct"' in response.content
