"""Start and stop real Celery worker processes for tests, against the test database.

Each worker consumes the four queues of a namespace of its own (omsguard/queues.py), so a
worker already running on the machine never takes a test's tasks. Without Redis or PostgreSQL
the worker tests skip, unless OMSGUARD_REQUIRE_SERVICES=1, as in CI, where they fail instead.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from celery.utils.nodenames import host_format
from django.conf import settings
from django.db import connection

from omsguard.celery import app as celery_app
from omsguard.queues import QUEUE_KINDS, queue_name, queue_names

REPO_ROOT = Path(__file__).resolve().parents[1]
# Timeouts in seconds: generous bounds for a loaded CI runner, not tuned values.
WORKER_START_TIMEOUT = 30
WORKER_STOP_TIMEOUT = 10
PROCESSING_TIMEOUT = 30
POLL_INTERVAL = 0.2


@dataclass
class Worker:
    """A `celery worker` subprocess consuming one namespace's queues, logging to a file."""

    nodename: str
    # The queue namespace: the worker consumes queue_names(queue), such as "<queue>.ingest".
    queue: str
    process: subprocess.Popen
    log_path: Path
    # (task name, routing key) of every task the test process published during the test.
    published: list[tuple[str, str]] = field(default_factory=list)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- log of worker {self.nodename} (queue {self.queue}) ---\n{text}"


def closed_port() -> int:
    """A local port nothing listens on: bound once to learn a free one, then closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def services_unavailable(reason: str) -> None:
    """Skip the test, or fail it when OMSGUARD_REQUIRE_SERVICES=1 makes the services mandatory."""
    if os.environ.get("OMSGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail(
            f"{reason} OMSGUARD_REQUIRE_SERVICES=1 makes the worker tests mandatory: CI must "
            "run with PostgreSQL (DATABASE_URL=postgres://...) and Redis (REDIS_URL=redis://...).",
            pytrace=False,
        )
    pytest.skip(reason)


def test_database_url() -> str:
    """Build a DATABASE_URL for the test database that pytest-django created for this session."""
    database = connection.settings_dict
    credentials = quote(database["USER"] or "", safe="")
    if database["PASSWORD"]:
        credentials += ":" + quote(database["PASSWORD"], safe="")
    # A socket directory as HOST is percent-encoded, the form dj-database-url accepts for it.
    host = quote(str(database["HOST"] or ""), safe="")
    port = f":{database['PORT']}" if database["PORT"] else ""
    name = quote(str(database["NAME"]), safe="")
    return f"postgres://{credentials}@{host}{port}/{name}"


def worker_process_stop(process: subprocess.Popen) -> None:
    """Stop the worker with SIGTERM (warm shutdown), and with SIGKILL if it does not exit."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=WORKER_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def queue_delete(namespace: str) -> None:
    """Delete the test's queues from Redis, with kombu's binding keys for them."""
    with celery_app.connection_for_write() as broker:
        for name in [namespace, *queue_names(namespace)]:
            queue = celery_app.amqp.queues[name](broker.default_channel)
            # kombu's queue_delete removes only the bindings recorded on this channel (kombu
            # 5.7), so declare the queue on it first.
            queue.declare()
            queue.delete()


def worker_wait_ready(worker: Worker) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(
                f"Celery worker exited with code {worker.process.returncode} before it was "
                f"ready.\n{worker.log()}",
                pytrace=False,
            )
        if celery_app.control.ping(destination=[worker.nodename], timeout=1):
            return
    pytest.fail(
        f"Celery worker {worker.nodename} did not answer a ping within {WORKER_START_TIMEOUT} s."
        f"\n{worker.log()}",
        pytrace=False,
    )


def require_services() -> None:
    """Skip, or fail under OMSGUARD_REQUIRE_SERVICES=1, without Redis and PostgreSQL."""
    if not settings.REDIS_URL:
        services_unavailable("REDIS_URL is not set, so there is no broker for a worker.")
    if connection.vendor != "postgresql":
        services_unavailable(
            f"The database is {connection.vendor}, not PostgreSQL; a worker process cannot "
            "reach the test database."
        )


@contextmanager
def queue_for_test() -> Iterator[str]:
    """Route this process's tasks to queues of a new namespace, and delete them afterwards."""
    queue = f"omsguard-test-{uuid.uuid4().hex[:12]}"
    # tests/conftest.py made tasks eager; omsguard.queues.route_task reads task_default_queue
    # at each send, so setting it here routes this process's tasks to the new namespace.
    previous_eager = celery_app.conf.task_always_eager
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    try:
        yield queue
    finally:
        celery_app.conf.task_always_eager = previous_eager
        celery_app.conf.task_default_queue = previous_queue
        queue_delete(queue)


def worker_start(
    *,
    queue: str,
    log_path: Path,
    environment: dict[str, str],
    prefork: bool = False,
    kinds: Sequence[str] = QUEUE_KINDS,
) -> Worker:
    """Start a worker on `queue` in its own process group and wait until it replies to a ping.

    The worker consumes the queues of `kinds` in the namespace `queue` (all four by default; a
    deployment's pool consumes one). With prefork=True it runs one pool child beside the main
    process, so a test can kill both with os.killpg, as a lost machine or an OOM kill of the
    whole service would.
    """
    nodename = host_format(f"test-worker-{uuid.uuid4().hex[:12]}@%h")
    env = os.environ.copy()
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "omsguard.settings",
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "OMSGUARD_CELERY_QUEUE": queue,
            "SECRET_KEY": settings.SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
            # As in the test process (tests/conftest.py): no baseline cached across tests.
            "OMSGUARD_BREAKER_BASELINE_CACHE_SECONDS": "0",
        }
    )
    env.update(environment)
    pool = ["--pool=prefork", "--concurrency=1"] if prefork else ["--pool=solo"]
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "omsguard",
        "worker",
        *pool,
        "--loglevel=INFO",
        "-Q",
        ",".join(queue_name(queue, kind) for kind in kinds),
        "-n",
        nodename,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(nodename=nodename, queue=queue, process=process, log_path=log_path)
    try:
        worker_wait_ready(worker)
    except BaseException:
        worker_kill(worker)
        raise
    return worker


def worker_stop(worker: Worker) -> None:
    """Stop the worker with a warm shutdown, then kill what is left of its process group."""
    worker_process_stop(worker.process)
    worker_kill(worker)


def worker_kill(worker: Worker) -> None:
    """SIGKILL the worker's main process and its pool children, and reap the main process."""
    with suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait()


def delivery_wait_processed(
    delivery_pk: int,
    worker: Worker | None = None,
    *,
    timeout: float = PROCESSING_TIMEOUT,
    logs: Callable[[], str] | None = None,
):
    """Poll the database until a worker has given the delivery an outcome; return it.

    On timeout the test fails with `logs()`, or with the worker's log when a worker is given.
    """
    from orders.models import Delivery, DeliveryOutcome

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery = Delivery.objects.get(pk=delivery_pk)
        if delivery.outcome != DeliveryOutcome.RECEIVED:
            return delivery
        time.sleep(POLL_INTERVAL)
    log = ""
    if logs is not None:
        log = logs()
    elif worker is not None:
        log = worker.log()
    pytest.fail(
        f"Delivery {delivery_pk} still has outcome 'received' after {timeout} s, so no "
        f"worker processed it.\n{log}",
        pytrace=False,
    )
