"""Signed webhooks of Shopify, WooCommerce and Square against forged, replayed and stale requests.

Every case runs for each channel from one table. Each channel signs with the awkward secret of
tests/conftest.py (`& < > ;` and non-ASCII), so the byte-exact key is part of every check.
"""

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from catalog.models import Channel, ChannelKind
from orders.adapters import shopify, square, woocommerce
from orders.models import Delivery, Order
from tests.channels.fake_square import TOKEN, fake_square_server
from tests.conftest import SECRET, as_body, order_payload

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
OTHER_SECRET = "other-channel-secret & <> ; ö"
MAX_AGE = timedelta(hours=72)


@dataclass(frozen=True)
class SignedChannel:
    """How one channel kind signs a delivery, and where its delivery timestamp lives."""

    kind: str
    signature_header: str
    # The header or body field the age check reads; None when the channel sends none.
    timestamp_source: str | None
    # A header the channel changes on every attempt of one delivery, if any.
    attempt_header: str | None
    build: Callable[["SignedChannel", datetime | None, str], tuple[bytes, dict]]

    @property
    def code(self) -> str:
        return f"sig-{self.kind}"

    @property
    def url(self) -> str:
        return reverse(f"webhooks:{self.kind}", kwargs={"channel_code": self.code})

    def request(self, *, sent_at: datetime | None, secret: str = SECRET) -> tuple[bytes, dict]:
        """A delivery sent at `sent_at` (None: without a timestamp), signed with `secret`."""
        return self.build(self, sent_at, secret)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shopify_request(case: SignedChannel, sent_at: datetime | None, secret: str):
    body = as_body(order_payload(order_id=7_700_001))
    headers = {
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Webhook-Id": "wh-signed-1",
        "X-Shopify-Hmac-Sha256": shopify.signature_for(body, secret),
    }
    if sent_at is not None:
        headers["X-Shopify-Triggered-At"] = _iso(sent_at)
    return body, headers


def _woocommerce_request(case: SignedChannel, sent_at: datetime | None, secret: str):
    # WooCommerce has no delivery timestamp, and a new X-WC-Webhook-Delivery-ID every attempt.
    body = (SAMPLES / "woocommerce" / "01-normal.json").read_bytes()
    headers = {
        "X-WC-Webhook-Topic": "order.created",
        "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
        "X-WC-Webhook-Signature": woocommerce.signature_for(body, secret),
    }
    return body, headers


def _square_request(case: SignedChannel, sent_at: datetime | None, secret: str):
    event = json.loads(
        (SAMPLES / "square" / "events" / "01-order-created-shipment.json").read_text()
    )
    event.pop("created_at")
    if sent_at is not None:
        event["created_at"] = _iso(sent_at)
    body = json.dumps(event).encode("utf-8")
    signature = square.signature_for(f"http://testserver{case.url}", body, secret)
    return body, {"X-Square-HmacSha256-Signature": signature}


CHANNELS = [
    SignedChannel(
        kind=ChannelKind.SHOPIFY.value,
        attempt_header=None,
        signature_header="X-Shopify-Hmac-Sha256",
        timestamp_source="X-Shopify-Triggered-At",
        build=_shopify_request,
    ),
    SignedChannel(
        kind=ChannelKind.WOOCOMMERCE.value,
        attempt_header="X-WC-Webhook-Delivery-ID",
        signature_header="X-WC-Webhook-Signature",
        timestamp_source=None,
        build=_woocommerce_request,
    ),
    SignedChannel(
        kind=ChannelKind.SQUARE.value,
        attempt_header=None,
        signature_header="X-Square-HmacSha256-Signature",
        timestamp_source="created_at",
        build=_square_request,
    ),
]
TIMESTAMPED = [case for case in CHANNELS if case.timestamp_source]


def _ids(case: SignedChannel) -> str:
    return case.kind


@pytest.fixture(autouse=True)
def fake_square(settings) -> Iterator[None]:
    """The Square Orders API the Square webhook fetches each new order from."""
    with fake_square_server() as server:
        settings.OMSGUARD_SQUARE_API_BASE_URL = server.base_url
        settings.OMSGUARD_SQUARE_ACCESS_TOKEN = TOKEN
        yield


def _channel_create(case: SignedChannel, *, code: str, secret: str) -> Channel:
    return Channel.objects.create(
        kind=case.kind,
        code=code,
        webhook_secret=secret,
        notification_url=f"http://testserver/webhooks/{case.kind}/{code}/",
    )


@pytest.fixture(params=CHANNELS, ids=_ids)
def case(request, db) -> SignedChannel:
    """One channel kind, with its channel and a second channel of the same kind."""
    signed = request.param
    _channel_create(signed, code=signed.code, secret=SECRET)
    _channel_create(signed, code=f"{signed.code}-other", secret=OTHER_SECRET)
    return signed


@pytest.fixture
def timestamped(request, db) -> SignedChannel:
    signed = request.param
    _channel_create(signed, code=signed.code, secret=SECRET)
    return signed


@pytest.fixture
def send(client, django_capture_on_commit_callbacks) -> Callable:
    def post(case: SignedChannel, body: bytes, headers: dict):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                case.url, data=body, content_type="application/json", headers=headers
            )

    return post


def _flip_first_character(signature: str) -> str:
    return ("B" if signature[0] == "A" else "A") + signature[1:]


def test_valid_signature_accepted(case, send):
    body, headers = case.request(sent_at=timezone.now())

    response = send(case, body, headers)

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert Order.objects.count() == 1


def test_tampered_body_rejected(case, send):
    body, headers = case.request(sent_at=timezone.now())

    # One trailing space: the JSON means the same, but the signed bytes differ.
    response = send(case, body + b" ", headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert Delivery.objects.count() == 0


def test_tampered_signature_header_rejected(case, send):
    body, headers = case.request(sent_at=timezone.now())
    headers[case.signature_header] = _flip_first_character(headers[case.signature_header])

    response = send(case, body, headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert Delivery.objects.count() == 0


def test_other_channels_secret_rejected(case, send):
    body, headers = case.request(sent_at=timezone.now(), secret=OTHER_SECRET)

    response = send(case, body, headers)

    assert response.status_code == 401
    assert Delivery.objects.count() == 0


def test_replayed_delivery_is_duplicate(case, send):
    body, headers = case.request(sent_at=timezone.now())
    first = send(case, body, headers)
    replay_headers = dict(headers)
    if case.attempt_header:
        replay_headers[case.attempt_header] = uuid.uuid4().hex

    replay = send(case, body, replay_headers)

    assert first.json()["status"] == "accepted"
    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate", "delivery": first.json()["delivery"]}
    assert Delivery.objects.count() == 1
    assert Order.objects.count() == 1


def test_stale_timestamp_by_channel(case, send, caplog):
    """Older than the max age: rejected where the channel sends a time, else accepted."""
    with time_machine.travel(timezone.now(), tick=False):
        body, headers = case.request(sent_at=timezone.now() - MAX_AGE - timedelta(minutes=1))
        with caplog.at_level(logging.WARNING):
            response = send(case, body, headers)

    if case.timestamp_source is None:
        # WooCommerce sends no delivery time, so an old delivery cannot be recognised.
        assert response.status_code == 200
        assert Delivery.objects.count() == 1
        return
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "stale_delivery"
    assert response.json()["error"]["message"].startswith(f"{case.timestamp_source} is 259260")
    assert Delivery.objects.count() == 0
    stale = [r for r in caplog.records if r.getMessage() == "webhook rejected: stale delivery"]
    assert len(stale) == 1
    assert stale[0].channel == case.code
    assert stale[0].age_seconds == 259_260
    logged = " ".join(str(record.__dict__) for record in caplog.records)
    assert SECRET not in logged
    assert "Classic Cotton" not in logged
    assert "r2uij3XisMtiB349wCEDoOxN2M0ZY" not in logged


@pytest.mark.parametrize("timestamped", TIMESTAMPED, ids=_ids, indirect=True)
@pytest.mark.parametrize(
    ("offset", "expected_status"),
    [
        (-MAX_AGE + timedelta(minutes=1), 200),
        (timedelta(minutes=4), 200),
        (timedelta(minutes=6), 400),
    ],
    ids=["just-inside-max-age", "slightly-ahead", "too-far-ahead"],
)
def test_timestamp_window_edges(timestamped, send, offset, expected_status):
    body, headers = timestamped.request(sent_at=timezone.now() + offset)

    response = send(timestamped, body, headers)

    assert response.status_code == expected_status
    assert Delivery.objects.count() == (1 if expected_status == 200 else 0)
    if expected_status == 400:
        error = response.json()["error"]
        assert error["code"] == "stale_delivery"
        assert "ahead of this server's clock; at most 300 seconds are accepted" in error["message"]


@pytest.mark.parametrize("timestamped", TIMESTAMPED, ids=_ids, indirect=True)
def test_absent_timestamp_accepted(timestamped, send):
    body, headers = timestamped.request(sent_at=None)

    response = send(timestamped, body, headers)

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"


@pytest.mark.parametrize("timestamped", TIMESTAMPED, ids=_ids, indirect=True)
def test_age_check_off_with_zero_max_age(timestamped, send, settings):
    settings.OMSGUARD_WEBHOOK_MAX_AGE_SECONDS = 0
    body, headers = timestamped.request(sent_at=timezone.now() - timedelta(days=400))

    response = send(timestamped, body, headers)

    assert response.status_code == 200


def test_stale_check_follows_signature_check(send, db):
    """A forged stale request gets 401, so the age check reveals nothing to forgers."""
    shopify_case = CHANNELS[0]
    _channel_create(shopify_case, code=shopify_case.code, secret=SECRET)
    body, headers = shopify_case.request(sent_at=timezone.now() - MAX_AGE * 2, secret=OTHER_SECRET)

    response = send(shopify_case, body, headers)

    assert response.status_code == 401
