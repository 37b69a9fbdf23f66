"""Races on real PostgreSQL row locks: reservations, review decisions and policy edits.

Each race starts its threads together at a barrier. Every thread has its own database
connection, so the transactions really overlap and only the application's locks order them.

- Reservations: 200 one-unit orders compete for 50 units through order_reserve_stock.
  PostgreSQL serves other sessions beside this suite, so 25 sessions take the 200
  reservations between them, 8 each. Exactly 50 must succeed, and a watcher thread samples
  the stock level throughout to check that available stock never goes below zero.
- Review decisions: two agents post their decisions on one review item at the same moment,
  through the queue's HTTP views. One decision is recorded; the other agent gets 409.
- Policy edits: two ops managers save a new version of one policy at the same moment.
  Both versions are stored, with consecutive numbers.
"""

import re
import threading
from collections import Counter

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from catalog.models import Sku
from guardrails.defaults import default_policies_load
from guardrails.models import AuditEntry, Policy, PolicyVersion
from guardrails.policies import policy_version_create
from inventory.models import Reservation, ReservationStatus, StockLevel
from inventory.reservations import order_reserve_stock
from orders.models import Order, OrderEvent
from reviews.models import ReviewItem, ReviewKind, ReviewStatus
from tests.conftest import as_body, ensure_role_groups, make_user, order_payload, signed_headers
from tests.guardrails.test_policy_versions import SUBSTITUTION_RULES
from tests.inventory.conftest import TEE, locations, place_order, set_stock  # noqa: F401
from tests.inventory.test_concurrency import run_in_threads
from tests.reliability.figures import figure, sized
from tests.workers import services_unavailable

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SUITE = "races"
ORDERS = int(sized(full=200, ci=200))
UNITS = int(sized(full=50, ci=50))
SESSIONS = 25
DECISION_ROUNDS = int(sized(full=20, ci=5))
POLICY_ROUNDS = int(sized(full=20, ci=5))
WATCH_INTERVAL = 0.002


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        services_unavailable(
            f"The database is {connection.vendor}; the races need PostgreSQL's row locks "
            "between transactions."
        )


def test_reservations_never_oversell(catalog, set_stock, place_order):  # noqa: F811
    order_ids = _orders_of_one_unit(place_order((TEE, 1)), ORDERS)
    level = set_stock(TEE, "WH", UNITS)
    watcher = StockWatcher(level.pk)

    def reserve(index: int, barrier: threading.Barrier) -> list[str]:
        barrier.wait(timeout=20)
        return [_reserve(order_id) for order_id in order_ids[index::SESSIONS]]

    watcher.start()
    try:
        outcomes = Counter(
            outcome for outcomes in run_in_threads(SESSIONS, reserve) for outcome in outcomes
        )
    finally:
        watcher.stop()

    level.refresh_from_db()
    reservations = Reservation.objects.filter(stock_level=level, status=ReservationStatus.ACTIVE)
    figure(SUITE, "reservation attempts", ORDERS)
    figure(SUITE, "units in stock", UNITS)
    figure(SUITE, "database sessions reserving at once", SESSIONS)
    figure(SUITE, "reservations succeeded", outcomes["reserved"])
    figure(SUITE, "reservations refused (short)", outcomes["short"])
    figure(SUITE, "final on hand", level.on_hand)
    figure(SUITE, "final reserved", level.reserved)
    figure(SUITE, "lowest available stock seen", watcher.lowest_available)
    figure(SUITE, "stock samples taken", watcher.samples)

    assert outcomes == {"reserved": UNITS, "short": ORDERS - UNITS}
    assert (level.on_hand, level.reserved) == (UNITS, UNITS)
    assert reservations.count() == UNITS
    assert reservations.values("order_id").distinct().count() == UNITS
    assert watcher.samples > 0
    assert watcher.lowest_available >= 0


def test_two_agents_one_decision(catalog, post_webhook):
    items = [_review_item_open(post_webhook, number) for number in range(DECISION_ROUNDS)]
    sku = Sku.objects.get(code=TEE)
    clients = [_logged_in(make_user(name, "cs_agent")) for name in ("agent-a", "agent-b")]

    def decide(index: int, barrier: threading.Barrier, item: ReviewItem) -> tuple[int, str]:
        if index == 0:
            url, data = reverse("reviews:accept", args=[item.pk]), {"sku_id": sku.pk}
        else:
            url, data = reverse("reviews:reject", args=[item.pk]), {}
        barrier.wait(timeout=20)
        response = clients[index].post(url, data, HTTP_HX_REQUEST="true")
        return response.status_code, _flash_code(response.content.decode())

    rounds = [
        run_in_threads(2, lambda index, barrier, item=item: decide(index, barrier, item))
        for item in items
    ]

    answers = Counter(answer for answers in rounds for answer in answers)
    decisions = AuditEntry.objects.filter(
        target_type="review_item",
        target_id__in=[str(item.pk) for item in items],
        action__in=["review_item.accepted", "review_item.rejected"],
    )
    figure(SUITE, "review items decided by two agents at once", DECISION_ROUNDS)
    figure(SUITE, "decision requests", 2 * DECISION_ROUNDS)
    figure(SUITE, "decisions recorded", decisions.count())
    figure(SUITE, "requests answered 409 already decided", answers[(409, "already_decided")])

    assert answers == {(200, ""): DECISION_ROUNDS, (409, "already_decided"): DECISION_ROUNDS}
    assert decisions.count() == DECISION_ROUNDS
    for item, answers_of_item in zip(items, rounds, strict=True):
        item.refresh_from_db()
        winner = 0 if answers_of_item[0][0] == 200 else 1
        expected = (
            (ReviewStatus.ACCEPTED, "agent-a")
            if winner == 0
            else (
                ReviewStatus.REJECTED,
                "agent-b",
            )
        )
        assert (item.status, item.decided_by.username) == expected
        assert decisions.filter(target_id=str(item.pk)).count() == 1
        assert (
            OrderEvent.objects.filter(
                order=item.order, kind__in=["review.accepted", "review.rejected"]
            ).count()
            == 1
        )


def test_two_policy_edits_two_versions():
    ensure_role_groups()
    default_policies_load()
    policy = Policy.objects.get(action__code="substitute_sku", channel__isnull=True)
    editors = [make_user(name, "ops_manager") for name in ("ops-a", "ops-b")]
    numbers_before = set(policy.versions.values_list("number", flat=True))

    def edit(index: int, barrier: threading.Barrier, round_number: int) -> int:
        changelog = f"Race round {round_number}, edit by {editors[index].username}."
        barrier.wait(timeout=20)
        version = policy_version_create(
            policy=policy, user=editors[index], changelog=changelog, **SUBSTITUTION_RULES
        )
        return version.number

    numbers = [
        number
        for round_number in range(POLICY_ROUNDS)
        for number in run_in_threads(
            2, lambda index, barrier, round_number=round_number: edit(index, barrier, round_number)
        )
    ]

    created = PolicyVersion.objects.filter(policy=policy).exclude(number__in=numbers_before)
    audit = AuditEntry.objects.filter(action="policy_version.created", reason__contains="Race")
    first = max(numbers_before) + 1
    figure(SUITE, "policy edits saved two at a time", 2 * POLICY_ROUNDS)
    figure(SUITE, "policy versions created", created.count())
    figure(SUITE, "policy edits lost", 2 * POLICY_ROUNDS - created.count())

    assert sorted(numbers) == list(range(first, first + 2 * POLICY_ROUNDS))
    assert created.count() == 2 * POLICY_ROUNDS
    assert sorted(created.values_list("changelog", flat=True)) == sorted(
        f"Race round {round_number}, edit by {editor.username}."
        for round_number in range(POLICY_ROUNDS)
        for editor in editors
    )
    assert audit.count() == 2 * POLICY_ROUNDS


class StockWatcher:
    """A thread that samples one stock level until stopped, keeping the lowest availability."""

    def __init__(self, level_id: int) -> None:
        self.level_id = level_id
        self.lowest_available: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._errors: list[BaseException] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=20)
        if self._errors:
            raise self._errors[0]

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                on_hand, reserved = StockLevel.objects.values_list("on_hand", "reserved").get(
                    pk=self.level_id
                )
                available = on_hand - reserved
                if self.lowest_available is None or available < self.lowest_available:
                    self.lowest_available = available
                self.samples += 1
                self._stop.wait(WATCH_INTERVAL)
        except BaseException as error:  # re-raised by stop()
            self._errors.append(error)
        finally:
            connection.close()


def _orders_of_one_unit(template: Order, count: int) -> list[int]:
    """Return the ids of `count` one-line orders: `template` and copies of it.

    The template came through the webhook and the pipeline. Its copies differ only in the
    channel order id, so setting up hundreds of orders takes a fraction of a second.
    """
    line = template.lines.get()
    order_ids = [template.pk]
    for number in range(1, count):
        order = Order.objects.get(pk=template.pk)
        order.pk = None
        order.channel_order_id = f"{template.channel_order_id}-copy-{number}"
        order.save()
        line.pk = None
        line.order = order
        line.save()
        order_ids.append(order.pk)
    return order_ids


def _reserve(order_id: int) -> str:
    with transaction.atomic():
        # Only the order row: order_lock() also locks the channel row through its join,
        # which would queue the sessions before they reach the stock level.
        order = Order.objects.select_for_update(of=("self",)).get(pk=order_id)
        result = order_reserve_stock(order=order)
    return "reserved" if result.reserved else "short"


def _review_item_open(post_webhook, number: int) -> ReviewItem:
    """Post an order whose line has a SKU of its own that no mapping covers: one review item.

    Accepting an unmapped-SKU item maps that SKU, which resolves every other item waiting on
    it, so each round gets its own.
    """
    line = order_payload()["line_items"][0] | {"sku": f"RACE-UNMAPPED-{number}", "quantity": 1}
    body = as_body(order_payload(order_id=3_000_000_000_000 + number, lines=[line]))
    response = post_webhook(body, headers=signed_headers(body, webhook_id=f"wh-race-{number}"))
    assert response.status_code == 200, response.content
    return ReviewItem.objects.get(
        order__channel_order_id=str(3_000_000_000_000 + number), kind=ReviewKind.UNMAPPED_SKU
    )


def _logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _flash_code(html: str) -> str:
    match = re.search(r'data-code="([^"]*)"', html)
    return match.group(1) if match else ""
