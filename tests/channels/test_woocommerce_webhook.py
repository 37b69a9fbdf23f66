"""The WooCommerce webhook: signatures, pings, duplicates and processing."""

from pathlib import Path

import pytest
from django.urls import reverse

from catalog.models import Channel
from orders.adapters import woocommerce
from orders.models import Delivery, DeliveryOutcome, Order

from .conftest import WOO_SECRET

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "woocommerce"
URL = reverse("webhooks:woocommerce", kwargs={"channel_code": "woo"})


@pytest.fixture
def post(client, django_capture_on_commit_callbacks):
    def send(body: bytes, headers: dict, content_type: str = "application/json"):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(URL, data=body, content_type=content_type, headers=headers)

    return send


def signed(body: bytes, topic: str = "order.created", delivery: str = "d-1") -> dict:
    return {
        "X-WC-Webhook-Signature": woocommerce.signature_for(body, WOO_SECRET),
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Delivery-ID": delivery,
    }


def test_ping_acknowledged_and_recorded(woo_channel, post):
    body = (SAMPLES / "ping.txt").read_bytes()
    response = post(body, {}, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert response.json()["status"] == "ping"
    delivery = Delivery.objects.get()
    assert delivery.topic == "ping"
    assert delivery.delivery_id == "ping-17"
    assert delivery.signature_valid is False
    assert delivery.outcome == DeliveryOutcome.PROCESSED
    assert Order.objects.count() == 0


def test_order_created_processed(woo_mapped, post):
    body = (SAMPLES / "01-normal.json").read_bytes()
    response = post(body, signed(body))
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    delivery = Delivery.objects.get()
    assert delivery.delivery_id == "order-4817@2024-11-12T15:41:11Z"
    assert delivery.event_id == "d-1"
    assert delivery.outcome == DeliveryOutcome.PROCESSED
    order = Order.objects.get()
    assert order.channel_order_id == "4817"
    assert [line.sku.code for line in order.lines.order_by("position")] == [
        "TEE-CLASSIC-NVY-L",
        "BOTTLE-STEEL-SGE-OS",
    ]


def test_repeated_body_new_delivery_id_recorded_once(woo_mapped, post):
    body = (SAMPLES / "04-updated-completed.json").read_bytes()
    first = post(body, signed(body, "order.updated", "5612b345"))
    second = post(body, signed(body, "order.updated", "74eb67e0"))
    assert first.json()["status"] == "accepted"
    assert second.json()["status"] == "duplicate"
    assert Delivery.objects.count() == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-WC-Webhook-Signature": "bm90LXRoZS1zaWduYXR1cmU="},
        {"X-WC-Webhook-Signature": "é-not-ascii"},
    ],
    ids=["missing", "wrong", "non-ascii"],
)
def test_bad_signature_rejected(woo_channel, post, headers):
    body = (SAMPLES / "01-normal.json").read_bytes()
    response = post(body, {"X-WC-Webhook-Topic": "order.created", **headers})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert Delivery.objects.count() == 0
    assert Channel.objects.get(code="woo").last_signature_failure != ""


def test_tampered_body_rejected(woo_channel, post):
    body = (SAMPLES / "01-normal.json").read_bytes()
    headers = signed(body)
    response = post(body.replace(b'"82.21"', b'"1.00"'), headers)
    assert response.status_code == 401
    assert Delivery.objects.count() == 0


def test_wrong_secret_rejected(woo_channel, post):
    body = (SAMPLES / "01-normal.json").read_bytes()
    headers = signed(body)
    headers["X-WC-Webhook-Signature"] = woocommerce.signature_for(body, "other-secret")
    assert post(body, headers).status_code == 401


def test_unsupported_topic_rejected(woo_channel, post):
    body = (SAMPLES / "01-normal.json").read_bytes()
    response = post(body, signed(body, topic="product.created"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_topic"


def test_unknown_channel_404(db, post):
    body = (SAMPLES / "01-normal.json").read_bytes()
    assert post(body, signed(body)).status_code == 404


def test_signed_huge_integer_is_400(woo_channel, post):
    # Python refuses to parse integers of more than 4,300 digits with a ValueError.
    body = b'{"id": ' + b"9" * 5000 + b"}"
    response = post(body, signed(body))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert Delivery.objects.count() == 0
