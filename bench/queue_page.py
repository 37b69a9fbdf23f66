"""Benchmark the review queue pages on a large database: 1,000,000 orders, 100,000 open items.

    .venv/bin/python bench/queue_page.py [--quick] [--orders N] [--open-items M] [--requests R]
        [--no-vacuum]

Creates the database omsguard_bench_queue_page as a clone of the migrated bench template
(bench/harness.py) and drops it at the end, also when the run fails. The seed first runs the
real hygiene checks on one template order, so every review item kind carries the source data
and proposal the application writes, then copies the template rows with
`INSERT ... SELECT ... FROM generate_series` in a few statements:

- N deliveries and N orders (one line and one timeline event each, one audit entry each);
- M open review items on the first M orders, spread over the kinds the template produced plus
  unusual routing, and M decided items on the next M orders (the "similar past decisions");
- four more timeline events on each order with an open item.

After the seed it runs ANALYZE and, unless --no-vacuum, VACUUM on the review items, as
autovacuum would some time after a bulk insert; it prints the per-kind summary's scan.

Then it logs in a CS manager and requests each page with the Django test client, in this
process, DEBUG off, Celery tasks eager and the cache in memory. No HTTP server or socket is
involved, so the figures are the Django request time: middleware, views, queries, templates.

- /healthz, one `SELECT 1` through the same middleware and client: the baseline;
- /queue/ (the landing page with the counts per queue);
- /queue/all/ and /queue/high_value/ (the first page of open items);
- /queue/items/<id>/ for open items of every kind, in turn;
- /orders/<id>/history/ for orders that have an open item.

Each page gets 5 warm-up requests, then R timed requests one after another. At full size the
queue is large enough for the pages to cache their per-kind counts (reviews.selectors,
OMSGUARD_QUEUE_SUMMARY_CACHE_SECONDS), so most timed requests read the counts from the cache
and one every few seconds counts again, as in production. Figures: each
page's p95 (target under 150 ms), its SQL queries per request, and the change in its query
count between the template order's few items (before the bulk seed) and the seeded size, which
must be 0. Full size is 1,000,000 orders, 100,000 open items and 100 requests per page;
`--quick` is 20,000 orders, 2,000 open items and 20 requests per page.
"""

import argparse
import os
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

PART = "queue_page"
DATABASE_NAME = harness.part_database("queue_page")
WARM_UP_REQUESTS = 5
MANAGER = "bench-manager"
LATENCY_LIMIT_MS = 150
BASELINE = "/healthz"

sys.path.insert(0, str(harness.REPO_ROOT))
# Set before Django loads its settings: no Redis (tasks run eagerly and the cache is in memory),
# DEBUG off so no SQL piles up in memory, plain HTTP for the test client.
os.environ["DATABASE_URL"] = harness.database_url(DATABASE_NAME)
os.environ.pop("REDIS_URL", None)
os.environ["DEBUG"] = "0"
os.environ["SECURE_SSL_REDIRECT"] = "0"
os.environ["LOG_LEVEL"] = "WARNING"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omsguard.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
# WhiteNoise warns that STATIC_ROOT has no files; the pages are measured without static files.
warnings.filterwarnings("ignore", message="No directory at")


def main() -> None:
    arguments = _arguments()
    try:
        harness.database_create(DATABASE_NAME)
        import django

        django.setup()
        _settings_for_test_client()
        print(f"database   postgresql {DATABASE_NAME} ({os.cpu_count()} CPUs)")

        templates = _seed_templates()
        client = _client()
        few = _query_counts(client, _count_urls(templates))
        _seed_bulk(
            templates,
            orders=arguments.orders,
            open_items=arguments.open_items,
            vacuum=arguments.vacuum,
        )
        many = _query_counts(client, _count_urls(templates))
        print(f"summary    {_summary_plan()}")
        results = _measure(client, arguments.requests)
    finally:
        _close_django_connections()
        harness.database_drop(DATABASE_NAME)

    harness.emit(_figures(results, few, many, arguments))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 orders, 2,000 open items.")
    parser.add_argument("--orders", type=int, help="Orders to seed (default 1,000,000).")
    parser.add_argument("--open-items", type=int, help="Open review items (default 100,000).")
    parser.add_argument("--requests", type=int, help="Timed requests per page (default 100).")
    parser.add_argument(
        "--no-vacuum",
        dest="vacuum",
        action="store_false",
        help="Skip the VACUUM of the review items after the seed (no visibility map yet).",
    )
    arguments = parser.parse_args()
    quick = harness.quick_mode()
    arguments.orders = arguments.orders or (20_000 if quick else 1_000_000)
    arguments.open_items = arguments.open_items or (2_000 if quick else 100_000)
    arguments.requests = arguments.requests or (20 if quick else 100)
    if arguments.open_items * 2 > arguments.orders:
        parser.error("--orders must be at least twice --open-items (open and decided items)")
    if arguments.requests < 10:
        parser.error("--requests must be at least 10")
    return arguments


def _close_django_connections() -> None:
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def _settings_for_test_client() -> None:
    from django.conf import settings

    # The test client sends Host: testserver; the manifest storage would need collectstatic.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # The seeded address items email their customers; keep those messages in memory.
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


# --- Seed --------------------------------------------------------------------------------------

BAD_ADDRESS = {
    "name": "Ada Quill",
    "address1": "12 Birch Lane",
    "city": "Austin",
    "province_code": "TX",
    "zip": "94105",
    "country_code": "US",
}


def _seed_templates() -> dict:
    """Run the hygiene checks on one order that trips every check; return the row ids to copy.

    The order is above the escalation limit, from a priority customer, with a bad ZIP code and
    an unmapped line, so it opens high value, priority customer, address and unmapped SKU items.
    """
    from django.contrib.auth.models import Group, User
    from django.db import transaction
    from django.utils import timezone

    from catalog.models import Channel, ChannelKind, ChannelSkuMapping, ExternalIdKind, Sku
    from inventory.models import Location, LocationKind, StockLevel
    from orders.models import Delivery, Order, OrderLine, OrderStatus, PriorityCustomer
    from orders.pipeline import order_check_hygiene
    from reviews.models import ReviewItem

    channel = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="bench", webhook_secret="s")
    warehouse = Location.objects.create(code="bench-wh", name="Bench", kind=LocationKind.WAREHOUSE)
    skus = []
    for index in range(20):
        sku = Sku.objects.create(
            code=f"BENCH-TEE-{index:02}",
            title=f"Bench Cotton T-Shirt {index:02}",
            price=Decimal("19.99"),
            currency="USD",
        )
        ChannelSkuMapping.objects.create(
            channel=channel, id_kind=ExternalIdKind.SKU, external_id=sku.code, sku=sku
        )
        StockLevel.objects.create(
            sku=sku, location=warehouse, on_hand=1_000_000, counted_at=timezone.now()
        )
        skus.append(sku)
    PriorityCustomer.objects.create(channel=channel, customer_id="bench-vip", note="Bench VIP")
    manager = User.objects.create_user(username=MANAGER, password="bench-pass")
    manager.groups.add(Group.objects.get(name="cs_manager"))

    with transaction.atomic():
        delivery = Delivery.objects.create(
            channel=channel,
            delivery_id="template",
            topic="orders/create",
            body=b"{}",
            signature_valid=True,
        )
        order = Order.objects.create(
            channel=channel,
            channel_order_id="template",
            order_number="#T1",
            delivery=delivery,
            status=OrderStatus.RECEIVED,
            currency="USD",
            subtotal=Decimal("1499.00"),
            shipping_total=Decimal("5.00"),
            tax_total=Decimal("0"),
            discount_total=Decimal("0"),
            total=Decimal("1504.00"),
            customer_id="bench-vip",
            customer_email="vip@example.com",
            customer_name="Ada Quill",
            shipping_address=BAD_ADDRESS,
            shipping_lines=[{"code": "UPS Ground", "title": "UPS Ground", "price": "5.00"}],
        )
        mapped = OrderLine.objects.create(
            order=order,
            position=1,
            channel_sku=skus[0].code,
            title=skus[0].title,
            quantity=1,
            unit_price=Decimal("19.99"),
            sku=skus[0],
            raw={"sku": skus[0].code},
        )
        unmapped = OrderLine.objects.create(
            order=order,
            position=2,
            channel_sku="BENCH-TEE-UNKNOWN",
            title="Bench Cotton T-Shirt - Unknown",
            quantity=1,
            unit_price=Decimal("1479.01"),
            raw={"sku": "BENCH-TEE-UNKNOWN"},
        )
        order_check_hygiene(order=order)

    items = {item.kind: item.pk for item in ReviewItem.objects.filter(order=order)}
    print(f"templates  {', '.join(sorted(items))} items from the hygiene checks")
    return {
        "channel": channel.pk,
        "delivery": delivery.pk,
        "order": order.pk,
        "mapped_line": mapped.pk,
        "unmapped_line": unmapped.pk,
        "items": items,
        "manager": manager.pk,
    }


def _seed_bulk(templates: dict, *, orders: int, open_items: int, vacuum: bool) -> None:
    from django.db import connection, transaction

    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        _copy_rows(
            cursor,
            "orders_delivery",
            "FROM orders_delivery t, generate_series(1, %(n)s) g WHERE t.id = %(delivery)s",
            {
                "delivery_id": "'bench-' || g",
                "received_at": "now() - g * interval '1 second'",
            },
            {"n": orders, "delivery": templates["delivery"]},
        )
        _step("deliveries", orders, started)
        _copy_rows(
            cursor,
            "orders_order",
            "FROM orders_order t, orders_delivery d "
            "WHERE t.id = %(order)s AND d.delivery_id LIKE 'bench-%%'",
            {
                "delivery_id": "d.id",
                "channel_order_id": "d.delivery_id",
                "order_number": "'#' || substr(d.delivery_id, 7)",
                "status": "'ready'",
                "hold_reasons": "'[]'::jsonb",
                "flags": "'[]'::jsonb",
                "total": "(d.id %% 2000) + 0.99",
                "customer_id": "'c' || d.id",
                "customer_email": "'c' || d.id || '@example.com'",
                "created_at": "d.received_at",
                "updated_at": "d.received_at",
            },
            {"order": templates["order"]},
        )
        _step("orders", orders, started)
        cursor.execute(
            "CREATE TEMP TABLE bench_orders ON COMMIT DROP AS "
            "SELECT id, created_at, row_number() OVER (ORDER BY id) AS rn FROM orders_order "
            "WHERE channel_order_id LIKE 'bench-%'"
        )
        cursor.execute("CREATE INDEX ON bench_orders (rn)")
        _copy_rows(
            cursor,
            "orders_orderline",
            "FROM orderline_template t, bench_orders o",
            {
                "order_id": "o.id",
                "sku_id": "t.sku_id + (o.id %% 20)",
                "channel_sku": "'BENCH-TEE-' || lpad((o.id %% 20)::text, 2, '0')",
            },
            {},
            source="orders_orderline WHERE id = %(line)s",
            source_params={"line": templates["mapped_line"]},
        )
        _step("order lines", orders, started)
        _seed_events_and_audit(cursor, open_items)
        _step("events and audit entries", orders + open_items * 4, started)
        _seed_items(cursor, templates, open_items)
        _step("review items", open_items * 2, started)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        if vacuum:
            # What autovacuum does some time after a bulk insert: it sets the visibility map,
            # which lets the per-kind summary read only its index (an index-only scan).
            cursor.execute("VACUUM reviews_reviewitem")
    print(f"seeded     in {time.monotonic() - started:.1f} s")


def _copy_rows(
    cursor,
    table: str,
    from_clause: str,
    overrides: dict[str, str],
    params: dict,
    *,
    source: str = "",
    source_params: dict | None = None,
) -> None:
    """INSERT copies of a template row: every column from `t`, except the overridden ones.

    With `source`, the template row is first put in a temporary table named after `from_clause`
    (e.g. "orderline_template"), for copies that join the template with another table.
    """
    if source:
        alias = from_clause.split()[1]
        cursor.execute(
            f"CREATE TEMP TABLE {alias} ON COMMIT DROP AS SELECT * FROM {source}", source_params
        )
    cursor.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = %s AND column_name <> 'id' ORDER BY ordinal_position",
        [table],
    )
    columns = [row[0] for row in cursor.fetchall()]
    values = [overrides.get(column, f't."{column}"') for column in columns]
    names = ", ".join(f'"{column}"' for column in columns)
    cursor.execute(
        f"INSERT INTO {table} ({names}) SELECT {', '.join(values)} {from_clause}", params
    )


def _seed_events_and_audit(cursor, open_items: int) -> None:
    cursor.execute(
        "INSERT INTO orders_orderevent (order_id, kind, message, actor_kind, data, created_at) "
        "SELECT id, 'order.ready', 'Ready for fulfilment.', 'system', '{}'::jsonb, created_at "
        "FROM bench_orders"
    )
    cursor.execute(
        "INSERT INTO orders_orderevent (order_id, kind, message, actor_kind, data, created_at) "
        "SELECT o.id, 'order.note', 'Bench event ' || g, 'system', '{}'::jsonb, "
        "o.created_at + g * interval '1 minute' "
        "FROM bench_orders o, generate_series(1, 4) g WHERE o.rn <= %s",
        [open_items],
    )
    cursor.execute(
        "INSERT INTO guardrails_auditentry (actor_kind, actor_label, action, target_type, "
        "target_id, reason, after, created_at) "
        "SELECT 'system', 'ingestion hygiene', 'order.ready', 'order', id::text, '', "
        '\'{"status": "ready"}\'::jsonb, created_at FROM bench_orders'
    )


def _seed_items(cursor, templates: dict, open_items: int) -> None:
    """Open items on the first `open_items` orders, decided ones on the next as many."""
    kinds = sorted(templates["items"])
    # Unusual routing has the same release proposal as a high-value item.
    sources = [(kind, templates["items"][kind]) for kind in kinds]
    if "high_value" in templates["items"]:
        sources.append(("routing", templates["items"]["high_value"]))
    for index, (kind, item_id) in enumerate(sources):
        line = "l.id" if kind == "unmapped_sku" else "NULL"
        for status, offset in (("open", 0), ("accepted", open_items)):
            decided = status != "open"
            _copy_rows(
                cursor,
                "reviews_reviewitem",
                "FROM reviews_reviewitem t, bench_orders o "
                "JOIN orders_orderline l ON l.order_id = o.id "
                "WHERE t.id = %(item)s AND o.rn > %(offset)s AND o.rn <= %(offset)s + %(count)s "
                "AND o.rn %% %(kinds)s = %(index)s",
                {
                    "kind": f"'{kind}'",
                    "status": f"'{status}'",
                    "order_id": "o.id",
                    "order_line_id": line,
                    "created_at": "o.created_at",
                    "due_at": "o.created_at + interval '4 hours'",
                    "order_version": "1",
                    "decided_by_id": str(templates["manager"]) if decided else "NULL",
                    "decided_at": "o.created_at + interval '1 hour'" if decided else "NULL",
                    "decision": "'{\"released\": true}'::jsonb" if decided else "NULL",
                    "assignee_id": "NULL",
                    "claimed_until": "NULL",
                },
                {
                    "item": item_id,
                    "offset": offset,
                    "count": open_items,
                    "kinds": len(sources),
                    "index": index,
                },
            )


def _step(label: str, count: int, started: float) -> None:
    print(f"  {label:<26} {count:>10,}  ({time.monotonic() - started:6.1f} s since start)")


# --- Measure -----------------------------------------------------------------------------------


@contextmanager
def _query_counter(counts: list[int], timings: dict[str, list[float]]):
    """Count the queries of one request, and add each statement's duration to `timings`."""
    from django.db import connection

    def count(execute, sql, params, many, context):
        counts[-1] += 1
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.setdefault(sql, []).append(time.perf_counter() - started)

    with connection.execute_wrapper(count):
        yield


def _client():
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.get(username=MANAGER))
    return client


def _count_urls(templates: dict) -> dict[str, list[str]]:
    """The URLs whose query counts are compared before and after the bulk seed, per page.

    The same template order and items both times, so only the size of the database changes.
    """
    return {
        "/queue/ (landing)": ["/queue/"],
        "/queue/all/": ["/queue/all/"],
        "/queue/high_value/": ["/queue/high_value/"],
        "/queue/items/<id>/": [f"/queue/items/{pk}/" for pk in templates["items"].values()],
        "/orders/<id>/history/": [f"/orders/{templates['order']}/history/"],
    }


def _query_counts(client, pages: dict[str, list[str]]) -> dict[str, list[int]]:
    """Queries of one request to each URL, after one request that fills the caches.

    The per-kind counts are cached only on a large queue, so each counted request starts
    without them: both sizes then count the same queries, those of a request that counts.
    """
    from django.core.cache import cache

    from reviews.selectors import review_queue_summary_forget

    # The bulk seed writes with SQL, past the code that invalidates cached counts.
    cache.clear()
    counts = {}
    for name, urls in pages.items():
        counts[name] = []
        for url in urls:
            client.get(url)
            review_queue_summary_forget()
            queries: list[int] = [0]
            with _query_counter(queries, {}):
                response = client.get(url)
            if response.status_code != 200:
                raise SystemExit(f"GET {url} failed with status {response.status_code}")
            counts[name].append(queries[0])
    return counts


def _summary_plan() -> str:
    """Return the scan lines of the per-kind summary's plan, such as its heap fetches."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from reviews.selectors import review_queue_summary

    with CaptureQueriesContext(connection) as captured:
        review_queue_summary()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, TIMING OFF) " + captured.captured_queries[-1]["sql"])
        lines = [row[0].strip(" ->") for row in cursor.fetchall()]
    return "; ".join(line for line in lines if "Scan" in line or "Heap Fetches" in line)


def _pages(requests: int) -> dict[str, list[str]]:
    """List the URLs of each measured page; items and orders rotate through all open kinds."""
    from reviews.models import ReviewItem, ReviewStatus

    open_items = list(
        ReviewItem.objects.filter(status=ReviewStatus.OPEN, order__channel__code="bench")
        .order_by("?")
        .values_list("pk", "order_id")[:requests]
    )
    return {
        BASELINE: ["/healthz"] * requests,
        "/queue/ (landing)": ["/queue/"] * requests,
        "/queue/all/": ["/queue/all/"] * requests,
        "/queue/high_value/": ["/queue/high_value/"] * requests,
        "/queue/items/<id>/": [f"/queue/items/{pk}/" for pk, _ in open_items],
        "/orders/<id>/history/": [f"/orders/{order}/history/" for _, order in open_items],
    }


def _measure(client, requests: int) -> dict:
    results = {}
    for name, urls in _pages(requests).items():
        for url in urls[:WARM_UP_REQUESTS]:
            client.get(url)
        latencies, queries, failures, timings = [], [], [], {}
        for url in urls:
            queries.append(0)
            with _query_counter(queries, timings):
                started = time.perf_counter()
                response = client.get(url)
                latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                failures.append(f"{url} {response.status_code}")
        results[name] = {
            "latencies": sorted(latencies),
            "queries": queries,
            "failures": failures,
            "slowest": max(
                timings.items(),
                key=lambda pair: statistics.median(pair[1]),
                default=("(no query)", [0.0]),
            ),
        }
    return results


def _figures(
    results: dict, few: dict[str, list[int]], many: dict[str, list[int]], arguments
) -> list[harness.Figure]:
    size = f"{arguments.orders:,} orders, {arguments.open_items:,} open items"
    if not arguments.vacuum:
        size += ", no VACUUM"
    baseline = results[BASELINE]["latencies"]
    baseline_p95 = harness.percentile(baseline, 0.95) * 1000
    figures = [
        harness.info(
            PART,
            f"{BASELINE} p95 (baseline)",
            baseline_p95,
            "ms",
            detail=f"one SELECT 1 through the same middleware and test client; {size}",
        )
    ]
    for name, result in results.items():
        if name == BASELINE:
            continue
        latencies = result["latencies"]
        sql, durations = result["slowest"]
        # The column list tells little; the tables, conditions and order identify the query.
        tail = sql[max(sql.find(" FROM "), 0) :][:160]
        figures.append(
            harness.at_most(
                PART,
                f"{name} p95",
                harness.percentile(latencies, 0.95) * 1000,
                "ms",
                limit=LATENCY_LIMIT_MS,
                baseline_name=BASELINE,
                baseline_value=baseline_p95,
                detail=(
                    f"p50 {statistics.median(latencies) * 1000:.1f} ms over "
                    f"{len(latencies)} requests ({size}); slowest query p50 "
                    f"{statistics.median(durations) * 1000:.1f} ms: ...{tail}"
                ),
            )
        )
        queries = result["queries"]
        figures.append(
            harness.info(
                PART,
                f"{name} queries per request",
                max(queries),
                "queries",
                detail=f"{min(queries)} to {max(queries)} over the timed requests",
            )
        )
        changes = [after - before for before, after in zip(few[name], many[name], strict=True)]
        figures.append(
            harness.exactly(
                PART,
                f"{name} query count change",
                max(changes, key=abs),
                "queries",
                expected=0,
                detail=f"{few[name]} with the template order's items, {many[name]} at {size}",
            )
        )
    failures = [failure for result in results.values() for failure in result["failures"]]
    figures.append(
        harness.exactly(
            PART,
            "failed requests",
            len(failures),
            "requests",
            expected=0,
            detail="; ".join(failures[:3]),
        )
    )
    return figures


if __name__ == "__main__":
    main()
