"""Known-answer cases copied from decided history items, and this week's known-answer items."""

import random
from datetime import UTC, datetime, time, timedelta

from django.contrib.auth.models import AbstractBaseUser

from guardrails.facts import order_facts
from guardrails.services import FALLBACK_APPROVER
from monitoring.demo import HISTORY_MARK, HistoryStaff
from reviews.feedback import week_current
from reviews.known_answers import known_answer_from_item
from reviews.models import (
    KnownAnswer,
    KnownAnswerChoice,
    ReviewItem,
    ReviewKind,
    ReviewStatus,
)
from reviews.sla import review_sla_for

# (review kind, decided status, explanation) of each known-answer case, in creation order.
KNOWN_ANSWER_CASES = [
    (
        ReviewKind.SUBSTITUTION,
        ReviewStatus.ACCEPTED,
        "Same product and colour as the ordered line, and the ordered variant was out of "
        "stock everywhere. This is the case the substitution playbook exists for: accept.",
    ),
    (
        ReviewKind.SUBSTITUTION,
        ReviewStatus.REJECTED,
        "The substitute is another variant of the product, and the customer chose the variant "
        "on purpose. Without the customer's agreement the order waits for stock: reject.",
    ),
    (
        ReviewKind.ADDRESS,
        ReviewStatus.ACCEPTED,
        "The postcode had lost its last digit. The corrected postcode belongs to the city and "
        "state, and the street is unchanged: accept.",
    ),
]
# (reviewer, index of the case above, answer) of the known-answer items decided this week,
# spread over the days so far, and last week, so a complete week has figures too.
THIS_WEEK_DECISIONS = [
    ("agent", 0, "accept"),
    ("agent", 1, "reject"),
    ("manager", 2, "accept"),
    ("agent", 0, "accept"),
    ("agent", 1, "accept"),
    ("manager", 2, "reject"),
    ("manager", 2, "accept"),
]
LAST_WEEK_DECISIONS = [
    ("agent", 1, "accept"),
    ("manager", 2, "accept"),
    ("agent", 0, "accept"),
    ("agent", 1, "reject"),
    ("manager", 2, "accept"),
]


def known_answers_load(
    *, staff: HistoryStaff, rng: random.Random, now: datetime
) -> tuple[int, int]:
    """Copy decided history items into cases, and add known-answer items of this week and last.

    Returns the number of cases and of known-answer items.
    """
    week_start = datetime.combine(week_current(now), time.min, tzinfo=UTC)
    cases = []
    for kind, status, explanation in KNOWN_ANSWER_CASES:
        used = [case.source_item_id for case in cases if case is not None]
        source = _case_source(kind, status, exclude_ids=used)
        if source is None:
            cases.append(None)
            continue
        _proposal_fill(source)
        case = known_answer_from_item(
            review_item_id=source.pk, user=staff.manager, explanation=explanation
        )
        KnownAnswer.objects.filter(pk=case.pk).update(created_at=week_start - timedelta(days=10))
        cases.append(case)

    items = _known_answer_items(staff=staff, rng=rng, cases=cases, week_start=week_start, now=now)
    return sum(1 for case in cases if case), items


def _case_source(kind: str, status: str, *, exclude_ids: list[int]) -> ReviewItem | None:
    """Return the latest decided history item of an AI decision of this kind and outcome."""
    return (
        ReviewItem.objects.filter(
            decision_note=HISTORY_MARK,
            kind=kind,
            status=status,
            ai_decision__isnull=False,
            decided_by__isnull=False,
        )
        .exclude(pk__in=exclude_ids)
        .select_related("ai_decision__action", "order")
        .order_by("-decided_at", "-pk")
        .first()
    )


def _proposal_fill(item: ReviewItem) -> None:
    """Give a history item the proposal and source data a real AI review item carries.

    The history writes review items without them; a known answer needs the proposal.
    """
    decision = item.ai_decision
    item.source_data = {
        "before": decision.before,
        "order": order_facts(item.order),
        "source": HISTORY_MARK,
    }
    item.proposal = {
        "decision": decision.pk,
        "action": decision.action.code,
        "before": decision.before,
        "after": decision.after,
        "confidence": str(decision.confidence),
        "model": {"name": decision.model_name, "version": decision.model_version},
        "rationale": decision.rationale,
        "reasons": decision.reasons,
    }
    item.save(update_fields=["source_data", "proposal"])


def _known_answer_items(
    *,
    staff: HistoryStaff,
    rng: random.Random,
    cases: list[KnownAnswer | None],
    week_start: datetime,
    now: datetime,
) -> int:
    """Write the decided known-answer items of this week and last, and one open item.

    Written directly because deciding through the review service stamps the current time.
    The fields are those known_answer_item_decide sets.
    """
    reviewers = {"agent": staff.agent, "manager": staff.manager}
    last_week = week_start - timedelta(days=7)
    items = []
    for start, end, decisions in [
        (last_week, week_start, LAST_WEEK_DECISIONS),
        (week_start, now, THIS_WEEK_DECISIONS),
    ]:
        plan = [(reviewers[who], cases[index], answer) for who, index, answer in decisions]
        plan = [(user, case, answer) for user, case, answer in plan if case is not None]
        for position, (user, case, answer) in enumerate(plan, start=1):
            decided_at = start + (end - start) * position / (len(plan) + 1)
            item = _decided_item(case, user=user, answer=answer, decided_at=decided_at, rng=rng)
            items.append(item)
    open_case = next((case for case in cases if case is not None), None)
    if open_case is not None:
        items.append(_seeded_item(open_case, opened_at=now - timedelta(minutes=20)))

    created = ReviewItem.objects.bulk_create(items)
    for item, wanted in zip(created, items, strict=True):
        item.created_at = wanted.opened_at
    ReviewItem.objects.bulk_update(created, ["created_at"])
    return len(created)


def _decided_item(
    case: KnownAnswer,
    *,
    user: AbstractBaseUser,
    answer: str,
    decided_at: datetime,
    rng: random.Random,
) -> ReviewItem:
    item = _seeded_item(case, opened_at=decided_at - timedelta(minutes=rng.uniform(5, 45)))
    correct = answer == case.expected
    accepted = answer == KnownAnswerChoice.ACCEPT
    item.status = ReviewStatus.ACCEPTED if accepted else ReviewStatus.REJECTED
    item.decided_at = decided_at
    item.decided_by = user
    item.decision = {
        "known_answer": case.pk,
        "answer": answer,
        "expected": case.expected,
        "correct": correct,
    }
    item.known_answer_correct = correct
    return item


def _seeded_item(case: KnownAnswer, *, opened_at: datetime) -> ReviewItem:
    """Build an open known-answer item as the queue seeding would, opened at `opened_at`."""
    sla = review_sla_for(kind=case.kind, action_code=case.action_code)
    item = ReviewItem(
        kind=case.kind,
        known_answer=case,
        reason=case.reason,
        source_data=case.source_data,
        proposal=case.proposal,
        action_code=case.action_code,
        confidence=case.confidence,
        # As the queue seeding sets it: an AI action without an approver goes to the fallback.
        approver_group=sla.approver_group or (FALLBACK_APPROVER if case.action_code else ""),
        sla_minutes=sla.minutes,
        on_sla_breach=sla.on_breach,
        due_at=sla.due_at(opened_at),
    )
    item.opened_at = opened_at
    return item
