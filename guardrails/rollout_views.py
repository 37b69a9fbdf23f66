"""Pages of versions and canaries under /rollouts/, and the canary page's HTMX actions.

Seeing them needs guardrails.view_canary. Changing a canary's share, pausing, resuming,
stopping and promoting need guardrails.operate_canary, checked here and again by the
rollouts service. An action responds to an htmx request with the canary's refreshed panel and
a flash line. Errors (400, 403, 404, 409) come back as a one-line fragment naming the field at
fault, which the page's htmx config swaps into `#flash`.
"""

import logging
from collections.abc import Callable
from decimal import Decimal
from functools import wraps

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from reviews.views import htmx_login_required

from . import rollouts
from .models import (
    Canary,
    CanaryEvent,
    CanaryStatus,
    PolicyVersion,
    Verdict,
    Version,
    VersionKind,
    VersionStatus,
)
from .rollout_forms import NoteForm, PauseForm, ResumeForm, ShareForm
from .rollout_selectors import canary_comparison

logger = logging.getLogger(__name__)

VIEW_PERMISSION = "guardrails.view_canary"
OPERATE_PERMISSION = "guardrails.operate_canary"
PAGE_SIZE = 50
LIVE_STATUSES = (CanaryStatus.RUNNING, CanaryStatus.PAUSED)


def rollout_viewer_required(view: Callable) -> Callable:
    """Require a login, then guardrails.view_canary. Without it the page names who to ask."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.has_perm(VIEW_PERMISSION):
            return render(request, "guardrails/rollouts/forbidden.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


# --- Pages -----------------------------------------------------------------------------------


@rollout_viewer_required
def rollout_list(request: HttpRequest) -> HttpResponse:
    """Render the canaries, running and paused ones first, and the versions."""
    filters, errors = _version_filters_parse(request.GET)
    canaries = Paginator(_canaries_ordered(), PAGE_SIZE).get_page(request.GET.get("page"))
    for canary in canaries.object_list:
        canary.share_percent = _percent(canary.share)
    versions = Paginator(_versions_filtered(filters), PAGE_SIZE).get_page(
        request.GET.get("versions_page")
    )

    link_params = request.GET.copy()
    link_params.pop("page", None)
    link_params.pop("versions_page", None)
    context = {
        "canaries": canaries,
        "versions": versions,
        "filters": filters,
        "filter_errors": errors,
        "kinds": VersionKind.choices,
        "statuses": VersionStatus.choices,
        "link_query": link_params.urlencode(),
        "may_add_version": request.user.is_staff
        and request.user.has_perm("guardrails.add_version"),
        "may_start_canary": request.user.is_staff and request.user.has_perm(OPERATE_PERMISSION),
    }
    return render(request, "guardrails/rollouts/list.html", context, status=400 if errors else 200)


@rollout_viewer_required
def canary_detail(request: HttpRequest, canary_id: int) -> HttpResponse:
    """Render one canary: the arms side by side, its thresholds, its timeline and actions."""
    canary = _canary_for_page(canary_id)
    if canary is None:
        return _not_found(request, f"Canary #{canary_id} does not exist.")
    return render(request, "guardrails/rollouts/canary.html", _canary_context(request, canary))


@rollout_viewer_required
def version_detail(request: HttpRequest, version_id: int) -> HttpResponse:
    """Render one version: changelog, config, policy versions, canaries and what it fixed."""
    version = Version.objects.select_related("action", "created_by").filter(pk=version_id).first()
    if version is None:
        return _not_found(request, f"Version #{version_id} does not exist.")

    context = {
        "version": version,
        "policy_versions": PolicyVersion.objects.filter(rule_sets=version).select_related(
            "policy__action", "policy__channel"
        ),
        "canaries": Canary.objects.filter(Q(candidate=version) | Q(control=version))
        .select_related("candidate", "control")
        .order_by("-created_at", "-id"),
        "fixed_labels": [
            {"label": label, "url": error_label_url(label, staff=request.user.is_staff)}
            for label in version.fixed_labels.select_related(
                "cause", "impact", "corrective_action", "labelled_by"
            ).order_by("-labelled_at", "-id")
        ],
        "fix_items": [
            {
                "fix": fix,
                "url": admin_change_url("admin:reviews_fixitem_change", fix.pk)
                if request.user.is_staff
                else "",
            }
            for fix in version.fix_items.select_related("owner").order_by("-priority", "id")
        ],
        "may_see_admin": request.user.is_staff,
    }
    return render(request, "guardrails/rollouts/version.html", context)


# --- Actions ---------------------------------------------------------------------------------


@require_POST
@htmx_login_required
def canary_share(request: HttpRequest, canary_id: int) -> HttpResponse:
    return _act(
        request,
        canary_id,
        ShareForm,
        lambda data: rollouts.canary_set_share(
            canary_id=canary_id, share=data["share"], user=request.user, note=data["note"]
        ),
        lambda data: f"Share set to {_percent(data['share'])}.",
    )


@require_POST
@htmx_login_required
def canary_pause(request: HttpRequest, canary_id: int) -> HttpResponse:
    return _act(
        request,
        canary_id,
        PauseForm,
        lambda data: rollouts.canary_pause(
            canary_id=canary_id, user=request.user, reason=data["reason"]
        ),
        lambda data: "Paused: every order now gets the control.",
    )


@require_POST
@htmx_login_required
def canary_resume(request: HttpRequest, canary_id: int) -> HttpResponse:
    return _act(
        request,
        canary_id,
        ResumeForm,
        lambda data: rollouts.canary_resume(
            canary_id=canary_id, user=request.user, note=data["note"], days=data["days"]
        ),
        lambda data: "Resumed.",
    )


@require_POST
@htmx_login_required
def canary_stop(request: HttpRequest, canary_id: int) -> HttpResponse:
    return _act(
        request,
        canary_id,
        NoteForm,
        lambda data: rollouts.canary_stop(
            canary_id=canary_id, user=request.user, note=data["note"]
        ),
        lambda data: "Stopped: traffic is back on the control.",
    )


@require_POST
@htmx_login_required
def canary_promote(request: HttpRequest, canary_id: int) -> HttpResponse:
    return _act(
        request,
        canary_id,
        NoteForm,
        lambda data: rollouts.canary_promote(
            canary_id=canary_id, user=request.user, note=data["note"]
        ),
        lambda data: "Promoted: the candidate is now the active version.",
    )


def _act(
    request: HttpRequest,
    canary_id: int,
    form_class: type[forms.Form],
    action: Callable[[dict], Canary],
    done: Callable[[dict], str],
) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION) or not request.user.has_perm(OPERATE_PERMISSION):
        logger.info(
            "Canary action rejected: permission missing",
            extra={"canary_id": canary_id, "user_id": request.user.pk},
        )
        return _flash(
            request, 403, "You may not operate canaries.", code="forbidden", canary_id=canary_id
        )
    form = form_class(request.POST)
    if not form.is_valid():
        field, messages = next(iter(form.errors.items()))
        logger.info(
            "Canary action rejected: invalid input",
            extra={"canary_id": canary_id, "field": field},
        )
        return _flash(
            request,
            400,
            f"{field}: {' '.join(messages)}",
            code="invalid",
            field=field,
            canary_id=canary_id,
        )

    try:
        action(form.cleaned_data)
    except rollouts.RolloutError as error:
        logger.info(
            "Canary action rejected",
            extra={"canary_id": canary_id, "code": error.code, "field": error.field},
        )
        message = f"{error.field}: {error.message}" if error.field else error.message
        return _flash(
            request,
            error.status,
            message,
            code=error.code,
            field=error.field or "",
            canary_id=canary_id,
        )

    if not request.htmx:
        return redirect("rollouts:canary", canary_id=canary_id)
    canary = _canary_for_page(canary_id)
    context = _canary_context(request, canary) | {"flash": done(form.cleaned_data)}
    return render(request, "guardrails/rollouts/_canary_main.html", context)


def _flash(
    request: HttpRequest,
    status: int,
    message: str,
    code: str = "",
    field: str = "",
    canary_id: int | None = None,
) -> HttpResponse:
    context = {"message": message, "code": code, "field": field, "level": "error"}
    if request.htmx or canary_id is None:
        # htmx puts the fragment in the page's #flash area.
        return render(request, "guardrails/rollouts/_flash.html", context, status=status)
    # A form posted without JavaScript gets a whole page with the message and a way back.
    return render(
        request,
        "guardrails/rollouts/refused.html",
        context | {"canary_id": canary_id},
        status=status,
    )


def _not_found(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "guardrails/rollouts/not_found.html", {"message": message}, status=404)


# --- Reading ---------------------------------------------------------------------------------


def _canaries_ordered() -> QuerySet[Canary]:
    live_first = Case(
        When(status=CanaryStatus.RUNNING, then=Value(0)),
        When(status=CanaryStatus.PAUSED, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return (
        Canary.objects.select_related("candidate", "control", "action", "channel")
        .annotate(live_rank=live_first)
        .order_by("live_rank", "-created_at", "-id")
    )


def _version_filters_parse(params: QueryDict) -> tuple[dict, list[str]]:
    """Return the valid version filters and a message per invalid one."""
    filters: dict = {}
    errors = []
    for name, choices in (("kind", VersionKind), ("status", VersionStatus)):
        value = params.get(name, "")
        if not value:
            continue
        if value in choices.values:
            filters[name] = value
        else:
            errors.append(f"{name} {value[:30]!r} is not one of {', '.join(choices.values)}")
    return filters, errors


def _versions_filtered(filters: dict) -> QuerySet[Version]:
    return (
        Version.objects.filter(**filters)
        .select_related("action")
        .order_by("kind", "subject", "-created_at", "-id")
    )


def _canary_for_page(canary_id: int) -> Canary | None:
    return (
        Canary.objects.select_related(
            "candidate", "control", "action", "channel", "ended_by", "created_by"
        )
        .filter(pk=canary_id)
        .first()
    )


def _canary_context(request: HttpRequest, canary: Canary) -> dict:
    comparison, attached = comparison_shown(canary)
    is_live = canary.status in LIVE_STATUSES
    return {
        "canary": canary,
        "comparison": comparison,
        "comparison_attached": attached,
        "rows": _comparison_rows(comparison),
        "verdicts": _verdict_rows(comparison),
        "significance": significance_words(comparison),
        "difference_pp": comparison.get("difference_pp"),
        "p_value": comparison.get("p_value"),
        "outcome": comparison.get("outcome", ""),
        "thresholds": _thresholds(canary, comparison),
        "events": [
            {"event": event, "figures": _figures(event)}
            for event in canary.events.select_related("actor").order_by("created_at", "id")
        ],
        "is_live": is_live,
        "run_over": canary.ends_at is not None and canary.ends_at <= timezone.now(),
        "may_operate": is_live and request.user.has_perm(OPERATE_PERMISSION),
        "share_percent": _percent(canary.share),
    }


def comparison_shown(canary: Canary) -> tuple[dict, bool]:
    """Return the comparison to show and whether it is the one stored when the canary ended.

    An ended canary shows the comparison stored by its rollback, stop or promotion, so the
    page shows the figures the decision rested on. Outcomes that arrive later are not in it.
    """
    if canary.status not in LIVE_STATUSES and canary.result:
        return canary.result, True
    return canary_comparison(canary), False


# Per-arm figures of the comparison, in the order the page lists them: key, label, is a rate.
ARM_FIGURES = (
    ("orders", "Orders (sample size)", False),
    ("decisions", "Decisions", False),
    ("reviewed", "Reviewed decisions", False),
    ("disagreed", "Reviewer disagreed", False),
    ("disagreement_rate", "Disagreement rate", True),
    ("orders_with_fulfilment_exceptions", "Orders with fulfilment exceptions", False),
    ("fulfilment_exception_rate", "Fulfilment exception rate", True),
    ("returns", "Returns", False),
    ("return_rate", "Return rate", True),
)


def _comparison_rows(comparison: dict) -> list[dict]:
    control = comparison.get("control") or {}
    candidate = comparison.get("candidate") or {}
    return [
        {
            "key": key,
            "label": label,
            "control": _rate_text(control.get(key)) if is_rate else _count_text(control.get(key)),
            "candidate": _rate_text(candidate.get(key))
            if is_rate
            else _count_text(candidate.get(key)),
        }
        for key, label, is_rate in ARM_FIGURES
    ]


def _verdict_rows(comparison: dict) -> list[dict]:
    control = (comparison.get("control") or {}).get("verdicts") or {}
    candidate = (comparison.get("candidate") or {}).get("verdicts") or {}
    return [
        {
            "verdict": verdict,
            "label": dict(Verdict.choices).get(verdict, verdict),
            "control": control.get(verdict, 0),
            "candidate": candidate.get(verdict, 0),
        }
        for verdict in sorted(set(control) | set(candidate))
    ]


def significance_words(comparison: dict) -> str:
    """Describe the exception-rate difference: significant, not significant, or too little data."""
    if comparison.get("outcome") == "inconclusive":
        return "too little data (inconclusive)"
    if comparison.get("significant"):
        return "significant at 95 %"
    return "not significant"


def _thresholds(canary: Canary, comparison: dict) -> dict:
    stored = comparison.get("thresholds") or {}
    return {
        "max_exception_increase_pp": stored.get(
            "max_exception_increase_pp", canary.max_exception_increase_pp
        ),
        "min_orders_per_arm": stored.get("min_orders_per_arm", canary.min_orders_per_arm),
    }


def _figures(event: CanaryEvent) -> list[tuple[str, str]]:
    """Return an event's figures as label and text pairs, sorted by name.

    PostgreSQL's jsonb does not keep the keys in the order they were written. A comparison
    attached to the event is summarised, because the page and the API show it in full.
    """
    data = event.data or {}
    rows = []
    for key in sorted(data):
        value = data[key]
        if key == "summary" and value == event.detail:
            continue
        if key == "comparison" and isinstance(value, dict):
            text = _comparison_summary(value)
        else:
            text = _figure_text(value)
        rows.append((key.replace("_", " "), text))
    return rows


def _comparison_summary(comparison: dict) -> str:
    arms = []
    for arm in ("control", "candidate"):
        figures = comparison.get(arm) or {}
        arms.append(
            f"{arm} {_count_text(figures.get('orders'))} orders, "
            f"{_rate_text(figures.get('fulfilment_exception_rate'))} with exceptions"
        )
    difference = comparison.get("difference_pp")
    arms.append(f"difference {'-' if difference is None else difference} pp")
    arms.append(f"judgement {comparison.get('outcome', '-')}")
    return "; ".join(arms)


def _figure_text(value: object) -> str:
    # An event may carry a whole comparison: nested figures become "name value" lists.
    if isinstance(value, dict):
        parts = []
        for name, item in sorted(value.items()):
            text = _figure_text(item)
            parts.append(
                f"{name.replace('_', ' ')} ({text})"
                if isinstance(item, dict)
                else f"{name.replace('_', ' ')} {text}"
            )
        return ", ".join(parts)
    if isinstance(value, list):
        return ", ".join(_figure_text(item) for item in value)
    return "-" if value is None else str(value)


def error_label_url(label, *, staff: bool) -> str:
    """Link a labelled error to its admin page, else to what it labels."""
    if staff:
        url = admin_change_url("admin:reviews_errorlabel_change", label.pk)
        if url:
            return url
    if label.decision_id:
        return (
            admin_change_url("admin:guardrails_decision_change", label.decision_id) if staff else ""
        )
    return reverse("reviews:item", args=[label.review_item_id])


def admin_change_url(name: str, pk: int) -> str:
    """Return the admin change page's URL, or "" when that model has no admin registered."""
    # The label and backlog admins belong to the reviews app and may not be registered.
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return ""


def _percent(share: Decimal | str) -> str:
    return f"{Decimal(str(share)) * 100:.2f} %"


def _count_text(value: object) -> str:
    return "-" if value is None else str(value)


def _rate_text(value: object) -> str:
    """Format a rate (a fraction) as a percentage with three decimals: "0.002150" is 0.215 %."""
    if value is None:
        return "-"
    return f"{Decimal(str(value)) * 100:.3f} %"
