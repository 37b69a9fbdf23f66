"""Fixtures for ingestion tests: Shopify update posting and a canonical channel with a user."""

import copy
import json
from collections.abc import Callable

import pytest
from django.urls import reverse
from rest_framework.authtoken.models import Token

from catalog.models import Channel, ChannelKind
from orders.models import ChannelApiGrant
from tests.conftest import SAMPLES, as_body, make_user, order_payload, signed_headers


@pytest.fixture
def post_shopify(post_webhook) -> Callable:
    """POST an order payload as a Shopify delivery of the given topic and webhook id."""

    def post(payload: dict, *, webhook_id: str, topic: str = "orders/updated"):
        body = as_body(payload)
        headers = signed_headers(body, webhook_id=webhook_id) | {"X-Shopify-Topic": topic}
        return post_webhook(body, headers)

    return post


def shopify_update(updated_at: str, **overrides) -> dict:
    return order_payload(updated_at=updated_at, **overrides)


@pytest.fixture
def canonical_channel(db) -> Channel:
    return Channel.objects.create(kind=ChannelKind.CANONICAL, code="demo-canonical")


@pytest.fixture
def api_user(db, canonical_channel):
    user = make_user("robot", "integration")
    ChannelApiGrant.objects.create(user=user, channel=canonical_channel)
    return user


@pytest.fixture
def api_client(api_user, django_capture_on_commit_callbacks):
    """A client that posts canonical orders with the integration user's token."""
    from django.test import Client

    token = Token.objects.create(user=api_user)
    client = Client(headers={"Authorization": f"Token {token.key}"})

    def post(body: bytes | dict, *, key: str | None = "key-1", content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Idempotency-Key": key} if key is not None else {}
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                reverse("order-list"), data=data, content_type=content_type, headers=headers
            )

    client.post_order = post
    return client


def canonical_sample(name: str = "01-normal.json") -> dict:
    return copy.deepcopy(json.loads((SAMPLES / "canonical" / name).read_text()))
