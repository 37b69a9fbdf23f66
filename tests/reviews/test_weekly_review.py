"""The weekly review: ranking by impact, disagreement groups, error groups, the 30-day target,
reviewer quality, the page, its CSV and the "Create fix" form.

The helpers at the top build decisions, labels and review items with set timestamps; the
fixes and ML-ops KPI tests import them.
"""

import csv
import io
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from catalog.models import Channel, ChannelKind
from guardrails.models import (
    ActionType,
    AuditEntry,
    Decision,
    ReviewOutcome,
    Verdict,
    Version,
    VersionKind,
)
from orders.models import Order
from reviews.feedback import (
    DISAGREEMENT_MIN_REVIEWS,
    week_current,
    week_label,
    week_parse,
    weekly_review,
)
from reviews.models import (
    ErrorLabel,
    FixItem,
    FixStatus,
    KnownAnswer,
    ReviewItem,
    ReviewKind,
    ReviewStatus,
)
from tests.conftest import make_user
from tests.guardrails.conftest_decisions import (  # noqa: F401
    SUBSTITUTION,
    locations_fixture,
    order_fixture,
)
from tests.label_fixtures import label_taxonomy  # noqa: F401

pytestmark = pytest.mark.django_db

# Wednesday of 2026-W50; the week under review is the complete week before it.
NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)
WEEK = date(2026, 11, 30)
WEEK_START = datetime(2026, 11, 30, tzinfo=UTC)
IN_WEEK = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _frozen_now():
    with time_machine.travel(NOW, tick=False):
        yield


# --- Helpers ---------------------------------------------------------------------------------


def decision_add(
    order: Order,
    *,
    action: str = "substitute_sku",
    model: tuple[str, str] = ("gpt-sub", "2024-06"),
    outcome: str = "",
    reviewed_at: datetime | None = None,
    created_at: datetime | None = None,
    review_item: ReviewItem | None = None,
    channel: Channel | None = None,
) -> Decision:
    """Store a decision; `outcome` "agreed" or "disagreed" marks it reviewed at `reviewed_at`."""
    decision = Decision.objects.create(
        action=ActionType.objects.get(code=action),
        order=order,
        channel=channel or order.channel,
        model_name=model[0],
        model_version=model[1],
        before=SUBSTITUTION[0],
        after=SUBSTITUTION[1],
        confidence=Decimal("0.9"),
        verdict=Verdict.QUEUED_FOR_REVIEW,
        facts={},
        review_outcome=outcome,
        reviewed_at=(reviewed_at or IN_WEEK) if outcome else None,
        review_item=review_item,
    )
    if created_at is not None:
        Decision.objects.filter(pk=decision.pk).update(created_at=created_at)
        decision.created_at = created_at
    return decision


def label_add(
    terms: dict,
    *,
    by,
    decision: Decision | None = None,
    review_item: ReviewItem | None = None,
    impact: str = "customer_delay",
    cause: str = "wrong_sku_match",
    at: datetime = IN_WEEK,
    fix: FixItem | None = None,
) -> ErrorLabel:
    """Store an error label labelled at `at`."""
    label = ErrorLabel.objects.create(
        decision=decision,
        review_item=review_item,
        cause=terms["cause"][cause],
        impact=terms["impact"][impact],
        corrective_action=terms["corrective_action"]["retrain_model"],
        labelled_by=by,
        fix=fix,
    )
    ErrorLabel.objects.filter(pk=label.pk).update(labelled_at=at)
    label.labelled_at = at
    return label


def review_item_add(
    order: Order | None,
    *,
    kind: str = ReviewKind.AI_ACTION,
    decided_by=None,
    decided_at: datetime | None = None,
    known_answer: KnownAnswer | None = None,
    known_answer_correct: bool | None = None,
    escalated_at: datetime | None = None,
) -> ReviewItem:
    return ReviewItem.objects.create(
        kind=kind,
        status=ReviewStatus.ACCEPTED if decided_by else ReviewStatus.OPEN,
        order=order,
        reason="Test item.",
        source_data={},
        decided_by=decided_by,
        decided_at=decided_at,
        known_answer=known_answer,
        known_answer_correct=known_answer_correct,
        escalated_to="cs_manager" if escalated_at else "",
        escalated_at=escalated_at,
    )


def known_answer_add() -> KnownAnswer:
    return KnownAnswer.objects.create(
        kind=ReviewKind.SUBSTITUTION,
        reason="Known case.",
        source_data={},
        expected="accept",
        explanation="The white tee is the agreed substitute.",
    )


def fix_add(*, priority: int = 1, due_on: date, status: str = FixStatus.OPEN, **fields) -> FixItem:
    return FixItem.objects.create(
        title=fields.pop("title", "A fix"),
        priority=priority,
        due_on=due_on,
        status=status,
        **fields,
    )


@pytest.fixture(name="terms")
def terms_fixture(label_taxonomy) -> dict:  # noqa: F811
    """The default taxonomy's terms by kind and code."""
    return label_taxonomy


@pytest.fixture(name="ops")
def ops_fixture(db):
    return make_user("olivia", "ops_manager")


@pytest.fixture(name="manager")
def manager_fixture(db):
    return make_user("morgan", "cs_manager")


@pytest.fixture(name="ops_client")
def ops_client_fixture(ops) -> Client:
    client = Client()
    client.force_login(ops)
    return client


def ranked_keys(review) -> list[tuple]:
    return [(row.decision_id, row.review_item_id) for row in review.impact]


# --- Weeks -----------------------------------------------------------------------------------


def test_week_parse_and_label():
    assert week_parse("2026-W49") == date(2026, 11, 30)
    assert week_parse(" 2021-W01 ") == date(2021, 1, 4)
    assert week_label(date(2026, 11, 30)) == "2026-W49"
    assert week_label(date(2021, 1, 4)) == "2021-W01"
    assert week_current() == date(2026, 12, 7)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-49", "write it as an ISO week"),
        ("2026-W54", "2026 has no week 54"),
        ("2026-W00", "2026 has no week 0"),
        ("", "write it as an ISO week"),
    ],
)
def test_week_parse_rejects_invalid(value, message):
    with pytest.raises(ValueError, match=message):
        week_parse(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0001-W01", "Invalid week '0001-W01': the earliest week is 2000-W01."),
        ("1999-W52", "Invalid week '1999-W52': the earliest week is 2000-W01."),
        ("2026-W51", "Week 2026-W51 has not started; the latest is 2026-W50."),
        ("9999-W52", "Week 9999-W52 has not started; the latest is 2026-W50."),
    ],
)
def test_week_parse_rejects_out_of_range(value, message):
    with pytest.raises(ValueError) as raised:
        week_parse(value)

    assert str(raised.value) == message


def test_week_parse_range_ends():
    assert week_parse("2000-W01") == date(2000, 1, 3)
    assert week_parse("2026-W50") == date(2026, 12, 7)
    assert week_parse("2026-W51", now=datetime(2026, 12, 14, tzinfo=UTC)) == date(2026, 12, 14)


@pytest.mark.parametrize(
    ("week", "message"),
    [
        ("0001-W01", "Invalid week '0001-W01': the earliest week is 2000-W01."),
        ("9999-W52", "Week 9999-W52 has not started; the latest is 2026-W50."),
    ],
)
def test_weekly_page_and_csv_reject_out_of_range_week(ops_client, week, message):
    page = ops_client.get(reverse("feedback:weekly"), {"week": week})
    sheet = ops_client.get(reverse("feedback:weekly-csv"), {"week": week})

    assert page.status_code == 400
    assert escape(message) in page.content.decode()
    assert page.context["review"].week == "2026-W50"
    assert sheet.status_code == 400
    assert message in sheet.content.decode()


@pytest.mark.parametrize("week", ["0001-W01", "9999-W52"])
def test_create_fix_rejects_out_of_range_week(order, terms, ops, ops_client, week):
    label_add(terms, by=ops, decision=decision_add(order))
    form = {
        "week": week,
        "action": "substitute_sku",
        "model_name": "gpt-sub",
        "model_version": "2024-06",
        "cause": terms["cause"]["wrong_sku_match"].pk,
        "title": "Fix it",
    }

    response = ops_client.post(reverse("feedback:fix-create"), form, headers=HTMX)

    assert response.status_code == 400
    assert not FixItem.objects.exists()


def test_weekly_review_rejects_non_monday():
    with pytest.raises(ValueError, match="not a Monday"):
        weekly_review(week_start=date(2026, 12, 1))


# --- Highest impact --------------------------------------------------------------------------


def test_impact_ranks_heaviest_label_above_many_lighter(order, terms, ops):
    many_light = decision_add(order)
    one_heavy = decision_add(order)
    for _ in range(3):
        label_add(terms, by=ops, decision=many_light, impact="customer_delay")
    label_add(terms, by=ops, decision=one_heavy, impact="chargeback")

    review = weekly_review(week_start=WEEK)

    assert ranked_keys(review) == [(one_heavy.pk, None), (many_light.pk, None)]
    assert review.impact[0].impact_weight == 5
    assert review.impact[0].label_count == 1
    assert review.impact[1].impact_weight == 2
    assert review.impact[1].label_count == 3


def test_impact_ties_break_on_count_then_latest_then_newest(order, terms, ops):
    # All four have the same heaviest impact (weight 2).
    two_labels = decision_add(order)
    latest = decision_add(order)
    older_id = decision_add(order)
    newer_id = decision_add(order)
    label_add(terms, by=ops, decision=two_labels, impact="lost_margin")
    label_add(terms, by=ops, decision=two_labels, impact="none")
    label_add(terms, by=ops, decision=latest, at=IN_WEEK + timedelta(hours=5))
    label_add(terms, by=ops, decision=older_id, at=IN_WEEK)
    label_add(terms, by=ops, decision=newer_id, at=IN_WEEK)

    review = weekly_review(week_start=WEEK)

    assert ranked_keys(review) == [
        (two_labels.pk, None),
        (latest.pk, None),
        (newer_id.pk, None),
        (older_id.pk, None),
    ]
    assert [row.rank for row in review.impact] == [1, 2, 3, 4]


def test_impact_row_contents(order, terms, ops, manager):
    item = review_item_add(order)
    decision = decision_add(order, review_item=item, model=("gpt-sub", "2024-09"))
    fix = fix_add(due_on=date(2026, 12, 31))
    label_add(terms, by=ops, decision=decision, impact="lost_margin", cause="stale_stock")
    # A label on the AI decision's review item counts for the decision.
    label_add(terms, by=manager, review_item=item, impact="wrong_item_shipped", fix=fix)

    [row] = weekly_review(week_start=WEEK).impact

    assert row.decision_id == decision.pk
    assert row.review_item_id is None
    assert row.order_id == order.pk
    assert row.action_code == "substitute_sku"
    assert (row.model_name, row.model_version) == ("gpt-sub", "2024-09")
    assert row.impact_code == "wrong_item_shipped"
    assert row.impact_weight == 4
    assert row.label_count == 2
    assert [code for code, _name in row.causes] == ["wrong_sku_match", "stale_stock"]
    assert set(row.labelled_by) == {"olivia", "morgan"}
    assert row.fix_ids == (fix.pk,)
    assert row.has_fix


def test_impact_counts_only_the_week_and_no_known_answers(order, terms, ops):
    decision = decision_add(order)
    label_add(terms, by=ops, decision=decision, at=WEEK_START - timedelta(seconds=1))
    label_add(terms, by=ops, decision=decision, at=WEEK_START + timedelta(days=7))
    seeded = review_item_add(None, known_answer=known_answer_add())
    label_add(terms, by=ops, review_item=seeded, impact="chargeback")
    address_item = review_item_add(order, kind=ReviewKind.ADDRESS)
    label_add(terms, by=ops, review_item=address_item, at=WEEK_START)

    review = weekly_review(week_start=WEEK)

    assert ranked_keys(review) == [(None, address_item.pk)]
    assert review.impact_total == 1
    assert review.impact[0].order_id == order.pk
    assert not review.impact[0].has_fix


def test_impact_limit_and_total(order, terms, ops):
    decisions = [decision_add(order) for _ in range(4)]
    for decision in decisions:
        label_add(terms, by=ops, decision=decision)

    review = weekly_review(week_start=WEEK, limit=3)

    assert len(review.impact) == 3
    assert review.impact_total == 4


def test_impact_channel_filter(order, terms, ops):
    other = Channel.objects.create(kind=ChannelKind.SHOPIFY, code="other-shop")
    here = decision_add(order)
    there = decision_add(order, channel=other)
    label_add(terms, by=ops, decision=here)
    label_add(terms, by=ops, decision=there, impact="chargeback")

    assert ranked_keys(weekly_review(week_start=WEEK, channel="shop")) == [(here.pk, None)]
    assert ranked_keys(weekly_review(week_start=WEEK, channel="other-shop")) == [(there.pk, None)]


# --- Highest disagreement --------------------------------------------------------------------


def reviewed_add(order, action: str, model: tuple[str, str], agreed: int, disagreed: int) -> None:
    for _ in range(agreed):
        decision_add(order, action=action, model=model, outcome=ReviewOutcome.AGREED)
    for _ in range(disagreed):
        decision_add(order, action=action, model=model, outcome=ReviewOutcome.DISAGREED)


def test_disagreement_ranks_by_rate_among_enough_reviews(order):
    assert DISAGREEMENT_MIN_REVIEWS == 10
    reviewed_add(order, "substitute_sku", ("gpt-sub", "2024-06"), agreed=9, disagreed=3)
    reviewed_add(order, "substitute_sku", ("gpt-sub", "2024-09"), agreed=5, disagreed=5)
    reviewed_add(order, "select_carrier", ("carrier-rank", "1"), agreed=0, disagreed=4)
    reviewed_add(order, "select_carrier", ("carrier-rank", "2"), agreed=15, disagreed=5)
    reviewed_add(order, "correct_shipping_address", ("addr", "1"), agreed=3, disagreed=1)

    groups = weekly_review(week_start=WEEK).disagreement

    assert [(g.action_code, g.model_version, g.reviewed, g.disagreed) for g in groups] == [
        ("substitute_sku", "2024-09", 10, 5),
        # Same 25 % rate: more disagreements first.
        ("select_carrier", "2", 20, 5),
        ("substitute_sku", "2024-06", 12, 3),
        # Under the minimum, after the ranked groups, still by rate.
        ("select_carrier", "1", 4, 4),
        ("correct_shipping_address", "1", 4, 1),
    ]
    assert [g.rate for g in groups] == [
        Decimal("0.5000"),
        Decimal("0.2500"),
        Decimal("0.2500"),
        Decimal("1.0000"),
        Decimal("0.2500"),
    ]
    assert [g.few_reviews for g in groups] == [False, False, False, True, True]


def test_disagreement_counts_the_week_only_and_no_known_answers(order):
    decision_add(
        order, outcome=ReviewOutcome.DISAGREED, reviewed_at=WEEK_START - timedelta(hours=1)
    )
    decision_add(order, outcome=ReviewOutcome.DISAGREED, reviewed_at=WEEK_START + timedelta(days=7))
    decision_add(order)  # not reviewed
    seeded = review_item_add(None, known_answer=known_answer_add())
    decision_add(order, outcome=ReviewOutcome.DISAGREED, review_item=seeded)
    decision_add(order, outcome=ReviewOutcome.AGREED, reviewed_at=WEEK_START)

    [group] = weekly_review(week_start=WEEK).disagreement

    assert (group.reviewed, group.disagreed) == (1, 0)


# --- Errors grouped by action, model version and cause ---------------------------------------


def test_error_groups_sum_impact_and_order_by_it(order, terms, ops):
    old = decision_add(order, model=("gpt-sub", "2024-06"))
    new = decision_add(order, model=("gpt-sub", "2024-09"))
    carrier = decision_add(order, action="select_carrier", model=("carrier-rank", "1"))
    label_add(terms, by=ops, decision=old, impact="customer_delay")
    label_add(terms, by=ops, decision=old, impact="failed_delivery")
    label_add(terms, by=ops, decision=new, impact="chargeback")
    label_add(terms, by=ops, decision=new, impact="none", cause="stale_stock")
    label_add(terms, by=ops, decision=carrier, impact="lost_margin", cause="carrier_data")

    groups = weekly_review(week_start=WEEK).groups

    assert [
        (g.action_code, g.model_version, g.cause.code, g.label_count, g.impact_weight)
        for g in groups
    ] == [
        # Equal weight 5: more labels first.
        ("substitute_sku", "2024-06", "wrong_sku_match", 2, 5),
        ("substitute_sku", "2024-09", "wrong_sku_match", 1, 5),
        ("select_carrier", "1", "carrier_data", 1, 2),
        ("substitute_sku", "2024-09", "stale_stock", 1, 0),
    ]
    first = groups[0]
    assert first.action.code == "substitute_sku"
    assert first.title == "Wrong SKU match: Substitute SKU (gpt-sub 2024-06)"
    assert first.unlinked_count == 2
    assert first.fix is None
    # Due 30 days after the group's first label, which is later than today.
    assert first.due_on == date(2027, 1, 1)


def test_error_group_due_date_never_before_today(order, terms, ops):
    decision = decision_add(order)
    label_add(terms, by=ops, decision=decision)

    # Reviewing the week two months later: 30 days after labelling lies in the past.
    with time_machine.travel(NOW + timedelta(days=60), tick=False):
        [group] = weekly_review(week_start=WEEK).groups

    assert group.due_on == (NOW + timedelta(days=60)).date()


def test_create_fix_from_group_links_labels_and_sets_priority(
    order, terms, ops, ops_client, manager
):
    decision = decision_add(order)
    first = label_add(terms, by=ops, decision=decision, impact="chargeback")
    second = label_add(terms, by=ops, decision=decision, impact="failed_delivery")
    other_cause = label_add(terms, by=ops, decision=decision, cause="stale_stock")
    outside = label_add(terms, by=ops, decision=decision, at=WEEK_START - timedelta(days=1))

    response = ops_client.post(
        reverse("feedback:fix-create"),
        {
            "week": "2026-W49",
            "action": "substitute_sku",
            "model_name": "gpt-sub",
            "model_version": "2024-06",
            "cause": terms["cause"]["wrong_sku_match"].pk,
            "title": "Stop matching black tees to white",
            "owner": manager.pk,
            "due_on": "2026-12-31",
        },
        headers=HTMX,
    )

    assert response.status_code == 200
    fix = FixItem.objects.get()
    assert fix.priority == 8
    assert fix.owner == manager
    assert fix.due_on == date(2026, 12, 31)
    assert fix.action.code == "substitute_sku"
    assert (fix.model_name, fix.model_version) == ("gpt-sub", "2024-06")
    assert fix.cause.code == "wrong_sku_match"
    assert fix.created_by == ops
    assert set(fix.labels.values_list("pk", flat=True)) == {first.pk, second.pk}
    assert ErrorLabel.objects.get(pk=other_cause.pk).fix is None
    assert ErrorLabel.objects.get(pk=outside.pk).fix is None
    assert f"Fix #{fix.pk} created with 2 label(s), priority 8.".encode() in response.content
    assert b'id="weekly-body"' in response.content

    [group] = [
        g for g in weekly_review(week_start=WEEK).groups if g.cause.code == "wrong_sku_match"
    ]
    assert group.fix == fix
    assert group.unlinked_count == 0
    assert weekly_review(week_start=WEEK).backlog[0].fix == fix


def test_create_fix_twice_for_a_group_is_a_conflict(order, terms, ops, ops_client):
    decision = decision_add(order)
    label_add(terms, by=ops, decision=decision)
    form = {
        "week": "2026-W49",
        "action": "substitute_sku",
        "model_name": "gpt-sub",
        "model_version": "2024-06",
        "cause": terms["cause"]["wrong_sku_match"].pk,
        "title": "Fix it",
    }
    assert ops_client.post(reverse("feedback:fix-create"), form, headers=HTMX).status_code == 200

    response = ops_client.post(reverse("feedback:fix-create"), form, headers=HTMX)

    assert response.status_code == 409
    assert b'data-code="no_unclaimed_labels"' in response.content
    assert FixItem.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "status", "text"),
    [
        ({"due_on": "2026-12-01"}, 400, b"due_on: Due date 2026-12-01 is in the past"),
        ({"due_on": "tomorrow"}, 400, b"due_on: invalid date"),
        ({"owner": "999999"}, 400, b"owner: User 999999 does not exist."),
        ({"title": "  "}, 400, b"title: A fix needs a title."),
        ({"week": "2026-49"}, 400, b"Invalid week"),
        ({"cause": ""}, 400, b"cause: missing"),
        ({"cause": "999999"}, 400, b"cause: unknown cause 999999."),
        ({"cause": "impact:chargeback"}, 400, b"is not a cause; its kind is impact."),
        ({"action": "nope"}, 400, b"action: unknown action"),
        ({"channel": "nope"}, 400, b"channel: unknown channel"),
        ({"week": "2026-W40"}, 404, b"was labelled in 2026-W40; reload the page."),
    ],
)
def test_create_fix_rejects_bad_input(order, terms, ops, ops_client, change, status, text):
    decision = decision_add(order)
    label_add(terms, by=ops, decision=decision)
    if change.get("cause") == "impact:chargeback":
        change = {"cause": terms["impact"]["chargeback"].pk}
    form = {
        "week": "2026-W49",
        "action": "substitute_sku",
        "model_name": "gpt-sub",
        "model_version": "2024-06",
        "cause": terms["cause"]["wrong_sku_match"].pk,
        "title": "Fix it",
    } | change

    response = ops_client.post(reverse("feedback:fix-create"), form, headers=HTMX)

    assert response.status_code == status
    assert text in response.content
    assert b"already belongs to a fix" not in response.content
    assert not FixItem.objects.exists()


def test_create_fix_without_due_date_uses_the_default(order, terms, ops, ops_client):
    decision = decision_add(order)
    label_add(terms, by=ops, decision=decision)
    page = ops_client.get(reverse("feedback:weekly"), {"week": "2026-W49"})
    # The form leaves the date optional and explains what an empty one means.
    assert b"optional; left empty, due in 30 days" in page.content
    assert b'name="due_on"' in page.content
    assert not re.search(rb'name="due_on"[^>]*required', page.content)

    response = ops_client.post(
        reverse("feedback:fix-create"),
        {
            "week": "2026-W49",
            "action": "substitute_sku",
            "model_name": "gpt-sub",
            "model_version": "2024-06",
            "cause": terms["cause"]["wrong_sku_match"].pk,
            "title": "Fix it",
            "due_on": "",
        },
        headers=HTMX,
    )

    assert response.status_code == 200
    assert FixItem.objects.get().due_on == (NOW + timedelta(days=30)).date()


def test_create_fix_needs_add_permission(order, terms, ops, manager):
    decision = decision_add(order)
    label_add(terms, by=ops, decision=decision)
    client = Client()
    client.force_login(manager)

    response = client.post(
        reverse("feedback:fix-create"),
        {
            "week": "2026-W49",
            "action": "substitute_sku",
            "model_name": "gpt-sub",
            "model_version": "2024-06",
            "cause": terms["cause"]["wrong_sku_match"].pk,
            "title": "Fix it",
        },
        headers=HTMX,
    )

    assert response.status_code == 403
    assert b'data-code="forbidden"' in response.content
    assert not FixItem.objects.exists()


# --- The 30-day target -----------------------------------------------------------------------


def test_fix_target_share_of_worst_errors_fixed_in_time(order, terms, ops):
    decision = decision_add(order)
    days = timedelta(days=1)
    as_of = WEEK_START + timedelta(days=7)

    def worst(labelled_at, done_at=None, status=FixStatus.DONE):
        fix = None
        if done_at is not None or status != FixStatus.DONE:
            fix = fix_add(due_on=date(2027, 1, 1), status=status, done_at=done_at)
        return label_add(
            terms, by=ops, decision=decision, impact="chargeback", at=labelled_at, fix=fix
        )

    # Fixed 29 days after labelling, and exactly on day 30: both in time.
    worst(as_of - 60 * days, done_at=as_of - 31 * days)
    worst(as_of - 50 * days, done_at=as_of - 20 * days)
    # Fixed on day 31: late.
    worst(as_of - 40 * days, done_at=as_of - 9 * days)
    # Not fixed and past 30 days: overdue, also when its fix is still in progress.
    worst(as_of - 35 * days)
    worst(as_of - 31 * days, status=FixStatus.IN_PROGRESS)
    # Done after the end of the week: not counted as done for this week.
    worst(as_of - 45 * days, done_at=as_of + days)
    # Still within its 30 days.
    worst(as_of - 10 * days)
    # Not among the worst, or outside the 90 days, or after the week: left out.
    label_add(terms, by=ops, decision=decision, impact="wrong_item_shipped", at=as_of - 40 * days)
    worst(as_of - 91 * days)
    worst(as_of + days)

    target = weekly_review(week_start=WEEK).target

    assert target.worst_weight == 5
    assert target.worst_labels == 7
    assert target.fixed_in_time == 2
    assert target.fixed_late == 1
    assert target.overdue == 3
    assert target.within_due_days == 1
    assert target.came_due == 6
    assert target.share == Decimal("0.3333")
    assert target.target_met is False


def test_fix_target_met_and_open_fix_counts(order, terms, ops):
    decision = decision_add(order)
    fix = fix_add(due_on=date(2027, 1, 1), status=FixStatus.DONE, done_at=IN_WEEK)
    label_add(
        terms,
        by=ops,
        decision=decision,
        impact="chargeback",
        at=IN_WEEK - timedelta(days=3),
        fix=fix,
    )
    fix_add(due_on=date(2026, 12, 8))  # overdue
    fix_add(due_on=date(2026, 12, 9), status=FixStatus.IN_PROGRESS)  # due today
    fix_add(due_on=date(2026, 12, 1), status=FixStatus.WONT_FIX)

    target = weekly_review(week_start=WEEK).target

    assert target.share == Decimal("1.0000")
    assert target.target_met is True
    assert (target.open_fixes, target.overdue_fixes) == (2, 1)


def test_fix_target_without_worst_errors_has_no_share(terms):
    target = weekly_review(week_start=WEEK).target

    assert target.worst_labels == 0
    assert target.share is None
    assert target.target_met is None


# --- Reviewer quality ------------------------------------------------------------------------


def test_reviewer_accuracy_and_agreement(order, ops, manager):
    alice = make_user("alice", "cs_agent")
    case = known_answer_add()
    for correct in (True, True, True, False):
        review_item_add(
            None,
            decided_by=alice,
            decided_at=IN_WEEK,
            known_answer=case,
            known_answer_correct=correct,
        )
    review_item_add(
        None, decided_by=manager, decided_at=IN_WEEK, known_answer=case, known_answer_correct=False
    )
    # Decided the week before: not counted.
    review_item_add(
        None,
        decided_by=alice,
        decided_at=WEEK_START - timedelta(hours=1),
        known_answer=case,
        known_answer_correct=False,
    )
    for outcome in ("agreed", "agreed", "disagreed"):
        item = review_item_add(order, decided_by=alice, decided_at=IN_WEEK)
        decision_add(order, outcome=outcome, review_item=item)
    item = review_item_add(order, decided_by=manager, decided_at=IN_WEEK)
    decision_add(order, outcome="agreed", review_item=item)
    # A known-answer item with an AI decision counts for accuracy, never for agreement.
    seeded = review_item_add(
        None, decided_by=manager, decided_at=IN_WEEK, known_answer=case, known_answer_correct=True
    )
    decision_add(order, outcome="disagreed", review_item=seeded)

    rows = {row.username: row for row in weekly_review(week_start=WEEK).reviewers}

    assert set(rows) == {"alice", "morgan"}
    assert (rows["alice"].known_answers, rows["alice"].known_correct) == (4, 3)
    assert rows["alice"].accuracy == Decimal("0.7500")
    assert (rows["alice"].reviewed, rows["alice"].agreed) == (3, 2)
    assert rows["alice"].agreement == Decimal("0.6667")
    assert (rows["morgan"].known_answers, rows["morgan"].known_correct) == (2, 1)
    assert rows["morgan"].accuracy == Decimal("0.5000")
    assert (rows["morgan"].reviewed, rows["morgan"].agreed) == (1, 1)
    assert rows["morgan"].agreement == Decimal("1.0000")


def test_reviewer_without_known_answers_has_no_accuracy(order):
    alice = make_user("alice", "cs_agent")
    item = review_item_add(order, decided_by=alice, decided_at=IN_WEEK)
    decision_add(order, outcome="disagreed", review_item=item)

    [row] = weekly_review(week_start=WEEK).reviewers

    assert row.accuracy is None
    assert row.agreement == Decimal("0.0000")


# --- Query counts ----------------------------------------------------------------------------


def populate(order, terms, by, count: int) -> None:
    """Labels, reviews, fixes and known answers: `count` of each, so every section has data."""
    case = known_answer_add()
    Version.objects.get_or_create(
        kind=VersionKind.MODEL,
        subject="gpt-sub",
        label="v1",
        defaults={"changelog": "Test.", "activated_at": WEEK_START, "status": "active"},
    )
    for index in range(count):
        item = review_item_add(order, decided_by=by, decided_at=IN_WEEK, escalated_at=IN_WEEK)
        decision = decision_add(
            order,
            model=("gpt-sub", f"v{index % 3}"),
            outcome=ReviewOutcome.AGREED if index % 2 else ReviewOutcome.DISAGREED,
            review_item=item,
            created_at=IN_WEEK,
        )
        fix = fix_add(due_on=date(2026, 12, 20), status=FixStatus.DONE, done_at=IN_WEEK)
        label_add(
            terms,
            by=by,
            decision=decision,
            impact="chargeback",
            at=IN_WEEK - timedelta(days=2),
            fix=fix,
        )
        review_item_add(
            None, decided_by=by, decided_at=IN_WEEK, known_answer=case, known_answer_correct=True
        )
        fix_add(due_on=date(2026, 12, 20))


def queries_of(call) -> int:
    with CaptureQueriesContext(connection) as context:
        call()
    return len(context.captured_queries)


def test_weekly_review_queries_flat(order, terms, ops, django_assert_max_num_queries):
    populate(order, terms, ops, 1)
    with django_assert_max_num_queries(25):
        weekly_review(week_start=WEEK)
    few = queries_of(lambda: weekly_review(week_start=WEEK))

    populate(order, terms, ops, 29)
    review = weekly_review(week_start=WEEK)
    many = queries_of(lambda: weekly_review(week_start=WEEK))

    assert review.impact_total == 30
    assert len(review.reviewers) == 1
    assert review.accuracy_changes[0].after_reviewed > 0
    assert many == few


def test_weekly_page_queries_flat(order, terms, ops, ops_client):
    populate(order, terms, ops, 1)
    url = reverse("feedback:weekly") + "?week=2026-W49"
    ops_client.get(url)
    few = queries_of(lambda: ops_client.get(url))

    populate(order, terms, ops, 29)
    many = queries_of(lambda: ops_client.get(url))

    assert many == few
    assert few <= 40


def test_weekly_csv_queries_flat(order, terms, ops, ops_client):
    populate(order, terms, ops, 1)
    url = reverse("feedback:weekly-csv") + "?week=2026-W49"
    ops_client.get(url)
    few = queries_of(lambda: ops_client.get(url))

    populate(order, terms, ops, 29)
    many = queries_of(lambda: ops_client.get(url))

    assert many == few


# --- Page and CSV ----------------------------------------------------------------------------


def test_weekly_page_shows_sections(order, terms, ops, ops_client):
    decision = decision_add(order, outcome=ReviewOutcome.DISAGREED)
    label_add(terms, by=ops, decision=decision, impact="chargeback")

    response = ops_client.get(reverse("feedback:weekly"), {"week": "2026-W49"})

    assert response.status_code == 200
    body = response.content.decode()
    assert "Weekly review 2026-W49" in body
    assert f'href="/orders/{order.pk}/"' in body
    assert "Target: every worst error fixed within 30 days." in body
    assert 'data-action="create-fix"' in body
    assert "?week=2026-W48" in body
    assert "?week=2026-W50" in body
    for section in ("impact", "disagreement", "groups", "backlog", "kpis", "reviewers"):
        assert f'id="{section}"' in body


def test_weekly_page_defaults_to_this_week(ops_client):
    response = ops_client.get(reverse("feedback:weekly"))

    assert response.status_code == 200
    assert response.context["review"].week == "2026-W50"
    assert response.context["next_week"] is None


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({"week": "2026-13"}, "Invalid week"),
        ({"week": "2026-W51"}, "Week 2026-W51 has not started; the latest is 2026-W50."),
        ({"channel": "nowhere"}, "There is no channel &#x27;nowhere&#x27;."),
    ],
)
def test_weekly_page_invalid_parameters(ops_client, params, text):
    response = ops_client.get(reverse("feedback:weekly"), params)

    assert response.status_code == 400
    assert text in response.content.decode()
    assert response.context["review"].week == "2026-W50"


def test_weekly_page_permissions(client, manager):
    url = reverse("feedback:weekly")
    assert client.get(url).status_code == 302

    client.force_login(make_user("alice", "cs_agent"))
    response = client.get(url)
    assert response.status_code == 403
    assert b"no access to the weekly review" in response.content

    client.force_login(manager)
    response = client.get(url)
    assert response.status_code == 200
    # A CS manager sees the review but may not create fixes.
    assert not response.context["may_create_fix"]

    client.force_login(make_user("lee", "leadership"))
    assert client.get(url).status_code == 200
    assert client.get(reverse("feedback:weekly-csv")).status_code == 200


def test_nav_link_for_weekly_review(client, manager):
    client.force_login(manager)
    assert b">Weekly review</a>" in client.get(reverse("feedback:fixes")).content

    client.force_login(make_user("alice", "cs_agent"))
    assert b">Weekly review</a>" not in client.get(reverse("reviews:queue")).content


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_weekly_csv_rows(order, terms, ops, ops_client):
    alice = make_user("alice", "cs_agent")
    item = review_item_add(order, decided_by=alice, decided_at=IN_WEEK)
    decision = decision_add(order, outcome=ReviewOutcome.DISAGREED, review_item=item)
    label_add(terms, by=ops, decision=decision, impact="chargeback", cause="stale_stock")
    fix = fix_add(priority=7, due_on=date(2026, 12, 8), title="=HYPERLINK(evil)")

    response = ops_client.get(reverse("feedback:weekly-csv"), {"week": "2026-W49"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="weekly-review-2026-W49.csv"'
    header = response.content.decode().splitlines()[0].split(",")
    assert header[0] == "section"
    rows = csv_rows(response)
    by_section: dict[str, list[dict]] = {}
    for row in rows:
        by_section.setdefault(row["section"], []).append(row)
    assert set(by_section) == {"impact", "disagreement", "group", "fix", "kpi", "reviewer"}

    [impact] = by_section["impact"]
    assert impact["decision_id"] == str(decision.pk)
    assert impact["order_id"] == str(order.pk)
    assert impact["action"] == "substitute_sku"
    assert (impact["cause"], impact["impact"], impact["impact_weight"]) == (
        "stale_stock",
        "chargeback",
        "5",
    )
    [disagreement] = by_section["disagreement"]
    assert (disagreement["reviewed"], disagreement["disagreed"]) == ("1", "1")
    assert disagreement["disagreement_rate"] == "1.0000"
    assert disagreement["few_reviews"] == "yes"
    [group] = by_section["group"]
    assert (group["cause"], group["labels"], group["impact_weight"]) == ("stale_stock", "1", "5")
    [fix_row] = by_section["fix"]
    assert fix_row["fix_id"] == str(fix.pk)
    assert (fix_row["days_left"], fix_row["due_on"]) == ("-1", "2026-12-08")
    kpis = {row["metric"]: row for row in by_section["kpi"]}
    assert kpis["worst_errors_within_due_days"]["value"] == "1"
    assert "escalations_per_1000_orders" in kpis
    assert "resolution_hours_median" in kpis
    [reviewer] = by_section["reviewer"]
    assert (reviewer["reviewer"], reviewer["reviewed"], reviewer["agreement"]) == (
        "alice",
        "1",
        "0.0000",
    )
    # Ids and codes only: no fix titles, no customer data.
    text = response.content.decode()
    assert "HYPERLINK" not in text
    assert order.customer_email not in text
    assert "Birch" not in text


def test_weekly_csv_with_channel_names_the_file(ops_client, channel):
    response = ops_client.get(
        reverse("feedback:weekly-csv"), {"week": "2026-W49", "channel": "shop"}
    )

    assert (
        response["Content-Disposition"] == 'attachment; filename="weekly-review-2026-W49-shop.csv"'
    )


def test_weekly_csv_invalid_week_is_400(ops_client):
    response = ops_client.get(reverse("feedback:weekly-csv"), {"week": "W49"})

    assert response.status_code == 400
    assert b"Invalid week 'W49'" in response.content


def test_weekly_csv_forbidden_without_permission(client):
    client.force_login(make_user("alice", "cs_agent"))

    assert client.get(reverse("feedback:weekly-csv")).status_code == 403


def test_create_fix_writes_audit_entry(order, terms, ops, ops_client):
    decision = decision_add(order)
    label = label_add(terms, by=ops, decision=decision)

    ops_client.post(
        reverse("feedback:fix-create"),
        {
            "week": "2026-W49",
            "action": "substitute_sku",
            "model_name": "gpt-sub",
            "model_version": "2024-06",
            "cause": terms["cause"]["wrong_sku_match"].pk,
            "title": "Fix it",
        },
    )

    fix = FixItem.objects.get()
    entry = AuditEntry.objects.get(action="fix_item.created")
    assert entry.target_id == str(fix.pk)
    assert entry.after["labels"] == [label.pk]
    assert entry.actor == ops
