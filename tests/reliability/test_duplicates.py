"""Duplicates: signed webhooks, 30 % of them repeats, from 8 clients to a real server and worker.

A gunicorn server and Celery workers run on the test database. Eight client threads share
one plan of webhook sends: every distinct order once, and repeats of earlier webhook ids with
the identical body. Half of the repeats follow their original at once, so two clients send
the same delivery at the same moment. The others come later, as a channel's retry does.
Between the webhooks each client posts stock events of its own SKU through the stock-events
API, and resends events that any client already sent.

The suite proves that every distinct order becomes exactly one order, that no acknowledged
delivery is lost and that each stock event changes on hand once.
"""

import http.client
import itertools
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from django.db.models import Count
from rest_framework.authtoken.models import Token

from catalog.models import Sku
from inventory.models import Reservation, StockEvent, StockLevel
from orders.models import Delivery, DeliveryOutcome, Order, OrderEvent
from tests.conftest import signed_headers
from tests.integration.test_celery_worker import shopify_channel  # noqa: F401 (fixture)
from tests.inventory.conftest import make_inventory_user
from tests.reliability.deliveries import (
    ORDER_SKU,
    order_body,
    wait_until_none_received,
    warehouse_stock_set,
    worker_log_tail,
)
from tests.reliability.figures import figure, sized
from tests.reliability.servers import Server, port_free, server_running
from tests.workers import Worker, queue_for_test, require_services, worker_start, worker_stop

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

SUITE = "duplicates"
SENDS = int(sized(full=10_000, ci=150))
REPEAT_SHARE = 0.30
CLIENTS = 8
# Solo workers on the test's queue. The full size runs two, so processing keeps up with sends.
WORKERS = int(sized(full=2, ci=1))
# One stock event for every STOCK_EVERY webhook sends. REPEAT_SHARE of them are repeats too.
STOCK_EVERY = 10
STOCK_SOURCE = "reliability-pos"
PORTS = range(8630, 8650)
WEBHOOK_PATH = "/webhooks/shopify/shop/"
STOCK_EVENTS_PATH = "/api/v1/stock-events/"
# Generous bounds in seconds for a loaded runner: one worker processes about 20 orders/s on
# an idle 2-CPU machine.
PROCESSING_TIMEOUT = sized(full=1800, ci=120)
CLIENT_TIMEOUT = 60
SEED = 9


@pytest.fixture(autouse=True)
def _services():
    require_services()


def send_plan(*, sends: int, rng: random.Random) -> list[int | None]:
    """The sends in order: an order number per webhook send, None per stock event send.

    Each distinct order is sent once and REPEAT_SHARE of the webhook sends repeat one. A
    repeat's place is a gap after its original: a fraction of a send for half of them (two
    clients take the pair at once), anywhere later for the rest.
    """
    distinct = round(sends * (1 - REPEAT_SHARE))
    keyed = [(float(number), number) for number in range(distinct)]
    for _ in range(sends - distinct):
        original = rng.randrange(distinct)
        at_once = rng.random() < 0.5
        gap = rng.uniform(0.01, 2) if at_once else rng.uniform(2, distinct)
        keyed.append((original + gap, original))
    keyed.sort()

    plan: list[int | None] = []
    for position, (_, number) in enumerate(keyed):
        if position % STOCK_EVERY == STOCK_EVERY - 1:
            plan.append(None)
        plan.append(number)
    return plan


@dataclass
class StockStream:
    """One client's stock events for its own SKU, in version order, as a POS sends them."""

    sku: str
    version: int = 0

    def next_event(self, rng: random.Random) -> dict:
        self.version += 1
        return {
            "source": STOCK_SOURCE,
            "event_id": f"{self.sku}-v{self.version}",
            "sku": self.sku,
            "location": "WH",
            "kind": "delta",
            "quantity": rng.randint(1, 5),
            "version": self.version,
        }


@dataclass
class Traffic:
    """The plan the clients share, and every response they received."""

    port: int
    token: str
    plan: list[int | None]
    bodies: dict[int, bytes]
    positions: Iterator[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (webhook id, HTTP status, "accepted" or "duplicate", delivery pk)
    webhook_answers: list[tuple[str, int, str, int | None]] = field(default_factory=list)
    # (event id, HTTP status, outcome)
    stock_answers: list[tuple[str, int, str]] = field(default_factory=list)
    # Every stock event a client started to send. Repeats are drawn from this list.
    stock_sent: list[dict] = field(default_factory=list)
    stock_repeats: int = 0
    failures: list[str] = field(default_factory=list)

    def client_run(self, index: int) -> None:
        """Take the next planned send until the plan is done, on one keep-alive connection."""
        rng = random.Random(SEED * 100 + index)
        stream = StockStream(sku=stock_sku_code(index))
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT)
        try:
            while (position := next(self.positions)) < len(self.plan):
                number = self.plan[position]
                if number is None:
                    self._stock_send(connection, stream, rng)
                else:
                    self._webhook_send(connection, number)
        finally:
            connection.close()

    def _webhook_send(self, connection: http.client.HTTPConnection, number: int) -> None:
        webhook_id = f"wh-dup-{number}"
        body = self.bodies[number]
        headers = signed_headers(body, webhook_id=webhook_id) | {
            "Content-Type": "application/json",
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
        }
        answer = self._post(connection, WEBHOOK_PATH, body, headers)
        if answer is None:
            return
        status, data = answer
        with self.lock:
            self.webhook_answers.append(
                (webhook_id, status, data.get("status", ""), data.get("delivery"))
            )

    def _stock_send(
        self, connection: http.client.HTTPConnection, stream: StockStream, rng: random.Random
    ) -> None:
        with self.lock:
            repeat = bool(self.stock_sent) and rng.random() < REPEAT_SHARE
            if repeat:
                event = rng.choice(self.stock_sent)
                self.stock_repeats += 1
            else:
                # Shared before it is sent, so another client may repeat it while it is in flight.
                event = stream.next_event(rng)
                self.stock_sent.append(event)
        headers = {
            "Authorization": f"Token {self.token}",
            "Content-Type": "application/json",
        }
        answer = self._post(connection, STOCK_EVENTS_PATH, json.dumps(event).encode(), headers)
        if answer is None:
            return
        status, data = answer
        with self.lock:
            self.stock_answers.append((event["event_id"], status, data.get("outcome", "")))

    def _post(
        self, connection: http.client.HTTPConnection, path: str, body: bytes, headers: dict
    ) -> tuple[int, dict] | None:
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as error:
            # http.client opens a new connection for the next request.
            connection.close()
            with self.lock:
                self.failures.append(f"POST {path}: {type(error).__name__}: {error}")
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            data = {}
        if response.status not in (200, 201):
            with self.lock:
                self.failures.append(f"POST {path}: HTTP {response.status}: {raw[:300]!r}")
        return response.status, data if isinstance(data, dict) else {}


def stock_sku_code(client: int) -> str:
    return f"REL-STOCK-{client}"


@pytest.fixture
def workers(transactional_db, tmp_path) -> Iterator[list[Worker]]:
    """WORKERS Celery workers on a queue of the test's own."""
    started: list[Worker] = []
    with queue_for_test() as queue:
        try:
            for number in range(WORKERS):
                log_path = tmp_path / f"worker-{number}.log"
                started.append(worker_start(queue=queue, log_path=log_path, environment={}))
            yield started
        finally:
            for worker in started:
                worker_stop(worker)


@pytest.fixture
def server(workers, tmp_path) -> Iterator[Server]:
    """gunicorn with 2 threaded workers of 4 threads: 8 requests at once, keep-alive."""
    with server_running(
        port=port_free(PORTS), log_path=tmp_path / "gunicorn.log", workers=2, threads=4
    ) as running:
        yield running


@pytest.fixture
def connector_token(shopify_channel) -> str:  # noqa: F811
    """The API token of a user in the integration role, which may post stock events."""
    user = make_inventory_user("connector", "integration")
    return Token.objects.create(user=user).key


def test_repeated_webhooks_create_each_order_once(
    shopify_channel,  # noqa: F811
    workers,
    server,
    connector_token,
):
    rng = random.Random(SEED)
    plan = send_plan(sends=SENDS, rng=rng)
    numbers = sorted({number for number in plan if number is not None})
    _, order_level = warehouse_stock_set(sku_code=ORDER_SKU, on_hand=len(numbers) + 100)
    for client in range(CLIENTS):
        Sku.objects.create(
            code=stock_sku_code(client), title=f"Stock stream {client}", price="1", currency="USD"
        )
    traffic = Traffic(
        port=server.port,
        token=connector_token,
        plan=plan,
        bodies={number: order_body(number) for number in numbers},
    )

    started = time.monotonic()
    threads = [
        threading.Thread(target=traffic.client_run, args=(index,), daemon=True)
        for index in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=PROCESSING_TIMEOUT)
    sent_seconds = time.monotonic() - started
    assert not any(thread.is_alive() for thread in threads), (
        f"Clients still sending after {PROCESSING_TIMEOUT} s.\n{server.log_tail()}"
    )

    wait_until_none_received(
        channel=shopify_channel,
        timeout=PROCESSING_TIMEOUT,
        logs=lambda: "\n".join([*map(worker_log_tail, workers), server.log_tail()]),
    )
    elapsed = time.monotonic() - started

    webhooks = _webhook_counts(traffic, distinct=len(numbers), channel=shopify_channel)
    stock = _stock_counts(traffic)
    order_level.refresh_from_db()
    _record_figures(webhooks, stock, sent_seconds=sent_seconds, elapsed=elapsed)

    assert traffic.failures == [], f"{len(traffic.failures)} failed sends, first ones: " + (
        "\n".join(traffic.failures[:5]) + f"\n{server.log_tail()}"
    )
    assert webhooks["acknowledged"] == webhooks["sent"]
    assert webhooks["ids accepted more than once"] == 0
    assert webhooks["distinct ids"] == len(numbers)
    assert webhooks["answered duplicate"] == webhooks["sent"] - len(numbers)
    assert webhooks["deliveries stored"] == len(numbers)
    assert webhooks["outcomes"] == {DeliveryOutcome.PROCESSED: len(numbers)}
    assert webhooks["orders created"] == len(numbers)
    assert webhooks["lost"] == 0
    assert webhooks["doubled"] == 0
    assert webhooks["processed more than once"] == 0
    assert webhooks["order.received events"] == len(numbers)
    assert webhooks["reservations"] == len(numbers)
    assert order_level.reserved == len(numbers)

    assert stock["answers"] == stock["sent"]
    assert stock["outcomes"] == {"applied": stock["distinct"], "duplicate": stock["repeats"]}
    assert stock["recorded"] == stock["distinct"]
    assert stock["levels off"] == {}


def _webhook_counts(traffic: Traffic, *, distinct: int, channel) -> dict:
    answers = traffic.webhook_answers
    acknowledged_ids = {webhook_id for webhook_id, status, _, _ in answers if status == 200}
    accepted = Counter(webhook_id for webhook_id, _, answer, _ in answers if answer == "accepted")
    ids_with_order = set(
        Order.objects.filter(channel=channel).values_list("delivery__delivery_id", flat=True)
    )
    doubled = (
        Order.objects.filter(channel=channel)
        .values("channel_order_id")
        .annotate(copies=Count("id"))
        .filter(copies__gt=1)
        .count()
    )
    deliveries = Delivery.objects.filter(channel=channel)
    return {
        "sent": sum(1 for number in traffic.plan if number is not None),
        "distinct planned": distinct,
        "acknowledged": sum(1 for _, status, _, _ in answers if status == 200),
        "distinct ids": len(acknowledged_ids),
        "ids accepted more than once": sum(1 for count in accepted.values() if count > 1),
        "answered duplicate": sum(1 for _, _, answer, _ in answers if answer == "duplicate"),
        "deliveries stored": deliveries.count(),
        "outcomes": dict(Counter(deliveries.values_list("outcome", flat=True))),
        "orders created": Order.objects.filter(channel=channel).count(),
        "lost": len(acknowledged_ids - ids_with_order),
        "doubled": doubled,
        "processed more than once": deliveries.filter(attempts__gt=1).count(),
        "order.received events": OrderEvent.objects.filter(
            order__channel=channel, kind="order.received"
        ).count(),
        "reservations": Reservation.objects.filter(order__channel=channel).count(),
    }


def _stock_counts(traffic: Traffic) -> dict:
    expected: Counter[str] = Counter()
    for event in {event["event_id"]: event for event in traffic.stock_sent}.values():
        expected[event["sku"]] += event["quantity"]
    levels = dict(
        StockLevel.objects.filter(sku__code__in=list(expected)).values_list("sku__code", "on_hand")
    )
    off = {
        sku: {"expected": quantity, "on_hand": levels.get(sku)}
        for sku, quantity in expected.items()
        if levels.get(sku) != quantity
    }
    distinct = len({event["event_id"] for event in traffic.stock_sent})
    return {
        "sent": distinct + traffic.stock_repeats,
        "distinct": distinct,
        "repeats": traffic.stock_repeats,
        "answers": len(traffic.stock_answers),
        "outcomes": dict(Counter(outcome for _, _, outcome in traffic.stock_answers)),
        "recorded": StockEvent.objects.filter(source=STOCK_SOURCE).count(),
        "levels off": off,
    }


def _record_figures(webhooks: dict, stock: dict, *, sent_seconds: float, elapsed: float) -> None:
    figure(SUITE, "webhook deliveries sent", webhooks["sent"])
    repeats = webhooks["sent"] - webhooks["distinct planned"]
    figure(SUITE, "repeated deliveries among them (same id and body)", repeats)
    figure(SUITE, "concurrent clients", CLIENTS)
    figure(SUITE, "deliveries acknowledged (200)", webhooks["acknowledged"])
    figure(SUITE, "distinct webhook ids acknowledged", webhooks["distinct ids"])
    figure(SUITE, "repeats answered 'duplicate'", webhooks["answered duplicate"])
    figure(SUITE, "deliveries stored", webhooks["deliveries stored"])
    figure(SUITE, "orders created", webhooks["orders created"])
    figure(SUITE, "deliveries lost (acknowledged, no order)", webhooks["lost"])
    figure(SUITE, "orders doubled (two orders for one channel order)", webhooks["doubled"])
    figure(SUITE, "stock events sent", stock["sent"])
    figure(SUITE, "repeated stock events among them", stock["repeats"])
    figure(SUITE, "stock events applied", stock["outcomes"].get("applied", 0))
    figure(SUITE, "stock levels off the expected sum", len(stock["levels off"]))
    requests = webhooks["acknowledged"] + stock["answers"]
    figure(SUITE, "requests answered per second", requests / sent_seconds, "1/s")
    figure(SUITE, "orders processed per second", webhooks["orders created"] / elapsed, "1/s")
    figure(SUITE, "seconds from first send to last order processed", elapsed, "s")
