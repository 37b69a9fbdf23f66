"""Benchmark the decisions API: verdict latency and throughput beside a bare DRF insert.

Creates the database omsguard_bench_decisions on the PostgreSQL server of BENCH_POSTGRES_URL
(default postgres://postgres@127.0.0.1:5432), migrates it (which loads the default policies),
seeds one order per request, an integration user with an API token, and drops the database at
the end. Starts gunicorn (2 sync workers, 127.0.0.1, first free port of 8150-8159) and a Celery
worker on a queue of its own, with Redis DB 5 as the broker.

Celery runs with eager mode off, as in production: decision_propose queues the breaker check
on commit and the worker runs it, so the measured verdict latency includes publishing the task
to Redis but not the check itself. The worker shares the machine's cores with gunicorn.

Then C client threads POST /api/v1/decisions/ with a fixed mix of proposals (carrier choices
applied and queued, shipping address corrections queued, billing address changes blocked,
ship date estimates as recommendations), each on its own order, and print:

- decisions per second and p50/p95/p99 latency of the responses, by verdict too;
- the server-side latency the decisions recorded (Decision.latency_ms);
- the baseline: the same number of POSTs, with the same token authentication and JSON parsing,
  to /bench/insert-row/, a DRF view that inserts the body as one row;
- the ratio of the two.

    .venv/bin/python bench/decisions.py [--quick] [--requests N] [--clients C]
"""

import argparse
import http.client
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
DATABASE_NAME = "omsguard_bench_decisions"
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = "redis://127.0.0.1:6379/5"
PORTS = range(8150, 8160)
START_TIMEOUT = 60
DRAIN_TIMEOUT = 300
WARM_UP_REQUESTS = 20

sys.path.insert(0, str(REPO_ROOT))
# Set before Django loads its settings: the bench database and Redis DB 5, with DEBUG off so
# no SQL statements pile up in memory.
os.environ["DATABASE_URL"] = f"{SERVER_URL}/{DATABASE_NAME}"
os.environ["REDIS_URL"] = REDIS_URL
os.environ["DEBUG"] = "0"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omsguard.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")


def main() -> None:
    arguments = _arguments()
    _database_create()
    processes: list[subprocess.Popen] = []
    log_dir = Path(tempfile.mkdtemp(prefix="bench-decisions-"))
    queue = f"bench-decisions-{uuid.uuid4().hex[:8]}"
    try:
        import django

        django.setup()
        _migrate()
        print(f"database   postgresql {DATABASE_NAME}, broker {REDIS_URL}, queue {queue}")
        print(
            f"requests   {arguments.requests} decisions and {arguments.requests} bare inserts "
            f"from {arguments.clients} clients ({os.cpu_count()} CPUs)"
        )

        seed = _seed(arguments.requests + WARM_UP_REQUESTS)
        port = _free_port()
        processes.append(_gunicorn_start(port, queue, log_dir))
        processes.append(_worker_start(queue, log_dir))
        _wait_ready(port, queue, processes, log_dir)

        bodies = [_proposal(index, order) for index, order in enumerate(seed["orders"])]
        warm_up, bodies = bodies[:WARM_UP_REQUESTS], bodies[WARM_UP_REQUESTS:]
        _post_all(port, "/api/v1/decisions/", warm_up, 2, seed["token"])
        _post_all(port, "/bench/insert-row/", warm_up, 2, seed["token"])

        decisions = _post_all(port, "/api/v1/decisions/", bodies, arguments.clients, seed["token"])
        # Let the worker finish the queued breaker checks so it does not slow the baseline.
        drained = _wait_queue_empty(queue)
        bare = _post_all(port, "/bench/insert-row/", bodies, arguments.clients, seed["token"])
        recorded = _recorded_latencies(seed["orders"][WARM_UP_REQUESTS:])
    finally:
        for process in processes:
            _stop(process)
        _close_django_connections()
        _database_drop()
        _queue_delete(queue)
        print(f"logs       {log_dir}")

    _report(decisions, bare, recorded, drained)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 requests of each kind.")
    parser.add_argument("--requests", type=int, help="Decisions to propose (default 3000).")
    parser.add_argument("--clients", type=int, default=8, help="Client threads (default 8).")
    arguments = parser.parse_args()
    arguments.requests = arguments.requests or (300 if arguments.quick else 3000)
    if arguments.requests < 100 or arguments.clients < 1:
        parser.error("--requests must be at least 100 and --clients at least 1")
    return arguments


# --- Database ----------------------------------------------------------------------------------


def _database_create() -> None:
    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)')
        server.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def _database_drop() -> None:
    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as server:
        server.execute(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)')


def _close_django_connections() -> None:
    from django.db import connections

    connections.close_all()


def _migrate() -> None:
    from django.core.management import call_command

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    print(f"migrate    {time.monotonic() - started:.1f} s (loads the default policies)")


def _seed(count: int) -> dict:
    """Create one order per request on one channel, and an integration user with a token."""
    from decimal import Decimal

    from django.contrib.auth.models import Group, User
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from catalog.models import Channel, ChannelKind
    from omsguard.bench_views import BENCH_ROW_TABLE
    from orders.models import ChannelApiGrant, Delivery, Order, OrderLine, OrderStatus

    channel = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="bench", webhook_secret="s")
    deliveries = Delivery.objects.bulk_create(
        Delivery(
            channel=channel,
            delivery_id=f"bench-{index}",
            topic="orders/create",
            body=b"{}",
            signature_valid=True,
        )
        for index in range(count)
    )
    orders = Order.objects.bulk_create(
        Order(
            channel=channel,
            channel_order_id=str(9_100_000 + index),
            order_number=f"#B{index}",
            delivery=delivery,
            status=OrderStatus.READY,
            currency="USD",
            subtotal=Decimal("39.98"),
            shipping_total=Decimal("5.00"),
            tax_total=Decimal("0"),
            discount_total=Decimal("0"),
            total=Decimal("44.98"),
            customer_email=f"bench-{index}@example.com",
            shipping_address=SHIPPING_ADDRESS,
        )
        for index, delivery in enumerate(deliveries)
    )
    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            position=1,
            title="Classic Cotton T-Shirt - Black / M",
            quantity=2,
            unit_price=Decimal("19.99"),
            raw={},
        )
        for order in orders
    )

    user = User.objects.create_user(username="bench-agent")
    user.groups.add(Group.objects.get(name="integration"))
    ChannelApiGrant.objects.create(user=user, channel=channel)
    token = Token.objects.create(user=user)

    with connection.cursor() as cursor:
        columns = "id bigserial PRIMARY KEY, user_id integer, body jsonb"
        cursor.execute(f"CREATE TABLE {BENCH_ROW_TABLE} ({columns})")
    return {"orders": [order.pk for order in orders], "token": token.key}


SHIPPING_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
}

# (share of requests out of 20, action, confidence, before, after), each on a fresh order.
PROPOSAL_MIX = [
    (8, "select_carrier", "0.95", {"carrier_service": None}, {"carrier_service": "ups/ground"}),
    (3, "select_carrier", "0.60", {"carrier_service": None}, {"carrier_service": "ups/ground"}),
    (
        3,
        "correct_shipping_address",
        "0.97",
        {"shipping_address": SHIPPING_ADDRESS},
        {"shipping_address": SHIPPING_ADDRESS | {"address1": "12 Birch Ln"}},
    ),
    (
        3,
        "change_billing_address",
        "0.99",
        {"billing_address": None},
        {"billing_address": SHIPPING_ADDRESS},
    ),
    (3, "estimate_ship_date", "0.90", {}, {"ship_date": "2026-12-07"}),
]
PROPOSAL_CYCLE = [entry for entry in PROPOSAL_MIX for _ in range(entry[0])]


def _proposal(index: int, order_id: int) -> bytes:
    # Spread the kinds evenly over the run instead of in blocks.
    _, action, confidence, before, after = PROPOSAL_CYCLE[(index * 7) % len(PROPOSAL_CYCLE)]
    return json.dumps(
        {
            "order": order_id,
            "action": action,
            "before": before,
            "after": after,
            "confidence": confidence,
            "model_name": "bench-agent",
            "model_version": "1",
            "rationale": "Benchmark proposal.",
        }
    ).encode()


def _recorded_latencies(order_ids: list[int]) -> list[float]:
    from guardrails.models import Decision

    rows = Decision.objects.filter(order_id__in=order_ids, latency_ms__isnull=False)
    return sorted(rows.values_list("latency_ms", flat=True))


# --- Processes ---------------------------------------------------------------------------------


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free port in {PORTS.start}-{PORTS.stop - 1} on 127.0.0.1")


def _environment(queue: str) -> dict[str, str]:
    return os.environ | {
        "OMSGUARD_CELERY_QUEUE": queue,
        "OMSGUARD_BENCH_ENDPOINTS": "1",
        # The bench talks plain HTTP to 127.0.0.1.
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
    }


def _gunicorn_start(port: int, queue: str, log_dir: Path) -> subprocess.Popen:
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    command = [gunicorn, "omsguard.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"]
    return _spawn(command, queue, log_dir / "gunicorn.log")


def _worker_start(queue: str, log_dir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "celery", "-A", "omsguard", "worker", "-Q", queue]
    command += ["-n", f"{queue}@bench", "--loglevel=WARNING", "--without-gossip"]
    command += ["--without-mingle", "--concurrency=1"]
    return _spawn(command, queue, log_dir / "worker.log")


def _spawn(command: list[str], queue: str, log_path: Path) -> subprocess.Popen:
    with log_path.open("wb") as log:
        # A session of its own, so Ctrl-C reaches only the bench, which then stops the group.
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=_environment(queue),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(port: int, queue: str, processes: list[subprocess.Popen], log_dir: Path) -> None:
    from omsguard.celery import app as celery_app

    deadline = time.monotonic() + START_TIMEOUT
    web_ready = worker_ready = False
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise SystemExit(f"{process.args[0]} exited early; see the logs in {log_dir}")
        web_ready = web_ready or _health_ok(port)
        worker_ready = worker_ready or bool(
            celery_app.control.ping(destination=[f"{queue}@bench"], timeout=1)
        )
        if web_ready and worker_ready:
            return
        time.sleep(0.2)
    raise SystemExit(f"gunicorn or the worker did not start in {START_TIMEOUT} s; see {log_dir}")


def _health_ok(port: int) -> bool:
    try:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        client.request("GET", "/healthz")
        return client.getresponse().status == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    """Stop a process group with SIGTERM, then SIGKILL after 15 s."""
    for sent, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _queue_length(queue: str) -> int:
    from omsguard.celery import app as celery_app

    with celery_app.connection_for_write() as broker:
        return broker.default_channel.client.llen(queue)


def _wait_queue_empty(queue: str) -> float:
    """Seconds until the worker has taken every queued breaker check."""
    started = time.monotonic()
    while _queue_length(queue) > 0:
        if time.monotonic() - started > DRAIN_TIMEOUT:
            raise SystemExit(f"the queue still has tasks after {DRAIN_TIMEOUT} s")
        time.sleep(0.1)
    return time.monotonic() - started


def _queue_delete(queue: str) -> None:
    """Delete the bench queue and kombu's binding keys for it from Redis DB 5."""
    from omsguard.celery import app as celery_app

    with celery_app.connection_for_write() as broker:
        bound = celery_app.amqp.queues[queue](broker.default_channel)
        # kombu 5.7 removes only the bindings declared on this channel, so declare it first.
        bound.declare()
        bound.delete()


# --- Load --------------------------------------------------------------------------------------


def _post_all(port: int, path: str, bodies: list[bytes], clients: int, token: str) -> dict:
    """POST every body from `clients` threads; record latency and verdict per response."""
    latencies: list[tuple[float, str]] = []
    failures: Counter = Counter()
    lock = threading.Lock()
    indexes = itertools.count()
    headers = {"Content-Type": "application/json", "Authorization": f"Token {token}"}

    def client_loop() -> None:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, failed = [], Counter()
        while (index := next(indexes)) < len(bodies):
            sent = time.monotonic()
            try:
                # gunicorn's sync workers close the connection after each response;
                # http.client then opens a new one for the next request.
                client.request("POST", path, body=bodies[index], headers=headers)
                response = client.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as error:
                failed[type(error).__name__] += 1
                client.close()
                continue
            elapsed = time.monotonic() - sent
            if response.status not in (200, 201):
                failed[f"HTTP {response.status}: {payload[:200]!r}"] += 1
                continue
            mine.append((elapsed, json.loads(payload).get("verdict", "stored")))
        client.close()
        with lock:
            latencies.extend(mine)
            failures.update(failed)

    started = time.monotonic()
    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    for failure, count in failures.most_common(3):
        print(f"failures   {count} on {path}: {failure}")
    return {"seconds": seconds, "latencies": latencies, "failures": sum(failures.values())}


# --- Report ------------------------------------------------------------------------------------


def _percentiles(values: list[float]) -> str:
    if len(values) < 2:
        return "too few responses"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    p50, p95, p99 = (cuts[index] * 1000 for index in (49, 94, 98))
    return f"p50 {p50:6.1f} ms  p95 {p95:6.1f} ms  p99 {p99:6.1f} ms"


def _report(decisions: dict, bare: dict, recorded: list[float], drained: float) -> None:
    decision_rate = len(decisions["latencies"]) / decisions["seconds"]
    bare_rate = len(bare["latencies"]) / bare["seconds"]
    latencies = [seconds for seconds, _ in decisions["latencies"]]
    bare_latencies = [seconds for seconds, _ in bare["latencies"]]

    print(
        f"decisions  {decision_rate:7.0f} /s  {_percentiles(latencies)}  "
        f"failures {decisions['failures']}"
    )
    by_verdict: dict[str, list[float]] = {}
    for seconds, verdict in decisions["latencies"]:
        by_verdict.setdefault(verdict, []).append(seconds)
    for verdict, values in sorted(by_verdict.items()):
        print(f"  {verdict:<20} {len(values):6}  {_percentiles(values)}")
    if recorded:
        server = [milliseconds / 1000 for milliseconds in recorded]
        print(f"  recorded latency_ms (in the server)  {_percentiles(server)}")
    print(
        f"bare DRF   {bare_rate:7.0f} /s  {_percentiles(bare_latencies)}  "
        f"failures {bare['failures']}"
    )
    median_ratio = statistics.median(latencies) / statistics.median(bare_latencies)
    print(
        f"ratio      decisions run at {decision_rate / bare_rate:.2f}x the bare insert's "
        f"throughput, with {median_ratio:.1f}x its p50 latency"
    )
    print(f"worker     queue of breaker checks empty {drained:.1f} s after the last decision")


if __name__ == "__main__":
    main()
