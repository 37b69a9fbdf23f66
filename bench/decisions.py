"""Benchmark the decisions API: verdict throughput and latency beside a bare DRF insert.

    .venv/bin/python bench/decisions.py [--quick] [--requests N] [--clients C]

Clones the database omsguard_bench_decisions from the migrated template (which contains the
default policies), seeds one order per request and an integration user with an API token, and
drops the database at the end. Starts gunicorn with deploy/gunicorn.conf.py and one Celery
worker (concurrency 1) on the four queues of a namespace of its own, with the bench Redis as
broker. Celery runs with eager mode off, as in production: decision_propose queues the breaker
check on commit, unless one for the same scopes is waiting, and the worker runs it, so the
measured latency includes publishing that task to Redis but not the check itself. The worker
shares the machine's cores with gunicorn.

C client threads (16 by default) POST /api/v1/decisions/ with a fixed mix of proposals, each
on its own order: carrier choices applied and queued, shipping address corrections queued,
billing address changes blocked and ship date estimates as recommendations. After a warm-up
that is not timed, it measures:

- decisions per second against baseline (c): the same bodies, with the same token
  authentication, POSTed to /bench/insert-row/, a DRF view that inserts the body as one row.
  The baseline runs after the worker has taken every queued breaker check, so the checks do
  not slow it;
- the p95 latency of the decisions, with the baseline's p95 beside it;
- failed requests, and the verdicts the decisions got;
- the latency the server recorded on each decision (Decision.latency_ms);
- the CPU per decision and per bare insert of gunicorn, of the worker and of PostgreSQL (when
  the server runs on this machine);
- the RSS of the largest gunicorn process and of the largest worker process after the run.

Full size: 3000 requests; --quick: 200 requests.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

PART = "decisions"
DATABASE_NAME = harness.part_database("decisions")
FULL_REQUESTS = 3000
QUICK_REQUESTS = 200
CLIENTS = 16
# Untimed requests before each measurement, enough to reach every gunicorn worker (2 x cores
# + 1 by default) a few times. Quick mode sends fewer, to stay within the CI time budget.
WARM_UP_REQUESTS = 64
QUICK_WARM_UP_REQUESTS = 32
DRAIN_TIMEOUT = 300
CPU_DETAILS = {
    "gunicorn": "user and system CPU of the gunicorn processes over the timed requests",
    "Celery worker": "the worker's CPU from the first timed decision until it ran its last "
    "breaker check",
    "PostgreSQL": "every PostgreSQL server process on this machine, over the same time as the "
    "worker's (left out when the server runs elsewhere)",
}
MEMORY_LIMIT_MB = 250


def main() -> None:
    arguments = _arguments()
    run_id = uuid.uuid4().hex[:8]
    namespace = f"bench-{PART}-{run_id}"
    log_dir = Path(tempfile.mkdtemp(prefix=f"bench-{PART}-"))
    processes = []
    figures: list[harness.Figure] = []
    try:
        harness.database_create(DATABASE_NAME)
        # Before django.setup(): the settings read both when they load.
        os.environ["DATABASE_URL"] = harness.database_url(DATABASE_NAME)
        os.environ["REDIS_URL"] = harness.REDIS_URL
        os.environ["DEBUG"] = "0"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omsguard.settings")
        os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
        sys.path.insert(0, str(harness.REPO_ROOT))
        import django

        django.setup()
        from omsguard.queues import queue_names

        print(
            f"requests   {arguments.requests} decisions and {arguments.requests} bare inserts "
            f"from {arguments.clients} clients ({os.cpu_count()} CPUs), log {log_dir}"
        )
        warm_up_count = QUICK_WARM_UP_REQUESTS if harness.quick_mode() else WARM_UP_REQUESTS
        seed = _seed(arguments.requests + warm_up_count)
        environment = harness.server_environment(database=DATABASE_NAME, namespace=namespace)
        port = harness.free_port()
        processes.append(harness.gunicorn_start(port, environment, log_dir))
        processes.append(
            harness.worker_start(
                queues=queue_names(namespace),
                nodename=f"bench-{PART}-{run_id}@127.0.0.1",
                environment=environment,
                log_dir=log_dir,
            )
        )
        web, worker = processes

        headers = {"Content-Type": "application/json", "Authorization": f"Token {seed['token']}"}
        requests = [
            (headers, _proposal(index, order)) for index, order in enumerate(seed["orders"])
        ]
        warm_up, measured = requests[:warm_up_count], requests[warm_up_count:]
        harness.post_all(port, "/api/v1/decisions/", warm_up, arguments.clients)
        harness.post_all(port, "/bench/insert-row/", warm_up, arguments.clients)
        _queue_wait_empty(f"{namespace}.decisions")

        cpu_before = _cpu_reading(web.pid, worker.pid)
        decisions = harness.post_all(port, "/api/v1/decisions/", measured, arguments.clients)
        drained = _queue_wait_empty(f"{namespace}.decisions")
        drained += _worker_wait_idle(worker.pid)
        decisions_cpu = _cpu_per_request(cpu_before, _cpu_reading(web.pid, worker.pid), decisions)
        cpu_before = _cpu_reading(web.pid, worker.pid)
        bare = harness.post_all(port, "/bench/insert-row/", measured, arguments.clients)
        bare_cpu = _cpu_per_request(cpu_before, _cpu_reading(web.pid, worker.pid), bare)
        print(f"worker     took every breaker check {drained:.1f} s after the last decision")

        measured_orders = seed["orders"][warm_up_count:]
        figures = _figures(
            decisions,
            bare,
            clients=arguments.clients,
            verdicts=_verdicts(measured_orders),
            recorded=_recorded_latencies(measured_orders),
            web_rss=harness.largest_rss(web.pid),
            worker_rss=harness.largest_rss(worker.pid),
            cpu_per_request=(decisions_cpu, bare_cpu),
        )
    finally:
        for process in processes:
            harness.stop(process)
        _django_connections_close()
        harness.database_drop(DATABASE_NAME)
        queues = [*_queue_names(namespace), namespace]
        harness.queues_delete(queues)
    harness.emit(figures)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS} requests.")
    parser.add_argument(
        "--requests", type=int, help=f"Decisions to propose (default {FULL_REQUESTS})."
    )
    parser.add_argument(
        "--clients", type=int, default=CLIENTS, help=f"Client threads (default {CLIENTS})."
    )
    arguments = parser.parse_args()
    default = QUICK_REQUESTS if harness.quick_mode() else FULL_REQUESTS
    arguments.requests = arguments.requests or default
    if arguments.requests < 100 or arguments.clients < 1:
        parser.error("--requests must be at least 100 and --clients at least 1")
    return arguments


def _queue_names(namespace: str) -> list[str]:
    # Imported here, as the cleanup also runs when Django never loaded.
    sys.path.insert(0, str(harness.REPO_ROOT))
    from omsguard.queues import queue_names

    return queue_names(namespace)


def _django_connections_close() -> None:
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


# --- Seed data ---------------------------------------------------------------------------------


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


def _seed(count: int) -> dict:
    """Create one ready order per request on one channel, an integration user with a token
    granted that channel, and the baseline's table."""
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


# --- Measurements ------------------------------------------------------------------------------


def _queue_wait_empty(queue: str) -> float:
    """Return the seconds until the worker has taken every task waiting in `queue`."""
    started = time.monotonic()
    while harness.queue_length(queue) > 0:
        if time.monotonic() - started > DRAIN_TIMEOUT:
            raise SystemExit(f"{queue} still has tasks after {DRAIN_TIMEOUT} s")
        time.sleep(0.1)
    return time.monotonic() - started


def _worker_wait_idle(worker_pid: int) -> float:
    """Wait until the worker has run its delayed breaker checks, and return the seconds waited.

    A check starts OMSGUARD_BREAKER_CHECK_DELAY_SECONDS after its decision, so the worker
    takes it off the queue at once and keeps it until then. Idle means no CPU used for half a
    second once that delay is over.
    """
    from django.conf import settings

    started = time.monotonic()
    time.sleep(settings.OMSGUARD_BREAKER_CHECK_DELAY_SECONDS)
    previous = harness.cpu_times(harness.process_tree(worker_pid))
    while time.monotonic() - started < DRAIN_TIMEOUT:
        time.sleep(0.5)
        current = harness.cpu_times(harness.process_tree(worker_pid))
        if harness.cpu_used(previous, current) < 0.01:
            break
        previous = current
    return time.monotonic() - started


def _cpu_reading(web_pid: int, worker_pid: int) -> dict[str, dict[int, float]]:
    return {
        "gunicorn": harness.cpu_times(harness.process_tree(web_pid)),
        "Celery worker": harness.cpu_times(harness.process_tree(worker_pid)),
        "PostgreSQL": harness.cpu_times(harness.postgres_pids()),
    }


def _cpu_per_request(
    before: dict[str, dict[int, float]],
    after: dict[str, dict[int, float]],
    load: harness.LoadResult,
) -> dict[str, float]:
    """Return each process group's CPU milliseconds per request between two readings."""
    return {
        group: harness.cpu_used(before[group], after[group]) / load.requests * 1000
        for group in before
    }


def _verdicts(order_ids: list[int]) -> Counter:
    from guardrails.models import Decision

    rows = Decision.objects.filter(order_id__in=order_ids).values_list("verdict", flat=True)
    return Counter(rows)


def _recorded_latencies(order_ids: list[int]) -> list[float]:
    from guardrails.models import Decision

    rows = Decision.objects.filter(order_id__in=order_ids, latency_ms__isnull=False)
    return sorted(rows.values_list("latency_ms", flat=True))


def _figures(
    decisions: harness.LoadResult,
    bare: harness.LoadResult,
    *,
    clients: int,
    verdicts: Counter,
    recorded: list[float],
    web_rss: float,
    worker_rss: float,
    cpu_per_request: tuple[dict[str, float], dict[str, float]],
) -> list[harness.Figure]:
    baseline = "bare DRF insert (c)"
    mix = ", ".join(f"{verdict} {count}" for verdict, count in verdicts.most_common())
    statuses = ", ".join(f"HTTP {status} x{n}" for status, n in sorted(decisions.statuses.items()))
    errors = f"; client errors: {decisions.errors[:3]}" if decisions.errors else ""
    figures = [
        harness.ratio_at_least(
            PART,
            "decisions per second",
            decisions.per_second,
            "/s",
            baseline_name=baseline,
            baseline_value=bare.per_second,
            minimum=0.50,
            detail=f"{decisions.requests} decisions from {clients} clients",
        ),
        harness.at_most(
            PART,
            "decision p95",
            decisions.p(0.95),
            "ms",
            limit=15,
            baseline_name=baseline,
            baseline_value=bare.p(0.95),
            detail=f"p50 {decisions.p(0.50):.1f} ms; baseline p50 {bare.p(0.50):.1f} ms",
        ),
        harness.exactly(
            PART,
            "failed decision requests",
            decisions.failures(),
            "requests",
            expected=0,
            detail=f"verdicts: {mix}; responses: {statuses}{errors}",
        ),
        harness.exactly(
            PART,
            "failed baseline requests",
            bare.failures(),
            "requests",
            expected=0,
        ),
    ]
    if recorded:
        figures += [
            harness.info(PART, "server latency_ms p50", harness.percentile(recorded, 0.5), "ms"),
            harness.info(PART, "server latency_ms p95", harness.percentile(recorded, 0.95), "ms"),
        ]
    decision_cpu, bare_cpu = cpu_per_request
    for group in decision_cpu:
        if decision_cpu[group] == 0 and bare_cpu[group] == 0:
            continue  # Not measured: PostgreSQL runs on another machine.
        # The bare insert queues no task, so the worker's figure has no baseline to divide by.
        compared = {}
        if bare_cpu[group] > 0:
            compared = {"baseline_name": baseline, "baseline_value": bare_cpu[group]}
        figures.append(
            harness.info(
                PART,
                f"{group} CPU per decision",
                decision_cpu[group],
                "ms",
                detail=CPU_DETAILS[group],
                **compared,
            )
        )
    figures += [
        harness.at_most(
            PART, "gunicorn worker RSS after the run", web_rss, "MB", limit=MEMORY_LIMIT_MB
        ),
        harness.at_most(
            PART, "Celery worker RSS after the run", worker_rss, "MB", limit=MEMORY_LIMIT_MB
        ),
    ]
    return figures


if __name__ == "__main__":
    main()
