"""The weekly review page and its CSV, and the fixes backlog page with its HTMX updates.

The weekly page and CSV need reviews.view_weekly_review, the backlog page
reviews.view_fixitem. Creating and updating fixes is checked again by reviews.fixes
(add_fixitem, change_fixitem). An HTMX action responds with the refreshed part of the page
and a flash line. An error responds with a one-line fragment and the status 400, 403, 404
or 409, which the page's htmx config swaps into `#flash`.
"""

import csv
import logging
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from catalog.models import Channel
from guardrails.models import ActionType, Version
from guardrails.selectors import guardrail_settings
from orders.history_export import FORMULA_PREFIXES

from . import feedback, fixes
from .models import FixStatus, LabelKind, LabelTerm
from .views import htmx_login_required

logger = logging.getLogger(__name__)

VIEW_PERMISSION = "reviews.view_weekly_review"
BACKLOG_PERMISSION = "reviews.view_fixitem"
BACKLOG_PAGE_SIZE = 50
# The "fixed by version" select offers the newest versions only.
VERSION_CHOICES_LIMIT = 50
# Value posted by that select's "no version" choice, which removes the fixing version.
CLEAR_VERSION = "none"
# Status filters of the backlog page: "active" is open and in progress.
STATUS_FILTERS = [("active", "Active"), *FixStatus.choices, ("all", "All")]
STATUS_FILTER_VALUES = [value for value, _label in STATUS_FILTERS]
ID_MAX_DIGITS = 18
_WEEK = timedelta(days=7)


def _permission_required(permission: str) -> Callable:
    """Require a login and `permission`; without it the page shows whom to ask."""

    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not request.user.has_perm(permission):
                return render(request, "reviews/feedback/forbidden.html", status=403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


# --- The weekly review -----------------------------------------------------------------------


@require_GET
@_permission_required(VIEW_PERMISSION)
def weekly_review_page(request: HttpRequest) -> HttpResponse:
    """Render the weekly review of `?week=2026-W49` (default: this week so far).

    An invalid week or channel shows this week, all channels, with the error and status 400.
    """
    week_start, channel, errors = _week_params(request.GET)
    context = _weekly_context(request, week_start, channel) | {"errors": errors}
    return render(request, "reviews/feedback/weekly.html", context, status=400 if errors else 200)


@require_GET
@_permission_required(VIEW_PERMISSION)
def weekly_review_csv(request: HttpRequest) -> HttpResponse:
    """Send the weekly review as one CSV file; an invalid week or channel gives a 400."""
    week_start, channel, errors = _week_params(request.GET)
    if errors:
        return HttpResponse(" ".join(errors), status=400, content_type="text/plain; charset=utf-8")

    review = feedback.weekly_review(week_start=week_start, channel=channel)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    writer = csv.writer(response)
    for row in weekly_review_csv_rows(review):
        writer.writerow(row)
    name = f"weekly-review-{review.week}" + (f"-{channel}" if channel else "")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    logger.info(
        "weekly review exported",
        extra={"user": request.user.pk, "week": review.week, "channel": channel},
    )
    return response


@require_POST
@htmx_login_required
def fix_create(request: HttpRequest) -> HttpResponse:
    """Create a fix for one group of the week's labels and link its unclaimed labels."""
    if not request.user.has_perm(VIEW_PERMISSION):
        return _flash(request, 403, "You have no access to the weekly review.", code="forbidden")
    post = request.POST
    try:
        week_start = feedback.week_parse(post.get("week", ""))
        cause_id = _id_param(post, "cause", required=True)
        owner_id = _id_param(post, "owner")
        due_on = _date_param(post, "due_on")
    except ValueError as error:
        return _flash(request, 400, str(error), code="invalid")
    channel = post.get("channel", "").strip() or None
    group = {
        "action_code": post.get("action", "").strip(),
        "model_name": post.get("model_name", ""),
        "model_version": post.get("model_version", ""),
    }
    invalid = _group_input_error(cause_id=cause_id, action=group["action_code"], channel=channel)
    if invalid:
        return _flash(request, 400, invalid[1], code=invalid[0])

    group_filter = {"week_start": week_start, "channel": channel, "cause_id": cause_id, **group}
    label_ids = feedback.weekly_group_label_ids(**group_filter)
    if not label_ids:
        # Tell "no such group this week" apart from "all of it already has a fix".
        if not feedback.weekly_group_label_ids(**group_filter, unclaimed_only=False):
            return _flash(
                request,
                404,
                f"No error with this cause, action and model was labelled in "
                f"{feedback.week_label(week_start)}"
                + (f" on channel {channel}" if channel else "")
                + "; reload the page.",
                code="group_without_labels",
            )
        return _flash(
            request,
            409,
            "Every label of this group already belongs to a fix; reload the page.",
            code="no_unclaimed_labels",
        )
    try:
        fix = fixes.fix_item_create(
            user=request.user,
            title=post.get("title", ""),
            action=group["action_code"] or None,
            model_name=group["model_name"],
            model_version=group["model_version"],
            cause=cause_id,
            owner=owner_id,
            due_on=due_on,
            label_ids=label_ids,
            description=post.get("description", ""),
        )
    except fixes.FixError as error:
        return _flash(request, error.status, _error_text(error), code=error.code)

    if not request.htmx:
        return redirect(_weekly_url(week_start, channel))
    context = _weekly_context(request, week_start, channel) | {
        "flash": f"Fix #{fix.pk} created with {len(label_ids)} label(s), priority {fix.priority}."
    }
    return render(request, "reviews/feedback/_weekly_body.html", context)


def _group_input_error(
    *, cause_id: int, action: str, channel: str | None
) -> tuple[str, str] | None:
    """Return (code, message) for a cause, action or channel that does not exist, else None."""
    cause = LabelTerm.objects.filter(pk=cause_id).only("kind").first()
    if cause is None:
        return "unknown_cause", f"cause: unknown cause {cause_id}."
    if cause.kind != LabelKind.CAUSE:
        return "not_a_cause", f"cause: term {cause_id} is not a cause; its kind is {cause.kind}."
    if action and not ActionType.objects.filter(code=action).exists():
        return "unknown_action", f"action: unknown action {action[:40]!r}."
    if channel and not Channel.objects.filter(code=channel).exists():
        return "unknown_channel", f"channel: unknown channel {channel[:40]!r}."
    return None


def _weekly_context(request: HttpRequest, week_start: date, channel: str | None) -> dict:
    review = feedback.weekly_review(week_start=week_start, channel=channel)
    current = feedback.week_current()
    may_create = request.user.has_perm(fixes.ADD_PERMISSION)
    return {
        "review": review,
        "channels": Channel.objects.order_by("code").values_list("code", "name"),
        "previous_week": feedback.week_label(week_start - _WEEK),
        "next_week": feedback.week_label(week_start + _WEEK) if week_start < current else None,
        "current_week": feedback.week_label(current),
        "accuracy_before_days": feedback.ACCURACY_BEFORE_DAYS,
        "may_create_fix": may_create,
        "owners": fixes.owner_choices() if may_create else [],
        "fix_due_days": guardrail_settings().fix_due_days if may_create else None,
    }


def _week_params(params: QueryDict) -> tuple[date, str | None, list[str]]:
    """Return the requested week's Monday and channel code, and a message per invalid value."""
    errors = []
    current = feedback.week_current()
    week_start = current
    raw_week = params.get("week", "").strip()
    if raw_week:
        try:
            requested = feedback.week_parse(raw_week)
        except ValueError as error:
            errors.append(str(error))
        else:
            if requested > current:
                errors.append(
                    f"Week {raw_week} has not started; the latest is "
                    f"{feedback.week_label(current)}."
                )
            else:
                week_start = requested
    channel = params.get("channel", "").strip() or None
    if channel and not Channel.objects.filter(code=channel).exists():
        errors.append(f"There is no channel {channel[:64]!r}.")
        channel = None
    return week_start, channel, errors


def _weekly_url(week_start: date, channel: str | None) -> str:
    query = QueryDict(mutable=True)
    query["week"] = feedback.week_label(week_start)
    if channel:
        query["channel"] = channel
    return f"{reverse('feedback:weekly')}?{query.urlencode()}"


# --- The fixes backlog -----------------------------------------------------------------------


@require_GET
@_permission_required(BACKLOG_PERMISSION)
def fix_list(request: HttpRequest) -> HttpResponse:
    """Render the fix items by priority and due date; `?status=` filters (default: active)."""
    status = request.GET.get("status", "") or "active"
    errors = []
    if status not in STATUS_FILTER_VALUES:
        errors.append(
            f"Invalid status {status[:30]!r}; use one of {', '.join(STATUS_FILTER_VALUES)}."
        )
        status = "active"
    statuses = {
        "active": feedback.OPEN_FIX_STATUSES,
        "all": FixStatus.values,
    }.get(status, (status,))
    page = Paginator(feedback.fix_items(statuses=statuses), BACKLOG_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = _fix_row_choices(request) | {
        "page": page,
        "rows": feedback.backlog_rows(page.object_list),
        "status": status,
        "status_filters": STATUS_FILTERS,
        "errors": errors,
    }
    return render(request, "reviews/feedback/fixes.html", context, status=400 if errors else 200)


@require_POST
@htmx_login_required
def fix_update(request: HttpRequest, fix_id: int) -> HttpResponse:
    """Change a fix's status, owner, due date, resolution or fixing version from its row."""
    if not request.user.has_perm(BACKLOG_PERMISSION):
        return _flash(request, 403, "You have no access to the fixes backlog.", code="forbidden")
    post = request.POST
    status = post.get("status", "").strip() or None
    resolution = post.get("resolution")
    try:
        owner_id = _id_param(post, "owner")
        due_on = _date_param(post, "due_on")
        # The select's "no version" choice posts CLEAR_VERSION, and an empty value keeps the
        # version.
        clear_version = post.get("fixed_by_version", "").strip() == CLEAR_VERSION
        version_id = None if clear_version else _id_param(post, "fixed_by_version")
    except ValueError as error:
        return _flash(request, 400, str(error), code="invalid")

    try:
        fixes.fix_item_update(
            fix_id=fix_id,
            user=request.user,
            status=status,
            owner=owner_id,
            due_on=due_on,
            resolution=resolution,
            fixed_by_version_id=version_id,
            clear_fixed_by_version=clear_version,
        )
    except fixes.FixError as error:
        return _flash(request, error.status, _error_text(error), code=error.code)

    if not request.htmx:
        return redirect("feedback:fixes")
    fix = feedback.fix_items(statuses=FixStatus.values).get(pk=fix_id)
    context = _fix_row_choices(request) | {
        "row": feedback.backlog_rows([fix])[0],
        "flash": f"Fix #{fix_id} saved.",
    }
    return render(request, "reviews/feedback/_fix_row.html", context)


def _fix_row_choices(request: HttpRequest) -> dict:
    may_change = request.user.has_perm(fixes.CHANGE_PERMISSION)
    versions = []
    if may_change:
        versions = Version.objects.order_by("-created_at", "-pk").values_list(
            "pk", "subject", "label"
        )[:VERSION_CHOICES_LIMIT]
    return {
        "may_change": may_change,
        "owners": fixes.owner_choices() if may_change else [],
        "versions": list(versions),
        "fix_statuses": FixStatus.choices,
        "clear_version": CLEAR_VERSION,
    }


# --- Input and errors ------------------------------------------------------------------------


def _id_param(params: QueryDict, name: str, *, required: bool = False) -> int | None:
    value = params.get(name, "").strip()
    if not value:
        if required:
            raise ValueError(f"{name}: missing; choose one.")
        return None
    # Ids beyond 18 digits would overflow PostgreSQL's bigint and fail the query.
    if not (value.isascii() and value.isdigit() and len(value) <= ID_MAX_DIGITS):
        raise ValueError(f"{name}: invalid id {value[:30]!r}.")
    return int(value)


def _date_param(params: QueryDict, name: str) -> date | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name}: invalid date {value[:30]!r}; use YYYY-MM-DD.") from None


def _error_text(error: fixes.FixError) -> str:
    return f"{error.field}: {error.message}" if error.field else error.message


def _flash(request: HttpRequest, status: int, message: str, code: str = "") -> HttpResponse:
    return render(
        request,
        "reviews/_flash.html",
        {"message": message, "code": code, "level": "error"},
        status=status,
    )


# --- CSV -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "section",
    "rank",
    "decision_id",
    "review_item_id",
    "order_id",
    "action",
    "model_name",
    "model_version",
    "cause",
    "impact",
    "impact_weight",
    "labels",
    "reviewed",
    "disagreed",
    "disagreement_rate",
    "few_reviews",
    "fix_id",
    "fix_status",
    "owner",
    "due_on",
    "days_left",
    "metric",
    "value",
    "previous_value",
    "change",
    "sample",
    "previous_sample",
    "reviewer",
    "known_answers",
    "known_correct",
    "accuracy",
    "agreed",
    "agreement",
)


def weekly_review_csv_rows(review: feedback.WeeklyReview) -> Iterator[list[str]]:
    """Yield the review as CSV rows, header first, a `section` column naming each row's part.

    Only ids, codes, counts and staff usernames: no fix titles, notes or customer data.
    """
    yield list(CSV_COLUMNS)
    for row in _csv_dicts(review):
        yield [_csv_cell(row.get(column)) for column in CSV_COLUMNS]


def _csv_dicts(review: feedback.WeeklyReview) -> Iterator[dict]:
    for row in review.impact:
        yield {
            "section": "impact",
            "rank": row.rank,
            "decision_id": row.decision_id,
            "review_item_id": row.review_item_id,
            "order_id": row.order_id,
            "action": row.action_code,
            "model_name": row.model_name,
            "model_version": row.model_version,
            "cause": ";".join(code for code, _name in row.causes),
            "impact": row.impact_code,
            "impact_weight": row.impact_weight,
            "labels": row.label_count,
            "fix_id": ";".join(str(fix_id) for fix_id in row.fix_ids),
        }
    for rank, group in enumerate(review.disagreement, start=1):
        yield {
            "section": "disagreement",
            "rank": rank,
            "action": group.action_code,
            "model_name": group.model_name,
            "model_version": group.model_version,
            "reviewed": group.reviewed,
            "disagreed": group.disagreed,
            "disagreement_rate": group.rate,
            "few_reviews": "yes" if group.few_reviews else "no",
        }
    for rank, group in enumerate(review.groups, start=1):
        yield {
            "section": "group",
            "rank": rank,
            "action": group.action_code,
            "model_name": group.model_name,
            "model_version": group.model_version,
            "cause": group.cause.code,
            "impact_weight": group.impact_weight,
            "labels": group.label_count,
            "fix_id": group.fix.pk if group.fix else None,
            "fix_status": group.fix.status if group.fix else None,
        }
    for rank, backlog_row in enumerate(review.backlog, start=1):
        fix = backlog_row.fix
        yield {
            "section": "fix",
            "rank": rank,
            "action": fix.action.code if fix.action else "",
            "model_name": fix.model_name,
            "model_version": fix.model_version,
            "cause": fix.cause.code if fix.cause else "",
            "impact_weight": fix.priority,
            "labels": backlog_row.label_count,
            "fix_id": fix.pk,
            "fix_status": fix.status,
            "owner": fix.owner.get_username() if fix.owner else "",
            "due_on": fix.due_on.isoformat(),
            "days_left": backlog_row.days_left,
        }
    yield from _csv_kpis(review)
    for reviewer in review.reviewers:
        yield {
            "section": "reviewer",
            "reviewer": reviewer.username,
            "known_answers": reviewer.known_answers,
            "known_correct": reviewer.known_correct,
            "accuracy": reviewer.accuracy,
            "reviewed": reviewer.reviewed,
            "agreed": reviewer.agreed,
            "agreement": reviewer.agreement,
        }


def _csv_kpis(review: feedback.WeeklyReview) -> Iterator[dict]:
    target = review.target
    yield {
        "section": "kpi",
        "metric": "worst_errors_fixed_in_time_share",
        "value": target.share,
        "sample": target.came_due,
    }
    for metric in ("fixed_in_time", "fixed_late", "overdue", "within_due_days"):
        yield {
            "section": "kpi",
            "metric": f"worst_errors_{metric}",
            "value": getattr(target, metric),
        }
    yield {"section": "kpi", "metric": "open_fixes", "value": target.open_fixes}
    yield {"section": "kpi", "metric": "overdue_fixes", "value": target.overdue_fixes}

    for change in review.accuracy_changes:
        version = change.version
        yield {
            "section": "kpi",
            "metric": "pick_accuracy",
            "model_name": version.subject,
            "model_version": version.label,
            "action": version.action.code if version.action_id else "",
            "value": change.after_accuracy,
            "previous_value": change.before_accuracy,
            "sample": change.after_reviewed,
            "previous_sample": change.before_reviewed,
            "change": change.lift_points,
        }

    escalations = review.escalations
    yield {
        "section": "kpi",
        "metric": "escalations_per_1000_orders",
        "value": escalations.per_1000,
        "previous_value": escalations.previous_per_1000,
        "change": escalations.change,
        "sample": escalations.orders,
        "previous_sample": escalations.previous_orders,
    }

    resolution = review.resolution
    yield {
        "section": "kpi",
        "metric": "resolution_hours_median",
        "value": resolution.median_hours,
        "sample": resolution.resolved,
    }
    yield {
        "section": "kpi",
        "metric": "resolution_hours_p90",
        "value": resolution.p90_hours,
        "sample": resolution.resolved,
    }
    yield {"section": "kpi", "metric": "labels_unresolved", "value": resolution.unresolved}
    yield {
        "section": "kpi",
        "metric": "labels_unresolved_oldest_days",
        "value": resolution.oldest_unresolved_days,
    }


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        return str(value)
    # Spreadsheets run a text cell that starts like a formula; a leading quote keeps it text.
    if value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
