"""The per-thread channel cache of the Shopify and WooCommerce webhooks.

A cached channel saves the channel query, and the delivery INSERT then checks that the channel
row is still the cached version. Changes made without a signal of this process (another
process, a queryset update) must still take effect on the next request.
"""

from pathlib import Path

import pytest
from django.db import DataError, connection
from django.urls import reverse

from catalog.models import Channel, ChannelKind
from catalog.selectors import channel_get_active
from orders import webhook_channels
from orders.adapters import woocommerce
from orders.models import Delivery
from orders.services import insert_unless_duplicate
from tests.conftest import as_body, order_payload, signed_headers

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the channel cache needs PostgreSQL"
    ),
]

NEW_SECRET = "rotated-secret"


def _post(client, webhook_id: str, *, secret: str | None = None):
    body = as_body(order_payload())
    headers = signed_headers(body, webhook_id=webhook_id)
    if secret is not None:
        headers = signed_headers(body, webhook_id=webhook_id, secret=secret)
    return client.post(
        reverse("webhooks:shopify", kwargs={"channel_code": "shop"}),
        data=body,
        content_type="application/json",
        headers=headers,
    )


def _cached(channel: Channel):
    return webhook_channels.channel_cached(kind=channel.kind, code=channel.code)


def test_first_ack_caches_channel(channel, client):
    assert _cached(channel) is None

    response = _post(client, "wh-first")

    assert response.status_code == 200
    assert _cached(channel).channel.pk == channel.pk


def test_cached_ack_runs_only_insert(
    channel, client, django_assert_num_queries, django_capture_on_commit_callbacks
):
    _post(client, "wh-warm")

    with (
        django_capture_on_commit_callbacks(execute=False) as queued,
        django_assert_num_queries(1),
    ):
        response = _post(client, "wh-cached")

    assert response.json()["status"] == "accepted"
    assert len(queued) == 1
    assert Delivery.objects.filter(delivery_id="wh-cached", channel=channel).exists()


def test_cached_duplicate_acknowledged(
    channel, client, django_assert_num_queries, django_capture_on_commit_callbacks
):
    first = _post(client, "wh-twice")

    with (
        django_capture_on_commit_callbacks(execute=False) as queued,
        django_assert_num_queries(2),
    ):
        second = _post(client, "wh-twice")

    assert second.json() == {"status": "duplicate", "delivery": first.json()["delivery"]}
    assert queued == []
    assert _cached(channel) is not None


def test_rotated_secret_applies_at_once(channel, client):
    _post(client, "wh-warm")
    # A queryset update sends no signal, as a change made by another process.
    Channel.objects.filter(pk=channel.pk).update(webhook_secret=NEW_SECRET)

    old = _post(client, "wh-old-secret")
    new = _post(client, "wh-new-secret", secret=NEW_SECRET)

    assert old.status_code == 401
    assert old.json()["error"]["code"] == "invalid_signature"
    assert new.status_code == 200
    assert not Delivery.objects.filter(delivery_id="wh-old-secret").exists()


def test_new_secret_accepted_first(channel, client):
    _post(client, "wh-warm")
    Channel.objects.filter(pk=channel.pk).update(webhook_secret=NEW_SECRET)

    response = _post(client, "wh-new-first", secret=NEW_SECRET)

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert _cached(channel).channel.webhook_secret == NEW_SECRET


def test_bad_signature_logged_once(channel, client, caplog):
    _post(client, "wh-warm")

    with caplog.at_level("WARNING", logger="orders.webhooks"):
        response = _post(client, "wh-forged", secret="not-the-secret")

    assert response.status_code == 401
    rejected = [r for r in caplog.records if r.getMessage() == "webhook signature rejected"]
    assert len(rejected) == 1


def test_deactivated_channel_gets_404(channel, client):
    _post(client, "wh-warm")
    Channel.objects.filter(pk=channel.pk).update(is_active=False)

    response = _post(client, "wh-inactive")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_channel"
    assert not Delivery.objects.filter(delivery_id="wh-inactive").exists()
    assert _cached(channel) is None


def test_changed_row_refreshes_cache(channel, client):
    _post(client, "wh-warm")
    before = _cached(channel).version
    Channel.objects.filter(pk=channel.pk).update(name="Renamed")

    response = _post(client, "wh-after-change")

    assert response.status_code == 200
    assert _cached(channel).version != before
    assert _cached(channel).channel.name == "Renamed"


def test_saved_channel_clears_cache(channel, client):
    _post(client, "wh-warm")

    channel.save()

    assert _cached(channel) is None


def test_read_matches_channel_selector(channel):
    Channel.objects.filter(pk=channel.pk).update(notification_url="https://example.com/hook")

    read = webhook_channels.channel_read_and_cache(kind=ChannelKind.SHOPIFY, code="shop")
    expected = channel_get_active(kind=ChannelKind.SHOPIFY, code="shop")

    for field in Channel._meta.concrete_fields:
        assert getattr(read, field.attname) == getattr(expected, field.attname), field.name


def test_read_skips_inactive_channel(channel):
    Channel.objects.filter(pk=channel.pk).update(is_active=False)

    read = webhook_channels.channel_read_and_cache(kind=ChannelKind.SHOPIFY, code="shop")

    assert read is None
    assert _cached(channel) is None


def test_guarded_insert_matches_plain_insert(channel):
    webhook_channels.channel_read_and_cache(kind=ChannelKind.SHOPIFY, code="shop")
    version = _cached(channel).version
    fields = {
        "channel": channel,
        "topic": "orders/create",
        "event_id": "ev-1",
        "headers": {"X-Shopify-Topic": "orders/create", "X-Ünïcode": "ü"},
        "body": b'{"id": 1}',
        "signature_valid": True,
        "triggered_at": None,
    }
    plain = Delivery(delivery_id="plain", **fields)
    guarded = Delivery(delivery_id="guarded", **fields)

    assert insert_unless_duplicate(plain) is True
    assert webhook_channels.delivery_insert_if_channel_unchanged(guarded, version) is True

    plain_row = Delivery.objects.filter(pk=plain.pk).values().get()
    guarded_row = Delivery.objects.filter(pk=guarded.pk).values().get()
    for name in plain_row:
        if name in ("id", "delivery_id", "received_at"):
            continue
        assert guarded_row[name] == plain_row[name], name


def test_guarded_insert_rejects_other_version(channel):
    webhook_channels.channel_read_and_cache(kind=ChannelKind.SHOPIFY, code="shop")
    version = _cached(channel).version
    Channel.objects.filter(pk=channel.pk).update(name="Changed")
    delivery = Delivery(
        channel=channel, delivery_id="stale", topic="orders/create", headers={}, body=b"{}"
    )

    with pytest.raises(webhook_channels.ChannelChanged):
        webhook_channels.delivery_insert_if_channel_unchanged(delivery, version)

    assert not Delivery.objects.filter(delivery_id="stale").exists()


def test_guarded_insert_keeps_length_check(channel):
    webhook_channels.channel_read_and_cache(kind=ChannelKind.SHOPIFY, code="shop")
    version = _cached(channel).version
    delivery = Delivery(
        channel=channel, delivery_id="x" * 201, topic="orders/create", headers={}, body=b"{}"
    )

    with pytest.raises(DataError, match="too long"):
        webhook_channels.delivery_insert_if_channel_unchanged(delivery, version)


# WooCommerce deliveries and pings.

WOO_SECRET = "woo-cache-secret"
WOO_SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "woocommerce"


@pytest.fixture
def woo_channel(db) -> Channel:
    return Channel.objects.create(
        kind=ChannelKind.WOOCOMMERCE, code="woo", webhook_secret=WOO_SECRET
    )


def _post_woo(client, delivery: str, *, secret: str = WOO_SECRET):
    body = (WOO_SAMPLES / "01-normal.json").read_bytes()
    headers = {
        "X-WC-Webhook-Signature": woocommerce.signature_for(body, secret),
        "X-WC-Webhook-Topic": "order.created",
        "X-WC-Webhook-Delivery-ID": delivery,
    }
    url = reverse("webhooks:woocommerce", kwargs={"channel_code": "woo"})
    return client.post(url, data=body, content_type="application/json", headers=headers)


def _post_woo_ping(client):
    body = (WOO_SAMPLES / "ping.txt").read_bytes()
    url = reverse("webhooks:woocommerce", kwargs={"channel_code": "woo"})
    return client.post(url, data=body, content_type="application/x-www-form-urlencoded")


def test_woo_cached_ack_runs_only_insert(
    woo_channel, client, django_assert_num_queries, django_capture_on_commit_callbacks
):
    _post_woo(client, "d-warm")
    Delivery.objects.all().delete()

    with (
        django_capture_on_commit_callbacks(execute=False) as queued,
        django_assert_num_queries(1),
    ):
        response = _post_woo(client, "d-cached")

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert len(queued) == 1


def test_woo_new_secret_accepted_first(woo_channel, client):
    _post_woo(client, "d-warm")
    Delivery.objects.all().delete()
    Channel.objects.filter(pk=woo_channel.pk).update(webhook_secret=NEW_SECRET)

    response = _post_woo(client, "d-new", secret=NEW_SECRET)

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"


def test_woo_bad_signature_noted_once(woo_channel, client, caplog):
    _post_woo(client, "d-warm")

    with caplog.at_level("WARNING", logger="orders.channel_webhooks"):
        response = _post_woo(client, "d-forged", secret="not-the-secret")

    assert response.status_code == 401
    rejected = [r for r in caplog.records if r.getMessage() == "webhook signature rejected"]
    assert len(rejected) == 1
    woo_channel.refresh_from_db()
    assert "X-WC-Webhook-Signature missing or invalid" in woo_channel.last_signature_failure


def test_woo_ping_to_deactivated_channel_404(woo_channel, client):
    _post_woo(client, "d-warm")
    Channel.objects.filter(pk=woo_channel.pk).update(is_active=False)

    response = _post_woo_ping(client)

    assert response.status_code == 404
    assert not Delivery.objects.filter(topic="ping").exists()


def test_woo_deactivated_channel_gets_404(woo_channel, client):
    _post_woo(client, "d-warm")
    Delivery.objects.all().delete()
    Channel.objects.filter(pk=woo_channel.pk).update(is_active=False)

    response = _post_woo(client, "d-inactive")

    assert response.status_code == 404
    assert not Delivery.objects.exists()
