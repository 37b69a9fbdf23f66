"""Database restart: PostgreSQL restarts under load; 503s in the gap, nothing acknowledged lost.

The suite never touches the shared PostgreSQL. It creates a private cluster (initdb into a
temporary directory, port 5499 or the next free one), copies the test database into it with
pg_dump, and points a real gunicorn server and a real Celery worker at it. Client threads send
signed webhooks, API reads with a token, and page loads with a session cookie, as a browser
does. The cluster is stopped (`pg_ctl stop -m fast`, which ends every connection) and
started again after the gap while the clients keep sending.

The suite proves that every response in the gap is a 503 with Retry-After and the JSON or HTML
body, never a 500 or a stack trace; that the server and worker recover by themselves; that
every webhook acknowledged with 200 is stored and processed once; and that the webhooks
rejected with 503 are taken when their sender sends them again.

PostgreSQL refuses to run as root, so as root (this machine, CI containers) initdb and pg_ctl
run as the `postgres` OS user through runuser, and the cluster's directory belongs to it.
The cluster runs with fsync off to keep the copy fast: a clean stop writes every committed
transaction anyway, and the suite does not crash the operating system.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token

from orders.models import Delivery, DeliveryOutcome, Order, OrderEvent
from tests import workers
from tests.conftest import make_user
from tests.integration.test_celery_worker import shopify_channel  # noqa: F401 (fixture)
from tests.reliability.deliveries import wait_until_none_received
from tests.reliability.figures import figure, sized
from tests.reliability.outage_clients import (
    Clients,
    Request,
    Response,
    connection_open,
    send,
    webhook_request,
)
from tests.reliability.servers import port_free, server_running
from tests.workers import queue_for_test, require_services, worker_start, worker_stop

pytestmark = [pytest.mark.worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SUITE = "database restart"
GAP_SECONDS = sized(full=10, ci=2)
BEFORE_SECONDS = sized(full=15, ci=1.5)
# The clients keep sending after the restart until every kind of request has succeeded
# this many times in a row, so the suite sees the recovery rather than assuming it.
SUCCESSES_TO_RECOVER = 3
CLIENTS = 4
REQUESTS_PER_SECOND = sized(full=40, ci=15)
RETRY_AFTER = "5"
# The first free port of this range, so a second run on the machine (CI beside
# `make reliability`) starts its own cluster.
CLUSTER_PORTS = range(5499, 5520)
CLUSTER_DATABASE = "omsguard_restart"
PORTS = range(8650, 8670)
# Bounds in seconds for a loaded CI runner, not tuned values.
PG_CTL_TIMEOUT = 60
RECOVERY_TIMEOUT = 60
PROCESSING_TIMEOUT = sized(full=300, ci=120)
WEBHOOK_PREFIX = "wh-db-restart"
# Text that gives away a stack trace or the driver behind a 503 body.
TRACEBACK_MARKERS = ("Traceback", 'File "', "OperationalError", "psycopg", "Exception")
# The kinds of request the clients send, in turn.
KINDS = ("webhook", "webhook", "api", "webhook", "page")
SUCCESS_STATUS = {"webhook": 200, "api": 200, "page": 302}


def _postgresql_bin() -> Path:
    """The directory of initdb and pg_ctl (Debian keeps them out of PATH)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    on_path = shutil.which("pg_ctl")
    if candidates:
        return candidates[-1].parent
    if on_path:
        return Path(on_path).parent
    workers.services_unavailable(
        "pg_ctl was not found under /usr/lib/postgresql/*/bin or on PATH; the database restart "
        "suite needs the PostgreSQL server programs (apt-get install postgresql)."
    )
    raise AssertionError("services_unavailable() skips or fails the test")


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of the suite's own, in `directory`, on 127.0.0.1:`port`."""

    directory: Path
    port: int
    bin_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self._as_owner(
            "initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--no-locale",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_owner(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options,
            "-w", "-t", str(PG_CTL_TIMEOUT), "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop fast: every session is ended with 57P01 admin_shutdown, then the server exits."""
        self._as_owner(
            "pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(PG_CTL_TIMEOUT),
            "stop",
        )  # fmt: skip

    def is_running(self) -> bool:
        status = subprocess.run(
            self._owner_command("pg_ctl", "-D", str(self.data_dir), "status"),
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def log_tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "--- private PostgreSQL log ---\n" + "\n".join(text.splitlines()[-30:])

    def _as_owner(self, program: str, *arguments: str) -> None:
        result = subprocess.run(
            self._owner_command(program, *arguments), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            pytest.fail(
                f"{program} failed with code {result.returncode}:\n{result.stdout}\n"
                f"{result.stderr}\n{self.log_tail()}",
                pytrace=False,
            )

    def _owner_command(self, program: str, *arguments: str) -> list[str]:
        command = [str(self.bin_dir / program), *arguments]
        # PostgreSQL refuses to run as root; run its server programs as the postgres user.
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return command


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """Create, start and finally stop and delete a private cluster."""
    # Under /tmp, not pytest's tmp_path: the postgres user cannot enter root's 0700 directories.
    directory = Path(tempfile.mkdtemp(prefix="omsguard-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, user="postgres", group="postgres")
    cluster = PrivateCluster(
        directory=directory, port=port_free(CLUSTER_PORTS), bin_dir=_postgresql_bin()
    )
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.is_running():
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def database_copy(*, cluster: PrivateCluster, source_url: str, database: str) -> float:
    """Copy the test database, schema and rows, into `database` on the cluster; return seconds.

    A whole pg_dump costs about as much as a schema-only one plus the migrations' rows,
    because the test database is small before the suite sends anything.
    """
    started = time.monotonic()
    psql = [str(cluster.bin_dir / "psql"), "-q", "-v", "ON_ERROR_STOP=1"]
    subprocess.run(
        [*psql, cluster.url("postgres"), "-c", f'CREATE DATABASE "{database}"'],
        check=True,
        capture_output=True,
    )
    dump = subprocess.Popen(
        [str(cluster.bin_dir / "pg_dump"), "--no-owner", "--no-privileges", source_url],
        stdout=subprocess.PIPE,
    )
    restore = subprocess.run(
        [*psql, "--single-transaction", cluster.url(database)],
        stdin=dump.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    dump.stdout.close()
    if dump.wait() != 0 or restore.returncode != 0:
        pytest.fail(
            f"Copying the test database failed (pg_dump {dump.returncode}, psql "
            f"{restore.returncode}): {restore.stderr[-2000:]}",
            pytrace=False,
        )
    return time.monotonic() - started


@contextmanager
def django_connection_to(url_settings: dict[str, str]) -> Iterator[None]:
    """Point this process's default connection, and so the servers it starts, elsewhere."""
    settings_dict = connection.settings_dict
    saved = {key: settings_dict[key] for key in url_settings}
    connection.close()
    settings_dict.update(url_settings)
    try:
        yield
    finally:
        connection.close()
        settings_dict.update(saved)


@dataclass(frozen=True)
class Credentials:
    token: str
    session_key: str


def credentials_create() -> Credentials:
    """An agent with an API token and a logged-in session, stored before the copy."""
    agent = make_user("restart-agent", "cs_agent")
    token = Token.objects.create(user=agent).key
    browser = Client()
    browser.force_login(agent)
    return Credentials(token=token, session_key=browser.cookies["sessionid"].value)


def request_for(number: int, credentials: Credentials) -> Request:
    kind = KINDS[number % len(KINDS)]
    if kind == "api":
        return Request(
            kind="api",
            method="GET",
            path="/api/v1/orders/?page_size=5",
            key="orders",
            headers={"Authorization": f"Token {credentials.token}", "Accept": "application/json"},
        )
    if kind == "page":
        return Request(
            kind="page",
            method="GET",
            path="/",
            key="home",
            headers={
                "Cookie": f"sessionid={credentials.session_key}",
                "Accept": "text/html,application/xhtml+xml",
            },
        )
    return webhook_request(number, prefix=WEBHOOK_PREFIX)


@dataclass
class Timeline:
    """monotonic() times: the stop began, and the start returned (the cluster accepts again)."""

    stop_began: float = 0.0
    accepting: float = 0.0


def run_restart(*, clients: Clients, cluster: PrivateCluster) -> Timeline:
    """Send throughout; stop the cluster, wait out the gap, start it, wait for recovery."""
    timeline = Timeline()
    with clients.running():
        time.sleep(BEFORE_SECONDS)
        timeline.stop_began = time.monotonic()
        try:
            cluster.stop()
            time.sleep(GAP_SECONDS)
        finally:
            cluster.start()
            timeline.accepting = time.monotonic()
        _wait_for_recovery(clients, since=timeline.accepting)
    return timeline


def _wait_for_recovery(clients: Clients, *, since: float) -> None:
    deadline = since + RECOVERY_TIMEOUT
    while time.monotonic() < deadline:
        if all(_recovered(clients.responses_of(kind), since=since) for kind in SUCCESS_STATUS):
            return
        time.sleep(0.2)


def _recovered(responses: list[Response], *, since: float) -> bool:
    """Whether the last SUCCESSES_TO_RECOVER responses, all sent after `since`, succeeded."""
    recent = sorted(responses, key=lambda response: response.sent_at)[-SUCCESSES_TO_RECOVER:]
    return len(recent) == SUCCESSES_TO_RECOVER and all(
        response.sent_at >= since and response.status == SUCCESS_STATUS[response.request.kind]
        for response in recent
    )


def _unavailable_problems(response: Response) -> list[str]:
    """What is wrong with a 503: missing Retry-After, the wrong body, a stack trace."""
    problems = []
    if response.headers.get("Retry-After") != RETRY_AFTER:
        problems.append(f"Retry-After {response.headers.get('Retry-After')!r}")
    text = response.body.decode(errors="replace")
    problems += [f"{marker!r} in the body" for marker in TRACEBACK_MARKERS if marker in text]
    if response.request.kind == "page":
        if "<h1>Service unavailable</h1>" not in text:
            problems.append(f"not the 503 page: {text[:200]!r}")
    else:
        try:
            code = json.loads(text)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if code != "database_unavailable":
            problems.append(f"not the JSON 503 body: {text[:200]!r}")
    return problems


def resend_rejected(*, port: int, rejected: list[Response]) -> list[Response]:
    """Send every webhook rejected with 503 again, as its channel retries it, one at a time."""
    connection = connection_open(port)
    try:
        return [send(connection, response.request) for response in rejected]
    finally:
        connection.close()


def test_requests_during_database_restart_get_503(shopify_channel, tmp_path):  # noqa: F811
    require_services()
    credentials = credentials_create()
    source_url = workers.test_database_url()

    with private_cluster() as cluster:
        copy_seconds = database_copy(
            cluster=cluster, source_url=source_url, database=CLUSTER_DATABASE
        )
        with (
            django_connection_to(
                {"HOST": "127.0.0.1", "PORT": str(cluster.port), "NAME": CLUSTER_DATABASE}
            ),
            queue_for_test() as queue,
        ):
            # Started inside django_connection_to, so both use the private cluster.
            worker = worker_start(queue=queue, log_path=tmp_path / "worker.log", environment={})
            try:
                with server_running(
                    port=port_free(PORTS), log_path=tmp_path / "gunicorn.log"
                ) as server:
                    clients = Clients(
                        port=server.port,
                        count=CLIENTS,
                        per_second=REQUESTS_PER_SECOND,
                        next_request=lambda number: request_for(number, credentials),
                    )
                    timeline = run_restart(clients=clients, cluster=cluster)
                    # This process's connection died with the server; open a new one.
                    connection.close()
                    responses = list(clients.responses)
                    rejected = [
                        response
                        for response in responses
                        if response.request.kind == "webhook" and response.status == 503
                    ]
                    resent = resend_rejected(port=server.port, rejected=rejected)
                    wait_until_none_received(
                        channel=shopify_channel,
                        timeout=PROCESSING_TIMEOUT,
                        logs=lambda: f"{worker.log()}\n{server.log_tail()}\n{cluster.log_tail()}",
                    )
                    results = _results(
                        responses=responses,
                        rejected=rejected,
                        resent=resent,
                        channel=shopify_channel,
                    )
                    server_log = server.log_tail()
            finally:
                worker_stop(worker)

    _record_figures(results, timeline=timeline, copy_seconds=copy_seconds)
    _assert_results(results, timeline=timeline, server_log=server_log)


def _results(*, responses, rejected, resent, channel) -> dict:
    by_kind = {kind: [a for a in responses if a.request.kind == kind] for kind in SUCCESS_STATUS}
    unavailable = [response for response in responses if response.status == 503]
    last_unavailable = max((a.sent_at + a.seconds for a in unavailable), default=None)
    acknowledged_ids = {
        response.request.key
        for response in [*by_kind["webhook"], *resent]
        if response.status == 200
    }
    deliveries = Delivery.objects.filter(channel=channel)
    orders = Order.objects.filter(channel=channel)
    return {
        "responses": responses,
        "by kind": by_kind,
        "statuses": Counter((a.request.kind, a.status) for a in responses),
        "unavailable": unavailable,
        "last unavailable": last_unavailable,
        "rejected": rejected,
        "resent": resent,
        "resent statuses": Counter(a.status for a in resent),
        "resent responses": Counter(
            json.loads(a.body).get("status") for a in resent if a.status == 200
        ),
        "acknowledged ids": acknowledged_ids,
        "stored ids": set(deliveries.values_list("delivery_id", flat=True)),
        "ids with order": set(orders.values_list("delivery__delivery_id", flat=True)),
        "outcomes": Counter(deliveries.values_list("outcome", flat=True)),
        "orders": orders.count(),
        "processed more than once": deliveries.filter(attempts__gt=1).count(),
        "order.received events": OrderEvent.objects.filter(
            order__channel=channel, kind="order.received"
        ).count(),
    }


def _record_figures(results: dict, *, timeline: Timeline, copy_seconds: float) -> None:
    responses = results["responses"]
    figure(SUITE, "seconds to copy the test database into the private cluster", copy_seconds, "s")
    figure(SUITE, "requests sent", len(responses))
    figure(
        SUITE,
        "database down (stop began to start returned)",
        timeline.accepting - timeline.stop_began,
        "s",
    )
    figure(SUITE, "responses 503 with Retry-After", len(results["unavailable"]))
    for kind in SUCCESS_STATUS:
        figure(SUITE, f"{kind} requests rejected with 503", results["statuses"][(kind, 503)])
    figure(SUITE, "responses 500", sum(1 for a in responses if a.status == 500))
    figure(SUITE, "requests without a response", sum(1 for a in responses if a.status is None))
    if results["last unavailable"] is not None:
        recovery = max(0.0, results["last unavailable"] - timeline.accepting)
        figure(SUITE, "seconds from PostgreSQL accepting to the last 503", recovery, "s")
    figure(SUITE, "webhooks acknowledged (200)", results["statuses"][("webhook", 200)])
    figure(SUITE, "webhooks rejected with 503 and sent again", len(results["rejected"]))
    figure(
        SUITE,
        "of them stored although rejected ('duplicate' on resend)",
        results["resent responses"]["duplicate"],
    )
    figure(SUITE, "deliveries stored", len(results["stored ids"]))
    figure(SUITE, "orders created", results["orders"])
    lost = len(results["acknowledged ids"] - results["ids with order"])
    figure(SUITE, "deliveries lost (acknowledged, no order)", lost)
    figure(SUITE, "deliveries processed more than once", results["processed more than once"])


def _assert_results(results: dict, *, timeline: Timeline, server_log: str) -> None:
    responses = results["responses"]
    statuses = results["statuses"]
    unexpected = [
        response
        for response in responses
        if response.status not in (SUCCESS_STATUS[response.request.kind], 503)
    ]
    first = [(a.request.kind, a.status, a.body[:300], a.error) for a in unexpected[:3]]
    assert unexpected == [], (
        f"{len(unexpected)} responses neither success nor 503, first: {first}\n{server_log}"
    )
    early = [a for a in results["unavailable"] if a.sent_at + a.seconds < timeline.stop_began]
    assert early == [], f"{len(early)} requests got a 503 before the database stopped"
    problems = {
        (response.request.kind, problem)
        for response in results["unavailable"]
        for problem in _unavailable_problems(response)
    }
    assert problems == set()
    # The gap was hit by every kind of request, and every kind succeeded again afterwards.
    for kind in SUCCESS_STATUS:
        assert statuses[(kind, 503)] > 0, f"no {kind} request was sent during the gap"
        assert _recovered(results["by kind"][kind], since=0.0), f"{kind} requests did not recover"

    assert results["resent statuses"] == Counter({200: len(results["rejected"])})
    assert results["acknowledged ids"] == {
        a.request.key for a in results["by kind"]["webhook"] + results["resent"]
    }
    assert results["stored ids"] == results["acknowledged ids"]
    assert results["outcomes"] == Counter({DeliveryOutcome.PROCESSED: len(results["stored ids"])})
    assert results["ids with order"] == results["acknowledged ids"]
    assert results["orders"] == len(results["acknowledged ids"])
    assert results["processed more than once"] == 0
    assert results["order.received events"] == len(results["acknowledged ids"])
