"""Start a real gunicorn server on the test database, for suites that send HTTP from outside.

The server runs in a process group of its own with the production settings (DEBUG off).
It serves plain HTTP on 127.0.0.1 with the rate limits off, and publishes to the Celery queue
of the test's worker, so every request goes through the same stack as in production. The
test must be transactional (`django_db(transaction=True)`), because the server's connections
see only committed rows.

    with queue_for_test() as queue, server_running(port=port_free(PORTS), log_path=...) as server:
        urlopen(server.base_url + "/healthz")

NOTE: with DEBUG off the static files storage is WhiteNoise's manifest storage, so an HTML
page that uses `{% static %}` fails with a 500 unless collectstatic has run. The webhooks and
the API render no templates.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from omsguard.celery import app as celery_app
from tests.workers import REPO_ROOT, test_database_url

# Bounds in seconds for a loaded CI runner, not tuned values.
SERVER_START_TIMEOUT = 30
SERVER_STOP_TIMEOUT = 15
READY_POLL_INTERVAL = 0.2
LOG_TAIL_LINES = 80


@dataclass
class Server:
    """A gunicorn process serving omsguard.wsgi on 127.0.0.1:`port`, logging to `log_path`."""

    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the server's output, headed for a failure message."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of the gunicorn log ({self.base_url}) ---\n{tail}"


def port_free(ports: range) -> int:
    """Return the first port in `ports` that nothing on 127.0.0.1 is bound to."""
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(
        f"Every port from {ports.start} to {ports.stop - 1} on 127.0.0.1 is in use; stop the "
        "servers left over from an earlier run.",
        pytrace=False,
    )


def server_environment(overrides: dict[str, str]) -> dict[str, str]:
    """Return the server's environment: the test database and broker, production settings."""
    env = os.environ.copy()
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "omsguard.settings",
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            # Inside queue_for_test() this is the test's queue, so the test's worker gets the
            # tasks the server publishes.
            "OMSGUARD_CELERY_QUEUE": celery_app.conf.task_default_queue,
            "SECRET_KEY": settings.SECRET_KEY,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Plain HTTP to 127.0.0.1: no redirect to HTTPS, cookies without the Secure flag.
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "SECURE_HSTS_SECONDS": "0",
            "OMSGUARD_RATE_LIMIT_WEBHOOK": "",
            "OMSGUARD_RATE_LIMIT_API": "",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def server_start(
    *,
    port: int,
    log_path: Path,
    environment: dict[str, str] | None = None,
    workers: int = 2,
    threads: int = 1,
    ready_path: str = "/healthz",
) -> Server:
    """Start gunicorn on 127.0.0.1:`port` and wait until `ready_path` returns 200.

    Call it inside queue_for_test(), or pass OMSGUARD_CELERY_QUEUE: otherwise the server
    publishes its tasks to the default queue, where no test worker listens. `environment`
    overrides the defaults of server_environment(). With threads > 1 gunicorn
    runs its threaded workers, which keep connections alive and serve `workers * threads`
    requests at once; its sync workers serve one each and close every connection.
    """
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "omsguard.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--timeout",
        "60",
        "--graceful-timeout",
        str(SERVER_STOP_TIMEOUT - 5),
    ]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=server_environment(environment or {}),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(port=port, process=process, log_path=log_path)
    try:
        _wait_ready(server, ready_path)
    except BaseException:
        server_stop(server)
        raise
    return server


def server_stop(server: Server) -> None:
    """Stop gunicorn with SIGTERM (graceful), then SIGKILL whatever is left of its group."""
    if server.process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=SERVER_STOP_TIMEOUT)
    with suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


@contextmanager
def server_running(**options) -> Iterator[Server]:
    """Run a server (see server_start for the options) for the block, and stop it after."""
    server = server_start(**options)
    try:
        yield server
    finally:
        server_stop(server)


def _wait_ready(server: Server, ready_path: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"gunicorn exited with code {server.process.returncode} before it served "
                f"{ready_path}.\n{server.log_tail()}",
                pytrace=False,
            )
        if _status(server.base_url + ready_path) == 200:
            return
        time.sleep(READY_POLL_INTERVAL)
    pytest.fail(
        f"gunicorn did not return 200 for {ready_path} within {SERVER_START_TIMEOUT} s."
        f"\n{server.log_tail()}",
        pytrace=False,
    )


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own 127.0.0.1
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None
