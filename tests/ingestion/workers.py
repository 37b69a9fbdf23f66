"""Start and stop real Celery worker processes for the ingestion worker tests.

Builds on tests/integration/test_celery_worker.py: the same test-database URL, readiness ping
and queue clean-up, but the caller chooses the pool, the extra environment and when the worker
starts, so a test can kill one worker and start another on the same queue.
"""

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from celery.utils.nodenames import host_format
from django.conf import settings
from django.db import connection

from omsguard.celery import app as celery_app
from tests.integration.test_celery_worker import (
    REPO_ROOT,
    Worker,
    _queue_delete,
    _services_unavailable,
    _test_database_url,
    _worker_stop,
    _worker_wait_ready,
)


def require_services() -> None:
    """Skip, or fail under OMSGUARD_REQUIRE_SERVICES=1, without Redis and PostgreSQL."""
    if not settings.REDIS_URL:
        _services_unavailable("REDIS_URL is not set, so there is no broker for a worker.")
    if connection.vendor != "postgresql":
        _services_unavailable(
            f"The database is {connection.vendor}, not PostgreSQL; a worker process cannot "
            "reach the test database."
        )


@contextmanager
def queue_for_test() -> Iterator[str]:
    """Route this process's tasks to a new queue, and delete the queue afterwards."""
    queue = f"omsguard-test-{uuid.uuid4().hex[:12]}"
    # tests/conftest.py made tasks eager; Celery's router reads task_default_queue at each
    # send (celery 5.7), so setting it here routes this process's tasks to the new queue.
    previous_eager = celery_app.conf.task_always_eager
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    try:
        yield queue
    finally:
        celery_app.conf.task_always_eager = previous_eager
        celery_app.conf.task_default_queue = previous_queue
        _queue_delete(queue)


def worker_start(
    *, queue: str, log_path: Path, environment: dict[str, str], prefork: bool = False
) -> Worker:
    """Start a worker on `queue` in its own process group and wait until it replies to a ping.

    With prefork=True it runs one pool child beside the main process, so a test can kill
    both with os.killpg, as a lost machine or an OOM kill of the whole service would.
    """
    nodename = host_format(f"test-worker-{uuid.uuid4().hex[:12]}@%h")
    env = os.environ.copy()
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "omsguard.settings",
            "DATABASE_URL": _test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "OMSGUARD_CELERY_QUEUE": queue,
            "SECRET_KEY": settings.SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
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
        queue,
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
        _worker_wait_ready(worker)
    except BaseException:
        worker_kill(worker)
        raise
    return worker


def worker_stop(worker: Worker) -> None:
    """Stop the worker with a warm shutdown, then kill what is left of its process group."""
    _worker_stop(worker.process)
    worker_kill(worker)


def worker_kill(worker: Worker) -> None:
    """SIGKILL the worker's main process and its pool children, and reap the main process."""
    with suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait()
