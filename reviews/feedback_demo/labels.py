"""Error labels on the history's errors and disagreements, and the fixes made from them."""

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.template.defaultfilters import pluralize

from guardrails.models import (
    Canary,
    Decision,
    DecisionOutcome,
    ReviewOutcome,
    Verdict,
    Version,
)
from guardrails.selectors import guardrail_settings
from monitoring.demo import HISTORY_MARK, HISTORY_MODEL_NAME, HistoryStaff
from orders.models import (
    Chargeback,
    Order,
    OrderReturn,
    ReturnAttribution,
    Shipment,
    ShipmentStatus,
)
from reviews.feedback import week_current
from reviews.fixes import fix_item_create, fix_item_update
from reviews.models import (
    ErrorLabel,
    FixItem,
    FixStatus,
    LabelKind,
    LabelTerm,
    ReviewItem,
    ReviewKind,
    ReviewStatus,
)

# About six weeks, so that some labels are older than the 30 days a fix is due in.
LABEL_DAYS = 42

# Taxonomy codes (from the default taxonomy) by the situation of the error, with weights for
# the seeded choice.
CAUSES_BY_ACTION = {
    "select_carrier": [("carrier_data", 3), ("policy_gap", 2), ("low_confidence_applied", 1)],
    "substitute_sku": [("wrong_sku_match", 3), ("stale_stock", 2), ("policy_gap", 1)],
    "correct_shipping_address": [("bad_address_parse", 4), ("channel_data", 1)],
}
IMPACTS_BY_ACTION = {
    "select_carrier": [("customer_delay", 3), ("lost_margin", 2)],
    "substitute_sku": [("wrong_item_shipped", 3), ("lost_margin", 2), ("chargeback", 1)],
    "correct_shipping_address": [("failed_delivery", 3), ("customer_delay", 2), ("chargeback", 1)],
}
CORRECTIVE_BY_CAUSE = {
    "carrier_data": "fix_mapping",
    "policy_gap": "change_policy",
    "low_confidence_applied": "change_policy",
    "wrong_sku_match": "retrain_model",
    "stale_stock": "fix_channel_data",
    "bad_address_parse": "revise_prompt",
    "channel_data": "fix_channel_data",
    "reviewer_error": "reviewer_coaching",
}
# A person approved each applied error, so some of them are the reviewer's error as well.
REVIEWER_ERROR_SHARE = 0.3
# (cause, impact, corrective action) of a rejected review item without an AI decision.
ITEM_LABELS = {
    ReviewKind.UNMAPPED_SKU: ("channel_data", "customer_delay", "fix_mapping"),
    ReviewKind.ADDRESS: ("channel_data", "customer_delay", "none"),
    ReviewKind.CARRIER_CODE: ("carrier_data", "customer_delay", "fix_mapping"),
    ReviewKind.OUT_OF_STOCK: ("stale_stock", "customer_delay", "fix_channel_data"),
    ReviewKind.HIGH_VALUE: ("policy_gap", "none", "change_policy"),
    ReviewKind.DELIVERY_FAILED: ("channel_data", "none", "fix_channel_data"),
}


# --- Error labels ----------------------------------------------------------------------------


@dataclass
class LabelPlan:
    """An error label to write, its taxonomy codes, and the decision it makes an error."""

    label: ErrorLabel
    labelled_at: datetime
    cause: str
    impact: str
    corrective_action: str
    # The action's name ("" for an item without an AI decision), for titles and changelogs.
    subject: str
    # A queued proposal the label makes an error, as error_label_add would.
    decision: Decision | None = None


def labels_load(*, staff: HistoryStaff, rng: random.Random, since: datetime) -> list[LabelPlan]:
    """Label the history's errors, disagreements and rejected items since `since`.

    An applied error gets its label on the decision, at the time the history labelled it.
    A queued proposal a reviewer disagreed with is labelled on the decision, which becomes
    an error as the labelling service would make it. A disagreed audit sample of an
    autonomous decision is labelled on its review item instead, which leaves the decision's
    outcome alone: otherwise the autonomy gate would count it and suspend the action.
    """
    outcomes = _order_outcomes(since)
    plans = [
        _decision_label_plan(decision, staff=staff, rng=rng, outcomes=outcomes)
        for decision in _labelled_decisions(since)
    ]
    plans += [_item_label_plan(item, staff=staff, rng=rng) for item in _rejected_items(since)]

    terms = {(term.kind, term.code): term for term in LabelTerm.objects.all()}
    for plan in plans:
        plan.label.cause = terms[(LabelKind.CAUSE, plan.cause)]
        plan.label.impact = terms[(LabelKind.IMPACT, plan.impact)]
        plan.label.corrective_action = terms[(LabelKind.CORRECTIVE_ACTION, plan.corrective_action)]
    labels = ErrorLabel.objects.bulk_create([plan.label for plan in plans], batch_size=500)
    # bulk_create stamps labelled_at (auto_now_add) with the current time; bulk_update does not.
    for label, plan in zip(labels, plans, strict=True):
        label.labelled_at = plan.labelled_at
    ErrorLabel.objects.bulk_update(labels, ["labelled_at"], batch_size=500)
    _decisions_mark_errors(plans)
    return plans


def _labelled_decisions(since: datetime) -> QuerySet[Decision]:
    known = Q(outcome=DecisionOutcome.ERROR, labelled_at__gte=since) | Q(
        review_outcome=ReviewOutcome.DISAGREED, reviewed_at__gte=since
    )
    return (
        Decision.objects.filter(known, model_name=HISTORY_MODEL_NAME)
        .select_related("action", "review_item", "labelled_by")
        .order_by("pk")
    )


def _rejected_items(since: datetime) -> QuerySet[ReviewItem]:
    return ReviewItem.objects.filter(
        decision_note=HISTORY_MARK,
        status=ReviewStatus.REJECTED,
        kind__in=list(ITEM_LABELS),
        ai_decision__isnull=True,
        decided_at__gte=since,
    ).order_by("pk")


def _order_outcomes(since: datetime) -> dict[str, set[int]]:
    """Return the ids of the orders with each bad outcome, to pick impacts that match it."""
    orders = Order.objects.filter(
        source_name=HISTORY_MARK, created_at__gte=since - timedelta(days=30)
    )
    failed = [ShipmentStatus.DELIVERY_FAILED, ShipmentStatus.RETURNED_TO_SENDER]
    caused = [ReturnAttribution.FULFILMENT, ReturnAttribution.SUBSTITUTION]
    return {
        "chargeback": set(
            Chargeback.objects.filter(order__in=orders).values_list("order_id", flat=True)
        ),
        "failed_delivery": set(
            Shipment.objects.filter(order__in=orders, status__in=failed).values_list(
                "order_id", flat=True
            )
        ),
        "wrong_item_shipped": set(
            OrderReturn.objects.filter(order__in=orders, attributed_to__in=caused).values_list(
                "order_id", flat=True
            )
        ),
    }


def _decision_label_plan(
    decision: Decision, *, staff: HistoryStaff, rng: random.Random, outcomes: dict[str, set[int]]
) -> LabelPlan:
    action = decision.action.code
    applied_error = decision.outcome == DecisionOutcome.ERROR
    audit_sample = not applied_error and decision.verdict == Verdict.APPLIED
    cause = _weighted(rng, CAUSES_BY_ACTION.get(action, [("other", 1)]))
    if applied_error and rng.random() < REVIEWER_ERROR_SHARE:
        cause = "reviewer_error"
    if applied_error or audit_sample:
        impact = _impact_for(decision, rng=rng, outcomes=outcomes)
    else:
        impact = "none"  # A reviewer caught it before anything changed.

    if applied_error:
        labelled_at = decision.labelled_at + timedelta(minutes=rng.uniform(2, 30))
        labelled_by = decision.labelled_by or staff.manager
        note = f"The change had to be undone ({HISTORY_MARK})."
    else:
        labelled_at = decision.reviewed_at + timedelta(minutes=rng.uniform(5, 120))
        labelled_by = rng.choice([staff.manager, staff.ops])
        note = f"The reviewer corrected the proposal ({HISTORY_MARK})."
    label = ErrorLabel(
        decision=None if audit_sample else decision,
        review_item=decision.review_item if audit_sample else None,
        note=note,
        labelled_by=labelled_by,
    )
    return LabelPlan(
        label=label,
        labelled_at=labelled_at,
        cause=cause,
        impact=impact,
        corrective_action=CORRECTIVE_BY_CAUSE.get(cause, "none"),
        subject=decision.action.name,
        decision=decision if not (applied_error or audit_sample) else None,
    )


def _impact_for(decision: Decision, *, rng: random.Random, outcomes: dict[str, set[int]]) -> str:
    """Name the impact of an applied error: what the order went through, else a seeded guess."""
    for impact in ("chargeback", "failed_delivery", "wrong_item_shipped"):
        if decision.order_id in outcomes[impact]:
            return impact
    return _weighted(rng, IMPACTS_BY_ACTION.get(decision.action.code, [("customer_delay", 1)]))


def _item_label_plan(item: ReviewItem, *, staff: HistoryStaff, rng: random.Random) -> LabelPlan:
    cause, impact, corrective_action = ITEM_LABELS[item.kind]
    label = ErrorLabel(
        review_item=item,
        note=f"{item.get_kind_display()} item rejected ({HISTORY_MARK}).",
        labelled_by=rng.choice([staff.manager, staff.ops]),
    )
    return LabelPlan(
        label=label,
        labelled_at=item.decided_at + timedelta(minutes=rng.uniform(5, 120)),
        cause=cause,
        impact=impact,
        corrective_action=corrective_action,
        subject="",
    )


def _decisions_mark_errors(plans: list[LabelPlan]) -> None:
    decisions = []
    for plan in plans:
        if plan.decision is None:
            continue
        plan.decision.outcome = DecisionOutcome.ERROR
        plan.decision.labelled_at = plan.labelled_at
        plan.decision.labelled_by = plan.label.labelled_by
        plan.decision.label_note = f"Error label #{plan.label.pk}: {plan.label.cause.name}."
        decisions.append(plan.decision)
    Decision.objects.bulk_update(
        decisions, ["outcome", "labelled_at", "labelled_by", "label_note"], batch_size=500
    )


def _weighted(rng: random.Random, choices: list[tuple[str, int]]) -> str:
    return rng.choices([code for code, _ in choices], [weight for _, weight in choices])[0]


# --- Fixes backlog ---------------------------------------------------------------------------


@dataclass
class LabelGroup:
    """Labels of one week with the same action, model version and cause.

    The weekly review groups a week's labels this way, and a fix is made from one group.
    """

    key: tuple[date, str, str, str, int]
    plans: list[LabelPlan]
    due_days: int

    @property
    def weight(self) -> int:
        return sum(plan.label.impact.weight for plan in self.plans)

    @property
    def first_labelled_at(self) -> datetime:
        return min(plan.labelled_at for plan in self.plans)

    @property
    def last_labelled_at(self) -> datetime:
        return max(plan.labelled_at for plan in self.plans)

    @property
    def cause(self) -> LabelTerm:
        return self.plans[0].label.cause

    @property
    def subject(self) -> str:
        return self.plans[0].subject or "review items"

    @property
    def due_on(self) -> date:
        """The day a fix is due: the due days after the group's first label."""
        return self.first_labelled_at.astimezone(UTC).date() + timedelta(days=self.due_days)


def label_groups(plans: list[LabelPlan]) -> list[LabelGroup]:
    """Group the labels by week like the weekly review, heaviest summed impact first."""
    due_days = guardrail_settings().fix_due_days
    subjects = _label_subjects([plan.label.pk for plan in plans])
    by_key: dict[tuple, list[LabelPlan]] = defaultdict(list)
    for plan in plans:
        week = week_current(plan.labelled_at)
        by_key[(week, *subjects[plan.label.pk], plan.label.cause_id)].append(plan)
    groups = [
        LabelGroup(key=key, plans=members, due_days=due_days) for key, members in by_key.items()
    ]
    return sorted(groups, key=lambda group: (-group.weight, -len(group.plans), group.key))


def _label_subjects(label_ids: list[int]) -> dict[int, tuple[str, str, str]]:
    """Return (action code, model name, model version) per label, read from the database."""
    rows = ErrorLabel.objects.filter(pk__in=label_ids).values_list(
        "pk",
        "decision__action__code",
        "decision__model_name",
        "decision__model_version",
        "review_item__ai_decision__action__code",
        "review_item__ai_decision__model_name",
        "review_item__ai_decision__model_version",
        "review_item__action_code",
    )
    subjects = {}
    for pk, action, name, version, item_action, item_name, item_version, code in rows:
        subjects[pk] = (
            action or item_action or code or "",
            name or item_name or "",
            version or item_version or "",
        )
    return subjects


def done_group_pick(groups: list[LabelGroup], *, done_at: datetime) -> LabelGroup | None:
    """Return the heaviest group of agent decisions a fix done at `done_at` fixed in time.

    In time means after every label of the group and within the due days of the first.
    A reviewer's error is left out: a new model version does not fix it.
    """
    for group in groups:
        if group.cause.code == "reviewer_error":
            continue
        in_time = (
            group.last_labelled_at
            < done_at
            <= group.first_labelled_at + timedelta(days=group.due_days)
        )
        if in_time and group.key[2] == HISTORY_MODEL_NAME:
            return group
    return None


def fixes_load(
    *,
    staff: HistoryStaff,
    groups: list[LabelGroup],
    done_key: tuple | None,
    candidate: Version,
    now: datetime,
) -> int:
    """Create the backlog: a fix done by the candidate, an overdue one and an open one.

    Returns how many were created; a kind the labels give no group for is left out.
    """
    today = now.astimezone(UTC).date()
    done = next((group for group in groups if group.key == done_key), None)
    remaining = [group for group in groups if group is not done]
    overdue = next((group for group in remaining if group.due_on < today), None)
    upcoming = next((group for group in remaining if group.due_on >= today), None)

    if done is not None:
        fix = _fix_create(staff=staff, group=done, owner=staff.ops)
        _fix_done(fix, staff=staff, candidate=candidate)
    if overdue is not None:
        fix = _fix_create(staff=staff, group=overdue, owner=staff.manager)
        fix_item_update(fix_id=fix.pk, user=staff.ops, status=FixStatus.IN_PROGRESS)
    if upcoming is not None:
        _fix_create(staff=staff, group=upcoming, owner=staff.ops)
    return sum(group is not None for group in (done, overdue, upcoming))


def _fix_create(*, staff: HistoryStaff, group: LabelGroup, owner: AbstractBaseUser) -> FixItem:
    """Create the group's fix through the service, dated at the weekly review after its labels.

    The service refuses due dates in the past and stamps the current time, so the due date
    and creation time are set afterwards.
    """
    _, action_code, model_name, model_version, _ = group.key
    model = " ".join(part for part in (model_name, model_version) if part)
    fix = fix_item_create(
        user=staff.ops,
        title=f"{group.cause.name}: {group.subject}" + (f" ({model})" if model else ""),
        action=action_code or None,
        model_name=model_name,
        model_version=model_version,
        cause=group.cause,
        owner=owner,
        label_ids=[plan.label.pk for plan in group.plans],
        description=(
            f"{len(group.plans)} labelled error{pluralize(len(group.plans))} with the cause "
            f"\u201c{group.cause.name}\u201d, "
            "from the weekly review."
        ),
    )
    created_at = _next_monday(group.first_labelled_at) + timedelta(hours=10)
    FixItem.objects.filter(pk=fix.pk).update(created_at=created_at, due_on=group.due_on)
    fix.refresh_from_db()
    return fix


def _fix_done(fix: FixItem, *, staff: HistoryStaff, candidate: Version) -> None:
    """Mark the fix done by the candidate, an hour before its canary started."""
    fix_item_update(
        fix_id=fix.pk,
        user=staff.ops,
        status=FixStatus.DONE,
        resolution=f"Fixed in {candidate}, which runs as a canary.",
        fixed_by_version_id=candidate.pk,
    )
    started_at = Canary.objects.filter(candidate=candidate).values_list("started_at", flat=True)[0]
    done_at = started_at - timedelta(hours=1)
    FixItem.objects.filter(pk=fix.pk).update(
        done_at=done_at, created_at=min(fix.created_at, done_at - timedelta(hours=1))
    )


def _next_monday(moment: datetime) -> datetime:
    day = moment.astimezone(UTC).date()
    return datetime.combine(day + timedelta(days=7 - day.weekday()), time.min, tzinfo=UTC)
