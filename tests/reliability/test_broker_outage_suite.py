"""Broker outage: Redis stops while webhooks keep arriving; every delivery is still processed once.

A private redis-server that keeps nothing on disk is the broker (and cache) of a real gunicorn
server, a real Celery worker and celery beat, all on the test database. Client threads post
signed webhooks at a steady rate throughout. The suite stops Redis for the outage, starts it
again on the same port, empty, and keeps sending a little longer.

Before the outage the worker is held back: a row lock on the channel, which processing takes
a share lock on, keeps it waiting on its first task. So the tasks published before the outage
are still in Redis when it stops, and are lost with it. Those deliveries, and the ones whose
publish failed during the outage, can only be processed because beat runs the sweep, which
queues every delivery still "received" again.

The suite proves that every webhook was acknowledged, quickly even while Redis was down, and
that every acknowledged delivery was stored and processed exactly once.
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from catalog.models import Channel
from omsguard.celery import app as celery_app
from omsguard.queues import INGEST, queue_name
from orders.models import Delivery, DeliveryOutcome, Order, OrderEvent
from tests import workers
from tests.integration.test_celery_worker import shopify_channel  # noqa: F401 (fixture)
from tests.reliability.deliveries import wait_until_none_received
from tests.reliability.figures import figure, sized
from tests.reliability.outage_clients import Clients, Response, webhook_request
from tests.reliability.servers import port_free, server_running
from tests.workers import REPO_ROOT, queue_for_test, require_services, worker_start, worker_stop

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SUITE = "broker outage"
OUTAGE_SECONDS = sized(full=30, ci=3)
# Redis stops once the clients have sent for BEFORE_SECONDS and at least QUEUED_AT_STOP tasks
# wait in the queue, so the outage always takes queued tasks with it.
BEFORE_SECONDS = sized(full=3, ci=1.5)
QUEUED_AT_STOP = int(sized(full=20, ci=5))
AFTER_SECONDS = sized(full=5, ci=1)
CLIENTS = 4
REQUESTS_PER_SECOND = 10
# Beat runs the sweep this often, and the sweep takes deliveries "received" for this long.
# Both are far below the production defaults (every minute, 120 s) to keep the suite short.
# Each sweep also queues again the deliveries that merely waited in the queue that long. So
# a shorter interval costs more copies, which find their delivery already processed.
SWEEP_EVERY_SECONDS = int(sized(full=10, ci=2))
SWEEP_AFTER_SECONDS = SWEEP_EVERY_SECONDS
# The migration's name for the sweep's row in Periodic tasks.
SWEEP_TASK_NAME = "Sweep deliveries never processed"
SWEEP_TASK = "orders.tasks.sweep_deliveries"
# The first free port of this range, so a second run on the machine (CI beside
# `make reliability`) starts its own broker.
REDIS_PORTS = range(6391, 6400)
PORTS = range(8650, 8670)
# Bounds in seconds for a loaded CI runner, not tuned values.
REDIS_START_TIMEOUT = 10
PROCESS_STOP_TIMEOUT = 10
PROCESSING_TIMEOUT = sized(full=300, ci=120)
BACKLOG_TIMEOUT = 60
WEBHOOK_PREFIX = "wh-broker-outage"
# The webhook rate limit counts in the Redis cache, so it is on, far above the suite's rate:
# while Redis is down it must let webhooks through rather than fail them.
WEBHOOK_RATE_LIMIT = "100000/minute"


@dataclass
class PrivateRedis:
    """A redis-server of the suite's own on 127.0.0.1:`port`, with nothing kept on disk."""

    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if _port_in_use(self.port):
            pytest.fail(
                f"Port {self.port} is in use; stop the redis-server left over from an earlier "
                "run before starting the broker outage suite.",
                pytrace=False,
            )
        command = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._wait_ready()

    def stop(self) -> None:
        """Stop the server with SIGTERM, as an operator or a service manager would."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=PROCESS_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def queue_length(self, namespace: str) -> int:
        """Tasks waiting in the namespace's ingest queue (kombu keeps a queue as a Redis list)."""
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2) as client:
            return client.llen(queue_name(namespace, INGEST))

    def log_tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "--- redis-server log ---\n" + "\n".join(text.splitlines()[-20:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"redis-server exited with code {self.process.returncode}.\n{self.log_tail()}",
                    pytrace=False,
                )
            with suppress(redis.RedisError), redis.Redis(port=self.port, socket_timeout=1) as c:
                if c.ping():
                    return
            time.sleep(0.05)
        pytest.fail(f"redis-server did not response within {REDIS_START_TIMEOUT} s.", pytrace=False)


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def private_redis(log_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(port=port_free(REDIS_PORTS), log_path=log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _broker_pools_reset() -> None:
    """Forget the app's pooled broker connections, so the next publish reads broker_url again.

    Celery 5.7 has no public call for this, so do what its after-fork handler does. The pools
    are not closed: kombu keeps producer pools in a global registry keyed by broker URL, and a
    closed one would be handed back to every later test ("Acquire on closed pool").
    """
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextmanager
def this_process_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (worker pings, queue cleanup) at `url` for the block."""
    previous = celery_app.conf.broker_url
    celery_app.conf.broker_url = url
    _broker_pools_reset()
    try:
        yield
    finally:
        celery_app.conf.broker_url = previous
        _broker_pools_reset()


def sweep_schedule(every_seconds: int) -> None:
    """Make the sweep the only enabled periodic task, run every `every_seconds`."""
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=every_seconds, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.exclude(name=SWEEP_TASK_NAME).update(enabled=False)
    PeriodicTask.objects.update_or_create(
        name=SWEEP_TASK_NAME,
        defaults={"task": SWEEP_TASK, "interval": interval, "enabled": True, "args": "[]"},
    )


@contextmanager
def beat_running(*, queue: str, broker_url: str, log_path: Path) -> Iterator[subprocess.Popen]:
    """Run celery beat with the database scheduler, publishing to `queue` on `broker_url`."""
    env = os.environ | {
        "DJANGO_SETTINGS_MODULE": "omsguard.settings",
        "DATABASE_URL": workers.test_database_url(),
        "REDIS_URL": broker_url,
        "OMSGUARD_CELERY_QUEUE": queue,
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "celery", "-A", "omsguard", "beat", "--loglevel=INFO"]
    command += ["--max-interval", "1"]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        _process_group_stop(process)


def _process_group_stop(process: subprocess.Popen) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=PROCESS_STOP_TIMEOUT)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def processing_held(channel: Channel) -> Iterator[Callable[[], None]]:
    """Hold a row lock on the channel that processing waits for; yield the function to release it.

    FOR NO KEY UPDATE conflicts with the share lock processing takes on the channel, not with
    the key-share lock a new delivery row's foreign key takes, so webhooks are still recorded.
    """
    holder = psycopg.connect(workers.test_database_url())
    table = Channel._meta.db_table
    holder.execute(f"SELECT id FROM {table} WHERE id = %s FOR NO KEY UPDATE", [channel.pk])  # noqa: S608
    try:
        yield holder.rollback
    finally:
        holder.close()


@dataclass
class Timeline:
    """monotonic() times of the outage, and what Redis and the database held when it began."""

    outage_started: float = 0.0
    outage_ended: float = 0.0
    tasks_queued_at_stop: int = 0
    unprocessed_at_stop: frozenset[int] = frozenset()


def run_outage(*, clients: Clients, broker: PrivateRedis, queue: str, channel: Channel) -> Timeline:
    """Send throughout; stop Redis while the worker is held, release it, restart Redis."""
    timeline = Timeline()
    with processing_held(channel) as release, clients.running():
        time.sleep(BEFORE_SECONDS)
        _wait_for_backlog(broker, queue)
        timeline.tasks_queued_at_stop = broker.queue_length(queue)
        broker.stop()
        timeline.outage_started = time.monotonic()
        try:
            timeline.unprocessed_at_stop = frozenset(
                Delivery.objects.filter(
                    channel=channel, outcome=DeliveryOutcome.RECEIVED
                ).values_list("pk", flat=True)
            )
            release()
            time.sleep(max(0.0, timeline.outage_started + OUTAGE_SECONDS - time.monotonic()))
        finally:
            broker.start()
            timeline.outage_ended = time.monotonic()
        time.sleep(AFTER_SECONDS)
    return timeline


def _wait_for_backlog(broker: PrivateRedis, queue: str) -> None:
    deadline = time.monotonic() + BACKLOG_TIMEOUT
    while broker.queue_length(queue) < QUEUED_AT_STOP:
        if time.monotonic() > deadline:
            pytest.fail(
                f"Fewer than {QUEUED_AT_STOP} tasks were queued after {BACKLOG_TIMEOUT} s of "
                "sending, so the server did not acknowledge the webhooks or did not publish.",
                pytrace=False,
            )
        time.sleep(0.05)


def _log_lines(path: Path, message: str) -> list[dict]:
    """The JSON log records in `path` whose message is `message`."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if message not in line:
            continue
        with suppress(ValueError):
            record = json.loads(line)
            if record.get("message") == message:
                records.append(record)
    return records


def _during_outage(responses: list[Response], timeline: Timeline) -> list[Response]:
    return [
        response
        for response in responses
        if timeline.outage_started <= response.sent_at < timeline.outage_ended
    ]


def test_webhooks_during_broker_outage_all_processed(shopify_channel, tmp_path):  # noqa: F811
    require_services()
    sweep_schedule(SWEEP_EVERY_SECONDS)
    worker_log = tmp_path / "worker.log"
    server_log = tmp_path / "gunicorn.log"

    with (
        private_redis(tmp_path / "redis.log") as broker,
        this_process_broker(broker.url),
        queue_for_test() as queue,
    ):
        worker = worker_start(
            queue=queue,
            log_path=worker_log,
            environment={
                "REDIS_URL": broker.url,
                "OMSGUARD_SWEEP_AFTER_SECONDS": str(SWEEP_AFTER_SECONDS),
            },
        )
        try:
            with (
                beat_running(queue=queue, broker_url=broker.url, log_path=tmp_path / "beat.log"),
                server_running(
                    port=port_free(PORTS),
                    log_path=server_log,
                    environment={
                        "REDIS_URL": broker.url,
                        "OMSGUARD_RATE_LIMIT_WEBHOOK": WEBHOOK_RATE_LIMIT,
                    },
                ) as server,
            ):
                clients = Clients(
                    port=server.port,
                    count=CLIENTS,
                    per_second=REQUESTS_PER_SECOND,
                    next_request=lambda number: webhook_request(number, prefix=WEBHOOK_PREFIX),
                )
                timeline = run_outage(
                    clients=clients, broker=broker, queue=queue, channel=shopify_channel
                )
                wait_until_none_received(
                    channel=shopify_channel,
                    timeout=PROCESSING_TIMEOUT,
                    logs=lambda: f"{worker.log()}\n{server.log_tail()}\n{broker.log_tail()}",
                )
                processed_after_return = time.monotonic() - timeline.outage_ended
        finally:
            worker_stop(worker)

    responses = clients.responses_of("webhook")
    outage_responses = _during_outage(responses, timeline)
    acknowledged = [response for response in responses if response.status == 200]
    acknowledged_ids = {response.request.key for response in acknowledged}
    deliveries = Delivery.objects.filter(channel=shopify_channel)
    stored_ids = set(deliveries.values_list("delivery_id", flat=True))
    ids_with_order = set(
        Order.objects.filter(channel=shopify_channel).values_list(
            "delivery__delivery_id", flat=True
        )
    )
    failed_publishes = _log_lines(server_log, "could not queue delivery processing")
    limits_skipped = _log_lines(server_log, "rate limits not applied: cache unavailable")
    sweeps = _log_lines(worker_log, "unprocessed deliveries queued again")
    swept = sum(record.get("count", 0) for record in sweeps)
    outage_seconds = [response.seconds for response in outage_responses]

    figure(SUITE, "Redis down", timeline.outage_ended - timeline.outage_started, "s")
    figure(SUITE, "webhooks sent", len(responses))
    figure(SUITE, "webhooks acknowledged (200)", len(acknowledged))
    figure(SUITE, "webhooks acknowledged while Redis was down", len(outage_responses))
    if outage_seconds:
        figure(
            SUITE,
            "median acknowledgement while Redis was down",
            statistics.median(outage_seconds) * 1000,
            "ms",
        )
        figure(SUITE, "max acknowledgement while Redis was down", max(outage_seconds) * 1000, "ms")
    figure(SUITE, "publishes that failed (server log)", len(failed_publishes))
    figure(SUITE, "rate limiter fail-open warnings (one per process a minute)", len(limits_skipped))
    figure(
        SUITE, "tasks queued in Redis when it stopped (lost with it)", timeline.tasks_queued_at_stop
    )
    figure(SUITE, "deliveries queued again by the sweep", swept)
    figure(SUITE, "deliveries stored", len(stored_ids))
    figure(SUITE, "orders created", len(ids_with_order))
    figure(
        SUITE, "deliveries lost (acknowledged, no order)", len(acknowledged_ids - ids_with_order)
    )
    figure(SUITE, "deliveries processed more than once", deliveries.filter(attempts__gt=1).count())
    figure(
        SUITE, "seconds from Redis back to the last delivery processed", processed_after_return, "s"
    )

    failures = [response for response in responses if response.status != 200]
    assert failures == [], f"{len(failures)} webhooks not acknowledged, first: {failures[:3]}"
    assert {json.loads(response.body)["status"] for response in acknowledged} == {"accepted"}
    # The fault happened as planned: tasks were lost with Redis, and requests hit the outage.
    assert timeline.tasks_queued_at_stop >= QUEUED_AT_STOP
    assert len(outage_responses) > 0
    assert len(failed_publishes) > 0
    assert swept >= timeline.tasks_queued_at_stop

    assert stored_ids == acknowledged_ids
    assert deliveries.count() == len(acknowledged)
    assert set(deliveries.values_list("outcome", flat=True)) == {DeliveryOutcome.PROCESSED}
    assert ids_with_order == acknowledged_ids
    assert Order.objects.filter(channel=shopify_channel).count() == len(acknowledged)
    assert deliveries.filter(attempts__gt=1).count() == 0
    assert set(
        deliveries.filter(pk__in=timeline.unprocessed_at_stop).values_list("outcome", flat=True)
    ) == {DeliveryOutcome.PROCESSED}
    assert OrderEvent.objects.filter(
        order__channel=shopify_channel, kind="order.received"
    ).count() == len(acknowledged)
