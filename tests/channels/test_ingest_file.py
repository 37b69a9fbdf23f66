"""The ingest_file command on the Amazon and eBay samples and on bad files."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Channel, ChannelKind
from orders.models import Delivery, DeliveryOutcome, Order

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def ingest(*args) -> str:
    out = StringIO()
    call_command("ingest_file", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def amazon_channel(db):
    return Channel.objects.create(kind=ChannelKind.AMAZON, code="amz")


@pytest.fixture
def ebay_channel(db):
    return Channel.objects.create(kind=ChannelKind.EBAY, code="eb")


def test_amazon_samples_recorded_and_processed(
    amazon_channel, demo_catalog, django_capture_on_commit_callbacks
):
    files = sorted(str(path) for path in (SAMPLES / "amazon").glob("0*.json"))
    with django_capture_on_commit_callbacks(execute=True):
        output = ingest("--channel", "amz", *files)
    assert "01-prime.json: 1 orders, 1 new deliveries, 0 already recorded." in output
    assert Delivery.objects.count() == 5
    assert set(Delivery.objects.values_list("outcome", flat=True)) <= {
        DeliveryOutcome.PROCESSED,
        "stale_update",
    }
    assert Delivery.objects.filter(delivery_id="114-2093847-5561029@2024-11-16T18:03:57Z").exists()
    assert Order.objects.filter(channel=amazon_channel).count() == 4


def test_same_file_twice_records_nothing_new(amazon_channel, demo_catalog):
    path = str(SAMPLES / "amazon" / "01-prime.json")
    ingest("--channel", "amz", path)
    output = ingest("--channel", "amz", path)
    assert "1 orders, 0 new deliveries, 1 already recorded." in output
    assert Delivery.objects.count() == 1


def test_list_file_one_delivery_per_order(amazon_channel, demo_catalog, tmp_path):
    entries = [
        json.loads((SAMPLES / "amazon" / name).read_text())
        for name in ("01-prime.json", "04-unknown-seller-sku.json")
    ]
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(entries))
    ingest("--channel", "amz", str(path))
    assert Delivery.objects.count() == 2


def test_ebay_samples_recorded(ebay_channel, demo_catalog, django_capture_on_commit_callbacks):
    files = sorted(str(path) for path in (SAMPLES / "ebay").glob("0*.json"))
    with django_capture_on_commit_callbacks(execute=True):
        ingest("--channel", "eb", *files)
    assert list(Delivery.objects.order_by("pk").values_list("delivery_id", flat=True)) == [
        "12-11904-57318@2024-11-17T15:09:02.000Z",
        "27-11911-60452@2024-11-18T09:52:15.000Z",
        "04-11923-84167@2024-11-18T22:17:41.000Z",
    ]
    assert Order.objects.filter(channel=ebay_channel).count() == 3


def test_other_channel_kind_rejected(db):
    Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop2")
    with pytest.raises(CommandError, match="shopify channel; ingest_file reads only amazon"):
        ingest("--channel", "shop2", str(SAMPLES / "amazon" / "01-prime.json"))


def test_unknown_channel_rejected(db):
    with pytest.raises(CommandError, match="Channel 'nope' not found"):
        ingest("--channel", "nope", str(SAMPLES / "amazon" / "01-prime.json"))


def test_missing_file_rejected(amazon_channel, tmp_path):
    with pytest.raises(CommandError, match="Cannot read .*missing.json"):
        ingest("--channel", "amz", str(tmp_path / "missing.json"))


def test_bad_json_names_position(amazon_channel, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"order": {\n  "AmazonOrderId": }')
    with pytest.raises(CommandError, match=r"bad.json: invalid JSON at line 2 column 20"):
        ingest("--channel", "amz", str(path))
    assert Delivery.objects.count() == 0


def test_entry_without_order_id_rejected(amazon_channel, tmp_path):
    path = tmp_path / "noid.json"
    path.write_text(
        json.dumps([{"order": {"LastUpdateDate": "2024-11-16T02:45:12Z"}, "items": []}])
    )
    with pytest.raises(CommandError, match=r"entry \[0\].order.AmazonOrderId: missing"):
        ingest("--channel", "amz", str(path))
    assert Delivery.objects.count() == 0
