"""Direct task publishing (omsguard/celery.py) and the webhook rate limiter's Lua counter.

A webhook acknowledgement publishes its processing task without most of Celery's send_task.
The message must stay the one Celery sends, byte for byte apart from the ids, or workers would
reject or misroute it after an upgrade of Celery or kombu. These tests read the raw messages
from Redis, so they need REDIS_URL; without it they skip (or fail under
OMSGUARD_REQUIRE_SERVICES=1).
"""

import base64
import json
from unittest import mock

import pytest
import redis
from celery import Celery
from celery.signals import before_task_publish
from django.conf import settings
from django.core.cache import caches

from omsguard import ratelimit
from omsguard.celery import app as celery_app
from omsguard.queues import INGEST, queue_name
from orders.tasks import process_delivery, sweep_deliveries
from tests.workers import closed_port, queue_for_test, services_unavailable

# Message fields that differ between any two publishes: the task id and kombu's tag.
PER_MESSAGE_FIELDS = (
    ("headers", "id"),
    ("headers", "root_id"),
    ("headers", "argsrepr"),
    ("properties", "correlation_id"),
    ("properties", "delivery_tag"),
)


@pytest.fixture
def broker_queue():
    """Route this process's tasks to a queue namespace of its own; yield a Redis client."""
    if not settings.REDIS_URL:
        services_unavailable("REDIS_URL is not set, so there is no broker to read messages from.")
    with queue_for_test() as namespace, redis.Redis.from_url(celery_app.conf.broker_url) as client:
        yield client, queue_name(namespace, INGEST)


@pytest.fixture
def send_task_names(monkeypatch) -> list[str]:
    """Names of the tasks published through Celery's own send_task during the test."""
    names: list[str] = []
    send_task = Celery.send_task

    def spy(self, name, *args, **kwargs):
        names.append(name)
        return send_task(self, name, *args, **kwargs)

    monkeypatch.setattr(Celery, "send_task", spy)
    return names


def _messages(client: redis.Redis, queue: str) -> list[dict]:
    """The raw kombu messages waiting in `queue`, oldest first (kombu LPUSHes, workers BRPOP)."""
    return [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]


def _without_ids(message: dict) -> dict:
    message = json.loads(json.dumps(message))
    for section, name in PER_MESSAGE_FIELDS:
        message[section][name] = None
    message["body"] = None
    return message


def test_direct_publish_matches_celery(broker_queue, send_task_names):
    client, queue = broker_queue

    process_delivery.delay(101)
    process_delivery.delay(102)
    process_delivery.delay(103)

    # The first publish to a queue goes through Celery, which declares the queue.
    assert send_task_names == ["orders.tasks.process_delivery"]
    celery_message, *direct_messages = _messages(client, queue)
    assert len(direct_messages) == 2
    for message in direct_messages:
        assert _without_ids(message) == _without_ids(celery_message)
    bodies = [json.loads(base64.b64decode(m["body"])) for m in direct_messages]
    assert [body[0] for body in bodies] == [[102], [103]]
    assert bodies[0][1:] == json.loads(base64.b64decode(celery_message["body"]))[1:]
    assert [m["headers"]["argsrepr"] for m in direct_messages] == ["(102,)", "(103,)"]
    ids = {m["headers"]["id"] for m in direct_messages}
    assert len(ids) == 2
    assert all(m["headers"]["root_id"] == m["headers"]["id"] for m in direct_messages)


def test_direct_publish_returns_task_result(broker_queue):
    process_delivery.delay(1)

    result = process_delivery.delay(2)

    client, queue = broker_queue
    assert result.id == _messages(client, queue)[-1]["headers"]["id"]


@pytest.mark.parametrize(
    "publish",
    [
        pytest.param(lambda: process_delivery.delay("7"), id="non-integer argument"),
        pytest.param(lambda: process_delivery.apply_async((7,), countdown=60), id="option"),
        pytest.param(lambda: process_delivery.delay(delivery_id=7), id="keyword argument"),
    ],
)
def test_other_calls_go_through_celery(broker_queue, send_task_names, publish):
    process_delivery.delay(1)

    publish()

    assert send_task_names == ["orders.tasks.process_delivery"] * 2


def test_publish_signal_receivers_see_every_publish(broker_queue):
    process_delivery.delay(1)
    seen = []

    def on_publish(sender=None, **kwargs):
        seen.append(sender)

    before_task_publish.connect(on_publish, weak=False)
    try:
        process_delivery.delay(2)
    finally:
        before_task_publish.disconnect(on_publish)

    assert seen == ["orders.tasks.process_delivery"]


def test_eager_mode_runs_task_in_process(db):
    # tests/conftest.py makes tasks eager, as the demo is without REDIS_URL.
    with mock.patch("omsguard.celery._publish_direct") as publish_direct:
        result = sweep_deliveries.delay()

    publish_direct.assert_not_called()
    assert result.get() == 0


def test_unreachable_broker_raises_operational_error(broker_queue, monkeypatch):
    from kombu.exceptions import OperationalError

    process_delivery.delay(1)
    slot = _slot_for_this_process()
    # The broker stops responding: the channel's connection pool points at a closed port.
    unreachable = redis.ConnectionPool(
        host="127.0.0.1", port=closed_port(), socket_connect_timeout=1, socket_timeout=1
    )
    monkeypatch.setattr(slot.producer.channel, "_pool", unreachable)

    with pytest.raises(OperationalError):
        process_delivery.delay(2)
    # The producer went back to the pool; the next publish takes one again.
    assert slot.producer is None


def _slot_for_this_process():
    from omsguard.celery import _producer_slot

    return _producer_slot(celery_app)


# The rate limiter's counter.


def test_counter_script_reloads_after_noscript(settings, monkeypatch):
    if not settings.REDIS_URL:
        services_unavailable("REDIS_URL is not set, so the cache is not Redis.")
    backend = caches["default"]
    # A SHA that the server does not know, as after a restart that dropped the script.
    monkeypatch.setattr(ratelimit._COUNTER_SCRIPT, "sha", "0" * 40)
    key = f"ack-test-{settings.OMSGUARD_RATE_LIMIT_NAMESPACE}"

    counts = [ratelimit._redis_counter_increment(backend, key, timeout=60) for _ in range(3)]

    assert counts == [1, 2, 3]
    client = backend._cache.get_client(backend.make_key(key))
    assert 0 < client.ttl(backend.make_key(key)) <= 60
