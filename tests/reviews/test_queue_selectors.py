"""The queue's filters and summary, and one item's context, in a fixed number of queries."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import Channel, ChannelKind, Sku
from orders.models import OrderLine
from orders.services import order_event_add, order_version_bump
from reviews.models import ReviewItem, ReviewKind
from reviews.selectors import (
    review_item_context,
    review_item_for_page,
    review_queue_items,
    review_queue_summary,
)
from reviews.services import review_item_claim, review_item_reject, review_item_revise
from tests.conftest import make_user
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SHIPPING_ADDRESS,
    locations_fixture,
    order_fixture,
    stock_set,
)
from tests.reviews.conftest import SUBSTITUTION, propose

pytestmark = pytest.mark.django_db


def item_on(order, kind=ReviewKind.HIGH_VALUE, age_minutes=0, **fields) -> ReviewItem:
    item = ReviewItem.objects.create(
        kind=kind, order=order, reason="test", source_data={}, **fields
    )
    if age_minutes:
        created = timezone.now() - timedelta(minutes=age_minutes)
        ReviewItem.objects.filter(pk=item.pk).update(created_at=created)
        item.refresh_from_db()
    return item


def queue(params: str, user=None):
    return review_queue_items(params=QueryDict(params), user=user)


def ids(queryset) -> list[int]:
    return [item.pk for item in queryset]


# --- Filters and sorting -------------------------------------------------------------------


def test_filters_by_kind_action_confidence_and_age(order):
    old = item_on(order, ReviewKind.ROUTING, 120, action_code="select_carrier", confidence="0.4")
    new = item_on(order, ReviewKind.SUBSTITUTION, 5, action_code="substitute_sku", confidence="0.9")
    plain = item_on(order, ReviewKind.HIGH_VALUE, 60)

    assert ids(queue("kind=routing")[1]) == [old.pk]
    assert ids(queue("action=substitute_sku")[1]) == [new.pk]
    assert ids(queue("confidence_min=0.5")[1]) == [new.pk]
    assert ids(queue("confidence_max=0.5")[1]) == [old.pk]
    assert ids(queue("older_than=30")[1]) == [old.pk, plain.pk]
    assert ids(queue("sort=newest")[1]) == [new.pk, plain.pk, old.pk]
    assert ids(queue("sort=confidence")[1]) == [old.pk, new.pk, plain.pk]


def test_filters_by_channel(order):
    from orders.models import Delivery
    from reviews.services import review_item_open_delivery_failed

    outlet = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="outlet")
    mine = item_on(order)
    delivery = Delivery.objects.create(
        channel=outlet,
        delivery_id="wh-x",
        topic="orders/create",
        body=b"{}",
        signature_valid=True,
        error="bad",
    )
    # An unprocessable delivery has no order; its delivery names the channel.
    theirs = review_item_open_delivery_failed(delivery=delivery)

    assert ids(queue("channel=shop")[1]) == [mine.pk]
    assert ids(queue("channel=outlet")[1]) == [theirs.pk]
    assert ids(queue("channel=elsewhere")[1]) == []


def test_filters_by_assignee(address_item, address_order):
    manager = make_user("morgan", "cs_manager")
    other = item_on(address_order)
    review_item_claim(item_id=address_item.pk, user=manager)

    assert ids(queue("assignee=me", manager)[1]) == [address_item.pk]
    assert ids(queue("assignee=morgan")[1]) == [address_item.pk]
    assert ids(queue("assignee=none")[1]) == [other.pk]


def test_sort_by_deadline(order):
    late = item_on(order, due_at=timezone.now() + timedelta(hours=5))
    soon = item_on(order, due_at=timezone.now() + timedelta(minutes=5))

    assert ids(queue("sort=due")[1]) == [soon.pk, late.pk]


@pytest.mark.parametrize(
    "params",
    [
        "confidence_min=abc",
        "confidence_max=7",
        "older_than=-5",
        "kind=nope",
        "sort=bogus",
        "older_than=99999999999999999999",
        "confidence_min=NaN",
    ],
)
def test_bad_parameters_fall_back_to_the_whole_queue(order, params):
    first = item_on(order, ReviewKind.HIGH_VALUE, age_minutes=10)
    second = item_on(order, ReviewKind.ROUTING)

    # action=none-such alone would match nothing; with a bad parameter nothing is filtered.
    filterset, items = queue(f"{params}&action=none-such")

    assert not filterset.is_valid()
    assert filterset.errors
    assert ids(items) == [first.pk, second.pk]


def test_decided_items_are_not_in_the_queue(address_item):
    manager = make_user("morgan", "cs_manager")
    review_item_reject(item_id=address_item.pk, user=manager)

    assert address_item.pk not in ids(queue("")[1])


def test_queue_page_query_count_fixed(order, django_assert_num_queries):
    manager = make_user("morgan", "cs_manager")
    for number in range(50):
        item = item_on(order, ReviewKind.ROUTING, action_code="select_carrier")
        if number % 2:
            ReviewItem.objects.filter(pk=item.pk).update(
                assignee=manager, claimed_until=timezone.now() + timedelta(minutes=5)
            )

    _, items = queue("sort=due")
    with django_assert_num_queries(1):
        rows = [
            (i.order.channel.code, i.order.order_number, i.assignee and i.assignee.username)
            for i in items[:50]
        ]
    assert len(rows) == 50


# --- Summary --------------------------------------------------------------------------------


def test_summary_counts_oldest_and_breaches(order, django_assert_max_num_queries):
    now = timezone.now()
    oldest = item_on(order, ReviewKind.HIGH_VALUE, 300, due_at=now - timedelta(minutes=60))
    item_on(order, ReviewKind.HIGH_VALUE, 10, due_at=now - timedelta(minutes=1))
    item_on(order, ReviewKind.ROUTING, 5, due_at=now + timedelta(minutes=30))

    with django_assert_max_num_queries(2):
        summary = {row.kind: row for row in review_queue_summary(now=now)}

    assert set(summary) == set(ReviewKind.values)
    high_value = summary[ReviewKind.HIGH_VALUE]
    assert (high_value.open, high_value.oldest_at, high_value.label) == (
        2,
        oldest.created_at,
        "High value",
    )
    assert high_value.breached == 2
    assert (summary[ReviewKind.ROUTING].open, summary[ReviewKind.ROUTING].breached) == (1, 0)
    assert summary[ReviewKind.ADDRESS].open == 0


# --- One item's context ---------------------------------------------------------------------


def test_context_of_a_decision_item(order, locations):
    order_event_add(order=order, kind="note", message="before")
    decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))
    for number in range(6):
        order_event_add(order=order, kind="note", message=f"note {number}")

    context = review_item_context(item=review_item_for_page(item_id=decision.review_item_id))

    assert [(row.field, row.before, row.after, row.changed) for row in context.diff] == [
        ("line", 1, 1, False),
        ("sku", "TEE-CLASSIC-BLK-M", "TEE-CLASSIC-WHT-M", True),
    ]
    assert context.why.confidence == Decimal("0.5000")
    assert context.why.threshold == Decimal("0.92")
    assert context.why.threshold_source == "policy"
    assert context.why.below_threshold is True
    assert "confidence" in {rule["rule"] for rule in context.why.rules}
    assert (context.why.model_name, context.why.model_version) == ("gpt-sub", "2024-06")
    assert [event.message for event in context.events] == [
        "note 5",
        "note 4",
        "note 3",
        "note 2",
        "note 1",
    ]
    assert [(line.sku, line.available, line.tracked) for line in context.lines] == [
        ("TEE-CLASSIC-BLK-M", 0, True)
    ]
    assert context.stale is False
    assert context.policy.approver == "cs_agent"
    assert context.policy.sla_minutes == 60
    assert "substitute_sku" in context.policy.label


def test_context_of_a_hygiene_address_item(address_item):
    context = review_item_context(item=review_item_for_page(item_id=address_item.pk))

    changed = {row.field: (row.before, row.after) for row in context.diff if row.changed}
    assert changed["shipping_address.address1"] == ("12 Birch Lane", "12 Birch Ln")
    assert (context.why.confidence, context.why.threshold) == (Decimal("0.70"), Decimal("0.80"))
    assert context.why.rules[0]["rule"] == "postal_code_area_mismatch"
    assert context.policy.approver == "cs_manager"
    assert context.policy.sla_minutes == 30


def test_context_marks_a_stale_item(address_item, address_order):
    order_version_bump(address_order, reason="edited")

    context = review_item_context(item=review_item_for_page(item_id=address_item.pk))

    assert context.stale is True


def test_similar_outcomes_count_the_last_decisions(order, agent, locations):
    stock_set("TEE-CLASSIC-WHT-M", locations["wh-east"], 50)
    Sku.objects.create(code="TEE-CLASSIC-GRY-M", title="Grey tee", price="19.99")
    stock_set("TEE-CLASSIC-GRY-M", locations["wh-east"], 50)
    outcomes = []
    for decide in ("reject", "reject", "revise"):
        OrderLine.objects.filter(order=order).update(sku=Sku.objects.get(code="TEE-CLASSIC-BLK-M"))
        decision = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))
        outcomes.append(decision.review_item_id)
        if decide == "reject":
            review_item_reject(item_id=decision.review_item_id, user=agent)
        else:
            review_item_revise(
                item_id=decision.review_item_id, user=agent, revision={"sku": "TEE-CLASSIC-GRY-M"}
            )
    OrderLine.objects.filter(order=order).update(sku=Sku.objects.get(code="TEE-CLASSIC-BLK-M"))
    current = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))

    context = review_item_context(item=review_item_for_page(item_id=current.review_item_id))

    assert (context.similar.accepted, context.similar.rejected, context.similar.revised) == (
        0,
        2,
        1,
    )
    assert context.similar.total == 3


def _context_queries(item_id: int) -> int:
    with CaptureQueriesContext(connection) as captured:
        context = review_item_context(item=review_item_for_page(item_id=item_id))
        assert context.lines
    return len(captured.captured_queries)


def test_item_context_query_count_fixed(order, locations, django_assert_num_queries):
    small = propose(order, "substitute_sku", *SUBSTITUTION, confidence=Decimal("0.5"))
    small_queries = _context_queries(small.review_item_id)

    skus = [
        Sku.objects.create(code=f"BULK-{number}", title=f"Bulk {number}", price="1.00")
        for number in range(30)
    ]
    for number, sku in enumerate(skus, start=2):
        stock_set(sku.code, locations["wh-east"], number)
        stock_set(sku.code, locations["store-nyc"], 1)
        OrderLine.objects.create(
            order=order,
            position=number,
            title=sku.title,
            quantity=1,
            unit_price="1",
            sku=sku,
            raw={},
        )
    for number in range(40):
        order_event_add(order=order, kind="note", message=f"note {number}")
    big = review_item_context(item=review_item_for_page(item_id=small.review_item_id))
    assert len(big.lines) == 31

    with django_assert_num_queries(small_queries):
        review_item_context(item=review_item_for_page(item_id=small.review_item_id))
