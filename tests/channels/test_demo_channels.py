"""Demo loading of the WooCommerce, Square, Amazon and eBay samples."""

import pytest

from catalog.models import Channel, ChannelSkuMapping, ExternalIdKind
from orders.demo import demo_catalog_load
from orders.demo_channels import demo_channels_load
from orders.models import Delivery


@pytest.mark.django_db
def test_demo_square_url_follows_the_demo_port(carriers, settings):
    """`make demo PORT=8781` exports that address; events are signed for it, not for 8000."""
    settings.OMSGUARD_PUBLIC_URL = "http://127.0.0.1:8781"
    demo_catalog_load()

    demo_channels_load()

    square = Channel.objects.get(code="demo-square")
    assert square.notification_url == "http://127.0.0.1:8781/webhooks/square/demo-square/"


@pytest.mark.django_db
def test_demo_channels_load_records_samples(carriers, django_capture_on_commit_callbacks):
    demo_catalog_load()
    with django_capture_on_commit_callbacks(execute=True):
        results = demo_channels_load()

    assert [result.status_code for result in results["demo-woo"]] == [200] * 8
    assert [result.response["status"] for result in results["demo-woo"]][6] == "duplicate"
    assert [result.response["status"] for result in results["demo-square"]][2] == "duplicate"
    assert len(results["demo-amazon"]) == 5
    assert len(results["demo-ebay"]) == 3
    square = Channel.objects.get(code="demo-square")
    assert square.notification_url == "http://127.0.0.1:8000/webhooks/square/demo-square/"
    assert (
        ChannelSkuMapping.objects.filter(
            channel=square, id_kind=ExternalIdKind.POS_CATALOG_OBJECT
        ).count()
        == 7
    )
    assert Delivery.objects.filter(channel__code="demo-woo", topic="ping").count() == 2
    assert Delivery.objects.filter(outcome="received").count() == 0
