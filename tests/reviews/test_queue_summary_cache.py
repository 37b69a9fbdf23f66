"""Cached per-kind counts of the queue pages: when they are cached, how the pages show it, and
which writes clear them."""

import re
import uuid

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from redis.exceptions import ConnectionError as RedisConnectionError

from orders.hygiene.escalation import RELEASE_PROPOSAL
from reviews import selectors, services
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.conftest import make_user
from tests.reviews.test_queue_pages import order_with_lines, substitution_item

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
SUMMARY_SQL = 'COUNT("reviews_reviewitem"."id") AS "open"'


@pytest.fixture(autouse=True)
def _summary_cache_empty(monkeypatch):
    # The cache outlives a test's database transaction, and with Redis it is shared by every
    # test process of the run, so each test counts under a key of its own.
    monkeypatch.setattr(selectors, "SUMMARY_CACHE_KEY", f"reviews:queue-summary:{uuid.uuid4().hex}")
    yield
    selectors.review_queue_summary_forget()


@pytest.fixture
def cached_counts(settings) -> None:
    """Cache the counts from the first open item on."""
    settings.OMSGUARD_QUEUE_SUMMARY_CACHE_SECONDS = 60
    settings.OMSGUARD_QUEUE_SUMMARY_CACHE_MIN_OPEN = 1


@pytest.fixture
def manager(db):
    return make_user("morgan", "cs_manager")


@pytest.fixture
def manager_client(manager) -> Client:
    client = Client()
    client.force_login(manager)
    return client


def open_substitutions(channel, count: int, *, start: int = 0) -> list[ReviewItem]:
    return [
        substitution_item(order_with_lines(channel, 1, number=f"#{number}"))
        for number in range(start, start + count)
    ]


def open_count(html: str) -> int:
    return int(re.search(r'<span id="open-count">(\d+)</span>', html).group(1))


def counts_label(html: str) -> str:
    return re.search(r'<p class="muted counts-as-of" id="counts-as-of"[^>]*>', html).group(0)


def summary_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return sum(SUMMARY_SQL in query["sql"] for query in captured.captured_queries)


def test_small_queue_counted_every_request(manager_client, channel, catalog):
    open_substitutions(channel, 2)
    first = manager_client.get("/queue/").content.decode()

    open_substitutions(channel, 1, start=2)
    second = manager_client.get("/queue/").content.decode()

    assert open_count(first) == 2
    assert open_count(second) == 3
    assert " hidden" in counts_label(second)
    assert cache.get(selectors.SUMMARY_CACHE_KEY) is None


def test_large_queue_counts_cached_and_labelled(manager_client, channel, catalog, cached_counts):
    open_substitutions(channel, 2)
    assert summary_queries(manager_client, "/queue/") == 1

    # An item opened outside reviews.services, as ingestion does, waits for the cache to expire.
    open_substitutions(channel, 1, start=2)
    assert summary_queries(manager_client, "/queue/all/") == 0
    html = manager_client.get("/queue/").content.decode()

    assert open_count(html) == 2
    assert " hidden" not in counts_label(html)
    assert "Counts as of <time datetime=" in html
    assert "recounted every 60 s and after each decision made here" in html


@pytest.mark.parametrize("url", ["/queue/all/", "/queue/substitution/"])
def test_list_pages_show_counts_label(manager_client, channel, catalog, cached_counts, url):
    open_substitutions(channel, 1)

    html = manager_client.get(url).content.decode()

    assert " hidden" not in counts_label(html)


def test_item_page_reads_cached_counts(manager_client, channel, catalog, cached_counts):
    item = open_substitutions(channel, 1)[0]
    manager_client.get("/queue/")

    assert summary_queries(manager_client, f"/queue/items/{item.pk}/") == 0


def test_cache_off_with_zero_seconds(manager_client, channel, catalog, cached_counts, settings):
    settings.OMSGUARD_QUEUE_SUMMARY_CACHE_SECONDS = 0
    open_substitutions(channel, 2)

    assert summary_queries(manager_client, "/queue/") == 1
    assert summary_queries(manager_client, "/queue/") == 1
    assert " hidden" in counts_label(manager_client.get("/queue/").content.decode())


@pytest.mark.parametrize("decide", ["reject", "accept"])
def test_decision_clears_cached_counts(
    manager_client,
    agent,
    channel,
    catalog,
    cached_counts,
    django_capture_on_commit_callbacks,
    decide,
):
    # A high-value item is accepted without an AI decision: accepting releases its hold.
    item = substitution_item(
        order_with_lines(channel, 1), kind=ReviewKind.HIGH_VALUE, proposal=RELEASE_PROPOSAL
    )
    open_substitutions(channel, 1, start=1)
    manager_client.get("/queue/")
    assert cache.get(selectors.SUMMARY_CACHE_KEY) is not None

    with django_capture_on_commit_callbacks(execute=True):
        getattr(services, f"review_item_{decide}")(item_id=item.pk, user=agent)

    assert cache.get(selectors.SUMMARY_CACHE_KEY) is None
    assert open_count(manager_client.get("/queue/").content.decode()) == 1


def test_system_resolution_clears_cached_counts(
    manager_client, channel, catalog, cached_counts, django_capture_on_commit_callbacks
):
    item = open_substitutions(channel, 1)[0]
    manager_client.get("/queue/")

    with django_capture_on_commit_callbacks(execute=True):
        services.review_items_resolve_moot(
            order=item.order, kinds=[ReviewKind.SUBSTITUTION], note="moot", data={}
        )

    assert cache.get(selectors.SUMMARY_CACHE_KEY) is None


def test_opening_unmapped_item_clears_cached_counts(
    manager_client, channel, catalog, cached_counts, django_capture_on_commit_callbacks
):
    order = order_with_lines(channel, 1)
    open_substitutions(channel, 1, start=1)
    manager_client.get("/queue/")

    with django_capture_on_commit_callbacks(execute=True):
        services.review_item_open_unmapped_sku(order=order, line=order.lines.get(), candidates=[])

    assert cache.get(selectors.SUMMARY_CACHE_KEY) is None


def test_decided_fragment_counts_fresh(agent, channel, catalog, cached_counts):
    client = Client()
    client.force_login(agent)
    items = open_substitutions(channel, 3)
    client.get("/queue/")
    # A decision in another process, whose clear this process never saw.
    ReviewItem.objects.filter(pk=items[1].pk).update(status=ReviewStatus.REJECTED)

    response = client.post(reverse("reviews:reject", args=[items[0].pk]), headers=HTMX)

    html = response.content.decode()
    assert '<span id="open-count" hx-swap-oob="true">1</span>' in html
    assert 'id="counts-as-of" hx-swap-oob="true">' in html


def test_stale_high_count_never_gives_empty_page(channel, catalog):
    open_substitutions(channel, 30)
    items = selectors.review_queue_open()

    page = selectors.review_queue_page(items, number=3, per_page=25, count=60)

    assert page.number == 2
    assert len(page.object_list) == 5
    assert page.paginator.count == 30


def test_stale_low_count_still_fills_page(channel, catalog):
    open_substitutions(channel, 30)
    items = selectors.review_queue_open()

    page = selectors.review_queue_page(items, number=1, per_page=25, count=10)

    assert len(page.object_list) == 25


class _DownCache:
    """A cache whose every call fails as the Redis cache does when Redis is down."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise RedisConnectionError("Connection refused")

        return fail


def test_cache_down_counts_afresh(manager_client, channel, catalog, cached_counts, monkeypatch):
    open_substitutions(channel, 2)
    monkeypatch.setattr(selectors, "cache", _DownCache())

    response = manager_client.get("/queue/")
    selectors.review_queue_summary_forget()

    assert response.status_code == 200
    html = response.content.decode()
    assert open_count(html) == 2
    assert " hidden" in counts_label(html)
