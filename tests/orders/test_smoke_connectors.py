"""manage.py smoke_connectors: round-trip, duplicate and stock checks per channel, rolled back."""

import itertools
import json
from io import StringIO

import pytest
from celery.signals import before_task_publish, task_prerun
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind, Sku
from guardrails.models import AuditEntry
from inventory import services as inventory_services
from inventory.models import Location, StockEvent, StockLevel
from orders import services as order_services
from orders.models import Delivery, IdempotencyKey, Order, OrderEvent, OrderLine
from orders.smoke import (
    CHECK_DUPLICATE,
    CHECK_ROUND_TRIP,
    CHECK_STOCK,
    connector_smoke_run,
)
from reviews.models import ReviewItem
from tests.conftest import SECRET

SQUARE_URL = "https://oms.example.com/webhooks/square/sq/"

# One channel per kind the adapters support, with a mapping of a kind its adapter reads.
# Shopify is the `channel` fixture ("shop"), mapped by SKU code through `catalog`.
OTHER_CHANNELS = {
    "woo": (ChannelKind.WOOCOMMERCE, ExternalIdKind.SKU, "WOO-MUG-NAVY"),
    "sq": (ChannelKind.SQUARE, ExternalIdKind.POS_CATALOG_OBJECT, "W62UWFY35CWMYGVWK6TWJDNI"),
    "amz": (ChannelKind.AMAZON, ExternalIdKind.AMAZON_ASIN, "B08N5WRWNW"),
    "amz-seller": (ChannelKind.AMAZON, ExternalIdKind.AMAZON_SELLER_SKU, "2R-9QTX-WL4B"),
    "bay": (ChannelKind.EBAY, ExternalIdKind.EBAY_LEGACY_ITEM, "186543210987"),
    "bay-sku": (ChannelKind.EBAY, ExternalIdKind.SKU, "MUG-ENAMEL-NVY-OS"),
    "b2b": (ChannelKind.CANONICAL, None, None),
    "b2b-mapped": (ChannelKind.CANONICAL, ExternalIdKind.SKU, "PARTNER-MUG-1"),
    "shop-variant": (ChannelKind.SHOPIFY, ExternalIdKind.SHOPIFY_VARIANT, "44012345678901"),
}
SIGNED_KINDS = (ChannelKind.SHOPIFY, ChannelKind.WOOCOMMERCE, ChannelKind.SQUARE)


def other_channel(code: str, sku: Sku) -> Channel:
    kind, id_kind, external_id = OTHER_CHANNELS[code]
    channel = Channel.objects.create(
        kind=kind,
        code=code,
        webhook_secret=SECRET if kind in SIGNED_KINDS else "",
        notification_url=SQUARE_URL if kind == ChannelKind.SQUARE else "",
    )
    if id_kind is not None:
        ChannelSkuMapping.objects.create(
            channel=channel, id_kind=id_kind, external_id=external_id, sku=sku
        )
    return channel


def smoke(*args: str) -> tuple[str, CommandError | None]:
    """Run the command; return its output and the CommandError it raised, if any."""
    out = StringIO()
    try:
        call_command("smoke_connectors", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def by_check(results) -> dict:
    return {result.check: result for result in results}


def row(output: str, channel: str, check: str) -> str:
    [line] = [
        line for line in output.splitlines() if line.startswith(channel + " ") and check in line
    ]
    return line


@pytest.mark.django_db
def test_shopify_channel_passes_all_checks(channel, catalog):
    output, error = smoke("--channel", "shop")

    assert error is None
    for check in (CHECK_ROUND_TRIP, CHECK_DUPLICATE, CHECK_STOCK):
        assert " PASS " in row(output, "shop", check)
    assert "2 x TEE-CLASSIC-BLK-M, total USD 39.98" in row(output, "shop", CHECK_ROUND_TRIP)
    assert "recognised as a duplicate; 1 delivery, 1 order" in row(output, "shop", CHECK_DUPLICATE)
    assert "on hand 0 -> 3, applied once" in row(output, "shop", CHECK_STOCK)
    assert "3 passed, 0 failed: 3 checks on 1 channel." in output


@pytest.mark.django_db
@pytest.mark.parametrize("code", sorted(OTHER_CHANNELS))
def test_every_channel_kind_passes(code, catalog):
    channel = other_channel(code, catalog[2])

    results = by_check(connector_smoke_run(channel=channel))

    for check in (CHECK_ROUND_TRIP, CHECK_DUPLICATE, CHECK_STOCK):
        assert results[check].passed, results[check].detail
    assert results[CHECK_ROUND_TRIP].detail == "1 line, 2 x MUG-ENAMEL-NVY-OS, total USD 28.00"


@pytest.mark.django_db
def test_all_active_channels_are_tested(channel, catalog):
    other_channel("woo", catalog[2])
    Channel.objects.create(kind=ChannelKind.SHOPIFY, code="closed", is_active=False)

    output, error = smoke()

    assert error is None
    assert "6 passed, 0 failed: 6 checks on 2 channels." in output
    assert "closed" not in output


@pytest.mark.django_db(transaction=True)
def test_run_leaves_no_trace(channel, catalog):
    for code in OTHER_CHANNELS:
        other_channel(code, catalog[2])
    models = (
        Order,
        OrderLine,
        OrderEvent,
        Delivery,
        IdempotencyKey,
        StockEvent,
        StockLevel,
        Location,
        AuditEntry,
        ReviewItem,
        User,
        Token,
    )
    before = {model.__name__: model.objects.count() for model in models}
    tasks: list[str] = []

    def on_publish(sender=None, **kwargs):
        tasks.append(str(sender))

    def on_prerun(sender=None, **kwargs):
        tasks.append(sender.name)

    before_task_publish.connect(on_publish, weak=False)
    task_prerun.connect(on_prerun, weak=False)
    try:
        output, error = smoke()
    finally:
        before_task_publish.disconnect(on_publish)
        task_prerun.disconnect(on_prerun)

    assert error is None, output
    assert "30 passed, 0 failed: 30 checks on 10 channels." in output
    assert {model.__name__: model.objects.count() for model in models} == before
    assert tasks == []
    assert set(Channel.objects.values_list("last_signature_failure", flat=True)) == {""}


@pytest.mark.django_db
def test_on_commit_callbacks_are_dropped(channel, catalog, django_capture_on_commit_callbacks):
    # Recording a delivery queues its processing on commit; the rollback must drop that.
    with django_capture_on_commit_callbacks() as callbacks:
        output, error = smoke("--channel", "shop")

    assert error is None, output
    assert callbacks == []


def never_match_delivery_ids(monkeypatch, module: str) -> None:
    """Break delivery dedupe: every delivery gets an id no earlier delivery has."""
    record = order_services.delivery_record
    numbers = itertools.count(1)

    def delivery_record_without_dedupe(**kwargs):
        kwargs["delivery_id"] = f"{kwargs['delivery_id']}~{next(numbers)}"
        return record(**kwargs)

    monkeypatch.setattr(f"{module}.delivery_record", delivery_record_without_dedupe)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("code", "module"),
    [
        ("shop", "orders.webhooks"),
        ("woo", "orders.channel_webhooks"),
        ("amz", "orders.channel_ingest"),
        ("bay", "orders.channel_ingest"),
    ],
)
def test_broken_delivery_dedupe_fails_duplicate_check(code, module, channel, catalog, monkeypatch):
    if code != "shop":
        other_channel(code, catalog[2])
    never_match_delivery_ids(monkeypatch, module)

    output, error = smoke("--channel", code)

    assert error is not None
    assert error.returncode == 1
    assert "1 of 3 connector smoke checks failed" in str(error)
    assert " PASS " in row(output, code, CHECK_ROUND_TRIP)
    duplicate = row(output, code, CHECK_DUPLICATE)
    assert " FAIL " in duplicate
    assert "the repeat was accepted as a new delivery" in duplicate
    assert "2 deliveries recorded for one" in duplicate
    assert " PASS " in row(output, code, CHECK_STOCK)


@pytest.mark.django_db
def test_replayed_stock_event_applied_twice_fails(channel, catalog, monkeypatch):
    decide = inventory_services._event_decide

    def decide_without_version_check(*, level, data, check_version):
        return decide(level=level, data=data, check_version=False)

    monkeypatch.setattr(inventory_services, "_event_decide", decide_without_version_check)

    output, error = smoke("--channel", "shop")

    assert error is not None
    assert error.returncode == 1
    stock = row(output, "shop", CHECK_STOCK)
    assert " FAIL " in stock
    assert "same version, new id: HTTP 201 applied, expected 201 stale" in stock
    assert "stock moved from 0 to 6, expected 3" in stock
    assert " PASS " in row(output, "shop", CHECK_DUPLICATE)


@pytest.mark.django_db
def test_stock_replay_not_recognised_fails(channel, catalog, monkeypatch):
    monkeypatch.setattr(inventory_services, "_event_find", lambda **kwargs: None)

    results = by_check(connector_smoke_run(channel=channel))

    assert not results[CHECK_STOCK].passed
    assert results[CHECK_STOCK].detail.startswith("crashed: IntegrityError")
    assert results[CHECK_ROUND_TRIP].passed


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["shop", "woo", "sq"])
def test_missing_webhook_secret_fails(code, channel, catalog):
    target = channel if code == "shop" else other_channel(code, catalog[2])
    Channel.objects.filter(pk=target.pk).update(webhook_secret="")

    output, error = smoke("--channel", code)

    assert error is not None
    assert error.returncode == 1
    round_trip = row(output, code, CHECK_ROUND_TRIP)
    assert " FAIL " in round_trip
    assert "the channel has no webhook secret; set it with add_channel --secret" in round_trip
    assert "not run: the round-trip recorded no delivery to repeat" in row(
        output, code, CHECK_DUPLICATE
    )
    # The stock path needs no secret.
    assert " PASS " in row(output, code, CHECK_STOCK)


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["shop", "woo", "sq"])
def test_rejected_signature_fails(code, channel, catalog, monkeypatch):
    target = channel if code == "shop" else other_channel(code, catalog[2])
    # The webhook now expects another signature than the documented one, as after a
    # regression in the verifying code: every correctly signed delivery is rejected.
    monkeypatch.setattr(
        f"orders.adapters.{target.kind}.signature_for", lambda *args: "bm90IHRoZSBzaWduYXR1cmU="
    )

    output, error = smoke("--channel", code)

    assert error is not None
    assert error.returncode == 1
    assert "HTTP 401 invalid_signature" in row(output, code, CHECK_ROUND_TRIP)
    assert " FAIL " in row(output, code, CHECK_DUPLICATE)
    # WooCommerce and Square note the failure on the channel; the rollback removes the note.
    target.refresh_from_db()
    assert target.last_signature_failure == ""


@pytest.mark.django_db
def test_task_sent_outside_on_commit_fails(channel, catalog, monkeypatch):
    from orders.tasks import process_delivery

    record = order_services.delivery_record

    def delivery_record_queueing_at_once(**kwargs):
        delivery, created = record(**kwargs)
        # A regression: the task is sent before the delivery commits, not on commit.
        process_delivery.delay(delivery.pk)
        return delivery, created

    monkeypatch.setattr("orders.webhooks.delivery_record", delivery_record_queueing_at_once)

    results = by_check(connector_smoke_run(channel=channel))

    assert not results[CHECK_ROUND_TRIP].passed
    assert results[CHECK_ROUND_TRIP].detail.startswith(
        "sent Celery task orders.tasks.process_delivery outside on_commit; "
    )
    assert not results[CHECK_DUPLICATE].passed
    assert results[CHECK_STOCK].passed


@pytest.mark.django_db
def test_square_without_notification_url_fails(catalog):
    square = other_channel("sq", catalog[0])
    Channel.objects.filter(pk=square.pk).update(notification_url="")
    square.refresh_from_db()

    results = by_check(connector_smoke_run(channel=square))

    assert not results[CHECK_ROUND_TRIP].passed
    assert results[CHECK_ROUND_TRIP].detail == (
        "the Square channel has no notification URL, which Square signs"
    )


@pytest.mark.django_db
def test_channel_without_mapping_fails_with_reason(catalog):
    bare = Channel.objects.create(kind=ChannelKind.WOOCOMMERCE, code="bare", webhook_secret=SECRET)

    results = by_check(connector_smoke_run(channel=bare))

    assert [result.passed for result in results.values()] == [False, False, False]
    assert (
        results[CHECK_ROUND_TRIP].detail == "the channel maps no active SKU by sku; add a mapping"
    )
    assert results[CHECK_STOCK].detail.startswith("not run: the channel maps no active SKU")


@pytest.mark.django_db
def test_wrongly_mapped_line_fails_round_trip(channel, catalog, monkeypatch):
    monkeypatch.setattr(
        "orders.pipeline.lines_find_skus",
        lambda **kwargs: [None] * len(kwargs["identifier_lists"]),
    )

    results = by_check(connector_smoke_run(channel=channel))

    assert not results[CHECK_ROUND_TRIP].passed
    assert results[CHECK_ROUND_TRIP].detail == (
        "the line was mapped to no SKU, expected TEE-CLASSIC-BLK-M"
    )


@pytest.mark.django_db
def test_unknown_channel_exits_2(channel):
    output, error = smoke("--channel", "nope")

    assert error is not None
    assert error.returncode == 2
    assert str(error) == "Channel 'nope' not found. List channels in the admin."
    assert output == ""


@pytest.mark.django_db
def test_inactive_channel_exits_2(channel):
    Channel.objects.filter(pk=channel.pk).update(is_active=False)

    output, error = smoke("--channel", "shop")

    assert error is not None
    assert error.returncode == 2
    assert "is not active" in str(error)


@pytest.mark.django_db
def test_no_active_channels_passes_with_message():
    output, error = smoke()

    assert error is None
    assert output == "No active channels: nothing to test.\n"


@pytest.mark.django_db
def test_json_output_has_rows_and_no_secrets(channel, catalog):
    output, error = smoke("--channel", "shop", "--json")

    assert error is None
    report = json.loads(output)
    assert report["passed"] == 3
    assert report["failed"] == 0
    assert [(r["channel"], r["check"], r["result"]) for r in report["results"]] == [
        ("shop", CHECK_ROUND_TRIP, "PASS"),
        ("shop", CHECK_DUPLICATE, "PASS"),
        ("shop", CHECK_STOCK, "PASS"),
    ]
    assert all(isinstance(r["duration_ms"], int) for r in report["results"])
    assert SECRET not in output
