"""The feedback-loop demo on a short history: versions, canaries, labels, fixes, known answers."""

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from guardrails.models import (
    Canary,
    CanaryAssignment,
    CanaryEvent,
    CanaryStatus,
    Decision,
    DecisionOutcome,
    Verdict,
    Version,
    VersionStatus,
)
from monitoring.demo import HISTORY_MODEL_NAME, demo_history_load
from orders.models import Order
from reviews.feedback import week_current, weekly_review
from reviews.feedback_demo import demo_canary_running, demo_feedback_load
from reviews.feedback_demo.versions import CANARY_MIN_ORDERS
from reviews.models import (
    ErrorLabel,
    FixItem,
    KnownAnswer,
    LabelKind,
    ReviewItem,
    ReviewStatus,
)

# The history fixture: demo channels, catalog, carriers, policies and the three demo users.
from tests.monitoring.test_demo_history import world  # noqa: F401

pytestmark = pytest.mark.django_db

# A Thursday, so the current week has three days of decisions behind it.
NOW = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
# Past the baseline's 30 days, so the history has two model versions.
HISTORY_DAYS = 45


@pytest.fixture
def loaded(world):  # noqa: F811
    """Load a short history and the feedback demo on it, with the clock stopped at NOW."""
    with time_machine.travel(NOW, tick=False):
        # A seed whose short history gives every kind of fix; many seeds give only two.
        demo_history_load(staff=world, now=NOW, days=HISTORY_DAYS, daily_orders=(10, 15), seed=2)
        counts = demo_feedback_load(staff=world, now=NOW)
        yield counts


def agent_versions() -> list[Version]:
    return list(Version.objects.filter(subject=HISTORY_MODEL_NAME).order_by("created_at"))


def check_versions_follow_the_history(loaded) -> None:
    first, second, candidate = agent_versions()

    assert (first.status, second.status, candidate.status) == (
        VersionStatus.RETIRED,
        VersionStatus.ACTIVE,
        VersionStatus.CANARY,
    )
    assert first.retired_at == second.activated_at
    assert first.changelog
    assert second.changelog
    assert candidate.changelog
    # Only the candidate arm of the canary before the activation decided with the new label.
    early = Decision.objects.filter(model_version=second.label, created_at__lt=second.activated_at)
    assert early.exists()
    assert set(early.values_list("canary_arm", "canary__status").distinct()) == {
        ("candidate", CanaryStatus.PROMOTED)
    }
    # Activated within the weekly review's 90-day version comparison.
    assert NOW - timedelta(days=90) < second.activated_at < NOW
    built_in = Version.objects.exclude(subject=HISTORY_MODEL_NAME)
    assert sorted(built_in.values_list("subject", "label", "status")) == [
        ("omsguard-carrier", "1", "active"),
        ("omsguard-substitution", "1", "active"),
    ]

    # The new version went live by promotion at the end of a canary.
    past = Canary.objects.get(status=CanaryStatus.PROMOTED)
    assert past.candidate == second
    assert past.ended_at == second.activated_at
    assert past.result["candidate"]["orders"] > 0
    assert "inconclusive" in past.end_reason
    kinds = set(CanaryEvent.objects.filter(canary=past).values_list("kind", flat=True))
    assert kinds == {"started", "promoted"}


def check_running_canary_tags_its_orders(loaded) -> None:
    canary = demo_canary_running()
    _, active, candidate = agent_versions()

    assert canary.status == CanaryStatus.RUNNING
    assert (canary.candidate, canary.control) == (candidate, active)
    assert canary.min_orders_per_arm == CANARY_MIN_ORDERS
    assert timedelta(days=9) < NOW - canary.started_at <= timedelta(days=10, hours=1)
    orders = Order.objects.filter(created_at__gte=canary.started_at)
    assert canary.assignments.count() == orders.count() > 0
    assert set(canary.assignments.values_list("arm", flat=True)) == {"control", "candidate"}

    arms = dict(canary.assignments.values_list("order_id", "arm"))
    decisions = Decision.objects.filter(order__in=orders, model_name=HISTORY_MODEL_NAME)
    assert decisions.exists()
    for decision in decisions:
        assert decision.canary_id == canary.pk
        assert decision.canary_arm == arms[decision.order_id]
        expected = candidate.label if decision.canary_arm == "candidate" else active.label
        assert decision.model_version == expected

    # The periodic evaluation ran once and left it running.
    assert canary.last_evaluation["action_taken"] == "none"
    assert canary.last_evaluation["outcome"] != "rollback"
    assert canary.last_evaluated_at == NOW


def check_labels_use_the_taxonomy(loaded) -> None:
    labels = list(ErrorLabel.objects.select_related("cause", "impact", "corrective_action"))

    assert len(labels) == loaded["error_labels"] > 0
    for label in labels:
        assert (label.cause.kind, label.impact.kind, label.corrective_action.kind) == (
            LabelKind.CAUSE,
            LabelKind.IMPACT,
            LabelKind.CORRECTIVE_ACTION,
        )
        assert label.cause.is_active and label.impact.is_active
        assert label.labelled_by.username in {"manager", "ops"}
        assert NOW - timedelta(days=43) < label.labelled_at < NOW
    assert any(label.review_item_id for label in labels)
    assert any(label.decision_id for label in labels)

    # A disagreed audit sample is labelled on its review item, so the autonomy gate does not
    # count it as an error.
    on_items = ErrorLabel.objects.filter(review_item__ai_decision__verdict=Verdict.APPLIED)
    for label in on_items.select_related("review_item__ai_decision"):
        assert label.review_item.ai_decision.outcome == DecisionOutcome.UNLABELLED
    queued = Decision.objects.filter(
        error_labels__isnull=False, verdict=Verdict.QUEUED_FOR_REVIEW
    ).distinct()
    assert queued.exists()
    assert set(queued.values_list("outcome", flat=True)) == {DecisionOutcome.ERROR}


def check_fixes_link_labels_and_reach_weekly_review(loaded) -> None:
    fixes = {fix.status: fix for fix in FixItem.objects.all()}
    _, _, candidate = agent_versions()
    today = NOW.date()

    assert loaded["fix_items"] == len(fixes) == 3
    done, overdue, upcoming = fixes["done"], fixes["in_progress"], fixes["open"]
    for fix in fixes.values():
        assert fix.labels.exists()
        assert fix.priority == sum(label.impact.weight for label in fix.labels.all())
    assert done.fixed_by_version == candidate
    assert set(done.labels.values_list("fixed_in", flat=True)) == {candidate.pk}
    first_label = min(done.labels.values_list("labelled_at", flat=True))
    assert first_label < done.done_at <= first_label + timedelta(days=30)
    assert overdue.due_on < today
    assert (upcoming.owner.username, upcoming.due_on >= today) == ("ops", True)

    # The weekly review of the current week has figures in every section the demo feeds.
    review = weekly_review(week_start=week_current(NOW))

    assert review.disagreement
    assert review.backlog
    changes = {change.version.label: change for change in review.accuracy_changes}
    assert changes[agent_versions()[1].label].lift_points is not None
    reviewers = {row.username: row for row in review.reviewers}
    assert reviewers["agent"].known_answers > 0
    assert reviewers["manager"].accuracy is not None


def check_known_answers_without_personal_data(loaded) -> None:
    cases = list(KnownAnswer.objects.select_related("source_item__order"))

    assert len(cases) == loaded["known_answers"] == 3
    for case in cases:
        order = case.source_item.order
        text = json.dumps([case.reason, case.source_data, case.proposal])
        assert order.customer_email not in text
        assert order.customer_name not in text
        assert order.shipping_address["address1"] not in text
        assert order.shipping_address["city"] not in text
        assert case.action_code == case.source_item.ai_decision.action.code
        expected = "accept" if case.source_item.status == ReviewStatus.ACCEPTED else "reject"
        assert case.expected == expected

    # Known-answer items decided this week, right and wrong, and one still open.
    items = ReviewItem.objects.filter(known_answer__isnull=False)
    decided = items.exclude(status=ReviewStatus.OPEN)

    assert items.count() == loaded["known_answer_items"]
    assert items.filter(status=ReviewStatus.OPEN).count() == 1
    assert set(decided.values_list("decided_by__username", flat=True)) == {"agent", "manager"}
    assert set(decided.values_list("known_answer_correct", flat=True)) == {True, False}
    week_start = datetime.combine(week_current(NOW), datetime.min.time(), tzinfo=UTC)
    this_week = decided.filter(decided_at__gte=week_start)
    assert this_week.count() == 7
    assert all(week_start - timedelta(days=7) <= item.decided_at < NOW for item in decided)
    assert all(item.created_at < item.decided_at for item in decided)


def check_second_run_adds_nothing(loaded, world) -> None:  # noqa: F811
    models = [Version, Canary, CanaryAssignment, ErrorLabel, FixItem, KnownAnswer, ReviewItem]
    before = {model.__name__: model.objects.count() for model in models}

    assert demo_feedback_load(staff=world, now=NOW) == {}
    assert {model.__name__: model.objects.count() for model in models} == before


# One test runs every check on one load, because loading the history takes seconds. The
# second-run check goes last: it loads the feedback demo again.
def test_feedback_demo(loaded, world):  # noqa: F811
    check_versions_follow_the_history(loaded)
    check_running_canary_tags_its_orders(loaded)
    check_labels_use_the_taxonomy(loaded)
    check_fixes_link_labels_and_reach_weekly_review(loaded)
    check_known_answers_without_personal_data(loaded)
    check_second_run_adds_nothing(loaded, world)
