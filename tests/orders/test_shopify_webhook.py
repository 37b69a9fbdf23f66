"""The Shopify orders/create webhook: signatures, recording, duplicates and commit timing."""

import base64
import hashlib
import hmac
import json
import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from orders.models import Delivery, DeliveryOutcome, Order, OrderStatus
from orders.services import delivery_record
from tests.conftest import SECRET, as_body, order_payload, signed_headers

pytestmark = pytest.mark.django_db

# Raw bodies that a re-serialising verifier would get wrong: the signature covers the bytes.
TRICKY_BODIES = {
    "line separator escape": b'{"id": 1, "note": "a\\u2028b", "line_items": []}',
    "raw emoji": '{"id": 1, "note": "gift \U0001f381", "line_items": []}'.encode(),
    "escaped slashes": b'{"id": 1, "landing_site": "https:\\/\\/example.com\\/x"}',
    "spacing kept": b'{ "id" : 1 ,\n  "x": [ ] }',
}


def test_signature_matches_reference_computation():
    body = b'{"id": 1}'
    expected = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    from orders.adapters.shopify import signature_for

    assert signature_for(body, SECRET) == expected


@pytest.mark.parametrize("name", TRICKY_BODIES)
def test_valid_signature_on_raw_bytes_is_accepted(channel, post_webhook, name):
    body = TRICKY_BODIES[name]

    response = post_webhook(body, signed_headers(body, webhook_id=f"wh-{hash(name)}"))

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    delivery = Delivery.objects.get()
    assert bytes(delivery.body) == body


@pytest.mark.parametrize("name", TRICKY_BODIES)
def test_signature_of_reserialised_body_is_rejected(channel, post_webhook, name):
    body = TRICKY_BODIES[name]
    # What a framework that parses and re-encodes the JSON before verifying would sign.
    reserialised = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert reserialised != body

    response = post_webhook(body, signed_headers(reserialised))

    assert response.status_code == 401
    assert Delivery.objects.count() == 0


def test_tampered_body_is_rejected(channel, post_webhook):
    body = as_body(order_payload())
    headers = signed_headers(body)

    response = post_webhook(body.replace(b"39.98", b"3.98"), headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert Delivery.objects.count() == 0


def test_wrong_secret_is_rejected(channel, post_webhook):
    body = as_body(order_payload())

    response = post_webhook(body, signed_headers(body, secret="another-secret"))

    assert response.status_code == 401
    assert Order.objects.count() == 0


def test_missing_signature_header_is_rejected(channel, post_webhook):
    body = as_body(order_payload())
    headers = signed_headers(body)
    del headers["X-Shopify-Hmac-Sha256"]

    response = post_webhook(body, headers)

    assert response.status_code == 401
    assert Delivery.objects.count() == 0


def test_channel_without_secret_rejects_everything(channel, post_webhook):
    channel.webhook_secret = ""
    channel.save()
    body = as_body(order_payload())

    response = post_webhook(body, signed_headers(body, secret=""))

    assert response.status_code == 401


def test_unknown_channel_is_404(channel, post_webhook):
    body = as_body(order_payload())

    response = post_webhook(body, channel_code="nope")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_channel"


def test_missing_webhook_id_is_400(channel, post_webhook):
    body = as_body(order_payload())
    headers = signed_headers(body)
    del headers["X-Shopify-Webhook-Id"]

    response = post_webhook(body, headers)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_header"


def test_unsupported_topic_is_400(channel, post_webhook):
    body = as_body(order_payload())
    headers = signed_headers(body) | {"X-Shopify-Topic": "products/update"}

    response = post_webhook(body, headers)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_topic"


def test_oversize_body_is_413(channel, post_webhook, settings):
    settings.OMSGUARD_WEBHOOK_MAX_BYTES = 100
    body = as_body(order_payload())

    response = post_webhook(body)

    assert response.status_code == 413
    assert Delivery.objects.count() == 0


def test_get_is_not_allowed(channel, client):
    response = client.get(reverse("webhooks:shopify", kwargs={"channel_code": "shop"}))

    assert response.status_code == 405


def test_delivery_keeps_headers_without_signature(channel, post_webhook):
    body = as_body(order_payload())
    triggered_at = (timezone.now() - timedelta(hours=1)).replace(microsecond=678000)
    headers = signed_headers(body) | {"X-Shopify-Triggered-At": triggered_at.isoformat()}

    post_webhook(body, headers)

    delivery = Delivery.objects.get()
    assert delivery.headers["X-Shopify-Webhook-Id"] == "wh-1"
    assert delivery.event_id == "ev-wh-1"
    assert delivery.triggered_at == triggered_at
    assert "X-Shopify-Hmac-Sha256" not in delivery.headers


def test_accepted_delivery_is_processed_into_order(channel, catalog, post_webhook):
    body = as_body(order_payload())

    response = post_webhook(body)

    assert response.json() == {"status": "accepted", "delivery": Delivery.objects.get().pk}
    delivery = Delivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.PROCESSED
    assert delivery.processed_by == "eager"
    order = Order.objects.get()
    assert order.status == OrderStatus.READY
    assert order.delivery == delivery


def test_duplicate_delivery_is_acknowledged_and_not_processed_again(channel, catalog, post_webhook):
    body = as_body(order_payload())

    first = post_webhook(body)
    with mock.patch("orders.tasks.process_delivery.delay") as delay:
        second = post_webhook(body)

    assert first.status_code == second.status_code == 200
    assert second.json() == {"status": "duplicate", "delivery": first.json()["delivery"]}
    delay.assert_not_called()
    assert Delivery.objects.count() == 1
    assert Order.objects.count() == 1


def test_same_order_in_new_delivery_does_not_create_second_order(channel, catalog, post_webhook):
    body = as_body(order_payload())

    post_webhook(body, signed_headers(body, webhook_id="wh-a"))
    post_webhook(body, signed_headers(body, webhook_id="wh-b"))

    assert Order.objects.count() == 1
    outcomes = sorted(Delivery.objects.values_list("outcome", flat=True))
    assert outcomes == [DeliveryOutcome.DUPLICATE_ORDER, DeliveryOutcome.PROCESSED]


def test_processing_is_queued_only_on_commit(channel, django_capture_on_commit_callbacks):
    with mock.patch("orders.tasks.process_delivery.delay") as delay:
        with django_capture_on_commit_callbacks() as callbacks:
            delivery, created = delivery_record(
                channel=channel,
                delivery_id="wh-commit",
                topic="orders/create",
                body=b"{}",
                headers={},
            )
            assert created
        delay.assert_not_called()

        assert len(callbacks) == 1
        callbacks[0]()

    delay.assert_called_once_with(delivery.pk)


def test_nothing_is_queued_after_rollback(channel, django_capture_on_commit_callbacks):
    with (
        mock.patch("orders.tasks.process_delivery.delay") as delay,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        delivery_record(
            channel=channel,
            delivery_id="wh-rollback",
            topic="orders/create",
            body=b"{}",
            headers={},
        )
        raise RuntimeError("simulated failure after recording")

    assert callbacks == []
    delay.assert_not_called()
    assert Delivery.objects.filter(delivery_id="wh-rollback").count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_deliveries_create_one_order(channel, catalog):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real concurrent transactions")
    body = as_body(order_payload())
    headers = signed_headers(body, webhook_id="wh-race")
    url = reverse("webhooks:shopify", kwargs={"channel_code": channel.code})
    copies = 6
    barrier = threading.Barrier(copies)
    statuses: list[dict] = []

    def send() -> None:
        try:
            barrier.wait(timeout=10)
            response = Client().post(
                url, data=body, content_type="application/json", headers=headers
            )
            statuses.append(response.json())
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(status["status"] for status in statuses) == ["accepted"] + ["duplicate"] * 5
    assert Delivery.objects.count() == 1
    assert Order.objects.count() == 1


def test_non_ascii_signature_header_is_401(channel, client):
    body = as_body(order_payload())
    url = reverse("webhooks:shopify", kwargs={"channel_code": "shop"})

    response = client.post(
        url,
        data=body,
        content_type="application/json",
        HTTP_X_SHOPIFY_HMAC_SHA256="é".encode().decode("latin-1"),
        HTTP_X_SHOPIFY_TOPIC="orders/create",
        HTTP_X_SHOPIFY_WEBHOOK_ID="wh-x",
    )

    assert response.status_code == 401


def test_repeated_webhook_id_header_is_400(channel, post_webhook):
    body = as_body(order_payload())
    headers = signed_headers(body) | {"X-Shopify-Webhook-Id": "first-id,second-id"}

    response = post_webhook(body, headers)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_header"
    assert Delivery.objects.count() == 0
