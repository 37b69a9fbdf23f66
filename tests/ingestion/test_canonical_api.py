import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from catalog.models import Sku
from orders.models import Delivery, DeliveryOutcome, IdempotencyKey, Order, OrderStatus
from tests.conftest import make_user
from tests.ingestion.conftest import canonical_sample

# Transactional, so the delivery commits inside the request and eager processing runs before
# the response, as it does outside tests.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def skus(db, carriers):
    for code in ("TOWEL-BATH-WHT-OS", "CUSHION-LINEN-NAT-OS", "BLANKET-THROW-OAT-OS"):
        Sku.objects.create(code=code, title=code, price="10.00", currency="USD")


def test_post_creates_order(api_client, skus):
    response = api_client.post_order(canonical_sample())

    assert response.status_code == 201, response.content
    body = response.json()
    order = Order.objects.get()
    delivery = Delivery.objects.get()
    assert body == {
        "delivery": delivery.pk,
        "outcome": "processed",
        "error": "",
        "order": order.pk,
        "status": order.status,
    }
    assert order.channel_order_id == "B2B-2024-00317"
    assert str(order.total) == "381.590"
    assert [line.sku.code for line in order.lines.all()] == [
        "TOWEL-BATH-WHT-OS",
        "CUSHION-LINEN-NAT-OS",
        "BLANKET-THROW-OAT-OS",
    ]
    assert order.shipping_address["zip"] == "97210"
    assert delivery.topic == "api/orders"


def test_same_key_same_body_returns_first_result(api_client, skus):
    first = api_client.post_order(canonical_sample(), key="k-1")
    second = api_client.post_order(canonical_sample(), key="k-1")

    assert second.status_code == first.status_code == 201
    assert second.json() == first.json()
    assert Order.objects.count() == 1
    assert Delivery.objects.count() == 1


def test_same_key_different_body_is_409(api_client, skus):
    api_client.post_order(canonical_sample(), key="k-1")
    changed = canonical_sample()
    changed["order_number"] = "B2B-OTHER"

    response = api_client.post_order(changed, key="k-1")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert Delivery.objects.count() == 1


def test_missing_idempotency_key_is_400(api_client):
    response = api_client.post_order(canonical_sample(), key=None)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_idempotency_key"


def test_wrong_content_type_is_415(api_client):
    response = api_client.post_order(b"channel=x", content_type="text/plain")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_oversize_body_is_413(api_client, settings):
    settings.OMSGUARD_API_ORDER_MAX_BYTES = 100

    response = api_client.post_order(canonical_sample())

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert Delivery.objects.count() == 0


def test_malformed_json_is_400(api_client):
    response = api_client.post_order(b'{"channel": ')

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


def _field_errors(api_client, body) -> dict:
    response = api_client.post_order(body)
    assert response.status_code == 400, response.content
    assert Delivery.objects.count() == 0
    return response.json()["error"]["fields"]


def test_missing_field_is_named(api_client):
    body = canonical_sample()
    del body["total"]

    assert _field_errors(api_client, body) == {"total": ["This field is required."]}


def test_negative_quantity_is_named(api_client):
    body = canonical_sample()
    body["lines"][1]["quantity"] = -2

    assert _field_errors(api_client, body) == {
        "lines[1].quantity": ["Ensure this value is greater than or equal to 1."]
    }


def test_unknown_currency_is_named(api_client):
    body = canonical_sample()
    body["currency"] = "XYZ"

    assert _field_errors(api_client, body) == {
        "currency": ["Not an ISO 4217 currency code: 'XYZ'."]
    }


def test_float_amount_and_wrong_decimals_are_named(api_client):
    body = canonical_sample()
    body["total"] = 381.59
    assert _field_errors(api_client, body) == {
        "total": ['Send the amount as a string, e.g. "12.34".']
    }

    body = canonical_sample()
    body["subtotal"] = "407.9"
    assert _field_errors(api_client, body) == {
        "subtotal": ["Use exactly 2 decimal places for USD."]
    }


def test_unknown_channel_is_named(api_client):
    body = canonical_sample()
    body["channel"] = "nope"

    assert _field_errors(api_client, body) == {
        "channel": ["No active channel of kind canonical with this code."]
    }


def test_channel_not_granted_is_403(canonical_channel, django_capture_on_commit_callbacks):
    user = make_user("other-robot", "integration")
    client = Client(headers={"Authorization": f"Token {Token.objects.create(user=user).key}"})

    response = client.post(
        reverse("order-list"),
        data=canonical_sample(),
        content_type="application/json",
        headers={"Idempotency-Key": "k"},
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "channel_not_allowed"


def test_user_without_add_order_is_403(canonical_channel):
    user = make_user("viewer", "cs_agent")
    client = Client()
    client.force_login(user)

    response = client.post(
        reverse("order-list"),
        data=canonical_sample(),
        content_type="application/json",
        headers={"Idempotency-Key": "k"},
    )

    assert response.status_code == 403


def test_incomplete_order_held_until_complete(api_client, skus):
    body = canonical_sample()
    body["state"] = "incomplete"
    body["updated_at"] = "2024-11-18T10:24:05-08:00"
    api_client.post_order(body, key="k-1")
    order = Order.objects.get()
    assert order.status == OrderStatus.ON_HOLD
    assert [reason["code"] for reason in order.hold_reasons] == ["incomplete"]

    body["state"] = "open"
    body["updated_at"] = "2024-11-18T11:00:00-08:00"
    response = api_client.post_order(body, key="k-2")

    assert response.status_code == 201
    assert response.json()["order"] == order.pk
    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []


def test_real_worker_mode_returns_202_with_location(api_client, skus, monkeypatch):
    monkeypatch.setattr("orders.services._enqueue_processing", lambda delivery_pk: None)

    response = api_client.post_order(canonical_sample())

    delivery = Delivery.objects.get()
    location = f"/api/v1/deliveries/{delivery.pk}/"
    assert response.status_code == 202
    assert response["Location"] == location
    assert response.json() == {"delivery": delivery.pk, "outcome": "received", "location": location}

    poll = api_client.get(location)
    assert poll.status_code == 200
    assert poll.json()["outcome"] == DeliveryOutcome.RECEIVED


@pytest.mark.postgres
def test_concurrent_same_key_creates_one_order(canonical_channel, api_user, carriers):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real concurrent transactions")
    token = Token.objects.create(user=api_user).key
    barrier = threading.Barrier(4)
    statuses = []

    def post():
        client = Client(headers={"Authorization": f"Token {token}"})
        barrier.wait()
        try:
            response = client.post(
                reverse("order-list"),
                data=canonical_sample(),
                content_type="application/json",
                headers={"Idempotency-Key": "same"},
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Order.objects.count() == 1
    assert Delivery.objects.count() == 1
    assert IdempotencyKey.objects.count() == 1
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
