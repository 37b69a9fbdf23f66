"""The ML-ops KPIs of the weekly review, against figures worked out by hand.

The week under review is 2026-W49 (Monday 30 November to Monday 7 December 2026, UTC),
seen from Wednesday 9 December, so its figures are cut off at 7 December 00:00.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from catalog.models import Channel, ChannelKind
from guardrails.models import Version, VersionKind, VersionStatus
from orders.models import Order
from reviews.feedback import weekly_review
from reviews.models import FixStatus
from tests.guardrails.conftest_decisions import locations_fixture, order_fixture  # noqa: F401
from tests.label_fixtures import label_taxonomy  # noqa: F401
from tests.reviews.test_weekly_review import (  # noqa: F401
    IN_WEEK,
    WEEK,
    WEEK_START,
    _frozen_now,
    decision_add,
    fix_add,
    known_answer_add,
    label_add,
    ops_fixture,
    review_item_add,
    terms_fixture,
)

pytestmark = pytest.mark.django_db

AS_OF = WEEK_START + timedelta(days=7)
DAY = timedelta(days=1)


def version_add(kind: str, subject: str, label: str, activated_at: datetime, **fields) -> Version:
    return Version.objects.create(
        kind=kind,
        subject=subject,
        label=label,
        status=VersionStatus.ACTIVE,
        changelog="Test version.",
        activated_at=activated_at,
        **fields,
    )


def orders_add(channel: Channel, count: int, created_at: datetime, template: Order) -> None:
    for _ in range(count):
        order = Order.objects.create(
            channel=channel,
            channel_order_id=f"kpi-{Order.objects.count()}",
            delivery=template.delivery,
            status=template.status,
            currency="USD",
            subtotal=Decimal("10"),
            shipping_total=Decimal("0"),
            tax_total=Decimal("0"),
            discount_total=Decimal("0"),
            total=Decimal("10"),
        )
        Order.objects.filter(pk=order.pk).update(created_at=created_at)


# --- Pick accuracy before and after a version change -----------------------------------------


def test_pick_accuracy_before_and_after_activation(order, terms, ops):
    activated = datetime(2026, 11, 20, tzinfo=UTC)
    version = version_add(VersionKind.MODEL, "gpt-sub", "2024-09", activated)
    old, new = ("gpt-sub", "2024-06"), ("gpt-sub", "2024-09")
    before_at, after_at = activated - 10 * DAY, activated + 5 * DAY

    # Before: 10 reviewed decisions of the old version, 7 agreed, one of those labelled.
    for index in range(10):
        decision = decision_add(
            order, model=old, outcome="agreed" if index < 7 else "disagreed", created_at=before_at
        )
        if index == 0:
            label_add(terms, by=ops, decision=decision)
    # Not counted before: unreviewed, older than 30 days, another model, the new version.
    decision_add(order, model=old, created_at=before_at)
    decision_add(order, model=old, outcome="agreed", created_at=activated - 31 * DAY)
    decision_add(order, model=("other", "1"), outcome="agreed", created_at=before_at)
    decision_add(order, model=new, outcome="disagreed", created_at=activated - DAY)

    # After: 8 reviewed decisions of the new version, 7 agreed, one of those labelled through
    # its review item.
    for index in range(8):
        item = review_item_add(order) if index == 0 else None
        decision_add(
            order,
            model=new,
            outcome="agreed" if index < 7 else "disagreed",
            created_at=after_at,
            review_item=item,
        )
        if item is not None:
            label_add(terms, by=ops, review_item=item)
    # Not counted after: the old version's traffic, a decision after the week, a known answer.
    decision_add(order, model=old, outcome="disagreed", created_at=after_at)
    decision_add(order, model=new, outcome="disagreed", created_at=AS_OF + DAY)
    seeded = review_item_add(None, known_answer=known_answer_add())
    decision_add(order, model=new, outcome="disagreed", created_at=after_at, review_item=seeded)

    [change] = weekly_review(week_start=WEEK).accuracy_changes

    assert change.version == version
    assert (change.before_reviewed, change.before_correct) == (10, 6)
    assert change.before_accuracy == Decimal("0.6000")
    assert (change.after_reviewed, change.after_correct) == (8, 6)
    assert change.after_accuracy == Decimal("0.7500")
    assert change.lift_points == Decimal("15.0")


def test_pick_accuracy_scoped_to_the_version_action(order):
    activated = datetime(2026, 12, 1, tzinfo=UTC)
    version_add(
        VersionKind.PROMPT,
        "carrier-rank",
        "2",
        activated,
        action_id=_action_id("select_carrier"),
    )
    for outcome in ("agreed", "agreed", "disagreed", "disagreed"):
        decision_add(
            order,
            action="select_carrier",
            model=("carrier-rank", "1"),
            outcome=outcome,
            created_at=activated - 2 * DAY,
        )
    decision_add(
        order, model=("carrier-rank", "1"), outcome="agreed", created_at=activated - 2 * DAY
    )

    [change] = weekly_review(week_start=WEEK).accuracy_changes

    assert (change.before_reviewed, change.before_correct) == (4, 2)
    assert change.before_accuracy == Decimal("0.5000")
    assert change.after_reviewed == 0
    assert change.after_accuracy is None
    assert change.lift_points is None


def test_pick_accuracy_lists_recent_model_like_versions_newest_first(db):
    recent = version_add(VersionKind.RECOMMENDER, "sub-rec", "3", AS_OF - 2 * DAY)
    earlier = version_add(VersionKind.MODEL, "gpt-sub", "2024-09", AS_OF - 80 * DAY)
    version_add(VersionKind.RULE_SET, "defaults", "4", AS_OF - 3 * DAY)
    version_add(VersionKind.MODEL, "gpt-sub", "2024-03", AS_OF - 91 * DAY)
    version_add(VersionKind.MODEL, "gpt-sub", "2025-01", AS_OF + DAY)
    version_add(VersionKind.MODEL, "gpt-sub", "draft", None)

    changes = weekly_review(week_start=WEEK).accuracy_changes

    assert [change.version for change in changes] == [recent, earlier]


def _action_id(code: str) -> int:
    from guardrails.models import ActionType

    return ActionType.objects.get(code=code).pk


# --- Escalations per 1,000 orders ------------------------------------------------------------


def test_escalations_per_1000_orders_against_the_week_before(order):
    other = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="other-shop")
    orders_add(order.channel, 8, IN_WEEK, order)
    orders_add(order.channel, 4, WEEK_START - 3 * DAY, order)
    orders_add(other, 2, IN_WEEK, order)
    for _ in range(3):
        review_item_add(order, escalated_at=IN_WEEK)
    review_item_add(order, escalated_at=WEEK_START - DAY)
    # Not counted: a known-answer item, one escalated after the week.
    review_item_add(None, known_answer=known_answer_add(), escalated_at=IN_WEEK)
    review_item_add(order, escalated_at=AS_OF + DAY)
    other_order = Order.objects.filter(channel=other).first()
    review_item_add(other_order, escalated_at=IN_WEEK)

    shop = weekly_review(week_start=WEEK, channel="shop").escalations
    everywhere = weekly_review(week_start=WEEK).escalations

    assert (shop.escalations, shop.orders) == (3, 8)
    assert shop.per_1000 == Decimal("375.00")
    assert (shop.previous_escalations, shop.previous_orders) == (1, 4)
    assert shop.previous_per_1000 == Decimal("250.00")
    assert shop.change == Decimal("125.00")
    assert (everywhere.escalations, everywhere.orders) == (4, 10)
    assert everywhere.per_1000 == Decimal("400.00")


def test_escalations_without_orders_have_no_rate(db):
    rate = weekly_review(week_start=WEEK).escalations

    assert rate.per_1000 is None
    assert rate.previous_per_1000 is None
    assert rate.change is None


def test_zero_escalations_shown_as_zero(order):
    """A week with orders and no escalation rates 0, which the page must show, not "-"."""
    from django.template.loader import render_to_string

    orders_add(order.channel, 5, IN_WEEK, order)
    review = weekly_review(week_start=WEEK)

    html = render_to_string("reviews/feedback/_weekly_body.html", {"review": review})

    assert review.escalations.per_1000 == Decimal("0")
    assert '<span class="value">0' in html


# --- Time to resolution of labelled errors ---------------------------------------------------


def test_time_to_resolution_median_and_p90(order, terms, ops):
    decision = decision_add(order)
    done_at = datetime(2026, 12, 3, 12, tzinfo=UTC)
    first = fix_add(due_on=AS_OF.date(), status=FixStatus.DONE, done_at=done_at)
    for hours in (10, 20, 100):
        label_add(terms, by=ops, decision=decision, at=done_at - timedelta(hours=hours), fix=first)
    second_done = datetime(2026, 12, 5, tzinfo=UTC)
    second = fix_add(due_on=AS_OF.date(), status=FixStatus.DONE, done_at=second_done)
    label_add(terms, by=ops, decision=decision, at=second_done - timedelta(hours=5), fix=second)
    # Done the week before: not counted.
    earlier = fix_add(due_on=AS_OF.date(), status=FixStatus.DONE, done_at=WEEK_START - DAY)
    label_add(terms, by=ops, decision=decision, at=WEEK_START - 2 * DAY, fix=earlier)

    resolution = weekly_review(week_start=WEEK).resolution

    # Hours 5, 10, 20, 100: the median is (10 + 20) / 2; the nearest-rank p90 is the 4th of 4.
    assert resolution.resolved == 4
    assert resolution.median_hours == Decimal("15.0")
    assert resolution.p90_hours == Decimal("100.0")


def test_time_to_resolution_counts_labels_still_waiting(order, terms, ops):
    decision = decision_add(order)
    label_add(terms, by=ops, decision=decision, at=datetime(2026, 11, 1, tzinfo=UTC))
    label_add(terms, by=ops, decision=decision, at=AS_OF - DAY)
    in_progress = fix_add(due_on=AS_OF.date(), status=FixStatus.IN_PROGRESS)
    label_add(terms, by=ops, decision=decision, at=AS_OF - 17 * DAY, fix=in_progress)
    done_later = fix_add(due_on=AS_OF.date(), status=FixStatus.DONE, done_at=AS_OF + DAY)
    label_add(terms, by=ops, decision=decision, at=AS_OF - 12 * DAY, fix=done_later)
    # Closed or not yet labelled at the cut-off: not waiting.
    wont_fix = fix_add(due_on=AS_OF.date(), status=FixStatus.WONT_FIX, resolution="One-off.")
    label_add(terms, by=ops, decision=decision, at=datetime(2026, 10, 1, tzinfo=UTC), fix=wont_fix)
    done = fix_add(due_on=AS_OF.date(), status=FixStatus.DONE, done_at=AS_OF - DAY)
    label_add(terms, by=ops, decision=decision, at=datetime(2026, 10, 2, tzinfo=UTC), fix=done)
    label_add(terms, by=ops, decision=decision, at=AS_OF + DAY)
    seeded = review_item_add(None, known_answer=known_answer_add())
    label_add(terms, by=ops, review_item=seeded, at=datetime(2026, 9, 1, tzinfo=UTC))

    resolution = weekly_review(week_start=WEEK).resolution

    assert resolution.unresolved == 4
    # From 1 November to the 7 December cut-off.
    assert resolution.oldest_unresolved_days == 36
    # The fix done within the week resolves its label after 65 days.
    assert resolution.resolved == 1
    assert resolution.median_hours == Decimal("1560.0")
    assert resolution.p90_hours == Decimal("1560.0")


def test_time_to_resolution_without_done_fixes(db):
    resolution = weekly_review(week_start=WEEK).resolution

    assert resolution.resolved == 0
    assert resolution.median_hours is None
    assert resolution.p90_hours is None
    assert resolution.unresolved == 0
    assert resolution.oldest_unresolved_days is None
