"""Holding a channel's orders: new and updated orders are held, releasing lets them go on."""

import threading
import time

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.urls import reverse
from rest_framework.authtoken.models import Token

from catalog.models import Channel, ChannelKind, Sku
from guardrails.models import AuditEntry
from orders.channel_holds import (
    CHANNEL_HELD,
    ChannelAlreadyHeld,
    ChannelHoldError,
    ChannelNotHeld,
    channel_orders_hold,
    channel_orders_release,
)
from orders.models import ChannelApiGrant, Delivery, Order, OrderStatus
from orders.pipeline import delivery_process
from reviews.models import ReviewItem
from reviews.services import review_item_accept
from tests.conftest import as_body, make_user, order_payload, signed_headers
from tests.ingestion.conftest import canonical_sample
from tests.orders.test_pipeline import UNMAPPED_LINE

pytestmark = pytest.mark.django_db

T0 = "2024-11-04T10:15:34-05:00"
T1 = "2024-11-04T11:00:00-05:00"


@pytest.fixture
def ops(db):
    user = make_user("olga", "ops_manager")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def post_order(post_webhook):
    """Deliver a Shopify order (create or update) and return the stored order."""

    def post(webhook_id: str, topic: str = "orders/create", **overrides) -> Order:
        payload = order_payload(updated_at=overrides.pop("updated_at", T0), **overrides)
        body = as_body(payload)
        headers = signed_headers(body, webhook_id=webhook_id) | {"X-Shopify-Topic": topic}
        response = post_webhook(body, headers)
        assert response.status_code == 200, response.content
        return Order.objects.get(channel_order_id=str(payload["id"]))

    return post


def reason_codes(order: Order) -> list[str]:
    order.refresh_from_db()
    return [reason["code"] for reason in order.hold_reasons]


# --- Holding and releasing -----------------------------------------------------------------


def test_hold_sets_fields_and_audits(channel, ops):
    held = channel_orders_hold(channel=channel, user=ops, reason="Alert #7: carrier mix off")

    channel.refresh_from_db()
    assert held.orders_held is True
    assert channel.orders_held is True
    assert channel.orders_held_reason == "Alert #7: carrier mix off"
    assert channel.orders_held_at is not None
    entry = AuditEntry.objects.get(action="channel.orders_held")
    assert entry.actor == ops
    assert entry.target_id == str(channel.pk)
    assert entry.reason == "Alert #7: carrier mix off"
    assert entry.before == {"orders_held": False, "orders_held_reason": "", "orders_held_at": None}
    assert entry.after["orders_held"] is True
    assert entry.after["orders_held_at"] == channel.orders_held_at.isoformat()


def test_release_clears_fields_and_audits(channel, ops):
    channel_orders_hold(channel=channel, user=ops, reason="Checking")

    channel_orders_release(channel=channel, user=ops, note="All clear")

    channel.refresh_from_db()
    assert (channel.orders_held, channel.orders_held_reason, channel.orders_held_at) == (
        False,
        "",
        None,
    )
    entry = AuditEntry.objects.get(action="channel.orders_released")
    assert entry.reason == "All clear"
    assert entry.before["orders_held_reason"] == "Checking"
    assert entry.after == {"orders_held": False, "orders_held_reason": "", "orders_held_at": None}


def test_holding_twice_is_an_error(channel, ops):
    channel_orders_hold(channel=channel, user=ops, reason="First")

    with pytest.raises(ChannelAlreadyHeld) as raised:
        channel_orders_hold(channel=channel, user=ops, reason="Second")

    assert isinstance(raised.value, ValueError)
    assert str(raised.value) == "The orders of channel shop are already held: First"
    channel.refresh_from_db()
    assert channel.orders_held_reason == "First"


def test_releasing_unheld_channel_is_an_error(channel, ops):
    with pytest.raises(ChannelNotHeld) as raised:
        channel_orders_release(channel=channel, user=ops)

    assert isinstance(raised.value, ValueError)
    assert str(raised.value) == "The orders of channel shop are not held."
    assert not AuditEntry.objects.filter(action="channel.orders_released").exists()


def test_hold_needs_a_reason(channel, ops):
    with pytest.raises(ChannelHoldError, match="Give a reason"):
        channel_orders_hold(channel=channel, user=ops, reason="  ")

    channel.refresh_from_db()
    assert channel.orders_held is False


def test_long_reason_is_cut_to_fit(channel, ops):
    held = channel_orders_hold(channel=channel, user=ops, reason="x" * 400)

    assert len(held.orders_held_reason) == 300
    assert held.orders_held_reason.endswith("…")


def test_hold_needs_change_channel_permission(channel):
    agent = make_user("alice", "cs_agent")

    with pytest.raises(PermissionDenied):
        channel_orders_hold(channel=channel, user=agent, reason="No")
    with pytest.raises(PermissionDenied):
        channel_orders_release(channel=channel, user=agent)

    channel.refresh_from_db()
    assert channel.orders_held is False


def test_automation_holds_without_user(channel):
    channel_orders_hold(channel=channel, user=None, reason="Duplicate shipments above 5 per 1,000")

    entry = AuditEntry.objects.get(action="channel.orders_held")
    assert entry.actor is None
    assert entry.actor_label == "automation"


# --- Orders while held ---------------------------------------------------------------------


def test_new_webhook_order_is_held_and_checked(channel, catalog, ops, post_order):
    channel_orders_hold(channel=channel, user=ops, reason="Alert #7")

    order = post_order("wh-1")

    assert order.status == OrderStatus.ON_HOLD
    assert order.hold_reasons == [
        {
            "severity": "hold",
            "code": CHANNEL_HELD,
            "message": "Orders from channel shop are held: Alert #7",
        }
    ]
    # Hygiene still ran: the carrier was mapped and the checks were recorded.
    assert order.carrier_service is not None
    assert order.events.filter(kind="order.validated").exists()
    assert order.events.get(kind="order.held").message == (
        "Held: Orders from channel shop are held: Alert #7"
    )


def test_release_lets_held_order_go_on(channel, catalog, ops, post_order):
    channel_orders_hold(channel=channel, user=ops, reason="Alert #7")
    order = post_order("wh-1")

    channel_orders_release(channel=channel, user=ops, note="False alarm.")

    order.refresh_from_db()
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []
    released = order.events.get(kind="order.channel_hold_released")
    assert released.message == "Channel shop released: False alarm."
    assert released.actor == ops
    assert order.events.filter(kind="order.ready").count() == 1
    assert AuditEntry.objects.filter(
        action="order.released", target_id=str(order.pk), actor=ops
    ).exists()


def test_release_keeps_other_hold_reasons(channel, catalog, ops, post_order):
    channel_orders_hold(channel=channel, user=ops, reason="Alert #7")
    order = post_order("wh-1", lines=[order_payload()["line_items"][0], UNMAPPED_LINE])
    assert reason_codes(order) == ["unmapped_sku", CHANNEL_HELD]
    held_events = order.events.filter(kind="order.held").count()

    channel_orders_release(channel=channel, user=ops)

    assert reason_codes(order) == ["unmapped_sku"]
    assert order.status == OrderStatus.ON_HOLD
    assert order.events.filter(kind="order.held").count() == held_events
    assert order.events.filter(kind="order.channel_hold_released").count() == 1
    assert AuditEntry.objects.filter(
        action="order.hold_reason_removed", target_id=str(order.pk)
    ).exists()

    item = ReviewItem.objects.get(order=order)
    review_item_accept(
        item_id=item.pk,
        user=make_user("alice", "cs_agent"),
        sku_id=Sku.objects.get(code="TEE-CLASSIC-BLK-M").pk,
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.READY


def test_deciding_review_item_keeps_channel_hold(channel, catalog, ops, post_order):
    channel_orders_hold(channel=channel, user=ops, reason="Alert #7")
    order = post_order("wh-1", lines=[order_payload()["line_items"][0], UNMAPPED_LINE])

    review_item_accept(
        item_id=ReviewItem.objects.get(order=order).pk,
        user=make_user("alice", "cs_agent"),
        sku_id=Sku.objects.get(code="TEE-CLASSIC-BLK-M").pk,
    )

    assert reason_codes(order) == [CHANNEL_HELD]
    assert order.status == OrderStatus.ON_HOLD


def test_updated_order_is_held(channel, catalog, ops, post_order):
    order = post_order("wh-1")
    assert order.status == OrderStatus.READY

    channel_orders_hold(channel=channel, user=ops, reason="Alert #7")
    order.refresh_from_db()
    assert order.status == OrderStatus.READY

    post_order("wh-2", topic="orders/updated", updated_at=T1)

    assert reason_codes(order) == [CHANNEL_HELD]
    assert order.status == OrderStatus.ON_HOLD


def test_cancellation_while_held_cancels(channel, catalog, ops, post_order):
    post_order("wh-1")
    channel_orders_hold(channel=channel, user=ops, reason="Alert #7")

    order = post_order("wh-2", topic="orders/cancelled", updated_at=T1, cancelled_at=T1)

    assert order.status == OrderStatus.CANCELLED
    assert order.hold_reasons == []
    channel_orders_release(channel=channel, user=ops)
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED


def test_other_channels_are_not_held(channel, catalog, ops, post_order):
    other = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="other")
    channel_orders_hold(channel=other, user=ops, reason="Alert #7")

    order = post_order("wh-1")

    assert order.status == OrderStatus.READY


def test_release_leaves_other_channels_orders(channel, catalog, ops, post_order):
    other = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="other")
    channel_orders_hold(channel=channel, user=ops, reason="Alert #7")
    channel_orders_hold(channel=other, user=ops, reason="Alert #8")
    order = post_order("wh-1")

    channel_orders_release(channel=other, user=ops)

    assert reason_codes(order) == [CHANNEL_HELD]


def test_canonical_api_order_is_held_then_released(
    ops, carriers, client, django_capture_on_commit_callbacks
):
    canonical = Channel.objects.create(kind=ChannelKind.CANONICAL, code="demo-canonical")
    for code in ("TOWEL-BATH-WHT-OS", "CUSHION-LINEN-NAT-OS", "BLANKET-THROW-OAT-OS"):
        Sku.objects.create(code=code, title=code, price="10.00", currency="USD")
    robot = make_user("robot", "integration")
    ChannelApiGrant.objects.create(user=robot, channel=canonical)
    channel_orders_hold(channel=canonical, user=ops, reason="Connector upgrade")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("order-list"),
            data=canonical_sample(),
            content_type="application/json",
            headers={
                "Authorization": f"Token {Token.objects.create(user=robot).key}",
                "Idempotency-Key": "k-1",
            },
        )

    assert response.status_code in (201, 202), response.content
    order = Order.objects.get()
    assert reason_codes(order) == [CHANNEL_HELD]
    channel_orders_release(channel=canonical, user=ops)
    order.refresh_from_db()
    assert order.status == OrderStatus.READY


def test_incomplete_order_keeps_incomplete_after_release(
    ops, carriers, client, django_capture_on_commit_callbacks
):
    canonical = Channel.objects.create(kind=ChannelKind.CANONICAL, code="demo-canonical")
    robot = make_user("robot", "integration")
    ChannelApiGrant.objects.create(user=robot, channel=canonical)
    channel_orders_hold(channel=canonical, user=ops, reason="Connector upgrade")
    body = canonical_sample()
    body["state"] = "incomplete"
    body["updated_at"] = "2024-11-18T10:24:05-08:00"

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("order-list"),
            data=body,
            content_type="application/json",
            headers={
                "Authorization": f"Token {Token.objects.create(user=robot).key}",
                "Idempotency-Key": "k-1",
            },
        )

    order = Order.objects.get()
    assert reason_codes(order) == ["incomplete", CHANNEL_HELD]
    channel_orders_release(channel=canonical, user=ops)
    assert reason_codes(order) == ["incomplete"]
    assert order.status == OrderStatus.ON_HOLD


# --- Admin ---------------------------------------------------------------------------------


def admin_action(client, channel: Channel, action: str, reason: str = ""):
    return client.post(
        reverse("admin:catalog_channel_changelist"),
        {"action": action, "_selected_action": [channel.pk], "reason": reason, "index": 0},
    )


def test_admin_actions_hold_and_release(client, channel, catalog, ops, post_order):
    client.force_login(ops)

    held = admin_action(client, channel, "hold_orders", "Carrier outage")
    order = post_order("wh-1")
    released = admin_action(client, channel, "release_orders")

    assert held.status_code == 302
    assert released.status_code == 302
    assert AuditEntry.objects.get(action="channel.orders_held").reason == "Carrier outage"
    assert AuditEntry.objects.get(action="channel.orders_released").reason == (
        "Released from the admin by olga"
    )
    order.refresh_from_db()
    assert order.status == OrderStatus.READY


def test_admin_hold_without_reason_names_user(client, channel, ops):
    client.force_login(ops)

    admin_action(client, channel, "hold_orders")

    channel.refresh_from_db()
    assert channel.orders_held_reason == "Held from the admin by olga"


def test_admin_hold_twice_shows_warning(client, channel, ops):
    client.force_login(ops)
    admin_action(client, channel, "hold_orders", "First")

    response = admin_action(client, channel, "hold_orders", "Second")

    messages = [str(m) for m in response.wsgi_request._messages]
    assert "The orders of channel shop are already held: First" in messages


def test_admin_shows_hold_fields_read_only(client, channel, ops):
    channel_orders_hold(channel=channel, user=ops, reason="Carrier outage")
    client.force_login(ops)

    response = client.get(reverse("admin:catalog_channel_change", args=[channel.pk]))

    html = response.content.decode()
    assert "Carrier outage" in html
    assert 'name="orders_held_reason"' not in html
    assert 'name="orders_held"' not in html


def test_admin_actions_need_change_permission(client, channel):
    manager = make_user("carol", "cs_manager")
    manager.is_staff = True
    manager.save(update_fields=["is_staff"])
    client.force_login(manager)

    admin_action(client, channel, "hold_orders", "No")

    channel.refresh_from_db()
    assert channel.orders_held is False


# --- Concurrency ---------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_release_waits_for_order_being_ingested(channel, catalog, settings):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL for real concurrent transactions")
    channel_orders_hold(channel=channel, user=None, reason="Alert #7")
    delivery = Delivery.objects.create(
        channel=channel,
        delivery_id="wh-race",
        topic="orders/create",
        body=as_body(order_payload()),
        headers={},
        signature_valid=True,
    )
    # Processing sleeps inside its transaction, after it read the channel's hold.
    settings.OMSGUARD_TEST_PROCESSING_DELAY_SECONDS = 1.0
    started = threading.Event()

    def ingest() -> None:
        started.set()
        try:
            delivery_process(delivery_id=delivery.pk, worker="test")
        finally:
            connection.close()

    def release() -> None:
        started.wait()
        time.sleep(0.3)
        try:
            channel_orders_release(channel=channel, user=None, note="Race")
        finally:
            connection.close()

    threads = [threading.Thread(target=ingest), threading.Thread(target=release)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # The release waited for the delivery to commit, so it found the order and let it go.
    order = Order.objects.get()
    assert order.status == OrderStatus.READY
    assert order.hold_reasons == []
    assert order.events.filter(kind="order.channel_hold_released").count() == 1
