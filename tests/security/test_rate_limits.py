"""Rate limits: webhooks per channel, the API per user (token) and per client address.

With REDIS_URL set (as in CI) the counters live in Redis; without it, in per-process memory.
Each test counts under its own key namespace (tests/conftest.py), so no count leaks between
tests and the shared Redis database is never flushed.
"""

import logging
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings as django_settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from catalog.models import Channel, ChannelKind
from omsguard import ratelimit
from omsguard.ratelimit import ApiRateThrottle, Rate, rate_limit_hit, rate_parse
from orders.models import Delivery
from tests.conftest import SECRET, as_body, make_user, order_payload, signed_headers
from tests.workers import services_unavailable

ROOT = Path(__file__).resolve().parents[2]
OFFICE = "203.0.113.10"
ELSEWHERE = "198.51.100.7"
# Nothing listens on port 1 (tcpmux) on an ordinary host, so connecting is refused at once.
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def clock():
    """Time stopped 15 seconds into the current minute, so a per-minute window has 45 left."""
    start = timezone.now().replace(second=15, microsecond=0)
    with time_machine.travel(start, tick=False) as traveller:
        yield traveller


@pytest.fixture
def shop_b(db) -> Channel:
    return Channel.objects.create(kind=ChannelKind.SHOPIFY, code="shop-b", webhook_secret=SECRET)


def post_order(client, channel_code: str, number: int):
    body = as_body(order_payload(order_id=9_100_000 + number, name=f"#{number}"))
    return client.post(
        reverse("webhooks:shopify", kwargs={"channel_code": channel_code}),
        data=body,
        content_type="application/json",
        headers=signed_headers(body, webhook_id=f"wh-limit-{channel_code}-{number}"),
    )


def token_client(username: str) -> APIClient:
    client = APIClient()
    token = Token.objects.create(user=make_user(username, "integration"))
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# Parsing and start-up checks.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3000/minute", Rate(limit=3000, window_seconds=60, period="minute")),
        (" 5/second ", Rate(limit=5, window_seconds=1, period="second")),
        ("100/hour", Rate(limit=100, window_seconds=3600, period="hour")),
        ("1/day", Rate(limit=1, window_seconds=86400, period="day")),
        ("", None),
        ("   ", None),
    ],
)
def test_rate_parse_accepts(value, expected):
    assert rate_parse(value, setting="OMSGUARD_RATE_LIMIT_API") == expected


@pytest.mark.parametrize(
    "value",
    ["lots", "100", "0/minute", "-5/minute", "10/minutes", "10/m", "1.5/second", "10 / hour"],
)
def test_rate_parse_rejects(value):
    with pytest.raises(ImproperlyConfigured) as raised:
        rate_parse(value, setting="OMSGUARD_RATE_LIMIT_API")

    assert str(raised.value).startswith("OMSGUARD_RATE_LIMIT_API must be a limit of at least 1")
    assert repr(value) in str(raised.value)


def test_misconfigured_rate_stops_startup():
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTEST_VERSION", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    environment |= {"DEBUG": "1", "OMSGUARD_RATE_LIMIT_WEBHOOK": "fast"}

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "ImproperlyConfigured: OMSGUARD_RATE_LIMIT_WEBHOOK must be a limit" in result.stderr
    assert "got 'fast'" in result.stderr


def test_negative_max_age_is_misconfigured(settings):
    settings.OMSGUARD_WEBHOOK_MAX_AGE_SECONDS = -1

    with pytest.raises(ImproperlyConfigured, match="OMSGUARD_WEBHOOK_MAX_AGE_SECONDS must be"):
        ratelimit.rate_limit_settings_check()


# Webhooks, per channel.


def test_webhook_limit_is_per_channel(channel, shop_b, client, clock, settings, caplog):
    settings.OMSGUARD_RATE_LIMIT_WEBHOOK = "2/minute"

    first, second = post_order(client, "shop", 1), post_order(client, "shop", 2)
    with caplog.at_level(logging.WARNING, logger="omsguard.ratelimit"):
        third = post_order(client, "shop", 3)
        fourth = post_order(client, "shop", 4)
    other_channel = post_order(client, "shop-b", 1)

    assert [first.json()["status"], second.json()["status"]] == ["accepted", "accepted"]
    assert third.status_code == 429
    assert third["Retry-After"] == "45"
    assert third.json() == {
        "error": {
            "code": "throttled",
            "message": (
                "Too many webhook requests for channel 'shop': the limit is 2 per minute. "
                "Retry in 45 seconds."
            ),
        }
    }
    assert fourth.status_code == 429
    assert other_channel.status_code == 200
    assert Delivery.objects.filter(channel=channel).count() == 2
    assert Delivery.objects.filter(channel=shop_b).count() == 1
    # One warning per channel and window, not one per rejected request.
    exceeded = [r for r in caplog.records if r.getMessage() == "rate limit exceeded"]
    assert [(r.scope, r.subject, r.limit) for r in exceeded] == [("webhook", "shop", 2)]


def test_webhook_limit_resets_next_window(channel, client, clock, settings):
    settings.OMSGUARD_RATE_LIMIT_WEBHOOK = "1/minute"
    assert post_order(client, "shop", 1).status_code == 200
    assert post_order(client, "shop", 2).status_code == 429

    clock.shift(timedelta(seconds=44))
    still_limited = post_order(client, "shop", 3)
    clock.shift(timedelta(seconds=1))
    next_window = post_order(client, "shop", 4)

    assert still_limited.status_code == 429
    assert still_limited["Retry-After"] == "1"
    assert next_window.status_code == 200
    assert next_window.json()["status"] == "accepted"


@pytest.mark.parametrize("kind", ["shopify", "woocommerce", "square"])
def test_every_webhook_view_is_limited(kind, db, client, settings):
    settings.OMSGUARD_RATE_LIMIT_WEBHOOK = "1/minute"
    url = reverse(f"webhooks:{kind}", kwargs={"channel_code": "any-code"})

    # Requests count before the channel is looked up or the signature checked.
    first = client.post(url, data=b"{}", content_type="application/json")
    second = client.post(url, data=b"{}", content_type="application/json")

    assert first.status_code == 404
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "throttled"
    assert 1 <= int(second["Retry-After"]) <= 60


def test_webhook_limit_off_when_empty(channel, client, settings):
    settings.OMSGUARD_RATE_LIMIT_WEBHOOK = ""

    responses = [post_order(client, "shop", number) for number in range(3)]

    assert [response.status_code for response in responses] == [200, 200, 200]
    assert not any(
        cache.get(ratelimit._counter_key("webhook", "shop", window)) for window in _windows(60)
    )


def _windows(window_seconds: int) -> list[int]:
    """The current window number of this length and its neighbours."""
    current = int(timezone.now().timestamp() // window_seconds)
    return [current - 1, current, current + 1]


def test_overlong_channel_code_shares_one_counter(db, client, settings):
    settings.OMSGUARD_RATE_LIMIT_WEBHOOK = "1/minute"

    first = client.post(
        f"/webhooks/shopify/{'a' * 65}/", data=b"{}", content_type="application/json"
    )
    second = client.post(
        f"/webhooks/shopify/{'b' * 500}/", data=b"{}", content_type="application/json"
    )

    assert first.status_code == 404
    assert second.status_code == 429


# The REST API, per user (token) and per client address.


def test_api_limit_is_per_token(db, clock, settings):
    settings.OMSGUARD_RATE_LIMIT_API = "2/minute"
    robot, other_robot = token_client("robot"), token_client("robot-2")

    allowed = [robot.get("/api/v1/orders/") for _ in range(2)]
    limited = robot.get("/api/v1/orders/")
    other = other_robot.get("/api/v1/orders/")

    assert [response.status_code for response in allowed] == [200, 200]
    assert limited.status_code == 429
    assert limited["Retry-After"] == "45"
    assert limited.json() == {
        "error": {
            "code": "throttled",
            "message": "Request was throttled. Expected available in 45 seconds.",
            "fields": {},
        }
    }
    assert other.status_code == 200


def test_api_limit_resets_next_window(db, clock, settings):
    settings.OMSGUARD_RATE_LIMIT_API = "1/minute"
    robot = token_client("robot")
    assert robot.get("/api/v1/orders/").status_code == 200
    assert robot.get("/api/v1/orders/").status_code == 429

    clock.shift(timedelta(seconds=45))

    assert robot.get("/api/v1/orders/").status_code == 200


def test_api_limit_covers_marketplace_ingest(db, settings):
    settings.OMSGUARD_RATE_LIMIT_API = "1/minute"
    robot = token_client("robot")
    url = reverse("marketplace-orders", kwargs={"channel_code": "no-such-channel"})

    first = robot.post(url, data={}, format="json")
    second = robot.post(url, data={}, format="json")

    assert first.status_code == 404
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "throttled"


def test_anonymous_limit_is_per_address(db, clock, settings):
    settings.OMSGUARD_RATE_LIMIT_ANON = "1/minute"
    client = APIClient()
    docs = reverse("api-docs")

    first = client.get(docs, REMOTE_ADDR=OFFICE)
    # Without trusted proxies, a client's own X-Forwarded-For changes nothing. The schema
    # view renders the error as JSON; the docs page would render it as HTML.
    spoofed = client.get(
        reverse("schema"),
        REMOTE_ADDR=OFFICE,
        HTTP_X_FORWARDED_FOR=ELSEWHERE,
        HTTP_ACCEPT="application/vnd.oai.openapi+json",
    )
    other_address = client.get(docs, REMOTE_ADDR=ELSEWHERE)

    assert first.status_code == 200
    assert spoofed.status_code == 429
    assert spoofed["Retry-After"] == "45"
    assert spoofed.json()["error"]["code"] == "throttled"
    assert other_address.status_code == 200


def test_api_limits_off_when_empty(db, settings):
    settings.OMSGUARD_RATE_LIMIT_API = ""
    settings.OMSGUARD_RATE_LIMIT_ANON = ""
    robot = token_client("robot")

    user_responses = [robot.get("/api/v1/orders/") for _ in range(3)]
    anonymous = [APIClient().get(reverse("api-docs"), REMOTE_ADDR=OFFICE) for _ in range(3)]

    assert [response.status_code for response in user_responses] == [200, 200, 200]
    assert [response.status_code for response in anonymous] == [200, 200, 200]


def test_every_api_view_is_throttled():
    views = list(_api_view_classes(get_resolver().url_patterns))

    assert len(views) > 10
    unthrottled = [view.__name__ for view in views if ApiRateThrottle not in view.throttle_classes]
    assert unthrottled == []


def _api_view_classes(patterns, prefix: str = ""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _api_view_classes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern) and route.startswith("api/"):
            view_class = getattr(pattern.callback, "cls", None)
            if view_class is not None:
                yield view_class


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "", OFFICE),
        (0, ELSEWHERE, OFFICE),
        (1, ELSEWHERE, ELSEWHERE),
        (1, f"192.0.2.1, {ELSEWHERE}", ELSEWHERE),
        (2, f"192.0.2.1, {ELSEWHERE}, 10.0.0.2", ELSEWHERE),
        (3, ELSEWHERE, ELSEWHERE),
        (1, "not-an-address", OFFICE),
        (1, "2001:DB8::1", "2001:db8::1"),
    ],
)
def test_client_ip_trusts_only_configured_proxies(settings, proxies, forwarded, expected):
    settings.OMSGUARD_RATE_LIMIT_PROXY_COUNT = proxies
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().get("/", REMOTE_ADDR=OFFICE, **extra)

    assert ratelimit.client_ip(request) == expected


# The counter itself.


def test_counter_counts_exactly_under_concurrency(db):
    rate = Rate(limit=100, window_seconds=3600, period="hour")
    allowed = []
    lock = threading.Lock()

    def hit_many() -> None:
        mine = [rate_limit_hit(scope="test", subject="race", rate=rate).allowed for _ in range(30)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=hit_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(allowed) == 240
    assert allowed.count(True) == 100


def test_counter_lives_in_redis_and_expires():
    if not django_settings.REDIS_URL:
        services_unavailable("REDIS_URL is not set, so the cache is not Redis.")
    rate = Rate(limit=5, window_seconds=60, period="minute")

    rate_limit_hit(scope="test", subject="redis", rate=rate)
    result = rate_limit_hit(scope="test", subject="redis", rate=rate)

    window = int(timezone.now().timestamp() // 60)
    backend = caches["default"]
    key = backend.make_key(ratelimit._counter_key("test", "redis", window))
    client = backend._cache.get_client(key)
    assert isinstance(backend, RedisCache)
    assert result.count == 2
    assert int(client.get(key)) == 2
    assert 60 < client.ttl(key) <= 120


def test_unreachable_cache_lets_webhooks_through(channel, client, settings, caplog, monkeypatch):
    settings.OMSGUARD_RATE_LIMIT_WEBHOOK = "1/minute"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": UNREACHABLE_REDIS,
        }
    }
    monkeypatch.setattr(ratelimit, "_last_cache_error_logged_at", float("-inf"))

    with caplog.at_level(logging.WARNING, logger="omsguard.ratelimit"):
        responses = [post_order(client, "shop", number) for number in range(3)]

    assert [response.status_code for response in responses] == [200, 200, 200]
    assert Delivery.objects.count() == 3
    warnings = [r for r in caplog.records if r.getMessage().startswith("rate limits not applied")]
    assert len(warnings) == 1
