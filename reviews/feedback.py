"""Reads for the weekly review: ranked errors, disagreement, the fixes backlog, ML-ops KPIs and
reviewer quality for one ISO week, Monday 00:00 UTC to the next Monday.

Every figure leaves out known-answer items (seeded to test reviewers), except reviewer
accuracy, which exists for them. Each section costs one to three aggregate queries, so the
page runs the same number of queries whatever the week contains.

An error label belongs to a decision when it was put on the decision or on the review item
of an AI decision. A label on any other review item (an address or unmapped-SKU item)
belongs to that item. Both are "subjects" below.
"""

import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    Exists,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from guardrails.models import ActionType, Decision, ReviewOutcome, Version, VersionKind
from guardrails.selectors import guardrail_settings
from orders.models import Order

from .models import ErrorLabel, FixItem, FixStatus, LabelKind, LabelTerm, ReviewItem

# A group of reviewed decisions needs this many reviews in the week before its disagreement
# rate is ranked: below it, one disagreement moves the rate by more than 10 percentage points.
# Smaller groups are listed after the ranked ones, marked "few reviews".
DISAGREEMENT_MIN_REVIEWS = 10
# The 30-day target and the version comparison look back this far from the end of the week.
LOOKBACK_DAYS = 90
# Decisions of the other versions in this many days before an activation form "before".
ACCURACY_BEFORE_DAYS = 30
# The most recently activated versions compared; each adds four counts to one query.
VERSION_LIMIT = 20
MODEL_LIKE_KINDS = (VersionKind.MODEL, VersionKind.PROMPT, VersionKind.RECOMMENDER)
OPEN_FIX_STATUSES = (FixStatus.OPEN, FixStatus.IN_PROGRESS)
# The target: every worst error fixed within `GuardrailSettings.fix_due_days` of labelling.
TARGET_SHARE = Decimal("1")

RATE_PLACES = Decimal("0.0001")
WEEK_PATTERN = re.compile(r"(\d{4})-W(\d{2})")
# Weeks from 2000-W01 on can be reviewed. The review reads back LOOKBACK_DAYS before a week and
# forward to the next Monday, which for a week in year 1 or 9999 is out of the date range.
EARLIEST_YEAR = 2000


# --- Weeks -----------------------------------------------------------------------------------


def week_parse(value: str, *, now: datetime | None = None) -> date:
    """Return the Monday of an ISO week written like "2026-W49".

    Raises ValueError for a malformed week, a week before 2000-W01, or a week after the one
    that contains `now` (default: the current time).
    """
    match = WEEK_PATTERN.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"Invalid week {value[:20]!r}: write it as an ISO week, e.g. 2026-W49.")
    year, week = int(match[1]), int(match[2])
    if year < EARLIEST_YEAR:
        raise ValueError(
            f"Invalid week {value.strip()!r}: the earliest week is {EARLIEST_YEAR}-W01."
        )
    try:
        week_start = date.fromisocalendar(year, week, 1)
    except ValueError:
        raise ValueError(f"Invalid week {value[:20]!r}: {year} has no week {week}.") from None

    latest = week_current(now)
    if week_start > latest:
        raise ValueError(
            f"Week {value.strip()} has not started; the latest is {week_label(latest)}."
        )
    return week_start


def week_label(week_start: date) -> str:
    """Return the ISO week of a date as "2026-W49"."""
    year, week, _ = week_start.isocalendar()
    return f"{year}-W{week:02d}"


def week_current(now: datetime | None = None) -> date:
    """Return the Monday of the week that contains `now` (UTC)."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return today - timedelta(days=today.weekday())


# --- The result ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImpactRow:
    """A decision (or review item) with error labels in the week, ranked by impact."""

    rank: int
    decision_id: int | None
    review_item_id: int | None
    order_id: int | None
    action_code: str
    action_name: str
    model_name: str
    model_version: str
    # (code, name) of each distinct cause, in label order.
    causes: tuple[tuple[str, str], ...]
    impact_code: str
    impact_name: str
    impact_weight: int
    label_count: int
    labelled_by: tuple[str, ...]
    last_labelled_at: datetime
    fix_ids: tuple[int, ...]

    @property
    def has_fix(self) -> bool:
        return bool(self.fix_ids)


@dataclass(frozen=True)
class DisagreementGroup:
    action_code: str
    action_name: str
    model_name: str
    model_version: str
    reviewed: int
    disagreed: int
    # disagreed / reviewed, 0 to 1.
    rate: Decimal
    # Fewer than DISAGREEMENT_MIN_REVIEWS reviews: listed after the ranked groups.
    few_reviews: bool


@dataclass(frozen=True)
class ErrorGroup:
    """Labels of the week with the same action, model version and cause: a backlog candidate."""

    action_code: str
    action: ActionType | None
    model_name: str
    model_version: str
    cause: LabelTerm
    label_count: int
    # The summed impact weight; a fix created for the group gets it as priority.
    impact_weight: int
    unlinked_count: int
    first_labelled_at: datetime
    fix: FixItem | None
    # Prefills of the "Create fix" form.
    title: str
    due_on: date


@dataclass(frozen=True)
class BacklogRow:
    fix: FixItem
    label_count: int
    # Negative when overdue.
    days_left: int

    @property
    def overdue(self) -> bool:
        """Return whether an open or in-progress fix is past its due date."""
        return self.days_left < 0 and self.fix.status in OPEN_FIX_STATUSES

    @property
    def days_overdue(self) -> int:
        return max(-self.days_left, 0)


@dataclass(frozen=True)
class FixTarget:
    """How many of the worst errors were fixed within the due days of being labelled."""

    since: datetime
    fix_due_days: int
    # Labels with an impact weight of at least this count as worst; None without impact terms.
    worst_weight: int | None
    worst_labels: int
    fixed_in_time: int
    fixed_late: int
    overdue: int
    # Not fixed yet, but still within their due days: not counted in the share.
    within_due_days: int
    # fixed_in_time / (worst_labels - within_due_days); None when nothing has come due.
    share: Decimal | None
    open_fixes: int
    overdue_fixes: int

    @property
    def came_due(self) -> int:
        """Return how many worst errors were fixed or reached the end of their due days."""
        return self.worst_labels - self.within_due_days

    @property
    def target_met(self) -> bool | None:
        return None if self.share is None else self.share >= TARGET_SHARE


@dataclass(frozen=True)
class AccuracyChange:
    """Pick accuracy of a model before and after one of its versions was activated."""

    version: Version
    before_reviewed: int
    before_correct: int
    before_accuracy: Decimal | None
    after_reviewed: int
    after_correct: int
    after_accuracy: Decimal | None
    # (after - before) in percentage points, one decimal; None unless both have reviews.
    lift_points: Decimal | None


@dataclass(frozen=True)
class EscalationRate:
    escalations: int
    orders: int
    per_1000: Decimal | None
    previous_escalations: int
    previous_orders: int
    previous_per_1000: Decimal | None

    @property
    def change(self) -> Decimal | None:
        """Return this week's rate minus last week's, when both weeks had orders."""
        if self.per_1000 is None or self.previous_per_1000 is None:
            return None
        return self.per_1000 - self.previous_per_1000


@dataclass(frozen=True)
class ResolutionTime:
    """Hours from labelling to the done fix, for labels whose fix was done in the week."""

    resolved: int
    median_hours: Decimal | None
    p90_hours: Decimal | None
    # Labels without a done (or won't-fix) fix at the end of the week, and the oldest one's age.
    unresolved: int
    oldest_unresolved_days: int | None


@dataclass(frozen=True)
class ReviewerRow:
    user_id: int
    username: str
    known_answers: int
    known_correct: int
    accuracy: Decimal | None
    reviewed: int
    agreed: int
    agreement: Decimal | None


@dataclass(frozen=True)
class WeeklyReview:
    week_start: date
    start: datetime
    end: datetime
    # The end of the week, or now while the week is still running: the figures' cut-off.
    as_of: datetime
    channel: str | None
    limit: int
    impact: list[ImpactRow]
    impact_total: int
    disagreement: list[DisagreementGroup]
    groups: list[ErrorGroup]
    backlog: list[BacklogRow]
    target: FixTarget
    accuracy_changes: list[AccuracyChange]
    escalations: EscalationRate
    resolution: ResolutionTime
    reviewers: list[ReviewerRow]
    fix_due_days: int
    min_reviews: int = field(default=DISAGREEMENT_MIN_REVIEWS)

    @property
    def week(self) -> str:
        return week_label(self.week_start)

    @property
    def is_current(self) -> bool:
        return self.as_of < self.end


# --- The selector ----------------------------------------------------------------------------


def weekly_review(*, week_start: date, channel: str | None = None, limit: int = 25) -> WeeklyReview:
    """Compute every section of the weekly review for the week starting on `week_start`.

    `channel` (a channel code) narrows the error, disagreement, escalation and agreement
    figures; fixes and known-answer accuracy belong to no channel and stay whole.
    """
    if week_start.weekday() != 0:
        raise ValueError(f"week_start {week_start} is not a Monday.")
    start = datetime.combine(week_start, time.min, tzinfo=UTC)
    end = start + timedelta(days=7)
    as_of = min(end, timezone.now())
    settings_row = guardrail_settings()
    labels = _labels(channel).filter(labelled_at__gte=start, labelled_at__lt=end)

    impact, impact_total = _impact_rows(labels, limit)
    return WeeklyReview(
        week_start=week_start,
        start=start,
        end=end,
        as_of=as_of,
        channel=channel,
        limit=limit,
        impact=impact,
        impact_total=impact_total,
        disagreement=_disagreement_groups(start, end, channel, limit),
        groups=_error_groups(labels, limit, settings_row.fix_due_days),
        backlog=fix_backlog(limit=limit),
        target=_fix_target(as_of, channel, settings_row.fix_due_days),
        accuracy_changes=_accuracy_changes(as_of, channel),
        escalations=_escalation_rate(start, end, channel),
        resolution=_resolution_time(start, end, as_of, channel),
        reviewers=_reviewer_rows(start, end, channel),
        fix_due_days=settings_row.fix_due_days,
    )


def weekly_group_label_ids(
    *,
    week_start: date,
    channel: str | None,
    action_code: str,
    model_name: str,
    model_version: str,
    cause_id: int,
    unclaimed_only: bool = True,
) -> list[int]:
    """Return the ids of a group's labels of the week that no fix claims yet (or all of them)."""
    start = datetime.combine(week_start, time.min, tzinfo=UTC)
    labels = _labels(channel).filter(
        labelled_at__gte=start,
        labelled_at__lt=start + timedelta(days=7),
        cause_id=cause_id,
        key_action=action_code,
        key_model_name=model_name,
        key_model_version=model_version,
    )
    if unclaimed_only:
        labels = labels.filter(fix__isnull=True)
    return list(labels.order_by("pk").values_list("pk", flat=True))


def fix_backlog(*, limit: int | None = None) -> list[BacklogRow]:
    """Return the open and in-progress fix items by priority, then due date, with days left."""
    fixes = fix_items(statuses=OPEN_FIX_STATUSES)
    return backlog_rows(fixes[:limit] if limit is not None else fixes)


def fix_items(*, statuses: Iterable[str]) -> QuerySet[FixItem]:
    """Return the fix items with these statuses, highest priority first, then by due date."""
    return (
        FixItem.objects.filter(status__in=list(statuses))
        .select_related("owner", "action", "cause", "fixed_by_version")
        .annotate(label_count=Count("labels"))
        .order_by("-priority", "due_on", "pk")
    )


def backlog_rows(fixes: Iterable[FixItem]) -> list[BacklogRow]:
    """Wrap fix items from `fix_items` with their days left until due (negative: overdue)."""
    today = timezone.localdate()
    return [
        BacklogRow(fix=fix, label_count=fix.label_count, days_left=(fix.due_on - today).days)
        for fix in fixes
    ]


# --- Labels and their subjects ---------------------------------------------------------------


def _labels(channel: str | None) -> QuerySet[ErrorLabel]:
    """Labels outside known-answer items, annotated with their subject and group keys."""
    labels = ErrorLabel.objects.filter(
        review_item__known_answer__isnull=True, decision__review_item__known_answer__isnull=True
    )
    if channel:
        labels = labels.filter(
            Q(decision__channel__code=channel)
            | Q(decision__isnull=True, review_item__order__channel__code=channel)
        )
    subject_decision = Coalesce(
        "decision_id", "review_item__ai_decision__id", output_field=BigIntegerField()
    )
    return labels.annotate(
        subject_decision=subject_decision,
        subject_item=Case(
            When(
                decision__isnull=True,
                review_item__ai_decision__isnull=True,
                then=F("review_item_id"),
            ),
            default=None,
            output_field=BigIntegerField(),
        ),
        # Review items without an AI decision still carry the action code of their proposal.
        key_action=Coalesce(
            "decision__action__code",
            "review_item__ai_decision__action__code",
            "review_item__action_code",
            Value(""),
        ),
        key_model_name=Coalesce(
            "decision__model_name", "review_item__ai_decision__model_name", Value("")
        ),
        key_model_version=Coalesce(
            "decision__model_version", "review_item__ai_decision__model_version", Value("")
        ),
    ).order_by()


def _impact_rows(labels: QuerySet[ErrorLabel], limit: int) -> tuple[list[ImpactRow], int]:
    """Rank the week's labelled subjects: heaviest impact, then most labels, then latest.

    A single heavier label outranks any number of lighter ones. Equal subjects are ordered
    by their latest label, then by the newer decision (or review item) id.
    """
    ranked = list(
        labels.values("subject_decision", "subject_item")
        .annotate(
            top_weight=Max("impact__weight"),
            label_count=Count("pk"),
            last_labelled=Max("labelled_at"),
        )
        .order_by(
            "-top_weight",
            "-label_count",
            "-last_labelled",
            F("subject_decision").desc(nulls_last=True),
            F("subject_item").desc(nulls_last=True),
        )[:limit]
    )
    total = labels.values("subject_decision", "subject_item").distinct().count()
    if not ranked:
        return [], total

    decision_ids = [row["subject_decision"] for row in ranked if row["subject_decision"]]
    item_ids = [row["subject_item"] for row in ranked if row["subject_item"]]
    details = _subject_labels(labels, decision_ids, item_ids)
    decisions = {
        row["pk"]: row
        for row in Decision.objects.filter(pk__in=decision_ids).values(
            "pk", "order_id", "action__code", "action__name", "model_name", "model_version"
        )
    }
    items = {
        row["pk"]: row
        for row in ReviewItem.objects.filter(pk__in=item_ids).values(
            "pk", "order_id", "action_code"
        )
    }

    rows = []
    for rank, row in enumerate(ranked, start=1):
        key = (row["subject_decision"], row["subject_item"])
        subject_labels = details.get(key, [])
        rows.append(_impact_row(rank, row, subject_labels, decisions, items))
    return rows, total


def _subject_labels(
    labels: QuerySet[ErrorLabel], decision_ids: list[int], item_ids: list[int]
) -> dict[tuple, list[dict]]:
    """Return the labels of the ranked subjects, by subject, heaviest impact first."""
    values = (
        labels.filter(Q(subject_decision__in=decision_ids) | Q(subject_item__in=item_ids))
        .values(
            "subject_decision",
            "subject_item",
            "cause__code",
            "cause__name",
            "impact__code",
            "impact__name",
            "impact__weight",
            "labelled_by__username",
            "fix_id",
        )
        .order_by("-impact__weight", "labelled_at", "pk")
    )
    by_subject: dict[tuple, list[dict]] = {}
    for value in values:
        by_subject.setdefault((value["subject_decision"], value["subject_item"]), []).append(value)
    return by_subject


def _impact_row(
    rank: int, row: dict, labels: list[dict], decisions: dict, items: dict
) -> ImpactRow:
    decision = decisions.get(row["subject_decision"])
    item = items.get(row["subject_item"])
    top = labels[0] if labels else {}
    return ImpactRow(
        rank=rank,
        decision_id=row["subject_decision"],
        review_item_id=row["subject_item"],
        order_id=(decision or item or {}).get("order_id"),
        action_code=decision["action__code"] if decision else (item or {}).get("action_code", ""),
        action_name=decision["action__name"] if decision else "",
        model_name=decision["model_name"] if decision else "",
        model_version=decision["model_version"] if decision else "",
        causes=tuple(
            dict.fromkeys((label["cause__code"], label["cause__name"]) for label in labels)
        ),
        impact_code=top.get("impact__code", ""),
        impact_name=top.get("impact__name", ""),
        impact_weight=row["top_weight"],
        label_count=row["label_count"],
        labelled_by=tuple(dict.fromkeys(label["labelled_by__username"] for label in labels)),
        last_labelled_at=row["last_labelled"],
        fix_ids=tuple(dict.fromkeys(label["fix_id"] for label in labels if label["fix_id"])),
    )


def _error_groups(labels: QuerySet[ErrorLabel], limit: int, fix_due_days: int) -> list[ErrorGroup]:
    """Group the week's labels by action, model version and cause, heaviest summed impact first.

    A group whose labels belong to several fixes shows the newest one.
    """
    grouped = list(
        labels.values("key_action", "key_model_name", "key_model_version", "cause_id")
        .annotate(
            label_count=Count("pk"),
            weight=Sum("impact__weight"),
            unlinked=Count("pk", filter=Q(fix__isnull=True)),
            linked_fix=Max("fix_id"),
            first_labelled=Min("labelled_at"),
        )
        .order_by(
            "-weight",
            "-label_count",
            "key_action",
            "key_model_name",
            "key_model_version",
            "cause_id",
        )[:limit]
    )
    if not grouped:
        return []

    causes = LabelTerm.objects.in_bulk({row["cause_id"] for row in grouped})
    fixes = FixItem.objects.select_related("owner").in_bulk(
        {row["linked_fix"] for row in grouped if row["linked_fix"]}
    )
    actions = {
        action.code: action
        for action in ActionType.objects.filter(code__in={row["key_action"] for row in grouped})
    }
    today = timezone.localdate()
    groups = []
    for row in grouped:
        action = actions.get(row["key_action"])
        cause = causes[row["cause_id"]]
        due_on = row["first_labelled"].astimezone(UTC).date() + timedelta(days=fix_due_days)
        groups.append(
            ErrorGroup(
                action_code=row["key_action"],
                action=action,
                model_name=row["key_model_name"],
                model_version=row["key_model_version"],
                cause=cause,
                label_count=row["label_count"],
                impact_weight=row["weight"] or 0,
                unlinked_count=row["unlinked"],
                first_labelled_at=row["first_labelled"],
                fix=fixes.get(row["linked_fix"]),
                title=_group_title(cause, action, row),
                # The fix is due `fix_due_days` after the group's first label, never before today.
                due_on=max(due_on, today),
            )
        )
    return groups


def _group_title(cause: LabelTerm, action: ActionType | None, row: dict) -> str:
    subject = action.name if action else (row["key_action"] or "No AI action")
    model = " ".join(part for part in (row["key_model_name"], row["key_model_version"]) if part)
    return f"{cause.name}: {subject}" + (f" ({model})" if model else "")


# --- Disagreement ----------------------------------------------------------------------------


def _disagreement_groups(
    start: datetime, end: datetime, channel: str | None, limit: int
) -> list[DisagreementGroup]:
    """Rank action and model-version groups by disagreement among those with enough reviews."""
    decisions = _reviewed_decisions(channel).filter(reviewed_at__gte=start, reviewed_at__lt=end)
    rows = decisions.values("action__code", "action__name", "model_name", "model_version").annotate(
        reviewed=Count("pk"),
        disagreed=Count("pk", filter=Q(review_outcome=ReviewOutcome.DISAGREED)),
    )
    groups = [
        DisagreementGroup(
            action_code=row["action__code"],
            action_name=row["action__name"],
            model_name=row["model_name"],
            model_version=row["model_version"],
            reviewed=row["reviewed"],
            disagreed=row["disagreed"],
            rate=_ratio(row["disagreed"], row["reviewed"]),
            few_reviews=row["reviewed"] < DISAGREEMENT_MIN_REVIEWS,
        )
        for row in rows
    ]
    groups.sort(
        key=lambda group: (
            group.few_reviews,
            -group.rate,
            -group.disagreed,
            group.action_code,
            group.model_name,
            group.model_version,
        )
    )
    return groups[:limit]


def _reviewed_decisions(channel: str | None) -> QuerySet[Decision]:
    decisions = Decision.objects.filter(
        review_outcome__in=ReviewOutcome.values, review_item__known_answer__isnull=True
    )
    if channel:
        decisions = decisions.filter(channel__code=channel)
    return decisions.order_by()


# --- The 30-day target -----------------------------------------------------------------------


def worst_impact_weight() -> int | None:
    """Return the heaviest weight of an active impact term, or None when none is active.

    Labels with an impact of at least this weight are the worst errors of the 30-day target.
    """
    return LabelTerm.objects.filter(kind=LabelKind.IMPACT, is_active=True).aggregate(
        weight=Max("weight")
    )["weight"]


def _fix_target(as_of: datetime, channel: str | None, fix_due_days: int) -> FixTarget:
    """Count the worst errors of the lookback by whether their fix was done within the due days.

    "Worst" means an impact weight of at least the largest weight of an active impact term.
    A fix done after `as_of` does not count yet, so a past week's figure stays as it was.
    """
    since = as_of - timedelta(days=LOOKBACK_DAYS)
    due_days = timedelta(days=fix_due_days)
    worst_weight = worst_impact_weight()
    fixes = FixItem.objects.filter(status__in=OPEN_FIX_STATUSES).aggregate(
        open=Count("pk"), overdue=Count("pk", filter=Q(due_on__lt=timezone.localdate()))
    )
    if worst_weight is None:
        counts = {"total": 0, "in_time": 0, "late": 0, "overdue": 0}
    else:
        done = Q(fix__status=FixStatus.DONE, fix__done_at__lte=as_of)
        in_time = done & Q(fix__done_at__lte=F("labelled_at") + due_days)
        counts = (
            _labels(channel)
            .filter(labelled_at__gte=since, labelled_at__lt=as_of, impact__weight__gte=worst_weight)
            .aggregate(
                total=Count("pk"),
                in_time=Count("pk", filter=in_time),
                late=Count("pk", filter=done & ~in_time),
                # The due days ended before as_of and no fix was done by then.
                overdue=Count("pk", filter=~done & Q(labelled_at__lt=as_of - due_days)),
            )
        )

    came_due = counts["in_time"] + counts["late"] + counts["overdue"]
    return FixTarget(
        since=since,
        fix_due_days=fix_due_days,
        worst_weight=worst_weight,
        worst_labels=counts["total"],
        fixed_in_time=counts["in_time"],
        fixed_late=counts["late"],
        overdue=counts["overdue"],
        within_due_days=counts["total"] - came_due,
        share=_ratio(counts["in_time"], came_due) if came_due else None,
        open_fixes=fixes["open"],
        overdue_fixes=fixes["overdue"],
    )


# --- ML-ops KPIs -----------------------------------------------------------------------------


def _accuracy_changes(as_of: datetime, channel: str | None) -> list[AccuracyChange]:
    """Compare pick accuracy before and after each model-like version activated lately.

    Accuracy is the share of reviewed decisions that the reviewer agreed with and that carry
    no error label. "Before" contains the other versions' decisions made in the
    ACCURACY_BEFORE_DAYS before activation, "after" this version's decisions since then.
    """
    versions = list(
        Version.objects.select_related("action")
        .filter(
            kind__in=MODEL_LIKE_KINDS,
            activated_at__gte=as_of - timedelta(days=LOOKBACK_DAYS),
            activated_at__lt=as_of,
        )
        .order_by("-activated_at", "-pk")[:VERSION_LIMIT]
    )
    if not versions:
        return []

    # Narrow the scan to the models and days any comparison needs; the counts filter further.
    earliest = min(version.activated_at for version in versions)
    decisions = _reviewed_decisions(channel).filter(
        model_name__in={version.subject for version in versions},
        created_at__gte=earliest - timedelta(days=ACCURACY_BEFORE_DAYS),
        created_at__lt=as_of,
    )
    counts = decisions.aggregate(**_accuracy_counts(versions, as_of))
    changes = []
    for index, version in enumerate(versions):
        before_n, before_ok = counts[f"before_{index}"], counts[f"before_ok_{index}"]
        after_n, after_ok = counts[f"after_{index}"], counts[f"after_ok_{index}"]
        before = _ratio(before_ok, before_n) if before_n else None
        after = _ratio(after_ok, after_n) if after_n else None
        lift = None
        if before is not None and after is not None:
            lift = ((after - before) * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
        changes.append(
            AccuracyChange(
                version=version,
                before_reviewed=before_n,
                before_correct=before_ok,
                before_accuracy=before,
                after_reviewed=after_n,
                after_correct=after_ok,
                after_accuracy=after,
                lift_points=lift,
            )
        )
    return changes


def _accuracy_counts(versions: list[Version], as_of: datetime) -> dict[str, Count]:
    """Four filtered counts per version, for one aggregate over the reviewed decisions."""
    labelled = ErrorLabel.objects.filter(
        Q(decision_id=OuterRef("pk")) | Q(review_item_id=OuterRef("review_item_id"))
    )
    correct = Q(review_outcome=ReviewOutcome.AGREED) & ~Exists(labelled)
    aggregates = {}
    for index, version in enumerate(versions):
        scope = Q(model_name=version.subject)
        if version.action_id:
            scope &= Q(action_id=version.action_id)
        activated = version.activated_at
        before = (
            scope
            & Q(created_at__gte=activated - timedelta(days=ACCURACY_BEFORE_DAYS))
            & Q(created_at__lt=activated)
            & ~Q(model_version=version.label)
        )
        after = (
            scope
            & Q(model_version=version.label)
            & Q(created_at__gte=activated, created_at__lt=as_of)
        )
        aggregates[f"before_{index}"] = Count("pk", filter=before)
        aggregates[f"before_ok_{index}"] = Count("pk", filter=before & correct)
        aggregates[f"after_{index}"] = Count("pk", filter=after)
        aggregates[f"after_ok_{index}"] = Count("pk", filter=after & correct)
    return aggregates


def _escalation_rate(start: datetime, end: datetime, channel: str | None) -> EscalationRate:
    """Count review items escalated per 1,000 orders created, this week and the week before."""
    previous_start = start - timedelta(days=7)
    items = ReviewItem.objects.filter(
        known_answer__isnull=True, escalated_at__gte=previous_start, escalated_at__lt=end
    )
    orders = Order.objects.filter(created_at__gte=previous_start, created_at__lt=end)
    if channel:
        items = items.filter(order__channel__code=channel)
        orders = orders.filter(channel__code=channel)
    escalations = items.aggregate(
        now=Count("pk", filter=Q(escalated_at__gte=start)),
        before=Count("pk", filter=Q(escalated_at__lt=start)),
    )
    order_counts = orders.aggregate(
        now=Count("pk", filter=Q(created_at__gte=start)),
        before=Count("pk", filter=Q(created_at__lt=start)),
    )
    return EscalationRate(
        escalations=escalations["now"],
        orders=order_counts["now"],
        per_1000=_per_1000(escalations["now"], order_counts["now"]),
        previous_escalations=escalations["before"],
        previous_orders=order_counts["before"],
        previous_per_1000=_per_1000(escalations["before"], order_counts["before"]),
    )


def _resolution_time(
    start: datetime, end: datetime, as_of: datetime, channel: str | None
) -> ResolutionTime:
    """Time from labelling to the done fix, and the labels still waiting for one.

    A label waits while it has no fix, or its fix is open or in progress; a won't-fix
    decision closes it. The percentile is the nearest-rank p90.
    """
    labels = _labels(channel)
    spans = labels.filter(
        fix__status=FixStatus.DONE, fix__done_at__gte=start, fix__done_at__lt=end
    ).values_list("labelled_at", "fix__done_at")
    # A label linked to a fix after it was done would give a negative time; it counts as 0.
    hours = sorted(max((done - labelled).total_seconds() / 3600, 0) for labelled, done in spans)

    closed = Q(fix__status=FixStatus.WONT_FIX) | Q(
        fix__status=FixStatus.DONE, fix__done_at__lt=as_of
    )
    waiting = (
        labels.filter(labelled_at__lt=as_of)
        .exclude(closed)
        .aggregate(count=Count("pk"), oldest=Min("labelled_at"))
    )
    oldest = waiting["oldest"]
    return ResolutionTime(
        resolved=len(hours),
        median_hours=_hours(statistics.median(hours)) if hours else None,
        p90_hours=_hours(hours[math.ceil(0.9 * len(hours)) - 1]) if hours else None,
        unresolved=waiting["count"],
        oldest_unresolved_days=(as_of - oldest).days if oldest else None,
    )


# --- Reviewer quality ------------------------------------------------------------------------


def _reviewer_rows(start: datetime, end: datetime, channel: str | None) -> list[ReviewerRow]:
    """Known-answer accuracy and agreement with the model, per reviewer who decided in the week.

    Known-answer items belong to no channel, so `channel` narrows only the agreement.
    """
    known = (
        ReviewItem.objects.filter(
            known_answer__isnull=False,
            decided_by__isnull=False,
            decided_at__gte=start,
            decided_at__lt=end,
        )
        .values("decided_by_id", "decided_by__username")
        .annotate(decided=Count("pk"), correct=Count("pk", filter=Q(known_answer_correct=True)))
        .order_by()
    )
    agreement = (
        _reviewed_decisions(channel)
        .filter(reviewed_at__gte=start, reviewed_at__lt=end, review_item__decided_by__isnull=False)
        .values("review_item__decided_by_id", "review_item__decided_by__username")
        .annotate(
            reviewed=Count("pk"),
            agreed=Count("pk", filter=Q(review_outcome=ReviewOutcome.AGREED)),
        )
    )

    by_user: dict[int, dict] = {}
    for row in known:
        entry = _reviewer_entry(by_user, row["decided_by_id"], row["decided_by__username"])
        entry.update(known_answers=row["decided"], known_correct=row["correct"])
    for row in agreement:
        entry = _reviewer_entry(
            by_user, row["review_item__decided_by_id"], row["review_item__decided_by__username"]
        )
        entry.update(reviewed=row["reviewed"], agreed=row["agreed"])
    rows = [
        ReviewerRow(
            **entry,
            accuracy=_ratio(entry["known_correct"], entry["known_answers"])
            if entry["known_answers"]
            else None,
            agreement=_ratio(entry["agreed"], entry["reviewed"]) if entry["reviewed"] else None,
        )
        for entry in by_user.values()
    ]
    return sorted(rows, key=lambda row: (row.username, row.user_id))


def _reviewer_entry(by_user: dict[int, dict], user_id: int, username: str) -> dict:
    return by_user.setdefault(
        user_id,
        {
            "user_id": user_id,
            "username": username,
            "known_answers": 0,
            "known_correct": 0,
            "reviewed": 0,
            "agreed": 0,
        },
    )


# --- Arithmetic ------------------------------------------------------------------------------


def _ratio(part: int, whole: int) -> Decimal:
    return (Decimal(part) / whole).quantize(RATE_PLACES, rounding=ROUND_HALF_UP)


def _per_1000(count: int, orders: int) -> Decimal | None:
    if not orders:
        return None
    return (Decimal(count) * 1000 / orders).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _hours(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
