"""Fixed-window rate limits on Django's cache, for the REST API and the channel webhooks.

Each (scope, subject, window) has one integer counter in the cache. On Redis one Lua script
creates it (SET NX with its expiry) and counts (INCR) in a single round trip, on a connection
each thread keeps. Other caches use `cache.add` and `cache.incr`. Every web process shares one
count and no per-request list is kept. A fixed window lets a client send up to twice the limit
across a window boundary, at the end of one window and the start of the next. That is the price
of one counter per subject.

Without REDIS_URL the cache is per-process memory: each process then counts on its own, and
the memory cache may evict a counter early when it holds more than 300 keys, so development
limits are approximate. When the cache cannot be reached, requests are let through (fail
open) and a warning is logged: an outage of Redis must not stop webhooks from being recorded.
"""

import functools
import hashlib
import ipaddress
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from redis.exceptions import NoScriptError, RedisError
from rest_framework.throttling import BaseThrottle

from omsguard.publish_redis import HeldRedisConnection

logger = logging.getLogger(__name__)

PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
RATE_FORMAT = re.compile(r"(?P<limit>\d+)/(?P<period>second|minute|hour|day)")
WEBHOOK_SETTING = "OMSGUARD_RATE_LIMIT_WEBHOOK"
API_SETTING = "OMSGUARD_RATE_LIMIT_API"
ANON_SETTING = "OMSGUARD_RATE_LIMIT_ANON"
RATE_SETTINGS = (WEBHOOK_SETTING, API_SETTING, ANON_SETTING)
NON_NEGATIVE_SETTINGS = (
    "OMSGUARD_RATE_LIMIT_PROXY_COUNT",
    "OMSGUARD_WEBHOOK_MAX_AGE_SECONDS",
    "OMSGUARD_WEBHOOK_MAX_FUTURE_SECONDS",
)
# Channel codes are at most 64 characters. Longer codes in a URL belong to no channel, so they
# share one counter and a request cannot make an arbitrarily long cache key.
MAX_CHANNEL_CODE_LENGTH = 64
# Errors of an unreachable cache: redis-py's own, and socket errors of other backends.
CACHE_ERRORS = (RedisError, OSError)
CACHE_ERROR_LOG_INTERVAL_SECONDS = 60

_last_cache_error_logged_at = -math.inf


@dataclass(frozen=True)
class Rate:
    """At most `limit` requests per window of `window_seconds`."""

    limit: int
    window_seconds: int
    period: str

    def __str__(self) -> str:
        return f"{self.limit} per {self.period}"


@dataclass(frozen=True)
class RateLimitResult:
    """One counted request: whether it is within the rate, and seconds until the window ends."""

    allowed: bool
    count: int
    retry_after: int


def rate_parse(value: str, *, setting: str) -> Rate | None:
    """Parse "<limit>/<second|minute|hour|day>"; an empty value switches the limit off (None).

    Raises ImproperlyConfigured naming `setting` for any other value.
    """
    text = (value or "").strip()
    if not text:
        return None
    match = RATE_FORMAT.fullmatch(text)
    if match is None or int(match["limit"]) < 1:
        raise ImproperlyConfigured(
            f"{setting} must be a limit of at least 1 and a period, such as '3000/minute' "
            f"(periods: second, minute, hour, day), or empty to switch the limit off; "
            f"got {value!r}."
        )
    period = match["period"]
    return Rate(limit=int(match["limit"]), window_seconds=PERIOD_SECONDS[period], period=period)


def rate_limit_settings_check() -> None:
    """Parse every rate and check the webhook age settings; raise ImproperlyConfigured if bad."""
    for setting in RATE_SETTINGS:
        rate_parse(getattr(settings, setting, ""), setting=setting)
    for setting in NON_NEGATIVE_SETTINGS:
        value = getattr(settings, setting)
        if not isinstance(value, int) or value < 0:
            raise ImproperlyConfigured(
                f"{setting} must be a whole number, 0 or more; got {value!r}."
            )


def configured_rate(setting: str) -> Rate | None:
    """Parse the named setting's current value (tests change settings while the process runs)."""
    return _rate_parse_cached(setting, getattr(settings, setting, "") or "")


@functools.lru_cache(maxsize=64)
def _rate_parse_cached(setting: str, value: str) -> Rate | None:
    return rate_parse(value, setting=setting)


def rate_limit_hit(*, scope: str, subject: str, rate: Rate) -> RateLimitResult:
    """Count one request of `subject` in the current window of `rate` and judge it."""
    now = time.time()
    window = int(now // rate.window_seconds)
    retry_after = max(1, math.ceil((window + 1) * rate.window_seconds - now))

    # The counter outlives its window by one more window, so a request that read the clock just
    # before the window ended still finds it; Django's Redis incr raises on a missing key.
    count = _counter_increment(
        _counter_key(scope, subject, window), timeout=2 * rate.window_seconds
    )
    if count is None:
        return RateLimitResult(allowed=True, count=0, retry_after=retry_after)

    allowed = count <= rate.limit
    if count == rate.limit + 1:
        # Logged once per subject and window, not for every rejected request.
        logger.warning(
            "rate limit exceeded",
            extra={
                "scope": scope,
                "subject": subject if scope != "anon" else "anonymous",
                "limit": rate.limit,
                "window_seconds": rate.window_seconds,
                "retry_after": retry_after,
            },
        )
    return RateLimitResult(allowed=allowed, count=count, retry_after=retry_after)


def _counter_key(scope: str, subject: str, window: int) -> str:
    namespace = getattr(settings, "OMSGUARD_RATE_LIMIT_NAMESPACE", "") or "default"
    return f"ratelimit:{namespace}:{scope}:{subject}:{window}"


def _counter_increment(key: str, *, timeout: int) -> int | None:
    """Add one to the counter and return the new count, or None when the cache is unreachable."""
    try:
        backend = caches[DEFAULT_CACHE_ALIAS]
        if isinstance(backend, RedisCache):
            return _redis_counter_increment(backend, key, timeout=timeout)
        for _attempt in range(2):
            cache.add(key, 0, timeout=timeout)
            try:
                return cache.incr(key)
            except ValueError:
                # Evicted between add and incr (the memory cache culls when full): add again.
                continue
        return None
    except CACHE_ERRORS as error:
        _cache_error_log(error)
        return None


def _redis_counter_increment(backend: RedisCache, key: str, *, timeout: int) -> int:
    """Create the counter if missing and count, in one Redis round trip.

    Django's cache.add and cache.incr take three round trips (SET NX, EXISTS, INCRBY). One Lua
    script runs both commands atomically, so the counter cannot expire between them. The value
    is a plain integer, as Django's Redis cache stores ints, so cache.get still reads it.

    The script runs with EVALSHA on a connection this thread keeps, with the command encoded
    here: about 70 Python function calls, where redis-py's Script object took about 210
    (cProfile, redis-py 8.2), most of them in taking a connection from the pool and encoding
    the command. When Redis does not know the script (NOSCRIPT, after a restart), EVAL runs
    it and caches it on the server.
    """
    cache_key = backend.make_and_validate_key(key)
    pool = _write_pool(backend)
    args = (cache_key.encode(), str(timeout).encode())
    try:
        reply = _cache_connection.run(pool, (b"EVALSHA", _COUNTER_SCRIPT.sha.encode(), b"1", *args))
    except NoScriptError:
        reply = _cache_connection.run(pool, (b"EVAL", _COUNTER_SCRIPT.source, b"1", *args))
    return int(reply)


@dataclass
class LuaScript:
    """A Lua script's text and its SHA-1 digest, the name EVALSHA runs it by."""

    source: bytes
    sha: str = ""

    def __post_init__(self) -> None:
        self.sha = self.sha or hashlib.sha1(self.source).hexdigest()  # noqa: S324 - Redis's key


# SET NX with the expiry, then INCR: the body of _redis_counter_increment.
_COUNTER_SCRIPT = LuaScript(
    b"redis.call('SET', KEYS[1], 0, 'NX', 'EX', ARGV[1]) return redis.call('INCR', KEYS[1])"
)
_cache_connection = HeldRedisConnection()


class _WritePool(threading.local):
    """The redis-py pool the cache writes through, for the cache object it belongs to."""

    holder: object | None = None
    pool: Any = None


_write_pool_cached = _WritePool()


def _write_pool(backend: RedisCache) -> Any:
    """Return the redis-py connection pool that the cache writes through.

    NOTE: `backend._cache` is the internal redis-py client holder of Django's RedisCache
    (Django 5.2); Django has no public call for a script. Each thread has its own backend
    object (django.core.cache.caches is per thread), so the pool is remembered per thread.
    """
    holder = backend._cache
    if _write_pool_cached.holder is not holder:
        _write_pool_cached.pool = holder.get_client(write=True).connection_pool
        _write_pool_cached.holder = holder
    return _write_pool_cached.pool


def _cache_error_log(error: Exception) -> None:
    global _last_cache_error_logged_at

    now = time.monotonic()
    if now - _last_cache_error_logged_at < CACHE_ERROR_LOG_INTERVAL_SECONDS:
        return
    _last_cache_error_logged_at = now
    logger.warning(
        "rate limits not applied: cache unavailable",
        extra={"error": f"{type(error).__name__}: {error}"},
    )


def client_ip(request: HttpRequest) -> str:
    """Return the client's IP address: REMOTE_ADDR, or the one the outermost trusted proxy saw.

    With OMSGUARD_RATE_LIMIT_PROXY_COUNT = n proxies in front, each appending to
    X-Forwarded-For, the client is the n-th entry from the right. Entries further left were
    written by the client and are ignored, so a client cannot pick its own address.
    """
    remote = request.META.get("REMOTE_ADDR") or "unknown"
    proxies = getattr(settings, "OMSGUARD_RATE_LIMIT_PROXY_COUNT", 0)
    forwarded = [
        entry.strip()
        for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if entry.strip()
    ]
    if proxies <= 0 or not forwarded:
        return remote

    candidate = forwarded[-min(proxies, len(forwarded))]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


class ApiRateThrottle(BaseThrottle):
    """Limit each authenticated user to OMSGUARD_RATE_LIMIT_API, anyone else per IP address.

    An API token belongs to one user, so the user's limit is the token's. DRF checks throttles
    after authentication and permissions, so a request with a wrong token gets its 401 without
    being counted.
    """

    def __init__(self) -> None:
        self.retry_after: int | None = None

    def allow_request(self, request: HttpRequest, view: object) -> bool:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            scope, setting, subject = "api", API_SETTING, f"user-{user.pk}"
        else:
            scope, setting, subject = "anon", ANON_SETTING, client_ip(request)

        rate = configured_rate(setting)
        if rate is None:
            return True
        result = rate_limit_hit(scope=scope, subject=subject, rate=rate)
        self.retry_after = result.retry_after
        return result.allowed

    def wait(self) -> int | None:
        """Seconds until the current window ends; DRF sends them as Retry-After."""
        return self.retry_after


def webhook_rate_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a webhook view to return 429 once the URL's channel exceeds OMSGUARD_RATE_LIMIT_WEBHOOK.

    Every request to the channel's URL counts, signed or not, before its body is read: a flood
    costs one cache round trip per request. The price is that unsigned requests use up the
    channel's limit too, and the channel then retries its real deliveries later.
    """

    @functools.wraps(view)
    def limited_view(request: HttpRequest, channel_code: str, *args, **kwargs) -> HttpResponse:
        rate = configured_rate(WEBHOOK_SETTING)
        if rate is not None:
            subject = channel_code
            if len(channel_code) > MAX_CHANNEL_CODE_LENGTH:
                subject = "code-too-long"
            result = rate_limit_hit(scope="webhook", subject=subject, rate=rate)
            if not result.allowed:
                return webhook_throttled_response(channel_code, rate=rate, result=result)
        return view(request, channel_code, *args, **kwargs)

    return limited_view


def webhook_throttled_response(
    channel_code: str, *, rate: Rate, result: RateLimitResult
) -> JsonResponse:
    """Build a webhook's 429 in the webhooks' error shape, with Retry-After in seconds."""
    message = (
        f"Too many webhook requests for channel {channel_code[:MAX_CHANNEL_CODE_LENGTH]!r}: "
        f"the limit is {rate}. Retry in {result.retry_after} seconds."
    )
    response = JsonResponse({"error": {"code": "throttled", "message": message}}, status=429)
    response["Retry-After"] = str(result.retry_after)
    return response
