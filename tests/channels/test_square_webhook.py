"""The Square webhook: URL-plus-body signatures, the order fetch, and fetch failures."""

import json
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from catalog.models import Channel, ChannelSkuMapping, ExternalIdKind, Sku
from orders.adapters import square
from orders.models import Delivery, DeliveryOutcome, Order

from .conftest import SQUARE_KEY, SQUARE_URL
from .fake_square import TOKEN, fake_square_server

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "square"
URL = reverse("webhooks:square", kwargs={"channel_code": "sq"})
SHIPMENT_EVENT = SAMPLES / "events" / "01-order-created-shipment.json"


@pytest.fixture
def fake_square(settings):
    with fake_square_server() as server:
        settings.OMSGUARD_SQUARE_API_BASE_URL = server.base_url
        settings.OMSGUARD_SQUARE_ACCESS_TOKEN = TOKEN
        yield server


@pytest.fixture
def post(client, django_capture_on_commit_callbacks):
    def send(body: bytes, headers: dict):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(URL, data=body, content_type="application/json", headers=headers)

    return send


def shipment_event() -> bytes:
    """Return the sample event dated now: the webhook rejects events older than its max age."""
    event = json.loads(SHIPMENT_EVENT.read_text("utf-8"))
    event["created_at"] = timezone.now().isoformat()
    return json.dumps(event).encode("utf-8")


def signed(body: bytes, url: str = SQUARE_URL, key: str = SQUARE_KEY) -> dict:
    return {"X-Square-HmacSha256-Signature": square.signature_for(url, body, key)}


def test_event_fetches_order_and_records_both(square_channel, demo_catalog, fake_square, post):
    for external_id, code in json.loads((SAMPLES / "catalog_objects.json").read_text()).items():
        ChannelSkuMapping.objects.create(
            channel=square_channel,
            id_kind=ExternalIdKind.POS_CATALOG_OBJECT,
            external_id=external_id,
            sku=Sku.objects.get(code=code),
        )
    body = shipment_event()
    response = post(body, signed(body))

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert fake_square.requests == [
        {"path": "/v2/orders/r2uij3XisMtiB349wCEDoOxN2M0ZY", "authorization": f"Bearer {TOKEN}"}
    ]
    delivery = Delivery.objects.get()
    assert delivery.delivery_id == "81673942-c71e-4685-af02-6a87ff10b348"
    assert delivery.topic == "order.created"
    recorded = json.loads(bytes(delivery.body))
    assert recorded["event"] == json.loads(body)
    assert recorded["order"]["id"] == "r2uij3XisMtiB349wCEDoOxN2M0ZY"
    assert delivery.outcome == DeliveryOutcome.PROCESSED
    order = Order.objects.get()
    assert [line.sku.code for line in order.lines.order_by("position")] == [
        "SNKR-ROAD-COB-10",
        "SOCK-CREW-WHT-L",
    ]


def test_retry_is_duplicate_without_fetch(square_channel, demo_catalog, fake_square, post):
    body = shipment_event()
    post(body, signed(body))
    second = post(body, signed(body))
    assert second.json()["status"] == "duplicate"
    assert len(fake_square.requests) == 1
    assert Delivery.objects.count() == 1


def test_fetch_failure_answers_503(square_channel, fake_square, post):
    fake_square.fail_with = 500
    body = shipment_event()
    response = post(body, signed(body))
    assert response.status_code == 503
    assert response["Retry-After"] == "60"
    assert response.json()["error"]["code"] == "order_fetch_failed"
    assert Delivery.objects.count() == 0


def test_unreachable_api_answers_503(square_channel, settings, post):
    with fake_square_server() as server:
        base_url = server.base_url
    settings.OMSGUARD_SQUARE_API_BASE_URL = base_url
    settings.OMSGUARD_SQUARE_ACCESS_TOKEN = TOKEN
    body = shipment_event()
    assert post(body, signed(body)).status_code == 503
    assert Delivery.objects.count() == 0


def test_wrong_token_answers_503(square_channel, fake_square, settings, post):
    settings.OMSGUARD_SQUARE_ACCESS_TOKEN = "wrong-token"  # noqa: S105 - test value
    body = shipment_event()
    assert post(body, signed(body)).status_code == 503


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Square-HmacSha256-Signature": "é"},
        {"X-Square-HmacSha256-Signature": "bm90LXRoZS1zaWduYXR1cmU="},
    ],
    ids=["missing", "non-ascii", "wrong"],
)
def test_bad_signature_rejected(square_channel, post, headers):
    response = post(shipment_event(), headers)
    assert response.status_code == 401
    assert Delivery.objects.count() == 0


def test_tampered_body_rejected(square_channel, post):
    body = shipment_event()
    response = post(body.replace(b"order.created", b"order.updated"), signed(body))
    assert response.status_code == 401


def test_wrong_key_rejected(square_channel, post):
    body = shipment_event()
    assert post(body, signed(body, key="other-key")).status_code == 401


def test_url_mismatch_shown_on_channel(square_channel, post):
    square_channel.notification_url = "https://shop.example.com/webhooks/square/sq/"
    square_channel.save()
    body = shipment_event()
    response = post(body, signed(body, url="https://shop.example.com/webhooks/square/sq/x"))
    assert response.status_code == 401
    note = Channel.objects.get(pk=square_channel.pk).last_signature_failure
    assert "request URL http://testserver/webhooks/square/sq/ differs" in note
    assert "https://shop.example.com/webhooks/square/sq/" in note


def test_signed_huge_integer_is_400(square_channel, post):
    # Python refuses to parse integers of more than 4,300 digits with a ValueError.
    body = b'{"event_id": "e-1", "data": ' + b"9" * 5000 + b"}"
    response = post(body, signed(body))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert Delivery.objects.count() == 0
