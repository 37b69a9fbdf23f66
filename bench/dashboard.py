"""Benchmark the KPI dashboard and its drill-down pages over 1,000,000 orders in 90 days.

    .venv/bin/python bench/dashboard.py [--quick] [--orders N] [--requests R] [--profile]

Creates the database omsguard_bench_dashboard from the migrated template (bench/harness.py)
and drops it at the end. The seed is fast and realistic:

1. The demo history generator (monitoring.demo, the one `seed_demo` uses) writes 90 days of
   invented order history on the five demo channels: orders with lines, events, holds and
   review items, AI decisions with review outcomes and error labels, shipments, fulfilment
   exceptions, returns, chargebacks, channel cancellations and stock counts. Every row is
   one the application can write, with the improving rates of a real installation.
2. SQL then copies every row of those fact tables K times (INSERT ... SELECT with
   generate_series), until there are about N orders. A copy shifts every id by the table's
   largest id, so the foreign keys between copied rows stay consistent. It moves every
   timestamp back by the same number of minutes, so the copies fill the hours the template
   left empty and the rollups get as many rows as real traffic would give them.

Then the daily rollup task's service (monitoring.tasks.kpi_rollups_refresh_days) recomputes
the rollups of those days and one more, timed: the work the dashboard avoids on each
request. Then an ops manager requests, with the Django test client in this process (DEBUG
off, no HTTP server):

- /dashboard/?days=90;
- /dashboard/kpi/<slug>/?days=90, rotating through every KPI;
- /healthz, the baseline: one database round trip through the same middleware and client.

Figures: p95 latency of each page against the 300 ms target, queries per request and the
refresh time. `--quick` seeds 20,000 orders over 30 days and times 10 requests per page. At
that size the refresh's fixed cost per day (some 25 queries) dominates, and 90 days of it
would take most of the CI budget.
"""

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import harness  # noqa: E402

PART = "dashboard"
DATABASE = harness.part_database("dashboard")
TARGET_MS = 300
WARM_UP_REQUESTS = 3
HISTORY_DAYS = 90
QUICK_HISTORY_DAYS = 30
MANAGER = "bench-ops"
DEMO_CHANNELS = {
    "demo-shop": "shopify",
    "demo-amazon": "amazon",
    "demo-woo": "woocommerce",
    "demo-ebay": "ebay",
    "demo-square": "square",
}
# The fact tables the demo history writes, which the seed copies. Other tables (channels,
# SKUs, actions, users) are shared by every copy.
FACT_TABLES = (
    "orders_delivery",
    "orders_order",
    "orders_orderline",
    "orders_orderevent",
    "reviews_reviewitem",
    "guardrails_decision",
    "orders_shipment",
    "orders_fulfilmentexception",
    "orders_orderreturn",
    "orders_chargeback",
    "inventory_stockevent",
    "inventory_inventorydiscrepancy",
)


def main() -> None:
    arguments = _arguments()
    harness.database_create(DATABASE)
    try:
        _django_setup()
        figures = _run(arguments)
    finally:
        _close_connections()
        harness.database_drop(DATABASE)
    harness.emit(figures)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="20,000 orders over 30 days, 10 requests."
    )
    parser.add_argument("--orders", type=int, help="Orders to seed (default 1,000,000).")
    parser.add_argument("--requests", type=int, help="Timed requests per page (default 50).")
    parser.add_argument(
        "--profile", action="store_true", help="Print the costliest functions of each page."
    )
    arguments = parser.parse_args()
    quick = harness.quick_mode()
    arguments.orders = arguments.orders or (20_000 if quick else 1_000_000)
    arguments.requests = arguments.requests or (10 if quick else 50)
    arguments.days = QUICK_HISTORY_DAYS if quick else HISTORY_DAYS
    return arguments


def _django_setup() -> None:
    os.environ["DATABASE_URL"] = harness.database_url(DATABASE)
    # No Redis: tasks run eagerly and the cache is in memory, as in one web process.
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("OMSGUARD_REPLICA_DATABASE_URL", None)
    os.environ["DEBUG"] = "0"
    os.environ["SECURE_SSL_REDIRECT"] = "0"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omsguard.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-key-not-for-production")
    # WhiteNoise warns that STATIC_ROOT has no files; the pages are measured without them.
    warnings.filterwarnings("ignore", message="No directory at")

    import django

    django.setup()
    from django.conf import settings

    # The test client sends Host: testserver; the manifest storage would need collectstatic.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def _close_connections() -> None:
    if "django" in sys.modules:
        from django.db import connections

        connections.close_all()


def _run(arguments: argparse.Namespace) -> list[harness.Figure]:
    started = time.monotonic()
    template_orders = _seed_history(arguments.orders, days=arguments.days)
    orders = _seed_copies(template_orders, arguments.orders)
    seed_seconds = time.monotonic() - started
    print(f"seeded     {orders:,} orders in {seed_seconds:.1f} s")
    # Fresh statistics, as autovacuum would have after a bulk load, before the refresh plans.
    _analyze()

    from monitoring.tasks import kpi_rollups_refresh_days

    started = time.monotonic()
    # The rollups cover the history and the hours before its first order.
    refresh_days = arguments.days + 1
    rows = kpi_rollups_refresh_days(days=refresh_days)
    refresh_seconds = time.monotonic() - started
    print(f"rollups    {rows:,} rows in {refresh_seconds:.1f} s")
    _analyze()

    results = _measure(arguments.requests, profile=arguments.profile)
    return _figures(
        results,
        orders=orders,
        days=arguments.days,
        refresh_days=refresh_days,
        refresh_seconds=refresh_seconds,
        rows=rows,
    )


# --- Seed -------------------------------------------------------------------------------------


def _seed_history(orders: int, *, days: int) -> int:
    """Write `days` days of demo history, sized so about 100 copies give `orders` orders."""
    from django.contrib.auth.models import Group, User

    from catalog.models import Channel
    from guardrails.defaults import default_policies_load
    from inventory.models import Location
    from monitoring.demo import HistoryStaff, demo_history_load
    from orders.carrier_reference import carrier_reference_load
    from orders.demo import demo_catalog_load
    from orders.models import Order

    started = time.monotonic()
    default_policies_load()
    carrier_reference_load()
    demo_catalog_load()
    for code, kind in DEMO_CHANNELS.items():
        Channel.objects.create(kind=kind, code=code, name=code, webhook_secret="bench")
    Location.objects.create(code="WH-MAIN", name="Main warehouse", kind="warehouse")
    Location.objects.create(code="WH-EAST", name="East warehouse", kind="warehouse")
    staff = {}
    for username, group in (
        ("agent", "cs_agent"),
        ("manager", "cs_manager"),
        (MANAGER, "ops_manager"),
    ):
        user = User.objects.create_user(username=username, password=f"{username}-bench-pass")
        user.groups.add(Group.objects.get(name=group))
        staff[group] = user

    # The demo's per-day range, scaled so the template is about 1 % of the orders (at least
    # 10 a day, so every kind of fact appears in the quick size too).
    daily = max(orders // 100 // days, 10)
    demo_history_load(
        staff=HistoryStaff(
            agent=staff["cs_agent"], manager=staff["cs_manager"], ops=staff["ops_manager"]
        ),
        days=days,
        daily_orders=(daily * 2 // 3, daily * 4 // 3),
    )
    count = Order.objects.count()
    print(f"history    {count:,} template orders in {time.monotonic() - started:.1f} s")
    return count


def _seed_copies(template_orders: int, orders: int) -> int:
    """Copy every fact row until there are about `orders` orders; return the order count."""
    from django.db import connection, transaction

    copies = max(round(orders / template_orders) - 1, 0)
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        # The copies' foreign keys point at copies by construction. Checking them row by row
        # (Django's deferred constraint triggers, at COMMIT) takes longer than the copying.
        cursor.execute("SET LOCAL session_replication_role = replica")
        offsets = {}
        for table in FACT_TABLES:
            cursor.execute(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608
            offsets[table] = cursor.fetchone()[0]
        for table in FACT_TABLES:
            _copy_table(cursor, table, offsets, copies)
            print(f"  {table:<32} x{copies + 1}  ({time.monotonic() - started:6.1f} s)")
        for table in FACT_TABLES:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), "
                f"(SELECT coalesce(max(id), 1) FROM {table}))",  # noqa: S608
                [table],
            )
        cursor.execute("SELECT count(*) FROM orders_order")
        return cursor.fetchone()[0]


def _copy_table(cursor, table: str, offsets: dict[str, int], copies: int) -> None:
    """Insert `copies` copies of every row of `table`, shifting ids, times and unique texts.

    Copy k (1..copies) adds k times the table's largest id to `id` and to each foreign key
    into a copied table, moves every timestamp back by a fixed number of minutes per copy,
    and appends "~k" to the text columns of unique indexes that have no shifted column.
    """
    if not copies:
        return
    cursor.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        [table],
    )
    columns = cursor.fetchall()
    cursor.execute(
        "SELECT a.attname, target.relname FROM pg_constraint c "
        "JOIN pg_class source ON source.oid = c.conrelid "
        "JOIN pg_class target ON target.oid = c.confrelid "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
        "WHERE c.contype = 'f' AND source.relname = %s",
        [table],
    )
    foreign = {column: target for column, target in cursor.fetchall() if target in offsets}
    shifted = {"id"} | set(foreign)
    cursor.execute(
        "SELECT array_agg(a.attname::text) FROM pg_index i "
        "JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey) "
        "WHERE t.relname = %s AND i.indisunique AND NOT i.indisprimary GROUP BY i.indexrelid",
        [table],
    )
    types = dict(columns)
    suffixed: set[str] = set()
    for (index_columns,) in cursor.fetchall():
        if shifted & set(index_columns):
            continue
        texts = [name for name in index_columns if types[name] in ("character varying", "text")]
        if not texts:
            raise SystemExit(f"{table}: cannot copy rows under the unique index on {index_columns}")
        suffixed.update(texts)

    values = []
    for name, data_type in columns:
        if name == "id":
            values.append("t.id + g * %(offset)s")
        elif name in foreign:
            values.append(f't."{name}" + g * {offsets[foreign[name]]}')
        elif name in suffixed:
            values.append(
                f"""CASE WHEN t."{name}" = '' THEN t."{name}" ELSE t."{name}" || '~' || g END"""
            )
        elif data_type == "timestamp with time zone":
            # A different shift per copy, from 7 minutes to almost a day, always into the past.
            values.append(f"""t."{name}" - ((g * 613) %% 1440 + 7) * interval '1 minute'""")
        else:
            values.append(f't."{name}"')
    names = ", ".join(f'"{name}"' for name, _ in columns)
    cursor.execute(
        f"INSERT INTO {table} ({names}) SELECT {', '.join(values)} "  # noqa: S608
        f"FROM {table} t, generate_series(1, %(copies)s) g WHERE t.id <= %(offset)s",
        {"offset": offsets[table], "copies": copies},
    )


def _analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


# --- Measure ----------------------------------------------------------------------------------

BASELINE = "/healthz"
INDEX = "/dashboard/"
DETAIL = "/dashboard/kpi/<slug>/"


def _pages(requests: int) -> dict[str, list[str]]:
    from monitoring.kpis import KPIS

    slugs = sorted(KPIS)
    return {
        BASELINE: ["/healthz"] * requests,
        INDEX: ["/dashboard/?days=90"] * requests,
        DETAIL: [f"/dashboard/kpi/{slugs[n % len(slugs)]}/?days=90" for n in range(requests)],
    }


@contextmanager
def _counted(counts: list[int], timings: dict[str, list[float]]):
    """Count the queries of one request on every alias and time each statement."""
    from django.db import connections

    def count(execute, sql, params, many, context):
        counts[-1] += 1
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timings.setdefault(sql, []).append(time.perf_counter() - started)

    wrappers = [connections[alias].execute_wrapper(count) for alias in connections]
    for wrapper in wrappers:
        wrapper.__enter__()
    try:
        yield
    finally:
        for wrapper in reversed(wrappers):
            wrapper.__exit__(None, None, None)


def _measure(requests: int, *, profile: bool) -> dict[str, dict]:
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.get(username=MANAGER))
    results = {}
    for name, urls in _pages(requests).items():
        # Each KPI page once; the other pages a few times.
        warm_up = list(dict.fromkeys(urls)) if name == DETAIL else urls[:WARM_UP_REQUESTS]
        for url in warm_up:
            client.get(url)
        latencies, queries, failures, timings, cpu = [], [], [], {}, []
        profiler = cProfile.Profile() if profile else None
        for url in urls:
            queries.append(0)
            with _counted(queries, timings):
                if profiler:
                    profiler.enable()
                started, cpu_started = time.perf_counter(), time.process_time()
                response = client.get(url)
                latencies.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
                if profiler:
                    profiler.disable()
            if response.status_code != 200:
                failures.append(f"{url} {response.status_code}")
        results[name] = {
            "latencies": sorted(latencies),
            "cpu": sorted(cpu),
            "queries": queries,
            "failures": failures,
            "per_url": list(zip(urls, latencies, strict=True)),
            "timings": timings,
        }
        if profiler:
            output = io.StringIO()
            pstats.Stats(profiler, stream=output).sort_stats("cumulative").print_stats(30)
            print(f"\n--- profile of {name}\n{output.getvalue()}")
        _print_slowest(name, timings, urls, latencies)
    return results


def _print_slowest(name: str, timings: dict, urls: list[str], latencies: list[float]) -> None:
    total = {sql: sum(durations) for sql, durations in timings.items()}
    print(f"{name}: p50 {harness.percentile(sorted(latencies), 0.5) * 1000:.1f} ms")
    for sql, seconds in sorted(total.items(), key=lambda pair: -pair[1])[:3]:
        tail = sql[max(sql.find(" FROM "), 0) :][:160]
        calls = len(timings[sql])
        print(f"    SQL {seconds / calls * 1000:7.1f} ms x{calls}: ...{tail}")
    slow = sorted(zip(latencies, urls, strict=True), reverse=True)[:3]
    for seconds, url in slow:
        print(f"    slowest {seconds * 1000:7.1f} ms {url}")


def _figures(
    results: dict[str, dict],
    *,
    orders: int,
    days: int,
    refresh_days: int,
    refresh_seconds: float,
    rows: int,
) -> list[harness.Figure]:
    baseline = results[BASELINE]
    baseline_p95 = harness.percentile(baseline["latencies"], 0.95) * 1000
    figures = []
    for name, label in ((INDEX, "dashboard page p95"), (DETAIL, "KPI detail page p95")):
        result = results[name]
        p95 = harness.percentile(result["latencies"], 0.95) * 1000
        figures.append(
            harness.at_most(
                PART,
                label,
                p95,
                "ms",
                limit=TARGET_MS,
                baseline_name="/healthz p95",
                baseline_value=baseline_p95,
                detail=(
                    f"{orders:,} orders over {days} days, ?days=90, "
                    f"{len(result['latencies'])} requests, test client in-process, "
                    f"failures {len(result['failures'])}"
                ),
            )
        )
        figures.append(
            harness.exactly(
                PART,
                f"{label.removesuffix(' p95')} failed requests",
                len(result["failures"]),
                "requests",
                expected=0,
            )
        )
        # The CPU time of this process alone leaves out the database and the waits for a
        # core, so it moves less than the latency when other work shares the machine.
        figures.append(
            harness.info(
                PART,
                f"{label.removesuffix(' p95')} CPU per request p50",
                harness.percentile(result["cpu"], 0.5) * 1000,
                "ms",
                detail="time.process_time() of the bench process around each request",
            )
        )
        queries = result["queries"]
        figures.append(
            harness.info(
                PART,
                f"{label.removesuffix(' p95')} queries per request",
                max(queries),
                "queries",
                detail=f"min {min(queries)}, max {max(queries)}",
            )
        )
    figures.append(
        harness.info(
            PART,
            f"rollup refresh of {refresh_days} days",
            refresh_seconds,
            "s",
            detail=f"kpi_rollups_refresh_days over {orders:,} orders wrote {rows:,} rows",
        )
    )
    return figures


if __name__ == "__main__":
    main()
