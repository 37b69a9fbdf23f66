"""Square: an event whose created_at cannot be read fails its delivery, naming the field."""

import json
from pathlib import Path

import pytest
from django.urls import reverse

from orders.adapters import square
from orders.canonical import AdapterError
from orders.models import Delivery, DeliveryOutcome, Order
from tests.channels.conftest import SQUARE_KEY, SQUARE_URL, square_channel  # noqa: F401
from tests.channels.fake_square import TOKEN, fake_square_server

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "square"
URL = reverse("webhooks:square", kwargs={"channel_code": "sq"})


def recorded_payload(created_at: object) -> dict:
    event = json.loads((SAMPLES / "events" / "01-order-created-shipment.json").read_text("utf-8"))
    order = json.loads((SAMPLES / "orders" / "r2uij3XisMtiB349wCEDoOxN2M0ZY.json").read_text())
    if created_at is None:
        del event["created_at"]
    else:
        event["created_at"] = created_at
    return {"event": event, "order": order["order"]}


@pytest.mark.parametrize("created_at", ["bogus", "2024-13-45T10:00:00Z", "2024-11-16T15:40:22", 17])
def test_unreadable_event_created_at_rejected(created_at):
    with pytest.raises(AdapterError) as raised:
        square.parse_order(recorded_payload(created_at))

    assert raised.value.field == "event.created_at"
    assert "ISO 8601" in raised.value.reason


def test_event_without_created_at_accepted():
    order = square.parse_order(recorded_payload(None))

    assert order.channel_order_id == "r2uij3XisMtiB349wCEDoOxN2M0ZY"


def test_event_created_at_read():
    created = square.event_created_at({"created_at": "2024-11-16T15:40:22.187Z"})

    assert created is not None
    assert created.isoformat() == "2024-11-16T15:40:22.187000+00:00"


@pytest.mark.django_db(transaction=True)
def test_webhook_bogus_created_at_fails_delivery(
    square_channel,  # noqa: F811
    carriers,
    settings,
    client,
    django_capture_on_commit_callbacks,
):
    event = recorded_payload("bogus")["event"]
    body = json.dumps(event).encode("utf-8")
    headers = {"X-Square-HmacSha256-Signature": square.signature_for(SQUARE_URL, body, SQUARE_KEY)}

    with fake_square_server() as server:
        settings.OMSGUARD_SQUARE_API_BASE_URL = server.base_url
        settings.OMSGUARD_SQUARE_ACCESS_TOKEN = TOKEN
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(URL, data=body, content_type="application/json", headers=headers)

    assert response.status_code == 200, response.content
    delivery = Delivery.objects.get()
    assert delivery.outcome == DeliveryOutcome.FAILED
    assert "event.created_at" in delivery.error
    assert "'bogus'" in delivery.error
    assert not Order.objects.exists()
