"""Benchmark webhook ingestion: signed acks beside a bare view, processing beside raw inserts.

    .venv/bin/python bench/ingest.py [--quick]

Creates the database omsguard_bench_ingest (a clone of the migrated template), a Shopify
channel whose SKUs are all mapped, and posts copies of samples/shopify/01-normal.json with new
order ids, signed for that channel, so every order ends "ready". gunicorn runs with
deploy/gunicorn.conf.py; Celery uses the bench Redis (harness.REDIS_URL) under the namespace
bench-ingest-<run>. Phases, each measuring one thing:

1. Acks: gunicorn with no Celery worker running. After untimed warm-up requests, N webhooks
   from 32 client threads; their tasks wait in <namespace>.ingest.
2. Baseline (b): the same bodies to /bench/store-body/ (a view that only inserts the body),
   same gunicorn, same client.
3. End to end with 1 worker process (concurrency 1, all four queues): orders/s while it drains
   the batch, and the check that every delivery became exactly one order.
4. A second batch of N, then 2 worker processes (concurrency 1 each): orders/s of the drain.
5. Baseline (a) with 1 and with 2 psycopg connections: the rows processing wrote for the
   first batch (order, lines, order events, audit entries, and the delivery's update), copied
   column for column and written again with one transaction per order.
6. Memory: the RSS of the largest gunicorn process and of the largest worker process.

Processing throughput counts the deliveries finished (their processed_at) after every worker
of the phase answered a ping, over the time from then to the last one. So the seconds a worker
takes to start are not counted.

Sizes: N = 3000 per batch; --quick: N = 150 per batch, still from 32 clients.
"""

import copy
import itertools
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

PART = "ingest"
DATABASE = harness.part_database("ingest")
SAMPLE = harness.REPO_ROOT / "samples" / "shopify" / "01-normal.json"
SECRET = "bench-webhook-secret"
CLIENTS = 32
WARM_UP_REQUESTS = 40
DRAIN_TIMEOUT = 600
# The tables processing writes rows to for an order that goes straight to "ready". The bench
# checks that no other table grew, so that baseline (a) leaves out no row the product writes.
PROCESSING_TABLES = (
    "orders_order",
    "orders_orderline",
    "orders_orderevent",
    "guardrails_auditentry",
)


STARTED = time.monotonic()


def _progress(message: str) -> None:
    print(f"{time.monotonic() - STARTED:6.1f} s  {message}", flush=True)


def main() -> None:
    quick = harness.quick_mode()
    size = 150 if quick else 3000
    run = uuid.uuid4().hex[:8]
    namespace = f"bench-ingest-{run}"
    log_dir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    processes: list = []
    try:
        os.environ["DATABASE_URL"] = harness.database_create(DATABASE)
        os.environ["REDIS_URL"] = harness.REDIS_URL
        # DEBUG would keep every SQL statement of the bench process in memory.
        os.environ["DEBUG"] = "0"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omsguard.settings")
        os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
        import django

        django.setup()
        print(
            f"ingest     N = {size} per batch from {CLIENTS} clients, {os.cpu_count()} CPUs, "
            f"namespace {namespace}, logs {log_dir}"
        )
        figures = _run(size, run, namespace, log_dir, processes)
    finally:
        for process in processes:
            harness.stop(process)
        from omsguard.queues import queue_names

        harness.queues_delete([*queue_names(namespace), namespace])
        _close_django_connections()
        harness.database_drop(DATABASE)
        _progress("cleaned up")
    harness.emit(figures)


def _run(size: int, run: str, namespace: str, log_dir: Path, processes: list) -> list:
    from omsguard.queues import queue_name

    channel = _channel_create("bench-shop")
    _body_table_create()
    environment = harness.server_environment(database=DATABASE, namespace=namespace)
    port = harness.free_port()
    _progress("database ready; starting gunicorn")
    web = harness.gunicorn_start(port, environment, log_dir)
    processes.append(web)
    path = f"/webhooks/shopify/{channel.code}/"

    # Warm-up: every gunicorn worker loads its code, opens its database and Redis
    # connections. Its deliveries and their queued tasks are removed before anything is timed.
    warm = _signed_requests(_bodies(run, "warm", WARM_UP_REQUESTS, offset=900_000))
    harness.post_all(port, path, warm, CLIENTS)
    harness.post_all(port, "/bench/store-body/", _plain(warm), CLIENTS)
    _warm_up_discard(channel, queue_name(namespace, "ingest"))

    _progress("warmed up")
    # 1. Acks, with no worker competing for the CPUs.
    first = _bodies(run, "b1", size, offset=0)
    acks = harness.post_all(port, path, _signed_requests(first), CLIENTS)
    queued = harness.queue_length(queue_name(namespace, "ingest"))
    # 2. Baseline (b): the same bodies to the bare view.
    bare = harness.post_all(port, "/bench/store-body/", _plain(first), CLIENTS)
    not_accepted = size - _deliveries(channel, "b1").count()

    _progress(f"acks {acks.per_second:.0f}/s, bare view {bare.per_second:.0f}/s")
    # 3. End to end, 1 worker process.
    one = _workers_drain(channel, "b1", size, run, namespace, log_dir, processes, count=1)
    lost = _lost_orders(channel, "b1", size)
    if lost:
        raise SystemExit(f"{lost} deliveries of the first batch did not become one order each")
    counts_after_one = _table_counts()

    # 4. Second batch, then 2 worker processes.
    second = _bodies(run, "b2", size, offset=1_000_000)
    acks_second = harness.post_all(port, path, _signed_requests(second), CLIENTS)
    two = _workers_drain(channel, "b2", size, run, namespace, log_dir, processes, count=2)
    lost += _lost_orders(channel, "b2", size)
    web_rss = harness.largest_rss(web.pid)

    _progress("second batch processed")
    # 5. Baseline (a), from the rows processing wrote for the first batch.
    templates = _processing_rows(channel, "b1", counts_after_one)
    raw_one = _raw_inserts(templates, connections=1, code="bench-raw-1")
    raw_two = _raw_inserts(templates, connections=2, code="bench-raw-2")

    _progress(f"baseline (a) {raw_one:.0f} and {raw_two:.0f} orders/s")
    failed = acks.failures((200,)) + not_accepted
    return [
        harness.ratio_at_least(
            PART,
            "signed webhook acks",
            acks.per_second,
            "req/s",
            baseline_name="(b) bare view",
            baseline_value=bare.per_second,
            minimum=0.60,
            detail=(
                f"{size} requests from {CLIENTS} clients, no worker running; "
                f"{queued} tasks waiting in the ingest queue afterwards"
            ),
        ),
        harness.at_most(
            PART,
            "signed webhook ack p95",
            acks.p(0.95),
            "ms",
            limit=30,
            baseline_name="(b) bare view p95",
            baseline_value=bare.p(0.95),
            detail=f"p50 {acks.p(0.50):.1f} ms; bare view p50 {bare.p(0.50):.1f} ms",
        ),
        harness.exactly(
            PART,
            "failed webhook requests",
            failed,
            "requests",
            expected=0,
            detail=f"statuses {dict(acks.statuses)}; errors {acks.errors[:3]}",
        ),
        harness.ratio_at_least(
            PART,
            "orders end to end, 1 worker",
            one["per_second"],
            "orders/s",
            baseline_name="(a) psycopg, 1 connection",
            baseline_value=raw_one,
            minimum=0.15,
            detail=one["detail"],
        ),
        harness.ratio_at_least(
            PART,
            "orders end to end, 2 workers",
            two["per_second"],
            "orders/s",
            baseline_name="(a) psycopg, 2 connections",
            baseline_value=raw_two,
            minimum=0.15,
            detail=two["detail"],
        ),
        harness.info(
            PART,
            "scaling 2 workers / 1 worker",
            two["per_second"] / one["per_second"] if one["per_second"] else 0.0,
            "x",
        ),
        harness.exactly(PART, "lost orders", lost, "orders", expected=0),
        harness.info(
            PART,
            "signed webhook acks, second batch",
            acks_second.per_second,
            "req/s",
            detail=f"p95 {acks_second.p(0.95):.1f} ms; failures {acks_second.failures((200,))}",
        ),
        harness.at_most(PART, "web process RSS", web_rss, "MB", limit=250),
        harness.at_most(
            PART,
            "worker process RSS",
            max(one["rss"], two["rss"]),
            "MB",
            limit=250,
            detail=f"1-worker run {one['rss']:.0f} MB, 2-worker run {two['rss']:.0f} MB",
        ),
    ]


# --- Data -------------------------------------------------------------------------------------


def _sample() -> dict:
    return json.loads(SAMPLE.read_text())


def _channel_create(code: str):
    """Create a Shopify channel with one SKU mapped for each line SKU of the sample."""
    from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind, Sku

    channel = Channel.objects.create(kind=ChannelKind.SHOPIFY, code=code, webhook_secret=SECRET)
    for index, line in enumerate(_sample()["line_items"]):
        sku = Sku.objects.create(
            code=f"BENCH-{code}-{index}", title=line["name"], price=line["price"], currency="USD"
        )
        ChannelSkuMapping.objects.create(
            channel=channel, id_kind=ExternalIdKind.SKU, external_id=line["sku"], sku=sku
        )
    return channel


def _bodies(run: str, batch: str, count: int, *, offset: int) -> list[tuple[str, bytes]]:
    """(webhook id, body) pairs: the sample with a new order id and number each."""
    sample = _sample()
    bodies = []
    for index in range(count):
        payload = copy.deepcopy(sample)
        payload["id"] = 9_000_000_000_000 + offset + index
        payload["name"] = f"#{batch}-{index}"
        bodies.append((f"{batch}-{run}-{index}", json.dumps(payload).encode()))
    return bodies


def _signed_requests(bodies: list[tuple[str, bytes]]) -> list[tuple[dict[str, str], bytes]]:
    from django.utils import timezone

    from orders.adapters.shopify import signature_for

    # Triggered "now" as Shopify sends it; the webhook's age limit is minutes, the bench seconds.
    triggered_at = timezone.now().isoformat(timespec="milliseconds")
    return [
        (
            {
                "Content-Type": "application/json",
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Hmac-Sha256": signature_for(body, SECRET),
                "X-Shopify-Webhook-Id": webhook_id,
                "X-Shopify-Event-Id": f"event-{webhook_id}",
                "X-Shopify-Triggered-At": triggered_at,
            },
            body,
        )
        for webhook_id, body in bodies
    ]


def _plain(requests: list[tuple[dict[str, str], bytes]]) -> list[tuple[dict[str, str], bytes]]:
    return [({"Content-Type": "application/json"}, body) for _headers, body in requests]


def _body_table_create() -> None:
    from django.db import connection

    from omsguard.bench_views import BENCH_BODY_TABLE

    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {BENCH_BODY_TABLE} (id bigserial PRIMARY KEY, body bytea)")


def _warm_up_discard(channel, ingest_queue: str) -> None:
    """Drop the warm-up deliveries and their queued tasks (the only tasks queued so far)."""
    import redis

    with redis.Redis.from_url(harness.REDIS_URL, socket_timeout=5) as client:
        client.delete(ingest_queue)
    _deliveries(channel, "warm").delete()


def _deliveries(channel, batch: str):
    from orders.models import Delivery

    return Delivery.objects.filter(channel=channel, delivery_id__startswith=f"{batch}-")


def _lost_orders(channel, batch: str, size: int) -> int:
    """Deliveries of the batch without exactly one order of their own."""
    from orders.models import Order

    orders = Order.objects.filter(channel=channel, delivery__delivery_id__startswith=f"{batch}-")
    return size - orders.values("delivery").distinct().count()


def _close_django_connections() -> None:
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # noqa: BLE001 - Django may not be set up when the run failed early.
        pass


# --- Workers ----------------------------------------------------------------------------------


def _workers_drain(
    channel,
    batch: str,
    size: int,
    run: str,
    namespace: str,
    log_dir: Path,
    processes: list,
    *,
    count: int,
) -> dict:
    """Start `count` worker processes, wait until the batch is processed, stop them."""
    from django.db.models import Count, Max
    from django.utils import timezone

    from omsguard.queues import queue_names
    from orders.models import DeliveryOutcome

    environment = harness.server_environment(database=DATABASE, namespace=namespace)
    started = time.monotonic()
    workers: list = []
    failures: list[BaseException] = []

    def start(number: int) -> None:
        try:
            workers.append(
                harness.worker_start(
                    queues=queue_names(namespace),
                    nodename=f"bench-ingest-{batch}-{number}-{run}@127.0.0.1",
                    environment=environment,
                    log_dir=log_dir,
                    concurrency=1,
                )
            )
        except BaseException as error:  # noqa: BLE001 - raised again below, in this thread
            failures.append(error)

    # Started side by side, so that the workers begin at about the same time.
    starters = [threading.Thread(target=start, args=(n,)) for n in range(1, count + 1)]
    for starter in starters:
        starter.start()
    for starter in starters:
        starter.join()
    processes.extend(workers)
    if failures:
        raise failures[0]
    ready = timezone.now()

    pending = _deliveries(channel, batch).filter(outcome=DeliveryOutcome.RECEIVED)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while pending.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"batch {batch} still unprocessed after {DRAIN_TIMEOUT} s")
        time.sleep(0.1)
    wall = time.monotonic() - started
    rss = max(harness.largest_rss(worker.pid) for worker in workers)
    for worker in workers:
        harness.stop(worker)
        processes.remove(worker)

    # Counted from the moment every worker replied to its ping: the orders finished after it,
    # over the time until the last one finished. Orders a worker finished while another was
    # still starting are left out, so the figure is the rate of all `count` workers.
    after = _deliveries(channel, batch).filter(processed_at__gt=ready)
    span = after.aggregate(last=Max("processed_at"), orders=Count("id"))
    seconds = (span["last"] - ready).total_seconds() if span["orders"] else 0.0
    outcomes = dict(
        _deliveries(channel, batch).values_list("outcome").annotate(Count("id")).order_by()
    )
    per_second = span["orders"] / seconds if seconds > 0 else 0.0
    detail = (
        f"{span['orders']} of {size} orders finished in {seconds:.1f} s after "
        f"{'all workers were' if count > 1 else 'the worker was'} ready "
        f"({wall:.1f} s including the start); outcomes {outcomes}"
    )
    _progress(f"drained with {count} worker(s): {detail}")
    return {"per_second": per_second, "rss": rss, "detail": detail}


# --- Baseline (a) -----------------------------------------------------------------------------


def _table_counts() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_tup_ins FROM pg_stat_user_tables WHERE n_tup_ins > 0 "
            "OR relname = ANY(%s)",
            [list(PROCESSING_TABLES)],
        )
        return dict(cursor.fetchall())


def _processing_rows(channel, batch: str, counts_after_one: dict[str, int]) -> list[dict]:
    """Per order of the batch: its order, line, event and audit rows, without ids.

    Also checks, from PostgreSQL's insert counters, that the first drain inserted rows only
    into PROCESSING_TABLES; the statistics lag by up to a second, so this is a safeguard for
    changes of the pipeline, not an exact audit.
    """
    from django.db import connection

    from orders.models import Order

    orders = list(
        Order.objects.filter(
            channel=channel, delivery__delivery_id__startswith=f"{batch}-"
        ).values_list("pk", flat=True)
    )
    with connection.cursor() as cursor:
        columns = {table: _columns(cursor, table) for table in PROCESSING_TABLES}
        rows: dict[int, dict] = {pk: {table: [] for table in PROCESSING_TABLES} for pk in orders}
        for table, key in (
            ("orders_order", "id"),
            ("orders_orderline", "order_id"),
            ("orders_orderevent", "order_id"),
        ):
            cursor.execute(
                f"SELECT {key}, {', '.join(columns[table])} FROM {table} "  # noqa: S608
                f"WHERE {key} = ANY(%s) ORDER BY id",
                [orders],
            )
            for owner, *values in cursor.fetchall():
                rows[owner][table].append(values)
        cursor.execute(
            "SELECT target_id, " + ", ".join(columns["guardrails_auditentry"]) + " "
            "FROM guardrails_auditentry WHERE target_type = 'order' AND target_id = ANY(%s) "
            "ORDER BY id",
            [[str(pk) for pk in orders]],
        )
        for target_id, *values in cursor.fetchall():
            rows[int(target_id)]["guardrails_auditentry"].append(values)
    for table, count in _table_counts().items():
        grew = count - counts_after_one.get(table, 0)
        if table not in PROCESSING_TABLES and table != "orders_delivery" and grew > 0:
            print(f"note       processing also inserted {grew} rows into {table}")
    return [{"columns": columns, **rows[pk]} for pk in orders]


def _columns(cursor, table: str) -> list[str]:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "AND column_name <> 'id' ORDER BY ordinal_position",
        [table],
    )
    return [name for (name,) in cursor.fetchall()]


def _raw_inserts(templates: list[dict], *, connections: int, code: str) -> float:
    """Write every order's rows with psycopg, one transaction per order; return orders/s.

    Each transaction marks its own received delivery processed (inserted beforehand, untimed,
    as the webhook would have), inserts the order, then its lines, events and audit entries
    with one multi-row INSERT each.
    """
    import psycopg
    from django.db import connection
    from psycopg.types.json import Jsonb

    from catalog.models import Channel, ChannelKind

    channel = Channel.objects.create(kind=ChannelKind.SHOPIFY, code=code, webhook_secret=SECRET)
    params = connection.get_connection_params()
    columns = templates[0]["columns"]
    with psycopg.connect(**params) as setup:
        deliveries = [
            row[0]
            for row in setup.execute(
                "INSERT INTO orders_delivery (channel_id, delivery_id, topic, event_id, headers, "
                "body, signature_valid, received_at, outcome, error, attempts, processed_by) "
                "SELECT %s, 'raw-' || n, 'orders/create', '', '{}'::jsonb, ''::bytea, true, "
                "now(), 'received', '', 0, '' FROM generate_series(1, %s) AS n RETURNING id",
                [channel.pk, len(templates)],
            ).fetchall()
        ]

    def adapt(value):
        return Jsonb(value) if isinstance(value, dict | list) else value

    def statement(table: str, count: int) -> str:
        names = columns[table]
        row = "(" + ", ".join(["%s"] * len(names)) + ")"
        return f"INSERT INTO {table} ({', '.join(names)}) VALUES " + ", ".join([row] * count)

    jobs = []
    order_columns = columns["orders_order"]
    for template, delivery_pk in zip(templates, deliveries, strict=True):
        (order,) = template["orders_order"]
        values = dict(zip(order_columns, order, strict=True))
        values |= {"channel_id": channel.pk, "delivery_id": delivery_pk}
        jobs.append((delivery_pk, [adapt(value) for value in values.values()], template))
    indexes = itertools.count()
    errors: list[BaseException] = []

    def client_loop() -> None:
        try:
            _client_loop()
        except BaseException as error:  # re-raised below, in the bench's own thread
            errors.append(error)

    def _client_loop() -> None:
        with psycopg.connect(**params) as raw:
            while (index := next(indexes)) < len(jobs):
                delivery_pk, order, template = jobs[index]
                with raw.transaction(), raw.cursor() as cursor:
                    cursor.execute(
                        "UPDATE orders_delivery SET outcome = 'processed', processed_at = now(), "
                        "processed_by = 'raw', attempts = 1, error = '' WHERE id = %s",
                        [delivery_pk],
                    )
                    cursor.execute(
                        statement("orders_order", 1) + " RETURNING id", order, prepare=True
                    )
                    (order_pk,) = cursor.fetchone()
                    for table, owner in (
                        ("orders_orderline", "order_id"),
                        ("orders_orderevent", "order_id"),
                        ("guardrails_auditentry", "target_id"),
                    ):
                        rows = template[table]
                        if not rows:
                            continue
                        at = columns[table].index(owner)
                        own = order_pk if owner == "order_id" else str(order_pk)
                        flat = [
                            adapt(own if position == at else value)
                            for row in rows
                            for position, value in enumerate(row)
                        ]
                        cursor.execute(statement(table, len(rows)), flat)

    started = time.monotonic()
    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    if errors:
        raise errors[0]
    return len(jobs) / seconds


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit("interrupted; started processes were stopped") from None
