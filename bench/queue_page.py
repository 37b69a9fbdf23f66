"""Benchmark the review queue pages on a large database: 1,000,000 orders, 100,000 open items.

Creates the database omsguard_bench_queue on the PostgreSQL server of BENCH_POSTGRES_URL
(default postgres://postgres@127.0.0.1:5432), migrates it and seeds it, then drops it at the
end. The seed first runs the real hygiene checks on one template order, so every review item
kind carries the source data and proposal the application writes, then copies the template
rows with `INSERT ... SELECT ... FROM generate_series` in a few statements:

- N deliveries and N orders (one line and one timeline event each, one audit entry each);
- M open review items on the first M orders, spread over the kinds the template produced plus
  unusual routing, and M decided items on the next M orders (the "similar past decisions");
- four more timeline events on each order with an open item.

Then it logs in a CS manager and requests each page with the Django test client, in this
process (no HTTP server, so no socket or worker queueing is measured), DEBUG off:

- /queue/ (the landing page with the counts per queue);
- /queue/all/ and /queue/high_value/ (the first page of open items);
- /queue/items/<id>/ for open items of every kind, in turn;
- /orders/<id>/history/ for orders that have an open item.

It prints p50/p95/max latency and the SQL queries per request of each page.

    .venv/bin/python bench/queue_page.py [--quick] [--orders N] [--open-items M] [--requests R]

`--quick` seeds 50,000 orders with 5,000 open items.
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

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
DATABASE_NAME = "omsguard_bench_queue"
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
WARM_UP_REQUESTS = 5
MANAGER = "bench-manager"

sys.path.insert(0, str(REPO_ROOT))
# Set before Django loads its settings: the bench database, no Redis (tasks run eagerly and the
# cache is in memory), DEBUG off so no SQL piles up in memory, plain HTTP for the test client.
os.environ["DATABASE_URL"] = f"{SERVER_URL}/{DATABASE_NAME}"
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
    _database_create()
    try:
        import django

        django.setup()
        _settings_for_test_client()
        _migrate()
        print(f"database   postgresql {DATABASE_NAME} ({os.cpu_count()} CPUs)")

        templates = _seed_templates()
        _seed_bulk(templates, orders=arguments.orders, open_items=arguments.open_items)
        results = _measure(arguments.requests)
    finally:
        _close_django_connections()
        _database_drop()

    _report(results)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50,000 orders, 5,000 open items.")
    parser.add_argument("--orders", type=int, help="Orders to seed (default 1,000,000).")
    parser.add_argument("--open-items", type=int, help="Open review items (default 100,000).")
    parser.add_argument("--requests", type=int, help="Timed requests per page (default 100).")
    arguments = parser.parse_args()
    arguments.orders = arguments.orders or (50_000 if arguments.quick else 1_000_000)
    arguments.open_items = arguments.open_items or (5_000 if arguments.quick else 100_000)
    arguments.requests = arguments.requests or (30 if arguments.quick else 100)
    if arguments.open_items * 2 > arguments.orders:
        parser.error("--orders must be at least twice --open-items (open and decided items)")
    if arguments.requests < 10:
        parser.error("--requests must be at least 10")
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


def _migrate() -> None:
    from django.core.management import call_command

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    print(f"migrate    {time.monotonic() - started:.1f} s")


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


def _seed_bulk(templates: dict, *, orders: int, open_items: int) -> None:
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


BASELINE = "/healthz (baseline)"


def _pages(requests: int) -> dict[str, list[str]]:
    """List the URLs of each measured page; items and orders rotate through all open kinds."""
    from reviews.models import ReviewItem, ReviewStatus

    open_items = list(
        ReviewItem.objects.filter(status=ReviewStatus.OPEN, order__channel__code="bench")
        .order_by("?")
        .values_list("pk", "order_id")[:requests]
    )
    return {
        # The baseline: one database round trip through the same middleware and client.
        BASELINE: ["/healthz"] * requests,
        "/queue/ (landing)": ["/queue/"] * requests,
        "/queue/all/": ["/queue/all/"] * requests,
        "/queue/high_value/": ["/queue/high_value/"] * requests,
        "/queue/items/<id>/": [f"/queue/items/{pk}/" for pk, _ in open_items],
        "/orders/<id>/history/": [f"/orders/{order}/history/" for _, order in open_items],
    }


def _measure(requests: int) -> dict:
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.get(username=MANAGER))
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
            "latencies": latencies,
            "queries": queries,
            "failures": failures,
            "slowest": max(
                timings.items(),
                key=lambda pair: statistics.median(pair[1]),
                default=("(no query)", [0.0]),
            ),
        }
    return results


def _report(results: dict) -> None:
    baseline_p50 = statistics.median(results[BASELINE]["latencies"])
    print(
        "page                      p50 ms   p95 ms   max ms   p50/baseline   queries/request"
        "   failures"
    )
    for name, result in results.items():
        latencies = sorted(result["latencies"])
        p50 = statistics.median(latencies)
        p95 = statistics.quantiles(latencies, n=20, method="inclusive")[18]
        queries = sorted(set(result["queries"]))
        query_text = str(queries[0]) if len(queries) == 1 else f"{queries[0]}-{queries[-1]}"
        print(
            f"{name:<24} {p50 * 1000:7.1f}  {p95 * 1000:7.1f}  {latencies[-1] * 1000:7.1f}   "
            f"{p50 / baseline_p50:11.1f}x   {query_text:>15}   {len(result['failures'])}"
        )
        for failure in result["failures"][:3]:
            print(f"    failed: {failure}")
        sql, durations = result["slowest"]
        # The column list tells little; the tables, conditions and order identify the query.
        tail = sql[max(sql.find(" FROM "), 0) :][:220]
        print(f"    slowest query, p50 {statistics.median(durations) * 1000:.1f} ms: ...{tail}")


if __name__ == "__main__":
    main()
