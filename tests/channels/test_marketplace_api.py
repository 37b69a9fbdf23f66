"""POST /api/v1/channels/<code>/marketplace-orders/: Amazon and eBay orders through the API."""

import json
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Channel, ChannelKind
from orders.models import ChannelApiGrant, Delivery, DeliveryOutcome, Order
from tests.conftest import make_user

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
URL = "/api/v1/channels/{}/marketplace-orders/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def amazon(db) -> Channel:
    return Channel.objects.create(kind=ChannelKind.AMAZON, code="amz")


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def connector(amazon):
    user = make_user("amazon-connector", "integration")
    ChannelApiGrant.objects.create(user=user, channel=amazon)
    return client_for(user)


def sample(name: str) -> dict:
    return json.loads((SAMPLES / "amazon" / name).read_text("utf-8"))


def test_amazon_order_is_recorded_and_processed(
    amazon, connector, demo_catalog, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = connector.post(URL.format("amz"), sample("01-prime.json"), format="json")

    assert response.status_code == 202
    [result] = response.json()["deliveries"]
    assert result["created"] is True
    delivery = Delivery.objects.get(pk=result["delivery"])
    assert delivery.outcome == DeliveryOutcome.PROCESSED
    assert Order.objects.filter(channel=amazon).count() == 1


def test_same_orders_again_record_nothing_new(amazon, connector, demo_catalog):
    body = [sample("01-prime.json"), sample("04-unknown-seller-sku.json")]

    connector.post(URL.format("amz"), body, format="json")
    response = connector.post(URL.format("amz"), body, format="json")

    assert [entry["created"] for entry in response.json()["deliveries"]] == [False, False]
    assert Delivery.objects.count() == 2


def test_entry_without_order_id_is_400_with_field(amazon, connector):
    response = connector.post(URL.format("amz"), [{"order": {}, "items": []}], format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_payload"
    assert error["fields"] == {"[0].order.AmazonOrderId": ["missing"]}
    assert Delivery.objects.count() == 0


def test_user_without_grant_is_403(amazon):
    client = client_for(make_user("other-connector", "integration"))

    response = client.post(URL.format("amz"), sample("01-prime.json"), format="json")

    assert response.status_code == 403
    assert Delivery.objects.count() == 0


def test_shopify_channel_is_400(connector):
    Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop")
    user = make_user("shop-connector", "integration")
    ChannelApiGrant.objects.create(user=user, channel=Channel.objects.get(code="shop"))

    response = client_for(user).post(URL.format("shop"), {}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_channel_kind"


def test_unknown_channel_is_404(connector):
    response = connector.post(URL.format("nope"), {}, format="json")

    assert response.status_code == 404
