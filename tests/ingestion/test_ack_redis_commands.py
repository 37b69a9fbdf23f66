"""Redis commands on a held connection: the rate limiter's counter and the shorter kombu publish.

The rate limiter and omsguard.publish_redis.redis_publish skip redis-py's client and kombu's
Producer.publish, so these tests compare what they send with what those libraries send, and
check that a connection Redis has closed or cannot open is handled as before. They need
REDIS_URL; without it they skip (or fail under OMSGUARD_REQUIRE_SERVICES=1).
"""

import json
import uuid

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from kombu.exceptions import OperationalError
from redis.connection import Connection

from omsguard import publish_redis, ratelimit
from omsguard.celery import app as celery_app
from tests.workers import closed_port, services_unavailable


@pytest.fixture
def redis_required():
    if not settings.REDIS_URL:
        services_unavailable("REDIS_URL is not set, so there is no Redis to send commands to.")


@pytest.fixture
def counter_key(redis_required) -> str:
    return f"ack-held-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize(
    "parts",
    [
        (b"EVALSHA", b"0" * 40, b"1", b"omsguard:1:ratelimit:x", b"120"),
        (b"LPUSH", "queue.é".encode(), b""),
        (b"PING",),
    ],
)
def test_resp_encoding_matches_redis_py(parts):
    packed = b"".join(Connection().pack_command(*parts))

    assert publish_redis.resp_command_encode(parts) == packed


def test_counter_counts_on_one_held_connection(counter_key):
    backend = caches["default"]

    counts = [
        ratelimit._redis_counter_increment(backend, counter_key, timeout=60) for _ in range(3)
    ]
    held = ratelimit._cache_connection.connection
    ratelimit._redis_counter_increment(backend, counter_key, timeout=60)

    assert counts == [1, 2, 3]
    assert held is not None
    assert ratelimit._cache_connection.connection is held
    client = backend._cache.get_client(write=True)
    assert 0 < client.ttl(backend.make_key(counter_key)) <= 60


def test_counter_survives_closed_connection(counter_key):
    backend = caches["default"]
    ratelimit._redis_counter_increment(backend, counter_key, timeout=60)
    held = ratelimit._cache_connection.connection
    client = backend._cache.get_client(write=True)
    # What a Redis restart or its client timeout does to an idle connection.
    held.send_command("CLIENT", "ID")
    held_id = held.read_response()
    client.client_kill_filter(_id=held_id)

    count = ratelimit._redis_counter_increment(backend, counter_key, timeout=60)

    assert count == 2


def test_counter_fails_open_when_redis_unreachable(redis_required, settings):
    port = closed_port()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    rate = ratelimit.Rate(limit=1, window_seconds=60, period="minute")

    results = _hits(rate, 2)

    assert [result.allowed for result in results] == [True, True]
    assert [result.count for result in results] == [0, 0]
    assert ratelimit._cache_connection.connection is None


def _hits(rate: ratelimit.Rate, times: int) -> list[ratelimit.RateLimitResult]:
    return [
        ratelimit.rate_limit_hit(scope="webhook", subject="unreachable", rate=rate)
        for _ in range(times)
    ]


# The shorter publish.


@pytest.fixture
def producer(redis_required):
    """A producer of Celery's pool, and a queue name of its own, deleted afterwards."""
    queue = f"omsguard-test-{uuid.uuid4().hex[:12]}.ingest"
    with celery_app.producer_or_acquire() as acquired:
        yield acquired, queue
        with redis.Redis.from_url(celery_app.conf.broker_url) as client:
            client.delete(queue)


def _message(queue: str, **changes) -> dict:
    """A message as omsguard.celery's direct publish hands it to Producer.publish."""
    task_id = str(uuid.uuid4())
    message = {
        "body": ((7,), {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}),
        "exchange": "",
        "routing_key": queue,
        "serializer": "json",
        "compression": None,
        "retry": False,
        "retry_policy": {},
        "delivery_mode": "persistent",
        "declare": [],
        "headers": {"lang": "py", "task": "orders.tasks.process_delivery", "id": task_id},
        "correlation_id": task_id,
        "reply_to": "reply-queue",
    }
    return message | changes


def _raw_messages(queue: str) -> list[bytes]:
    with redis.Redis.from_url(celery_app.conf.broker_url) as client:
        return list(reversed(client.lrange(queue, 0, -1)))


def test_redis_publish_matches_kombu(producer):
    kombu_producer, queue = producer
    message = _message(queue)

    kombu_producer.publish(**json.loads(json.dumps(message)))
    assert publish_redis.redis_publish(kombu_producer, message) is True

    sent_by_kombu, sent_here = _raw_messages(queue)
    kombu_tag = json.loads(sent_by_kombu)["properties"]["delivery_tag"]
    tag = json.loads(sent_here)["properties"]["delivery_tag"]
    assert tag != kombu_tag
    assert sent_here == sent_by_kombu.replace(kombu_tag.encode(), tag.encode())


def test_redis_publish_keeps_held_connection(producer):
    kombu_producer, queue = producer

    publish_redis.redis_publish(kombu_producer, _message(queue))
    held = publish_redis._broker_connection.connection
    publish_redis.redis_publish(kombu_producer, _message(queue))

    assert held is not None
    assert publish_redis._broker_connection.connection is held
    assert len(_raw_messages(queue)) == 2


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exchange": "omsguard.ingest"}, id="named exchange"),
        pytest.param({"compression": "zlib"}, id="compression"),
        pytest.param({"retry": True}, id="retry"),
        pytest.param({"serializer": "pickle"}, id="serializer"),
        pytest.param({"priority": 5}, id="other option"),
    ],
)
def test_redis_publish_leaves_other_messages_to_kombu(producer, changes):
    kombu_producer, queue = producer

    published = publish_redis.redis_publish(kombu_producer, _message(queue, **changes))

    assert published is False
    assert _raw_messages(queue) == []


def test_redis_publish_unreachable_raises_operational_error(producer, monkeypatch):
    kombu_producer, queue = producer
    unreachable = redis.ConnectionPool(
        host="127.0.0.1", port=closed_port(), socket_connect_timeout=1, socket_timeout=1
    )
    monkeypatch.setattr(kombu_producer.channel, "_pool", unreachable)

    with pytest.raises(OperationalError):
        publish_redis.redis_publish(kombu_producer, _message(queue))

    assert publish_redis._broker_connection.connection is None
