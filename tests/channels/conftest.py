import pytest

from catalog.models import Channel, ChannelKind
from orders.demo import demo_catalog_load, demo_mappings_create

WOO_SECRET = "woo-test-secret"  # noqa: S105 - test value
SQUARE_KEY = "square-test-key"
SQUARE_URL = "http://testserver/webhooks/square/sq/"


@pytest.fixture
def demo_catalog(db, carriers) -> int:
    return demo_catalog_load()


@pytest.fixture
def woo_channel(db) -> Channel:
    return Channel.objects.create(
        kind=ChannelKind.WOOCOMMERCE, code="woo", webhook_secret=WOO_SECRET
    )


@pytest.fixture
def square_channel(db) -> Channel:
    return Channel.objects.create(
        kind=ChannelKind.SQUARE, code="sq", webhook_secret=SQUARE_KEY, notification_url=SQUARE_URL
    )


@pytest.fixture
def woo_mapped(woo_channel, demo_catalog) -> Channel:
    """The WooCommerce channel with every demo SKU code mapped as its own SKU."""
    demo_mappings_create(channel=woo_channel)
    return woo_channel
